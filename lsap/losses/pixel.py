"""Pixel reconstruction: mean squared error per image."""

from __future__ import annotations

from torch import Tensor

from lsap.losses.base import LossInputs, LossTerm


class L2Loss(LossTerm):
    """``mean((images - targets)^2)`` per image, images in [-1, 1] -> values in [0, 4]."""

    needs = ("images", "targets")

    def forward(self, inputs: LossInputs) -> Tensor:
        return (inputs.images - inputs.targets).square().flatten(1).mean(1)
