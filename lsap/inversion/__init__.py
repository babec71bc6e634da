"""Per-image inversion: latent optimisation (LSAP_O and the StyleGAN2 projector) and encoder codes;
pure functions, no I/O. The ``inversion`` group typed once: ``lsap.inversion.settings``; one batch
of images to code records: ``lsap.inversion.pipeline.invert_batch``; where the codes start:
``lsap.inversion.sources``; ``results`` writes in-memory inversions in the ``lsap-invert`` layout."""

from lsap.inversion.encode import encode_images, encoder_input
from lsap.inversion.optimize import InversionResult, latent_std, optimize_latents
from lsap.inversion.schedules import Schedule
from lsap.inversion.settings import InversionSettings, image_seed, optimize_settings

__all__ = [
    "InversionResult",
    "InversionSettings",
    "Schedule",
    "encode_images",
    "encoder_input",
    "image_seed",
    "latent_std",
    "optimize_latents",
    "optimize_settings",
]
