"""``lsap-invert``: inversion of a folder of images as a Lightning job: stage-one codes (LSAP_O or
projector optimisation, an encoder, an encoder then optimisation, or a codes file: the
``code_source`` group), then optional result refinement by pivotal tuning (the ``refinement`` group).

Writes the lsap-invert layout (``lsap.io.inversion_layout``) under ``paths.output_dir``; runs on
one or many processes (``trainer=ddp``); a rerun with the same output folder finishes what a killed
run left.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from lsap.cli._common import (
    check_config_dir,
    config_dir,
    die_with_launcher,
    finish_wandb,
    multirun_ddp_job,
    one_line_errors,
)
from lsap.cli._threads import cpu_processes, set_num_threads
from lsap.core.errors import LsapFileError
from lsap.io.inversion_layout import SKIPPED_FILE

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> Path:
    """Invert ``cfg.data.path`` into ``cfg.paths.output_dir``; return that folder."""
    from lsap.config import build_data
    from lsap.core.plain import plain
    from lsap.core.provenance import provenance
    from lsap.data import list_images
    from lsap.data.paste import PasteMask
    from lsap.inversion.settings import InversionSettings, result_settings
    from lsap.inversion.sources import build_code_source
    from lsap.io import generator_from_config
    from lsap.refinement.settings import RefinementSettings
    from lsap.systems.instantiate import build_trainer
    from lsap.systems.inversion import InversionSystem
    from lsap.systems.inversion_callbacks import InversionLogging, InversionProgressBar
    from lsap.systems.writer import InversionWriter

    c = plain(
        cfg, throw_on_missing=True
    )  # the one reading of the config: plain values and typed settings from here on
    # OMP_NUM_THREADS, else physical cores less data workers
    set_num_threads(
        data_workers=int(c["data"]["num_workers"]), cpu_processes=cpu_processes(c["trainer"])
    )
    inversion = InversionSettings.from_config(c["inversion"])
    refinement = RefinementSettings.from_config(c["refinement"])  # bad PTI settings: before work
    output_dir = Path(c["paths"]["output_dir"])
    list_images(c["data"]["path"])  # fail fast on a missing or empty input, before the networks
    G = generator_from_config(c["generator"], "cpu")  # the trainer moves it to its device
    source = build_code_source(c["code_source"], G)
    system = InversionSystem(
        G,
        loss=c["loss"],
        inversion=inversion,
        alignment=c["alignment"],
        metrics=c["metrics"],
        seed=int(c["seed"]),
        code_source=source,
        refinement=refinement,
    )
    data = build_data(  # the data=images entry: lsap.systems.data.InversionDataModule
        c["data"],
        output_dir=output_dir,
        size=G.resolution,
        generator_sha256=G.sha256,
        refinement=refinement.name,
        code_source=source.name,
        settings=result_settings(c, source.describe()),  # a resume must not mix settings
        crop=G.crop,  # photos fill the generator's valid region (generator.crop)
    )
    record = provenance(
        config=c,
        generator=G,
        seed=int(c["seed"]),
        code_source=source.describe(),
        refinement=refinement.name,
    )
    writer = InversionWriter(
        output_dir,
        record,
        bool(c["save_noise"]),
        refinement=refinement,
        base_path=c["generator"]["path"],
        paste=PasteMask.from_config(c["paste_back"]),
    )
    log_cfg = c["log"]
    callbacks = [
        writer,
        InversionLogging(output_dir, curves=log_cfg["curves"], grid=log_cfg["grid"]),
    ]
    if _trainer_keys(c["trainer"])["enable_progress_bar"]:
        callbacks.append(InversionProgressBar())
    # Shards come from our own sampler: Lightning's DistributedSampler would pad with duplicates.
    trainer = build_trainer(
        c["trainer"], logger=c["logger"], callbacks=callbacks, use_distributed_sampler=False
    )
    try:
        trainer.predict(system, datamodule=data, return_predictions=False)
    finally:
        finish_wandb()
    _check_some_image_read(c["data"]["path"], writer.summary)
    return output_dir


def _trainer_keys(trainer: Mapping[str, Any]) -> dict[str, Any]:
    """The ``trainer`` group (Lightning's ``Trainer`` arguments) with the two keys lsap-invert
    reads itself (``conf/trainer/default.yaml`` holds them)."""
    from lsap.core.plain import settings_dict

    return settings_dict(
        trainer,
        ("accelerator", "enable_progress_bar"),
        what="trainer",
        see="conf/trainer/default.yaml",
        exact=False,
    )


def _check_some_image_read(data_path: str, summary: dict) -> None:
    """A folder of which no image could be read is an error, not an empty table (rank zero holds
    the summary; other ranks have none and return)."""
    skipped = summary.get("skipped") or []
    if summary and summary.get("num_images") == 0 and skipped:
        path, reason = skipped[0]
        raise LsapFileError(
            data_path,
            f"no image could be read ({len(skipped)} unreadable, listed in "
            f"{SKIPPED_FILE}; first: {path}: {reason})",
        )


@hydra.main(config_path=config_dir(), config_name="invert", version_base="1.3")
@one_line_errors("lsap-invert", settings=True)  # bad files or settings: one line, exit 2
def _main(cfg: DictConfig) -> None:
    with multirun_ddp_job():  # a multirun job's DDP workers join this job, in its folder
        run(cfg)


def main() -> None:
    die_with_launcher()  # a DDP worker ends with its launcher
    check_config_dir("invert")
    _main()


if __name__ == "__main__":
    main()
