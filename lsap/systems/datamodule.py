"""LightningDataModules for encoder training: image folders, and images rendered by a generator.

Images reach the system as ``lsap.data.collate_images`` batches: ``{"images": [B, 3, S, S] in
[-1, 1] or None, "index": [B], "path": [...], "skipped": [(index, path, reason)]}``.

Preprocessing (``lsap.data.load_image``): EXIF orientation, any mode -> 8-bit RGB, shorter side
resized to ``size`` (Lanczos), centre crop to ``size x size``, values to [-1, 1]. For square
FFHQ/CelebA-HQ images this is pSp/e4e's ``Resize((256, 256))``. Unreadable files are skipped and
reported (path and reason), never fatal.

Training augmentation (pSp-style; validation is never augmented):
- ``hflip``: probability of a horizontal flip (pSp/e4e/LSAP: 0.5);
- ``crop_scale``: ``[min, max]`` area fraction of a random square crop resized back to ``size``
  (``[1, 1]`` = off, the reference setting).

A non-square generator (``generator.crop``, passed by lsap-train as ``crop``): each photo is
fitted to the valid region and placed in the square frame (``lsap.data.load_image``), and the
augmentation flips and crops the valid region only, never moving the padding into it.

Order and augmentation are seeded: the train sampler shuffles with ``(seed, epoch)`` and shards
across DDP ranks (every rank sees different images), and the augmentation of image ``i`` in epoch
``e`` is drawn from a generator seeded with ``(seed, e, i)``, whatever the worker count. The
training loader is resumable mid-epoch (Lightning stores its position in checkpoints), so a
resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lsap.data import ImageFileDataset, ImageItem, collate_images, list_images, tensor_to_uint8
from lsap.nets.crop import ValidRegion


class EpochSeededSampler(DistributedSampler):
    """A ``DistributedSampler`` (shuffled with ``seed + epoch``, sharded by rank) whose indices
    also carry the epoch: it yields ``i + epoch * N``. :class:`AugmentedImages` decodes them, so
    each sample's augmentation is a function of ``(seed, epoch, i)`` only.

    ``skip_next(k)`` drops the first k indices of the next pass (a mid-epoch resume).
    """

    _skip = 0

    def skip_next(self, num_indices: int) -> None:
        self._skip = int(num_indices)

    def __iter__(self):
        n = len(self.dataset)
        indices = [i + self.epoch * n for i in super().__iter__()]
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])


class ResumableDataLoader(DataLoader):
    """A training DataLoader that Lightning resumes mid-epoch (it implements ``state_dict`` /
    ``load_state_dict``): the state is the epoch and the number of batches the training loop has
    consumed in it, and loading it makes the next pass skip exactly those batches. With an
    :class:`EpochSeededSampler` the rest of the epoch is then the same as without the interruption.

    Args:
        consumed_batches: returns how many batches of the current epoch the training loop has
            processed (read when a checkpoint is saved; prefetched batches do not count).
    """

    def __init__(self, *args, consumed_batches: Callable[[], int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.consumed_batches = consumed_batches

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.sampler.epoch), "consumed_batches": int(self.consumed_batches())}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.sampler.set_epoch(int(state["epoch"]))
        self.sampler.skip_next(int(state["consumed_batches"]) * int(self.batch_size))


def _seeded(seed: int, epoch: int, index: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def random_square_crop(image: Tensor, scale: Sequence[float], g: torch.Generator) -> Tensor:
    """A random crop covering an area fraction in ``scale`` of [3, H, W] (square for a square
    image; the image's aspect otherwise), resized back to H x W."""
    H, W = image.shape[-2:]
    lo, hi = float(scale[0]), float(scale[1])
    area = lo + (hi - lo) * float(torch.rand((), generator=g))
    h, w = max(1, min(H, round(H * area**0.5))), max(1, min(W, round(W * area**0.5)))
    if (h, w) == (H, W):
        return image
    top = int(torch.randint(0, H - h + 1, (), generator=g))
    left = int(torch.randint(0, W - w + 1, (), generator=g))
    crop = image[None, :, top : top + h, left : left + w]
    return F.interpolate(crop, size=(H, W), mode="bilinear", align_corners=False, antialias=True)[0]


class AugmentedImages(Dataset):
    """Wraps a dataset of :class:`ImageItem`; indices ``i + epoch * N`` (from
    :class:`EpochSeededSampler`) give item ``i`` augmented with a ``(seed, epoch, i)`` generator.
    With ``crop`` (the generator's valid region) only the valid region is augmented."""

    def __init__(
        self,
        base: Dataset,
        *,
        seed: int,
        hflip: float = 0.0,
        crop_scale: Sequence[float] = (1, 1),
        crop: ValidRegion | None = None,
    ) -> None:
        self.base, self.seed, self.hflip, self.crop = base, int(seed), float(hflip), crop
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"hflip must be a probability, got {hflip}")
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {crop_scale}")

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int) -> ImageItem:
        n = len(self.base)
        index, epoch = key % n, key // n
        item = self.base[index]
        if item.image is None or (self.hflip == 0.0 and self.crop_scale == (1.0, 1.0)):
            return item
        g = _seeded(self.seed, epoch, index)
        image = item.image if self.crop is None else self.crop.crop(item.image)
        if self.crop_scale != (1.0, 1.0):
            image = random_square_crop(image, self.crop_scale, g)
        if float(torch.rand((), generator=g)) < self.hflip:
            image = image.flip(-1)
        if self.crop is not None:  # back into the frame
            image = self.crop.place(image, item.image.shape[-1])
        return ImageItem(item.index, item.path, image.contiguous())


