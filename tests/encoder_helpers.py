"""Helpers of the encoder tests: a callback the CLI tests inject
(``+callbacks.probe._target_=encoder_helpers.RecordBatches``) with which each process writes what
it trained on to ``<out_dir>/rank<r>.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytorch_lightning as pl

from lsap.core.hashing import tensors_sha256


class RecordBatches(pl.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.seen: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(
            {
                "step": trainer.global_step,
                "index": batch["index"].tolist(),
                "stage": pl_module.encoder.progressive_stage,
            }
        )

    def on_train_end(self, trainer, pl_module) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        rank = trainer.global_rank
        D = getattr(pl_module, "w_discriminator", None)
        out = {
            "rank": rank,
            "world_size": trainer.world_size,
            "pid": os.getpid(),
            "seen": self.seen,
            # the latent discriminator's weights (None when off): equal on every rank
            "w_discriminator_sha256": None if D is None else tensors_sha256(D.state_dict()),
        }
        (self.out_dir / f"rank{rank}.json").write_text(json.dumps(out))
