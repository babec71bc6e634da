"""DataModule over a procedural toy domain (``lsap.data.toy`` faces, ``lsap.data.toy_cars`` cars):
rendered once, held in memory.

Batches follow ``lsap.data.collate_images`` (``images``, ``index``, ``path``, ``skipped``) and add
``labels [B, A]`` (``lsap.data.toy.collate_toy``).
"""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from lsap.data.toy import ToyDataset, collate_toy, toy_dataset


class ToyFacesDataModule(pl.LightningDataModule):
    """Train split = images ``0 .. num_train-1`` of ``seed``; val split = ``num_val`` of ``val_seed``.

    Args:
        num_train: training images (rendered in ``setup``).
        num_val: held-out images (0 = no validation loader).
        seed: seed of the training faces.
        val_seed: seed of the held-out faces (a different seed = disjoint faces).
        resolution: image size (32 or 64).
        batch_size: images per batch (training batches drop the remainder).
        num_workers: DataLoader workers (0: the data are already tensors in memory).
        domain: which toy domain (``lsap.data.toy.TOY_DOMAINS``): ``faces`` or ``cars``.
        crop: the generator's valid region (``lsap.nets.crop.ValidRegion``, passed by lsap-train
            for a non-square generator) or None. Toy images are already whole generator frames
            (cars: black bars outside the picture), so nothing is cut; a region that is not the
            domain's picture is an error.

    The values come from ``conf/data/toy.yaml`` / ``conf/data/toycars.yaml`` (no defaults here).
    """

    def __init__(
        self,
        num_train: int,
        num_val: int,
        *,
        seed: int,
        val_seed: int,
        resolution: int,
        batch_size: int,
        num_workers: int,
        domain: str,
        crop=None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["crop"])
        self.dataset = toy_dataset(domain)  # fails early on an unknown domain
        picture = self.dataset.valid_box(resolution)
        whole = (0, 0, resolution, resolution)
        if (
            crop is not None
            and int(crop.resolution) == resolution
            and list(crop.box) != list(picture or whole)
        ):
            raise ValueError(
                f"generator.crop={list(crop.box)} is not the toy {domain}' picture "
                f"{list(picture or whole)} at {resolution} px"
            )
        self.train_set: ToyDataset | None = None
        self.val_set: ToyDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if self.train_set is None:
            self.train_set = self.dataset(hp.num_train, seed=hp.seed, resolution=hp.resolution)
        if self.val_set is None and hp.num_val > 0:
            self.val_set = self.dataset(hp.num_val, seed=hp.val_seed, resolution=hp.resolution)

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        return DataLoader(
            self.train_set,
            batch_size=hp.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=hp.num_workers,
            collate_fn=collate_toy,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        hp = self.hparams
        return DataLoader(
            self.val_set,
            batch_size=hp.batch_size,
            num_workers=hp.num_workers,
            collate_fn=collate_toy,
        )
