"""lsap-sweep on a real two-job lsap-invert multirun (toy32, 2 faces, 3 steps): every job found,
numbers read from the jobs (not recomputed), table and plots written; a job with missing results
or a job that never started is named in a one-line error; the submitit layout and lsap-train jobs
(shipped toy encoders) are read too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conf_entries import conf_entry
from omegaconf import OmegaConf

from lsap.config import compose
from lsap.core.errors import LsapFileError
from lsap.io.inversion_layout import read_results
from lsap.sweeps.jobs import find_jobs

pytestmark = pytest.mark.usefixtures("one_thread")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
FAST_REPORT = ["samples.num_samples=2000"]


@pytest.fixture(scope="module")
def multirun(tmp_path_factory) -> Path:
    from lsap.data.toy import write_toy_images

    root = tmp_path_factory.mktemp("sweep")
    write_toy_images(root / "faces", 2, seed=2)
    cmd = [
        sys.executable,
        "-m",
        "lsap.cli.invert",
        "-m",
        "generator=toy32",
        f"data.path={root / 'faces'}",
        "inversion.steps=3",
        "loss.l2=1",
        "loss.lpips=0",
        "loss.options.lpips.backbone=random",
        "loss.options.lpips.net=alex",
        "loss.options.id.weights=random",
        "alignment.num_samples=2000",
        "trainer.enable_progress_bar=false",
        f"paths.log_dir={root}/logs",
        f"paths.cache_dir={root}/cache",
        f"hydra.sweep.dir={root}/multirun",
        "loss.sncd=0,0.5",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "multirun"


class FakeLogger:
    """Records what the report sends to a logger (the calls W&B's Lightning logger takes)."""

    def __init__(self):
        self.metrics, self.images, self.text, self.finalized = {}, {}, {}, False

    def log_metrics(self, metrics):
        self.metrics.update(metrics)

    def log_image(self, key, images):
        self.images[key] = images[0]

    def log_text(self, key, columns, data):
        self.text[key] = data[0][0]

    def finalize(self, status):
        self.finalized = True


def report_cfg(sweep_dir: Path, out: Path, *overrides: str):
    cfg = compose("sweep_report", [f"dir={sweep_dir}", *FAST_REPORT, *overrides])
    cfg.paths.output_dir = str(out)
    return cfg


def _settings(*overrides: str) -> dict:
    """``sweep_report``'s keyword arguments from conf/sweep_report.yaml (Hydra ``overrides``)."""
    keys = ("editability", "heldout", "samples", "device", "batch_size")
    return {k: conf_entry("sweep_report", k, *overrides) for k in keys}


def test_report_reads_every_job_and_writes_table_and_plots(multirun, tmp_path, monkeypatch):
    import lsap.inversion.optimize as optimize
    from lsap.cli.sweep import run

    def no_inversion(*a, **k):
        raise AssertionError("the report must read results, not invert again")

    monkeypatch.setattr(optimize, "optimize_latents", no_inversion)
    logged = FakeLogger()
    monkeypatch.setattr("lsap.cli._runtime.build_loggers", lambda cfg: [logged])
    report, files = run(report_cfg(multirun, tmp_path / "report"))
    # what logger=wandb receives: every job's numbers, both plots, the table
    assert logged.metrics["sweep/job1/sncd"] == report.rows[1]["sncd"]
    assert set(logged.images) == {"sweep/sweep_metrics", "sweep/sweep_frontier"}
    assert all(im.ndim == 3 and im.shape[2] == 3 for im in logged.images.values())
    assert "| job |" in logged.text["sweep/table"] and logged.finalized
    jobs = find_jobs(multirun)
    assert [j.num for j in jobs] == [0, 1]
    assert [r["sncd_weight"] for r in report.rows] == [0.0, 0.5]
    for job, row in zip(jobs, report.rows, strict=True):
        rows = read_results(job.folder)
        assert row["num_images"] == len(rows) == 2
        for k in ("sncd", "mse", "lpips"):
            expected = sum(r[k] for r in rows) / len(rows)
            assert row[k] == pytest.approx(expected, rel=1e-6, nan_ok=True)
        assert 0.0 <= row["target_success"] <= 1.0  # toy32: the demo's classifier-read edits
    assert report.rows[1]["sncd"] < report.rows[0]["sncd"]  # weight 0.5 aligns the codes
    ref = report.reference
    assert ref["baseline_job"] == 0
    assert 0.05 < ref["samples_sncd_mean"] < 0.5
    assert report.rows[1]["mse_vs_baseline"] == pytest.approx(
        report.rows[1]["mse"] / report.rows[0]["mse"] - 1
    )
    out = tmp_path / "report"
    for name in ("sweep.csv", "sweep.md", "sweep.json", "sweep_metrics.png", "sweep_frontier.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 100, name
        assert (out / name) in files
    assert (out / "sweep_frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "sweep.json").read_text())
    assert len(data["rows"]) == 2 and data["reference"]["calibration"][0]["weight"] in (0.0, 0.5)
    csv_lines = (out / "sweep.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith("job,folder,sncd_weight")
    assert "generator samples' SNCD" in (out / "sweep.md").read_text()
    assert not list(out.glob("*.tmp"))


def test_missing_results_is_a_one_line_error(multirun, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(multirun, broken, ignore=shutil.ignore_patterns("sweep_report"))
    job1 = next(p for p in broken.iterdir() if p.name.startswith("1_"))
    (job1 / "results.csv").unlink()
    r = subprocess.run(
        [sys.executable, "-m", "lsap.cli.sweep", f"dir={broken}", *FAST_REPORT],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("lsap-sweep: error:") and str(job1 / "results.csv") in lines[0]
    assert "has not finished" in lines[0]


def test_a_job_that_never_started_is_named(multirun, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(multirun, broken, ignore=shutil.ignore_patterns("sweep_report"))
    shutil.rmtree(next(p for p in broken.iterdir() if p.name.startswith("1_")))
    with pytest.raises(LsapFileError, match=r"1 of 2 jobs have no folder.*#1 \(loss.sncd=0.5\)"):
        find_jobs(broken)


def test_submitit_layout(multirun, tmp_path):
    """submitit / SLURM: numeric job folders beside .submitit/<job id>/ logs."""
    slurm = tmp_path / "slurm"
    shutil.copytree(multirun, slurm, ignore=shutil.ignore_patterns("sweep_report"))
    for p in list(slurm.iterdir()):
        if p.is_dir() and "_" in p.name:
            p.rename(slurm / p.name.split("_", 1)[0])
    for i in (0, 1):
        logs = slurm / ".submitit" / f"4242_{i}"
        logs.mkdir(parents=True)
        (logs / f"4242_{i}_0_log.out").write_text("log")
        (logs / f"4242_{i}_submitted.pkl").write_bytes(b"not read")
    jobs = find_jobs(slurm)
    assert [(j.num, j.folder.name, j.sncd_weight) for j in jobs] == [(0, "0", 0.0), (1, "1", 0.5)]


def test_train_jobs_encode_the_heldout_set(tmp_path):
    """lsap-train jobs: the final encoder.pt of each job (here the shipped toy encoders) encodes
    the same held-out faces; a job without encoder.pt is a one-line error."""
    from lsap.assets import asset_path
    from lsap.sweeps.report import sweep_report

    root = tmp_path / "train_sweep"
    for num, (weight, asset) in enumerate([(0.0, "encoder_e4e.pt"), (0.5, "encoder_lsap_e.pt")]):
        job = root / str(num)
        (job / ".hydra").mkdir(parents=True)
        cfg = compose(
            "train",
            [
                "experiment=toy_lsap_e",
                f"loss.sncd={weight}",
                "alignment.num_samples=2000",
                f"paths.cache_dir={tmp_path}/cache",
            ],
        )
        OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
        hydra = {"hydra": {"job": {"num": num, "config_name": "train"}}}
        hydra["hydra"]["runtime"] = {"choices": {"generator": "toy32"}}
        (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
        (job / ".hydra" / "overrides.yaml").write_text(
            yaml.safe_dump(["experiment=toy_lsap_e", f"loss.sncd={weight}"])
        )
        shutil.copy(asset_path(f"toy32/{asset}"), job / "encoder.pt")
        (job / "csv").mkdir()
        (job / "csv" / "metrics.csv").write_text(
            "step,val/metric/mse,val/metric/sncd\n10,0.5,0.3\n20,0.25,0.2\n"
        )
    report = sweep_report(root, **_settings("heldout.toy.num_images=8", "samples.num_samples=2000"))
    assert report.kind == "train" and [r["sncd_weight"] for r in report.rows] == [0.0, 0.5]
    assert all(r["num_images"] == 8 for r in report.rows)
    assert report.rows[0]["val/metric/mse"] == 0.25  # the last logged validation value
    # the LSAP_E encoder's codes are more aligned than e4e's
    assert report.rows[1]["sncd"] < report.rows[0]["sncd"]
    assert all(0 <= r["target_success"] <= 1 for r in report.rows)
    assert "encoder.pt" in report.reference["source"]
    (root / "1" / "encoder.pt").unlink()
    with pytest.raises(LsapFileError, match=r"encoder.pt.*has not finished"):
        sweep_report(root, **_settings("samples.num_samples=2000"))


def test_report_tensors_are_plain(multirun):
    """Rows hold plain numbers (JSON), not tensors."""
    from lsap.sweeps.report import sweep_report

    report = sweep_report(multirun, **_settings("editability=none", "samples.num_samples=2000"))
    for r in report.rows:
        assert not any(isinstance(v, torch.Tensor) for v in r.values())
        assert r["target_success"] != r["target_success"]  # NaN: editability off


def test_heldout_set_follows_the_jobs_toy_domain():
    """Toy cars jobs (data.domain=cars) are scored on held-out cars of seed 2, not faces."""
    from lsap.data.toy_cars import ToyCars
    from lsap.sweeps.report import heldout_set

    cfg = conf_entry("sweep_report", "heldout", "heldout.toy.start=1", "heldout.toy.num_images=3")
    assert cfg["toy"]["seed"] == 2
    cars, names = heldout_set(cfg, 32, "toycars32", "cars")
    expected = ToyCars(3, seed=2, start=1).images.float() / 127.5 - 1
    torch.testing.assert_close(cars, expected)
    assert names == [f"toycars_2_00000{i}" for i in (1, 2, 3)]
    faces, face_names = heldout_set(cfg, 32, "toy32")
    assert not torch.equal(faces, cars) and face_names[0] == "toy_2_000001"


def test_a_missing_setting_is_a_one_line_error(multirun):
    """The report's settings come from conf/sweep_report.yaml alone: a missing one is named."""
    from lsap.sweeps.report import heldout_set, sweep_report

    settings = _settings("samples.num_samples=2000")
    del settings["samples"]["seed"]
    with pytest.raises(ValueError) as e:
        sweep_report(multirun, **settings)
    assert str(e.value) == "samples misses seed (see conf/sweep_report.yaml)"
    heldout = _settings()["heldout"]
    del heldout["toy"]["start"]
    with pytest.raises(ValueError, match=r"^heldout\.toy misses start \(see conf/sweep_report"):
        heldout_set(heldout, 32, "toy32")
    del heldout["max_images"]
    with pytest.raises(ValueError, match=r"^heldout misses max_images \(see conf/sweep_report"):
        sweep_report(multirun, **{**_settings(), "heldout": heldout})
