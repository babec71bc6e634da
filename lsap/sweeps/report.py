"""The answer of an SNCD-weight sweep: one row per job, the references, written as CSV / Markdown /
JSON (atomically).

Per job: its weight (``loss.sncd``), alignment mode and the other swept settings, the mean SNCD of
its codes, MSE / PSNR / SSIM / LPIPS / ID, editability (``lsap.sweeps.editability``) and the
changes against the no-SNCD baseline (the weight-0 job). References: the generator samples' mean
SNCD (``lsap.alignment.reference``: codes below it are "more average" than the generator's own
faces) and the baseline.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lsap.core.plain import settings_dict
from lsap.sweeps.editability import EDIT_KEYS, EditProbe, build_probe, edit_scores
from lsap.sweeps.jobs import INVERT, SweepJob, find_jobs, swept_keys
from lsap.sweeps.results import FIDELITY, JobResults, read_invert_job, read_train_job

log = logging.getLogger(__name__)

METRICS = ("sncd", *FIDELITY)
HIGHER_IS_BETTER = {"psnr", "ssim", "id", "target_success", "target_shift"}
REPORT_FILES = ("sweep.csv", "sweep.md", "sweep.json")
_SEE = "conf/sweep_report.yaml"
# generator options whose held-out set defaults to toy images (of the jobs' data.domain)
TOY_GENERATORS = ("toy32", "toycars32")
NO_EDITABILITY = (
    "none: no attribute classifier for this generator; SNCD is the editability proxy (the "
    "paper's claim: lower SNCD, better edits). Set editability.classifier/directions, or run "
    "lsap-eval editing=... on the jobs' folders for edited FID / ID"
)


@dataclass
class SweepReport:
    """Rows (one per job, sorted by weight within each series) and the references."""

    sweep_dir: str
    kind: str
    swept: list[str]
    rows: list[dict[str, Any]]
    reference: dict[str, Any] = field(default_factory=dict)

    def series(self) -> dict[str, list[dict[str, Any]]]:
        """Label -> rows of one curve (the swept settings other than the weight); the weight-0
        baseline belongs to every curve (at weight 0 the alignment mode does not matter)."""
        others = [k for k in self.swept if k != "loss.sncd"]
        base = [r for r in self.rows if r["sncd_weight"] == 0.0]
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in self.rows:
            if r["sncd_weight"] == 0.0 and others:
                continue
            label = ", ".join(f"{k}={r.get(k)}" for k in others) or "sweep"
            groups.setdefault(label, []).append(r)
        if others:
            for rows in groups.values():
                rows[:0] = base[:1]
        return {k: sorted(v, key=lambda r: r["sncd_weight"]) for k, v in groups.items()}

    def baseline(self) -> dict[str, Any] | None:
        base = [r for r in self.rows if r["sncd_weight"] == 0.0]
        return base[0] if base else None


class _Generators:
    """Generators, anchors and samples' SNCD of the jobs, loaded once per distinct generator."""

    def __init__(self, device: torch.device, samples: Mapping[str, Any]) -> None:
        self.device = device
        self.samples = settings_dict(samples, ("num_samples", "seed"), what="samples", see=_SEE)
        self.cache: dict[str, tuple[Any, list, Any]] = {}

    def get(self, job: SweepJob):
        from lsap.alignment.anchors import anchors_from_config
        from lsap.alignment.reference import sample_sncd
        from lsap.io import generator_from_config

        gcfg = job.config.get("generator") or {}
        a = {"batch_size": 10_000, **(job.config.get("alignment") or {})}
        key = repr((sorted(gcfg.items()), sorted(a.items())))
        if key not in self.cache:
            G = generator_from_config(gcfg, self.device).eval()
            anchors = anchors_from_config(G, a)
            samples = sample_sncd(
                G,
                anchors,
                int(self.samples["num_samples"]),
                int(self.samples["seed"]),
                cache_dir=a.get("cache_dir"),
            )
            self.cache[key] = (G, anchors, samples)
        return self.cache[key]


