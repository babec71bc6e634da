"""What an edit does to attributes, read by an attribute classifier before and after the edit:
how far the target attribute moves and how still the others stay (editability on labelled
domains such as the toy faces, ``lsap.nets.toy_classifier``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def attribute_edit_effects(
    before: Tensor,
    after: Tensor,
    *,
    target: int,
    binary: Sequence[bool] | Tensor,
    factor: float,
    scalar_step: float = 0.1,
) -> dict[str, float]:
    """Effects of one edit (one factor) on classifier predictions.

    Args:
        before: [N, A] predictions of the unedited images: probabilities for binary attributes,
            values in [0, 1] for scalar ones (``ToyClassifier.predict``).
        after: [N, A] the same for the edited images.
        target: index of the edited attribute.
        binary: [A] True for binary attributes.
        factor: the edit's signed factor (its sign says which way the target should move).
        scalar_step: a scalar target counts as moved when it changes by more than this in the
            factor's direction.

    Returns:
        ``target_delta``: mean change of the target (signed);
        ``target_success``: binary target: of the images on the side the edit leaves (p < 0.5
        for factor > 0, p > 0.5 for factor < 0), the fraction that cross 0.5 (NaN when there
        are none); scalar target: fraction changed by > ``scalar_step`` in the factor's direction;
        NaN for factor 0;
        ``others_abs_delta``: mean over the other attributes of their mean absolute change;
        ``others_max_abs_delta``: the largest of those per-attribute means;
        ``others_flip_rate``: mean over the other binary attributes of the fraction of images
        whose prediction crosses 0.5 (NaN when there is no other binary attribute).
    """
    if before.ndim != 2 or before.shape != after.shape:
        raise ValueError(
            f"before and after must be equal [N, A], got {tuple(before.shape)}, {tuple(after.shape)}"
        )
    A = before.shape[1]
    mask = torch.as_tensor(binary, dtype=torch.bool, device=before.device)
    if mask.shape != (A,) or not 0 <= target < A:
        raise ValueError(f"need binary [{A}] and 0 <= target < {A}")
    before, after = before.float(), after.float()
    delta = after - before  # [N, A]
    t = delta[:, target]
    nan = float("nan")
    if factor == 0:
        success = nan
    elif mask[target]:
        start = before[:, target] < 0.5 if factor > 0 else before[:, target] > 0.5
        end = after[:, target] > 0.5 if factor > 0 else after[:, target] < 0.5
        success = float((start & end).sum() / start.sum()) if start.any() else nan
    else:
        sign = 1.0 if factor > 0 else -1.0
        success = float((sign * t > scalar_step).float().mean())
    others = torch.ones(A, dtype=torch.bool, device=before.device)
    others[target] = False
    per_attr = delta.abs().mean(0)  # [A]
    flips = ((before > 0.5) != (after > 0.5)).float().mean(0)  # [A]
    other_binary = others & mask
    return {
        "target_delta": float(t.mean()),
        "target_success": success,
        "others_abs_delta": float(per_attr[others].mean()) if others.any() else nan,
        "others_max_abs_delta": float(per_attr[others].max()) if others.any() else nan,
        "others_flip_rate": float(flips[other_binary].mean()) if other_binary.any() else nan,
    }


def per_attribute_abs_delta(before: Tensor, after: Tensor) -> Tensor:
    """[A] mean absolute change of each attribute's prediction (before, after [N, A])."""
    if before.ndim != 2 or before.shape != after.shape:
        raise ValueError(
            f"before and after must be equal [N, A], got {tuple(before.shape)}, {tuple(after.shape)}"
        )
    return (after.float() - before.float()).abs().mean(0)


@torch.no_grad()
def attribute_predictions(
    classifier: nn.Module, images: Tensor, *, batch_size: int = 256
) -> Tensor:
    """The classifier's reading of images [N, 3, R, R] in [-1, 1] -> [N, A] in [0, 1].

    Binary attributes as probabilities, scalar ones as values clamped to [0, 1]
    (``ToyClassifier.predict``). Images are quantised to uint8 levels first, as saved PNGs.
    """
    from lsap.metrics.scorer import quantize

    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, R, R], got {tuple(images.shape)}")
    out = [
        classifier.predict(quantize(images[s : s + batch_size]))
        for s in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(out).float() if out else images.new_zeros(0, len(classifier.names))


def attribute_index(names: Sequence[str], edit_name: str) -> int | None:
    """The attribute an edit targets, from its name's last part (``interfacegan/smile`` -> the
    index of ``smile``), or None when no attribute has that name."""
    short = edit_name.rsplit("/", 1)[-1]
    names = list(names)
    return names.index(short) if short in names else None


def attribute_effects(
    before: Tensor, after: Tensor, factor: float, target: int | None, binary: Sequence[bool]
) -> dict[str, float]:
    """Classifier readings before / after one edit [N, A] -> the edit's effects
    (``attribute_edit_effects``); without a target attribute (e.g. a SeFa direction) every
    attribute counts as "other". ``target_shift``: ``target_delta`` signed towards the edit's
    side (> 0: the target moved the intended way), comparable across factors of both signs."""
    if target is not None:
        out = attribute_edit_effects(before, after, target=target, binary=binary, factor=factor)
        return {**out, "target_shift": (1.0 if factor >= 0 else -1.0) * out["target_delta"]}
    per = per_attribute_abs_delta(before, after)  # [A]
    mask = torch.as_tensor(binary, dtype=torch.bool)
    flips = ((before > 0.5) != (after > 0.5)).float().mean(0)[mask]
    return {
        "others_abs_delta": float(per.mean()),
        "others_max_abs_delta": float(per.max()),
        "others_flip_rate": float(flips.mean()) if flips.numel() else math.nan,
    }
