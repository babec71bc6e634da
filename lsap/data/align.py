"""FFHQ-style face alignment from MTCNN's five landmarks (optional preprocessing of real photos).

The crop follows the FFHQ recipe: from the eye centres and the mouth corners, an oriented square
is placed so that the eyes sit side by side in its upper half: its half-side is
``max(2 * |eye_to_eye|, 1.8 * |eye_to_mouth|)``, its centre ``eye_avg + 0.1 * eye_to_mouth``, and
it is rotated with the eye line. MTCNN (facenet-pytorch; its weights ship in the wheel) gives the
landmarks; of several faces the most confident one is used. Pixels outside the photo are filled by
reflection (FFHQ additionally blurs that border; we do not).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop as 4 corners [4, 2] (x, y): top-left, bottom-left, bottom-right, top-right.

    Args:
        landmarks: [5, 2] pixel coordinates: left eye, right eye, nose, left and right mouth
            corner (MTCNN's order; "left" = the image's left).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (5, 2):
        raise ValueError(f"expected 5 landmarks [5, 2], got {lm.shape}")
    eye_avg = (lm[0] + lm[1]) / 2
    eye_to_eye = lm[1] - lm[0]
    eye_to_mouth = (lm[3] + lm[4]) / 2 - eye_avg
    # x: the square's horizontal half-axis, along the eye line tilted by the eye-mouth direction
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x = x / np.hypot(*x) * max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    y = np.array([-x[1], x[0]])  # x rotated by +90 degrees (image y points down)
    c = eye_avg + 0.1 * eye_to_mouth
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def crop_quad(img: Image.Image, quad: np.ndarray, size: int, supersample: int = 2) -> Image.Image:
    """Resample the oriented square ``quad`` [4, 2] of an RGB image to ``size x size``."""
    quad = np.asarray(quad, dtype=np.float64).copy()
    side = np.hypot(*(quad[3] - quad[0]))
    shrink = math.floor(side / size * 0.5)
    if shrink > 1:  # pre-shrink big photos so the bilinear resampling does not alias
        w, h = img.size
        img = img.resize((max(1, round(w / shrink)), max(1, round(h / shrink))), Image.LANCZOS)
        # resizing maps pixel edges to edges: centre x -> (x + 0.5) * w' / w - 0.5, per axis (the
        # rounded size), so the crop stays the quad of the full photo (lsap.data.paste inverts it)
        quad = (quad + 0.5) * (np.array(img.size, dtype=np.float64) / (w, h)) - 0.5
    w, h = img.size
    pad = math.ceil(max(0.0, -quad.min(), quad[:, 0].max() - w, quad[:, 1].max() - h))
    if pad > 0:
        pad += 2
        arr = np.pad(np.asarray(img), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        img = Image.fromarray(arr)
        quad += pad
    big = size * supersample
    out = img.transform((big, big), Image.QUAD, tuple((quad + 0.5).flatten()), Image.BILINEAR)
    return out.resize((size, size), Image.LANCZOS) if supersample > 1 else out


class FaceAligner:
    """``aligner(pil_rgb) -> pil_rgb [size x size]``: the FFHQ crop of the most confident face.

    Args:
        size: output side in pixels (the generator resolution).
        min_confidence: faces MTCNN scores below this are ignored.

    Raises (when called):
        ValueError("no face found ...") when MTCNN finds no face; the dataset reports such files
        by name and skips them.
    """

    def __init__(self, size: int, min_confidence: float = 0.9) -> None:
        self.size, self.min_confidence = size, min_confidence
        self._mtcnn = None  # built on first use (in each data-loader worker)

    def landmarks(self, img: Image.Image) -> np.ndarray:
        """[5, 2] landmarks of the most confident face (see :func:`ffhq_quad` for the order)."""
        if self._mtcnn is None:
            from facenet_pytorch import MTCNN

            self._mtcnn = MTCNN(keep_all=True, device="cpu")
        boxes, probs, points = self._mtcnn.detect(img, landmarks=True)
        if boxes is None:
            raise ValueError("no face found (MTCNN)")
        best = int(np.argmax(probs))
        if probs[best] < self.min_confidence:
            raise ValueError(f"no face found (MTCNN's best confidence {probs[best]:.2f})")
        return np.asarray(points[best], dtype=np.float64)

    def align(self, img: Image.Image) -> tuple[Image.Image, np.ndarray]:
        """The crop and its quad [4, 2] in ``img``'s pixels (what ``lsap.data.paste`` inverts)."""
        quad = ffhq_quad(self.landmarks(img))
        return crop_quad(img.convert("RGB"), quad, self.size), quad

    def __call__(self, img: Image.Image) -> Image.Image:
        return self.align(img)[0]
