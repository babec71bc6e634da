"""Named loss terms (l2, lpips, id, sncd, noise_reg, delta_norm, w_norm) and their weighted sum.

Each term maps :class:`LossInputs` to one value per sample; :class:`Objective` weights and sums them
and reports every term. Heavy networks (LPIPS, face recognition) load only when their term is used.
"""

from lsap.losses.base import LossInputs, LossTerm
from lsap.losses.objective import TERM_NAMES, Objective, build_objective

__all__ = ["TERM_NAMES", "LossInputs", "LossTerm", "Objective", "build_objective"]
