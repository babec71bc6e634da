"""Anchors of the synthetic distribution in S^N, computed in bounded memory and cached on disk.

``a_i = mean_k n_i(w_k)`` with ``w_k = f(z_k)``, ``z_k ~ N(0, I)`` (no truncation) and
``n_i = s_i / ||s_i||`` the normalised style of w+ index i, the same w on every layer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lsap.alignment.style import normalize_styles
from lsap.core.atomic import atomic_torch_save
from lsap.core.cache import read_cache
from lsap.core.plain import settings_dict
from lsap.nets.sampling import iter_w
from lsap.nets.stylegan2 import Generator

log = logging.getLogger(__name__)


def anchor_cache_path(cache_dir: str | Path, sha256: str, num_samples: int, seed: int) -> Path:
    return Path(cache_dir) / f"anchors-{sha256[:16]}-n{num_samples}-seed{seed}.pt"


@torch.no_grad()
def _compute(G: Generator, num_samples: int, seed: int, batch_size: int) -> list[Tensor]:
    sums: list[Tensor] | None = None
    for w in iter_w(G, num_samples, seed=seed, batch_size=batch_size):
        n = normalize_styles(G.style_space(w))
        batch_sums = [x.double().sum(0) for x in n]
        sums = (
            batch_sums if sums is None else [a + b for a, b in zip(sums, batch_sums, strict=True)]
        )
    assert sums is not None
    return [(s / num_samples).float() for s in sums]


def compute_anchors(
    G: Generator,
    num_samples: int,
    seed: int,
    *,
    batch_size: int = 10_000,
    cache_dir: str | Path | None = None,
) -> list[Tensor]:
    """Mean normalised style vector of each w+ index over the generator's own samples.

    Args:
        G: generator (its ``sha256`` keys the cache).
        num_samples: K mapped samples (reference: 100,000).
        seed: seed of the z samples (drawn on the CPU: identical on every device).
        batch_size: samples per batch; memory is O(batch_size * sum C_i).
        cache_dir: folder for the cache file ``anchors-<sha[:16]>-n<K>-seed<seed>.pt``; None = no
            cache. A cached file is used only if its sha256, K, seed and shapes match.

    Returns:
        list of num_ws tensors ``a_i [C_i]`` (float32, on G's device); each has norm < 1.
    """
    path = None
    if cache_dir is not None and G.sha256:
        path = anchor_cache_path(cache_dir, G.sha256, num_samples, seed)
        cached = _read_cache(path, G, num_samples, seed)
        if cached is not None:
            return [a.to(G.w_avg.device) for a in cached]
    anchors = _compute(G, num_samples, seed, batch_size)
    if path is not None:
        atomic_torch_save(
            path,
            {
                "sha256": G.sha256,
                "num_samples": num_samples,
                "seed": seed,
                "anchors": [a.cpu() for a in anchors],
            },
        )
        log.info("cached S^N anchors at %s", path)
    return anchors


def _read_cache(path: Path, G: Generator, num_samples: int, seed: int) -> list[Tensor] | None:
    shapes = [(layer.affine.weight.shape[0],) for layer in G.style_layers]
    obj = read_cache(
        path,
        "anchor",
        {"sha256": G.sha256, "num_samples": num_samples, "seed": seed},
        fits=lambda o: [tuple(a.shape) for a in o["anchors"]] == shapes,
    )
    return None if obj is None else obj["anchors"]


def anchors_from_config(G: Generator, cfg: Mapping[str, Any]) -> list[Tensor]:
    """:func:`compute_anchors` with the ``alignment`` config group (``conf/alignment/default.yaml``:
    ``num_samples``, ``seed``, ``batch_size``, ``cache_dir``); the one place the group is read."""
    cfg = settings_dict(
        cfg,
        ("num_samples", "seed", "batch_size", "cache_dir"),
        what="the alignment config",
        see="conf/alignment/default.yaml",
    )
    return compute_anchors(
        G,
        int(cfg["num_samples"]),
        int(cfg["seed"]),
        batch_size=int(cfg["batch_size"]),
        cache_dir=cfg["cache_dir"],
    )
