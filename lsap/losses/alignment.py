"""SNCD as a loss term (LSAP's alignment loss), per sample: a thin module around
``lsap.alignment.sncd.alignment_per_sample``, the one place the formula lives."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from lsap.alignment.sncd import alignment_per_sample, hinge_per_sample
from lsap.alignment.style import NORM_EPS, normalize_styles
from lsap.losses.base import LossInputs, LossTerm
from lsap.nets.stylegan2 import Generator


class SNCDLoss(LossTerm):
    """``- sum_{i in layers} <n_i(w+_i), a_i>`` per sample (its batch mean is the reference loss).

    With ``anchor_normalized=True`` the anchors are unit vectors (``- sum_i cos_i``). ``layers``
    from :class:`LossInputs` (progressive stage) restricts the sum; all layers when None.
    The generator is only used for its affine maps; it is not a submodule (not saved or moved).

    ``mode="hinge"`` (beyond the paper): ``sum_i w_i * max(0, SNCD_i - target_i)`` per sample
    (``lsap.alignment.sncd.sncd_hinge_loss``), ``target [num_ws]`` the generator samples'
    per-layer SNCD; 0 once a layer is as aligned as the samples.
    """

    MODES = ("reference", "hinge")

    needs = ("w_plus",)

    def __init__(
        self,
        G: Generator,
        anchors: Sequence[Tensor],
        anchor_normalized: bool = False,
        mode: str = "reference",  # reference (-<n_i, a_i>) | hinge (stop at the samples' SNCD)
        target: Tensor | None = None,  # [num_ws] per-layer SNCD target of the hinge
    ) -> None:
        super().__init__()
        if len(anchors) != G.num_ws:
            raise ValueError(f"{len(anchors)} anchors for a generator with num_ws={G.num_ws}")
        if mode not in self.MODES:
            raise ValueError(f"loss.options.sncd.mode must be one of {self.MODES}, got {mode!r}")
        if mode == "hinge":
            if target is None or tuple(target.shape) != (G.num_ws,):
                raise ValueError(f"the hinge sncd term needs a target [{G.num_ws}]")
            self.register_buffer("target", target.detach().float())
        self.mode = mode
        self._G = [G]  # a list keeps it out of this module's parameters and state dict
        self.anchor_normalized = anchor_normalized
        for i, a in enumerate(anchors):
            a = a.detach().float()
            if anchor_normalized:
                a = a / a.norm().clamp_min(NORM_EPS)
            self.register_buffer(f"anchor_{i}", a)

    def forward(self, inputs: LossInputs) -> Tensor:
        G, w = self._G[0], inputs.w_plus
        layers = list(inputs.layers) if inputs.layers is not None else list(range(G.num_ws))
        modules = G.style_layers
        styles = [modules[i].affine(w[:, i]) for i in layers]
        anchors = [getattr(self, f"anchor_{i}") for i in layers]
        if self.mode == "hinge":
            targets = [self.target[i] for i in layers]
            return hinge_per_sample(normalize_styles(styles), anchors, targets)
        return alignment_per_sample(normalize_styles(styles), anchors)
