"""Benchmark: the cost of ``lsap-sweep`` on 8 lsap-invert jobs x 64 images (toy32), and proof that
it reads the jobs' results instead of inverting again.

The 8 job folders are written in lsap-invert's layout (``.hydra/``, ``results.csv``, ``codes/``,
``multirun.yaml``) with mapped generator samples as codes, so the benchmark needs no inversion run.
The report runs with ``optimize_latents`` replaced by a function that raises: a report that
inverted would fail. Printed: seconds of the whole report (cold: anchors and samples' SNCD
computed; warm: cached), the share spent scoring editability (classifier-read edits), and, for
scale, the measured cost of the inversions it did not rerun (one 64-image optimisation step,
times 200 steps x 8 jobs).

    python bench/sweep_report.py                 # 8 jobs x 64 images, CPU
    python bench/sweep_report.py --jobs 4 --images 16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml
from omegaconf import OmegaConf

WEIGHTS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def write_jobs(root: Path, num_jobs: int, num_images: int, cache_dir: Path) -> Path:
    """A multirun folder of ``num_jobs`` finished lsap-invert jobs on toy32."""
    from lsap.alignment import sncd
    from lsap.alignment.anchors import anchors_from_config
    from lsap.config import compose
    from lsap.core.atomic import atomic_write_text
    from lsap.data.toy import write_toy_images
    from lsap.io import generator_from_config
    from lsap.io.inversion_layout import code_path, write_csv_text
    from lsap.io.inversions import CodeRecord
    from lsap.nets.sampling import iter_w
    from lsap.systems.writer import COLUMNS

    faces = root / "faces"
    write_toy_images(faces, num_images, seed=2)
    (faces / "labels.csv").unlink()
    sweep = root / "multirun"
    weights = WEIGHTS[:num_jobs]
    overrides = ["generator=toy32", f"data.path={faces}", f"paths.cache_dir={cache_dir}"]
    G = None
    for num, w in enumerate(weights):
        job = sweep / f"{num}_loss.sncd={w:g}"
        cfg = compose("invert", [*overrides, f"loss.sncd={w:g}"])
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
        hydra = {"job": {"num": num, "config_name": "invert"}}
        hydra["runtime"] = {"choices": {"generator": "toy32"}}
        (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
        (job / ".hydra" / "overrides.yaml").write_text(
            yaml.safe_dump([*overrides, f"loss.sncd={w:g}"])
        )
        if G is None:
            G = generator_from_config(OmegaConf.to_container(cfg.generator, resolve=True), "cpu")
            a = cfg.alignment
            anchors = anchors_from_config(G, OmegaConf.to_container(a, resolve=True))
        w_plus = torch.cat(list(iter_w(G, num_images, seed=100 + num)))[:, None].repeat(
            1, G.num_ws, 1
        )
        scores = sncd(G, w_plus, anchors)[0]
        rows = []
        for i in range(num_images):
            name = f"toy_2_{i:06d}"
            metrics = {"mse": 0.01 + 0.001 * num, "psnr": 20.0, "lpips": 0.1, "id": float("nan")}
            metrics["sncd"] = float(scores[i])
            CodeRecord(name, w_plus[i : i + 1], metrics=metrics).save(code_path(job, name))
            rows.append({"name": name, "image_path": str(faces / f"{name}.png"), **metrics})
            rows[-1].update(ssim=0.9, loss=0.0, seed=i, steps=200)
        atomic_write_text(job / "results.csv", write_csv_text(rows, COLUMNS))
    multirun = {"hydra": {"sweeper": {"params": None}}}
    multirun["hydra"]["overrides"] = {
        "task": [*overrides, "loss.sncd=" + ",".join(f"{w:g}" for w in weights)]
    }
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    return sweep


def report_settings(*overrides: str) -> dict:
    """``sweep_report``'s keyword arguments from conf/sweep_report.yaml (Hydra ``overrides``)."""
    from lsap.config import compose, plain

    c = compose("sweep_report", ["dir=unused", *overrides])
    return {k: plain(c[k]) for k in ("editability", "heldout", "samples", "device", "batch_size")}


