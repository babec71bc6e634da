"""``lsap-sweep``: the answer of an SNCD-weight sweep in one command (docs/sweeps.md).

Reads every job of a Hydra multirun folder of ``lsap-invert`` (LSAP_O) or ``lsap-train`` (LSAP_E)
runs, local or submitit / SLURM (``lsap.sweeps.jobs``), and writes into ``<dir>/sweep_report``:
``sweep.csv``, ``sweep.md``, ``sweep.json`` (one row per job, the references, the calibrated
weight of each curve) and ``sweep_metrics.png``, ``sweep_frontier.png``; with ``logger=wandb`` the
same numbers, table and plots go to W&B. A job with missing results stops it with one line naming
the job's folder (exit status 2).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from lsap.cli._common import check_config_dir, config_dir, one_line_errors, resolve_device
from lsap.cli._threads import set_num_threads
from lsap.core.plain import plain

log = logging.getLogger(__name__)


def calibrate_report(report, settings) -> list[dict[str, Any]]:
    """Apply the weight rule to each curve of the report; record the choices in its references."""
    from lsap.sweeps.calibrate import choose_weight

    out = []
    if settings is None or report.baseline() is None:
        return out
    for label, rows in report.series().items():
        if len(rows) < 2:
            continue
        c = choose_weight(
            rows,
            samples_sncd=report.reference["samples_sncd_mean"],
            rule=str(settings["rule"]),
            metric=str(settings["metric"]),
            tolerance=float(settings["tolerance"]),
        )
        out.append({"series": label, **c.to_dict()})
    report.reference["calibration"] = out
    return out


def run(cfg: DictConfig):
    """Build, write and log the report of ``cfg.dir``; returns the ``SweepReport``."""
    from lsap.core.provenance import provenance
    from lsap.sweeps.plots import write_plots
    from lsap.sweeps.report import markdown, sweep_report, write_report

    c = plain(cfg, throw_on_missing=True)  # the one reading of the config
    set_num_threads(data_workers=0, cpu_processes=1)  # OMP_NUM_THREADS, else physical cores
    report = sweep_report(
        c["dir"],
        editability=c["editability"],
        heldout=c["heldout"],
        samples=c["samples"],
        device=resolve_device(str(c["device"])),
        batch_size=int(c["batch_size"]),
    )
    calibrate_report(report, c.get("calibration"))  # the calibration group is optional here
    out = Path(c["paths"]["output_dir"])
    files = write_report(report, out, provenance=provenance(config=c))
    plots = write_plots(report, out)
    md = markdown(report)
    print(md)
    log.info("sweep report of %d jobs in %s", len(report.rows), out)
    _log(c["logger"], report, md, plots)
    return report, [*files, *plots.values()]


def _log(logger: Any, report, md: str, plots: dict[str, Path]) -> None:
    from lsap.cli._runtime import build_loggers, finish_loggers, log_to

    loggers = build_loggers(logger)
    if not loggers:
        return
    import math

    import numpy as np
    from PIL import Image

    metrics = {}
    for r in report.rows:
        for k, v in r.items():
            if isinstance(v, float) and math.isfinite(v):
                metrics[f"sweep/job{r['job']}/{k}"] = v
    try:
        log_to(
            loggers,
            metrics=metrics,
            images={
                f"sweep/{p.stem}": np.asarray(Image.open(p).convert("RGB")) for p in plots.values()
            },
            text={"sweep/table": md},
        )
    finally:
        finish_loggers(loggers)


@hydra.main(config_path=config_dir(), config_name="sweep_report", version_base="1.3")
@one_line_errors("lsap-sweep", settings=True)
def _main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    check_config_dir("sweep_report")
    _main()


if __name__ == "__main__":
    main()
