"""Images of codes and of their edits (batched synthesis, optimised noise maps honoured)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lsap.editing.edit import Edit
from lsap.nets.stylegan2 import Generator


def stack_noise(G: Generator, noises: Sequence[Sequence[Tensor] | None]) -> list[Tensor] | None:
    """Per-layer noise for a batch of codes: each code's own maps (as ``lsap-invert`` stores them,
    [1, 1, R, R] per synthesis conv), or the generator's constant noise for codes without.

    Returns:
        ``len(G.synthesis.convs)`` tensors [N, 1, R, R] on G's device, or None when no code in
        the batch has its own noise (then ``noise_mode="const"`` gives the same images).
    """
    if all(n is None for n in noises):
        return None
    convs = G.synthesis.convs
    shapes = G.synthesis.noise_shapes()
    out = []
    for i, (layer, shape) in enumerate(zip(convs, shapes, strict=True)):
        maps = []
        for n in noises:
            if n is not None and len(n) != len(convs):
                raise ValueError(f"codes carry {len(n)} noise maps, the generator has {len(convs)}")
            m = layer.noise_const[None, None] if n is None else n[i]
            if tuple(m.shape) != shape:
                raise ValueError(f"noise map {i} has shape {tuple(m.shape)}, expected {shape}")
            maps.append(m.to(layer.noise_const))
        out.append(torch.cat(maps))
    return out


@torch.no_grad()
def synthesize(
    G: Generator, w_plus: Tensor, noise: Sequence[Tensor] | None = None, *, batch_size: int = 8
) -> Tensor:
    """Images of codes: w_plus [N, num_ws, w_dim], noise per layer [N, 1, R, R] or None
    (the generator's constant noise) -> [N, 3, R, R] in ~[-1, 1], in batches of ``batch_size``."""
    out = []
    for s in range(0, w_plus.shape[0], batch_size):
        sl = slice(s, s + batch_size)
        nz = [n[sl] if n.shape[0] > 1 else n for n in noise] if noise is not None else None
        out.append(G.synthesis(w_plus[sl], noise_mode="const", noise=nz))
    return torch.cat(out)


@torch.no_grad()
def render_edit(
    G: Generator,
    w_plus: Tensor,
    edit: Edit,
    factors: Sequence[float],
    noise: Sequence[Tensor] | None = None,
    *,
    batch_size: int = 8,
) -> tuple[Tensor, Tensor]:
    """Edit codes with every factor and synthesise them.

    Args:
        w_plus: [N, num_ws, w_dim] codes on G's device.
        noise: per-layer noise [N, 1, R, R] (see :func:`stack_noise`) or None.

    Returns:
        ``(codes [N, F, num_ws, w_dim], images [N, F, 3, R, R])``.
    """
    codes = edit.factors(w_plus, factors)  # [N, F, L, D]
    N, F_ = codes.shape[:2]
    nz = None
    if noise is not None:  # every factor of an image uses that image's noise
        nz = [n.expand(N, -1, -1, -1).repeat_interleave(F_, dim=0) for n in noise]
    images = synthesize(G, codes.flatten(0, 1), nz, batch_size=batch_size)
    return codes, images.unflatten(0, (N, F_))
