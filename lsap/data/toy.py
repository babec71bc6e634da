"""Toy faces: a procedural image domain whose every factor of variation is a known label.

Each image is drawn with PIL at ``SUPERSAMPLE`` times the output size and reduced with a Lanczos
filter (anti-aliasing), so the faces stay recognisable at 32 px. Image ``i`` of seed ``s`` depends
only on ``(s, i)``: any count, any slice, the same pixels.

Attributes (``ATTRIBUTES``, in label order; binary labels are 0/1, scalar labels lie in [0, 1]):

========== ====== ============================================================================
name       kind   what it changes
========== ====== ============================================================================
smile      binary an open smile showing teeth, corners up (1), or a closed mouth, corners
                  down (0); the curvature magnitude is drawn in [0.35, 1]
glasses    binary dark-tinted round glasses with a black frame over the eyes (p = 0.3)
long_hair  binary hair falls to the shoulders behind the head (1) or is a short cap (0)
beard      binary the lower face (jaw and chin) is covered in hair colour (p = 0.25)
skin_tone  scalar 0 = light (245, 215, 190) ... 1 = dark (105, 65, 45), piecewise linear
hair_color scalar 0 = black ... 0.5 = brown ... 1 = blonde
head_size  scalar head height 0.52 (0) ... 0.68 (1) of the image height
head_width scalar face width / height 0.70 (0) ... 0.92 (1)
yaw        scalar eyes, nose and mouth shift left (0) ... right (1) inside the head (a turn)
offset_x   scalar whole head shifted left (0) ... right (1), at most 6 % of the width
offset_y   scalar whole head shifted up (0) ... down (1), at most 5 % of the height
background scalar background colour 0 = dusk blue ... 1 = sand, with a vertical gradient
========== ====== ============================================================================
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from lsap.core.atomic import atomic_write_bytes, atomic_write_text
from lsap.data.toy_base import Attribute, ToyDataset, draw_labels, mix, palette, render_many

ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("smile", "binary", "open smile with teeth, corners up (1); closed, corners down (0)"),
    Attribute("glasses", "binary", "dark round glasses over the eyes"),
    Attribute("long_hair", "binary", "hair falls to the shoulders (1) or is a short cap (0)"),
    Attribute("beard", "binary", "jaw and chin covered in hair colour"),
    Attribute("skin_tone", "scalar", "0 light ... 1 dark"),
    Attribute("hair_color", "scalar", "0 black ... 0.5 brown ... 1 blonde"),
    Attribute("head_size", "scalar", "head height 0.52 (0) ... 0.68 (1) of the image"),
    Attribute("head_width", "scalar", "face width/height 0.70 (0) ... 0.92 (1)"),
    Attribute("yaw", "scalar", "features shift left (0) ... right (1) inside the head"),
    Attribute("offset_x", "scalar", "head shifted left (0) ... right (1)"),
    Attribute("offset_y", "scalar", "head shifted up (0) ... down (1)"),
    Attribute("background", "scalar", "0 dusk blue ... 1 sand"),
)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES)
BINARY = tuple(i for i, a in enumerate(ATTRIBUTES) if a.kind == "binary")
SCALAR = tuple(i for i, a in enumerate(ATTRIBUTES) if a.kind == "scalar")

SUPERSAMPLE = 4  # draw at 4x the output size, then Lanczos-reduce (anti-aliasing)
PROBABILITY = {"smile": 0.5, "glasses": 0.3, "long_hair": 0.5, "beard": 0.25}

_SKIN = np.array([(245, 215, 190), (205, 155, 115), (105, 65, 45)], dtype=np.float64)
_HAIR = np.array([(22, 18, 18), (105, 62, 32), (225, 195, 115)], dtype=np.float64)
_BACKGROUND = np.array([(60, 80, 130), (120, 150, 150), (225, 210, 170)], dtype=np.float64)
_SHIRT = (55, 60, 75)
_EYE_WHITE = (245, 245, 240)
_PUPIL = (25, 20, 30)
_LENS_TINT = np.array((20, 22, 35), dtype=np.float64)
_MOUTH = (150, 40, 50)
_MOUTH_INSIDE = (90, 20, 30)
_TEETH = (245, 240, 230)


def sample_labels(seed: int, index: int) -> np.ndarray:
    """The labels of image ``index`` of ``seed``: float32 [A] in ``ATTRIBUTES`` order."""
    return draw_labels(ATTRIBUTES, PROBABILITY, seed, index)


def _magnitude(seed: int, index: int) -> float:
    """Mouth-curvature magnitude in [0.35, 1] (a nuisance factor, independent of the labels)."""
    return 0.35 + 0.65 * float(np.random.default_rng([seed, index, 1]).random())


def render_face(labels: np.ndarray, resolution: int = 32, mouth_curve: float = 0.7) -> np.ndarray:
    """Draw one face.

    Args:
        labels: [A] float values in ``ATTRIBUTES`` order (binary 0/1, scalar in [0, 1]).
        resolution: output size in pixels (any size >= 8; 32 and 64 are the tested ones).
        mouth_curve: magnitude of the mouth's curvature in [0, 1]; its sign comes from ``smile``.

    Returns:
        uint8 [resolution, resolution, 3] RGB.
    """
    lab = dict(zip(ATTRIBUTE_NAMES, (float(v) for v in labels), strict=True))
    S = resolution * SUPERSAMPLE
    bg_top = palette(_BACKGROUND, lab["background"])
    bg_bottom = mix(bg_top, (0, 0, 0), 0.25)
    ramp = np.linspace(0.0, 1.0, S)[:, None, None]
    canvas = (np.asarray(bg_top) * (1 - ramp) + np.asarray(bg_bottom) * ramp).astype(np.uint8)
    img = Image.fromarray(np.broadcast_to(canvas, (S, S, 3)).copy(), "RGB")
    d = ImageDraw.Draw(img)

    def box(cx: float, cy: float, rx: float, ry: float) -> tuple[float, float, float, float]:
        return ((cx - rx) * S, (cy - ry) * S, (cx + rx) * S, (cy + ry) * S)

    skin = palette(_SKIN, lab["skin_tone"])
    shade = mix(skin, (0, 0, 0), 0.22)
    hair = palette(_HAIR, lab["hair_color"])
    cx = 0.5 + 0.06 * (2 * lab["offset_x"] - 1)
    cy = 0.5 + 0.05 * (2 * lab["offset_y"] - 1)
    ry = 0.26 + 0.08 * lab["head_size"]
    rx = ry * (0.70 + 0.22 * lab["head_width"])
    fx = cx + 0.2 * rx * (2 * lab["yaw"] - 1)  # the features' centre line (the turn)

    # shoulders and neck
    d.ellipse(box(cx, cy + ry + 0.32, rx * 1.9, 0.3), fill=_SHIRT)
    d.rectangle(box(cx, cy + ry * 0.95, rx * 0.38, ry * 0.35), fill=shade)
    if lab["long_hair"] > 0.5:
        d.rounded_rectangle(
            box(cx, cy + 0.12 * ry, rx * 1.22, ry * 1.12), radius=rx * 0.9 * S, fill=hair
        )
    else:
        d.ellipse(box(cx, cy - 0.12 * ry, rx * 1.1, ry * 1.0), fill=hair)
    # ears, then the face
    for side in (-1, 1):
        d.ellipse(box(cx + side * rx * 0.97, cy + 0.05 * ry, rx * 0.16, ry * 0.2), fill=shade)
    d.ellipse(box(cx, cy, rx, ry), fill=skin)
    # fringe: the top of the hair ellipse drawn over the forehead
    d.chord(box(cx, cy - 0.28 * ry, rx * 1.04, ry * 0.78), 180, 360, fill=hair)
    if lab["beard"] > 0.5:
        d.chord(box(cx, cy + 0.02 * ry, rx * 1.0, ry * 0.98), 28, 152, fill=hair)
        d.ellipse(box(fx, cy + 0.4 * ry, rx * 0.36, ry * 0.12), fill=hair)  # moustache

    # eyebrows, eyes
    ey = cy - 0.02 * ry
    ex = 0.38 * rx
    for side in (-1, 1):
        x = fx + side * ex
        d.line(
            [
                ((x - 0.17 * rx) * S, (ey - 0.2 * ry) * S),
                ((x + 0.17 * rx) * S, (ey - 0.22 * ry) * S),
            ],
            fill=mix(hair, (0, 0, 0), 0.3),
            width=max(1, round(0.05 * ry * S)),
        )
        d.ellipse(box(x, ey, 0.17 * rx, 0.1 * ry), fill=_EYE_WHITE)
        d.ellipse(box(x + 0.04 * rx * (2 * lab["yaw"] - 1), ey, 0.08 * rx, 0.08 * rx), fill=_PUPIL)
    if lab["glasses"] > 0.5:
        frame = max(1, round(0.045 * ry * S))
        lens_r = 0.27 * rx
        for side in (-1, 1):
            x = fx + side * ex
            under = np.asarray(img.crop(tuple(int(v) for v in box(x, ey, lens_r, lens_r))))
            tint = mix(np.asarray(under).reshape(-1, 3).mean(0), _LENS_TINT, 0.75)
            d.ellipse(box(x, ey, lens_r, lens_r), fill=tint, outline=(10, 10, 10), width=frame)
        d.line(
            [((fx - ex + lens_r) * S, ey * S), ((fx + ex - lens_r) * S, ey * S)],
            fill=(10, 10, 10),
            width=frame,
        )
        for side in (-1, 1):  # temples towards the ears
            x0 = fx + side * (ex + lens_r)
            d.line(
                [(x0 * S, ey * S), ((cx + side * rx * 0.98) * S, ey * S)],
                fill=(10, 10, 10),
                width=frame,
            )

    # nose
    d.ellipse(box(fx, cy + 0.2 * ry, 0.07 * rx, 0.1 * ry), fill=shade)
    # mouth: a smile is an open crescent showing teeth, corners up; otherwise a closed line,
    # corners down. ``mouth_curve`` scales the curvature of both.
    my, xs = cy + 0.48 * ry, np.linspace(-1.0, 1.0, 15)
    lip = max(1, round(0.06 * ry * S))
    if lab["smile"] > 0.5:
        mw = 0.44 * rx
        top = 0.06 * ry * mouth_curve  # the upper lip bends a little
        bottom = 0.1 * ry + 0.2 * ry * mouth_curve  # the lower lip hangs deeper
        upper = [((fx + mw * x) * S, (my + top * (1 - x * x)) * S) for x in xs]
        lower = [((fx + mw * x) * S, (my + bottom * (1 - x * x)) * S) for x in xs[::-1]]
        teeth = [((fx + mw * x) * S, (my + 0.55 * bottom * (1 - x * x)) * S) for x in xs[::-1]]
        d.polygon(upper + lower, fill=_MOUTH_INSIDE)
        d.polygon(upper + teeth, fill=_TEETH)
        d.line([*upper, *lower, upper[0]], fill=_MOUTH, width=lip, joint="curve")
    else:
        mw, mh = 0.36 * rx, 0.16 * ry * mouth_curve
        pts = [((fx + mw * x) * S, (my - mh * (1 - x * x) + mh / 2) * S) for x in xs]
        d.line(pts, fill=_MOUTH, width=max(1, round(0.075 * ry * S)), joint="curve")

    out = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(out, dtype=np.uint8)


def render_toy_faces(
    num_images: int, *, seed: int = 0, resolution: int = 32, start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Render images ``start .. start + num_images - 1`` of ``seed``.

    Returns:
        images uint8 [N, R, R, 3] and labels float32 [N, A] (``ATTRIBUTES`` order).
    """
    return render_many(
        num_images,
        len(ATTRIBUTES),
        resolution,
        start,
        lambda i: sample_labels(seed, i),
        lambda labels, i: render_face(labels, resolution, _magnitude(seed, i)),
    )


