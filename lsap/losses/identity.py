"""Identity similarity with a face-recognition network (facenet-pytorch or ArcFace IR-SE50)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.core.errors import LsapFileError
from lsap.losses.base import LossInputs, LossTerm

# FFHQ-aligned faces: the crop pSp/e4e/LSAP take from a 256 px image before the ID network.
FACE_CROP_256 = (35, 223, 32, 220)  # rows, columns
RANDOM_WEIGHTS_SEED = 0  # weights="random": the same fixed network in every process


class FaceEmbedder(nn.Module):
    """Images [N, 3, H, W] in [-1, 1] (FFHQ-aligned) -> unit face embeddings [N, 512].

    Args:
        backend: "facenet" (InceptionResnetV1, 160 px input) or "arcface" (IR-SE50, 112 px).
        weights: facenet: "vggface2"/"casia-webface" (downloaded by facenet-pytorch), a path to a
            state dict, or "random" (tests only); arcface: a path to ``model_ir_se50.pth``.
        crop: take the FFHQ face crop (as pSp/e4e) before resizing; off for already-tight crops.
    """

    def __init__(
        self, backend: str = "facenet", weights: str = "vggface2", crop: bool = True
    ) -> None:
        super().__init__()
        self.backend, self.crop = backend, crop
        with torch.random.fork_rng(devices=[]):  # random weights are made on the CPU
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            net = self._build(backend, weights)
        self.net = net.eval().requires_grad_(False)

    def _build(self, backend: str, weights: str) -> nn.Module:
        if backend == "facenet":
            from facenet_pytorch import InceptionResnetV1

            pretrained = weights if weights in ("vggface2", "casia-webface") else None
            net = InceptionResnetV1(pretrained=pretrained, classify=False)
            if pretrained is None and weights != "random":
                missing, _ = net.load_state_dict(_state(weights), strict=False)  # logits optional
                if missing:
                    raise LsapFileError(
                        weights, f"not InceptionResnetV1 weights (missing {missing[:3]})"
                    )
            self.size = 160
        elif backend == "arcface":
            from lsap.nets.irse import IRSE50

            net = IRSE50()
            if weights != "random":
                net.load_state_dict(_state(weights), strict=True)
            self.size = 112
        else:
            raise ValueError(f"ID backend must be 'facenet' or 'arcface', got {backend!r}")
        return net

    def train(self, mode: bool = True) -> FaceEmbedder:
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        x = images
        if self.crop:
            if x.shape[-1] != 256:
                x = F.adaptive_avg_pool2d(x, 256)
            r0, r1, c0, c1 = FACE_CROP_256
            x = x[:, :, r0:r1, c0:c1]
        x = F.adaptive_avg_pool2d(x, self.size)
        return F.normalize(self.net(x), dim=1)


def _state(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise LsapFileError(p, "no such file (face-recognition weights)")
    state = torch.load(p, map_location="cpu", weights_only=True)
    return state.get("state_dict", state)


class IDLoss(LossTerm):
    """``1 - cos(embed(images), embed(targets))`` per image, in [0, 2]."""

    needs = ("images", "targets")

    def __init__(self, embedder: FaceEmbedder) -> None:
        super().__init__()
        self.embedder = embedder

    def forward(self, inputs: LossInputs) -> Tensor:
        with torch.no_grad():
            target = self.embedder(inputs.targets)
        return 1.0 - (self.embedder(inputs.images) * target).sum(1)
