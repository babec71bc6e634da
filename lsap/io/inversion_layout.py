"""Writing side of the ``lsap-invert`` output layout (the reading side is ``lsap.io.inversions``).

::

    <output_dir>/codes/<name>.pt            {'w_plus' [1, num_ws, w_dim], 'noise', 'image_path',
                                             'name', 'metrics', 'provenance'}
    <output_dir>/reconstructions/<name>.png
    <output_dir>/results.csv                one row per image (RESULT_COLUMNS first)
    <output_dir>/skipped.csv                unreadable inputs of the last run: image_path,reason

With face alignment (``data.align=true``) and ``paste_back.enabled`` also::

    <output_dir>/pasted/<name>.png          the photo with the reconstruction blended back in
                                            (lsap.data.paste; the photo's own size)
    codes/<name>.pt                         + 'photo_crop' {path, size, quad}: the alignment
    <output_dir>/refined_pasted/<name>.png  with refinement: the refined image pasted back

With result refinement (``refinement=pti``) also::

    <output_dir>/refined/<name>.png         the image after pivotal tuning (its tuned generator)
    <output_dir>/generators/<name>.pt       tuned generators as deltas, only when asked for
                                            (``lsap.refinement.outputs``; per set: set__<name>.pt)
    codes/<name>.pt                         + 'refinement' {name, steps_run, settings} and, with
                                            saved deltas, 'generator': '../generators/<...>.pt';
                                            'metrics' + pti_mse, pti_psnr, ... (after refinement)
    results.csv                             + REFINED_METRIC_NAMES columns and pti_steps

``<name>`` is :func:`lsap.io.inversions.image_name`: the image's path relative to the input root
without its suffix, ``/`` replaced by ``__`` (the file's stem when the input is a single file). A
code file is written last (atomically), so its presence marks an image as finished.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lsap.io.inversions import (
    CODES_DIR,
    PASTED_DIR,
    RECONSTRUCTIONS_DIR,
    REFINED_DIR,
    REFINED_PASTED_DIR,
)

RESULTS_FILE = "results.csv"
SKIPPED_FILE = "skipped.csv"
RESULT_COLUMNS = ("name", "image_path", "mse", "psnr", "lpips", "id", "sncd")
METRIC_NAMES = ("mse", "psnr", "lpips", "id", "sncd")
# after refinement; no pti_sncd: PTI keeps the codes, their SNCD is the stage-one column
REFINED_METRIC_NAMES = ("pti_mse", "pti_psnr", "pti_ssim", "pti_lpips", "pti_id")


def code_path(output_dir: str | Path, name: str) -> Path:
    return Path(output_dir) / CODES_DIR / f"{name}.pt"


def reconstruction_path(output_dir: str | Path, name: str) -> Path:
    return Path(output_dir) / RECONSTRUCTIONS_DIR / f"{name}.png"


def refined_path(output_dir: str | Path, name: str) -> Path:
    return Path(output_dir) / REFINED_DIR / f"{name}.png"


def pasted_path(output_dir: str | Path, name: str, *, refined: bool = False) -> Path:
    """The photo with the (refined) reconstruction pasted back (aligned images only)."""
    folder = REFINED_PASTED_DIR if refined else PASTED_DIR
    return Path(output_dir) / folder / f"{name}.png"


def finished_names(output_dir: str | Path) -> set[str]:
    """Names whose code file exists (temporary files of interrupted writes are not counted)."""
    folder = Path(output_dir) / CODES_DIR
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.glob("*.pt") if p.is_file()}


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of a results-style CSV; a torn last line (a killed writer) and malformed rows are dropped."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            return []
        rows = []
        for fields in reader:
            if len(fields) != len(header):
                continue
            row = dict(zip(header, fields, strict=True))
            numeric = (*METRIC_NAMES, *REFINED_METRIC_NAMES)
            if not row.get("name") or not all(_is_number(row[k]) for k in numeric if k in row):
                continue
            rows.append(row)
    return rows


def read_results(output_dir: str | Path) -> list[dict[str, Any]]:
    """``results.csv`` as a list of dicts, metric columns (both stages) as floats (NaN where not
    computed)."""
    numeric = (*METRIC_NAMES, *REFINED_METRIC_NAMES)
    out = []
    for row in read_rows(Path(output_dir) / RESULTS_FILE):
        out.append({k: float(v) if k in numeric else v for k, v in row.items()})
    return out


def format_row(values: Mapping[str, Any], columns: Sequence[str]) -> list[str]:
    """One CSV row: floats with 8 significant digits, NaN as ``nan``, missing as empty."""
    out = []
    for c in columns:
        v = values.get(c, "")
        out.append(f"{v:.8g}" if isinstance(v, float) else str(v))
    return out


def write_csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(format_row(row, columns))
    return buf.getvalue()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