def timed(fn):
    """(wall seconds, CPU seconds of this process, result): on a loaded, shared machine the CPU
    time is the stable figure."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def optimisation_step_seconds(num_images: int, steps: int = 5) -> tuple[float, float]:
    """(wall, CPU) seconds of one LSAP_O step (toy objective: L2 + SNCD + noise reg) on the
    batch: a ``steps``-step run after a warm-up run."""
    from lsap.alignment import compute_anchors
    from lsap.config import compose
    from lsap.inversion.optimize import optimize_latents
    from lsap.inversion.settings import InversionSettings
    from lsap.io import generator_from_config
    from lsap.losses import build_objective

    cfg = compose("invert", ["generator=toy32", "loss.l2=1", "loss.lpips=0", "loss.sncd=0.05"])
    G = generator_from_config(OmegaConf.to_container(cfg.generator, resolve=True), "cpu")
    anchors = compute_anchors(G, 10_000, 0)
    objective = build_objective(
        OmegaConf.to_container(cfg.loss, resolve=True), generator=G, anchors=anchors
    )
    with torch.no_grad():
        targets = G.synthesis(
            torch.cat(list(iter_w_(G, num_images)))[:, None].repeat(1, G.num_ws, 1)
        )
    kwargs = InversionSettings.from_config(cfg.inversion).optimize_kwargs(G)
    optimize_latents(G, targets, objective, **{**kwargs, "steps": 2})  # warm-up
    wall, cpu, _ = timed(
        lambda: optimize_latents(G, targets, objective, **{**kwargs, "steps": steps})
    )
    return wall / steps, cpu / steps


def iter_w_(G, n):
    from lsap.nets.sampling import iter_w

    return iter_w(G, n, seed=7)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--images", type=int, default=64)
    args = p.parse_args()
    torch.set_num_threads(1)
    import lsap.inversion.optimize as optimize
    from lsap.sweeps.report import sweep_report

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        sweep = write_jobs(tmp, args.jobs, args.images, cache)
        real = optimize.optimize_latents

        def refuse(*a, **k):
            raise AssertionError("the sweep report inverted images")

        optimize.optimize_latents = refuse
        try:
            settings = report_settings("device=cpu", "samples.num_samples=10000")
            cold, cold_cpu, _ = timed(lambda: sweep_report(sweep, **settings))
            warm, warm_cpu, report = timed(lambda: sweep_report(sweep, **settings))
            plain, plain_cpu, _ = timed(
                lambda: sweep_report(sweep, **{**settings, "editability": "none"})
            )
        finally:
            optimize.optimize_latents = real
        assert len(report.rows) == args.jobs
        assert all(r["num_images"] == args.images for r in report.rows)
        _, step_cpu = optimisation_step_seconds(args.images)
    steps = 200 * args.jobs
    share = (warm_cpu - plain_cpu) / warm_cpu
    print(f"sweep report: {args.jobs} jobs x {args.images} images (toy32, CPU, 1 thread)")
    print("                                                     wall s     CPU s")
    print(f"  cold (anchors + samples' SNCD computed, cached):  {cold:8.2f}  {cold_cpu:8.2f}")
    print(f"  warm (caches read):                              {warm:8.2f}  {warm_cpu:8.2f}")
    print(f"  warm, editability=none (results.csv only):       {plain:8.2f}  {plain_cpu:8.2f}")
    print(f"  editability share of the warm report (CPU): {share:.1%}")
    print(
        f"  the inversions it reads: 200 steps x {args.jobs} jobs at {step_cpu * 1e3:.0f} ms CPU"
        f"/step = {step_cpu * steps:.1f} s CPU ({step_cpu * steps / warm_cpu:.0f}x the warm report)"
    )
    print("  optimize_latents was replaced by a function that raises: nothing was inverted")


if __name__ == "__main__":
    main()
