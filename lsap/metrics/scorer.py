"""Per-image scores of an inversion and of its edits, from the networks the metrics need.

Images are compared as they would be saved: quantised to uint8 levels first (so a reconstruction
scores like its PNG), then MSE/PSNR/SSIM on [0, 1], LPIPS and ID on [-1, 1]. For a non-square
generator (``generator.crop``) the scorer is given its valid region and every score (and the
face and FID features) is of that box of the square frames only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lsap.core.errors import WeightsUnavailableError
from lsap.core.plain import settings_dict
from lsap.metrics.image import mse, psnr, ssim, to_unit
from lsap.nets.crop import ValidRegion, crop_valid

FIDELITY_METRICS = ("mse", "psnr", "ssim", "lpips", "id")


def quantize(images: Tensor) -> Tensor:
    """[N, 3, H, W] in [-1, 1] -> the same on uint8 levels (what a saved PNG holds)."""
    return to_unit(images) * 2.0 - 1.0


class Scorer(nn.Module):
    """Networks and per-image scores shared by every method evaluated.

    Args:
        metrics: fidelity metrics to compute, among ``FIDELITY_METRICS``.
        lpips: an ``LPIPSLoss`` (needed for ``lpips`` and the editing LPIPS), or None.
        face: a ``FaceEmbedder`` (needed for ``id`` and the editing ID: a face network, or the
            MoCo ResNet-50 for non-face domains), or None.
        features: FID feature extractor (``lsap.metrics.features``), or None (no FID).
        crop: the generator's valid region (``lsap.nets.crop.ValidRegion``; ``G.crop``): images
            given are square frames [N, 3, S, S] and only their valid region is scored; None =
            the whole images.
    """

    def __init__(
        self,
        metrics: Sequence[str] = FIDELITY_METRICS,
        *,
        lpips: nn.Module | None = None,
        face: nn.Module | None = None,
        features: nn.Module | None = None,
        crop: ValidRegion | None = None,
    ) -> None:
        super().__init__()
        self.crop = crop
        unknown = set(metrics) - set(FIDELITY_METRICS)
        if unknown:
            raise ValueError(
                f"unknown metrics {sorted(unknown)}; expected some of {FIDELITY_METRICS}"
            )
        if "lpips" in metrics and lpips is None:
            raise ValueError("metric 'lpips' needs an LPIPS network")
        if "id" in metrics and face is None:
            raise ValueError("metric 'id' needs a face embedder")
        self.metrics = tuple(m for m in FIDELITY_METRICS if m in metrics)
        self.lpips, self.face, self.features = lpips, face, features

    @property
    def num_features(self) -> int | None:
        """Feature size of the FID extractor (None without one)."""
        if self.features is None:
            return None
        n = getattr(self.features, "num_features", None)
        if n is None:
            p = next(self.features.parameters(), None)
            device = p.device if p is not None else "cpu"
            n = self.features(torch.zeros(1, 3, 64, 64, device=device)).shape[-1]
            self.features.num_features = int(n)
        return int(n)

    def valid(self, images: Tensor) -> Tensor:
        """The part of images [N, 3, S, S] that is scored: the valid region [N, 3, h, w] (with a
        ``crop``), else the images themselves."""
        return crop_valid(images, self.crop)

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor | None:
        """Unit ``id`` embeddings [N, E] of quantised images (None without an ``id`` network)."""
        return None if self.face is None else self._embed(self.valid(images))

    def _embed(self, valid: Tensor) -> Tensor:
        return self.face(quantize(valid))

    @torch.no_grad()
    def fid_features(self, images: Tensor) -> Tensor | None:
        """FID features [N, D] of images [N, 3, H, W] in [-1, 1] (None without an extractor)."""
        if self.features is None:
            return None
        return self.features(quantize(self.valid(images))).float()

    @torch.no_grad()
    def fidelity(
        self,
        originals: Tensor,
        reconstructions: Tensor,
        *,
        original_embeddings: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Per-image fidelity of reconstructions [N, 3, H, W] to originals (same shape), in [-1, 1].

        Returns:
            ``{metric: [N]}`` for the configured metrics: ``mse`` in [0, 1], ``psnr`` in dB (capped
            at ``PSNR_CAP_DB``), ``ssim`` in [-1, 1], ``lpips`` >= 0, ``id`` cosine in [-1, 1].
        """
        if originals.shape != reconstructions.shape:
            raise ValueError(
                f"originals {tuple(originals.shape)} and reconstructions "
                f"{tuple(reconstructions.shape)} differ in shape"
            )
        originals, reconstructions = self.valid(originals), self.valid(reconstructions)
        out: dict[str, Tensor] = {}
        if "mse" in self.metrics:
            out["mse"] = mse(originals, reconstructions)
        if "psnr" in self.metrics:
            out["psnr"] = psnr(originals, reconstructions)
        if "ssim" in self.metrics:
            out["ssim"] = ssim(originals, reconstructions)
        if "lpips" in self.metrics:
            out["lpips"] = self.lpips.distance(quantize(originals), quantize(reconstructions))
        if "id" in self.metrics:
            e0 = original_embeddings if original_embeddings is not None else self._embed(originals)
            out["id"] = (e0 * self._embed(reconstructions)).sum(1)
        return {k: v.float() for k, v in out.items()}

    @torch.no_grad()
    def editing(
        self,
        edited: Tensor,
        unedited: Tensor,
        *,
        original_embeddings: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Per-image editing scores.

        Args:
            edited: edited images [N, 3, H, W] in [-1, 1].
            unedited: the reconstructions they were edited from (same shape).
            original_embeddings: face embeddings of the original images (``embed``).

        Returns:
            ``lpips``: LPIPS(edited, unedited reconstruction) [N], when an LPIPS network is set;
            ``id``: cosine of the face embeddings of the edited and the original image [N], when a
            face network and ``original_embeddings`` are given.
        """
        out: dict[str, Tensor] = {}
        edited, unedited = self.valid(edited), self.valid(unedited)
        if self.lpips is not None:
            out["lpips"] = self.lpips.distance(quantize(edited), quantize(unedited)).float()
        if self.face is not None and original_embeddings is not None:
            out["id"] = (original_embeddings * self._embed(edited)).sum(1).float()
        return out


_SEE = "conf/metrics/default.yaml"


@dataclass(frozen=True)
class ScorerSettings:
    """What :func:`build_scorer` and :func:`metric_notes` read of the ``metrics`` group (meanings
    in ``conf/metrics/default.yaml``).

    Attributes:
        fidelity: per-image metrics, among ``FIDELITY_METRICS``.
        editing: editing scores (``id``, ``lpips``, ``sncd``).
        lpips: ``LPIPSLoss`` keyword arguments (``metrics.lpips``), or None (no LPIPS network).
        id: ``FaceEmbedder`` keyword arguments (``metrics.id``), or None (no id network).
        fid: whether FID features are computed (``metrics.fid.enabled``).
        features: the FID feature extractor (``metrics.fid.features``,
            ``lsap.metrics.features.build_feature_extractor``).
    """

    fidelity: tuple[str, ...]
    editing: tuple[str, ...]
    lpips: dict[str, Any] | None
    id: dict[str, Any] | None
    fid: bool
    features: dict[str, Any]

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ScorerSettings:
        """The settings of a ``metrics`` config (an OmegaConf node or plain dict).

        Raises:
            ValueError: a key is missing (``metrics.<key>`` named), or a network a metric needs
                is null.
        """
        keys = ("fidelity", "editing", "lpips", "id", "fid")
        c = settings_dict(cfg, keys, what="metrics", see=_SEE, exact=False)
        fid = settings_dict(c["fid"], ("enabled", "features"), what="metrics.fid", see=_SEE)
        features = dict(fid["features"])
        if "_target_" not in features:  # a named extractor, or a Hydra target of one's own
            features = settings_dict(
                features, ("name",), what="metrics.fid.features", see=_SEE, exact=False
            )
        out = cls(
            fidelity=tuple(str(m) for m in c["fidelity"]),
            editing=tuple(str(m) for m in c["editing"]),
            lpips=None if c["lpips"] is None else dict(c["lpips"]),
            id=None if c["id"] is None else dict(c["id"]),
            fid=bool(fid["enabled"]),
            features=features,
        )
        for key in ("lpips", "id"):
            if getattr(out, key) is None and (key in out.fidelity or key in out.editing):
                raise ValueError(
                    f"metrics.{key} is null but metrics.fidelity or metrics.editing lists {key} "
                    f"(see {_SEE})"
                )
        return out


def build_scorer(
    cfg: Mapping[str, Any], *, fid: bool = True, crop: ValidRegion | None = None
) -> Scorer:
    """A :class:`Scorer` from the ``metrics`` config group (:class:`ScorerSettings`; networks
    built only when used); ``fid``: False leaves the FID extractor out whatever the config says;
    ``crop``: the generator's valid region (``G.crop``), what is scored.

    Raises:
        ValueError: a key of the group is missing (named).
        WeightsUnavailableError: a download failed; it names the ``metrics.*`` setting to use.
    """
    settings = ScorerSettings.from_config(cfg)
    try:
        return _build_scorer(settings, fid, crop)
    except WeightsUnavailableError as e:
        raise e.under("metrics") from e.__cause__


def _build_scorer(s: ScorerSettings, fid: bool, crop: ValidRegion | None) -> Scorer:
    from lsap.metrics.features import build_feature_extractor

    lp, face, feats = None, None, None
    if "lpips" in s.fidelity or "lpips" in s.editing:
        from lsap.losses.perceptual import LPIPSLoss

        lp = LPIPSLoss(**s.lpips)
    if "id" in s.fidelity or "id" in s.editing:
        from lsap.losses.identity import FaceEmbedder

        face = FaceEmbedder(**s.id)
    if fid and s.fid:
        feats = build_feature_extractor(s.features)
    return Scorer(s.fidelity, lpips=lp, face=face, features=feats, crop=crop)


def metric_notes(metrics: Mapping[str, Any]) -> list[str]:
    """Caveats about metric networks that are offline stand-ins rather than the published ones
    (``metrics``: the ``metrics`` config group, :class:`ScorerSettings`)."""
    s = ScorerSettings.from_config(metrics)
    notes = []
    if "lpips" in s.fidelity and str(metric_option(s.lpips, "lpips", "backbone")) == "random":
        notes.append(
            "LPIPS runs on a fixed random backbone (no ImageNet weights offline): a deterministic "
            "perceptual stand-in, NOT LPIPS; compare methods with it, not with published numbers."
        )
    if "id" in s.fidelity:
        moco = metric_option(s.id, "id", "backend") == "moco"
        if str(metric_option(s.id, "id", "weights")) == "random":
            notes.append(
                "ID uses a random ResNet-50 (backend moco): NOT MoCo v2 similarity."
                if moco
                else "ID uses a random face network: NOT identity similarity."
            )
        elif moco:
            notes.append(
                "ID is the cosine of MoCo v2 ResNet-50 features (e4e's similarity for non-face "
                "domains), not a face-recognition score."
            )
    else:
        notes.append("ID is not computed (no face network configured; metrics.fidelity has no id).")
    if s.fid:
        name = feature_name(s)
        if name == "toy_classifier":
            notes.append(
                "FID uses the toy attribute classifier's 128-d hidden features (a trained network "
                "that works offline): a Frechet distance on the toy domain, not comparable with "
                "Inception FID; on a handful of images it is a rough indicator only."
            )
        elif name == "random":
            notes.append("FID uses a fixed random feature network: NOT FID.")
    return notes


def feature_name(settings: ScorerSettings) -> str:
    """The FID feature extractor's name (``inception``, ``random``, ``toy_classifier``), or the
    ``_target_`` of one's own."""
    return str(settings.features.get("_target_") or settings.features["name"])


def metric_option(options: Mapping[str, Any], group: str, key: str) -> Any:
    """``options[key]`` of ``metrics.<group>`` (a one-line error naming it when missing)."""
    return settings_dict(options, (key,), what=f"metrics.{group}", see=_SEE, exact=False)[key]
