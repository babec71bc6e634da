"""LPIPS perceptual distance (the ``lpips`` package, VGG or AlexNet), per image."""

from __future__ import annotations

import contextlib
import math
import weakref
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
        self._targets = _TargetFeatures()  # the last targets' features (see distance)

    def train(self, mode: bool = True) -> LPIPSLoss:
        super().train(mode)
        self.model.eval()  # dropout stays off
        return self

    def forward(self, inputs: LossInputs) -> Tensor:
        return self.distance(inputs.images, inputs.targets)

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """LPIPS(a, b) per image, a and b [N, 3, H, W] in [-1, 1] -> [N].

        Larger images are area-pooled so their longer side is ``resize`` (aspect kept: the valid
        region of a non-square generator is not squashed).

        The features of ``b`` are kept while ``b`` is the same, unchanged tensor without
        gradient (:class:`_TargetFeatures`): an optimisation compares a new ``a`` with the same
        targets every step, and their pass through the network (a third of LPIPS's work with
        ``a``'s backward) is done once. The numbers are those of ``lpips.LPIPS.forward``."""
        feats_a = self._features(a)
        feats_b = self._targets.get(b, self) if self._targets.usable(b, self) else None
        if feats_b is None:
            feats_b = self._features(b)
            if self._targets.usable(b, self):
                self._targets.put(b, self, feats_b)
        total = 0
        for lin, fa, fb in zip(self.model.lins, feats_a, feats_b, strict=True):
            total = total + lin((fa - fb) ** 2).mean([2, 3], keepdim=True)  # [N, 1, 1, 1]
        return total.flatten()

    def _features(self, x: Tensor) -> list[Tensor]:
        """The unit-normalised features [N, C_k, H_k, W_k] of images [N, 3, H, W] in [-1, 1] at
        each of the net's layers, after the resizing of :meth:`distance`."""
        import lpips

        h, w = x.shape[-2:]
        if self.resize is not None and max(h, w) > self.resize:
            x = F.adaptive_avg_pool2d(x, fit_size(h, w, self.resize))
        small = MIN_SIDE[self.net_name]
        if min(x.shape[-2:]) < small:  # the net's pooling would run out of pixels (32 x 24 toys)
            scale = small / min(x.shape[-2:])
            size = (math.ceil(x.shape[-2] * scale), math.ceil(x.shape[-1] * scale))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return [lpips.normalize_tensor(f) for f in self.model.net(self.model.scaling_layer(x))]


class _TargetFeatures:
    """One batch of target features, valid while its target tensor lives and is unchanged.

    The entry holds only a weak reference to the targets (to the tensor a view was taken of, so
    the same crop of the same targets taken anew each step still matches; the entry is dropped
    when they are freed, so a new tensor at the same address never matches) and is keyed by what
    changes the features: the view's offset, shape and strides, the version counter (any in-place
    write, also through another view), the network's parameter and buffer versions, and the
    autocast and inference-mode state. Copies of the module start empty.
    """

    def __init__(self) -> None:
        self._entry: tuple[weakref.ref, tuple, list[Tensor]] | None = None

    def __deepcopy__(self, memo) -> _TargetFeatures:
        return _TargetFeatures()

    def __getstate__(self) -> dict:
        return {"_entry": None}

    @staticmethod
    def usable(b: Tensor, loss: LPIPSLoss) -> bool:
        """Whether ``b``'s features can be kept: nothing about them needs a gradient."""
        return not b.requires_grad and not any(p.requires_grad for p in loss.model.parameters())

    @staticmethod
    def _key(b: Tensor, loss: LPIPSLoss) -> tuple:
        kind = b.device.type
        return (
            (b.storage_offset(), tuple(b.shape), b.stride(), b.dtype),
            b._version,
            tuple(t._version for t in loss.model.parameters()),
            tuple(t._version for t in loss.model.buffers()),
            torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind),
            torch.is_inference_mode_enabled(),
        )

    def get(self, b: Tensor, loss: LPIPSLoss) -> list[Tensor] | None:
        if self._entry is None:
            return None
        ref, key, feats = self._entry
        return feats if ref() is _root(b) and key == self._key(b, loss) else None

    def put(self, b: Tensor, loss: LPIPSLoss, feats: list[Tensor]) -> None:
        def drop(dead: weakref.ref) -> None:  # the targets are gone: so are their features
            if self._entry is not None and self._entry[0] is dead:
                self._entry = None

        self._entry = (weakref.ref(_root(b), drop), self._key(b, loss), [f.detach() for f in feats])


def _root(b: Tensor) -> Tensor:
    """The tensor ``b`` is a view of, or ``b``."""
    return b._base if b._base is not None else b


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
