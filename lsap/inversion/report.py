"""Per-image fidelity and alignment of inversions: MSE, PSNR, SSIM, LPIPS, ID similarity, SNCD."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lsap.alignment.sncd import sncd
from lsap.metrics.image import mse, psnr, ssim
from lsap.nets.stylegan2 import Generator


class ReconstructionMetrics(nn.Module):
    """``metrics(images, targets, w_plus) -> {name: [N]}`` (no gradients).

    Keys: ``mse`` and ``psnr`` (dB, capped at 100) on uint8-quantised [0, 1] images, ``ssim``,
    ``lpips`` (distance, lower is better), ``id`` (cosine similarity of face embeddings, higher is
    better), ``sncd`` (total over the num_ws layers, lower is better). A metric whose network is
    None is NaN.

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
        self.lpips, self.face = lpips, face

    @torch.no_grad()
    def forward(self, images: Tensor, targets: Tensor, w_plus: Tensor) -> dict[str, Tensor]:
        """images, targets [N, 3, R, R] in [-1, 1]; w_plus [N, num_ws, w_dim] -> {name: [N]}."""
        N = images.shape[0]
        nan = images.new_full((N,), float("nan"))
        anchors = [getattr(self, f"anchor_{i}") for i in range(self.num_anchors)]
        out = {
            "mse": mse(images, targets),
            "psnr": psnr(images, targets),
            "ssim": ssim(images, targets),
            "lpips": self.lpips.distance(images, targets) if self.lpips is not None else nan,
            "id": (self.face(images) * self.face(targets)).sum(1) if self.face is not None else nan,
            "sncd": sncd(self._G[0], w_plus, anchors)[0],
        }
        return {k: v.float() for k, v in out.items()}
