"""Read image files into generator-sized tensors, and datasets that survive bad files.

Preprocessing (documented once, used by every job): EXIF orientation is applied; grayscale,
palette, RGBA/LA (composited over white) and 16-bit images become 8-bit RGB; the image is resized so
its shorter side equals ``size`` (Lanczos) and center-cropped to ``size x size``; values are mapped
from [0, 255] to [-1, 1].

For a non-square generator (``generator.crop``; ``box`` = its valid region in the ``size`` px frame,
``lsap.nets.crop.ValidRegion.box_at``) the photo is fitted to the box instead: resized (Lanczos)
to cover the box and center-cropped to it (a 1024 x 768 photo becomes 512 x 384 for LSUN cars'
512 px generator), then placed into the square ``size x size`` frame at the box, black
(``FRAME_FILL``) outside.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from lsap.core.atomic import atomic_write
from lsap.core.errors import LsapFileError
from lsap.data.paste import PhotoCrop

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
FRAME_FILL = -1.0  # a frame outside the valid region: black (= lsap.nets.crop.FILL)

Box = tuple[int, int, int, int]  # (top, left, height, width) of the valid region in a frame


def list_images(path: str | Path) -> list[Path]:
    """Image files under ``path`` (a folder, searched recursively, or one file), sorted.

    Raises:
        LsapFileError: the path does not exist, or a folder holds no image files.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise LsapFileError(path, "no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LsapFileError(path, f"folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


# White of an integer grayscale image, by the file's sample format (PIL raw mode).
_INTEGER_WHITE = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


def integer_white(img: Image.Image) -> float:
    """The value of white in a PIL ``I;16*``/``I`` image, from its bit depth, never its pixels.

    ``I;16*`` and a PNG in mode ``I`` (older Pillow's 16-bit grayscale) are 16-bit; other ``I``
    files are read by their raw sample format before loading (``I;8``, ``I;16*``, ``I;32*``).

    Raises:
        ValueError: an ``I`` image whose sample format is unknown.
    """
    if img.mode in _INTEGER_WHITE:
        return _INTEGER_WHITE[img.mode]
    raw = next((t.args for t in getattr(img, "tile", ()) or ()), None)
    raw = raw[0] if isinstance(raw, tuple) else raw
    if isinstance(raw, str) and raw.startswith("I;"):
        bits = raw[2:].rstrip("BLNSF")
        if bits.isdigit():
            signed = "S" in raw[2:]
            return float(2 ** (int(bits) - signed) - 1)
    if img.format == "PNG":  # PNG samples are at most 16 bit
        return 65535.0
    raise ValueError(f"a 32-bit integer image of unknown bit depth (raw mode {raw!r})")


def to_rgb8(img: Image.Image, white: float | None = None) -> Image.Image:
    """Any PIL mode -> 8-bit RGB (16-bit scaled down, alpha composited over white).

    Args:
        white: the value of white of an integer grayscale (``I;16*``/``I``) image; None reads it
            from the image's bit depth (:func:`integer_white`). Pass it when ``img`` is a copy that
            no longer knows its file's sample format.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        scale = integer_white(img) if white is None else float(white)
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img) * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Shorter side -> ``size`` (Lanczos), then the central ``size x size`` square."""
    return resize_cover(img, size, size)


def resize_cover(img: Image.Image, width: int, height: int) -> Image.Image:
    """Resize (Lanczos) so the image covers ``width x height``, then take its central box of that
    size (the photo's aspect is kept; what sticks out is cut off evenly)."""
    w, h = img.size
    scale = max(width / w, height / h)
    nw, nh = max(width, round(w * scale)), max(height, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.LANCZOS)
    left, top = (nw - width) // 2, (nh - height) // 2
    return img.crop((left, top, left + width, top + height))


def fit_to_frame(img: Image.Image, size: int, box: Box | None = None) -> Tensor:
    """An RGB photo -> a generator frame [3, size, size] in [-1, 1].

    ``box`` None: shorter side -> size, central square. With ``box`` (the generator's valid
    region in the ``size`` px frame): the photo fitted to the box (:func:`resize_cover`) and
    placed there, ``FRAME_FILL`` (black) outside.
    """
    if box is None:
        return pil_to_tensor(resize_center_crop(img, size))
    top, left, h, w = (int(v) for v in box)
    if top < 0 or left < 0 or h < 1 or w < 1 or top + h > size or left + w > size:
        raise ValueError(f"box {tuple(box)} does not fit a {size} px frame")
    frame = torch.full((3, size, size), FRAME_FILL)
    frame[:, top : top + h, left : left + w] = pil_to_tensor(resize_cover(img, w, h))
    return frame


def pil_to_tensor(img: Image.Image) -> Tensor:
    """8-bit RGB PIL image -> [3, H, W] float32 in [-1, 1]."""
    arr = np.asarray(img, dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0


def tensor_to_uint8(images: Tensor) -> Tensor:
    """[N, 3, H, W] (or [3, H, W]) in [-1, 1] -> uint8 in [0, 255] (clamped, rounded)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def tensor_to_pil(image: Tensor) -> Image.Image:
    """[3, H, W] in [-1, 1] -> an 8-bit RGB PIL image (clamped, rounded; ``plt.imshow`` shows it)."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image [3, H, W], got {tuple(image.shape)}")
    return Image.fromarray(tensor_to_uint8(image).permute(1, 2, 0).cpu().numpy(), "RGB")


def save_image(image: Tensor, path: str | Path) -> None:
    """Write [3, H, W] in [-1, 1] as PNG (no atomicity; see ``lsap.core.atomic`` for that)."""
    tensor_to_pil(image).save(path)


def load_photo(path: str | Path) -> Image.Image:
    """Read an image file as 8-bit RGB, EXIF-oriented, at its own size (the frame alignment and
    paste-back work in).

    Raises:
        LsapFileError naming the file when it is not a readable image.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            white = integer_white(im) if im.mode.startswith("I") else None  # before the copy
            im = ImageOps.exif_transpose(im)
            im.load()
            return to_rgb8(im, white)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise LsapFileError(path, f"not a readable image ({type(e).__name__}: {e})") from None


def load_crop_photo(crop: PhotoCrop) -> np.ndarray:
    """The photo an aligned image was cut from (``crop.path``), as [H, W, 3] uint8.

    Raises:
        LsapFileError naming the photo: unreadable, gone (or not a file: ``crop.path`` is ""),
            or no longer of the size the alignment was made on.
    """
    if not crop.path:
        raise LsapFileError("(no file)", "the aligned image's photo was not a file")
    arr = np.asarray(load_photo(crop.path))
    if (arr.shape[1], arr.shape[0]) != tuple(crop.size):
        raise LsapFileError(
            crop.path,
            f"is {arr.shape[1]}x{arr.shape[0]}, the alignment was made on "
            f"{crop.size[0]}x{crop.size[1]}: the photo changed",
        )
    return arr


def save_photo(arr: np.ndarray, path: str | Path) -> Path:
    """Write [H, W, 3] uint8 as PNG, atomically (a pasted-back photo; see ``lsap.data.paste``)."""
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected [H, W, 3] uint8, got {arr.shape} {arr.dtype}")
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG")
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def load_image(
    path: str | Path,
    size: int,
    *,
    align: Callable[[Image.Image], Image.Image] | None = None,
    box: Box | None = None,
) -> Tensor:
    """Read one image as [3, size, size] in [-1, 1] (see the module docstring for the steps).

    Args:
        align: optional face alignment applied to the RGB image before resizing.
        box: the generator's valid region in the ``size`` px frame: the photo fills it
            (:func:`fit_to_frame`); None = the central square.

    Raises:
        LsapFileError naming the file when it is not a readable image.
    """
    return load_image_and_crop(path, size, align=align, box=box)[0]


def load_image_and_crop(
    path: str | Path,
    size: int,
    *,
    align: Callable[[Image.Image], Image.Image] | None = None,
    box: Box | None = None,
) -> tuple[Tensor, PhotoCrop | None]:
    """:func:`load_image`, and where the aligned image lies in the photo.

    Args:
        align: optional face alignment; one with an ``align(img) -> (crop, quad [4, 2])`` method
            (``lsap.data.align.FaceAligner``) also gives the crop's place in the photo.
        box: a non-square generator's valid region in the frame (:func:`fit_to_frame`).

    Returns:
        ``(image [3, size, size] in [-1, 1], crop)``: ``crop`` is the :class:`PhotoCrop` (the
        file's absolute path, the photo's size, the quad) when aligned that way into a square
        frame (``box`` None), else None.

    Raises:
        LsapFileError naming the file when it is not a readable image.
    """
    img = load_photo(path)
    crop = None
    if align is not None:
        with_quad = getattr(align, "align", None)
        if callable(with_quad):
            aligned, quad = with_quad(img)
            crop = PhotoCrop.of(str(Path(path).resolve()), img.size, quad)
            img = aligned
        else:
            img = align(img)
    if box is not None:  # a non-square frame re-crops the aligned square: no place in the photo
        crop = None
    # an aligned square is only resized here: the crop's normalised coordinates stay valid
    return fit_to_frame(img, size, box), crop


@dataclass
class ImageItem:
    """One dataset entry: the image, or why it could not be read."""

    index: int
    path: str
    image: Tensor | None
    error: str | None = None
    crop: PhotoCrop | None = None  # where an aligned image lies in its photo (paste-back)


class ImageFileDataset(Dataset):
    """Images from a list of files; unreadable files yield an item with ``error`` set, not raise.

    Args:
        files: image paths (e.g. from :func:`list_images`).
        size: output resolution (the generator's).
        align: optional face alignment (see ``lsap.data.align``).
        transform: optional tensor transform applied after loading (augmentation).
        box: the generator's valid region in the ``size`` px frame (``G.crop.box_at(size)``):
            each photo fills it (:func:`load_image`); None = the central square.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        size: int,
        *,
        align: Callable[[Image.Image], Image.Image] | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
        box: Box | None = None,
    ) -> None:
        self.files = [Path(f) for f in files]
        self.size, self.align, self.transform, self.box = size, align, transform, box

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> ImageItem:
        path = self.files[index]
        try:
            image, crop = load_image_and_crop(path, self.size, align=self.align, box=self.box)
        except LsapFileError as e:
            return ImageItem(index, str(path), None, e.problem)
        except Exception as e:  # an alignment failure must not end the run either
            return ImageItem(index, str(path), None, f"{type(e).__name__}: {e}")
        if self.transform is not None:
            image = self.transform(image)
        return ImageItem(index, str(path), image, crop=crop)


def collate_images(items: Sequence[ImageItem]) -> dict[str, Any]:
    """Batch the readable items; keep the unreadable ones as ``skipped`` (path, reason) pairs.

    Returns:
        ``{"images": [B, 3, H, W] or None, "index": [B] long, "path": list[str],
        "photo_crop": list[PhotoCrop | None] (aligned images: their place in the photo),
        "skipped": list[(index, path, reason)]}``
    """
    good = [it for it in items if it.image is not None]
    return {
        "images": torch.stack([it.image for it in good]) if good else None,
        "index": torch.tensor([it.index for it in good], dtype=torch.long),
        "path": [it.path for it in good],
        "photo_crop": [it.crop for it in good],
        "skipped": [(it.index, it.path, it.error) for it in items if it.image is None],
    }
