"""Seeded sampling of the generator's latent distributions, in bounded-memory batches."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from lsap.nets.stylegan2 import Generator


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
