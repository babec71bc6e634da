"""StyleGAN2 adversarial losses: non-saturating logistic loss and the R1 gradient penalty.

Pure functions of discriminator logits (and, for R1, the real images they came from).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def g_nonsaturating_loss(fake_logits: Tensor) -> Tensor:
    """Generator loss ``mean softplus(-D(G(z)))`` = ``-mean log sigmoid(D(G(z)))``.

    Args:
        fake_logits: [N] discriminator logits of generated images.

    Returns:
        scalar; decreases as the discriminator scores the fakes higher (log 2 at logit 0).
    """
    return F.softplus(-fake_logits).mean()


def d_logistic_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator loss ``mean softplus(D(fake)) + mean softplus(-D(real))``.

    Args:
        real_logits: [N] logits of real images.
        fake_logits: [M] logits of generated images.

    Returns:
        scalar; 2 log 2 when both logits are 0, -> 0 as real -> +inf and fake -> -inf.
    """
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """R1 regulariser ``mean_n ||d D(x_n) / d x_n||^2`` on real images (Mescheder et al. 2018).

    The graph is kept (``create_graph=True``) so the penalty can be backpropagated into D.

    Args:
        real_logits: [N] logits computed from ``real_images``.
        real_images: [N, 3, H, W] with ``requires_grad=True``.

    Returns:
        scalar >= 0 (multiply by gamma / 2, and by the interval when applied lazily).
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty needs real_images with requires_grad=True")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()
