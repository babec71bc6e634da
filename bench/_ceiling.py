"""The arithmetic ceiling of a CPU benchmark (``--ceiling`` of ``bench/generator.py`` and
``bench/encoder.py``): how fast a workload could run on this machine if every multiply-add ran at
this CPU's large-sgemm rate, and so the largest speed-up over a reference that an implementation
doing the same arithmetic can show here.

    floor_s = flops / sgemm_rate        ceiling ratio = reference_s / floor_s

``flops`` are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one untimed call (matrix
products and convolutions, forward and backward: 2 per multiply-add; elementwise work is free in
this model, so the floor is optimistic). An implementation that does fewer multiplications
(Winograd) has a lower floor; its count says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_gflop(fn: Callable[[], object]) -> float:
    """GFLOP of one call of ``fn`` (matmuls and convolutions, forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def sgemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """This process's float32 matrix-product rate, GFLOP per CPU second: the best of ``repeats``
    [size, size] x [size, size] products after one warm-up (a ceiling, so the best; on a shared
    machine single products vary by 10-20 %). Single-threaded when ``OMP_NUM_THREADS=1``: then
    CPU seconds are compute time."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    rates = []
    for _ in range(repeats):
        c = time.process_time()
        a @ b
        rates.append(2 * size**3 / (time.process_time() - c) / 1e9)
    return max(rates)


def ceiling_line(what: str, gflop: float, rate: float, seconds: float, reference_s: float) -> str:
    """One printed line: the floor of ``gflop`` at ``rate``, the measured ``seconds`` as a share of
    that rate, and the ceiling ratio against the reference's measured ``reference_s``."""
    floor = gflop / rate
    return (
        f"  ceiling {what}: {gflop:.1f} GFLOP at this CPU's sgemm rate {rate:.0f} GFLOPS = "
        f"{floor:.3f} s floor; measured {seconds:.3f} s ({gflop / seconds:.0f} GFLOPS, "
        f"{100 * floor / seconds:.0f} % of the rate); reference {reference_s:.3f} s -> "
        f"ceiling x{reference_s / floor:.2f}, now x{reference_s / seconds:.2f}"
    )
