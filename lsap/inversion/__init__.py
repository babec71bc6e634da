"""Per-image latent optimisation (LSAP_O and the StyleGAN2 projector): pure functions, no I/O."""

from lsap.inversion.optimize import InversionResult, latent_std, optimize_latents
from lsap.inversion.schedules import Schedule

__all__ = ["InversionResult", "Schedule", "latent_std", "optimize_latents"]
