"""Image grids for qualitative results (rows x columns of equally sized images)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from lsap.core.atomic import atomic_write
from lsap.data.images import tensor_to_uint8


def image_grid(
    rows: Sequence[Sequence[Tensor | None]], *, pad: int = 2, size: int | None = None
) -> Tensor:
    """Tile images into one.

    Args:
        rows: rows of images [3, H, W] in [-1, 1]; ``None`` leaves a cell white. Rows may have
            different lengths (missing cells are white).
        pad: white border in pixels between cells.
        size: resize every cell so its longer side is ``size`` (area/bilinear; the first image's
            aspect is kept: the valid regions of a non-square generator stay non-square);
            default the first image's size.

    Returns:
        [3, H', W'] in [-1, 1].
    """
    cells = [im for row in rows for im in row if im is not None]
    if not cells:
        raise ValueError("image_grid needs at least one image")
    h, w = cells[0].shape[-2:]
    if size is not None:  # longer side -> size, aspect kept
        h, w = max(1, round(h * size / max(h, w))), max(1, round(w * size / max(h, w)))
    ncols = max(len(r) for r in rows)
    out = torch.ones(3, len(rows) * (h + pad) + pad, ncols * (w + pad) + pad)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            if im is None:
                continue
            im = im.detach().float().cpu()
            if im.shape[-2:] != (h, w):
                mode = "area" if im.shape[-1] > w else "bilinear"
                im = F.interpolate(im[None], size=(h, w), mode=mode)[0]
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[:, y : y + h, x : x + w] = im
    return out


def save_grid(grid: Tensor, path: str | Path) -> Path:
    """Write a grid [3, H, W] in [-1, 1] as PNG, atomically."""
    arr = tensor_to_uint8(grid).permute(1, 2, 0).numpy()
    return atomic_write(path, lambda f: Image.fromarray(arr, "RGB").save(f, format="PNG"))
