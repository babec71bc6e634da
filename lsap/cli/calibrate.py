"""``lsap-calibrate``: choose the SNCD weight for a generator and objective (docs/calibration.md).

Runs a short ``lsap-invert`` multirun over ``weights`` on a few images (a subprocess per sweep,
exactly what a user's ``lsap-invert -m`` runs) or takes an existing multirun (``sweep_dir``, also
``lsap-train`` sweeps), builds its ``lsap-sweep`` report, applies the ``calibration`` rule
(``lsap.sweeps.calibrate.choose_weight``) and writes, under the run folder, the report
(``sweep.*``, plots) and ``calibration.json`` / ``calibration.md``: the chosen weight, the rule
and its settings, the evidence for every swept weight and the provenance (config, generator,
version). The last line printed is the override to use, ``loss.sncd=<weight>``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from lsap.cli._common import check_config_dir, config_dir, one_line_errors, resolve_device
from lsap.cli._threads import set_num_threads
from lsap.core.errors import LsapFileError
from lsap.core.plain import plain

log = logging.getLogger(__name__)


def prepare_images(c: Mapping[str, Any], folder: Path) -> Path:
    """The first ``num_images`` of ``images`` (or held-out toy faces) copied into ``folder``."""
    n = int(c["num_images"])
    folder.mkdir(parents=True, exist_ok=True)
    if c["images"]:
        from lsap.data import list_images

        for f in list_images(c["images"])[:n]:
            shutil.copy(f, folder / f.name)
    else:
        from lsap.data.toy import write_toy_images

        t = c["heldout"]["toy"]
        write_toy_images(folder, n, seed=int(t["seed"]), start=int(t["start"]))
        (folder / "labels.csv").unlink(missing_ok=True)
    return folder


def run_short_sweep(c: Mapping[str, Any], out: Path) -> Path:
    """``lsap-invert -m <invert_overrides> loss.sncd=<weights>`` into ``out/sweep``."""
    images = prepare_images(c, out / "images")
    sweep_dir = out / "sweep"
    weights = ",".join(f"{float(w):g}" for w in c["weights"])
    if not any(float(w) == 0.0 for w in c["weights"]):
        raise ValueError("calibration weights must include 0 (the no-SNCD baseline)")
    cmd = [
        sys.executable,
        "-m",
        "lsap.cli.invert",
        "-m",
        *[str(o) for o in c["invert_overrides"]],
        f"data.path={images}",
        f"paths.cache_dir={c['paths']['cache_dir']}",
        f"paths.log_dir={out / 'logs'}",
        f"hydra.sweep.dir={sweep_dir}",
        f"loss.sncd={weights}",
    ]
    log.info("short sweep: %s", " ".join(cmd[2:]))
    proc = subprocess.run(cmd, env=os.environ.copy(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise LsapFileError(sweep_dir, f"the short lsap-invert sweep failed: {tail[0]}")
    return sweep_dir


def run(cfg: DictConfig) -> dict[str, Any]:
    """Calibrate; returns what calibration.json holds."""
    from lsap.cli.sweep import calibrate_report
    from lsap.core.atomic import atomic_write_json, atomic_write_text
    from lsap.core.provenance import provenance
    from lsap.sweeps.plots import write_plots
    from lsap.sweeps.report import markdown, sweep_report, write_report

    c = plain(cfg, throw_on_missing=True)  # the one reading of the config
    set_num_threads(data_workers=0, cpu_processes=1)  # OMP_NUM_THREADS, else physical cores
    out = Path(c["paths"]["output_dir"])
    sweep_dir = Path(c["sweep_dir"]) if c["sweep_dir"] else run_short_sweep(c, out)
    report = sweep_report(
        sweep_dir,
        editability=c["editability"],
        heldout=c["heldout"],
        samples=c["samples"],
        device=resolve_device(str(c["device"])),
        batch_size=int(c["batch_size"]),
    )
    if report.baseline() is None:
        raise LsapFileError(sweep_dir, "no loss.sncd=0 job: calibration needs the baseline")
    choices = calibrate_report(report, c["calibration"])
    if not choices:
        raise LsapFileError(sweep_dir, "no curve with a baseline and another weight to calibrate")
    prov = provenance(config=c, generator_sha256=report.reference.get("generator_sha256"))
    write_report(report, out, provenance=prov)
    write_plots(report, out)
    result = {
        "weight": choices[0]["weight"],
        "override": choices[0]["override"],
        "sweep_dir": str(sweep_dir),
        "samples_sncd_mean": report.reference["samples_sncd_mean"],
        "curves": choices,
        "provenance": prov,
    }
    atomic_write_json(out / "calibration.json", _json_safe(result))
    md = markdown(report)
    atomic_write_text(out / "calibration.md", md)
    print(md)
    print(f"lsap-calibrate: {result['override']}  ({choices[0]['reason']})")
    return result


def _json_safe(x: Any) -> Any:
    from lsap.sweeps.report import _json_safe as safe

    return safe(x)


@hydra.main(config_path=config_dir(), config_name="calibrate", version_base="1.3")
@one_line_errors("lsap-calibrate", settings=True)
def _main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    check_config_dir("calibrate")
    _main()


if __name__ == "__main__":
    main()
