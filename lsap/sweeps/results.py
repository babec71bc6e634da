"""What each job of a sweep produced, read from its run folder (nothing is inverted again).

- ``lsap-invert`` jobs (LSAP_O): ``results.csv`` gives the per-image MSE / PSNR / SSIM / LPIPS /
  ID / SNCD the job measured; the code files (``codes/<name>.pt``: w_plus and noise) are read only
  when editability is scored.
- ``lsap-train`` jobs (LSAP_E): a trained encoder is not a set of inversions, so its final
  ``encoder.pt`` encodes one fixed held-out image set (the same for every job; one encoder forward
  and one synthesis per image, no optimisation) and MSE / PSNR / SSIM / SNCD are measured on it;
  the last validation metrics the job logged (``csv/metrics.csv``: ``val/metric/*``) are read
  beside them.

A job whose results are missing or incomplete raises :class:`~lsap.core.errors.LsapFileError` naming
its folder: a sweep report never silently drops a job.
"""

from __future__ import annotations

import contextlib
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lsap.core.errors import LsapFileError
from lsap.io.inversion_layout import METRIC_NAMES, RESULTS_FILE, SKIPPED_FILE, code_path, read_rows
from lsap.io.inversions import CodeRecord
from lsap.sweeps.jobs import INVERT, SweepJob

FIDELITY = ("mse", "psnr", "ssim", "lpips", "id")
ENCODER_FILE = "encoder.pt"


@dataclass
class JobResults:
    """One job's per-image numbers (and, when loaded, its codes).

    Attributes:
        names: image names, in row order.
        metrics: name -> per-image values [N] (NaN where the job did not compute the metric).
        w_plus: [N, num_ws, w_dim] codes, or None when not loaded.
        noise: per-layer noise [N, 1, R, R] the codes were made with, or None.
        logged: further numbers the job logged (lsap-train: its last ``val/metric/*``).
        source: how the numbers were obtained (for the report).
    """

    names: list[str]
    metrics: dict[str, Tensor]
    w_plus: Tensor | None = None
    noise: list[Tensor] | None = None
    logged: dict[str, float] = field(default_factory=dict)
    source: str = ""

    def mean(self, key: str) -> float:
        v = self.metrics.get(key)
        if v is None:
            return math.nan
        v = v[torch.isfinite(v)]
        return float(v.double().mean()) if v.numel() else math.nan


def _expected_count(job: SweepJob) -> int | None:
    """Images the job was asked to invert (its input folder minus the unreadable files it listed),
    or None when the input folder is not here to count."""
    path = (job.config.get("data") or {}).get("path")
    if not path or not Path(str(path)).exists():
        return None
    from lsap.data import list_images

    try:
        n = len(list_images(path))
    except LsapFileError:
        return None
    return n - len(_skipped(job.folder))


def _skipped(folder: Path) -> list[str]:
    path = folder / SKIPPED_FILE
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [r["image_path"] for r in csv.DictReader(f) if r.get("image_path")]


def read_invert_job(job: SweepJob, *, load_codes: bool = False) -> JobResults:
    """Results of an lsap-invert job (``results.csv``; codes with ``load_codes``).

    Raises:
        LsapFileError: no ``results.csv`` or no row in it (the job failed or never finished),
            fewer rows than input images, or a row without its code file.
    """
    if job.kind != INVERT:
        raise ValueError(f"{job.folder} is an lsap-{job.kind} job, not lsap-invert")
    path = job.folder / RESULTS_FILE
    if not path.is_file():
        raise LsapFileError(
            path, "missing: the job failed or has not finished (rerun it to resume)"
        )
    rows = read_rows(path)
    if not rows:
        raise LsapFileError(path, "no result rows: the job failed or has not finished")
    expected = _expected_count(job)
    if expected is not None and len(rows) < expected:
        raise LsapFileError(
            path, f"{len(rows)} of {expected} images have results: the job has not finished"
        )
    names = [r["name"] for r in rows]
    metrics = {
        k: torch.tensor([float(r[k]) for r in rows], dtype=torch.float64)
        for k in METRIC_NAMES
        if k in rows[0]
    }
    if "ssim" in rows[0]:
        metrics["ssim"] = torch.tensor(
            [float(r["ssim"] or "nan") for r in rows], dtype=torch.float64
        )
    out = JobResults(names, metrics, source="results.csv and codes/ of the job")
    missing = [n for n in names if not code_path(job.folder, n).is_file()]
    if missing:
        raise LsapFileError(
            code_path(job.folder, missing[0]), f"missing ({len(missing)} code files of listed rows)"
        )
    if load_codes:
        codes, noises = [], []
        for n in names:
            rec = CodeRecord.load(code_path(job.folder, n))
            codes.append(rec.w_plus.float())
            noises.append(rec.noise)
        out.w_plus = torch.cat(codes)
        if all(nz is not None for nz in noises):
            out.noise = [torch.cat(layer) for layer in zip(*noises, strict=True)]
    return out


def last_logged(job: SweepJob, prefix: str = "val/metric/") -> dict[str, float]:
    """The last value of every ``<prefix>*`` column the job's CSV logger wrote (empty without
    one)."""
    out: dict[str, float] = {}
    for path in sorted(job.folder.glob("csv/**/metrics.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                for k, v in row.items():
                    if k and k.startswith(prefix) and v not in (None, ""):
                        with contextlib.suppress(ValueError):  # a non-numeric cell
                            out[k] = float(v)
    return out


def encoder_file(job: SweepJob) -> Path:
    """The job's final encoder, or a one-line error naming the folder."""
    path = job.folder / ENCODER_FILE
    if not path.is_file():
        raise LsapFileError(path, "missing: the training job failed or has not finished")
    return path


@torch.no_grad()
def read_train_job(
    job: SweepJob,
    G,
    anchors,
    heldout_images: Tensor,
    heldout_names: list[str],
    *,
    batch_size: int = 64,
) -> JobResults:
    """An lsap-train job's encoder on the held-out images: codes, MSE / PSNR / SSIM / SNCD.

    Args:
        G: the job's generator; anchors: its S^N anchors.
        heldout_images: [N, 3, R, R] in [-1, 1], R = G.resolution (the same set for every job).
    """
    from lsap.inversion.encode import encode_images
    from lsap.inversion.report import ReconstructionMetrics
    from lsap.io.encoders import load_encoder
    from lsap.nets.synthesis import synthesize

    device = G.w_avg.device
    encoder = load_encoder(encoder_file(job), device).eval()
    codes, parts = [], {}
    metrics = ReconstructionMetrics(G, anchors).to(device)
    for s in range(0, heldout_images.shape[0], batch_size):
        x = heldout_images[s : s + batch_size].to(device)
        w = encode_images(encoder, x, num_ws=G.num_ws, w_dim=G.w_dim, crop=G.crop)
        recon = synthesize(G, w, batch_size=batch_size)
        for k, v in metrics(recon, x, w).items():
            parts.setdefault(k, []).append(v.double().cpu())
        codes.append(w.cpu())
    return JobResults(
        list(heldout_names),
        {k: torch.cat(v) for k, v in parts.items()},
        w_plus=torch.cat(codes),
        logged=last_logged(job),
        source="the job's encoder.pt on the held-out images (one forward pass each)",
    )


def describe(results: JobResults) -> dict[str, Any]:
    """Means of a job's metrics (plain floats)."""
    return {k: results.mean(k) for k in (*FIDELITY, "sncd")}
