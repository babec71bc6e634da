"""Inversions made in Python (a notebook, a script) written in the ``lsap-invert`` output layout,
so ``lsap-edit``, ``lsap-eval`` and ``lsap.metrics.evaluation`` read them like the job's results.

The layout is :mod:`lsap.io.inversion_layout`; the Lightning job writes it through
``lsap.systems.writer.InversionWriter`` (resumable, sharded), this module for one in-memory batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from lsap.core.atomic import atomic_write, atomic_write_text
from lsap.data.images import tensor_to_pil
from lsap.io.inversion_layout import (
    METRIC_NAMES,
    RESULT_COLUMNS,
    RESULTS_FILE,
    code_path,
    read_rows,
    reconstruction_path,
    write_csv_text,
)
from lsap.io.inversions import CodeRecord
from lsap.nets.crop import ValidRegion, crop_valid


def save_inversion(
    output_dir: str | Path,
    names: Sequence[str],
    w_plus: Tensor,
    images: Tensor,
    *,
    noise: Sequence[Tensor] | None = None,
    image_paths: Sequence[str | Path | None] | None = None,
    metrics: Mapping[str, Tensor] | None = None,
    provenance: Mapping[str, Any] | None = None,
    crop: ValidRegion | None = None,
) -> Path:
    """Write N inverted images as ``reconstructions/<name>.png``, ``codes/<name>.pt`` and rows of
    ``results.csv`` (rows of other names already there are kept; a name written again is replaced).

    Args:
        output_dir: the results folder (created).
        names: N output names (``lsap.io.inversions.image_name`` of the originals).
        w_plus: codes [N, num_ws, w_dim].
        images: reconstructions [N, 3, R, R] in [-1, 1].
        noise: optimised noise maps, one [N, 1, R_k, R_k] per synthesis conv, or None.
        image_paths: the original image of each code (what ``lsap-eval`` compares against when no
            ``originals`` folder is given), or None.
        metrics: per-image values ``{name: [N]}`` (e.g. ``ReconstructionMetrics``), recorded in the
            code files and ``results.csv``.
        provenance: recorded in every code file (``lsap.core.provenance.provenance``).
        crop: the generator's valid region (``G.crop``): the PNGs hold only it (non-square).

    Returns:
        ``output_dir``.
    """
    output_dir = Path(output_dir)
    N = len(names)
    if len(set(names)) != N:
        raise ValueError(f"names must be unique, got {list(names)}")
    if w_plus.ndim != 3 or w_plus.shape[0] != N:
        raise ValueError(f"w_plus must be [{N}, num_ws, w_dim], got {tuple(w_plus.shape)}")
    if images.ndim != 4 or images.shape[:2] != (N, 3):
        raise ValueError(f"images must be [{N}, 3, R, R], got {tuple(images.shape)}")
    paths = list(image_paths) if image_paths is not None else [None] * N
    if len(paths) != N:
        raise ValueError(f"{len(paths)} image paths for {N} codes")
    values = {
        k: [float(x) for x in v.detach().flatten().tolist()] for k, v in (metrics or {}).items()
    }
    for k, v in values.items():
        if len(v) != N:
            raise ValueError(f"metric {k!r} has {len(v)} values for {N} codes")
    rows = []
    for i, name in enumerate(names):
        png = tensor_to_pil(crop_valid(images[i], crop))
        atomic_write(reconstruction_path(output_dir, name), lambda f, im=png: im.save(f, "PNG"))
        m = {k: v[i] for k, v in values.items()}
        record = CodeRecord(
            name=name,
            w_plus=w_plus[i : i + 1],
            noise=[n[i : i + 1] for n in noise] if noise else None,
            image_path=str(paths[i]) if paths[i] is not None else None,
            metrics=m,
            provenance=dict(provenance or {}),
        )
        record.save(code_path(output_dir, name))
        # metrics not computed are NaN (readers drop rows with empty metric cells)
        nan = {k: float("nan") for k in METRIC_NAMES}
        rows.append({"name": name, "image_path": record.image_path or "", **nan, **m})
    old = [r for r in read_rows(output_dir / RESULTS_FILE) if r["name"] not in set(names)]
    merged = sorted([*old, *rows], key=lambda r: r["name"])
    extra = sorted({k for r in merged for k in r} - set(RESULT_COLUMNS))
    atomic_write_text(output_dir / RESULTS_FILE, write_csv_text(merged, (*RESULT_COLUMNS, *extra)))
    return output_dir
