"""Per-image fidelity metrics on images as they would be saved (uint8), as the paper evaluates.

Images come in [-1, 1]; they are quantised to uint8 and mapped to [0, 1] first, so a metric of a
reconstruction equals the metric of its PNG. Every function returns one value per image, [N].
"""

from __future__ import annotations

import torch
from torch import Tensor

PSNR_CAP_DB = 100.0  # PSNR of identical images (MSE 0) is reported as this value, not inf


def _check(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(
            f"expected two [N, C, H, W] batches of equal shape, got {tuple(a.shape)}, {tuple(b.shape)}"
        )


def to_unit(images: Tensor) -> Tensor:
    """[-1, 1] -> uint8-quantised values in [0, 1] (float32)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round() / 255.0


def mse(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared error per image on the [0, 1] scale, in [0, 1]."""
    _check(a, b)
    return (to_unit(a) - to_unit(b)).square().flatten(1).mean(1)


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per image in dB (peak 1 on the [0, 1] scale), capped at 100 dB."""
    m = mse(a, b)
    return torch.where(
        m > 0, -10.0 * torch.log10(m.clamp_min(1e-30)), torch.full_like(m, PSNR_CAP_DB)
    ).clamp(max=PSNR_CAP_DB)


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Structural similarity per image (torchmetrics, Gaussian window 11, sigma 1.5), in [-1, 1]."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check(a, b)
    return structural_similarity_index_measure(
        to_unit(a), to_unit(b), data_range=1.0, reduction="none"
    )
