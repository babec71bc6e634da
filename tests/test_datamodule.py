"""Encoder-training data: image folders (bad files skipped), seeded order and augmentation that do
not depend on workers or resumes, disjoint DDP shards, generator-rendered toy data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conf_entries import data_kwargs
from PIL import Image

from lsap.data import load_image
from lsap.systems.datamodule import (
    AugmentedImages,
    EpochSeededSampler,
    GeneratedImagesDataModule,
    ImageFolderDataModule,
    ResumableDataLoader,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_GEN = {
    "path": None,
    "seed": 0,
    "arch": {
        "resolution": 32,
        "z_dim": 64,
        "w_dim": 64,
        "n_mlp": 3,
        "channel_base": 512,
        "channel_max": 64,
    },
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 5)):
        (root / split).mkdir()
        for i in range(n):
            arr = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / split / f"{i:02d}.png")
    (root / "train" / "broken.png").write_bytes(b"not a png")
    return root


def _dm(folders, **kw):
    args = {"size": 32, "batch_size": 4, "val_batch_size": 3, "num_workers": 0, "seed": 7}
    paths = {"train_path": str(folders / "train"), "val_path": str(folders / "val")}
    dm = ImageFolderDataModule(**data_kwargs("ffhq", **paths, **{**args, **kw}))
    dm.setup("fit")
    return dm


def _epoch(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_bad_files_are_skipped_and_reported(folders):
    dm = _dm(folders, hflip=0.0)
    batches = _epoch(dm.train_dataloader(), 0)
    skipped = [s for b in batches for s in b["skipped"]]
    seen = [p for b in batches for p in b["path"]]
    assert len(dm.train_set) == 13  # 12 images + the broken file
    assert [s[1].endswith("broken.png") for s in skipped] == [True]
    assert "not a readable image" in skipped[0][2]
    assert len(seen) + len(skipped) == 12  # drop_last: 3 batches of 4 items
    assert not any(p.endswith("broken.png") for p in seen)


def test_order_and_augmentation_are_seeded(folders):
    a = [b["index"].tolist() for b in _epoch(_dm(folders).train_dataloader(), 0)]
    b = [b["index"].tolist() for b in _epoch(_dm(folders).train_dataloader(), 0)]
    c = [b["index"].tolist() for b in _epoch(_dm(folders).train_dataloader(), 1)]
    d = [b["index"].tolist() for b in _epoch(_dm(folders, seed=8).train_dataloader(), 0)]
    assert a == b and a != c and a != d


def test_hflip_and_crop(folders):
    dm = _dm(folders, hflip=1.0)
    batch = _epoch(dm.train_dataloader(), 0)[0]
    for img, path in zip(batch["images"], batch["path"], strict=True):
        assert torch.equal(img, load_image(path, 32).flip(-1))
    val = next(iter(dm.val_dataloader()))  # validation is never augmented
    for img, path in zip(val["images"], val["path"], strict=True):
        assert torch.equal(img, load_image(path, 32))
    crop = _dm(folders, hflip=0.0, crop_scale=[0.25, 0.5])
    batch = _epoch(crop.train_dataloader(), 0)[0]
    plain = torch.stack([load_image(p, 32) for p in batch["path"]])
    assert batch["images"].shape == plain.shape and not torch.allclose(batch["images"], plain)
    with pytest.raises(ValueError, match="crop_scale"):
        AugmentedImages(crop.train_set, seed=0, crop_scale=[0.5, 1.5])


def test_augmentation_depends_on_seed_epoch_index_only(folders):
    base = _dm(folders).train_set
    aug = AugmentedImages(base, seed=3, hflip=0.5, crop_scale=[0.5, 1.0])
    n = len(base)
    assert torch.equal(aug[2 + 5 * n].image, aug[2 + 5 * n].image)
    assert not torch.equal(aug[2].image, aug[2 + n].image)  # another epoch, another draw
    dm = _dm(folders, hflip=0.5, crop_scale=[0.5, 1.0])
    serial = [b["images"] for b in _epoch(dm.train_dataloader(), 2)]
    dm.num_workers = 2
    parallel = [b["images"] for b in _epoch(dm.train_dataloader(), 2)]
    assert all(torch.equal(x, y) for x, y in zip(serial, parallel, strict=True))


def test_ranks_get_disjoint_shards(folders):
    data = _dm(folders).train_set
    shards = []
    for rank in (0, 1):
        s = EpochSeededSampler(
            data, num_replicas=2, rank=rank, shuffle=True, seed=1, drop_last=True
        )
        s.set_epoch(3)
        shards.append({i % len(data) for i in s})
    assert shards[0].isdisjoint(shards[1]) and len(shards[0] | shards[1]) == 12


def test_training_loader_resumes_mid_epoch(folders):
    dm = _dm(folders, hflip=0.5)
    full = [b["index"].tolist() for b in _epoch(dm.train_dataloader(), 4)]
    dm._consumed_batches = lambda: 2  # what the training loop had processed at the checkpoint
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableDataLoader)
    loader.sampler.set_epoch(4)
    state = loader.state_dict()
    assert state == {"epoch": 4, "consumed_batches": 2}
    fresh = dm.train_dataloader()  # a new process: epoch 0, nothing consumed
    fresh.load_state_dict(state)
    rest = [b["index"].tolist() for b in fresh]
    assert rest == full[2:]
    assert [b["index"].tolist() for b in fresh] == full  # the skip applies to one pass only


def test_too_few_images_for_a_batch(folders):
    dm = _dm(folders, batch_size=20)
    with pytest.raises(ValueError, match="fewer than one batch"):
        dm.train_dataloader()


def test_generated_images():
    dm = GeneratedImagesDataModule(
        **data_kwargs("tiny", generator=TINY_GEN, num_train=6, num_val=4, batch_size=2, seed=5)
    )
    dm.setup("fit")
    train, val = dm.train_set.images, dm.val_set.images
    assert train.shape == (6, 3, 32, 32) and val.shape == (4, 3, 32, 32)
    assert train.min() >= -1 and train.max() <= 1
    levels = (train + 1) * 127.5  # uint8-quantised, as if read from PNG files
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)
    again = GeneratedImagesDataModule(
        **data_kwargs("tiny", generator=TINY_GEN, num_train=6, num_val=4, seed=5)
    )
    again.setup("fit")
    assert torch.equal(again.train_set.images, train)
    assert not torch.allclose(train[:4], val)  # other seeds
    half = GeneratedImagesDataModule(
        **data_kwargs("tiny", generator=TINY_GEN, num_train=2, num_val=2, size=16, seed=5)
    )
    half.setup("validate")
    assert half.train_set is None and half.val_set.images.shape == (2, 3, 16, 16)
