"""Training maths shared by the GAN and encoder jobs: adversarial losses, weight averaging."""

from lsap.training.ema import ema_beta, update_ema
from lsap.training.gan_losses import d_logistic_loss, g_nonsaturating_loss, r1_penalty

__all__ = ["d_logistic_loss", "ema_beta", "g_nonsaturating_loss", "r1_penalty", "update_ema"]
