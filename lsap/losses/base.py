"""What a loss term sees, and the contract every term follows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class LossInputs:
    """Everything a loss term may look at for one batch of N images.

    Attributes:
        images: generated images [N, 3, H, W] in [-1, 1].
        targets: target images [N, 3, H, W] in [-1, 1] (same size as ``images``).
        w_plus: the codes [N, num_ws, w_dim] that produced ``images``.
        noise: optimised noise maps (list of [N, 1, R, R]) or None.
        layers: w+ indices active for layer-restricted terms (progressive encoder training);
            None = all layers.
    """

    images: Tensor | None = None
    targets: Tensor | None = None
    w_plus: Tensor | None = None
    noise: Sequence[Tensor] | None = None
    layers: Sequence[int] | None = None


class LossTerm(nn.Module):
    """A named loss term: ``forward(inputs) -> [N]``, one value per sample (lower is better).

    Terms are per sample so that a batch of independent problems (per-image optimisation) stays
    independent, and batch means reproduce the reference losses used in encoder training.
    """

    #: which :class:`LossInputs` fields the term reads (checked before calling it)
    needs: tuple[str, ...] = ()

    def forward(self, inputs: LossInputs) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError
