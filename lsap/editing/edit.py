"""An edit: a direction in W+ restricted to some layers, and how a factor moves a code along it.

Every method (InterFaceGAN, GANSpace, SeFa) produces an :class:`Edit`; applying it is the same
for all of them, so the editing job and the evaluation treat them alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lsap.nets.stylegan2 import broadcast_w

LayerSpec = None | str | int | slice | range | Sequence[int]


def resolve_layers(layers: LayerSpec, num_ws: int) -> tuple[int, ...]:
    """The w+ indices a layer spec selects, sorted.

    Args:
        layers: ``None`` or ``"all"`` (every layer); ``"start:end"`` (a half-open range, Python
            slice rules, either end optional: ``"7:8"`` is layer 7 only, ``":4"`` layers 0-3); one
            int; a ``slice``/``range``; or a list of indices (negative ones count from the end).
        num_ws: number of w+ layers of the generator.

    Raises:
        ValueError: an index outside ``[-num_ws, num_ws)``, an empty selection or a malformed spec.
    """
    if layers is None or (isinstance(layers, str) and layers.strip() == "all"):
        return tuple(range(num_ws))
    if isinstance(layers, str):
        parts = layers.split(":")
        if len(parts) != 2:
            raise ValueError(f"layer range {layers!r} must be 'all' or 'start:end'")
        try:
            bounds = [int(p) if p.strip() else None for p in parts]
        except ValueError:
            raise ValueError(f"layer range {layers!r} must be 'all' or 'start:end'") from None
        for b in bounds:
            if b is not None and not -num_ws <= b <= num_ws:
                raise ValueError(f"layer range {layers!r} is outside the {num_ws} w+ layers")
        layers = slice(*bounds)
    if isinstance(layers, slice):
        idx = list(range(num_ws))[layers]
    elif isinstance(layers, int):
        idx = [layers]
    else:
        idx = [int(i) for i in layers]
    for i in idx:
        if not -num_ws <= i < num_ws:
            raise ValueError(f"layer {i} is outside the {num_ws} w+ layers")
    out = tuple(sorted({i % num_ws for i in idx}))
    if not out:
        raise ValueError(f"layer spec {layers!r} selects no layer of {num_ws}")
    return out


def factor_key(factor: float) -> str:
    """A factor as it appears in keys, folders and tables: ``+3``, ``-1.5``, ``+0``."""
    return f"{float(factor):+g}"


def layer_mask(layers: Iterable[int], num_ws: int) -> Tensor:
    """[num_ws] float mask, 1 on the given w+ indices."""
    mask = torch.zeros(num_ws)
    mask[list(layers)] = 1.0
    return mask


@dataclass(frozen=True)
class Edit:
    """A direction in W+ and the rule that moves codes along it.

    Attributes:
        name: label used for folders, table rows and logged keys, e.g. ``"interfacegan/age"``.
        direction: [num_ws, w_dim]; zero on the layers the edit leaves alone.
        layers: the w+ indices the edit changes.
        absolute: ``False`` (default): ``w + factor * direction`` (linear; factor 0 = identity).
            ``True`` (GANSpace "centred" convention, as e4e/GANInverter apply named edits): on each
            edited layer the code's coordinate along the direction, ``<w - mean, d> / ||d||^2``, is
            set to ``factor`` (so factor 0 moves the code onto the mean's hyperplane).
        mean: [w_dim] origin of the coordinate when ``absolute``.
        info: plain values recorded in provenance (source file, component, singular value, ...).
    """

    name: str
    direction: Tensor
    layers: tuple[int, ...]
    absolute: bool = False
    mean: Tensor | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.direction.ndim != 2:
            raise ValueError(
                f"edit direction must be [num_ws, w_dim], got {tuple(self.direction.shape)}"
            )
        if self.absolute and (self.mean is None or self.mean.shape != self.direction.shape[1:]):
            raise ValueError("an absolute edit needs mean [w_dim]")

    @property
    def num_ws(self) -> int:
        return self.direction.shape[0]

    @property
    def w_dim(self) -> int:
        return self.direction.shape[1]

    def __call__(self, w_plus: Tensor, factor: float) -> Tensor:
        """Edited codes.

        Args:
            w_plus: [N, num_ws, w_dim] (a W code [N, w_dim] is broadcast to every layer).
            factor: how far to move (relative) or the target coordinate (absolute).

        Returns:
            [N, num_ws, w_dim] on w_plus's device and dtype; layers outside ``layers`` are
            bit-identical to the input.
        """
        w_plus = broadcast_w(w_plus, self.num_ws, self.w_dim)
        d = self.direction.to(w_plus)  # [L, D]
        if not self.absolute:
            return w_plus + float(factor) * d.unsqueeze(0)
        mean = self.mean.to(w_plus)  # [D]
        idx = list(self.layers)
        dl = d[idx]  # [l, D]
        coord = ((w_plus[:, idx] - mean) * dl).sum(-1) / dl.square().sum(-1)  # [N, l]
        out = w_plus.clone()
        out[:, idx] = w_plus[:, idx] + (float(factor) - coord).unsqueeze(-1) * dl
        return out

    def factors(self, w_plus: Tensor, factors: Sequence[float]) -> Tensor:
        """All factors at once: [N, num_ws, w_dim] -> [N, F, num_ws, w_dim]."""
        return torch.stack([self(w_plus, f) for f in factors], dim=1)


def restrict(direction: Tensor, layers: tuple[int, ...]) -> Tensor:
    """Zero the rows of a [num_ws, w_dim] direction outside ``layers`` (a copy, float32)."""
    return direction.float() * layer_mask(layers, direction.shape[0]).to(direction.device)[:, None]
