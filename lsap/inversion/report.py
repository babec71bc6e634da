"""Per-image fidelity and alignment of inversions: MSE, PSNR, SSIM, LPIPS, ID similarity, SNCD.

The fidelity numbers are the one definition of ``lsap.metrics.scorer.Scorer`` (the scorer of
lsap-eval and the demo): images are scored as their PNGs, quantised to uint8 first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lsap.alignment.sncd import sncd
from lsap.metrics.scorer import FIDELITY_METRICS, Scorer
from lsap.nets.stylegan2 import Generator


class ReconstructionMetrics(nn.Module):
    """``metrics(images, targets, w_plus) -> {name: [N]}`` (no gradients).

    Keys: ``mse`` and ``psnr`` (dB, capped at 100) on uint8-quantised [0, 1] images, ``ssim``,
    ``lpips`` (distance, lower is better), ``id`` (cosine similarity of face embeddings, higher is
    better), all as :meth:`Scorer.fidelity` computes them, and ``sncd`` (total over the num_ws
    layers, lower is better). A metric whose network is None is NaN.

    Args:
        G: the generator (its affine maps, for SNCD); not a submodule.
        anchors: S^N anchors, num_ws tensors [C_i].
        lpips: an ``LPIPSLoss`` (its ``distance``) or None.
        face: a ``FaceEmbedder`` or None.
    """

    def __init__(
        self,
        G: Generator,
        anchors: Sequence[Tensor],
        lpips: nn.Module | None = None,
        face: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self._G = [G]
        for i, a in enumerate(anchors):
            self.register_buffer(f"anchor_{i}", a.detach().float())
        self.num_anchors = len(anchors)
        have = {"lpips": lpips is not None, "id": face is not None}
        self.scorer = Scorer(  # G's valid region (generator.crop) is what is scored
            [m for m in FIDELITY_METRICS if have.get(m, True)], lpips=lpips, face=face, crop=G.crop
        )

    @torch.no_grad()
    def forward(self, images: Tensor, targets: Tensor, w_plus: Tensor) -> dict[str, Tensor]:
        """images, targets [N, 3, R, R] in [-1, 1]; w_plus [N, num_ws, w_dim] -> {name: [N]}."""
        nan = images.new_full((images.shape[0],), float("nan"))
        scores = self.scorer.fidelity(targets, images)
        anchors = [getattr(self, f"anchor_{i}") for i in range(self.num_anchors)]
        out = {k: scores.get(k, nan) for k in FIDELITY_METRICS}
        out["sncd"] = sncd(self._G[0], w_plus, anchors)[0]
        return {k: v.float() for k, v in out.items()}
