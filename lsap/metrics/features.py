"""Feature extractors for FID: images [N, 3, H, W] in [-1, 1] -> features [N, D].

- ``inception``: the Inception-v3 FID network (TF 2015-12-05 weights as torch-fidelity ports them,
  2048-d pool features), run by torchmetrics on the uint8 images, as torchmetrics' FID does.
  torch-fidelity downloads the weights on first use; offline, pass their local path.
- ``random``: a fixed, seeded random conv net (64-d). A deterministic stand-in so tests and
  offline demos run without downloads; its numbers are *not* FID.
- ``toy_classifier``: the hidden layer (128-d) of the toy attribute classifier
  (``weights: asset:toy32/classifier.pt``): a trained network that works offline, meaningful on
  the toy domain only. Frechet distances in its feature space are not comparable with FID.
- any ``nn.Module`` built from a Hydra ``_target_`` node, taking the same input.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lsap.core.errors import LsapFileError, WeightsUnavailableError, one_line_reason
from lsap.data.images import tensor_to_uint8

RANDOM_FEATURES_SEED = 0


class InceptionFeatures(nn.Module):
    """Inception-v3 pool features (2048-d) of images in [-1, 1], quantised to uint8 first.

    Args:
        weights: torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``; None = download it
            once into torch hub's cache. Either way the file is read weights-only (torch-fidelity
            itself unpickles it without that restriction, so it only ever sees a copy of the
            tensors written here).
    """

    num_features = 2048

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        import tempfile

        from torchmetrics.image.fid import NoTrainInceptionV3

        state = _inception_state(weights)
        with tempfile.TemporaryDirectory() as tmp:
            clean = Path(tmp) / "inception.pth"
            torch.save(state, clean)
            try:
                self.net = NoTrainInceptionV3(
                    name="inception-v3-compat",
                    features_list=[str(self.num_features)],
                    feature_extractor_weights_path=str(clean),
                )
            except RuntimeError as e:  # missing or unexpected keys
                raise LsapFileError(
                    weights or "inception weights", f"not the FID Inception-v3 weights ({e})"
                ) from None

    def forward(self, images: Tensor) -> Tensor:
        """images [N, 3, H, W] in [-1, 1] -> [N, 2048] (float32)."""
        return self.net(tensor_to_uint8(images)).float()


def _inception_state(weights: str | Path | None) -> dict[str, Tensor]:
    if weights is None:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

        path = Path(torch.hub.get_dir()) / "checkpoints" / URL_INCEPTION_V3.rsplit("/", 1)[-1]
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(URL_INCEPTION_V3, str(path), progress=False)
            except Exception as e:  # offline
                raise WeightsUnavailableError(
                    "FID's Inception-v3 weights",
                    one_line_reason(e),
                    "fid.features.weights",
                    f" (get {URL_INCEPTION_V3}), or fid.features.name=random for a stand-in "
                    "that is not FID",
                ) from e
    else:
        from lsap.assets import resolve

        path = resolve(weights)
        if not path.is_file():
            raise LsapFileError(path, "no such file (FID Inception weights)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise LsapFileError(path, f"refused or unreadable ({type(e).__name__})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise LsapFileError(path, "not a state dict of tensors (FID Inception weights)")
    return dict(state)


class RandomFeatures(nn.Module):
    """A fixed random conv net: images [N, 3, H, W] in [-1, 1] -> [N, 64]. Not FID; for tests."""

    num_features = 64

    def __init__(self, seed: int = RANDOM_FEATURES_SEED) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = nn.Sequential(
                nn.Conv2d(3, 32, 3, stride=2, padding=1),
                nn.LeakyReLU(0.2),
                nn.Conv2d(32, 64, 3, stride=2, padding=1),
                nn.LeakyReLU(0.2),
                nn.AdaptiveAvgPool2d(4),
                nn.Flatten(),
                nn.Linear(64 * 16, self.num_features),
            )
        self.requires_grad_(False).eval()

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images.float())


class ToyClassifierFeatures(nn.Module):
    """Hidden-layer features of the toy attribute classifier: images [N, 3, H, W] in [-1, 1] ->
    [N, hidden] (images of another size are resized to the classifier's, area / bilinear).

    Args:
        weights: a file written by ``lsap.io.classifier.save_toy_classifier``, or ``asset:<name>``.
    """

    def __init__(self, weights: str | Path = "asset:toy32/classifier.pt") -> None:
        super().__init__()
        from lsap.assets import resolve
        from lsap.io.classifier import load_toy_classifier

        self.classifier = load_toy_classifier(resolve(weights))
        self.num_features = int(self.classifier.config.hidden)
        self.requires_grad_(False).eval()

    def forward(self, images: Tensor) -> Tensor:
        import torch.nn.functional as F

        R = self.classifier.config.resolution
        x = images.float()
        if x.shape[-1] != R or x.shape[-2] != R:
            mode = "area" if x.shape[-1] > R else "bilinear"
            x = F.interpolate(x, size=(R, R), mode=mode)
        return self.classifier.features(x)


def build_feature_extractor(cfg: Mapping[str, Any] | str | nn.Module) -> nn.Module:
    """The FID feature extractor a config names.

    Args:
        cfg: ``{"name": "inception", "weights": null | path}``, ``{"name": "random"}``,
            ``{"name": "toy_classifier", "weights": path | "asset:..."}``, a Hydra node
            with ``_target_`` (an ``nn.Module`` with the same input), a bare name, or a module.

    Returns:
        an ``nn.Module`` in eval mode mapping [N, 3, H, W] in [-1, 1] to [N, D]; it has
        ``num_features`` when known.
    """
    if isinstance(cfg, nn.Module):
        return cfg.eval()
    if isinstance(cfg, str):
        cfg = {"name": cfg}
    if "_target_" in cfg:
        from hydra.utils import instantiate

        module = instantiate(cfg)
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"FID features {cfg['_target_']} built a {type(module).__name__}, not a module"
            )
        return module.eval().requires_grad_(False)
    name = cfg.get("name", "inception")
    if name == "inception":
        return InceptionFeatures(cfg.get("weights")).eval()
    if name == "random":
        return RandomFeatures(int(cfg.get("seed", RANDOM_FEATURES_SEED)))
    if name == "toy_classifier":
        return ToyClassifierFeatures(cfg.get("weights") or "asset:toy32/classifier.pt")
    raise ValueError(
        f"unknown FID feature extractor {name!r}: expected inception, random, toy_classifier "
        "or a _target_"
    )
