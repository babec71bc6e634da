"""The identity slot's similarity: a face-recognition network (facenet-pytorch, ArcFace IR-SE50)
for faces, or a self-supervised ResNet-50's pooled features (MoCo v2, as e4e) for other domains."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.core.errors import LsapFileError, WeightsUnavailableError, one_line_reason
from lsap.losses.base import LossInputs, LossTerm

# FFHQ-aligned faces: the crop pSp/e4e/LSAP take from a 256 px image before the ID network.
FACE_CROP_256 = (35, 223, 32, 220)  # rows, columns
RANDOM_WEIGHTS_SEED = 0  # weights="random": the same fixed network in every process
# weights="random": batch-norm statistics measured on this many seeded smooth-noise images.
RANDOM_CALIBRATION_IMAGES = 8
RANDOM_CALIBRATION_GRID = 8  # the noise is bilinearly upsampled from a GRID x GRID lattice


class FaceEmbedder(nn.Module):
    """Images [N, 3, H, W] in [-1, 1] -> unit embeddings [N, E] whose dot product is the ``id``
    similarity (E = 512 for the face networks, 2048 for moco).

    Args:
        backend: "facenet" (InceptionResnetV1, 160 px input) or "arcface" (IR-SE50, 112 px) for
            FFHQ-aligned faces; "moco" (torchvision ResNet-50 without its head, 224 px, images
            fed in [-1, 1] as e4e's MoCo similarity does) for any other domain.
        weights: facenet: "vggface2"/"casia-webface" (downloaded by facenet-pytorch), a path to a
            state dict, or "random"; arcface: a path to ``model_ir_se50.pth`` or "random"; moco: a
            path to ``moco_v2_800ep_pretrain.pth.tar`` / e4e's ``moco_v2_800ep_pretrain.pt``
            (``lsap.io.moco``) or "random".
            "random" is a fixed random network (a stand-in for tests and offline runs, *not* a
            face-recognition or MoCo network) whose batch-norm statistics are measured on a fixed
            batch of smooth noise: with the untrained statistics (mean 0, variance 1) a random
            InceptionResnetV1 maps every image to the same embedding, so it could not tell a
            reconstruction from another face. The random ResNet-50 also starts its residual
            branches at zero (``ResNet50Features(zero_init_residual=True)``), for the same reason.
        crop: take the FFHQ face crop (as pSp/e4e) before resizing; off for already-tight crops
            and for non-face domains.
    """

    def __init__(
        self, backend: str = "facenet", weights: str = "vggface2", crop: bool = True
    ) -> None:
        super().__init__()
        self.backend, self.crop = backend, crop
        with torch.random.fork_rng(devices=[]):  # random weights are made on the CPU
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            net = self._build(backend, weights)
            if weights == "random":
                _calibrate_batch_norm(net, self.size)
        self.net = net.eval().requires_grad_(False)

    def _build(self, backend: str, weights: str) -> nn.Module:
        if backend == "facenet":
            from facenet_pytorch import InceptionResnetV1

            pretrained = weights if weights in ("vggface2", "casia-webface") else None
            try:
                net = InceptionResnetV1(pretrained=pretrained, classify=False)
            except Exception as e:  # facenet-pytorch's download failed (offline)
                raise WeightsUnavailableError(
                    f"facenet-pytorch's {weights} face-recognition weights",
                    one_line_reason(e),
                    "id.weights",
                    " (an InceptionResnetV1 state dict), or =random for a stand-in that is not "
                    "a face-recognition network",
                ) from e
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
        elif backend == "moco":
            if weights == "random":
                from lsap.nets.resnet_features import ResNet50Features

                net = ResNet50Features(zero_init_residual=True)
            else:
                from lsap.io.moco import load_moco_resnet50

                net = load_moco_resnet50(weights)
            self.size = 224
        else:
            raise ValueError(f"ID backend must be 'facenet', 'arcface' or 'moco', got {backend!r}")
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


@torch.no_grad()
def _calibrate_batch_norm(net: nn.Module, size: int) -> None:
    """Set every batch norm's running statistics to those of seeded smooth noise [n, 3, size, size].

    Runs under the caller's fixed seed, so the stand-in is the same network in every process.
    """
    n, grid = RANDOM_CALIBRATION_IMAGES, RANDOM_CALIBRATION_GRID
    lattice = torch.rand(n, 3, grid, grid) * 2 - 1
    images = F.interpolate(lattice, size=(size, size), mode="bilinear", align_corners=False)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    net.eval()  # dropout off: only the batch norms see batch statistics
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: one batch sets the statistics exactly
        bn.train()
    net(images)
    net.eval()
    for bn in norms:
        bn.momentum = 0.1  # torch's default, as the loaded networks have


def _state(path: str) -> dict:
    from lsap.assets import resolve

    p = resolve(path)
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
