"""Streaming, DDP-synced accumulators of one method's evaluation (torchmetrics states).

Every state is a sum (means: value and count; FID: feature and outer-product sums; SNCD: per-layer
sums), so a run sharded over ranks gives the single-process numbers on the union of the data, and
memory does not grow with the number of images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from lsap.editing.edit import factor_key
from lsap.metrics.fid import FIDSets

RECONSTRUCTION = "reconstruction"
EDIT_METRICS = ("id", "lpips", "sncd")


def edit_key(edit: str, factor: float) -> str:
    return f"{edit}@{factor_key(factor)}"


class MethodMetrics(nn.Module):
    """Accumulates fidelity, FID, SNCD and editing metrics of one method.

    Args:
        fidelity: per-image fidelity metrics averaged over images (e.g. mse, psnr, ssim, lpips, id).
        num_layers: w+ layers for SNCD (None: the method has no codes, no SNCD).
        num_features: FID feature size (None: no FID).
        edits: ``(edit name, factors)`` pairs scored per factor.
        edit_metrics: per-image editing metrics averaged per edit and factor (among
            ``EDIT_METRICS``).
    """

    def __init__(
        self,
        fidelity: Sequence[str],
        *,
        num_layers: int | None = None,
        num_features: int | None = None,
        edits: Sequence[tuple[str, Sequence[float]]] = (),
        edit_metrics: Sequence[str] = EDIT_METRICS,
    ) -> None:
        super().__init__()
        from torchmetrics import MeanMetric, SumMetric

        from lsap.alignment.metric import SNCDMetric

        self.fidelity_names = list(fidelity)
        self.count = SumMetric()
        self.means = nn.ModuleDict({m: MeanMetric() for m in self.fidelity_names})
        self.sncd = SNCDMetric(num_layers) if num_layers else None
        self.edits = [(e, tuple(float(f) for f in fs)) for e, fs in edits]
        self.edit_metrics = [m for m in EDIT_METRICS if m in edit_metrics]
        # ModuleDict keys may not hold '.', so edit accumulators are indexed
        self._edit_index: dict[tuple[str, float, str], str] = {}
        edit_means = {}
        for e, fs in self.edits:
            for f in fs:
                for m in self.edit_metrics:
                    key = f"e{len(edit_means)}"
                    self._edit_index[(e, f, m)] = key
                    edit_means[key] = MeanMetric()
        self.edit_means = nn.ModuleDict(edit_means)
        self.fid = None
        if num_features:
            sets = [RECONSTRUCTION] + [edit_key(e, f) for e, fs in self.edits for f in fs]
            self.fid = FIDSets(sets, num_features)

    def update(
        self,
        scores: Mapping[str, Tensor],
        *,
        num_images: int,
        sncd_per_layer: Tensor | None = None,
        original_features: Tensor | None = None,
        reconstruction_features: Tensor | None = None,
    ) -> None:
        """Add a batch of ``num_images``: per-image ``scores {metric: [N]}``, SNCD ``[N, L]``, FID
        features ``[N, D]``."""
        self.count.update(float(num_images))
        for m in self.fidelity_names:
            self.means[m].update(scores[m])
        if self.sncd is not None and sncd_per_layer is not None:
            self.sncd.update(sncd_per_layer)
        if self.fid is not None and original_features is not None:
            self.fid.update_reference(original_features)
            self.fid.update(RECONSTRUCTION, reconstruction_features)

    def update_edit(
        self,
        edit: str,
        factor: float,
        scores: Mapping[str, Tensor],
        *,
        features: Tensor | None = None,
    ) -> None:
        """Add a batch of edited images: per-image ``scores`` (id, lpips, sncd) and FID features."""
        for m in self.edit_metrics:
            if m in scores:
                self.edit_means[self._edit_index[(edit, float(factor), m)]].update(scores[m])
        if self.fid is not None and features is not None:
            self.fid.update(edit_key(edit, factor), features)

    def compute(self) -> dict:
        """All numbers, synced over ranks.

        Returns:
            ``{"num_images", "metrics": {mse, psnr, ..., fid}, "sncd": {"total", "mean",
            "per_layer"} or None, "editing": {edit: {factor_key: {id, lpips, sncd, fid}}}}``
        """
        metrics = {m: float(self.means[m].compute()) for m in self.fidelity_names}
        fids = self.fid.compute() if self.fid is not None else {}
        if self.fid is not None:
            metrics["fid"] = fids[RECONSTRUCTION]
        sncd = None
        if self.sncd is not None:
            s = self.sncd.compute()
            sncd = {
                "total": float(s["total"]),
                "mean": float(s["mean"]),
                "per_layer": [float(x) for x in s["per_layer"]],
            }
        editing: dict[str, dict[str, dict[str, float]]] = {}
        for e, fs in self.edits:
            editing[e] = {}
            for f in fs:
                row = {
                    m: float(self.edit_means[self._edit_index[(e, f, m)]].compute())
                    for m in self.edit_metrics
                }
                if self.fid is not None:
                    row["fid"] = fids[edit_key(e, f)]
                editing[e][factor_key(f)] = row
        return {
            "num_images": int(self.count.compute()),
            "metrics": metrics,
            "sncd": sncd,
            "editing": editing,
        }
