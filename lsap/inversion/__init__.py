"""Per-image latent optimisation (LSAP_O and the StyleGAN2 projector): pure functions, no I/O;
``results`` writes in-memory inversions in the ``lsap-invert`` output layout."""

from lsap.inversion.optimize import (
    InversionResult,
    latent_std,
    optimize_latents,
    optimize_settings,
)
from lsap.inversion.schedules import Schedule

__all__ = ["InversionResult", "Schedule", "latent_std", "optimize_latents", "optimize_settings"]
