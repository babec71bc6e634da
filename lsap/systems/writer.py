"""Write each inverted image in the lsap-invert layout (``lsap.io.inversion_layout``), atomically.

Per image, in this order: the reconstruction PNG, with refinement the refined PNG (and, when asked
for, the tuned generator's delta; a set's delta before any of its code files), for a face-aligned
photo the photo with the result pasted back (``lsap.data.paste``), then the code file
(its presence marks the image finished, so a killed run resumes after the last complete image and
never refines a finished image again), then a row appended to this process's part of the results
table. At the end (the ``teardown`` hook) rank 0 merges the parts (and any earlier
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

from lsap.core.atomic import atomic_write, atomic_write_text
from lsap.core.errors import LsapFileError
from lsap.data.images import load_crop_photo, save_photo, tensor_to_uint8
from lsap.data.paste import PasteMask, PhotoCrop, paste_back
from lsap.io.generator_delta import check_disk_budget, estimate_delta_nbytes
from lsap.io.inversion_layout import (
    METRIC_NAMES,
    REFINED_METRIC_NAMES,
    RESULT_COLUMNS,
    RESULTS_FILE,
    SKIPPED_FILE,
    code_path,
    finished_names,
    pasted_path,
    read_rows,
    reconstruction_path,
    refined_path,
    write_csv_text,
)
from lsap.io.inversions import read_code_file
from lsap.nets.crop import crop_valid
from lsap.refinement.outputs import GENERATORS_DIR, save_tuned_generators
from lsap.refinement.settings import RefinementSettings
from lsap.systems.sharding import ShardSampler

log = logging.getLogger(__name__)

PARTS_DIR = "results_parts"  # per-process append-only parts, merged and removed at the end
EXTRA_COLUMNS = ("ssim", "loss", "seed", "steps")
COLUMNS = (*RESULT_COLUMNS, *EXTRA_COLUMNS)
REFINED_COLUMNS = (*REFINED_METRIC_NAMES, "pti_steps")  # appended with refinement=pti
SKIPPED_COLUMNS = ("image_path", "reason")


class InversionWriter(BasePredictionWriter):
    """Writes codes, reconstructions and result rows of every predicted batch.

    Args:
        output_dir: the run's output folder.
        provenance: recorded in every code file (``lsap.core.provenance.provenance``); each file adds
            its own ``image_seed``.
        save_noise: store the optimised noise maps in the code files (about 11 MB per 1024 px
            image); False stores ``noise: None``.
        refinement: the ``refinement`` group, typed: with ``pti``, refined PNGs, ``pti_*``
            metrics and columns, and the tuned generators stored as deltas when
            ``refinement.save.deltas``; ``base_path`` is the generator file recorded in the
            deltas as a hint.
        paste: the mask under which results of face-aligned photos are pasted back into the
            photo (``pasted/<name>.png``; ``lsap.data.paste.PasteMask.from_config``), or None
            for no pasting. The alignment is recorded in the code file either way.
    """

    def __init__(
        self,
        output_dir: str | Path,
        provenance: Mapping[str, Any],
        save_noise: bool,
        *,
        refinement: RefinementSettings,
        base_path: str | Path | None,
        paste: PasteMask | None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.provenance = dict(provenance)
        self.save_noise = save_noise
        self.refinement = refinement.name
        self.columns = (*COLUMNS, *REFINED_COLUMNS) if self.refinement != "none" else COLUMNS
        self.save_deltas = refinement.save_deltas
        save = refinement.save
        self.delta_dtype = save.dtype if save is not None else None
        gb = save.max_total_gb if save is not None else None
        self.max_total_bytes = None if gb is None else int(gb * 1e9)
        self.base_path = str(Path(base_path).resolve()) if base_path else None
        self.paste = paste
        self.num_written = 0
        self.num_skipped = 0
        self.summary: dict[str, Any] = {}

    def _part(self, kind: str, rank: int) -> Path:
        return self.output_dir / PARTS_DIR / f"{kind}-rank{rank}.csv"

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Before any work: the tuned generators still to save must fit the configured limit and
        the free disk (rank 0 checks; every process raises the same error)."""
        if not self.save_deltas:
            return
        problem = None
        if trainer.is_global_zero:
            try:
                count = _num_tuned_generators(trainer, pl_module)
                check_disk_budget(
                    self.output_dir / GENERATORS_DIR,
                    count,
                    estimate_delta_nbytes(pl_module.generator, self.delta_dtype),
                    max_total_bytes=self.max_total_bytes,
                    what="tuned generator deltas",
                )
            except LsapFileError as e:
                problem = (str(e.path), e.problem)
        problem = trainer.strategy.broadcast(problem, src=0)
        if problem is not None:
            raise LsapFileError(*problem)

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
        names = prediction["name"]
        refined = prediction.get("refined")
        tuned = [None] * len(names)
        if refined is not None:
            for i, name in enumerate(names):
                _save_png(
                    crop_valid(refined["images"][i], pl_module.generator.crop),
                    refined_path(self.output_dir, name),
                )
            if self.save_deltas and refined.get("result") is not None:
                tuned = save_tuned_generators(
                    refined["result"],
                    pl_module.generator,
                    self.output_dir,
                    names,
                    dtype=self.delta_dtype,
                    max_total_bytes=self.max_total_bytes,
                    base_path=self.base_path,
                    provenance=self.provenance,
                )
        rows = []
        for i, name in enumerate(names):
            record = prediction["records"][i]
            metrics = dict(record.metrics)
            _save_png(  # the generator's valid region only (generator.crop): non-square PNGs
                crop_valid(prediction["images"][i], pl_module.generator.crop),
                reconstruction_path(self.output_dir, name),
            )
            record.photo_crop = (prediction.get("photo_crop") or [None] * len(names))[i]
            if self.paste is not None and record.photo_crop is not None:
                shown = [(prediction["images"][i], False)]
                if refined is not None:
                    shown.append((refined["images"][i], True))
                self._paste(record.photo_crop, shown, name)
            if not self.save_noise:
                record.noise = None
            prov = {**self.provenance, **record.provenance}  # + image_seed, steps
            files = prediction.get("code_files")
            if files and files[i] and isinstance(prov.get("code_source"), Mapping):
                prov["code_source"] = {**prov["code_source"], "code_file": files[i]}
            record.provenance = prov
            path = code_path(self.output_dir, name)
            row = {
                "name": name,
                "image_path": prediction["path"][i],
                **metrics,
                "seed": prediction["seed"][i],
                "steps": steps,
            }
            if refined is not None:
                pti = {k: float(v[i]) for k, v in refined["metrics"].items()}
                record.metrics = {**metrics, **pti}
                record.refinement = {
                    "name": self.refinement,
                    "steps_run": int(refined["steps"][i]),
                    "settings": refined["settings"],
                }
                if tuned[i] is not None:  # relative to codes/ (lsap.io.inversions)
                    record.generator = os.path.normpath(os.path.join(path.parent, tuned[i]))
                row.update(pti, pti_steps=int(refined["steps"][i]))
            record.save(path)
            rows.append(row)
        _append_rows(self._part("results", rank), self.columns, rows)
        self.num_written += len(rows)

    def _paste(self, crop: PhotoCrop, images: list[tuple[torch.Tensor, bool]], name: str) -> None:
        """Write ``images`` [3, R, R] pasted back into the photo (a photo gone or changed since it
        was read: a warning, the inversion itself is fine)."""
        try:
            photo = load_crop_photo(crop)
        except LsapFileError as e:
            log.warning("no pasted image for %s: %s", name, e)
            return
        for image, refined in images:
            pasted = paste_back(photo, image, crop, self.paste)
            save_photo(pasted, pasted_path(self.output_dir, name, refined=refined))

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
        record = read_code_file(code_path(output_dir, name))  # its row's entries only
        prov = record.get("provenance") or {}
        rows[name] = {
            "name": name,
            "image_path": record.get("image_path") or "",
            **{k: float(v) for k, v in (record.get("metrics") or {}).items()},
            "seed": prov.get("image_seed", ""),
            "steps": prov.get("steps", ""),
        }
        if isinstance(record.get("refinement"), Mapping):
            rows[name]["pti_steps"] = record["refinement"].get("steps_run", "")
    final = [rows[n] for n in sorted(done & rows.keys())]
    refined = any(r.get("pti_mse") not in (None, "") for r in final)
    numeric = (*METRIC_NAMES, "ssim", "loss", *(REFINED_METRIC_NAMES if refined else ()))
    for r in final:
        for k in numeric:
            r[k] = float(r.get(k, "nan") or "nan")
    columns = (*COLUMNS, *REFINED_COLUMNS) if refined else COLUMNS
    atomic_write_text(output_dir / RESULTS_FILE, write_csv_text(final, columns))
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


def _num_tuned_generators(trainer, pl_module) -> int:
    """Deltas a run will save: one per image (per_image) or one per batch of each shard."""
    dm = trainer.datamodule
    todo = len(dm.plan.todo)
    if pl_module.pti_kwargs["mode"] == "per_image":
        return todo
    shards = [len(ShardSampler(todo, r, trainer.world_size)) for r in range(trainer.world_size)]
    return sum(-(-n // dm.batch_size) for n in shards)


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
