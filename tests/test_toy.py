"""Toy faces: deterministic per (seed, index), and each label changes the image as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lsap.data import load_image
from lsap.data.toy import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    ToyFaces,
    render_face,
    render_toy_faces,
    sample_labels,
    write_toy_images,
)

A = {n: i for i, n in enumerate(ATTRIBUTE_NAMES)}


def base_labels(**kw) -> np.ndarray:
    """A centred, plain face (no glasses/beard/long hair), scalars at 0.5, overridden by kw."""
    lab = np.full(len(ATTRIBUTES), 0.5, dtype=np.float32)
    for name in ("smile", "glasses", "long_hair", "beard"):
        lab[A[name]] = 0.0
    for k, v in kw.items():
        lab[A[k]] = v
    return lab


def luminance(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_deterministic_by_seed_and_index():
    a, la = render_toy_faces(6, seed=3)
    b, lb = render_toy_faces(6, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    # image i of a seed does not depend on the count or the start of the slice
    c, lc = render_toy_faces(2, seed=3, start=4)
    np.testing.assert_array_equal(c, a[4:6])
    np.testing.assert_array_equal(lc, la[4:6])
    d, _ = render_toy_faces(6, seed=4)
    assert all((d[i] != a[i]).any() for i in range(6))


def test_labels_are_documented_kinds():
    lab = np.stack([sample_labels(0, i) for i in range(2000)])
    for i, a in enumerate(ATTRIBUTES):
        if a.kind == "binary":
            assert set(np.unique(lab[:, i])) == {0.0, 1.0}, a.name
        else:
            assert 0.0 <= lab[:, i].min() < 0.05 and 0.95 < lab[:, i].max() <= 1.0, a.name
    assert abs(lab[:, A["glasses"]].mean() - 0.3) < 0.04
    assert abs(lab[:, A["beard"]].mean() - 0.25) < 0.04


def test_dataset_items_and_64px():
    ds = ToyFaces(3, seed=1, resolution=64)
    item = ds[2]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["image"].min() >= -1.0 and item["image"].max() <= 1.0
    assert item["labels"].shape == (len(ATTRIBUTES),) and item["index"] == 2
    assert ds.label_dict(2) == dict(zip(ATTRIBUTE_NAMES, ds.labels[2].tolist(), strict=True))
    img, _ = render_toy_faces(3, seed=1, resolution=64)
    torch.testing.assert_close(item["image"], torch.from_numpy(img[2]).permute(2, 0, 1) / 127.5 - 1)


def test_smile_changes_only_the_mouth_opens_it_and_curves_it_up():
    R = 64
    smile = render_face(base_labels(smile=1), R, 1.0)
    frown = render_face(base_labels(smile=0), R, 1.0)
    diff = np.abs(smile.astype(int) - frown.astype(int)).sum(-1)
    # mouth at y = cy + 0.48 ry (cy = 0.5, ry = 0.30 at head_size 0.5), about 0.6 rx wide
    mouth = (slice(int(0.55 * R), int(0.8 * R)), slice(int(0.32 * R), int(0.68 * R)))
    assert diff.sum() > 0 and diff[mouth].sum() == diff.sum()
    # an open smile shows teeth: near-white pixels that the closed mouth lacks
    assert luminance(smile)[mouth].max() > 230 > 200 > luminance(frown)[mouth].max()

    def mouth_rows(img):
        red = (img[..., 0].astype(int) - img[..., 1].astype(int)) > 70  # lips, not skin
        ys, xs = np.nonzero(red)
        centre = np.abs(xs - R / 2) < 2
        corners = np.abs(xs - R / 2) > 0.5 * np.ptp(xs) - 1
        return ys[centre].max(), ys[corners].mean()

    c, k = mouth_rows(smile)
    assert c > k + 2  # image rows grow downwards: the lower lip hangs below the corners
    c, k = mouth_rows(frown)
    assert c < k


def test_glasses_darken_the_eye_band_only():
    R = 64
    with_g = luminance(render_face(base_labels(glasses=1), R))
    without = luminance(render_face(base_labels(glasses=0), R))
    eyes = (slice(int(0.37 * R), int(0.63 * R)), slice(int(0.28 * R), int(0.72 * R)))
    assert without[eyes].mean() - with_g[eyes].mean() > 30
    outside = np.abs(with_g - without)
    outside[eyes[0], :] = 0
    assert outside.max() < 1e-9


@pytest.mark.parametrize(
    ("name", "measure", "direction"),
    [
        ("skin_tone", lambda im: luminance(im)[36:40, 24:28].mean(), -1),  # cheek darker
        ("hair_color", lambda im: luminance(im)[10:13, 28:36].mean(), +1),  # fringe lighter
        ("background", lambda im: luminance(im)[2:8, 2:8].mean(), +1),  # corner: blue -> sand
        ("head_size", lambda im: (np.abs(im.astype(int) - im[1, 1]).sum(-1) > 30).sum(), +1),
        (
            "offset_x",
            lambda im: np.nonzero(np.abs(luminance(im)[30] - luminance(im)[30, 1]) > 30)[0].mean(),
            +1,
        ),
    ],
)
def test_scalar_labels_move_the_image_monotonically(name, measure, direction):
    values = [measure(render_face(base_labels(**{name: t}), 64)) for t in (0.0, 0.5, 1.0)]
    assert direction * (values[1] - values[0]) > 0 and direction * (values[2] - values[1]) > 0


def test_write_toy_images_round_trip(tmp_path):
    paths = write_toy_images(tmp_path, 3, seed=5, start=10)
    assert [p.name for p in paths] == [f"toy_5_{i:06d}.png" for i in (10, 11, 12)]
    ds = ToyFaces(3, seed=5, start=10)
    for k, p in enumerate(paths):
        torch.testing.assert_close(load_image(p, 32), ds[k]["image"], rtol=0, atol=0)
    rows = (tmp_path / "labels.csv").read_text().splitlines()
    assert rows[0].split(",") == ["file", *ATTRIBUTE_NAMES]
    assert [float(v) for v in rows[2].split(",")[1:]] == pytest.approx(
        ds.labels[1].tolist(), abs=1e-5
    )