def heldout_set(
    cfg: Mapping[str, Any],
    resolution: int,
    generator_choice: str | None,
    domain: str = "faces",
):
    """The held-out images lsap-train jobs are scored on: ``heldout.path`` (a folder, its first
    ``max_images``), or the toy images ``heldout.toy`` of the jobs' toy ``domain`` (``data.domain``:
    faces or cars; seed 2: seen by no shipped model) when the generator is a toy one.

    Args:
        cfg: ``heldout`` of conf/sweep_report.yaml: ``path``, ``max_images`` and ``toy: {seed,
            start, num_images}``, all required.

    Returns:
        ``(images [N, 3, R, R] in [-1, 1], names)``.

    Raises:
        ValueError: one line naming a missing setting, or no held-out images for the generator.
    """
    cfg = settings_dict(cfg, ("path", "max_images", "toy"), what="heldout", see=_SEE)
    if cfg["path"]:
        from lsap.data import list_images, load_image
        from lsap.io.inversions import image_name

        files = list_images(cfg["path"])[: int(cfg["max_images"])]
        images = torch.stack([load_image(f, resolution) for f in files])
        return images, [image_name(f, cfg["path"]) for f in files]
    if generator_choice in TOY_GENERATORS or resolution == 32:
        from lsap.data.toy import toy_dataset

        t = settings_dict(cfg["toy"], ("seed", "start", "num_images"), what="heldout.toy", see=_SEE)
        seed, start, n = int(t["seed"]), int(t["start"]), int(t["num_images"])
        data = toy_dataset(domain)(n, seed=seed, resolution=resolution, start=start)
        images = data.images.float() / 127.5 - 1.0  # [N, 3, R, R]
        return images, [f"{data.prefix}_{seed}_{i:06d}" for i in range(start, start + n)]
    raise ValueError(
        "lsap-train jobs need held-out images to encode: set heldout.path=<folder of images>"
    )


def sweep_report(
    sweep_dir: str | Path,
    *,
    editability: Any,
    heldout: Mapping[str, Any],
    samples: Mapping[str, Any],
    device: str | torch.device,
    batch_size: int,
) -> SweepReport:
    """Read every job of a multirun folder and build its report (see the module docstring).

    The settings are those of conf/sweep_report.yaml (the command's config), none defaulted here.

    Args:
        editability: ``auto`` | ``none`` | a mapping (``lsap.sweeps.editability.build_probe``).
        heldout: held-out images of lsap-train jobs (``{path, max_images, toy: {seed, start,
            num_images}}``, :func:`heldout_set`).
        samples: ``{num_samples, seed}`` of the generator samples whose SNCD is the reference.
        device: where the generators run.
        batch_size: images per forward pass.

    Raises:
        LsapFileError: a job is missing or has no results (one line naming it).
        ValueError: a setting is missing (one line naming it and conf/sweep_report.yaml).
    """
    heldout = settings_dict(heldout, ("path", "max_images", "toy"), what="heldout", see=_SEE)
    jobs = find_jobs(sweep_dir)
    kind = jobs[0].kind
    device = torch.device(device)
    gens = _Generators(device, samples)
    swept = swept_keys(jobs)
    probes: dict[str, EditProbe | None] = {}
    heldout_cache: dict[tuple[int, str], tuple] = {}
    rows, references = [], []
    # read every job's results first: a job with missing results fails before any slow step
    read = []
    for job in jobs:
        if job.kind == INVERT:
            read.append(read_invert_job(job))
        else:
            from lsap.sweeps.results import encoder_file

            encoder_file(job)
            read.append(None)
    for job, res in zip(jobs, read, strict=True):
        G, anchors, smp = gens.get(job)
        choice = job.choices.get("generator")
        pkey = f"{choice}|{G.sha256}"
        if pkey not in probes:
            probes[pkey] = build_probe(editability, G, choice)
        probe = probes[pkey]
        if res is None:
            domain = str((job.config.get("data") or {}).get("domain") or "faces")
            if (G.resolution, domain) not in heldout_cache:
                heldout_cache[G.resolution, domain] = heldout_set(
                    heldout, G.resolution, choice, domain
                )
            images, names = heldout_cache[G.resolution, domain]
            res = read_train_job(job, G, anchors, images, names, batch_size=batch_size)
        elif probe is not None:
            res = read_invert_job(job, load_codes=True)
        row = _row(job, res, swept, sweep_dir)
        if probe is not None:
            row.update(edit_scores(probe, G, res.w_plus, res.noise, batch_size=batch_size))
        else:
            row.update({k: math.nan for k in EDIT_KEYS})
        rows.append(row)
        references.append(
            {
                "generator_sha256": G.sha256,
                "samples_sncd_mean": smp.mean,
                "samples_sncd_q01": smp.quantile(0.01),
                "samples_sncd_q25": smp.quantile(0.25),
                "samples_num": int(smp.per_layer.shape[0]),
                "editability": probe.description if probe is not None else NO_EDITABILITY,
            }
        )
    if len({r["generator_sha256"] for r in references}) > 1:
        log.warning("the sweep's jobs use different generators: references are the first job's")
    report = SweepReport(str(sweep_dir), kind, swept, rows, dict(references[0]))
    report.reference["source"] = (
        "results.csv and codes/ of each lsap-invert job"
        if kind == INVERT
        else "each lsap-train job's encoder.pt on the held-out images (one forward pass each) "
        "and its last logged val/metric/*"
    )
    _add_relative(report)
    return report


