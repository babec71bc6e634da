"""bench/_ceiling.py, behind the benchmarks' ``--ceiling`` lines: the GFLOP count is the
convolutions' and products' arithmetic (forward and backward), the floor is that count at the
measured sgemm rate, and the printed ratios follow from it."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import _ceiling


def _conv_step(N, C, O, R):
    x = torch.randn(N, C, R, R, requires_grad=True)
    w = torch.randn(O, C, 3, 3, requires_grad=True)
    return lambda: F.conv2d(x, w, padding=1).square().sum().backward()


def test_count_is_the_convolutions_arithmetic():
    # forward, input gradient and weight gradient: each 2 * N * O * C * 9 * R^2
    for N, C, O, R in [(2, 4, 8, 6), (1, 8, 3, 5)]:
        expected = 3 * 2 * N * O * C * 9 * R * R / 1e9
        assert math.isclose(_ceiling.count_gflop(_conv_step(N, C, O, R)), expected)
    # a product counts too; elementwise work does not
    a, b = torch.randn(16, 32), torch.randn(32, 8)
    assert math.isclose(_ceiling.count_gflop(lambda: (a @ b).relu()), 2 * 16 * 32 * 8 / 1e9)


def test_sgemm_rate_is_a_measured_rate():
    rate = _ceiling.sgemm_gflops(size=256, repeats=3)
    assert math.isfinite(rate) and 0.05 < rate < 1e5  # GFLOPS of one process, any CPU


def test_ceiling_line_arithmetic():
    # 100 GFLOP at 50 GFLOPS: a 2 s floor; measured 4 s, reference 8 s -> ceiling x4, now x2
    line = _ceiling.ceiling_line("toy", 100.0, 50.0, 4.0, 8.0)
    assert "2.000 s floor" in line and "(25 GFLOPS, 50 % of the rate)" in line
    assert line.endswith("ceiling x4.00, now x2.00")
