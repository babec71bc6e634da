"""Editability on a labelled domain: how an edit moves an attribute classifier's reading.

On the toy domain every factor of variation is a known attribute and a classifier reads them
(``lsap.nets.toy_classifier``), so an edit along an attribute's direction can be scored by what it
does: the target attribute should move towards the edit's side, every other attribute should stay.
Both are measured between the unedited reconstruction and the edited image (both synthesised by
the generator), so the inversion's own error does not count as an edit effect.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


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


def edit_attribute_scores(
    before: Tensor, after: Tensor, factor: float, target: int | None = None
) -> dict[str, Tensor]:
    """Per-image scores of one edit from the classifier's readings before and after it.

    Args:
        before: [N, A] readings of the unedited reconstructions (:func:`attribute_predictions`).
        after: [N, A] readings of the edited images.
        factor: the edit's factor; its sign says which way the target should move (0 counts as +).
        target: index of the attribute the edit is meant to change, or None (every attribute
            counts as "other", e.g. for an unsupervised SeFa direction).

    Returns:
        ``change`` [N, A]: after - before, per attribute;
        ``others_change`` [N]: mean |change| over the attributes other than the target
        (stability: 0 = nothing else moved);
        with a target also ``target_change`` [N]: the target's change signed towards the edit's
        side (> 0: moved the intended way; in [-1, 1]) and ``target_success`` [N]: 1 where the
        target reads on the edit's side after it (> 0.5 for a positive factor, < 0.5 for a
        negative one), NaN for factor 0.
    """
    if before.shape != after.shape or before.ndim != 2:
        raise ValueError(
            f"before and after must be [N, A] of equal shape, got {tuple(before.shape)}, "
            f"{tuple(after.shape)}"
        )
    A = before.shape[1]
    if target is not None and not 0 <= target < A:
        raise ValueError(f"target attribute {target} is outside the {A} attributes")
    change = after - before  # [N, A]
    others = [j for j in range(A) if j != target]
    out = {
        "change": change,
        "others_change": change[:, others].abs().mean(1)
        if others
        else change.new_zeros(change.shape[0]),
    }
    if target is not None:
        sign = 1.0 if factor >= 0 else -1.0
        out["target_change"] = sign * change[:, target]
        if factor == 0:
            out["target_success"] = torch.full_like(change[:, target], float("nan"))
        else:
            side = after[:, target] > 0.5 if factor > 0 else after[:, target] < 0.5
            out["target_success"] = side.float()
    return out


def attribute_index(names: Sequence[str], edit_name: str) -> int | None:
    """The attribute an edit targets, from its name's last part (``interfacegan/smile`` -> the
    index of ``smile``), or None when no attribute has that name."""
    short = edit_name.rsplit("/", 1)[-1]
    names = list(names)
    return names.index(short) if short in names else None
