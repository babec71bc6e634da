"""The loggers continue an earlier run when a job resumes in its folder: the CSV logger keeps its
metrics, the W&B logger continues the same W&B run."""

from __future__ import annotations

import csv

import pytest

from lsap.systems.loggers import RUN_ID_FILE, ResumableCSVLogger, wandb_run_id


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_second_run_in_the_same_folder_appends_and_keeps_the_first_runs_rows(tmp_path):
    first = ResumableCSVLogger(save_dir=tmp_path, name="csv", version="")
    for step in range(3):
        first.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    first.save()
    path = tmp_path / "csv" / "metrics.csv"
    assert len(_rows(path)) == 3

    # the resumed run: same folder, one known key and one new (the header widens)
    second = ResumableCSVLogger(save_dir=tmp_path, name="csv", version="")
    second.log_metrics({"train/loss": 0.2}, step=3)
    second.save()
    second.log_metrics({"train/loss": 0.1, "val/metric/sncd": 0.05}, step=4)
    second.save()
    rows = _rows(path)
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4]
    assert [float(r["train/loss"]) for r in rows] == [1.0, 0.5, 1.0 / 3, 0.2, 0.1]
    assert [r["val/metric/sncd"] for r in rows] == ["", "", "", "", "0.05"]


def test_the_wandb_run_id_is_kept_in_the_run_folder(tmp_path):
    assert wandb_run_id(tmp_path / "other", rank=1) is None  # only rank 0 records one
    assert not (tmp_path / "other").exists()
    first = wandb_run_id(tmp_path, rank=0)
    assert first and first.isalnum() and (tmp_path / RUN_ID_FILE).read_text().strip() == first
    assert wandb_run_id(tmp_path, rank=0) == first  # the resumed job reads it back
    assert wandb_run_id(tmp_path, rank=1) == first
    assert wandb_run_id(tmp_path / "another", rank=0) != first  # another folder, another run


def test_a_resumed_job_continues_the_same_wandb_run_offline(tmp_path, monkeypatch):
    """Two loggers on the same folder (a job and its resume) log to one W&B run id."""
    wandb = pytest.importorskip("wandb")
    from lsap.config import compose
    from lsap.systems.instantiate import instantiate_group

    for key, value in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "HOME": str(tmp_path),
        "WANDB_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(key, value)
    run_dir = tmp_path / "run"
    cfg = compose("train", ["logger=wandb", f"paths.output_dir={run_dir}"]).logger
    ids = []
    for step in (0, 1):  # the job, then its resume
        (logger,) = instantiate_group(cfg)
        logger.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
        ids.append(logger.experiment.id)
        wandb.finish()
    assert ids[0] == ids[1] == (run_dir / RUN_ID_FILE).read_text().strip()
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(f"-{ids[0]}") for r in runs)
    # a job in another folder starts its own run
    (other,) = instantiate_group(
        compose("train", ["logger=wandb", f"paths.output_dir={tmp_path / 'b'}"]).logger
    )
    assert other.experiment.id != ids[0]
    wandb.finish()
