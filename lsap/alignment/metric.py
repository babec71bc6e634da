"""SNCD as a torchmetrics ``Metric``: accumulates per-layer sums over batches and DDP ranks."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class SNCDMetric(Metric):
    """Mean SNCD over every code seen (all ranks), per layer and total.

    ``update(per_layer)`` takes the ``per_layer [N, L]`` output of :func:`lsap.alignment.sncd`;
    ``compute()`` returns ``{"total": mean over codes of the layer sum, "mean": total / L,
    "per_layer": [L] means}``. Sums and counts are synced with ``dist_reduce_fx="sum"``, so the
    result equals the single-process value on the union of the data.
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, num_layers: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_layers = num_layers
        self.add_state(
            "layer_sum", default=torch.zeros(num_layers, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, per_layer: Tensor) -> None:
        if per_layer.ndim != 2 or per_layer.shape[1] != self.num_layers:
            raise ValueError(
                f"expected per_layer [N, {self.num_layers}], got {tuple(per_layer.shape)}"
            )
        self.layer_sum += per_layer.detach().double().sum(0)
        self.count += per_layer.shape[0]

    def compute(self) -> dict[str, Tensor]:
        per_layer = (self.layer_sum / self.count.clamp_min(1)).float()
        total = per_layer.sum()
        return {"total": total, "mean": total / self.num_layers, "per_layer": per_layer}
