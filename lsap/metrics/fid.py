"""FID between a reference set (the originals) and several image sets, streamed and DDP-synced.

Each set is a torchmetrics ``FrechetInceptionDistance`` fed with features computed once per batch
by the configured extractor (see ``lsap.metrics.features``), so the originals' features are
extracted once however many sets (reconstructions, every edit and factor) are compared with them.
States are feature sums and outer-product sums (memory O(D^2) per set, independent of the number
of images) reduced with ``sum`` over DDP ranks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn


class _Precomputed(nn.Module):
    """The identity, sized: lets torchmetrics' FID take features instead of images."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


class FIDSets(nn.Module):
    """FID of named sets against one reference set.

    Args:
        names: the sets compared with the reference (e.g. ``"reconstruction"``,
            ``"interfacegan/age@+3"``).
        num_features: feature size D of the extractor.
    """

    def __init__(self, names: Iterable[str], num_features: int) -> None:
        super().__init__()
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.names = list(names)
        self.fids = nn.ModuleList(
            FrechetInceptionDistance(feature=_Precomputed(num_features), reset_real_features=True)
            for _ in self.names
        )
        self._index = {n: i for i, n in enumerate(self.names)}

    def update_reference(self, features: Tensor) -> None:
        """features [N, D] of reference images (added to every set's reference statistics)."""
        for fid in self.fids:
            fid.update(features, real=True)

    def update(self, name: str, features: Tensor) -> None:
        """features [N, D] of images of set ``name``."""
        self.fids[self._index[name]].update(features, real=False)

    def compute(self) -> dict[str, float]:
        """FID of each set (NaN where a set or the reference holds fewer than 2 images)."""
        out = {}
        for name, fid in zip(self.names, self.fids, strict=True):
            n_real = int(fid.real_features_num_samples)
            n_fake = int(fid.fake_features_num_samples)
            if n_real == 0 and n_fake == 0:
                fid.orig_dtype = torch.float32  # set by update(); a rank with no data never ran it
            try:
                out[name] = float(fid.compute())
            except RuntimeError:  # fewer than 2 images (torchmetrics' error)
                out[name] = math.nan
        return out

    def reset(self) -> None:
        for fid in self.fids:
            fid.reset()
