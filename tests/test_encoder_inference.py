"""The inference-only encoder (BatchNorm folded, heads batched) gives the plain module's codes."""

from __future__ import annotations

import pytest
import torch

from lsap.nets.encoder import build_encoder
from lsap.nets.encoder_inference import fold_batchnorm, fuse_for_inference

STAGES = [[16, 16, 1], [16, 24, 2], [24, 32, 2], [32, 48, 1]]


def _encoder(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    enc = build_encoder(arch, num_ws=8, w_dim=32, input_size=64, stages=STAGES)
    for m in enc.modules():  # trained-looking BatchNorm statistics, not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    enc.set_latent_avg(torch.randn(32))
    return enc.eval()


def test_fold_batchnorm_equals_conv_then_bn():
    conv, bn = torch.nn.Conv2d(4, 6, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(6)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.eval()
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(fold_batchnorm(conv, bn)(x), bn(conv(x)), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ["e4e", "psp"])
@pytest.mark.parametrize("batch", [1, 3])
def test_fused_codes_match_the_plain_module(arch, batch):
    enc = _encoder(arch)
    x = torch.rand(batch, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ref = enc(x)
    fused = fuse_for_inference(enc)
    out = fused(x)
    assert out.shape == ref.shape == (batch, 8, 32)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # the source encoder is untouched (still trainable, its own layout)
    assert all(p.requires_grad for p in enc.parameters())


def test_fused_e4e_follows_its_progressive_stage():
    enc = _encoder("e4e")
    enc.set_progressive_stage(4)  # deltas for w+ 1..4 only; the middle/fine heads beyond: off
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ref = enc(x)
    out = fuse_for_inference(enc)(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 5:], out[:, :1].expand(-1, 3, -1))  # w0 + latent_avg


def test_fused_encoder_tells_other_weights_apart():
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ref = _encoder("psp", seed=0)(x)
    other = fuse_for_inference(_encoder("psp", seed=1))(x)
    assert (other - ref).abs().max() > 1e-3
    with pytest.raises(TypeError, match="e4e/pSp"):
        fuse_for_inference(torch.nn.Linear(2, 2))