class ToyFaces(ToyDataset):
    """Rendered toy faces (``render_toy_faces``); labels in ``ATTRIBUTE_NAMES`` order."""

    attribute_names = ATTRIBUTE_NAMES
    prefix = "toy"

    @staticmethod
    def render(num_images: int, *, seed: int, resolution: int, start: int):
        return render_toy_faces(num_images, seed=seed, resolution=resolution, start=start)


TOY_DOMAINS = ("faces", "cars")  # lsap.data.toy (faces) and lsap.data.toy_cars (cars)


def toy_dataset(domain: str) -> type[ToyDataset]:
    """The dataset class of a toy domain: ``"faces"`` (:class:`ToyFaces`) or ``"cars"``
    (``lsap.data.toy_cars.ToyCars``)."""
    if domain == "faces":
        return ToyFaces
    if domain == "cars":
        from lsap.data.toy_cars import ToyCars

        return ToyCars
    raise ValueError(f"unknown toy domain {domain!r}: expected one of {', '.join(TOY_DOMAINS)}")


def toy_attributes(domain: str) -> tuple[Attribute, ...]:
    """The labels (``Attribute`` records, in label order) of a toy domain."""
    if domain == "faces":
        return ATTRIBUTES
    if domain == "cars":
        from lsap.data.toy_cars import ATTRIBUTES as CAR_ATTRIBUTES

        return CAR_ATTRIBUTES
    raise ValueError(f"unknown toy domain {domain!r}: expected one of {', '.join(TOY_DOMAINS)}")


