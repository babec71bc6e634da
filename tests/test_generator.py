"""Generator behaviour: the fast ops equal their definitions, the API keeps its contracts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lsap.io import init_generator
from lsap.nets import Generator, GeneratorConfig, ops
from lsap.nets.ops import (
    bias_leaky_relu,
    make_filter,
    modulated_conv2d,
    modulated_conv_act,
    modulated_linear,
    upsample_2x,
)


def naive_upfirdn_up2(x, kernel):
    """Definition of 2x upsampling: insert zeros, pad (2, 1), convolve with 4 * kernel, per channel."""
    N, C, H, W = x.shape
    up = torch.zeros(N, C, 2 * H, 2 * W, dtype=x.dtype)
    up[:, :, ::2, ::2] = x
    up = F.pad(up, (2, 1, 2, 1))
    k = (kernel * 4).flip(0, 1)[None, None]
    return torch.cat([F.conv2d(up[:, c : c + 1], k) for c in range(C)], dim=1)


def naive_modconv(x, weight, styles, demodulate=True, up=False):
    """Definition: per-sample weights w' = w * s, demodulated, then a (transposed) conv per sample."""
    outs = []
    for n in range(x.shape[0]):
        w = weight * styles[n][None, :, None, None]
        if demodulate:
            w = w * (w.square().sum(dim=(1, 2, 3)) + 1e-8).rsqrt()[:, None, None, None]
        xn = x[n : n + 1]
        if up:
            y = F.conv_transpose2d(xn, w.transpose(0, 1), stride=2)
            y = F.pad(y, (1, 1, 1, 1))
            k = (make_filter() * 4)[None, None]
            y = torch.cat([F.conv2d(y[:, c : c + 1], k) for c in range(y.shape[1])], dim=1)
        else:
            y = F.conv2d(xn, w, padding=w.shape[-1] // 2)
        outs.append(y)
    return torch.cat(outs)


def test_upsample_matches_definition():
    x = torch.randn(2, 3, 5, 7)
    ours = upsample_2x(x, make_filter())
    assert ours.shape == (2, 3, 10, 14)
    torch.testing.assert_close(ours, naive_upfirdn_up2(x, make_filter()), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_matches_per_sample_weights(up, demodulate, fused):
    x, weight = torch.randn(3, 6, 8, 8), torch.randn(5, 6, 3, 3) / math.sqrt(54)
    styles = torch.randn(3, 6) + 1.0
    ours = modulated_conv2d(
        x, weight, styles, demodulate=demodulate, up=up, kernel=make_filter(), fused=fused
    )
    ref = naive_modconv(x, weight, styles, demodulate=demodulate, up=up)
    assert ours.shape == ref.shape == (3, 5, 16 if up else 8, 16 if up else 8)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


@pytest.fixture(params=["onednn", "gemm"])
def sample_wise_backward(request, monkeypatch):
    """Both backward executions of the per-sample layers without upsampling: oneDNN's convolution
    backward, and (``GEMM_BACKWARD_MIN_CHANNELS`` lowered to 0) the forward-convolution input
    gradient with the matrix-product weight gradient that wide layers take."""
    monkeypatch.setattr(
        ops, "GEMM_BACKWARD_MIN_CHANNELS", 10**9 if request.param == "onednn" else 0
    )
    return request.param


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("size", [(6, 6), (5, 8), (1, 2)])
def test_weight_grad_gemm_is_the_convolutions_weight_gradient(k, size):
    torch.manual_seed(0)
    x = torch.randn(1, 4, *size).contiguous(memory_format=torch.channels_last)
    g = torch.randn(1, 7, *size)
    w = torch.randn(7, 4, k, k)
    ref = torch.ops.aten.convolution_backward(
        g, x, w, None, [1, 1], [k // 2] * 2, [1, 1], False, [0, 0], 1, [False, True, False]
    )[1]
    torch.testing.assert_close(ops._weight_grad_gemm(x, g, k), ref, atol=1e-5, rtol=1e-5)
    # the taps are not interchangeable: another input gives another gradient
    assert (ops._weight_grad_gemm(x.flip(-1), g, k) - ref).abs().max() > 1e-2


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("size", [(4, 4), (3, 5), (1, 2)])
def test_transposed_weight_grad_gemm_is_the_weight_gradient(k, size):
    torch.manual_seed(0)
    H, W = size
    x = torch.randn(1, 4, H, W).contiguous(memory_format=torch.channels_last)
    g = torch.randn(1, 7, 2 * H + k - 2, 2 * W + k - 2)
    w = torch.randn(7, 4, k, k)  # [O, I, k, k]; the layer's transposed conv uses w.transpose(0, 1)
    ref = torch.ops.aten.convolution_backward(
        g, x, w.transpose(0, 1), None, [2, 2], [0, 0], [1, 1], True, [0, 0], 1,
        [False, True, False],
    )[1].transpose(0, 1)  # fmt: skip
    torch.testing.assert_close(ops._transposed_weight_grad_gemm(x, g, k), ref, atol=1e-5, rtol=1e-5)
    assert (ops._transposed_weight_grad_gemm(x.flip(-1), g, k) - ref).abs().max() > 1e-2


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("noise_batch", [None, 1, 3])
@pytest.mark.parametrize("clamp", [None, 0.5])
def test_sample_wise_layer_matches_shared_conv_values_and_gradients(
    up, noise_batch, clamp, sample_wise_backward
):
    """modulated_conv_act (per-sample weights, hand-written backward) equals the autograd of the
    shared-convolution layer for the output and every input's gradient."""
    torch.manual_seed(0)
    R = 16 if up else 8
    x = torch.randn(3, 6, 8, 8).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(5, 6, 3, 3) / math.sqrt(54)
    styles, bias = torch.randn(3, 6) + 1.0, torch.randn(5)
    noise = None if noise_batch is None else torch.randn(noise_batch, 1, R, R)
    leaves = [t for t in (x, weight, styles, bias, noise) if t is not None]
    for t in leaves:
        t.requires_grad_(True)
    ref = modulated_conv2d(x, weight, styles, up=up, kernel=make_filter())
    ref = bias_leaky_relu(ref, bias, clamp, noise=noise)
    ours = modulated_conv_act(
        x, weight, styles, bias, noise=noise, up=up, kernel=make_filter(), clamp=clamp
    )
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    probe = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * probe).sum(), leaves)
    g_ours = torch.autograd.grad((ours * probe).sum(), leaves)
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    if clamp is not None:  # the clamp is active in this draw, so its gradient mask is tested
        assert (ref.abs() >= clamp).any() and (ref.abs() < clamp).any()


def test_sample_wise_layer_gradcheck(sample_wise_backward):
    """The hand-written backward is the derivative (float64 finite differences)."""
    torch.manual_seed(0)
    for up in (False, True):
        x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
        weight = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
        styles = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
        bias = torch.randn(2, dtype=torch.float64, requires_grad=True)
        noise = torch.randn(2, 1, 8 if up else 4, 8 if up else 4, dtype=torch.float64)
        noise.requires_grad_(True)
        kernel = make_filter().double()

        def layer(*t, up=up, kernel=kernel):
            return modulated_conv_act(*t[:4], noise=t[4], up=up, kernel=kernel)

        assert torch.autograd.gradcheck(layer, (x, weight, styles, bias, noise))


def test_generator_gradients_do_not_depend_on_the_execution(tiny_G, sample_wise_backward):
    """Per-sample weights (CPU, generator trainable) and the grouped conv give the same image
    and the same gradients for the codes and every generator parameter."""
    w_plus = torch.randn(2, tiny_G.num_ws, 64)
    grads = []
    for fused in (False, True):
        tiny_G.zero_grad(set_to_none=True)
        tiny_G.requires_grad_(True)
        wp = w_plus.clone().requires_grad_(True)
        img = tiny_G.synthesis(wp, fused_modconv=fused)
        img.square().mean().backward()
        grads.append([img, wp.grad] + [p.grad for p in tiny_G.parameters()])
    tiny_G.requires_grad_(False)
    tiny_G.zero_grad(set_to_none=True)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_modulated_linear_is_an_unnormalised_1x1_modconv():
    x, weight, styles = torch.randn(3, 6, 5, 5), torch.randn(4, 6, 1, 1), torch.randn(3, 6)
    ref = naive_modconv(x, weight, styles, demodulate=False)
    torch.testing.assert_close(modulated_linear(x, weight, styles), ref, atol=1e-5, rtol=1e-5)


def test_fused_and_unfused_generators_agree(tiny_G):
    w_plus = torch.randn(3, tiny_G.num_ws, 64)
    a = tiny_G.synthesis(w_plus, fused_modconv=False)
    b = tiny_G.synthesis(w_plus, fused_modconv=True)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("resolution", [4, 8, 16, 64])
def test_shapes_and_num_ws_for_any_resolution(resolution):
    cfg = GeneratorConfig(
        resolution=resolution, z_dim=16, w_dim=16, n_mlp=2, channel_base=256, channel_max=16
    )
    G = init_generator(cfg, seed=0)
    assert G.num_ws == 2 * int(math.log2(resolution)) - 2
    img = G.synthesis(torch.randn(2, G.num_ws, 16))
    assert img.shape == (2, 3, resolution, resolution)
    assert torch.isfinite(img).all()
    styles = G.style_space(torch.randn(2, G.num_ws, 16))
    assert len(styles) == G.num_ws


def test_config_f_channel_counts():
    cfg = GeneratorConfig.from_dict({"resolution": 1024, "channel_multiplier": 2})
    assert [cfg.channels(r) for r in cfg.resolutions] == [512] * 5 + [256, 128, 64, 32]
    assert cfg.num_ws == 18 and cfg.channel_multiplier == 2
    with torch.device("meta"):
        G = Generator(cfg)
    assert sum(p.numel() for p in G.parameters()) == pytest.approx(30.0e6, rel=0.02)


def test_invalid_config_and_inputs(tiny_G):
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(resolution=48)
    with pytest.raises(ValueError, match=r"w_plus \[N, 8, 64\]"):
        tiny_G.synthesis(torch.randn(2, 7, 64))
    with pytest.raises(ValueError, match="z \\[N, 64\\]"):
        tiny_G.mapping(torch.randn(2, 32))
    with pytest.raises(ValueError, match="noise_mode"):
        tiny_G.synthesis(torch.randn(2, 64), noise_mode="fixed")


def test_w_code_is_broadcast_to_every_layer(tiny_G):
    w = tiny_G.mapping(torch.randn(2, 64))
    a = tiny_G.synthesis(w)
    b = tiny_G.synthesis(w[:, None].repeat(1, tiny_G.num_ws, 1))
    torch.testing.assert_close(a, b)


def test_every_w_plus_layer_changes_the_image(tiny_G):
    w_plus = tiny_G.mapping(torch.randn(1, 64))[:, None].repeat(1, tiny_G.num_ws, 1)
    base = tiny_G.synthesis(w_plus)
    for i in range(tiny_G.num_ws):
        moved = w_plus.clone()
        moved[:, i] += 1.0
        assert (tiny_G.synthesis(moved) - base).abs().max() > 1e-4, f"w+ index {i} unused"


def test_noise_modes(tiny_G):
    w = tiny_G.mapping(torch.randn(2, 64))
    const1, const2 = tiny_G.synthesis(w, "const"), tiny_G.synthesis(w, "const")
    torch.testing.assert_close(const1, const2)
    r1, r2 = tiny_G.synthesis(w, "random"), tiny_G.synthesis(w, "random")
    assert (r1 - r2).abs().max() > 1e-3
    none = tiny_G.synthesis(w, "none")
    zeros = [torch.zeros(s) for s in tiny_G.synthesis.noise_shapes()]
    torch.testing.assert_close(tiny_G.synthesis(w, noise=zeros), none)
    consts = [layer.noise_const[None, None] for layer in tiny_G.synthesis.convs]
    torch.testing.assert_close(tiny_G.synthesis(w, "random", noise=consts), const1)


def test_batch_members_are_independent(tiny_G):
    w_plus = torch.randn(4, tiny_G.num_ws, 64)
    together = tiny_G.synthesis(w_plus)
    alone = torch.cat([tiny_G.synthesis(w_plus[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_truncation_pulls_to_w_avg(tiny_G):
    z = torch.randn(3, 64)
    w = tiny_G.mapping(z)
    torch.testing.assert_close(tiny_G.mapping(z, truncation_psi=0.0), tiny_G.w_avg.expand(3, -1))
    torch.testing.assert_close(tiny_G.mapping(z, 0.5), 0.5 * (w + tiny_G.w_avg))


def test_style_space_follows_lsap_definition(tiny_G):
    w_plus = torch.randn(2, tiny_G.num_ws, 64)
    styles = tiny_G.style_space(w_plus)
    convs, torgbs = tiny_G.synthesis.convs, tiny_G.synthesis.torgbs
    assert len(styles) == tiny_G.num_ws
    # index 0: the 4x4 conv; 1..num_ws-2: the following convs in order; last: the last toRGB.
    for i in range(tiny_G.num_ws - 1):
        torch.testing.assert_close(styles[i], convs[i].affine(w_plus[:, i]))
        assert styles[i].shape == (2, convs[i].weight.shape[1])
    torch.testing.assert_close(styles[-1], torgbs[-1].affine(w_plus[:, -1]))
    rgb = tiny_G.torgb_styles(w_plus)
    assert len(rgb) == len(torgbs) == 4
    for j, s in enumerate(rgb):
        torch.testing.assert_close(s, torgbs[j].affine(w_plus[:, 2 * j + 1]))


def test_gradients_reach_codes_and_leave_generator_untouched(tiny_G):
    before = {k: v.clone() for k, v in tiny_G.state_dict().items()}
    w_plus = torch.randn(2, tiny_G.num_ws, 64, requires_grad=True)
    tiny_G.synthesis(w_plus).square().mean().backward()
    assert w_plus.grad is not None and w_plus.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_G.parameters())
    for k, v in tiny_G.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast(tiny_G, dtype):
    w = tiny_G.mapping(torch.randn(2, 64))
    ref = tiny_G.synthesis(w)
    with torch.autocast("cpu", dtype=dtype):
        low = tiny_G.synthesis(w)
    assert low.dtype == dtype
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < (0.05 if dtype == torch.bfloat16 else 0.01)


def test_conv_clamp_limits_activations():
    cfg = GeneratorConfig(
        resolution=16, z_dim=16, w_dim=16, n_mlp=2, channel_base=256, channel_max=16, conv_clamp=0.3
    )
    G = init_generator(cfg, seed=0)
    img = G.synthesis(torch.randn(2, G.num_ws, 16))
    # Each toRGB output is clamped to +-0.3 and the skip sum has log2(16) - 1 = 3 terms.
    assert img.abs().max() <= 0.3 * 3 + 1e-5
    unclamped = init_generator(GeneratorConfig(**{**cfg.to_dict(), "conv_clamp": None}), seed=0)
    assert (unclamped.synthesis(torch.randn(2, G.num_ws, 16)).abs().max()) > 0.9
