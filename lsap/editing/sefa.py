"""SeFa: closed-form factorisation of the modulation ("affine") weights of synthesis convs.

The style of a modulated conv is ``s = A w + b``; directions ``n`` that change the styles most
maximise ``||A n||``: the right singular vectors of the stacked ``A`` of the chosen layers, by
decreasing singular value. toRGB layers are excluded, as in the SeFa paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lsap.editing.edit import Edit, LayerSpec, resolve_layers, restrict
from lsap.editing.ganspace import _fix_signs
from lsap.nets.generators import is_stylegan3
from lsap.nets.stylegan2 import Generator


def modulated_convs(G: Generator) -> tuple[list[torch.nn.Module], list[int]]:
    """The synthesis convs SeFa factorises, and the w+ index each consumes (toRGB excluded).

    StyleGAN2: ``G.synthesis.convs``, conv i at w+ index i. StyleGAN3: its synthesis layers but
    toRGB, layer k at w+ index k + 1 (the Fourier input's 4-output affine at index 0 sets a
    rotation and a translation, not a conv's channel scales, and is left out too).
    """
    if is_stylegan3(G):
        layers = G.synthesis.layers[:-1]
        return layers, [k + 1 for k in range(len(layers))]
    convs = list(G.synthesis.convs)
    return convs, list(range(len(convs)))


def modulation_weights(G: Generator, layers: LayerSpec = "all") -> tuple[Tensor, tuple[int, ...]]:
    """Stacked run-time modulation weights of the chosen synthesis convs.

    Args:
        layers: indices into :func:`modulated_convs` (StyleGAN2: conv i consumes w+ index i;
            there are ``num_ws - 1``), as for :func:`lsap.editing.resolve_layers`; ``"all"`` =
            every conv.

    Returns:
        ``(A [sum C_i, w_dim] float64, conv indices)``, each block scaled by its layer's
        equalised-learning-rate gain (the matrix the layer applies).
    """
    convs, _ = modulated_convs(G)
    idx = resolve_layers(layers, len(convs))
    A = torch.cat([convs[i].affine.weight.double() * convs[i].affine.weight_gain for i in idx])
    return A, idx


@torch.no_grad()
def sefa(
    G: Generator, layers: LayerSpec = "all", k: int = 5, *, channel_normalized: bool = False
) -> tuple[Tensor, Tensor]:
    """Top-k SeFa directions.

    Args:
        G: the generator.
        layers: synthesis convs to factorise (see :func:`modulation_weights`); "all" = every one.
        k: number of directions, at most ``min(w_dim, sum C_i)``.
        channel_normalized: scale each output channel's row of A to unit norm first (the variant
            in SeFa's released code); False factorises A as the layers apply it.

    Returns:
        ``(directions [k, w_dim], values [k])``: orthonormal rows, each signed so that its
        largest-magnitude entry is positive, ordered by decreasing singular value ``values`` of
        the stacked weights (on G's device, float32).
    """
    A, _ = modulation_weights(G, layers)
    if channel_normalized:
        A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
    rank = min(A.shape)
    if not 1 <= k <= rank:
        raise ValueError(f"k must be in 1..{rank} for these layers, got {k}")
    _, values, vh = torch.linalg.svd(A, full_matrices=False)
    directions = _fix_signs(vh[:k])
    return directions.float(), values[:k].float()


def sefa_edits(
    G: Generator,
    components: Sequence[int] = (0, 1, 2, 3, 4),
    *,
    layers: LayerSpec = "all",
    edit_layers: LayerSpec = None,
    channel_normalized: bool = False,
) -> list[Edit]:
    """One edit per SeFa component: ``w+[:, edit_layers] += factor * n_c`` (n_c a unit vector).

    Args:
        components: indices of the directions (0 = largest singular value).
        layers: synthesis convs factorised.
        edit_layers: w+ layers the direction moves; None = the factorised convs' w+ indices
            (:func:`modulated_convs`).
    """
    comps = [int(c) for c in components]
    if not comps or min(comps) < 0:
        raise ValueError(f"components must be non-negative indices, got {comps}")
    directions, values = sefa(G, layers, max(comps) + 1, channel_normalized=channel_normalized)
    convs, w_index = modulated_convs(G)
    conv_idx = resolve_layers(layers, len(convs))
    idx = (
        tuple(w_index[i] for i in conv_idx)
        if edit_layers is None
        else resolve_layers(edit_layers, G.num_ws)
    )
    label = "all" if len(conv_idx) == len(convs) else _label(conv_idx)
    return [
        Edit(
            name=f"sefa/{label}/dir{c}",
            direction=restrict(directions[c].expand(G.num_ws, -1), idx),
            layers=idx,
            info={
                "method": "sefa",
                "component": c,
                "singular_value": float(values[c]),
                "factorised_convs": list(conv_idx),
                "channel_normalized": channel_normalized,
            },
        )
        for c in comps
    ]


def _label(idx: tuple[int, ...]) -> str:
    """``(2, 3, 4, 5)`` -> ``"2-5"``; non-contiguous indices are joined with ``_``."""
    if idx == tuple(range(idx[0], idx[-1] + 1)):
        return f"{idx[0]}-{idx[-1]}" if len(idx) > 1 else str(idx[0])
    return "_".join(map(str, idx))
