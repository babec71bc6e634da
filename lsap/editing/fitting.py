"""Fit InterFaceGAN directions for many attributes at once and score them on held-out codes.

Codes and labels come from either source of ``lsap-directions`` (labelled generator samples,
:mod:`lsap.editing.labelled_samples`; labelled images, :mod:`lsap.editing.labelled_images`); each
attribute gets one :func:`lsap.editing.fit_direction` on the training rows and a held-out score:
the ROC AUC of the held-out codes' projections on the direction (binary labels) or their Pearson
r with the labels (scalar labels). The directions are written as ``lsap-edit`` reads them
(``directions/<attribute>.pt``) beside ``directions.json``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lsap.core.atomic import atomic_torch_save, atomic_write_json
from lsap.core.hashing import file_sha256
from lsap.editing.interfacegan import FIT_KINDS, fit_direction

log = logging.getLogger(__name__)

FIT_LAYERS = ("mean", "per_layer")
FIT_METHODS = ("boundary", "mean_difference")
DIRECTIONS_DIR = "directions"
SUMMARY_FILE = "directions.json"


@dataclass(frozen=True)
class FitSettings:
    """The ``fit`` and ``split`` settings of ``conf/directions.yaml``, typed once.

    Attributes:
        method: "boundary" (InterFaceGAN: the normal of a linear boundary fitted in whitened
            codes, :func:`lsap.editing.fit_direction`) or "mean_difference" (the codes' mean
            difference between the classes, or their regression on a scalar label,
            :func:`mean_difference_direction`).
        layers: W+ codes -> fitting codes: "mean" (the mean over the w+ layers; one [w_dim]
            direction) or "per_layer" (one boundary per layer; a [num_ws, w_dim] direction with
            unit rows). W codes [N, w_dim] are fitted as they are either way.
        l2, balanced, max_iter: :func:`lsap.editing.fit_direction`'s settings (boundary only).
        heldout: share of the codes held out for scoring, in (0, 1).
        split_seed: seed of the random held-out split (one split for every attribute).
    """

    method: str
    layers: str
    l2: float
    balanced: bool
    max_iter: int
    heldout: float
    split_seed: int

    def __post_init__(self) -> None:
        if self.method not in FIT_METHODS:
            raise ValueError(f"fit.method must be one of {FIT_METHODS}, got {self.method!r}")
        if self.layers not in FIT_LAYERS:
            raise ValueError(f"fit.layers must be one of {FIT_LAYERS}, got {self.layers!r}")
        if not 0 < self.heldout < 1:
            raise ValueError(f"split.heldout must lie in (0, 1), got {self.heldout}")
        if self.l2 < 0 or self.max_iter < 1:
            raise ValueError(
                f"fit.l2 must be >= 0 and fit.max_iter >= 1, got {self.l2}, {self.max_iter}"
            )

    @classmethod
    def from_config(cls, fit: Mapping[str, Any], split: Mapping[str, Any]) -> FitSettings:
        return cls(
            method=str(fit["method"]),
            layers=str(fit["layers"]),
            l2=float(fit["l2"]),
            balanced=bool(fit["balanced"]),
            max_iter=int(fit["max_iter"]),
            heldout=float(split["heldout"]),
            split_seed=int(split["seed"]),
        )


@dataclass
class DirectionFit:
    """One attribute's fitted direction and its scores.

    Attributes:
        attribute, kind: the attribute and "binary" | "scalar".
        direction: float32 [w_dim] unit vector, or [num_ws, w_dim] with unit rows (per_layer),
            pointing towards label 1 / larger values.
        metric: "auc" (binary) or "pearson_r" (scalar); ``value`` its held-out value (None when
            the held-out labels hold one class or are constant).
        num_train, num_heldout: codes fitted and scored.
        label_stat: binary: the share of label 1 among the training codes; scalar: their std.
        projection_std: std of the training codes' projections on the direction (the scale of a
            factor: an edit by this factor moves a code by one such std).
    """

    attribute: str
    kind: str
    direction: Tensor
    metric: str
    value: float | None
    num_train: int
    num_heldout: int
    label_stat: float
    projection_std: float

    def describe(self) -> dict[str, Any]:
        stat = "positive_rate" if self.kind == "binary" else "label_std"
        return {
            "kind": self.kind,
            "shape": list(self.direction.shape),
            f"heldout_{self.metric}": None if self.value is None else round(self.value, 4),
            "num_train": self.num_train,
            "num_heldout": self.num_heldout,
            stat: round(self.label_stat, 4),
            "projection_std": round(self.projection_std, 4),
        }


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U).

    Args:
        scores: [N] any real values; labels: [N] 0/1.

    Returns:
        in [0, 1]; NaN when the labels hold one class.
    """
    labels = labels > 0.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    s = scores.detach().double().cpu()
    sorted_s, order = s.sort()
    # 1-based ranks, tied scores sharing their mean rank
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    mean_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2  # [U]
    ranks = torch.empty_like(s)
    ranks[order] = mean_rank[inverse]
    u = float(ranks[labels.cpu()].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two [N] tensors; NaN when either is constant."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    a, b = a - a.mean(), b - b.mean()
    denom = a.norm() * b.norm()
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def heldout_split(num: int, heldout: float, seed: int) -> tuple[Tensor, Tensor]:
    """Random rows (seeded) split into training and held-out rows.

    Returns:
        ``(train [N - M] long, heldout [M] long)``, each sorted, ``M = round(heldout * N)``
        clamped to [1, N - 2] (a fit needs two rows).

    Raises:
        ValueError for fewer than three rows.
    """
    if num < 3:
        raise ValueError(f"need at least 3 labelled codes to fit and hold out, got {num}")
    m = min(max(round(heldout * num), 1), num - 2)
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    return perm[m:].sort().values, perm[:m].sort().values


def fitting_codes(codes: Tensor, layers: str) -> Tensor:
    """The codes a direction is fitted on.

    Args:
        codes: W [N, w_dim] or W+ [N, num_ws, w_dim].
        layers: "mean" (W+ -> the mean over its layers, [N, w_dim]) or "per_layer" (W+ kept).

    Returns:
        [N, w_dim] or [N, num_ws, w_dim] float32.
    """
    if codes.ndim == 2:
        return codes.float()
    if codes.ndim != 3:
        raise ValueError(
            f"expected codes [N, w_dim] or [N, num_ws, w_dim], got {tuple(codes.shape)}"
        )
    return codes.float().mean(1) if layers == "mean" else codes.float()


def projections(codes: Tensor, mean: Tensor, direction: Tensor) -> Tensor:
    """[N]: positions of codes along a direction, relative to ``mean`` (summed over layers for
    per-layer directions; what an edit by ``factor`` adds ``factor`` to)."""
    x = codes - mean
    if direction.ndim == 1:
        return x @ direction
    return (x * direction).sum((1, 2))


def mean_difference_direction(codes: Tensor, labels: Tensor, *, kind: str) -> Tensor:
    """The direction along which the codes' mean moves with the label, unit length.

    Binary labels: ``mean(codes | 1) - mean(codes | 0)``; scalar labels: the least-squares slope
    of the codes on the label, ``sum_i (x_i - mean x)(y_i - mean y) / sum_i (y_i - mean y)^2``.
    Unlike a boundary normal (``Sigma^-1`` times this), it stays in the directions along which the
    codes vary, which is what moves the image when the codes' covariance is not the generator's
    (codes of an encoder; see docs/commands/lsap-directions.md).

    Args:
        codes: [N, w_dim]; labels: [N] (binary: 0/1).

    Returns:
        float32 [w_dim] on ``codes``' device, pointing towards label 1 / larger values.

    Raises:
        ValueError: a binary label of one class, a constant scalar label, non-finite values.
    """
    if codes.ndim != 2 or labels.shape != (codes.shape[0],):
        raise ValueError(
            f"expected codes [N, w_dim] and labels [N], got {tuple(codes.shape)}, {tuple(labels.shape)}"
        )
    x, y = codes.detach().double().cpu(), labels.detach().double().cpu()
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("codes and labels must be finite")
    if kind == "binary":
        if not ((y == 0) | (y == 1)).all():
            raise ValueError("binary labels must be 0 or 1 (threshold probabilities first)")
        if y.min() == y.max():
            raise ValueError("binary labels hold only one class: no direction to fit")
        d = x[y == 1].mean(0) - x[y == 0].mean(0)
    elif kind == "scalar":
        yc = y - y.mean()
        if float(yc.square().sum()) == 0:
            raise ValueError("scalar labels are constant: no direction to fit")
        d = (x - x.mean(0)).T @ yc / yc.square().sum()
    else:
        raise ValueError(f"kind must be one of {FIT_KINDS}, got {kind!r}")
    norm = d.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise ValueError("the codes do not move with the label (zero mean difference)")
    return (d / norm).to(codes.device, torch.float32)


def fit_attribute(
    attribute: str,
    kind: str,
    train_codes: Tensor,
    train_labels: Tensor,
    heldout_codes: Tensor,
    heldout_labels: Tensor,
    settings: FitSettings,
) -> DirectionFit:
    """Fit one attribute's direction and score it.

    Args:
        train_codes, heldout_codes: fitting codes (:func:`fitting_codes`), [N, w_dim] or
            [N, num_ws, w_dim] (one boundary per layer).
        train_labels, heldout_labels: [N] / [M]; binary 0/1 or scalar values.

    Raises:
        ValueError naming the attribute: labels that cannot be fitted (one class, constant, ...).
    """
    if kind not in FIT_KINDS:
        raise ValueError(f"attribute {attribute!r}: kind must be one of {FIT_KINDS}, got {kind!r}")
    if settings.method == "boundary":
        opts = dict(l2=settings.l2, balanced=settings.balanced, max_iter=settings.max_iter)

        def fit(x: Tensor) -> Tensor:
            return fit_direction(x, train_labels, kind=kind, **opts)
    else:

        def fit(x: Tensor) -> Tensor:
            return mean_difference_direction(x, train_labels, kind=kind)

    try:
        if train_codes.ndim == 2:
            direction = fit(train_codes)  # [w_dim]
        else:  # [num_ws, w_dim], unit rows
            direction = torch.stack([fit(train_codes[:, k]) for k in range(train_codes.shape[1])])
    except ValueError as e:
        raise ValueError(f"attribute {attribute!r}: {e}") from None
    direction = direction.cpu()
    mean = train_codes.mean(0)
    proj_train = projections(train_codes, mean, direction)
    proj_heldout = projections(heldout_codes, mean, direction)
    if kind == "binary":
        metric, value = "auc", roc_auc(proj_heldout, heldout_labels)
        stat = float(train_labels.double().mean())
    else:
        metric, value = "pearson_r", pearson(proj_heldout, heldout_labels)
        stat = float(train_labels.double().std())
    if math.isnan(value):
        log.warning("%s: the held-out labels hold one value; no held-out %s", attribute, metric)
    return DirectionFit(
        attribute=attribute,
        kind=kind,
        direction=direction,
        metric=metric,
        value=None if math.isnan(value) else value,
        num_train=int(train_codes.shape[0]),
        num_heldout=int(heldout_codes.shape[0]),
        label_stat=stat,
        projection_std=float(proj_train.std()),
    )


def fit_directions(
    codes: Tensor,
    labels: Tensor,
    attributes: Sequence[str],
    kinds: Sequence[str],
    settings: FitSettings,
    *,
    heldout: tuple[Tensor, Tensor] | None = None,
) -> list[DirectionFit]:
    """Fit every attribute on the same codes.

    Args:
        codes: W [N, w_dim] or W+ [N, num_ws, w_dim] (reduced by ``settings.layers``).
        labels: [N, A] (binary columns 0/1), columns in ``attributes`` order.
        attributes, kinds: [A] names and "binary" | "scalar".
        heldout: ``(codes [M, ...], labels [M, A])`` to score on; None = hold out
            ``settings.heldout`` of the rows (seed ``settings.split_seed``) and fit on the rest.

    Returns:
        one :class:`DirectionFit` per attribute, in order.
    """
    if (
        labels.ndim != 2
        or labels.shape != (codes.shape[0], len(attributes))
        or len(kinds) != len(attributes)
    ):
        raise ValueError(
            f"expected labels [N, A] for codes [N, ...] and A attributes/kinds, got codes "
            f"{tuple(codes.shape)}, labels {tuple(labels.shape)}, {len(attributes)} attributes, "
            f"{len(kinds)} kinds"
        )
    x = fitting_codes(codes, settings.layers)
    if heldout is None:
        train, held = heldout_split(x.shape[0], settings.heldout, settings.split_seed)
        x_train, y_train, x_held, y_held = x[train], labels[train], x[held], labels[held]
    else:
        x_train, y_train = x, labels
        x_held, y_held = fitting_codes(heldout[0], settings.layers), heldout[1]
    return [
        fit_attribute(a, k, x_train, y_train[:, i], x_held, y_held[:, i], settings)
        for i, (a, k) in enumerate(zip(attributes, kinds, strict=True))
    ]


def write_directions(
    out: str | Path, fits: Sequence[DirectionFit], summary: Mapping[str, Any]
) -> dict[str, Any]:
    """Write ``<out>/directions/<attribute>.pt`` (float32 tensors, as ``lsap-edit
    editing=interfacegan`` reads them) and, last, ``<out>/directions.json``, all atomically.

    Args:
        summary: further entries of directions.json (source, settings, provenance).

    Returns:
        the JSON written: ``{"directions": {attribute: {file, sha256, kind, shape,
        heldout_auc | heldout_pearson_r, num_train, num_heldout, ...}}, **summary}``.
    """
    out = Path(out)
    entries = {}
    for fit in fits:
        path = out / DIRECTIONS_DIR / f"{fit.attribute}.pt"
        atomic_torch_save(path, fit.direction.detach().float().cpu().contiguous().clone())
        entries[fit.attribute] = {
            "file": f"{DIRECTIONS_DIR}/{fit.attribute}.pt",
            "sha256": file_sha256(path),
            **fit.describe(),
        }
    result = {"directions": entries, **summary}
    atomic_write_json(out / SUMMARY_FILE, result)
    return result
