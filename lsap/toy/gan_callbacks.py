"""Callbacks of the GAN job: sample grids to look at, and the ``G_ema`` export in lsap's format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from lsap.core.atomic import atomic_write
from lsap.data.images import tensor_to_uint8
from lsap.data.toy import toy_grid


class SampleGrid(pl.Callback):
    """Every ``every_n_steps`` training batches, write ``G_ema``'s samples of fixed z as a PNG grid.

    Files: ``<folder>/kimg<seen/1000>.png`` and ``<folder>/latest.png`` (atomic writes).
    """

    def __init__(self, folder: str | Path, every_n_steps: int = 500, num: int = 64, seed: int = 0):
        self.folder, self.every, self.num, self.seed = Path(folder), every_n_steps, num, seed

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = int(pl_module.reg_steps)
        if trainer.is_global_zero and step % self.every == 0:
            self.write(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.write(pl_module)

    def write(self, pl_module) -> Path:
        from PIL import Image

        G = pl_module.G_ema
        z = torch.randn(self.num, G.z_dim, generator=torch.Generator().manual_seed(self.seed))
        images = pl_module.sample(z.to(pl_module.device)).cpu()
        nrow = int(self.num**0.5)
        grid = tensor_to_uint8(toy_grid(images, nrow)).permute(1, 2, 0).numpy()
        png = Image.fromarray(grid, "RGB")
        kimg = int(pl_module.seen_images) // 1000
        path = self.folder / f"kimg{kimg:05d}.png"
        for p in (path, self.folder / "latest.png"):
            atomic_write(p, lambda f: png.save(f, format="PNG"))
        return path


class ExportGenerator(pl.Callback):
    """Write ``G_ema`` with ``lsap.save_generator`` every ``every_n_steps`` and at the end."""

    def __init__(
        self,
        path: str | Path,
        every_n_steps: int = 1000,
        dtype: str = "float32",
        provenance: dict[str, Any] | None = None,
    ):
        self.path, self.every, self.dtype = Path(path), every_n_steps, dtype
        self.provenance = dict(provenance or {})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.is_global_zero and int(pl_module.reg_steps) % self.every == 0:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.write(trainer, pl_module)

    def write(self, trainer, pl_module) -> Path:
        from lsap.io.checkpoints import save_generator

        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        prov = {
            **self.provenance,
            "seen_images": int(pl_module.seen_images),
            "steps": int(pl_module.reg_steps),
            "metrics": metrics,
        }
        return save_generator(pl_module.G_ema, self.path, prov, dtype=getattr(torch, self.dtype))
