"""Save and load the toy attribute classifier (``lsap.nets.toy_classifier``), weights-only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lsap.core.atomic import atomic_torch_save
from lsap.core.errors import CheckpointError
from lsap.core.hashing import file_sha256
from lsap.io.checkpoints import read_torch_file
from lsap.nets.toy_classifier import ToyClassifier, ToyClassifierConfig

CLASSIFIER_FORMAT = "lsap.toy_classifier"
FORMAT_VERSION = 1


def save_toy_classifier(
    model: ToyClassifier,
    path: str | Path,
    provenance: Mapping[str, Any] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``{format, format_version, config, state_dict, provenance}`` atomically.

    Floating tensors are stored as ``dtype`` (float16 for shipped assets); BatchNorm counters keep
    their integer type. Loading returns float32.
    """
    from lsap.core.version import __version__

    state = {
        k: v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()
        for k, v in model.state_dict().items()
    }
    obj = {
        "format": CLASSIFIER_FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": state,
        "provenance": {"lsap_version": __version__, **dict(provenance or {})},
    }
    return atomic_torch_save(path, obj)


def load_toy_classifier(path: str | Path, device: torch.device | str = "cpu") -> ToyClassifier:
    """Load a classifier written by :func:`save_toy_classifier`; eval mode, no gradients.

    Raises:
        CheckpointError: missing/unreadable file or not a toy-classifier file.
    """
    from lsap.assets import resolve

    path = resolve(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    obj = read_torch_file(path)
    if not isinstance(obj, Mapping) or obj.get("format") != CLASSIFIER_FORMAT:
        raise CheckpointError(path, f"not an lsap toy classifier (format != '{CLASSIFIER_FORMAT}')")
    model = ToyClassifier(ToyClassifierConfig(**obj["config"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(path, f"state does not fit its config ({e})") from None
    model = model.to(device).eval().requires_grad_(False)
    model.sha256 = file_sha256(path)
    return model
