"""data.batch_size=auto: the planned batch is the largest that fits, by the documented formula."""

from __future__ import annotations

import pytest

from lsap.inversion.memory import plan_batch_size, resolve_batch_size


def test_plan_is_the_largest_batch_that_fits():
    # 80 GiB card, 10 % headroom, 3 GiB fixed, 2.5 GiB per image: (73728 - 3072) / 2560 = 27.6
    b = plan_batch_size(81920, 2560, 3072, headroom=0.1, max_batch=64)
    assert b == 27
    assert 3072 + b * 2560 <= 81920 * 0.9 < 3072 + (b + 1) * 2560


def test_plan_respects_max_batch_and_refuses_when_nothing_fits():
    assert plan_batch_size(141000, 100, 0, headroom=0.0, max_batch=16) == 16
    with pytest.raises(ValueError, match="one image needs"):
        plan_batch_size(8000, 9000, 500)
    with pytest.raises(ValueError, match="per_image_mb > 0"):
        plan_batch_size(8000, 0, 500)


def test_resolve_passes_ints_and_uses_cpu_batch_without_cuda():
    assert resolve_batch_size(3, None, "cpu") == 3
    assert (
        resolve_batch_size("auto", {"cpu_batch": 2, "per_image_mb": 1, "fixed_mb": 0}, "cpu") == 2
    )
