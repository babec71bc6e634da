"""S^N Cosine Distance (SNCD): the alignment of latent codes with the synthetic distribution.

Metric (LSAP.md): ``SNCD_i = 1 - <n_i(w+_i), a_i> / ||a_i||`` per w+ index i, ``SNCD = sum_i SNCD_i``.
Training loss (reference): ``L_sncd = - sum_{i in layers} mean_batch <n_i, a_i>`` with the
un-normalised anchor (layers weighted by ``||a_i||``), or with ``anchor_normalized=True`` the
normalised anchor (``- sum_i mean_batch cos_i``). Both are differentiable in w+.

Hinge variant (beyond the paper; ``loss.options.sncd.mode: hinge``): the reference loss is lowest
at the anchors, where no real sample sits, so a large weight pulls codes towards "the average
face". ``L_hinge = sum_{i in layers} mean_batch ||a_i|| * max(0, SNCD_i - t_i)`` stops pulling a
layer once it is as aligned as the generator's samples (``t_i``: the samples' per-layer SNCD,
``lsap.alignment.reference.sample_sncd``). Above its target a layer's gradient is exactly the
reference loss's (``||a_i|| * d SNCD_i = -d <n_i, a_i>``); at or below it the layer contributes 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lsap.alignment.style import NORM_EPS, normalize_styles
from lsap.nets.stylegan2 import Generator

StyleSource = Generator | Sequence[Tensor]


def _resolve_layers(layers: Sequence[int] | None, num_layers: int) -> list[int]:
    if layers is None:
        return list(range(num_layers))
    out = [int(i) for i in layers]
    if not out or min(out) < -num_layers or max(out) >= num_layers:
        raise ValueError(f"layers {out} must be non-empty indices into {num_layers} w+ layers")
    return [i % num_layers for i in out]


def _styles(source: StyleSource, w_plus: Tensor | None, anchors: Sequence[Tensor]) -> list[Tensor]:
    if hasattr(source, "style_space"):  # a generator of either family
        if w_plus is None:
            raise ValueError("sncd(G, w_plus, anchors) needs w_plus when given a generator")
        styles = source.style_space(w_plus)
    else:
        styles = list(source)
    if len(styles) != len(anchors):
        raise ValueError(f"{len(styles)} style layers but {len(anchors)} anchors")
    for i, (s, a) in enumerate(zip(styles, anchors, strict=True)):
        if s.ndim != 2 or s.shape[1] != a.shape[-1]:
            raise ValueError(
                f"layer {i}: style {tuple(s.shape)} does not fit anchor {tuple(a.shape)}"
            )
    return styles


def sncd(
    source: StyleSource,
    w_plus: Tensor | None,
    anchors: Sequence[Tensor],
    *,
    layers: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """SNCD of each code (the evaluation metric).

    Args:
        source: the generator, or precomputed styles ``[s_i [N, C_i]]`` (then ``w_plus`` may be None).
        w_plus: codes [N, num_ws, w_dim] (a W code [N, w_dim] is broadcast).
        anchors: ``compute_anchors(G, num_samples, seed)``, num_ws tensors [C_i].
        layers: w+ indices to score (default all, in order).

    Returns:
        ``(total [N], per_layer [N, L])`` with ``L = len(layers)`` (num_ws by default) and
        ``total = per_layer.sum(1)``. Each ``SNCD_i`` lies in [0, 2]; 0 means the style points
        exactly along the anchor. Differentiable w.r.t. ``w_plus``.
    """
    styles = _styles(source, w_plus, anchors)
    idx = _resolve_layers(layers, len(styles))
    normed = normalize_styles([styles[i] for i in idx])
    cols = []
    for n, i in zip(normed, idx, strict=True):
        a = anchors[i].to(n)
        cols.append(1.0 - n @ (a / a.norm().clamp_min(NORM_EPS)))
    per_layer = torch.stack(cols, dim=1)
    return per_layer.sum(1), per_layer


def alignment_per_sample(normed: Sequence[Tensor], anchors: Sequence[Tensor]) -> Tensor:
    """The SNCD loss of each sample: ``- sum_i <n_i, a_i>`` (the one place its formula lives).

    Args:
        normed: normalised styles ``n_i`` [N, C_i] of the scored layers (``normalize_styles``).
        anchors: the matching anchors [C_i] (un-normalised, or unit vectors for the
            ``anchor_normalized`` variant); moved to each style's device and dtype.

    Returns:
        [N]; its batch mean is :func:`sncd_loss`.
    """
    total = normed[0].new_zeros(normed[0].shape[0])
    for n, a in zip(normed, anchors, strict=True):
        total = total - n @ a.to(n)
    return total


def sncd_loss(
    source: StyleSource,
    w_plus: Tensor | None,
    anchors: Sequence[Tensor],
    *,
    layers: Sequence[int] | None = None,
    anchor_normalized: bool = False,
) -> Tensor:
    """The SNCD alignment loss (a scalar, batch-mean, summed over ``layers``).

    ``anchor_normalized=False`` (reference, default): ``-sum_i mean_n <n_i, a_i>``; its minimum
    over codes is ``-sum_i ||a_i||``. ``True``: ``-sum_i mean_n cos_i``, minimum ``-len(layers)``.
    Lowering it lowers SNCD; both are differentiable in ``w_plus``.
    """
    styles = _styles(source, w_plus, anchors)
    idx = _resolve_layers(layers, len(styles))
    normed = normalize_styles([styles[i] for i in idx])
    used = [anchors[i] for i in idx]
    if anchor_normalized:
        used = [a / a.norm().clamp_min(NORM_EPS) for a in used]
    return alignment_per_sample(normed, used).mean()


def hinge_per_sample(
    normed: Sequence[Tensor], anchors: Sequence[Tensor], targets: Sequence[Tensor | float]
) -> Tensor:
    """``sum_i ||a_i|| * max(0, 1 - <n_i, a_i> / ||a_i|| - t_i)`` per sample.

    Args:
        normed: unit styles ``n_i [N, C_i]`` of the scored layers.
        anchors: their anchors ``a_i [C_i]`` (unit vectors give weight 1 per layer, the
            ``anchor_normalized`` form).
        targets: per-layer target ``t_i`` (the samples' ``SNCD_i``), scalars or 0-d tensors.

    Returns:
        [N], >= 0; 0 exactly when every layer's ``SNCD_i <= t_i``.
    """
    total = normed[0].new_zeros(normed[0].shape[0])
    for n, a, t in zip(normed, anchors, targets, strict=True):
        a = a.to(n)
        norm = a.norm().clamp_min(NORM_EPS)
        layer_sncd = 1.0 - n @ (a / norm)
        total = total + norm * torch.relu(layer_sncd - torch.as_tensor(t).to(n))
    return total


def sncd_hinge_loss(
    source: StyleSource,
    w_plus: Tensor | None,
    anchors: Sequence[Tensor],
    target: Tensor,
    *,
    layers: Sequence[int] | None = None,
    anchor_normalized: bool = False,
) -> Tensor:
    """The hinge variant of the alignment loss (a scalar, batch-mean, summed over ``layers``).

    Args:
        target: [num_ws] per-layer SNCD the codes need not go below
            (``SampleSNCD.layer_target``).
        anchor_normalized: False (default): layer i weighted by ``||a_i||`` as in the reference
            loss; True: weight 1.

    Returns:
        ``mean_n sum_i w_i * max(0, SNCD_i - t_i)``: 0 where every scored layer is at least as
        aligned as its target, positive beyond; differentiable in ``w_plus``.
    """
    styles = _styles(source, w_plus, anchors)
    if target.shape != (len(styles),):
        raise ValueError(
            f"target must be [{len(styles)}] (one per layer), got {tuple(target.shape)}"
        )
    idx = _resolve_layers(layers, len(styles))
    normed = normalize_styles([styles[i] for i in idx])
    sel = [anchors[i] for i in idx]
    if anchor_normalized:
        sel = [a / a.norm().clamp_min(NORM_EPS) for a in sel]
    return hinge_per_sample(normed, sel, [target[i] for i in idx]).mean()


@torch.no_grad()
def sncd_batched(
    G: Generator, codes: Tensor, anchors: Sequence[Tensor], *, batch_size: int = 1000
) -> tuple[Tensor, Tensor]:
    """:func:`sncd` over many codes in batches (no gradients); results on the CPU.

    Args:
        codes: [N, num_ws, w_dim] or [N, w_dim], on any device (batches move to G's device).

    Returns:
        ``(total [N], per_layer [N, num_ws])``.
    """
    device = G.w_avg.device
    totals, layers = [], []
    for chunk in codes.split(batch_size):
        t, p = sncd(G, chunk.to(device), anchors)
        totals.append(t.cpu())
        layers.append(p.cpu())
    return torch.cat(totals), torch.cat(layers)
