"""Regularisers on the codes and the noise maps: delta_norm, w_norm, noise_reg."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lsap.losses.base import LossInputs, LossTerm


class DeltaNormLoss(LossTerm):
    """e4e's delta regulariser: ``sum_{i in layers, i > 0} ||w+_i - w+_0||_p`` per sample.

    ``layers`` comes from the progressive stage (indices 0..stage); all layers when None.
    """

    needs = ("w_plus",)

    def __init__(self, p: int = 2) -> None:
        super().__init__()
        self.p = p

    def forward(self, inputs: LossInputs) -> Tensor:
        w = inputs.w_plus
        idx = [i for i in (inputs.layers or range(w.shape[1])) if i > 0]
        if not idx:
            return w.new_zeros(w.shape[0])
        delta = w[:, idx] - w[:, :1]
        return torch.linalg.vector_norm(delta, ord=self.p, dim=2).sum(1)


class WNormLoss(LossTerm):
    """pSp's w_norm: ``||w+ - w_avg||_2`` summed over layers, divided by num_ws, per sample."""

    needs = ("w_plus",)

    def __init__(self, w_avg: Tensor) -> None:
        super().__init__()
        self.register_buffer("w_avg", w_avg.detach().clone())

    def forward(self, inputs: LossInputs) -> Tensor:
        w = inputs.w_plus
        return (w - self.w_avg).norm(dim=2).sum(1) / w.shape[1]


class NoiseRegLoss(LossTerm):
    """StyleGAN2 projector noise regulariser: squared autocorrelation of each noise map at one-
    pixel shifts, over a pyramid of 2x-downsampled copies, summed over maps (per sample).

    Maps are [N, 1, R, R]; a map shared by the batch ([1, 1, R, R]) counts for every sample.
    """

    needs = ("noise",)

    def forward(self, inputs: LossInputs) -> Tensor:
        maps = list(inputs.noise or [])
        if not maps:  # a generator without noise inputs (StyleGAN3): nothing to regularise
            ref = inputs.images if inputs.images is not None else inputs.w_plus
            return ref.new_zeros(ref.shape[0])
        N = max(m.shape[0] for m in maps)
        total = maps[0].new_zeros(N)
        for n in maps:
            while True:
                h = (n * torch.roll(n, shifts=1, dims=3)).mean(dim=(1, 2, 3))
                v = (n * torch.roll(n, shifts=1, dims=2)).mean(dim=(1, 2, 3))
                total = total + h.square() + v.square()
                if n.shape[-1] <= 8:
                    break
                n = F.avg_pool2d(n, 2)
        return total


def normalize_noise_(maps: list[Tensor]) -> None:
    """Re-normalise each noise map in place to zero mean and unit variance, per sample."""
    with torch.no_grad():
        for n in maps:
            mean = n.mean(dim=(1, 2, 3), keepdim=True)
            std = n.std(dim=(1, 2, 3), keepdim=True)
            n.sub_(mean).div_(std)
