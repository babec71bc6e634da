"""StyleGAN2 discriminator: shapes at several sizes, gradients reach every weight, mbstd groups."""

from __future__ import annotations

import math

import pytest
import torch

from lsap.nets.ops import make_filter
from lsap.toy.discriminator import (
    Discriminator,
    DiscriminatorConfig,
    EqualizedConv2d,
    blur,
    minibatch_stddev,
)


@pytest.mark.parametrize("resolution", [4, 8, 16, 32, 64])
def test_shapes(resolution):
    D = Discriminator(resolution=resolution, channel_base=256, channel_max=32)
    assert len(D.blocks) == int(math.log2(resolution)) - 2
    x = torch.randn(6, 3, resolution, resolution)
    assert D(x).shape == (6,)
    feats = D.from_rgb(x)
    assert feats.shape == (6, D.config.channels(resolution), resolution, resolution)
    for block in D.blocks:
        y = block(feats)
        assert y.shape[2:] == (feats.shape[2] // 2, feats.shape[3] // 2)
        feats = y
    assert feats.shape[1:] == (D.config.channels(4), 4, 4)
    with pytest.raises(ValueError, match=r"expects \[N, 3"):
        D(torch.randn(2, 3, resolution * 2, resolution * 2))


def test_gradients_reach_every_weight_and_the_input():
    D = Discriminator(resolution=16, channel_base=128, channel_max=16)
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    D(x).square().mean().backward()
    for name, p in D.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_equalized_lr_keeps_activations_in_scale():
    torch.manual_seed(0)
    conv = EqualizedConv2d(64, 64, 3)
    x = torch.randn(8, 64, 16, 16)
    # weights ~N(0,1) scaled by 1/sqrt(fan_in): unit-variance input -> ~unit-variance output
    assert 0.8 < conv(x).std() < 1.2
    down = EqualizedConv2d(64, 32, 3, down=True)
    assert down(x).shape == (8, 32, 8, 8)
    skip = EqualizedConv2d(64, 32, 1, down=True, bias=False)
    assert skip(x).shape == (8, 32, 8, 8)


def test_blur_is_a_normalised_lowpass():
    x = torch.full((1, 2, 8, 8), 3.0)
    y = blur(x, make_filter(), pad=0)  # valid region only: constant stays constant
    torch.testing.assert_close(y, torch.full((1, 2, 5, 5), 3.0))
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1
    z = blur(checker.expand(1, 1, 8, 8).float(), make_filter(), pad=0)
    assert z.abs().max() < 1e-6  # the Nyquist pattern is removed entirely


def test_minibatch_stddev_groups():
    N, C = 8, 4
    x = torch.randn(N, C, 4, 4)
    # group size 4 over N = 8: groups are {0, 2, 4, 6} and {1, 3, 5, 7}
    x[[2, 4, 6]] = x[0].clone()
    y = minibatch_stddev(x, group_size=4)
    assert y.shape == (N, C + 1, 4, 4)
    std = y[:, -1, 0, 0]
    assert std[[0, 2, 4, 6]].max() < 1e-3
    assert std[[1, 3, 5, 7]].min() > 0.3
    torch.testing.assert_close(y[:, :C], x)
    # a batch that the group size does not divide uses the largest divisor (3 -> groups of 3)
    assert minibatch_stddev(torch.randn(3, C, 4, 4), group_size=4).shape == (3, C + 1, 4, 4)


def test_config_checks():
    with pytest.raises(ValueError, match="power of two"):
        DiscriminatorConfig(resolution=24)
    c = DiscriminatorConfig(resolution=32, channel_base=1024, channel_max=128)
    assert [c.channels(r) for r in (32, 16, 8, 4)] == [32, 64, 128, 128]
