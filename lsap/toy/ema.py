"""Exponential moving average of a network's weights (the generator's ``G_ema``)."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(
    batch_size: int, ema_kimg: float, seen_images: int = 0, rampup: float | None = None
) -> float:
    """Decay per step so that the average has a half-life of ``ema_kimg`` thousand images.

    ``beta = 0.5 ** (batch_size / ema_nimg)`` with ``ema_nimg = 1000 * ema_kimg``, capped at
    ``rampup * seen_images`` when ``rampup`` is given (short memory early in training, as in
    StyleGAN2-ADA).

    Returns:
        beta in [0, 1): ``ema <- beta * ema + (1 - beta) * weights``.
    """
    ema_nimg = ema_kimg * 1000.0
    if rampup is not None:
        ema_nimg = min(ema_nimg, seen_images * rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """``p_ema <- beta * p_ema + (1 - beta) * p`` for every parameter; buffers are copied.

    Both modules must have the same architecture (``ema`` is usually a deep copy of ``model``).
    """
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)
