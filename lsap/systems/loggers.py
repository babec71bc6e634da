"""A CSV logger that keeps what an earlier run of the same folder wrote.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when its folder is reused, so resuming a killed
``lsap-train`` or ``lsap-invert`` job in its output folder would erase the curves logged so far.
This one appends instead: the rows already in the file stay, the new run's rows follow (a wider
header is rewritten with the old rows kept, as Lightning does within a run). Steps redone after a
resume from an earlier checkpoint appear twice; the later rows are the resumed run's.
"""

from __future__ import annotations

import csv

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


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
