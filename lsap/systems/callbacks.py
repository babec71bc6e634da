"""Callbacks of the training jobs: image grids (input | reconstruction) written at rank zero."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from lsap.core.atomic import atomic_write
from lsap.data import tensor_to_uint8
from lsap.nets.crop import crop_valid


def input_reconstruction_grid(
    inputs: Tensor, reconstructions: Tensor, max_images: int = 8
) -> Tensor:
    """uint8 grid [3, n*H, 2*W]: one row per image, input left, reconstruction right.

    Args:
        inputs, reconstructions: [N, 3, H, W] in [-1, 1] (a non-square generator's valid
            regions, ``lsap.nets.crop.crop_valid``, or square frames).
    """
    if inputs.shape != reconstructions.shape or inputs.ndim != 4:
        raise ValueError(
            f"inputs {tuple(inputs.shape)} and reconstructions {tuple(reconstructions.shape)} "
            "must be equal [N, 3, H, W] batches"
        )
    n = min(max_images, inputs.shape[0])
    rows = torch.cat([inputs[:n], reconstructions[:n]], dim=3)  # [n, 3, S, 2S]
    return tensor_to_uint8(torch.cat(list(rows), dim=1))  # [3, n*S, 2S]


class ImageGridCallback(pl.Callback):
    """Logs input | reconstruction grids of the first validation batch (and every
    ``every_n_train_steps`` training steps) at rank zero: a PNG under ``dirpath/<stage>/`` and,
    with a ``WandbLogger``, a W&B image ``<stage>/images``.

    Needs the step outputs to hold ``reconstructions`` ([N, 3, S, S] in [-1, 1]) and the batch
    ``images``.

    Args:
        dirpath: folder for the PNGs (under the run's output dir).
        max_images: rows per grid.
        every_n_train_steps: training grid period (0 = validation grids only).
    """

    def __init__(self, dirpath: str, max_images: int, every_n_train_steps: int) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)
        self.max_images, self.every_n_train_steps = int(max_images), int(every_n_train_steps)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx == 0 and not trainer.sanity_checking:
            self._log(trainer, pl_module, outputs, batch, "val")

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n = self.every_n_train_steps
        if n > 0 and (trainer.global_step - 1) % n == 0:
            self._log(trainer, pl_module, outputs, batch, "train")

    def _log(self, trainer: pl.Trainer, pl_module, outputs: Any, batch: Any, stage: str) -> None:
        if not trainer.is_global_zero or not isinstance(outputs, dict):
            return
        recon = outputs.get("reconstructions")
        if recon is None or batch.get("images") is None:
            return
        crop = getattr(getattr(pl_module, "G", None), "crop", None)  # show the valid region
        grid = input_reconstruction_grid(
            crop_valid(batch["images"].detach(), crop), crop_valid(recon, crop), self.max_images
        ).cpu()
        step = trainer.global_step
        path = self.dirpath / stage / f"step_{step:07d}.png"

        def write(f) -> None:
            from PIL import Image

            Image.fromarray(grid.permute(1, 2, 0).numpy(), "RGB").save(f, format="PNG")

        atomic_write(path, write)
        from pytorch_lightning.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    key=f"{stage}/images",
                    images=[grid.permute(1, 2, 0).numpy()],
                    caption=["input | reconstruction"],
                    step=step,
                )