def _row(job: SweepJob, res: JobResults, swept: Sequence[str], root) -> dict[str, Any]:
    try:
        folder = str(job.folder.relative_to(root))
    except ValueError:
        folder = str(job.folder)
    row: dict[str, Any] = {
        "job": job.num,
        "folder": folder,
        "sncd_weight": job.sncd_weight,
        "sncd_mode": job.sncd_mode,
    }
    for k in swept:
        if k not in ("loss.sncd",):
            row[k] = job.overrides.get(k)
    row["num_images"] = len(res.names)
    for k in METRICS:
        row[k] = res.mean(k)
    for k, v in res.logged.items():
        row[k] = v
    return row


def _add_relative(report: SweepReport) -> None:
    """``<metric>_vs_baseline`` (ratio - 1 to the weight-0 job) and ``sncd_vs_samples``."""
    base = report.baseline()
    ref = report.reference.get("samples_sncd_mean", math.nan)
    for r in report.rows:
        for k in ("mse", "lpips", "target_success", "target_shift"):
            b = base.get(k, math.nan) if base else math.nan
            v = r.get(k, math.nan)
            r[f"{k}_vs_baseline"] = v / b - 1.0 if _finite(v, b) and b != 0 else math.nan
        r["sncd_vs_samples"] = r["sncd"] - ref
    report.reference["baseline_job"] = base["job"] if base else None


def _finite(*xs: float) -> bool:
    return all(isinstance(x, float | int) and math.isfinite(x) for x in xs)


# -- writing ------------------------------------------------------------------------------------


def columns(report: SweepReport) -> list[str]:
    keys: list[str] = []
    for r in report.rows:
        keys += [k for k in r if k not in keys]
    return keys


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return "" if v is None else str(v)


def markdown(report: SweepReport) -> str:
    """The table (most useful columns) with the references, as Markdown."""
    ref = report.reference
    shown = [
        c
        for c in (
            "job",
            "sncd_weight",
            "sncd_mode",
            *[k for k in report.swept if k != "loss.sncd"],
            "num_images",
            "sncd",
            "mse",
            "mse_vs_baseline",
            "lpips",
            "id",
            "target_success",
            "target_shift",
            "others_abs_delta",
        )
        if any(not (isinstance(r.get(c), float) and math.isnan(r.get(c))) for r in report.rows)
    ]
    shown = list(dict.fromkeys(shown))
    lines = [
        f"# SNCD sweep: {report.sweep_dir}",
        "",
        f"{len(report.rows)} lsap-{report.kind} jobs; numbers from {ref.get('source')}.",
        "",
        "| " + " | ".join(shown) + " |",
        "|" + "---|" * len(shown),
    ]
    for r in report.rows:
        cells = []
        for c in shown:
            v = r.get(c)
            if c.endswith("_vs_baseline") and isinstance(v, float) and math.isfinite(v):
                cells.append(f"{100 * v:+.1f} %")
            else:
                cells.append(_fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"- generator samples' SNCD (reference line): mean {ref.get('samples_sncd_mean', 0):.4g}, "
        f"1st percentile {ref.get('samples_sncd_q01', 0):.4g} over {ref.get('samples_num')} "
        "samples; codes below the mean are more aligned than the generator's typical face",
        f"- baseline: job {ref.get('baseline_job')} (loss.sncd=0)"
        if ref.get("baseline_job") is not None
        else "- baseline: none (no loss.sncd=0 job in the sweep)",
        f"- editability: {ref.get('editability')}",
        "- sncd: total over the w+ layers, mean over images; mse on uint8-quantised [0, 1] images",
    ]
    for c in ref.get("calibration") or ():
        lines.append(
            f"- calibrated weight ({c['series']}; rule {c['rule']}, {c['metric']} budget "
            f"{100 * c['tolerance']:g} %): **loss.sncd={c['weight']:g}**: {c['reason']}"
        )
    return "\n".join(lines) + "\n"


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_report(
    report: SweepReport, out_dir: str | Path, *, provenance: Mapping[str, Any] | None = None
) -> list[Path]:
    """Write ``sweep.csv``, ``sweep.md`` and ``sweep.json`` (rows, references, provenance)
    atomically; returns their paths."""
    from lsap.core.atomic import atomic_write_json, atomic_write_text
    from lsap.io.inversion_layout import write_csv_text

    out = Path(out_dir)
    cols = columns(report)
    rows = [{k: ("" if r.get(k) is None else r.get(k)) for k in cols} for r in report.rows]
    paths = [
        atomic_write_text(out / "sweep.csv", write_csv_text(rows, cols)),
        atomic_write_text(out / "sweep.md", markdown(report)),
        atomic_write_json(
            out / "sweep.json",
            _json_safe(
                {
                    "sweep_dir": report.sweep_dir,
                    "kind": report.kind,
                    "swept": report.swept,
                    "reference": report.reference,
                    "rows": report.rows,
                    "provenance": dict(provenance or {}),
                }
            ),
        ),
    ]
    return paths