def collate_toy(items: Sequence[dict]) -> dict:
    """Batch :class:`ToyFaces` items like ``lsap.data.collate_images`` (plus the labels).

    Returns:
        ``{"images": [B, 3, R, R] in [-1, 1], "labels": [B, A], "index": [B] long,
        "path": list[str], "skipped": []}``
    """
    return {
        "images": torch.stack([it["image"] for it in items]),
        "labels": torch.stack([it["labels"] for it in items]),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "path": [it["path"] for it in items],
        "skipped": [],
    }


def write_toy_images(
    folder: str | Path,
    num_images: int,
    *,
    seed: int = 0,
    resolution: int = 32,
    start: int = 0,
    domain: str = "faces",
) -> list[Path]:
    """Write images of a toy ``domain`` as ``<prefix>_<seed>_<index>.png`` plus ``labels.csv``
    (name + labels), atomically (prefix ``toy`` for faces, ``toycars`` for cars).

    Returns:
        the PNG paths, in index order.
    """
    folder = Path(folder)
    dataset = toy_dataset(domain)
    images, labels = dataset.render(num_images, seed=seed, resolution=resolution, start=start)
    paths, rows = [], []
    for k in range(num_images):
        path = folder / f"{dataset.prefix}_{seed}_{start + k:06d}.png"
        buf = io.BytesIO()
        Image.fromarray(images[k], "RGB").save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
        rows.append([path.name, *(f"{v:g}" for v in labels[k])])
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["file", *dataset.attribute_names])
    writer.writerows(rows)
    atomic_write_text(folder / "labels.csv", text.getvalue())
    return paths


def toy_grid(images: Tensor, nrow: int) -> Tensor:
    """Tile images [N, 3, R, R] into one [3, rows*R, nrow*R] (for visual checks)."""
    N, C, H, W = images.shape
    rows = -(-N // nrow)
    pad = images.new_zeros(rows * nrow - N, C, H, W)
    x = torch.cat([images, pad]).reshape(rows, nrow, C, H, W)
    return x.permute(2, 0, 3, 1, 4).reshape(C, rows * H, nrow * W)
