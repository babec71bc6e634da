"""Images of codes: batched synthesis, per-code noise maps and per-code generators honoured."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lsap.nets.stylegan2 import Generator


def stack_noise(G: Generator, noises: Sequence[Sequence[Tensor] | None]) -> list[Tensor] | None:
    """Per-layer noise for a batch of codes: each code's own maps (as ``lsap-invert`` stores them,
    [1, 1, R, R] per synthesis conv), or the generator's constant noise for codes without.

    Returns:
        ``len(G.synthesis.convs)`` tensors [N, 1, R, R] on G's device, or None when no code in
        the batch has its own noise (then ``noise_mode="const"`` gives the same images).
    """
    if all(not n for n in noises):  # None, or [] from a generator without noise (StyleGAN3)
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


def generator_groups(generators: Sequence[Generator]) -> list[tuple[Generator, list[int]]]:
    """Indices of a batch grouped by the generator that renders them, in order of appearance."""
    groups: dict[int, tuple[Generator, list[int]]] = {}
    for i, g in enumerate(generators):
        groups.setdefault(id(g), (g, []))[1].append(i)
    return list(groups.values())


@torch.no_grad()
def synthesize_each(
    generators: Sequence[Generator],
    w_plus: Tensor,
    noise: Sequence[Tensor] | None = None,
    *,
    batch_size: int = 8,
) -> Tensor:
    """Like :func:`synthesize`, with code i rendered by ``generators[i]`` (e.g. the tuned
    generator of each image after pivotal tuning); codes sharing a generator are batched.

    Args:
        generators: N generators (the same object may repeat).
        w_plus: [N, num_ws, w_dim]; noise: per layer [N, 1, R, R] or None.

    Returns:
        [N, 3, R, R] in ~[-1, 1].
    """
    groups = generator_groups(generators)
    if len(groups) == 1:
        return synthesize(groups[0][0], w_plus, noise, batch_size=batch_size)
    out: Tensor | None = None
    for g, idx in groups:
        sel = torch.tensor(idx, device=w_plus.device)
        nz = [n[sel] if n.shape[0] > 1 else n for n in noise] if noise is not None else None
        images = synthesize(g, w_plus[sel], nz, batch_size=batch_size)
        if out is None:
            out = images.new_empty(w_plus.shape[0], *images.shape[1:])
        out[sel] = images
    return out
