"""Labelled generator samples: seeded z -> W -> image (constant noise) -> an attribute classifier.

The labels of InterFaceGAN's own recipe: the generator's samples, read by a classifier, give W
codes with attribute labels for :mod:`lsap.editing.fitting`. Rendering and classifying is the
expensive part, so the samples are labelled in chunks, each kept as a cache file (``cache_dir``)
that a rerun reuses when it was made by the same generator, classifier, seed and truncation for
the same z (checked by their sha256): an interrupted run resumes at the first missing chunk, and a
run of more samples reuses the chunks of a smaller one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from lsap.core.atomic import atomic_torch_save
from lsap.core.cache import read_cache
from lsap.core.hashing import tensors_sha256
from lsap.nets.sampling import sample_z
from lsap.nets.stylegan2 import broadcast_w

log = logging.getLogger(__name__)

CACHE_FORMAT = "lsap.labelled_samples"


class AttributeClassifier(Protocol):
    """What labelling needs of a classifier (``lsap.io.classifier.load_toy_classifier`` gives one):
    ``names`` [A], ``config.kinds`` [A] ("binary" | "scalar"), ``config.resolution``, and
    ``predict(images [N, 3, R, R] in [-1, 1]) -> [N, A]`` (probabilities of binary attributes,
    values of scalar ones), and ``sha256`` of its file."""

    names: list[str]
    config: Any
    sha256: str

    def predict(self, images: Tensor) -> Tensor: ...


@dataclass
class LabelledSamples:
    """Generator samples and the classifier's reading of them.

    Attributes:
        w: [N, w_dim] float32 W codes (CPU).
        predictions: [N, A] float32: probabilities (binary attributes) or values (scalar ones).
        attributes, kinds: [A] the classifier's outputs and their kinds.
    """

    w: Tensor
    predictions: Tensor
    attributes: list[str]
    kinds: list[str]

    def labels(self, threshold: float) -> Tensor:
        """[N, A] float64: binary attributes as ``prediction > threshold`` (0/1), scalar ones as
        predicted."""
        binary = torch.tensor([k == "binary" for k in self.kinds])
        p = self.predictions.double()
        return torch.where(binary, (p > threshold).double(), p)


@torch.no_grad()
def classify_codes(G: Any, classifier: AttributeClassifier, w: Tensor, batch_size: int) -> Tensor:
    """The classifier's predictions [N, A] (CPU) of the images of W codes [N, w_dim] (all layers,
    constant noise); images are resized (area) to the classifier's input size when it differs.

    A non-square generator's frames (``G.crop``, ``lsap.nets.crop.ValidRegion``) are shown as
    image files are read into its frame: the valid region, ``FILL`` (black) outside it."""
    device = G.w_avg.device
    size = int(classifier.config.resolution)
    crop = getattr(G, "crop", None)
    out = []
    for chunk in w.split(batch_size):
        images = G.synthesis(broadcast_w(chunk.to(device), G.num_ws, G.w_dim), noise_mode="const")
        if crop is not None:
            images = crop.place(crop.crop(images), images.shape[-1])
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="area")
        out.append(classifier.predict(images).float().cpu())
    return torch.cat(out)


def label_samples(
    G: Any,
    classifier: AttributeClassifier,
    num_samples: int,
    *,
    seed: int,
    batch_size: int,
    chunk_size: int,
    truncation_psi: float,
    cache_dir: str | Path | None,
) -> LabelledSamples:
    """``num_samples`` W codes of z seed ``seed`` and the classifier's predictions of their images.

    Args:
        G: generator (its device is used; ``G.mapping``, ``G.synthesis``).
        classifier: see :class:`AttributeClassifier`, on G's device.
        num_samples: N codes; z [N, z_dim] ~ N(0, I) drawn at once on the CPU
            (``lsap.nets.sampling.sample_z``), so a seed and count give the same codes anywhere.
        batch_size: images rendered and classified at once.
        chunk_size: codes per cache file (the unit of resuming).
        truncation_psi: W truncation towards ``w_avg`` (1 = none).
        cache_dir: where chunks are kept (``seed<seed>_<start>-<stop>.pt``, reused by any run of
            the same generator, classifier, seed, truncation and chunk size); None = no cache.

    Returns:
        :class:`LabelledSamples`.
    """
    if num_samples < 1 or batch_size < 1 or chunk_size < 1:
        raise ValueError(
            f"num_samples, batch_size and chunk_size must be >= 1, got {num_samples}, "
            f"{batch_size}, {chunk_size}"
        )
    device = G.w_avg.device
    z = sample_z(num_samples, G.z_dim, seed=seed)  # [N, z_dim], CPU
    key = {
        "format": CACHE_FORMAT,
        "generator_sha256": getattr(G, "sha256", None),
        "classifier_sha256": getattr(classifier, "sha256", None),
        "seed": int(seed),
        "truncation_psi": float(truncation_psi),
        "attributes": list(classifier.names),
    }
    ws, preds, reused = [], [], 0
    for start in range(0, num_samples, chunk_size):
        stop = min(start + chunk_size, num_samples)
        name = f"seed{seed}_{start:09d}-{stop:09d}.pt"
        path = Path(cache_dir) / name if cache_dir is not None else None
        # the chunk's own z, so a cache made with another sample count (or torch) is checked
        expected = {
            **key,
            "start": start,
            "stop": stop,
            "z_sha256": tensors_sha256({"z": z[start:stop]}),
        }
        cached = (
            read_cache(
                path,
                "labelled-samples",
                expected,
                lambda o, n=stop - start: (
                    o["w"].shape == (n, G.w_dim)
                    and o["predictions"].shape == (n, len(classifier.names))
                ),
            )
            if path is not None
            else None
        )
        if cached is not None:
            w, p = cached["w"], cached["predictions"]
            reused += 1
        else:
            with torch.no_grad():
                w = G.mapping(z[start:stop].to(device), truncation_psi).float().cpu()  # [n, w_dim]
            p = classify_codes(G, classifier, w, batch_size)  # [n, A]
            if path is not None:
                atomic_torch_save(path, {**expected, "w": w, "predictions": p})
            log.info("labelled samples %d-%d of %d", start, stop, num_samples)
        ws.append(w)
        preds.append(p)
    if reused:
        log.info("reused %d cached chunk(s) of labelled samples from %s", reused, cache_dir)
    return LabelledSamples(
        w=torch.cat(ws),
        predictions=torch.cat(preds),
        attributes=list(classifier.names),
        kinds=list(classifier.config.kinds),
    )
