"""Per-image metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from lsap.metrics import PSNR_CAP_DB, mse, psnr, ssim, to_unit


def test_identical_images():
    a = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(mse(a, a), torch.zeros(2))
    assert torch.equal(psnr(a, a), torch.full((2,), PSNR_CAP_DB))
    torch.testing.assert_close(ssim(a, a), torch.ones(2))


def test_hand_computed_values():
    a = -torch.ones(1, 3, 8, 8)  # black
    b = torch.ones(1, 3, 8, 8)  # white
    assert mse(a, b).item() == 1.0 and psnr(a, b).item() == 0.0
    c = torch.full((1, 3, 8, 8), 2 * 51 / 255 - 1)  # uint8 value 51 = 0.2 on [0, 1]
    assert mse(a, c).item() == pytest.approx(0.04)
    assert psnr(a, c).item() == pytest.approx(-10 * math.log10(0.04))
    half = a.clone()
    half[..., :4] = 1.0  # half the pixels differ by 1
    assert mse(a, half).item() == pytest.approx(0.5)


def test_quantised_like_a_saved_png():
    a = torch.zeros(1, 3, 4, 4)
    b = a + 0.001  # below one uint8 step: identical once saved
    assert mse(a, b).item() == 0.0
    assert to_unit(torch.tensor([-1.0, 1.0, 0.0])).tolist() == pytest.approx([0.0, 1.0, 128 / 255])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal shape"):
        mse(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 8, 8))
