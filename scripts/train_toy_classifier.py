"""Train the toy attribute classifier (config ``conf/toy_classifier.yaml``; not run in CI).

    python scripts/train_toy_classifier.py            # outputs/toy_classifier/default/
    python scripts/train_toy_classifier.py data=toycars run_name=toycars   # the toy cars' labels

Writes ``classifier.pt`` (``lsap.io.classifier`` format), ``metrics.json`` (held-out accuracy per
attribute, MAE for scalar attributes) and ``checkpoints/last.ckpt`` under the run folder.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from lsap.config import build_data
from lsap.core.atomic import atomic_write_json
from lsap.core.provenance import provenance
from lsap.data.toy import toy_attributes
from lsap.io.classifier import save_toy_classifier
from lsap.systems.checkpointing import AtomicCheckpointIO
from lsap.systems.instantiate import build_trainer
from lsap.toy.classifier import ToyClassifierSystem, evaluate, predict_all

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def train(cfg: DictConfig) -> dict:
    """Train (or resume), export, evaluate on the held-out faces; return the metrics."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    start = time.time()
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    pl.seed_everything(int(cfg.seed), workers=True)
    out = Path(cfg.paths.output_dir)
    plain = OmegaConf.to_container(cfg, resolve=True)
    attributes = toy_attributes(cfg.data.domain)  # the labels of the data's toy domain
    classifier = {
        **plain["classifier"],
        "names": [a.name for a in attributes],
        "kinds": [a.kind for a in attributes],
    }
    system = ToyClassifierSystem(classifier, **plain["optim"])
    data = build_data(cfg.data)  # lsap.systems.toy_data.ToyFacesDataModule
    ckpt_dir = out / "checkpoints"
    trainer = build_trainer(
        cfg.trainer,
        logger=cfg.logger,
        callbacks=[ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0)],
        plugins=[AtomicCheckpointIO()],
    )
    ckpt = cfg.ckpt_path
    if ckpt == "last":
        ckpt = str(ckpt_dir / "last.ckpt") if (ckpt_dir / "last.ckpt").is_file() else None
    trainer.fit(system, datamodule=data, ckpt_path=ckpt, weights_only=True)
    trainer.save_checkpoint(ckpt_dir / "last.ckpt")

    model = system.model.eval()
    val = data.val_set
    metrics = evaluate(model, predict_all(model, val.images.float() / 127.5 - 1), val.labels)
    save_toy_classifier(
        model,
        cfg.export.path,
        provenance(config=cfg, seed=cfg.seed, command=" ".join(sys.argv), heldout=metrics),
        dtype=getattr(torch, cfg.export.dtype),
    )
    result = {
        "heldout": metrics,
        "heldout_set": {"seed": cfg.data.val_seed, "num_images": len(val)},
        "steps": int(trainer.global_step),
        "wall_time_s": round(time.time() - start, 1),
    }
    atomic_write_json(out / "metrics.json", result)
    print(json.dumps(result, indent=2))
    return result


@hydra.main(config_path=CONF, config_name="toy_classifier", version_base="1.3")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
