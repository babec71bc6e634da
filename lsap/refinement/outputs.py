"""Where PTI results go in an inversion's output folder, and writing them.

Beside the ``lsap-invert`` layout (``codes/<name>.pt``, ``reconstructions/<name>.png``)::

    <dir>/generators/<name>.pt          the tuned generator of image <name> (per_image), a delta
                                        against the run's generator (lsap.load_generator(p, base=G))
    <dir>/generators/set__<name>.pt     one per set (per_set), named after its first image
    codes/<name>.pt  'generator': '../generators/<...>.pt'   names it, relative to the code file

Deltas are written only when asked for (``refinement.save.deltas``): about 57 MB each at 1024 px.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lsap.io.generator_delta import check_disk_budget, estimate_delta_nbytes, save_generator_delta
from lsap.nets.stylegan2 import Generator
from lsap.refinement.pti import PTIResult

GENERATORS_DIR = "generators"


def generator_file(out_dir: str | Path, names: Sequence[str], mode: str) -> Path:
    """The delta file of a generator tuned on images ``names`` (one name per image)."""
    stem = names[0] if mode == "per_image" else f"set__{names[0]}"
    return Path(out_dir) / GENERATORS_DIR / f"{stem}.pt"


def save_tuned_generators(
    result: PTIResult,
    base: Generator,
    out_dir: str | Path,
    names: Sequence[str],
    *,
    dtype: str = "float16",
    max_total_bytes: int | None = None,
    base_path: str | Path | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> list[str]:
    """Write the tuned generators of ``result`` as deltas under ``out_dir/generators/``.

    The size is checked before anything is written (``check_disk_budget``: the configured limit
    and the free disk).

    Args:
        result: from :func:`~lsap.refinement.pivotal_tuning` on ``base``.
        names: the ``<name>`` of every image of the call, in order.
        max_total_bytes: refuse when these deltas would exceed it (None = free disk only).

    Returns:
        For each image, the path of its generator relative to ``out_dir/codes`` (the value a code
        file records under ``generator``).
    """
    if len(names) != len(result.images):
        raise ValueError(f"{len(names)} names for {len(result.images)} tuned images")
    mode = result.settings.get("mode", "per_image")
    folder = Path(out_dir) / GENERATORS_DIR
    check_disk_budget(
        folder,
        len(result.generators),
        estimate_delta_nbytes(base, dtype),
        max_total_bytes=max_total_bytes,
    )
    rel: list[str] = [""] * len(names)
    for G, idx in zip(result.generators, result.image_index, strict=True):
        path = generator_file(out_dir, [names[i] for i in idx], mode)
        save_generator_delta(
            G,
            base,
            path,
            dtype=dtype,
            base_path=base_path,
            provenance={**dict(provenance or {}), "pti": result.settings, "images": len(idx)},
        )
        for i in idx:
            rel[i] = os.path.relpath(path, Path(out_dir) / "codes")
    return rel
