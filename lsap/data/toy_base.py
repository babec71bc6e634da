"""What the procedural toy domains share (``lsap.data.toy`` faces, ``lsap.data.toy_cars`` cars):
the label record, colour ramps and the in-memory dataset of rendered images."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass(frozen=True)
class Attribute:
    name: str
    kind: str  # "binary" (0/1) or "scalar" (in [0, 1])
    doc: str


def draw_labels(
    attributes: Sequence[Attribute], probability: Mapping[str, float], seed: int, index: int
) -> np.ndarray:
    """The labels of image ``index`` of ``seed``: float32 [A] in ``attributes`` order; one uniform
    per attribute, thresholded at ``probability[name]`` for the binary ones."""
    rng = np.random.default_rng([seed, index])
    lab = {a.name: float(rng.random()) for a in attributes}
    for name, p in probability.items():
        lab[name] = float(lab[name] < p)
    return np.array([lab[a.name] for a in attributes], dtype=np.float32)


def render_many(
    num_images: int,
    num_attributes: int,
    resolution: int,
    start: int,
    labelled: Callable[[int], np.ndarray],
    draw: Callable[[np.ndarray, int], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``start .. start + num_images - 1`` of a domain: ``labelled(i)`` gives image i's
    labels [A], ``draw(labels, i)`` its uint8 [R, R, 3] picture.

    Returns:
        images uint8 [N, R, R, 3] and labels float32 [N, A].
    """
    if num_images < 0 or resolution < 8:
        raise ValueError(
            f"need num_images >= 0 and resolution >= 8, got {num_images}, {resolution}"
        )
    images = np.empty((num_images, resolution, resolution, 3), dtype=np.uint8)
    labels = np.empty((num_images, num_attributes), dtype=np.float32)
    for k in range(num_images):
        labels[k] = labelled(start + k)
        images[k] = draw(labels[k], start + k)
    return images, labels


def palette(colors: np.ndarray, t: float) -> tuple[int, int, int]:
    """Piecewise-linear colour ramp through ``colors`` at t in [0, 1]."""
    x = t * (len(colors) - 1)
    i = min(int(x), len(colors) - 2)
    c = colors[i] + (x - i) * (colors[i + 1] - colors[i])
    return tuple(round(float(v)) for v in c)


def mix(a, b, t: float) -> tuple[int, int, int]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return tuple(round(float(v)) for v in a + t * (b - a))


class ToyDataset(Dataset):
    """Rendered toy images of one procedural domain, cached in memory as uint8 (10,000 at 32 px
    = 30 MB). Subclasses set ``attribute_names``, ``prefix`` and ``render`` (``render_toy_faces``'
    signature); :func:`toy_dataset` picks one by domain name.

    Args:
        num_images: dataset size.
        seed: which images (image i of a seed is always the same).
        resolution: output size (32 default, 64 supported).
        start: index of the first image (held-out sets: another seed or a disjoint range).

    Items are ``{"image": [3, R, R] float32 in [-1, 1], "labels": [A] float32, "index": int,
    "path": "<prefix>:<seed>:<index>"}``; ``labels`` follows ``attribute_names`` (binary 0/1,
    scalar in [0, 1]). :func:`collate_toy` batches them in ``lsap.data.collate_images``' layout.
    """

    attribute_names: tuple[str, ...] = ()
    prefix = "toy"

    @staticmethod
    def render(num_images: int, *, seed: int, resolution: int, start: int):
        raise NotImplementedError

    @staticmethod
    def valid_box(resolution: int) -> tuple[int, int, int, int] | None:
        """``[top, left, height, width]`` of the picture in the frame; None = the whole frame."""
        return None

    def __init__(
        self, num_images: int, *, seed: int = 0, resolution: int = 32, start: int = 0
    ) -> None:
        images, labels = self.render(num_images, seed=seed, resolution=resolution, start=start)
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # [N, 3, R, R] u8
        self.labels = torch.from_numpy(labels)  # [N, A]
        self.seed, self.resolution, self.start = seed, resolution, start

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict:
        i = self.start + index
        return {
            "image": self.images[index].float() / 127.5 - 1.0,
            "labels": self.labels[index],
            "index": i,
            "path": f"{self.prefix}:{self.seed}:{i}",
        }

    def label_dict(self, index: int) -> dict[str, float]:
        """Labels of item ``index`` by attribute name."""
        return dict(zip(self.attribute_names, self.labels[index].tolist(), strict=True))
