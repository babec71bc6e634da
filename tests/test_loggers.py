"""The CSV logger keeps an earlier run's metrics when a job resumes in its folder."""

from __future__ import annotations

import csv

from lsap.systems.loggers import ResumableCSVLogger


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
