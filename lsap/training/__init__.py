"""Training maths shared by the GAN and encoder jobs: adversarial losses, weight averaging, the
latent-code discriminator's updates."""

from lsap.training.ema import ema_beta, update_ema
from lsap.training.gan_losses import d_logistic_loss, g_nonsaturating_loss, r1_penalty
from lsap.training.latent_discriminator import (
    LatentPool,
    discriminator_step,
    encoder_adversarial_loss,
)

__all__ = [
    "LatentPool",
    "d_logistic_loss",
    "discriminator_step",
    "ema_beta",
    "encoder_adversarial_loss",
    "g_nonsaturating_loss",
    "r1_penalty",
    "update_ema",
]
