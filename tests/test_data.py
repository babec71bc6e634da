"""Image input: every common format becomes the same tensor; bad files are reported, not fatal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lsap.data import ImageFileDataset, collate_images, list_images, load_image
from lsap.io import LsapFileError


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)


def test_list_images(tmp_path, rgb):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ["z.png", "a/x.JPG", "a/b/y.webp", "notes.txt"]:
        (tmp_path / p).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a/b/y.webp",
        "a/x.JPG",
        "z.png",
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(LsapFileError, match="empty: folder holds no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(LsapFileError, match="nowhere: no such file or folder"):
        list_images(tmp_path / "nowhere")


def test_resize_and_center_crop(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", 20)
    assert x.shape == (3, 20, 20) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    # 40x60 -> 20x30 -> central 20 columns: matches PIL's own resize + crop
    ref = np.asarray(
        Image.fromarray(rgb).resize((30, 20), Image.LANCZOS).crop((5, 0, 25, 20)), dtype=np.float32
    )
    torch.testing.assert_close(x, torch.from_numpy(ref).permute(2, 0, 1) / 127.5 - 1)


def test_modes_are_converted(tmp_path, rgb):
    gray = rgb[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    g = load_image(tmp_path / "g.png", 16)
    assert torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])
    im16 = Image.fromarray(gray.astype(np.uint16) * 257)
    assert im16.mode.startswith("I")
    im16.save(tmp_path / "g16.png")
    torch.testing.assert_close(load_image(tmp_path / "g16.png", 16), g, atol=1 / 127.5, rtol=0)
    rgba = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])  # fully transparent -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert torch.equal(load_image(tmp_path / "t.png", 16), torch.ones(3, 16, 16))
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png", 16).shape == (3, 16, 16)
    Image.fromarray(rgb).save(tmp_path / "w.webp", lossless=True)
    torch.testing.assert_close(
        load_image(tmp_path / "w.webp", 16), load_image(_png(tmp_path, rgb), 16)
    )


def _png(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "ref.png")
    return tmp_path / "ref.png"


def test_integer_images_are_scaled_by_their_bit_depth_not_their_pixels(tmp_path):
    """A dark 16-bit PNG stays dark (200/65535 is black in 8 bit, not 78 % grey); a 32-bit
    integer TIFF is scaled by 2^31 - 1."""
    Image.fromarray(np.full((16, 16), 200, np.uint16)).save(tmp_path / "dark16.png")
    dark = load_image(tmp_path / "dark16.png", 16)
    torch.testing.assert_close(dark, torch.full((3, 16, 16), 1 / 127.5 - 1))  # 8-bit value 1
    Image.fromarray(np.full((16, 16), 2**30, np.int32), "I").save(tmp_path / "half32.tif")
    half = load_image(tmp_path / "half32.tif", 16)
    torch.testing.assert_close(half, torch.full((3, 16, 16), 128 / 127.5 - 1))


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    x = load_image(tmp_path / "r.jpg", 20)  # displayed 20 wide x 40 tall -> white on top
    assert x[:, :5].mean() > 0.9 and x[:, -5:].mean() < -0.9


def test_bad_files_are_skipped_with_a_reason(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(LsapFileError, match=r"bad\.png: not a readable image"):
        load_image(tmp_path / "bad.png", 16)
    ds = ImageFileDataset(list_images(tmp_path), 16)
    batch = collate_images([ds[i] for i in range(len(ds))])
    assert batch["images"].shape == (1, 3, 16, 16)
    assert batch["path"] == [str(tmp_path / "good.png")]
    assert sorted(p.rsplit("/", 1)[1] for _, p, _ in batch["skipped"]) == ["bad.png", "empty.jpg"]
    assert all("not a readable image" in reason for *_, reason in batch["skipped"])
