"""Reading the derived-data caches (S^N anchors, GANSpace PCA): a cache file is used only when it
was made for the same generator and settings; anything else is recomputed, never trusted."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def read_cache(
    path: str | Path,
    what: str,
    expected: Mapping[str, Any],
    fits: Callable[[dict[str, Any]], bool] = lambda obj: True,
) -> dict[str, Any] | None:
    """The dict a cache file holds (loaded weights-only on the CPU) when it matches, else None.

    Args:
        path: the cache file (written with ``lsap.core.atomic.atomic_torch_save``).
        what: its name in the warnings ("anchor", "GANSpace").
        expected: entries the file must hold with these values (sha256, sample count, seed).
        fits: a further check of the loaded dict (e.g. tensor shapes).

    Returns:
        None for a missing file, and, with a warning, for an unreadable or damaged one or one made
        for another generator or setting.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        ok = all(obj[k] == v for k, v in expected.items()) and fits(obj)
    except Exception as e:  # a damaged cache is recomputed, never trusted
        log.warning("ignoring unreadable %s cache %s (%s)", what, path, e)
        return None
    if not ok:
        log.warning("ignoring %s cache %s: it belongs to another generator or setting", what, path)
        return None
    return obj
