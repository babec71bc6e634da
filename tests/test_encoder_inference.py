"""The inference-only encoder (BatchNorm folded, heads batched) gives the plain module's codes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lsap.nets.encoder import build_encoder
from lsap.nets.encoder_inference import (
    FusedEncoder,
    Winograd3x3,
    fold_batchnorm,
    fuse_for_inference,
    inference_twin,
)

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


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(8, 8), (9, 6), (2, 2), (1, 3)])
def test_winograd_equals_a_direct_convolution(stride, size):
    torch.manual_seed(0)
    G, N, C, O = 3, 2, 5, 7
    w, b = torch.randn(G, O, C, 3, 3), torch.randn(G, O)
    x = torch.randn(G, N, *size, C)  # channels-last maps
    out = Winograd3x3(w, b, stride)(x)
    ref = torch.stack(
        [F.conv2d(x[g].permute(0, 3, 1, 2), w[g], b[g], stride, 1) for g in range(G)]
    ).permute(0, 1, 3, 4, 2)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # other weights give other outputs: the transforms carry the weights, not a constant
    other = Winograd3x3(w.flip(-1), b, stride)(x)
    assert (other - ref).abs().max() > 1e-2


# defaults: the full-size break-even points; (0, 2): every backbone conv and head layer that can
# be Winograd is, and the heads' small layers take the direct and 2x2-map paths
THRESHOLDS = [{}, {"winograd_min_channels": 0, "winograd_min_side": 2}]


@pytest.mark.parametrize("winograd", THRESHOLDS)
@pytest.mark.parametrize("arch", ["e4e", "psp"])
@pytest.mark.parametrize("batch", [1, 3])
def test_fused_codes_match_the_plain_module(arch, batch, winograd):
    enc = _encoder(arch)
    x = torch.rand(batch, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ref = enc(x)
    fused = fuse_for_inference(enc, **winograd)
    out = fused(x)
    assert out.shape == ref.shape == (batch, 8, 32)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # the source encoder is untouched (still trainable, its own layout)
    assert all(p.requires_grad for p in enc.parameters())


@pytest.mark.parametrize("winograd", THRESHOLDS)
def test_fused_e4e_follows_its_progressive_stage(winograd):
    enc = _encoder("e4e")
    enc.set_progressive_stage(4)  # deltas for w+ 1..4 only; the middle/fine heads beyond: off
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ref = enc(x)
    out = fuse_for_inference(enc, **winograd)(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 5:], out[:, :1].expand(-1, 3, -1))  # w0 + latent_avg


@pytest.mark.parametrize("winograd", THRESHOLDS)
def test_fused_codes_match_on_a_non_square_valid_region(winograd):
    enc = _encoder("e4e")  # a 48 x 64 region (longer side = input size), as the toy cars' crop
    x = torch.rand(2, 3, 48, 64) * 2 - 1
    with torch.no_grad():
        ref = enc(x)
    torch.testing.assert_close(fuse_for_inference(enc, **winograd)(x), ref, atol=1e-5, rtol=1e-5)


def test_fused_encoder_tells_other_weights_apart():
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ref = _encoder("psp", seed=0)(x)
    other = fuse_for_inference(_encoder("psp", seed=1))(x)
    assert (other - ref).abs().max() > 1e-3
    with pytest.raises(TypeError, match="e4e/pSp"):
        fuse_for_inference(torch.nn.Linear(2, 2))


def test_inference_twin_is_cached_and_follows_the_weights():
    enc = _encoder("psp")
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    twin = inference_twin(enc)
    assert isinstance(twin, FusedEncoder) and inference_twin(enc) is twin  # built once
    with torch.no_grad():
        torch.testing.assert_close(twin(x), enc(x), atol=1e-5, rtol=1e-5)
        enc.styles[0].linear.bias.add_(1.0)  # an in-place update (as an optimiser step)
        ref = enc(x)
    new = inference_twin(enc)
    assert new is not twin
    torch.testing.assert_close(new(x), ref, atol=1e-5, rtol=1e-5)
    assert "_inference_twin" not in "".join(enc.state_dict())
    assert inference_twin(enc.train()) is enc  # training mode: the module itself


def test_encode_images_gives_the_plain_codes():
    from lsap.inversion.encode import encode_images

    enc = _encoder("e4e")
    images = torch.rand(3, 3, 128, 128) * 2 - 1  # area-pooled to the 64 px input
    with torch.no_grad():
        ref = enc(F.adaptive_avg_pool2d(images, 64))
    out = encode_images(enc, images, num_ws=8, w_dim=32)
    assert "_inference_twin" in enc.__dict__  # the fused twin ran
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
