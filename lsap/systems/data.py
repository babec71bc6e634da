"""Data module of the inversion job: the images still to invert, sharded over processes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from lsap.core.errors import LsapFileError
from lsap.data.images import ImageFileDataset, ImageItem, collate_images
from lsap.nets.crop import ValidRegion
from lsap.systems.sharding import InversionPlan, ShardSampler, plan_inversion

log = logging.getLogger(__name__)


def collate_named(items: Sequence[ImageItem], names: Sequence[str]) -> dict[str, Any]:
    """:func:`collate_images` plus ``name``: the output names of the readable images."""
    batch = collate_images(items)
    batch["name"] = [names[int(i)] for i in batch["index"]]
    return batch


class InversionDataModule(pl.LightningDataModule):
    """Images of ``path`` without a finished code in ``output_dir``, one shard per process.

    Built by ``lsap-invert`` from the ``data=images`` entry (``path``, ``align``, ``batch_size``,
    ``memory``, ``num_workers``) and the run-time arguments (the rest), see ``lsap.config.build_data``.

    Args:
        path: a folder (searched recursively) or one image file.
        output_dir: the run's output folder (finished images are skipped: resume).
        size: the generator resolution (images are resized and center-cropped, see lsap.data).
        batch_size: images optimised together per process, or "auto": planned from ``memory``
            for the trainer's device when the loader is made (``lsap.inversion.memory
            .resolve_batch_size``; without measured footprints in ``memory`` they are measured
            with the module's ``memory_probe``, its optimisation step).
        memory: the plan's settings and measurements (``data.memory``).
        num_workers: data-loader workers per process.
        align: FFHQ-style face alignment with MTCNN (``lsap.data.align``).
        generator_sha256: checked against codes already in ``output_dir``.
        refinement: this run's refinement ("none", "pti"), checked against ``output_dir``.
        code_source: this run's code source name, checked against ``output_dir``.
        settings: everything else that changes a result (``result_settings``), checked against
            ``output_dir``.
        crop: the generator's valid region (``G.crop``): each photo is fitted to it and placed
            in the square frame (``lsap.data.load_image``); None = the full square.
    """

    def __init__(
        self,
        path: str | Path,
        output_dir: str | Path,
        size: int,
        *,
        batch_size: int | str,
        memory: Mapping[str, Any] | None,
        num_workers: int,
        align: bool,
        generator_sha256: str | None = None,
        refinement: str | None = None,
        code_source: str | None = None,
        settings: Mapping[str, Any] | None = None,
        crop: ValidRegion | None = None,
    ) -> None:
        super().__init__()
        self.crop = crop
        if batch_size != "auto" and int(batch_size) < 1:
            raise ValueError(f"data.batch_size must be >= 1 or auto, got {batch_size}")
        self.memory = dict(memory) if memory is not None else None
        self.path, self.output_dir, self.size = Path(path), Path(output_dir), size
        self.batch_size, self.num_workers, self.align = batch_size, num_workers, align
        self.generator_sha256 = generator_sha256
        self.refinement, self.code_source = refinement, code_source
        self.settings = dict(settings) if settings is not None else None
        self.plan: InversionPlan | None = None
        self.shard_size = 0
        # with fewer images left than processes some shards are empty; that is fine
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def setup(self, stage: str) -> None:
        strategy = self.trainer.strategy
        plan: InversionPlan | tuple[str, str] | None = None
        if self.trainer.is_global_zero:
            try:
                plan = plan_inversion(
                    self.path,
                    self.output_dir,
                    self.generator_sha256,
                    self.refinement,
                    self.code_source,
                    self.settings,
                )
            except LsapFileError as e:  # every process must raise it, not wait for rank 0
                plan = (e.path, e.problem)
        plan = strategy.broadcast(plan, src=0)
        if isinstance(plan, tuple):
            raise LsapFileError(*plan)
        self.plan = plan
        self.shard_size = len(
            ShardSampler(len(plan.todo), self.trainer.global_rank, self.trainer.world_size)
        )
        if self.trainer.is_global_zero:
            log.info(
                "%d images in %s: %d finished earlier, %d to invert on %d process(es)",
                plan.num_images,
                self.path,
                plan.num_done,
                len(plan.todo),
                self.trainer.world_size,
            )

    def predict_dataloader(self) -> DataLoader:
        assert self.plan is not None, "setup() first"
        if self.batch_size == "auto":  # planned on the run's device, with the run's step
            from lsap.inversion.memory import resolve_batch_size

            module = self.trainer.lightning_module
            probe = getattr(module, "memory_probe", None)
            device = self.trainer.strategy.root_device
            self.batch_size = resolve_batch_size("auto", self.memory, device, probe=probe)
        files = [p for p, _ in self.plan.todo]
        names = tuple(n for _, n in self.plan.todo)
        align = None
        if self.align:
            from lsap.data.align import FaceAligner

            align = FaceAligner(self.size)
        box = self.crop.box_at(self.size) if self.crop is not None else None
        dataset = ImageFileDataset(files, self.size, align=align, box=box)
        sampler = ShardSampler(len(files), self.trainer.global_rank, self.trainer.world_size)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=functools.partial(collate_named, names=names),
            persistent_workers=False,
        )
