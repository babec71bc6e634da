"""Loggers that continue what an earlier run of the same folder logged: a CSV logger that keeps
the rows already written, and a W&B logger that continues the same W&B run.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when its folder is reused, so resuming a killed
``lsap-train`` or ``lsap-invert`` job in its output folder would erase the curves logged so far.
This one appends instead: the rows already in the file stay, the new run's rows follow (a wider
header is rewritten with the old rows kept, as Lightning does within a run). Steps redone after a
resume from an earlier checkpoint appear twice; the later rows are the resumed run's.
"""

from __future__ import annotations

import csv
import os
import secrets
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from lsap.core.atomic import atomic_write_text


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):  # continue the file: its header is known
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    """``pytorch_lightning.loggers.CSVLogger`` (same arguments) that appends to an existing
    ``<save_dir>/<name>/<version>/metrics.csv`` instead of deleting it."""

    @property
    def experiment(self) -> ExperimentWriter:
        from lightning_fabric.utilities.rank_zero import rank_zero_only

        if self._experiment is not None:
            return self._experiment
        if rank_zero_only.rank != 0:  # other ranks get Lightning's dummy, as with the parent
            return super().experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


RUN_ID_FILE = "wandb_run_id.txt"  # in the logger's save_dir (the run folder)


def _process_rank() -> int:
    """This process's global rank from the launchers' environment (0 without one)."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        value = os.environ.get(key)
        if value and value.isdigit():
            return int(value)
    return 0


def wandb_run_id(folder: str | os.PathLike, *, rank: int | None = None) -> str | None:
    """The W&B run id kept in ``folder/wandb_run_id.txt``: the one recorded there, or a new one
    that rank 0 records (atomically) so that a resumed job in the same folder continues the same
    W&B run. Other ranks (which log nothing) get the recorded id, or None."""
    path = Path(folder) / RUN_ID_FILE
    if path.is_file():
        recorded = path.read_text(encoding="utf-8").strip()
        if recorded.isalnum():
            return recorded
    if (_process_rank() if rank is None else rank) != 0:
        return None
    new = secrets.token_hex(4)  # W&B ids: letters and digits
    atomic_write_text(path, new + "\n")
    return new


class ResumableWandbLogger(WandbLogger):
    """``pytorch_lightning.loggers.WandbLogger`` (same arguments) whose run id, unless given, is
    kept in its ``save_dir`` (:func:`wandb_run_id`): rerunning a killed ``lsap-train`` or
    ``lsap-invert`` in its folder continues the same W&B run (``resume="allow"``) instead of
    starting a new one. Offline runs keep the id too (``wandb sync`` joins them)."""

    def __init__(self, *args: Any, save_dir: str | os.PathLike = ".", **kwargs: Any) -> None:
        if kwargs.get("id") is None and kwargs.get("version") is None:
            kwargs["id"] = wandb_run_id(save_dir)
        super().__init__(*args, save_dir=save_dir, **kwargs)
