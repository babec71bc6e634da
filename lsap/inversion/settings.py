"""How an inversion run is set up: the per-image seed rule (every image's random numbers come from
the run seed and the image's name, so a result does not depend on batching, sharding or order)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def image_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one image, from the run seed and the image's output name."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def image_seeds(seed: int, names: Sequence[str]) -> list[int]:
    """:func:`image_seed` of each name (batch-independent)."""
    return [image_seed(seed, n) for n in names]
