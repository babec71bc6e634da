"""LightningModule that trains the toy attribute classifier (wiring; maths in lsap.nets)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from lsap.data.augment import blur_and_noise
from lsap.nets.toy_classifier import (
    ToyClassifier,
    ToyClassifierConfig,
    attribute_accuracy,
    attribute_loss,
)


class ToyClassifierSystem(pl.LightningModule):
    """Train :class:`ToyClassifier` on labelled toy faces; validation logs each attribute's
    ``val/metric/acc/<name>`` (and ``val/metric/mae/<name>`` for scalar attributes).

    Args:
        classifier: ToyClassifierConfig fields (``names``/``kinds`` from ``lsap.data.toy``).
        lr: AdamW learning rate (cosine decay to 0 over the trainer's max_steps when > 0).
        weight_decay: AdamW weight decay.
        blur_prob, noise_std: training degradations (``lsap.data.augment.blur_and_noise``).
    """

    def __init__(
        self,
        classifier: Mapping[str, Any],
        *,
        lr: float,
        weight_decay: float,
        blur_prob: float,
        noise_std: float,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = ToyClassifier(ToyClassifierConfig(**classifier))
        self._val: list[tuple[Tensor, Tensor]] = []

    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            self.model.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        steps = self.trainer.max_steps if self.trainer is not None else -1
        if steps and steps > 0:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        return opt

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        hp = self.hparams
        x = blur_and_noise(batch["images"], blur_prob=hp.blur_prob, noise_std=hp.noise_std)
        loss, _ = attribute_loss(self.model(x), batch["labels"], self.model.binary_mask)
        self.log("train/loss/total", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._val.append((self.model.predict(batch["images"]), batch["labels"]))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        metrics = evaluate(self.model, *map(torch.cat, zip(*self._val, strict=True)))
        self._val.clear()
        self.log_dict({f"val/metric/{k}": v for k, v in metrics.items()})


def evaluate(model: ToyClassifier, predictions: Tensor, labels: Tensor) -> dict[str, float]:
    """``acc/<name>`` for every attribute, ``mae/<name>`` for scalar ones, ``acc/mean_binary``."""
    acc = attribute_accuracy(predictions, labels)
    mae = (predictions - labels).abs().mean(0)
    out: dict[str, float] = {}
    binary = []
    for i, (name, kind) in enumerate(zip(model.config.names, model.config.kinds, strict=True)):
        out[f"acc/{name}"] = float(acc[i])
        if kind == "scalar":
            out[f"mae/{name}"] = float(mae[i])
        else:
            binary.append(float(acc[i]))
    out["acc/mean_binary"] = sum(binary) / max(len(binary), 1)
    return out


def predict_all(model: ToyClassifier, images: Tensor, batch_size: int = 500) -> Tensor:
    """[N, A] predictions for images [N, 3, R, R], in bounded-memory batches."""
    return torch.cat(
        [model.predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    )


__all__: Sequence[str] = ["ToyClassifierSystem", "evaluate", "predict_all"]
