"""FFHQ-style face alignment: the crop geometry, and MTCNN on a real photo (skimage's astronaut)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lsap.data import ImageFileDataset
from lsap.data.align import FaceAligner, crop_quad, ffhq_quad

# An upright face: eyes at (40, 50) and (60, 50), mouth corners at (42, 70) and (58, 70).
UPRIGHT = np.array([[40, 50], [60, 50], [50, 60], [42, 70], [58, 70]], dtype=float)


def test_quad_of_an_upright_face():
    # eye_to_eye = (20, 0), eye_to_mouth = (0, 20): half-side max(2 * 20, 1.8 * 20) = 40,
    # centre = eye midpoint + 0.1 * eye_to_mouth = (50, 52)
    quad = ffhq_quad(UPRIGHT)
    np.testing.assert_allclose(quad, [[10, 12], [10, 92], [90, 92], [90, 12]])


def test_quad_turns_with_the_face():
    angle = np.deg2rad(30)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([50.0, 50.0])
    turned = (UPRIGHT - centre) @ rot.T + centre
    np.testing.assert_allclose(ffhq_quad(turned), (ffhq_quad(UPRIGHT) - centre) @ rot.T + centre)
    with pytest.raises(ValueError, match="5 landmarks"):
        ffhq_quad(UPRIGHT[:4])


def test_crop_puts_the_eyes_where_ffhq_does():
    img = np.full((120, 140, 3), 255, np.uint8)
    for x, y in UPRIGHT[:2].astype(int):
        img[y - 1 : y + 2, x - 1 : x + 2] = 0  # black 3x3 dots on the eyes
    out = np.asarray(crop_quad(Image.fromarray(img), ffhq_quad(UPRIGHT), 160))
    dark = np.argwhere(out.min(axis=2) < 128)  # [k, (row, col)]
    left, right = dark[dark[:, 1] < 80].mean(0), dark[dark[:, 1] >= 80].mean(0)
    # (eye - top-left corner) / side: (30 / 80, 38 / 80) and (50 / 80, 38 / 80)
    np.testing.assert_allclose(left / 160, [0.475, 0.375], atol=0.015)
    np.testing.assert_allclose(right / 160, [0.475, 0.625], atol=0.015)


def test_mtcnn_aligns_a_real_photo():
    skimage_data = pytest.importorskip("skimage.data")
    photo = Image.fromarray(skimage_data.astronaut())
    aligner = FaceAligner(256)
    for img in (photo, photo.rotate(20, resample=Image.BICUBIC, expand=True)):
        crop = aligner(img)
        assert crop.size == (256, 256)
        eyes = aligner.landmarks(crop)[:2] / 256  # found again in the aligned crop
        np.testing.assert_allclose(eyes[0], [0.375, 0.475], atol=0.03)
        np.testing.assert_allclose(eyes[1], [0.625, 0.475], atol=0.03)


def test_photo_without_a_face_is_skipped_with_the_reason(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    item = ImageFileDataset([tmp_path / "noise.png"], 32, align=FaceAligner(32))[0]
    assert item.image is None and "no face found" in item.error
