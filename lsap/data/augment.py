"""Cheap image degradations (blur, noise) so a classifier trained on clean renders also reads
generator samples, which are softer and noisier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def blur_and_noise(
    images: Tensor,
    *,
    blur_prob: float,  # share of images blurred with a [1, 2, 1] x [1, 2, 1] kernel
    noise_std: float,  # max std of added Gaussian noise (each image draws U(0, noise_std))
    generator: torch.Generator | None = None,
) -> Tensor:
    """Randomly degrade images [N, 3, H, W] in [-1, 1]; returns the same shape, clamped."""
    N = images.shape[0]
    dev = images.device
    k = torch.tensor([1.0, 2.0, 1.0], device=dev)
    k = (k[:, None] * k[None, :] / 16).to(images.dtype).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(images, [1, 1, 1, 1], mode="replicate"), k, groups=3)
    pick = torch.rand(N, 1, 1, 1, generator=generator).to(dev) < blur_prob
    x = torch.where(pick, blurred, images)
    std = torch.rand(N, 1, 1, 1, generator=generator).to(dev) * noise_std
    noise = torch.randn(images.shape, generator=generator).to(dev)
    return (x + std * noise).clamp(-1, 1)
