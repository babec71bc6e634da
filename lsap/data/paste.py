"""Paste-back: put a generated (reconstructed or edited) aligned face back into its photo.

An aligned image is the oriented square ``quad`` of a photo (``lsap.data.align``), resampled to
the generator's resolution. :class:`PhotoCrop` keeps that square, the photo's path and size;
:func:`paste_back` maps a generated image through the inverse of the alignment into the photo's
frame and blends it in under a soft mask (:class:`PasteMask`, a feathered ellipse or square inside
the crop), in float, quantising once. Outside the mask the photo's pixels are returned unchanged.

Coordinates: photo pixel ``(x, y)`` has its centre at ``(x, y)`` (the landmarks' and
:func:`lsap.data.align.ffhq_quad`'s convention). A point of the crop is given by normalised
coordinates ``(s, t)`` in [0, 1] x [0, 1] from the crop's left/top edge to its right/bottom edge,
so pixel ``u`` of an R-pixel crop has its centre at ``s = (u + 0.5) / R`` whatever R is; the
photo point is ``quad[0] + s * (quad[3] - quad[0]) + t * (quad[1] - quad[0])``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

MASK_SHAPES = ("ellipse", "square")


@dataclass  # not frozen: Lightning's batch transfer rebuilds dataclasses and refuses frozen ones
class PhotoCrop:
    """Where an aligned image came from: the oriented square ``quad`` of the photo at ``path``.

    Attributes:
        path: the photo's file ("" when it was not a file, e.g. ``skimage.data.astronaut()``).
        size: ``(width, height)`` of the photo in pixels, after EXIF orientation.
        quad: the crop's corners ``((x, y), ...)`` in photo pixels: top-left, bottom-left,
            bottom-right, top-right of the aligned image (``lsap.data.align.ffhq_quad``'s order).
    """

    path: str
    size: tuple[int, int]
    quad: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        quad = np.asarray(self.quad, dtype=np.float64)
        if quad.shape != (4, 2) or not np.isfinite(quad).all():
            raise ValueError(
                f"a photo crop's quad must be 4 finite (x, y) corners, got {quad.shape}"
            )
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"a photo's size must be (width, height) >= 1, got {self.size}")
        if abs(np.linalg.det(self._axes())) < 1e-9:
            raise ValueError("a photo crop's quad is degenerate (zero area)")

    @classmethod
    def of(cls, path: str, size: Sequence[int], quad: np.ndarray | Sequence) -> PhotoCrop:
        """From any numbers (numpy arrays, lists): plain floats and ints inside."""
        q = np.asarray(quad, dtype=np.float64)
        corners = tuple((float(x), float(y)) for x, y in q.reshape(-1, 2))
        return cls(str(path), (int(size[0]), int(size[1])), corners)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (what a code file stores): ``{'path', 'size': [w, h], 'quad': [[x, y] x 4]}``."""
        return {"path": self.path, "size": list(self.size), "quad": [list(c) for c in self.quad]}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> PhotoCrop:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: missing or malformed entries.
        """
        try:
            return cls.of(str(obj["path"]), obj["size"], obj["quad"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed photo crop ({type(e).__name__}: {e})") from None

    def _axes(self) -> np.ndarray:
        """[2, 2]: columns are the photo displacement per unit s and per unit t."""
        q = np.asarray(self.quad, dtype=np.float64)
        return np.stack([q[3] - q[0], q[1] - q[0]], axis=1)

    def crop_to_photo(self, st: np.ndarray) -> np.ndarray:
        """Normalised crop coordinates [N, 2] (s, t) -> photo pixel coordinates [N, 2] (x, y)."""
        st = np.asarray(st, dtype=np.float64).reshape(-1, 2)
        return np.asarray(self.quad[0]) + st @ self._axes().T

    def photo_to_crop(self, xy: np.ndarray) -> np.ndarray:
        """Photo pixel coordinates [N, 2] (x, y) -> normalised crop coordinates [N, 2] (s, t)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return (xy - np.asarray(self.quad[0])) @ np.linalg.inv(self._axes()).T

    def bounds(self) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)``: the photo pixels the crop touches (right/bottom
        exclusive), clipped to the photo; empty when the crop lies outside it."""
        q = np.asarray(self.quad, dtype=np.float64)
        w, h = self.size
        left, top = (max(0, int(np.floor(v)) - 1) for v in q.min(0))
        right, bottom = (int(np.ceil(v)) + 2 for v in q.max(0))
        return left, top, max(left, min(w, right)), max(top, min(h, bottom))


@dataclass(frozen=True)
class PasteMask:
    """The soft mask under which a generated face replaces the photo, in crop coordinates.

    Attributes:
        shape: ``"ellipse"`` (the circle inscribed in the crop) or ``"square"`` (the crop).
        margin: the mask is 0 from this far inside the crop's border outwards (fraction of the
            crop's side, in [0, 0.5)); 0 where the crop ends.
        feather: width of the ramp from 0 to 1 (fraction of the side, > 0), smoothstep-shaped.
    """

    shape: str  # the values of conf/paste_back/default.yaml are the defaults (not repeated here)
    margin: float
    feather: float

    def __post_init__(self) -> None:
        if self.shape not in MASK_SHAPES:
            raise ValueError(f"paste_back.shape must be one of {MASK_SHAPES}, got {self.shape!r}")
        if not 0.0 <= self.margin < 0.5:
            raise ValueError(f"paste_back.margin must be in [0, 0.5), got {self.margin}")
        if not 0.0 < self.feather <= 0.5 - self.margin:
            raise ValueError(f"paste_back.feather must be in (0, 0.5 - margin], got {self.feather}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> PasteMask | None:
        """The ``paste_back`` group typed once: the mask, or None when ``enabled`` is false (or
        the group is absent)."""
        if not cfg or not cfg.get("enabled", False):
            return None
        return cls(str(cfg["shape"]), float(cfg["margin"]), float(cfg["feather"]))

    def __call__(self, st: Tensor) -> Tensor:
        """Mask values [...] in [0, 1] at crop coordinates ``st`` [..., 2]; exactly 0 outside
        the shape (and everywhere outside the crop)."""
        s, t = st[..., 0], st[..., 1]
        if self.shape == "ellipse":
            inside = (0.5 - self.margin) - torch.hypot(s - 0.5, t - 0.5)
        else:
            inside = torch.minimum(torch.minimum(s, 1 - s), torch.minimum(t, 1 - t)) - self.margin
        ramp = (inside / self.feather).clamp(0.0, 1.0)
        return ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep: 0 and 1 stay exact


def paste_mask(crop: PhotoCrop, mask: PasteMask) -> Tensor:
    """The mask in the photo's frame: [H, W] float32 in [0, 1] (0 outside the crop's shape)."""
    w, h = crop.size
    out = torch.zeros(h, w)
    left, top, right, bottom = crop.bounds()
    if right > left and bottom > top:
        out[top:bottom, left:right] = mask(_crop_coords(crop, left, top, right, bottom))
    return out


def _crop_coords(crop: PhotoCrop, left: int, top: int, right: int, bottom: int) -> Tensor:
    """[h, w, 2] float64 crop coordinates (s, t) of the photo pixels of a box."""
    ys, xs = torch.meshgrid(
        torch.arange(top, bottom, dtype=torch.float64),
        torch.arange(left, right, dtype=torch.float64),
        indexing="ij",
    )
    inv = torch.from_numpy(np.linalg.inv(crop._axes()))  # [2, 2]
    xy = torch.stack([xs, ys], -1) - torch.tensor(crop.quad[0], dtype=torch.float64)
    return xy @ inv.T


def paste_back(
    photo: np.ndarray | Tensor,
    generated: Tensor,
    crop: PhotoCrop,
    mask: PasteMask,
) -> np.ndarray:
    """Blend an aligned generated image back into its photo.

    The generated image is sampled (bilinear; first shrunk with an antialiasing filter to the
    crop's side in photo pixels when it is larger) at every photo pixel through the inverse of the
    alignment and composited ``photo * (1 - m) + generated * m`` in float with the soft mask ``m``
    (:func:`paste_mask`), then rounded to uint8 once. Where ``m`` is 0 the photo's pixels come back
    exactly.

    Args:
        photo: [H, W, 3] uint8 (numpy or torch): the photo the crop was taken from, EXIF-oriented
            as when aligned (``lsap.data.images.load_photo``); (W, H) must equal ``crop.size``.
        generated: [3, R, R] float in [-1, 1] (any R: the crop's coordinates are normalised),
            on any device.
        crop: the alignment of this image (:class:`PhotoCrop`).
        mask: the soft mask's shape (:class:`PasteMask`).

    Returns:
        [H, W, 3] uint8 numpy array: the photo with the generated face blended in.

    Raises:
        ValueError: wrong shapes or dtype, or a photo whose size is not the crop's.
    """
    arr = photo.cpu().numpy() if isinstance(photo, Tensor) else np.asarray(photo)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"photo must be [H, W, 3] uint8, got {arr.shape} {arr.dtype}")
    if (arr.shape[1], arr.shape[0]) != tuple(crop.size):
        raise ValueError(
            f"photo is {arr.shape[1]}x{arr.shape[0]}, the alignment was made on "
            f"{crop.size[0]}x{crop.size[1]}"
        )
    if generated.ndim != 3 or generated.shape[0] != 3:
        raise ValueError(f"generated must be [3, R, R], got {tuple(generated.shape)}")
    out = arr.copy()
    left, top, right, bottom = crop.bounds()
    if right <= left or bottom <= top:
        return out  # the crop lies outside the photo
    st = _crop_coords(crop, left, top, right, bottom)  # [h, w, 2] float64
    m = mask(st).float()[..., None]  # [h, w, 1]
    gen = (generated.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5  # [3, R, R] in [0, 255]
    side = math.ceil(max(np.hypot(*np.subtract(crop.quad[3], crop.quad[0])), 1.0))
    if gen.shape[-1] > side:  # a large image into a small face: low-pass first, or it aliases
        gen = F.interpolate(gen[None], size=(side, side), mode="bilinear", antialias=True)[0]
    grid = (st * 2.0 - 1.0).float()[None]  # [1, h, w, 2]; -1/+1 = the crop's outer edges
    warped = F.grid_sample(
        gen[None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    warped = warped[0].permute(1, 2, 0)  # [h, w, 3]
    box = torch.from_numpy(out[top:bottom, left:right]).float()  # out: a writable copy
    blended = box * (1.0 - m) + warped * m  # m == 0: exactly box
    out[top:bottom, left:right] = blended.round().clamp(0, 255).to(torch.uint8).numpy()
    return out
