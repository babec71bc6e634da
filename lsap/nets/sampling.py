"""Seeded sampling of the generator's latent distributions, in bounded-memory batches."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from lsap.nets.stylegan2 import Generator, broadcast_w


def sample_z(
    num_samples: int, z_dim: int, *, seed: int, device: torch.device | str = "cpu"
) -> Tensor:
    """z [num_samples, z_dim] ~ N(0, I), drawn on the CPU so a seed gives the same z on any device."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(num_samples, z_dim, generator=g).to(device)


@torch.no_grad()
def iter_w(
    G: Generator, num_samples: int, *, seed: int = 0, batch_size: int = 10_000
) -> Iterator[Tensor]:
    """Yield mapped samples w [B, w_dim] (B <= batch_size), num_samples in total, on G's device.

    The z stream depends only on ``seed`` (batch size and device do not change the samples).
    """
    if num_samples < 1 or batch_size < 1:
        raise ValueError(
            f"num_samples and batch_size must be >= 1, got {num_samples}, {batch_size}"
        )
    device = G.w_avg.device
    g = torch.Generator().manual_seed(seed)
    done = 0
    while done < num_samples:
        b = min(batch_size, num_samples - done)
        z = torch.randn(b, G.z_dim, generator=g).to(device)
        yield G.mapping(z)
        done += b


@torch.no_grad()
def sample_images(
    G: Generator,
    num_samples: int,
    *,
    seed: int,
    pixel_noise: float = 0.0,
    truncation_psi: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Seeded samples of the generator as inversion targets whose true code is known.

    Args:
        num_samples: N images.
        seed: seeds the z (drawn on the CPU, :func:`sample_z`) and, with the seed + 1, the pixel
            noise: the same images on any device.
        pixel_noise: std of Gaussian noise added to the images, so the targets lie off the
            generator's range as photos do; 0 = the samples themselves.
        truncation_psi: pull w towards ``w_avg`` (1 = none).

    Returns:
        ``(images [N, 3, R, R] in [-1, 1], w_plus [N, num_ws, w_dim])`` on G's device; the images
        are ``G.synthesis(w_plus, noise_mode="const")`` plus the pixel noise, clamped to [-1, 1]
        (the range of an image file).
    """
    if pixel_noise < 0:
        raise ValueError(f"pixel_noise must be >= 0, got {pixel_noise}")
    device = G.w_avg.device
    w = G.mapping(sample_z(num_samples, G.z_dim, seed=seed, device=device), truncation_psi)
    w_plus = broadcast_w(w, G.num_ws, G.w_dim).contiguous()  # [N, num_ws, w_dim]
    images = G.synthesis(w_plus, noise_mode="const")  # [N, 3, R, R]
    if pixel_noise > 0:
        g = torch.Generator().manual_seed(seed + 1)
        eps = torch.randn(images.shape, generator=g).to(images)
        images = images + pixel_noise * eps
    return images.clamp(-1.0, 1.0), w_plus
