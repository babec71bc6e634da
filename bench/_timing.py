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


def median_times(
    fn: Callable[[], object], device: torch.device, repeats: int
) -> tuple[float, float]:
    """``(wall, cpu)``: median wall-clock seconds and median process CPU seconds of ``repeats``
    calls after one warm-up. On a shared machine the CPU seconds of a single-threaded run
    (``OMP_NUM_THREADS=1``) hardly move with the load while wall time grows with it: compare
    CPU implementations on CPU seconds, GPU runs on wall time."""
    fn()
    sync(device)
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def interleaved_times(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """``name -> (wall, cpu)`` medians over ``repeats`` rounds; every round runs each function
    once, the order rotating, so a change in the machine's load falls on all of them alike."""
    names = list(fns)
    for name in names:  # warm-up: allocator, oneDNN primitives
        fns[name]()
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t, c = time.perf_counter(), time.process_time()
            fns[name]()
            walls[name].append(time.perf_counter() - t)
            cpus[name].append(time.process_time() - c)
    return {n: (statistics.median(walls[n]), statistics.median(cpus[n])) for n in names}
