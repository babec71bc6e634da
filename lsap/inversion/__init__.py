"""Per-image inversion: latent optimisation (LSAP_O and the StyleGAN2 projector) and encoder codes;
pure functions, no I/O. Where the inversion job's codes come from: ``lsap.inversion.sources``;
``results`` writes in-memory inversions in the ``lsap-invert`` output layout."""

from lsap.inversion.encode import encode_images, encoder_input
from lsap.inversion.optimize import (
    InversionResult,
    latent_std,
    optimize_latents,
    optimize_settings,
)
from lsap.inversion.schedules import Schedule

__all__ = [
    "InversionResult",
    "Schedule",
    "encode_images",
    "encoder_input",
    "latent_std",
    "optimize_latents",
    "optimize_settings",
]
