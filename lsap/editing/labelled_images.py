"""Labelled images: the W+ codes of a folder of images whose attributes ``labels.csv`` gives.

A row of ``labels.csv`` (``lsap.data.labels``) names an image by its lsap ``<name>``; its code is
either read from an ``lsap-invert`` result (``codes/<name>.pt``, :class:`lsap.io.inversions.CodeSet`)
or made on the fly by a code source (an image encoder) from the image itself. Both give
w_plus [N, num_ws, w_dim] in the rows' order for :mod:`lsap.editing.fitting`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from lsap.core.errors import LsapFileError
from lsap.data.images import list_images, load_image
from lsap.data.labels import LabelTable
from lsap.io.inversions import CodeSet, image_name

Encode = Callable[[Sequence[str], Tensor], Tensor]  # (names, images [B,3,R,R] in [-1,1]) -> w_plus


def _listing(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def image_files(table: LabelTable, folder: str | Path) -> list[Path]:
    """The image file of every row of ``table`` (found by ``<name>`` under ``folder``).

    Raises:
        LsapFileError naming the labels file: rows whose image is not in the folder.
        LsapFileError naming the folder: no such folder, or no images in it.
    """
    folder = Path(folder)
    found = {image_name(f, folder): f for f in list_images(folder)}
    missing = [n for n in table.names if n not in found]
    if missing:
        raise LsapFileError(
            table.path,
            f"{len(missing)} of {len(table.names)} names have no image in {folder}: "
            f"{_listing(missing)}",
        )
    return [found[n] for n in table.names]


def codes_of_records(table: LabelTable, codes: CodeSet) -> Tensor:
    """w_plus [N, num_ws, w_dim] of every row, read from an inversion's code records by name.

    Raises:
        LsapFileError naming the codes folder: rows without a code file.
    """
    index = {n: i for i, n in enumerate(codes.names)}
    missing = [n for n in table.names if n not in index]
    if missing:
        raise LsapFileError(
            codes.path,
            f"{len(missing)} of {len(table.names)} images of {table.path} have no code here: "
            f"{_listing(missing)}",
        )
    return torch.cat([codes[index[n]].w_plus[:1].float() for n in table.names])


@torch.no_grad()
def encode_files(
    files: Sequence[Path],
    names: Sequence[str],
    encode: Encode,
    *,
    resolution: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    box: tuple[int, int, int, int] | None = None,
) -> Tensor:
    """w_plus [N, num_ws, w_dim] (CPU) of image files, read into ``resolution`` px frames
    (``lsap.data.images.load_image``; ``box``: a non-square generator's valid region in that
    frame, ``G.crop.box_at(resolution)``) and coded by ``encode`` in batches.

    Raises:
        LsapFileError naming an unreadable image.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = []
    for start in range(0, len(files), batch_size):
        batch = files[start : start + batch_size]
        images = torch.stack([load_image(f, resolution, box=box) for f in batch]).to(device)
        out.append(encode(names[start : start + batch_size], images).float().cpu())
    return torch.cat(out)
