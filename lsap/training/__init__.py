"""Training maths of the encoder job (and the toy GAN's losses): adversarial losses and the
latent-code discriminator's updates."""

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
    "encoder_adversarial_loss",
    "g_nonsaturating_loss",
    "r1_penalty",
]
