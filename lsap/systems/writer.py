"""Write each inverted image in the lsap-invert layout (``lsap.io.inversion_layout``), atomically.

Per image, in this order: the reconstruction PNG, then the code file (its presence marks the image
finished, so a killed run resumes after the last complete image), then a row appended to this
process's part of the results table. At the end (the ``teardown`` hook) rank 0 merges the parts (and any earlier
``results.csv``) into ``results.csv``: one row per finished image, sorted by name; an image whose
row was lost to a kill gets it back from the metrics stored in its code file.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from pytorch_lightning.callbacks import BasePredictionWriter

from lsap.data.images import tensor_to_uint8
from lsap.io.atomic import atomic_torch_save, atomic_write, atomic_write_text
from lsap.io.inversion_layout import (
    METRIC_NAMES,
    RESULT_COLUMNS,
    RESULTS_FILE,
    SKIPPED_FILE,
    code_path,
    finished_names,
    read_rows,
    reconstruction_path,
    write_csv_text,
)

log = logging.getLogger(__name__)

PARTS_DIR = "results_parts"  # per-process append-only parts, merged and removed at the end
EXTRA_COLUMNS = ("ssim", "loss", "seed", "steps")
COLUMNS = (*RESULT_COLUMNS, *EXTRA_COLUMNS)
SKIPPED_COLUMNS = ("image_path", "reason")


class InversionWriter(BasePredictionWriter):
    """Writes codes, reconstructions and result rows of every predicted batch.

    Args:
        output_dir: the run's output folder.
        provenance: recorded in every code file (``lsap.io.provenance.provenance``); each file adds
            its own ``image_seed``.
        save_noise: store the optimised noise maps in the code files (about 11 MB per 1024 px
            image); False stores ``noise: None``.
    """

    def __init__(
        self, output_dir: str | Path, provenance: Mapping[str, Any], save_noise: bool = True
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.provenance = dict(provenance)
        self.save_noise = save_noise
        self.num_written = 0
        self.num_skipped = 0
        self.summary: dict[str, Any] = {}

    def _part(self, kind: str, rank: int) -> Path:
        return self.output_dir / PARTS_DIR / f"{kind}-rank{rank}.csv"

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        rank = trainer.global_rank
        for _, path, reason in prediction["skipped"]:
            log.warning("skipped %s: %s", path, reason)
            _append_rows(
                self._part("skipped", rank),
                SKIPPED_COLUMNS,
                [{"image_path": path, "reason": reason}],
            )
            self.num_skipped += 1
        if "w_plus" not in prediction:
            return
        steps = int(prediction["history"]["loss"].shape[0])
        rows = []
        for i, name in enumerate(prediction["name"]):
            metrics = {k: float(v[i]) for k, v in prediction["metrics"].items()}
            _save_png(prediction["images"][i], reconstruction_path(self.output_dir, name))
            noise = None
            if self.save_noise and prediction["noise"] is not None:
                noise = [n[i : i + 1].clone() for n in prediction["noise"]]
            record = {
                "w_plus": prediction["w_plus"][i : i + 1].clone().float(),
                "noise": noise,
                "image_path": prediction["path"][i],
                "name": name,
                "metrics": metrics,
                "provenance": {
                    **self.provenance,
                    "image_seed": prediction["seed"][i],
                    "steps": steps,
                },
            }
            atomic_torch_save(code_path(self.output_dir, name), record)
            rows.append(
                {
                    "name": name,
                    "image_path": prediction["path"][i],
                    **metrics,
                    "seed": prediction["seed"][i],
                    "steps": steps,
                }
            )
        _append_rows(self._part("results", rank), COLUMNS, rows)
        self.num_written += len(rows)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        # teardown (not on_predict_end) runs on every process, also on one whose shard was empty
        trainer.strategy.barrier("inversion-written")
        if trainer.is_global_zero:
            self.summary = merge_results(self.output_dir)
            n, skipped = self.summary["num_images"], self.summary["skipped"]
            log.info("results of %d images in %s", n, self.output_dir / RESULTS_FILE)
            if skipped:
                listed = ", ".join(f"{p} ({r})" for p, r in skipped[:5])
                log.warning(
                    "skipped %d unreadable file(s) (listed in %s): %s%s",
                    len(skipped),
                    self.output_dir / SKIPPED_FILE,
                    listed,
                    " ..." if len(skipped) > 5 else "",
                )
        trainer.strategy.barrier("inversion-merged")


def merge_results(output_dir: str | Path) -> dict[str, Any]:
    """Rebuild ``results.csv`` (and ``skipped.csv``) from the parts and the finished code files.

    Returns ``{"num_images": rows written, "skipped": [(image_path, reason)], "rows": [...]}``.
    """
    output_dir = Path(output_dir)
    parts = output_dir / PARTS_DIR
    rows: dict[str, dict[str, Any]] = {r["name"]: r for r in read_rows(output_dir / RESULTS_FILE)}
    for part in sorted(parts.glob("results-rank*.csv")) if parts.is_dir() else []:
        rows.update({r["name"]: r for r in read_rows(part)})
    done = finished_names(output_dir)
    for name in sorted(done - rows.keys()):  # killed between the code file and its row
        record = torch.load(code_path(output_dir, name), map_location="cpu", weights_only=True)
        prov = record.get("provenance", {})
        rows[name] = {
            "name": name,
            "image_path": record.get("image_path", ""),
            **{k: float(v) for k, v in record.get("metrics", {}).items()},
            "seed": prov.get("image_seed", ""),
            "steps": prov.get("steps", ""),
        }
    final = [rows[n] for n in sorted(done & rows.keys())]
    for r in final:
        for k in (*METRIC_NAMES, "ssim", "loss"):
            r[k] = float(r.get(k, "nan") or "nan")
    atomic_write_text(output_dir / RESULTS_FILE, write_csv_text(final, COLUMNS))
    skipped: dict[str, str] = {}
    for part in sorted(parts.glob("skipped-rank*.csv")) if parts.is_dir() else []:
        with open(part, newline="", encoding="utf-8") as f:
            for rec in csv.DictReader(f):
                if rec.get("image_path") and rec.get("reason") is not None:
                    skipped[rec["image_path"]] = rec["reason"]
    skipped_list = sorted(skipped.items())
    atomic_write_text(
        output_dir / SKIPPED_FILE,
        write_csv_text(({"image_path": p, "reason": r} for p, r in skipped_list), SKIPPED_COLUMNS),
    )
    shutil.rmtree(parts, ignore_errors=True)
    return {"num_images": len(final), "skipped": skipped_list, "rows": final}


def _append_rows(path: Path, columns, rows) -> None:
    """Append CSV rows (header first when the file is new) and fsync: a kill loses at most a torn
    last line, which the merge drops."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    text = write_csv_text(rows, columns)
    if not new:
        text = text.split("\n", 1)[1]
    with open(path, "a", encoding="utf-8", newline="") as f:
        if not new and f.tell() > 0:
            _ensure_newline(path, f)
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _ensure_newline(path: Path, f) -> None:
    """Start on a fresh line if a killed writer left a torn last line."""
    with open(path, "rb") as r:
        r.seek(-1, os.SEEK_END)
        if r.read(1) != b"\n":
            f.write("\n")


def _save_png(image: torch.Tensor, path: Path) -> None:
    arr = tensor_to_uint8(image).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG")
    atomic_write(path, lambda f: f.write(buf.getvalue()))
