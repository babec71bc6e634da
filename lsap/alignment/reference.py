"""How aligned the generator's own samples are: their SNCD, per layer, cached beside the anchors.

The samples' SNCD is the reference line of every table of inverted codes (LSAP.md: "alignment is
a target, not a minimum") and the per-layer target of the hinge variant of the alignment loss
(``lsap.alignment.sncd.sncd_hinge_loss``). Samples are ``w_k = f(z_k)`` with the same w on every
layer, as for the anchors, but drawn from their own seed (default 1), so the anchors' samples do
not score themselves.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lsap.alignment.sncd import sncd
from lsap.core.atomic import atomic_torch_save
from lsap.core.cache import read_cache
from lsap.core.hashing import tensors_sha256
from lsap.nets.sampling import iter_w
from lsap.nets.stylegan2 import Generator

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 10_000
DEFAULT_SEED = 1


@dataclass(frozen=True)
class SampleSNCD:
    """SNCD of K generator samples.

    Attributes:
        per_layer: [K, num_ws] each sample's ``SNCD_i`` (in [0, 2]), on the CPU.
    """

    per_layer: Tensor

    @property
    def total(self) -> Tensor:
        """[K] each sample's SNCD summed over the layers (the metric's ``total``)."""
        return self.per_layer.sum(1)

    @property
    def mean(self) -> float:
        """Mean over the samples of the total SNCD (the reference line of sweep tables)."""
        return float(self.total.mean())

    def quantile(self, q: float) -> float:
        """The q-quantile (q in [0, 1]) of the samples' total SNCD."""
        return float(torch.quantile(self.total.double(), q))

    def layer_target(self, target: str | float = "mean") -> Tensor:
        """Per-layer target [num_ws]: the samples' mean ``SNCD_i`` (``"mean"``) or its q-quantile
        (a number q in [0, 1]; a lower q asks for codes more aligned than most samples)."""
        if isinstance(target, str):
            if target != "mean":
                raise ValueError(
                    f"sncd target must be 'mean' or a quantile in [0, 1], got {target!r}"
                )
            return self.per_layer.mean(0)
        q = float(target)
        if not 0.0 <= q <= 1.0 or math.isnan(q):
            raise ValueError(f"sncd target quantile must lie in [0, 1], got {target!r}")
        return torch.quantile(self.per_layer.double(), q, dim=0).float()


def sample_cache_path(
    cache_dir: str | Path, sha256: str, anchors_sha: str, num_samples: int, seed: int
) -> Path:
    return (
        Path(cache_dir)
        / f"sample-sncd-{sha256[:16]}-a{anchors_sha[:12]}-n{num_samples}-seed{seed}.pt"
    )


@torch.no_grad()
def sample_sncd(
    G: Generator,
    anchors: Sequence[Tensor],
    num_samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
    *,
    batch_size: int = 10_000,
    cache_dir: str | Path | None = None,
) -> SampleSNCD:
    """SNCD of ``num_samples`` mapped samples of G against ``anchors`` (no truncation).

    Args:
        G: generator (its ``sha256`` and the anchors' hash key the cache).
        anchors: ``compute_anchors(G, ...)``, num_ws tensors [C_i].
        num_samples: K samples; only the mapping and the affine layers run (no synthesis).
        seed: seed of their z (drawn on the CPU).
        cache_dir: folder of the cache file (the anchors' folder, ``alignment.cache_dir``);
            None = no cache. A cached file is used only for the same generator, anchors, K, seed.

    Returns:
        :class:`SampleSNCD` with ``per_layer [K, num_ws]``.
    """
    path = None
    a_sha = tensors_sha256({str(i): a.detach().float().cpu() for i, a in enumerate(anchors)})
    if cache_dir is not None and G.sha256:
        path = sample_cache_path(cache_dir, G.sha256, a_sha, num_samples, seed)
        obj = read_cache(
            path,
            "sample SNCD",
            {"sha256": G.sha256, "anchors_sha256": a_sha, "num_samples": num_samples, "seed": seed},
            fits=lambda o: tuple(o["per_layer"].shape) == (num_samples, G.num_ws),
        )
        if obj is not None:
            return SampleSNCD(obj["per_layer"])
    parts = [
        sncd(G, w, anchors)[1].cpu()
        for w in iter_w(G, num_samples, seed=seed, batch_size=batch_size)
    ]
    per_layer = torch.cat(parts).float()
    if path is not None:
        atomic_torch_save(
            path,
            {
                "sha256": G.sha256,
                "anchors_sha256": a_sha,
                "num_samples": num_samples,
                "seed": seed,
                "per_layer": per_layer,
            },
        )
        log.info("cached the SNCD of %d generator samples at %s", num_samples, path)
    return SampleSNCD(per_layer)
