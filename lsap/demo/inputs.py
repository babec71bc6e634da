"""The demo's images: held-out toy faces or cars, the astronaut photo aligned with MTCNN, or a folder.

Every source gives :class:`DemoImages`: images at the generator's resolution in [-1, 1] with a
name (used for file names), where it came from, its domain (``toy``: a procedural face with known
labels; ``photo``: anything else), for toy faces the labels and, for face-aligned photos, where
the aligned image lies in the photo (``lsap.data.paste.PhotoCrop``, for pasting results back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lsap.core.plain import settings_dict
from lsap.data.paste import PhotoCrop
from lsap.nets.crop import ValidRegion

TOY = "toy"
PHOTO = "photo"


@dataclass
class DemoImages:
    """A batch of demo inputs.

    Attributes:
        images: [N, 3, R, R] float32 in [-1, 1].
        names: N unique names (file stems of the outputs).
        sources: N descriptions of the origin (``toy:<seed>:<index>``, a file path, ...).
        domains: N of ``"toy"`` / ``"photo"``.
        labels: [N, A] toy labels (``label_names`` order; NaN rows for photos),
            or None when no image is a toy face.
        skipped: (path, reason) of the files left out: unreadable, or no face found when aligning
            (the report lists them, as ``lsap-invert`` writes ``skipped.csv``).
        crops: N of :class:`PhotoCrop` (face-aligned photos: the alignment) or None; empty = none.
        photos: N photos [H, W, 3] uint8 held in memory because they are no file (the astronaut;
            its crop's ``path`` is ""), else None; empty = none.
    """

    images: Tensor
    names: list[str]
    sources: list[str]
    domains: list[str]
    labels: Tensor | None = None
    label_names: tuple[str, ...] = ()  # the toy domain's attribute names, one per labels column
    skipped: list[tuple[str, str]] = field(default_factory=list)
    crops: list[PhotoCrop | None] = field(default_factory=list)
    photos: list[np.ndarray | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        N = self.images.shape[0]
        self.crops = list(self.crops) or [None] * N
        self.photos = list(self.photos) or [None] * N
        if not len(self.crops) == len(self.photos) == N:
            raise ValueError("crops and photos need one entry per image (or none at all)")
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, R, R], got {tuple(self.images.shape)}")
        if not len(self.names) == len(self.sources) == len(self.domains) == N:
            raise ValueError("names, sources and domains need one entry per image")
        if len(set(self.names)) != N:
            raise ValueError(f"image names must be unique, got {self.names}")
        if self.labels is not None and self.labels.shape[0] != N:
            raise ValueError(f"labels hold {self.labels.shape[0]} rows for {N} images")
        if self.labels is not None and len(self.label_names) != self.labels.shape[1]:
            raise ValueError(f"{self.labels.shape[1]} label columns, {len(self.label_names)} names")

    def __len__(self) -> int:
        return self.images.shape[0]

    def indices(self, domain: str) -> list[int]:
        """Positions of the images of one domain."""
        return [i for i, d in enumerate(self.domains) if d == domain]


def demo_images(
    resolution: int,
    *,
    path: str | Path | None,
    align: bool,
    max_images: int | None,
    toy: Mapping[str, Any],
    astronaut: bool,
    astronaut_align: bool,
    crop: ValidRegion | None = None,
) -> DemoImages:
    """lsap-demo's images (the ``data=demo`` entry; ``resolution`` is the generator's): the
    images of ``path`` (a folder or one image) or, without it, the held-out toy images ``toy``
    (``{domain, seed, start, num_images}``; domain ``faces`` or ``cars``) and the astronaut photo.
    ``crop``: a non-square generator's valid region (``lsap.nets.crop.ValidRegion``, passed by
    lsap-demo), which the photos of ``path`` fill.

    Raises:
        LsapFileError: ``path`` is missing, holds no image, or none that could be read.
        ValueError: no image at all (no path, no toy face, no astronaut).
    """
    if path:
        box = crop.box_at(resolution) if crop is not None else None
        return folder_images(path, resolution, align=align, max_images=max_images, box=box)
    toy = settings_dict(
        toy, ("domain", "seed", "start", "num_images"), what="data.toy", see="conf/data/demo.yaml"
    )
    parts = []
    if int(toy["num_images"]) > 0:
        parts.append(
            toy_images(
                int(toy["num_images"]),
                seed=int(toy["seed"]),
                start=int(toy["start"]),
                resolution=resolution,
                domain=str(toy["domain"]),
            )
        )
    if astronaut:
        parts.append(astronaut_image(resolution, align=astronaut_align))
    return concat(parts)


def toy_images(
    num_images: int, *, seed: int, start: int = 0, resolution: int = 32, domain: str = "faces"
) -> DemoImages:
    """Toy images ``start .. start + num_images - 1`` of ``seed`` of a toy ``domain``
    (``lsap.data.toy`` faces, ``lsap.data.toy_cars`` cars), named ``<prefix>_<seed>_<index>`` as
    ``write_toy_images`` names its files (prefix ``toy`` for faces, ``toycars`` for cars)."""
    from lsap.data.toy import toy_dataset

    dataset = toy_dataset(domain)
    arr, labels = dataset.render(num_images, seed=seed, resolution=resolution, start=start)
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    idx = range(start, start + num_images)
    return DemoImages(
        images=images,
        names=[f"{dataset.prefix}_{seed}_{i:06d}" for i in idx],
        sources=[f"{dataset.prefix}:{seed}:{i}" for i in idx],
        domains=[TOY] * num_images,
        labels=torch.from_numpy(labels),
        label_names=tuple(dataset.attribute_names),
    )


def astronaut_image(resolution: int, *, align: bool = True) -> DemoImages:
    """``skimage.data.astronaut()`` (Eileen Collins, NASA; shipped inside scikit-image), cropped
    FFHQ-style around the face MTCNN finds (``lsap.data.align``), resized to ``resolution``."""
    from PIL import Image
    from skimage import data

    from lsap.data.images import pil_to_tensor, resize_center_crop

    photo = data.astronaut()
    img = Image.fromarray(photo).convert("RGB")
    crop = None
    if align:
        from lsap.data.align import FaceAligner

        img, quad = FaceAligner(resolution).align(img)
        crop = PhotoCrop.of("", (photo.shape[1], photo.shape[0]), quad)  # no file: held in memory
    image = pil_to_tensor(resize_center_crop(img, resolution))
    return DemoImages(
        images=image[None],
        names=["astronaut"],
        sources=["skimage.data.astronaut()" + (" aligned with MTCNN" if align else "")],
        domains=[PHOTO],
        crops=[crop],
        photos=[photo if align else None],
    )


def folder_images(
    path: str | Path,
    resolution: int,
    *,
    align: bool = False,
    max_images: int | None = None,
    box: tuple[int, int, int, int] | None = None,
) -> DemoImages:
    """Images of a folder (recursively, sorted) or one image file, resized and centre-cropped to
    ``resolution`` (``lsap.data.load_image``), optionally face-aligned first; named as
    ``lsap-invert`` names its outputs (path relative to the folder, ``/`` -> ``__``).
    A file that cannot be read, or in which MTCNN finds no face, is left out and listed in
    ``skipped`` with the reason, as ``lsap-invert`` skips it. ``box``: a non-square generator's
    valid region in the frame, which each photo fills (as ``lsap-invert`` reads it).

    Raises:
        LsapFileError: no such path, no image in it, or no image that could be read.
    """
    from lsap.core.errors import LsapFileError
    from lsap.data.images import ImageFileDataset, list_images
    from lsap.io.inversions import image_name

    path = Path(path)
    if not path.exists():
        raise LsapFileError(path, "no such file or folder (data.path)")
    files = list_images(path)
    if not files:
        raise LsapFileError(path, "holds no image (jpg, png, webp, bmp)")
    if max_images is not None:
        files = files[:max_images]
    aligner = None
    if align:
        from lsap.data.align import FaceAligner

        aligner = FaceAligner(resolution)
    items = [item for item in ImageFileDataset(files, resolution, align=aligner, box=box)]
    good = [it for it in items if it.image is not None]
    skipped = [(it.path, str(it.error)) for it in items if it.image is None]
    if not good:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise LsapFileError(path, f"no image could be read{first}")
    return DemoImages(
        images=torch.stack([it.image for it in good]),
        names=[image_name(it.path, path) for it in good],
        sources=[it.path for it in good],
        domains=[PHOTO] * len(good),
        skipped=skipped,
        crops=[it.crop for it in good],
    )


def concat(parts: Sequence[DemoImages]) -> DemoImages:
    """One :class:`DemoImages` of several (labels kept where any part has them; NaN elsewhere)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        raise ValueError("no demo images")
    A = next((p.labels.shape[1] for p in parts if p.labels is not None), None)
    labels = None
    if A is not None:
        labels = torch.cat(
            [
                p.labels if p.labels is not None else torch.full((len(p), A), float("nan"))
                for p in parts
            ]
        )
    return DemoImages(
        images=torch.cat([p.images for p in parts]),
        names=[n for p in parts for n in p.names],
        sources=[s for p in parts for s in p.sources],
        domains=[d for p in parts for d in p.domains],
        labels=labels,
        label_names=next((p.label_names for p in parts if p.labels is not None), ()),
        skipped=[s for p in parts for s in p.skipped],
        crops=[c for p in parts for c in p.crops],
        photos=[a for p in parts for a in p.photos],
    )
