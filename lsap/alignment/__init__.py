"""The normalised style space S^N, its anchors, and the S^N Cosine Distance (SNCD)."""

from typing import Any

from lsap.alignment.anchors import anchor_cache_path, compute_anchors
from lsap.alignment.sncd import sncd, sncd_batched, sncd_loss
from lsap.alignment.style import normalize_styles

__all__ = [
    "SNCDMetric",
    "anchor_cache_path",
    "compute_anchors",
    "normalize_styles",
    "sncd",
    "sncd_batched",
    "sncd_loss",
]


def __getattr__(name: str) -> Any:
    # torchmetrics takes seconds to import; only code that uses the metric pays for it.
    if name == "SNCDMetric":
        from lsap.alignment.metric import SNCDMetric

        return SNCDMetric
    raise AttributeError(f"module 'lsap.alignment' has no attribute {name!r}")
