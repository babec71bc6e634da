"""Train the toy StyleGAN2 on procedural faces (config ``conf/toy_gan.yaml``; not run in CI).

    python scripts/train_toy_gan.py                       # outputs/toy_gan/default/
    python scripts/train_toy_gan.py                       # the same command resumes (ckpt_path=last)
    python scripts/train_toy_gan.py run_name=big trainer=gpu data.batch_size=64

Writes under the run folder: ``checkpoints/last.ckpt`` (atomic), ``generator.pt`` (``G_ema`` in
lsap's format, loadable with ``lsap.load_generator``), ``samples/*.png`` and ``csv/metrics.csv``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from lsap.config import build_data
from lsap.core.provenance import provenance
from lsap.systems.checkpointing import AtomicCheckpointIO
from lsap.systems.instantiate import build_trainer
from lsap.toy.gan import GANSystem
from lsap.toy.gan_callbacks import ExportGenerator, SampleGrid

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def train(cfg: DictConfig) -> Path:
    """Train (or resume) and return the path of the exported generator."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    pl.seed_everything(int(cfg.seed), workers=True)
    out = Path(cfg.paths.output_dir)
    plain = OmegaConf.to_container(cfg, resolve=True)
    system = GANSystem(
        plain["generator"]["arch"], plain["discriminator"], seed=cfg.seed, **plain["gan"]
    )
    data = build_data(cfg.data)  # lsap.systems.toy_data.ToyFacesDataModule
    ckpt_dir = out / "checkpoints"
    callbacks = [
        ModelCheckpoint(
            dirpath=ckpt_dir,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=cfg.checkpoint_every_n_steps,
        ),
        SampleGrid(out / "samples", cfg.samples.every_n_steps, cfg.samples.num, cfg.samples.seed),
        ExportGenerator(
            cfg.export.path,
            cfg.export.every_n_steps,
            cfg.export.dtype,
            provenance(config=cfg, seed=cfg.seed, command=" ".join(sys.argv)),
        ),
    ]
    trainer = build_trainer(
        cfg.trainer, logger=cfg.logger, callbacks=callbacks, plugins=[AtomicCheckpointIO()]
    )
    ckpt = cfg.ckpt_path
    if ckpt == "last":
        ckpt = str(ckpt_dir / "last.ckpt") if (ckpt_dir / "last.ckpt").is_file() else None
    trainer.fit(system, datamodule=data, ckpt_path=ckpt, weights_only=True)
    # ModelCheckpoint saves every n steps only: keep the final state for a later resume too.
    trainer.save_checkpoint(ckpt_dir / "last.ckpt")
    return Path(cfg.export.path)


@hydra.main(config_path=CONF, config_name="toy_gan", version_base="1.3")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