class _ImageDataModule(pl.LightningDataModule):
    """Shared loaders: seeded, sharded training order; plain validation order (Lightning shards
    it under DDP)."""

    def __init__(
        self,
        *,
        batch_size: int,
        val_batch_size: int,
        num_workers: int,
        seed: int,
        hflip: float,
        crop_scale: Sequence[float],
        crop: ValidRegion | None,
    ) -> None:
        super().__init__()
        self.crop = crop
        self.batch_size, self.val_batch_size = int(batch_size), int(val_batch_size)
        self.num_workers, self.seed = int(num_workers), int(seed)
        self.hflip, self.crop_scale = float(hflip), tuple(crop_scale)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def _consumed_batches(self) -> int:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup('fit') first"
        world, rank = self._world()
        data = AugmentedImages(
            self.train_set,
            seed=self.seed,
            hflip=self.hflip,
            crop_scale=self.crop_scale,
            crop=self.crop,
        )
        if len(data) < self.batch_size * world:
            raise ValueError(
                f"{len(data)} training images are fewer than one batch ({self.batch_size}) per "
                f"process ({world})"
            )
        sampler = EpochSeededSampler(
            data, num_replicas=world, rank=rank, shuffle=True, seed=self.seed, drop_last=True
        )
        return ResumableDataLoader(
            data,
            consumed_batches=self._consumed_batches,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_images,
            drop_last=True,
            persistent_workers=False,  # workers must see each epoch's sampler state
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup('fit') or setup('validate') first"
        return DataLoader(
            self.val_set,
            batch_size=self.val_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_images,
            pin_memory=torch.cuda.is_available(),
        )


class ImageFolderDataModule(_ImageDataModule):
    """Training and validation images from two folders (searched recursively).

    Every setting comes from the ``data`` entry (``conf/data/ffhq.yaml`` and the domains that
    extend it; ``lsap.config.build_data``): none has a default here.

    Args:
        train_path: folder (or single file) of training images (FFHQ).
        val_path: folder of validation images (CelebA-HQ test).
        size: side of the square images the encoder sees (256).
        batch_size: training images per process and step (total = batch_size * processes).
        val_batch_size: validation images per process and step.
        num_workers: loader processes per training process.
        seed: order and augmentation seed.
        hflip: probability of a horizontal flip in training.
        crop_scale: area range of the random square crop in training ([1, 1] = off).
        max_val_images: use only the first N validation images (sorted by path); None = all.
        crop: the generator's valid region (lsap-train passes ``G.crop``); None = square photos.
    """

    def __init__(
        self,
        *,
        train_path: str,
        val_path: str,
        size: int,
        batch_size: int,
        val_batch_size: int,
        num_workers: int,
        seed: int,
        hflip: float,
        crop_scale: Sequence[float],
        max_val_images: int | None,
        crop: ValidRegion | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            val_batch_size=val_batch_size,
            num_workers=num_workers,
            seed=seed,
            hflip=hflip,
            crop_scale=crop_scale,
            crop=crop,
        )
        self.train_path, self.val_path, self.size = str(train_path), str(val_path), int(size)
        self.max_val_images = max_val_images

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = ImageFileDataset(
                list_images(self.train_path), self.size, box=self._box()
            )
        if stage in (None, "fit", "validate") and self.val_set is None:
            files = list_images(self.val_path)
            if self.max_val_images is not None:
                files = files[: int(self.max_val_images)]
            self.val_set = ImageFileDataset(files, self.size, box=self._box())

    def _box(self) -> tuple[int, int, int, int] | None:
        """The valid region in this module's ``size`` px frames (None: square photos)."""
        return self.crop.box_at(self.size) if self.crop is not None else None


class TensorImages(Dataset):
    """In-memory images [N, 3, S, S] in [-1, 1] as :class:`ImageItem` s named ``<prefix>/<i>``."""

    def __init__(self, images: Tensor, prefix: str) -> None:
        self.images, self.prefix = images, prefix

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> ImageItem:
        return ImageItem(index, f"{self.prefix}/{index:06d}", self.images[index])


@torch.no_grad()
def render_images(
    generator_cfg: Mapping[str, Any],
    num_images: int,
    *,
    seed: int,
    size: int | None,
    truncation_psi: float,
    batch_size: int = 64,
) -> Tensor:
    """Images of the generator a ``generator`` config describes: [num_images, 3, S, S] in [-1, 1],
    uint8-quantised (as if saved as PNG); z drawn on the CPU from ``seed``; const noise."""
    from lsap.io import generator_from_config

    G = generator_from_config(generator_cfg, "cpu")
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for start in range(0, num_images, batch_size):
        z = torch.randn(min(batch_size, num_images - start), G.z_dim, generator=g)
        img = G.synthesis(G.mapping(z, truncation_psi), noise_mode="const")
        if size is not None and size != G.resolution:
            img = F.interpolate(img, size=(size, size), mode="bilinear", antialias=True)
        out.append(tensor_to_uint8(img).float() / 127.5 - 1.0)
    return torch.cat(out)


class GeneratedImagesDataModule(_ImageDataModule):
    """Images rendered by a generator (offline toy data: the tiny experiment and tests).

    Every setting comes from the ``data`` entry (``conf/data/tiny.yaml``;
    ``lsap.config.build_data``): none has a default here.

    The training and validation sets come from disjoint seeds (``seed`` and ``seed + 1``) and
    are rendered once in ``setup`` on every process (deterministic, so ranks agree).

    Args:
        generator: a ``generator`` config (``lsap.io.generator_from_config``).
        num_train / num_val: number of images of each split.
        size: side of the images (None = the generator's resolution).
        truncation_psi: truncation of the sampled codes (1 = none).
        crop: the generator's valid region; the rendered frames are used as they are (the
            consumers compare the valid region only), augmentation stays inside it.
        (others as :class:`ImageFolderDataModule`)
    """

    def __init__(
        self,
        *,
        generator: Mapping[str, Any],
        num_train: int,
        num_val: int,
        size: int | None,
        truncation_psi: float,
        batch_size: int,
        val_batch_size: int,
        num_workers: int,
        seed: int,
        hflip: float,
        crop_scale: Sequence[float],
        crop: ValidRegion | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            val_batch_size=val_batch_size,
            num_workers=num_workers,
            seed=seed,
            hflip=hflip,
            crop_scale=crop_scale,
            crop=crop,
        )
        self.generator_cfg = dict(generator)
        self.num_train, self.num_val = int(num_train), int(num_val)
        self.size, self.truncation_psi = size, float(truncation_psi)

    def setup(self, stage: str | None = None) -> None:
        kw = {"size": self.size, "truncation_psi": self.truncation_psi}
        if stage in (None, "fit") and self.train_set is None:
            imgs = render_images(self.generator_cfg, self.num_train, seed=self.seed, **kw)
            self.train_set = TensorImages(imgs, "generated/train")
        if stage in (None, "fit", "validate") and self.val_set is None:
            imgs = render_images(self.generator_cfg, self.num_val, seed=self.seed + 1, **kw)
            self.val_set = TensorImages(imgs, "generated/val")
