"""LPIPS perceptual distance (the ``lpips`` package, VGG or AlexNet), per image."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from lsap.core.errors import LsapFileError, WeightsUnavailableError, one_line_reason
from lsap.losses.base import LossInputs, LossTerm
from lsap.nets.crop import fit_size

RANDOM_BACKBONE_SEED = 0
# Shorter side below which a net's strided layers leave no pixels: smaller inputs (the 32 x 24
# valid region of a toy non-square generator) are upsampled (bilinear) to it first.
MIN_SIDE = {"alex": 32, "vgg": 16}


class LPIPSLoss(LossTerm):
    """LPIPS between images and targets (both [N, 3, H, W] in [-1, 1]) -> [N].

    Args:
        net: "vgg" (projector / LSAP_O) or "alex" (e4e / LSAP_E).
        backbone: weights of the feature network: "torchvision" (downloaded and cached by
            torchvision, the real LPIPS), a path to a torchvision ``vgg16``/``alexnet`` state dict
            (offline clusters), or "random" (a fixed random network: a deterministic stand-in for
            tests and offline demos, *not* LPIPS). The learned linear heads ship with ``lpips``.
        resize: area-downsample inputs larger than this (longer side, aspect kept) before the
            network (256 as in the StyleGAN2 projector and pSp/e4e); None keeps the size. Inputs
            with a shorter side below ``MIN_SIDE`` are upsampled to it (aspect kept).
    """

    needs = ("images", "targets")

    def __init__(
        self, net: str = "vgg", backbone: str = "torchvision", resize: int | None = 256
    ) -> None:
        super().__init__()
        import lpips  # heavy import, only when the term is used

        if net not in ("vgg", "alex"):
            raise ValueError(f"LPIPS net must be 'vgg' or 'alex', got {net!r}")
        self.net_name, self.backbone, self.resize = net, str(backbone), resize
        random_backbone = backbone != "torchvision"
        rng = torch.random.fork_rng() if random_backbone else contextlib.nullcontext()
        with rng:
            if random_backbone:
                torch.manual_seed(RANDOM_BACKBONE_SEED)
            try:
                model = lpips.LPIPS(net=net, pnet_rand=random_backbone, verbose=False)
            except Exception as e:  # torchvision's download failed (offline)
                raise WeightsUnavailableError(
                    f"LPIPS({net})'s pretrained torchvision {net} backbone",
                    one_line_reason(e),
                    "lpips.backbone",
                    " (a torchvision state dict), or =random for a stand-in that is not LPIPS",
                ) from e
        if random_backbone and backbone != "random":
            from lsap.assets import resolve

            _load_backbone(model, resolve(backbone))
        self.model = model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPSLoss:
        super().train(mode)
        self.model.eval()  # dropout stays off
        return self

    def forward(self, inputs: LossInputs) -> Tensor:
        return self.distance(inputs.images, inputs.targets)

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """LPIPS(a, b) per image, a and b [N, 3, H, W] in [-1, 1] -> [N].

        Larger images are area-pooled so their longer side is ``resize`` (aspect kept: the valid
        region of a non-square generator is not squashed)."""
        h, w = a.shape[-2:]
        if self.resize is not None and max(h, w) > self.resize:
            size = fit_size(h, w, self.resize)
            a = F.adaptive_avg_pool2d(a, size)
            b = F.adaptive_avg_pool2d(b, size)
        small = MIN_SIDE[self.net_name]
        if min(a.shape[-2:]) < small:  # the net's pooling would run out of pixels (32 x 24 toys)
            scale = small / min(a.shape[-2:])
            size = (math.ceil(a.shape[-2] * scale), math.ceil(a.shape[-1] * scale))
            a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
            b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
        return self.model(a, b).flatten()


def _load_backbone(model, path: Path) -> None:
    """Load torchvision ``features.{i}.*`` weights into lpips' sliced backbone."""
    if not path.is_file():
        raise LsapFileError(path, "no such file (LPIPS backbone weights)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    mapped = {}
    for slice_name, block in model.net.named_children():
        for idx, layer in block.named_children():
            for p in dict(layer.named_parameters()):
                key = f"features.{idx}.{p}"
                if key not in state:
                    raise LsapFileError(
                        path, f"missing key '{key}' of a torchvision {model.pnet_type}"
                    )
                mapped[f"{slice_name}.{idx}.{p}"] = state[key]
    model.net.load_state_dict(mapped, strict=True)
