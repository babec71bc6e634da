"""Result refinement, the second stage of inversion: pivotal tuning (PTI) on stage-one codes.

``pivotal_tuning(G, targets, pivots, ...)`` fine-tunes copies of the generator so the fixed codes
(pivots) reproduce their images, with PTI's locality regulariser; tuned weights are stored as
deltas against the base generator (``lsap.io.save_generator_delta``, loaded with
``lsap.load_generator(path, base=...)``).
"""

from lsap.refinement.locality import Locality, locality_codes, locality_loss
from lsap.refinement.outputs import GENERATORS_DIR, save_tuned_generators
from lsap.refinement.pivots import Pivots, load_pivots
from lsap.refinement.pti import (
    MODES,
    PTIResult,
    build_pti_terms,
    check_pivots,
    pivotal_tuning,
    pti_options,
)

__all__ = [
    "GENERATORS_DIR",
    "MODES",
    "Locality",
    "PTIResult",
    "Pivots",
    "build_pti_terms",
    "check_pivots",
    "load_pivots",
    "locality_codes",
    "locality_loss",
    "pivotal_tuning",
    "pti_options",
    "save_tuned_generators",
]
