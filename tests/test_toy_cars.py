"""The procedural toy cars (lsap.data.toy_cars): deterministic per (seed, index), black bars outside
the valid region, and every label changes the picture as its documentation says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lsap.data.toy import collate_toy, toy_attributes, toy_dataset, write_toy_images
from lsap.data.toy_cars import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    BINARY,
    PROBABILITY,
    VALID_CROP,
    ToyCars,
    render_car,
    render_toy_cars,
    sample_labels,
    valid_crop,
)

SETTINGS = {"seed": 0, "val_seed": 1, "resolution": 32, "batch_size": 4, "num_workers": 0}


def base_labels(**changes: float) -> np.ndarray:
    lab = {a.name: (0.0 if a.kind == "binary" else 0.5) for a in ATTRIBUTES}
    lab.update(changes)
    return np.array([lab[n] for n in ATTRIBUTE_NAMES], dtype=np.float32)


def picture(**changes: float) -> np.ndarray:
    """The valid region [24, 32, 3] as float of a car with mid scalars and no binary options."""
    top, left, h, w = VALID_CROP
    return render_car(base_labels(**changes), 32)[top : top + h, left : left + w].astype(float)


def changed(a: np.ndarray, b: np.ndarray, threshold: float = 30.0) -> np.ndarray:
    """Mask [h, w] of pixels whose colour moved by more than ``threshold`` (sum over RGB)."""
    return np.abs(a - b).sum(-1) > threshold


def tyres(img: np.ndarray) -> np.ndarray:
    """Mask of the near-black tyre pixels (the mid sky and road are far brighter)."""
    return img.max(-1) < 50


def test_deterministic_per_seed_and_index():
    a, la = render_toy_cars(10, seed=3)
    b, lb = render_toy_cars(4, seed=3, start=5)
    np.testing.assert_array_equal(a[5:9], b)
    np.testing.assert_array_equal(la[5:9], lb)
    c, _ = render_toy_cars(10, seed=4)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(la[7], sample_labels(3, 7))


def test_bars_black_and_picture_not():
    images, _ = render_toy_cars(16, seed=0)
    top, _, h, _ = VALID_CROP
    assert valid_crop(32) == VALID_CROP and valid_crop(64) == (8, 0, 48, 64)
    assert images[:, :top].max() == 0 and images[:, top + h :].max() == 0
    assert (images[:, top : top + h].reshape(16, -1).mean(1) > 40).all()


def test_label_statistics():
    labels = np.stack([sample_labels(0, i) for i in range(2000)])
    for i in BINARY:
        rate = labels[:, i].mean()
        assert set(np.unique(labels[:, i])) == {0.0, 1.0}
        assert abs(rate - PROBABILITY[ATTRIBUTE_NAMES[i]]) < 0.04
    scalar = labels[:, [i for i in range(len(ATTRIBUTES)) if i not in BINARY]]
    assert scalar.min() >= 0 and scalar.max() <= 1 and abs(scalar.mean() - 0.5) < 0.03


def test_binary_labels_change_their_part_of_the_car():
    base = picture()
    rows, cols = np.mgrid[0:24, 0:32]
    body_row = rows[changed(picture(body_hue=0.0), picture(body_hue=0.5))].mean()

    sun = changed(base, picture(sunroof=1.0))
    assert sun.sum() >= 3 and rows[sun].mean() < body_row  # on the roof, above the body
    assert picture(sunroof=1.0)[sun].sum() < base[sun].sum()  # tinted glass is dark

    spoiler = changed(base, picture(spoiler=1.0))
    assert spoiler.sum() >= 3 and cols[spoiler].mean() < 12  # at the rear (left)

    lights = changed(base, picture(headlights_on=1.0))
    assert lights.sum() >= 3 and cols[lights].mean() > 20  # at the front (right)
    assert picture(headlights_on=1.0)[lights].sum() > base[lights].sum()  # brighter

    tone = changed(base, picture(two_tone=1.0))
    assert tone.sum() >= 10 and 8 < cols[tone].mean() < 24


def test_scalar_labels_move_the_picture_as_documented():
    cols = np.mgrid[0:24, 0:32][1]
    # offset_x: the wheels move right
    left, right = tyres(picture(offset_x=0.0)), tyres(picture(offset_x=1.0))
    assert cols[right].mean() > cols[left].mean() + 2
    # length: the wheels spread apart
    assert cols[tyres(picture(length=1.0))].std() > cols[tyres(picture(length=0.0))].std() + 1
    # wheel_size: more tyre pixels
    assert tyres(picture(wheel_size=1.0)).sum() > 1.3 * tyres(picture(wheel_size=0.0)).sum()
    # height: the car grows upwards (more pixels differ from the sky in the upper half)
    sky = picture()[0:1, 0:1]
    tall = (np.abs(picture(height=1.0)[:12] - sky).sum(-1) > 60).sum()
    low = (np.abs(picture(height=0.0)[:12] - sky).sum(-1) > 60).sum()
    assert tall > low + 5
    # body_hue: red at 0, blue at 0.89
    red, blue = picture(body_hue=0.0), picture(body_hue=0.89)
    body = changed(red, blue, 120)
    assert body.sum() > 20
    assert red[body][:, 0].mean() > red[body][:, 2].mean() + 80
    assert blue[body][:, 2].mean() > blue[body][:, 0].mean() + 80
    # sky: night (blue, dark) to sunset (orange) in the top rows
    night, sunset = picture(sky=0.0)[:3], picture(sky=1.0)[:3]
    assert night[..., 2].mean() > night[..., 0].mean() and night.mean() < 60
    assert sunset[..., 0].mean() > sunset[..., 2].mean() + 80
    # road: the bottom rows get lighter
    assert picture(road=1.0)[-2:].mean() > picture(road=0.0)[-2:].mean() + 60


def test_dataset_datamodule_and_writer(tmp_path):
    from lsap.systems.toy_data import ToyFacesDataModule

    assert toy_dataset("cars") is ToyCars and toy_attributes("cars") == ATTRIBUTES
    with pytest.raises(ValueError, match="unknown toy domain"):
        toy_dataset("boats")
    data = ToyFacesDataModule(8, 4, **SETTINGS, domain="cars")
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch["images"].shape == (4, 3, 32, 32) and batch["labels"].shape == (4, 11)
    assert batch["images"][:, :, :4].eq(-1).all()  # the black bars are -1
    assert batch["path"][0].startswith("toycars:0:")
    item = ToyCars(3, seed=2)[1]
    expected = torch.from_numpy(render_toy_cars(1, seed=2, start=1)[0][0]).permute(2, 0, 1)
    torch.testing.assert_close(item["image"], expected.float() / 127.5 - 1)
    assert collate_toy([item])["labels"].shape == (1, 11)

    paths = write_toy_images(tmp_path, 3, seed=5, domain="cars")
    assert [p.name for p in paths] == [f"toycars_5_00000{i}.png" for i in range(3)]
    header = (tmp_path / "labels.csv").read_text().splitlines()[0]
    assert header == ",".join(["file", *ATTRIBUTE_NAMES])


def test_datamodule_checks_the_generator_crop():
    from types import SimpleNamespace

    from lsap.systems.toy_data import ToyFacesDataModule

    region = SimpleNamespace(box=[4, 0, 24, 32], resolution=32)  # ValidRegion's fields used
    ToyFacesDataModule(4, 0, **SETTINGS, domain="cars", crop=region)
    with pytest.raises(ValueError, match="not the toy faces' picture"):
        ToyFacesDataModule(4, 0, **SETTINGS, domain="faces", crop=region)
    with pytest.raises(ValueError, match="not the toy cars' picture"):
        ToyFacesDataModule(
            4, 0, **SETTINGS, domain="cars", crop=SimpleNamespace(box=[0, 0, 24, 32], resolution=32)
        )
