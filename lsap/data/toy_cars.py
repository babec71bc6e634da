"""Toy cars: a second procedural domain, not faces and not square, every factor a known label.

A side view of a car on a road under a sky, drawn with PIL at ``SUPERSAMPLE`` times the output size
and Lanczos-reduced. The picture is ``resolution x 3/4 resolution`` (32 x 24 at 32 px) and sits in
the middle rows of a square ``resolution x resolution`` frame whose bars above and below are black,
as LSUN cars (512 x 384) sit inside a 512 x 512 generator: ``VALID_CROP`` (``[top, left, height,
width]`` at 32 px, ``generator.crop`` of ``conf/generator/toycars32.yaml``) is the valid region.
Image ``i`` of seed ``s`` depends only on ``(s, i)``.

Attributes (``ATTRIBUTES``, in label order; binary labels are 0/1, scalar labels lie in [0, 1]):

============= ====== =========================================================================
name          kind   what it changes
============= ====== =========================================================================
sunroof       binary a raised tinted-glass panel on the roof (p = 0.4)
two_tone      binary cabin and roof in a contrasting colour (white on dark bodies, black on
                     light ones) instead of the body colour (p = 0.35)
headlights_on binary a bright yellow headlight at the front with a light cone on the road
                     (p = 0.4; off: a small grey lamp)
spoiler       binary a black rear wing on two posts above the boot (p = 0.3)
body_hue      scalar body colour HSV hue 0.75 x label: 0 = red ... 0.22 = yellow ... 0.44 =
                     green ... 0.67 = cyan ... 0.89 = blue ... 1 = violet (no wrap-around)
length        scalar car length 0.58 (0) ... 0.84 (1) of the picture width
height        scalar body and cabin heights x 0.8 (0) ... x 1.25 (1)
wheel_size    scalar wheel radius 0.085 (0) ... 0.14 (1) of the picture height
offset_x      scalar whole car shifted left (0) ... right (1), at most 8 % of the width
sky           scalar sky colour 0 = night blue ... 0.5 = day blue ... 1 = sunset orange,
                     with a vertical gradient
road          scalar road surface 0 = dark asphalt ... 1 = light concrete
============= ====== =========================================================================
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

from lsap.data.toy_base import Attribute, ToyDataset, draw_labels, mix, palette, render_many

ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("sunroof", "binary", "raised tinted-glass panel on the roof"),
    Attribute("two_tone", "binary", "cabin and roof in a contrasting colour"),
    Attribute("headlights_on", "binary", "bright headlight and a light cone on the road"),
    Attribute("spoiler", "binary", "black rear wing above the boot"),
    Attribute("body_hue", "scalar", "0 red ... 0.44 green ... 0.89 blue ... 1 violet"),
    Attribute("length", "scalar", "car length 0.58 (0) ... 0.84 (1) of the width"),
    Attribute("height", "scalar", "body and cabin heights x0.8 (0) ... x1.25 (1)"),
    Attribute("wheel_size", "scalar", "wheel radius 0.085 (0) ... 0.14 (1) of the height"),
    Attribute("offset_x", "scalar", "car shifted left (0) ... right (1)"),
    Attribute("sky", "scalar", "0 night blue ... 0.5 day blue ... 1 sunset orange"),
    Attribute("road", "scalar", "0 dark asphalt ... 1 light concrete"),
)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES)
BINARY = tuple(i for i, a in enumerate(ATTRIBUTES) if a.kind == "binary")
SCALAR = tuple(i for i, a in enumerate(ATTRIBUTES) if a.kind == "scalar")

SUPERSAMPLE = 4
PROBABILITY = {"sunroof": 0.4, "two_tone": 0.35, "headlights_on": 0.4, "spoiler": 0.3}
ASPECT = 0.75  # picture height / width (LSUN cars: 384 / 512)
VALID_CROP = (4, 0, 24, 32)  # [top, left, height, width] of the picture in the 32 px frame

_SKY = np.array([(18, 24, 60), (110, 165, 225), (240, 150, 95)], dtype=np.float64)
_ROAD = np.array([(40, 40, 46), (165, 160, 150)], dtype=np.float64)
_GLASS = (150, 185, 205)
_SUNROOF = (30, 45, 70)
_TYRE = (18, 18, 20)
_HUB = (185, 185, 190)
_LAMP_OFF = (120, 120, 115)
_LAMP_ON = (255, 240, 140)
_SPOILER = (15, 15, 18)


def valid_crop(resolution: int) -> tuple[int, int, int, int]:
    """``[top, left, height, width]`` of the picture inside a square ``resolution`` frame."""
    height = round(resolution * ASPECT)
    return ((resolution - height) // 2, 0, height, resolution)


def sample_labels(seed: int, index: int) -> np.ndarray:
    """The labels of car ``index`` of ``seed``: float32 [A] in ``ATTRIBUTES`` order."""
    return draw_labels(ATTRIBUTES, PROBABILITY, seed, index)


def body_color(hue: float) -> tuple[int, int, int]:
    """Body colour of ``body_hue`` in [0, 1]: HSV hue 0 ... 0.75, saturated, fairly bright."""
    r, g, b = colorsys.hsv_to_rgb(0.75 * hue, 0.78, 0.86)
    return (round(255 * r), round(255 * g), round(255 * b))


def render_car(labels: np.ndarray, resolution: int = 32) -> np.ndarray:
    """Draw one car inside a square frame with black bars above and below.

    Args:
        labels: [A] float values in ``ATTRIBUTES`` order (binary 0/1, scalar in [0, 1]).
        resolution: frame size in pixels (>= 8); the picture is ``valid_crop(resolution)``.

    Returns:
        uint8 [resolution, resolution, 3] RGB; rows outside the valid region are 0.
    """
    lab = dict(zip(ATTRIBUTE_NAMES, (float(v) for v in labels), strict=True))
    top, _, h, w = valid_crop(resolution)
    W, H = w * SUPERSAMPLE, h * SUPERSAMPLE

    sky_top = palette(_SKY, lab["sky"])
    sky_low = mix(sky_top, (235, 235, 225), 0.3)
    horizon = 0.7  # the road starts at 70 % of the picture height
    rows = np.linspace(0.0, 1.0, H)[:, None, None]
    canvas = np.asarray(sky_top) * (1 - rows / horizon) + np.asarray(sky_low) * (rows / horizon)
    road = palette(_ROAD, lab["road"])
    canvas = np.where(rows < horizon, canvas, np.asarray(road, dtype=np.float64))
    img = Image.fromarray(np.broadcast_to(canvas.astype(np.uint8), (H, W, 3)).copy(), "RGB")
    d = ImageDraw.Draw(img)

    def px(x: float, y: float) -> tuple[float, float]:  # picture fractions -> pixels
        return (x * W, y * H)

    # lane marking: a lighter dashed line near the bottom
    mark = mix(road, (240, 240, 230), 0.55)
    for x0 in np.arange(-0.05, 1.0, 0.22):
        d.rectangle((*px(x0, 0.9), *px(x0 + 0.11, 0.925)), fill=mark)

    color = body_color(lab["body_hue"])
    light = sum(color) / 3 > 150
    roof = color
    if lab["two_tone"] > 0.5:
        roof = (25, 25, 28) if light else (240, 240, 236)
    dark = mix(color, (0, 0, 0), 0.35)

    scale = 0.8 + 0.45 * lab["height"]
    length = 0.58 + 0.26 * lab["length"]
    cx = 0.5 + 0.08 * (2 * lab["offset_x"] - 1)
    x0, x1 = cx - length / 2, cx + length / 2  # rear (left) ... front (right)
    wheel_r = 0.085 + 0.055 * lab["wheel_size"]  # in picture heights
    ground = 0.84
    axle = ground - wheel_r
    body_bottom = axle + 0.35 * wheel_r
    body_top = body_bottom - 0.2 * scale
    cabin_top = body_top - 0.17 * scale

    # headlight cone on the road, under everything else
    if lab["headlights_on"] > 0.5:
        beam = mix(road, _LAMP_ON, 0.45)
        lamp_y = body_top + 0.3 * (body_bottom - body_top)
        d.polygon(
            [px(x1, lamp_y), px(x1 + 0.35, ground + 0.02), px(x1 + 0.06, ground + 0.04)], fill=beam
        )
    # shadow under the car
    d.ellipse(
        (*px(x0 + 0.02, ground - 0.03), *px(x1 - 0.02, ground + 0.03)),
        fill=mix(road, (0, 0, 0), 0.5),
    )
    # lower body: a rounded slab
    d.rounded_rectangle(
        (*px(x0, body_top), *px(x1, body_bottom)), radius=0.06 * H * scale, fill=color
    )
    # cabin: a trapezoid from the rear pillar to the windscreen
    c0, c1 = x0 + 0.2 * length, x0 + 0.72 * length
    cabin = [
        px(c0, body_top),
        px(c0 + 0.05 * length, cabin_top),
        px(c1 - 0.1 * length, cabin_top),
        px(c1, body_top),
    ]
    d.polygon(cabin, fill=roof)
    inset = 0.025
    glass = [
        px(c0 + 0.035, body_top - 0.01),
        px(c0 + 0.05 * length + 0.025, cabin_top + 0.035),
        px(c1 - 0.1 * length - 0.015, cabin_top + 0.035),
        px(c1 - inset - 0.02, body_top - 0.01),
    ]
    d.polygon(glass, fill=_GLASS)
    pillar = (c0 + c1) / 2 + 0.01
    d.line(
        [px(pillar, cabin_top + 0.03), px(pillar, body_top)],
        fill=roof,
        width=max(1, round(0.025 * W)),
    )
    if lab["two_tone"] > 0.5:  # the contrasting colour runs as a stripe along the body too
        d.rectangle((*px(x0 + 0.02, body_top + 0.02), *px(x1 - 0.02, body_top + 0.05)), fill=roof)
    if lab["sunroof"] > 0.5:
        s0, s1 = c0 + 0.12 * length, c1 - 0.18 * length
        d.rectangle((*px(s0, cabin_top - 0.065), *px(s1, cabin_top + 0.005)), fill=_SUNROOF)
    if lab["spoiler"] > 0.5:
        sy = body_top - 0.09
        d.rectangle((*px(x0 + 0.025, sy), *px(x0 + 0.04, body_top)), fill=_SPOILER)
        d.rectangle((*px(x0 - 0.01, sy - 0.05), *px(x0 + 0.12, sy)), fill=_SPOILER)
    # lamps: front headlight, rear light
    lamp_y0 = body_top + 0.15 * (body_bottom - body_top)
    lamp_y1 = lamp_y0 + 0.3 * (body_bottom - body_top)
    lamp = _LAMP_ON if lab["headlights_on"] > 0.5 else _LAMP_OFF
    d.rectangle((*px(x1 - 0.045, lamp_y0), *px(x1, lamp_y1)), fill=lamp)
    if lab["headlights_on"] > 0.5:  # a glow ring makes the lit lamp visible at 32 px
        d.ellipse(
            (*px(x1 - 0.035, lamp_y0 - 0.05), *px(x1 + 0.055, lamp_y1 + 0.05)),
            outline=mix(_LAMP_ON, sky_low, 0.3),
            width=max(1, round(0.015 * W)),
        )
    d.rectangle((*px(x0, lamp_y0), *px(x0 + 0.025, lamp_y1)), fill=(170, 20, 25))
    # wheels: tyre, hub, and the wheel arch above
    for wx in (x0 + 0.19 * length, x1 - 0.19 * length):
        rx, ry = wheel_r * H / W, wheel_r
        d.ellipse(
            (*px(wx - 1.15 * rx, axle - 1.15 * ry), *px(wx + 1.15 * rx, axle + 1.15 * ry)),
            fill=dark,
        )
        d.ellipse((*px(wx - rx, axle - ry), *px(wx + rx, axle + ry)), fill=_TYRE)
        d.ellipse(
            (*px(wx - 0.5 * rx, axle - 0.5 * ry), *px(wx + 0.5 * rx, axle + 0.5 * ry)), fill=_HUB
        )

    picture = np.asarray(img.resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8)
    frame = np.zeros((resolution, resolution, 3), dtype=np.uint8)
    frame[top : top + h] = picture
    return frame


def render_toy_cars(
    num_images: int, *, seed: int = 0, resolution: int = 32, start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Render cars ``start .. start + num_images - 1`` of ``seed``.

    Returns:
        images uint8 [N, R, R, 3] (black bars outside ``valid_crop(R)``) and labels float32 [N, A].
    """
    return render_many(
        num_images,
        len(ATTRIBUTES),
        resolution,
        start,
        lambda i: sample_labels(seed, i),
        lambda labels, i: render_car(labels, resolution),
    )


class ToyCars(ToyDataset):
    """Rendered toy cars, cached in memory as uint8; items as :class:`lsap.data.toy.ToyFaces`'
    (``image [3, R, R]`` in [-1, 1] with black bars, ``labels [11]``, ``index``, ``path``
    ``"toycars:<seed>:<index>"``)."""

    attribute_names = ATTRIBUTE_NAMES
    prefix = "toycars"

    @staticmethod
    def render(num_images: int, *, seed: int, resolution: int, start: int):
        return render_toy_cars(num_images, seed=seed, resolution=resolution, start=start)

    @staticmethod
    def valid_box(resolution: int) -> tuple[int, int, int, int]:
        return valid_crop(resolution)
