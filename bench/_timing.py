"""Timing helpers shared by the benchmark scripts (``python bench/<name>.py`` puts this folder on
``sys.path``): wall-clock times that wait for queued CUDA work."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously; CPU: nothing to do)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after one untimed warm-up call (allocator,
    cuDNN autotune, oneDNN primitives)."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)
