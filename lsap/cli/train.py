"""``lsap-train``: LSAP_E encoder training (and the e4e / pSp baselines) as a Lightning job.

    lsap-train experiment=tiny                         # offline toy run on the tiny generator
    lsap-train experiment=lsap_e_ffhq trainer=ddp      # the paper's setting, one node
    lsap-train experiment=lsap_e_ffhq sweep=sncd       # loss.sncd in (0, 0.1, 0.5, 1.0)

Everything is in ``conf/train.yaml`` and its groups; outputs go to the run folder
(``checkpoints/``, ``images/``, ``csv/`` or ``wandb/``, ``encoder.pt``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
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
from lsap.config import build_data, plain
from lsap.core.errors import LsapFileError

log = logging.getLogger(__name__)

# Progressive e4e heads sit unused until their stage starts: DDP must allow unused parameters.
_DDP_STRATEGIES = {
    "ddp": "ddp_find_unused_parameters_true",
    "ddp_spawn": "ddp_spawn_find_unused_parameters_true",
}


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str | Path) -> str | None:
    """``None`` -> start fresh; ``"last"`` -> the newest of ``<output_dir>/checkpoints/last*.ckpt``
    and Lightning's SLURM ``<output_dir>/hpc_ckpt_*.ckpt`` (None if there is none: a first run);
    a path -> that file (it must exist)."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        out = Path(output_dir)
        found = [*(out / "checkpoints").glob("last*.ckpt"), *out.glob("hpc_ckpt_*.ckpt")]
        if not found:
            log.info("no checkpoint in %s yet: starting from scratch", out)
            return None
        return str(max(found, key=lambda p: p.stat().st_mtime))
    if not Path(ckpt_path).is_file():
        raise LsapFileError(ckpt_path, "no such checkpoint (trainer.ckpt_path)")
    return str(ckpt_path)


def build_system(cfg: Mapping[str, Any]):
    """The :class:`~lsap.systems.encoder.EncoderSystem` a ``train`` config describes."""
    from lsap.systems.encoder import EncoderSystem
    from lsap.systems.encoder_settings import EncoderTrainingSettings

    return EncoderSystem(EncoderTrainingSettings.from_config(cfg))


def _trainer_overrides(c: Mapping[str, Any]) -> dict[str, Any]:
    over: dict[str, Any] = {}
    strategy = c["trainer"].get("strategy")  # absent: Lightning's own default
    if isinstance(strategy, str) and strategy in _DDP_STRATEGIES:
        over["strategy"] = _DDP_STRATEGIES[strategy]
    from lightning_fabric.plugins.environments import SLURMEnvironment

    if SLURMEnvironment.detect():  # requeue on the configured signal (sbatch --signal)
        import signal

        over["plugins"] = [
            SLURMEnvironment(
                auto_requeue=bool(c["slurm"]["auto_requeue"]),
                requeue_signal=getattr(signal, c["slurm"]["requeue_signal"]),
            )
        ]
    return over


@dataclass
class TrainResult:
    metrics: dict[str, float]  # the last logged values (``val/metric/...``, ``train/loss``, ...)
    system: Any  # the EncoderSystem
    trainer: Any
    encoder_path: Path | None = None  # <output_dir>/encoder.pt (rank zero, not in fast_dev_run)


def train(cfg: DictConfig) -> TrainResult:
    """Fit the encoder a ``train`` config describes.

    Writes checkpoints (every K steps, last, best ``val/metric/...``) under
    ``<output_dir>/checkpoints`` and, at the end, the encoder in lsap's format at
    ``<output_dir>/encoder.pt`` (``lsap.load_encoder`` reads both).
    """
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import LearningRateMonitor

    from lsap.core.provenance import provenance
    from lsap.io.encoders import save_encoder
    from lsap.systems.instantiate import build_trainer, instantiate_group

    c = plain(cfg, throw_on_missing=True)  # the one reading of the config: plain values from here
    # OMP_NUM_THREADS, else physical cores less data workers (shared by CPU DDP ranks)
    set_num_threads(
        data_workers=int(c["data"]["num_workers"]), cpu_processes=cpu_processes(c["trainer"])
    )
    seed = int(c["seed"])
    pl.seed_everything(seed, workers=True)
    output_dir = Path(c["paths"]["output_dir"])
    system = build_system(c)
    # a non-square generator's valid region (generator.crop) shapes the photos and augmentation
    crop = system.G.crop
    datamodule = build_data(c["data"], **({"crop": crop} if crop is not None else {}))
    callbacks = instantiate_group(c["callbacks"])
    if not c["logger"]:  # Lightning refuses a LearningRateMonitor without a logger
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    trainer_cfg = dict(c["trainer"])
    ckpt_path = resolve_ckpt_path(trainer_cfg.pop("ckpt_path", None), output_dir)
    trainer = build_trainer(
        trainer_cfg, logger=c["logger"], callbacks=callbacks, **_trainer_overrides(c)
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(c)
    try:
        if ckpt_path:
            log.info("resuming from %s", ckpt_path)
        trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        _save_final_last(trainer)
        path = None
        if trainer.is_global_zero and not trainer.fast_dev_run:
            path = save_encoder(
                system.encoder,
                output_dir / "encoder.pt",
                generator_sha256=system.G.sha256,
                crop=system.G.crop.box if system.G.crop is not None else None,
                provenance=provenance(
                    config=c,
                    generator=system.G,
                    seed=seed,
                    global_step=trainer.global_step,
                ),
            )
            log.info("wrote %s", path)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        return TrainResult(metrics, system, trainer, path)
    finally:
        finish_wandb()


def _save_final_last(trainer) -> None:
    """Make ``last.ckpt`` the final state. Lightning's ``save_last`` writes it at the end only if
    the session saved nothing before, so a resumed run would keep its previous periodic state."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    if trainer.fast_dev_run:
        return
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.save_last and cb.dirpath:
            last = Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
            trainer.save_checkpoint(last, weights_only=False)  # all ranks call it; rank 0 writes


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
@one_line_errors("lsap-train", settings=True)  # bad files or settings: one line, exit 2
def _main(cfg: DictConfig) -> float | None:
    with multirun_ddp_job():  # a multirun job's DDP workers join this job, in its folder
        metrics = train(cfg).metrics
    monitor = cfg.get("optimized_metric")
    return metrics.get(monitor) if monitor else None


def main() -> None:
    die_with_launcher()  # a DDP worker ends with its launcher
    check_config_dir("train")
    _main()


if __name__ == "__main__":
    main()
