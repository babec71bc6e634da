"""The valid region of a non-square generator: the box of its square output that holds the image.

A generator is always square (``R x R``); a domain such as LSUN cars (512 x 384 photos in a
512 px generator) uses only a box of it, ``generator.crop: [top, left, height, width]`` in pixels
at the generator's resolution (``[64, 0, 384, 512]`` for cars; null = the full square). Images
travel through lsap as square *frames* (targets read into the generator's frame, reconstructions
straight from the generator); what is compared, scored, shown and written is the valid region,
cut out by :func:`crop_valid`. Frames of another size than R (an encoder's 256 px input, a
downsampled grid) use the box scaled by ``size / R`` (:meth:`ValidRegion.box_at`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor

CONFIG_KEY = "generator.crop"
FILL = -1.0  # what a frame holds outside the valid region (black, as LSUN cars' padded photos)


@dataclass(frozen=True)
class ValidRegion:
    """The box ``[top, left, height, width]`` of a ``resolution x resolution`` generator frame.

    Build it with :meth:`from_config`, which checks the box and names the config key on error.
    """

    top: int
    left: int
    height: int
    width: int
    resolution: int  # side of the generator's square frame the box is given at

    @classmethod
    def from_config(
        cls, value: Any, resolution: int | None, *, key: str = CONFIG_KEY
    ) -> ValidRegion | None:
        """The valid region of a ``generator.crop`` value; None for null (the full square).

        Args:
            value: null or ``[top, left, height, width]``, non-negative integer pixels.
            resolution: the generator's side in pixels; None = not known yet (only the shape of
                the value is checked: call again once the generator is loaded).
            key: the setting's name in error messages.

        Raises:
            ValueError: one line naming ``key``: not four integers, an empty box, or a box that
                leaves the ``resolution`` px frame.
        """
        if value is None:
            return None
        items = None if isinstance(value, str | bytes | dict) else _as_list(value)
        if items is None or len(items) != 4 or not all(_is_int(v) for v in items):
            raise ValueError(
                f"{key} must be null or four integer pixels [top, left, height, width], "
                f"got {value!r}"
            )
        top, left, height, width = (int(v) for v in items)
        if top < 0 or left < 0 or height < 1 or width < 1:
            raise ValueError(f"{key}={items}: top and left must be >= 0, height and width >= 1")
        if resolution is None:
            return None
        r = int(resolution)
        if top + height > r or left + width > r:
            raise ValueError(
                f"{key}={items} leaves the generator's {r} x {r} px frame "
                f"(top + height = {top + height}, left + width = {left + width}; each must be "
                f"<= {r})"
            )
        return cls(top, left, height, width, r)

    @property
    def box(self) -> list[int]:
        """``[top, left, height, width]`` at the generator's resolution (the config value)."""
        return [self.top, self.left, self.height, self.width]

    @property
    def full(self) -> bool:
        """True when the box is the whole frame (cropping changes nothing)."""
        return self.box == [0, 0, self.resolution, self.resolution]

    def box_at(self, size: int) -> tuple[int, int, int, int]:
        """The box ``(top, left, height, width)`` in a square frame of side ``size``.

        Edges are scaled by ``size / resolution`` and rounded (exact when the scale divides them:
        LSUN cars' ``[64, 0, 384, 512]`` at 256 px is ``(32, 0, 192, 256)``, e4e's
        ``[:, :, 32:224, :]``); the box keeps at least one pixel each way.
        """
        if size == self.resolution:
            return self.top, self.left, self.height, self.width
        s = size / self.resolution
        top, left = round(self.top * s), round(self.left * s)
        bottom = max(top + 1, min(size, round((self.top + self.height) * s)))
        right = max(left + 1, min(size, round((self.left + self.width) * s)))
        top, left = min(top, size - 1), min(left, size - 1)
        return top, left, bottom - top, right - left

    def size_at(self, size: int) -> tuple[int, int]:
        """``(height, width)`` of the valid region in a square frame of side ``size``."""
        _, _, h, w = self.box_at(size)
        return h, w

    def crop(self, images: Tensor) -> Tensor:
        """Frames [..., S, S] -> their valid regions [..., h, w] (a view; S may differ from R)."""
        S = _square_side(images)
        top, left, h, w = self.box_at(S)
        return images[..., top : top + h, left : left + w]

    def place(self, valid: Tensor, size: int, fill: float = FILL) -> Tensor:
        """Valid regions [..., h, w] (h, w = :meth:`size_at`) -> frames [..., size, size] with
        ``fill`` outside the box."""
        top, left, h, w = self.box_at(size)
        if tuple(valid.shape[-2:]) != (h, w):
            raise ValueError(
                f"valid regions must be [..., {h}, {w}] for a {size} px frame, got "
                f"{tuple(valid.shape)}"
            )
        out = valid.new_full((*valid.shape[:-2], size, size), fill)
        out[..., top : top + h, left : left + w] = valid
        return out


def crop_valid(
    images: Tensor, crop: ValidRegion | Sequence[int] | None, resolution: int | None = None
) -> Tensor:
    """The valid region of square frames: [B, C, S, S] -> [B, C, h, w]; ``crop`` None: unchanged.

    Args:
        images: frames [B, C, S, S] (any S: the box is scaled by S / resolution).
        crop: a :class:`ValidRegion`, a ``[top, left, height, width]`` box at ``resolution``, or
            None (the full frame).
        resolution: the generator's resolution a plain box is given at (a ValidRegion knows it).
    """
    if crop is None:
        return images
    if not isinstance(crop, ValidRegion):
        if resolution is None:
            raise ValueError("crop_valid: a plain [top, left, height, width] box needs resolution")
        crop = ValidRegion.from_config(crop, resolution)
    return crop.crop(images)


def resize_valid(images: Tensor, size: tuple[int, int]) -> Tensor:
    """[B, C, h, w] -> [B, C, *size]: area pooling down (pSp's face pool), bilinear up."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if images.shape[-2] >= size[0] and images.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(images, size)
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def fit_size(height: int, width: int, longest: int) -> tuple[int, int]:
    """``(h, w)`` of a ``height x width`` box scaled so its longer side is ``longest`` (>= 1 px)."""
    s = longest / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def _square_side(images: Tensor) -> int:
    if images.ndim < 2 or images.shape[-1] != images.shape[-2]:
        raise ValueError(
            f"expected square frames [..., S, S] to crop the valid region of, got "
            f"{tuple(images.shape)}"
        )
    return int(images.shape[-1])


def _as_list(value: Any) -> list | None:
    try:
        return list(value)
    except TypeError:
        return None


def _is_int(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and v.is_integer()
