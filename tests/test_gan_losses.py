"""GAN training maths on hand-made inputs: losses, R1, EMA decay."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lsap.toy.ema import ema_beta, update_ema
from lsap.training import d_logistic_loss, g_nonsaturating_loss, r1_penalty


def test_nonsaturating_loss_decreases_as_fakes_score_higher():
    values = [float(g_nonsaturating_loss(torch.full((4,), v))) for v in (-5.0, -1.0, 0.0, 1.0, 5.0)]
    assert values == sorted(values, reverse=True) and len(set(values)) == 5
    assert values[2] == pytest.approx(math.log(2))
    # no saturation: the gradient stays ~ -1 per sample even for very low fake scores
    x = torch.full((4,), -20.0, requires_grad=True)
    g_nonsaturating_loss(x).backward()
    torch.testing.assert_close(x.grad, torch.full((4,), -0.25))


def test_d_logistic_loss_values():
    zero = torch.zeros(3)
    assert float(d_logistic_loss(zero, zero)) == pytest.approx(2 * math.log(2))
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0])
    expected = (
        math.log1p(math.exp(-1.0)) + (math.log1p(math.exp(-1)) + math.log1p(math.exp(-3))) / 2
    )
    assert float(d_logistic_loss(real, fake)) == pytest.approx(expected)
    # better separation -> lower loss
    assert d_logistic_loss(real + 1, fake - 1) < d_logistic_loss(real, fake)


def test_r1_is_zero_for_a_constant_discriminator_and_the_gradient_norm_otherwise():
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    constant = 0.0 * x.flatten(1).sum(1) + 2.0
    assert float(r1_penalty(constant, x)) == 0.0

    w = nn.Parameter(torch.randn(3, 4, 4))
    linear = (x * w).flatten(1).sum(1)  # dD/dx_n = w for every sample
    r1 = r1_penalty(linear, x)
    assert float(r1.detach()) == pytest.approx(float(w.detach().square().sum()), rel=1e-5)
    r1.backward()  # the penalty is differentiable in D's weights: d/dw ||w||^2 = 2w
    torch.testing.assert_close(w.grad, 2 * w.detach())

    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(linear, x.detach())


def test_ema_beta_half_life_and_rampup():
    beta = ema_beta(32, ema_kimg=10.0)
    assert beta ** (10_000 / 32) == pytest.approx(0.5)
    # ramp-up: after 1,000 images the half-life is at most 0.05 * 1000 = 50 images
    assert ema_beta(32, 10.0, seen_images=1000, rampup=0.05) == pytest.approx(0.5 ** (32 / 50))
    assert ema_beta(32, 10.0, seen_images=10**7, rampup=0.05) == pytest.approx(beta)


def test_update_ema_moves_by_one_minus_beta_and_copies_buffers():
    model, ema = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.fill_(2.0)
        ema.weight.fill_(0.0)
        model.running_mean.fill_(7.0)
    update_ema(ema, model, beta=0.75)
    torch.testing.assert_close(ema.weight, torch.full((3,), 0.5))  # 0.75 * 0 + 0.25 * 2
    torch.testing.assert_close(ema.running_mean, torch.full((3,), 7.0))
    update_ema(ema, model, beta=0.0)
    torch.testing.assert_close(ema.weight, model.weight.detach())
