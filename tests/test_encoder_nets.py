"""Encoders (e4e Encoder4Editing, pSp GradualStyleEncoder): shapes, progressive deltas, pyramid
routing, and the official layout at full size (meta tensors: shapes without memory)."""

from __future__ import annotations

import pytest
import torch

from lsap.nets.encoder import (
    Encoder4Editing,
    GradualStyleEncoder,
    build_encoder,
    latent_avg_rows,
    progressive_stage,
)
from lsap.nets.irse import IRSE50

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"input_size": 32, "stages": [[16, 16, 1], [16, 24, 1], [24, 32, 2], [32, 48, 1]]}


def _images(n=2, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _randomize_(enc, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        enc.latent_avg.copy_(torch.randn(enc.latent_avg.shape, generator=g))
    return enc.eval()


@pytest.mark.parametrize("arch", ["e4e", "psp"])
def test_shapes_and_latent_avg(arch):
    enc = _randomize_(build_encoder(arch, num_ws=8, w_dim=64, **TINY))
    x = _images()
    w = enc(x)
    assert w.shape == (2, 8, 64)
    shift = torch.randn(8, 64)
    with torch.no_grad():
        enc.latent_avg += shift
    torch.testing.assert_close(enc(x), w + shift)
    with pytest.raises(ValueError, match=r"expects images \[N, 3, 32, 32\]"):
        enc(_images(size=64))


def test_e4e_progressive_stages_switch_deltas_on_one_by_one():
    enc = _randomize_(Encoder4Editing(num_ws=8, w_dim=64, **TINY))
    x = _images()
    for stage in (0, 2, 3, 7):
        enc.set_progressive_stage(stage)
        w = enc(x) - enc.latent_avg  # [2, 8, 64]
        for i in range(8):
            same = torch.allclose(w[:, i], w[:, 0], atol=1e-5)
            assert same == (i == 0 or i > stage), (stage, i)
    with pytest.raises(ValueError, match="progressive stage"):
        enc.set_progressive_stage(8)


def test_inactive_heads_get_no_gradient():
    enc = Encoder4Editing(num_ws=8, w_dim=64, **TINY)
    enc.set_progressive_stage(3)
    enc(_images()).square().sum().backward()
    assert all(enc.styles[i].linear.weight.grad is not None for i in range(4))
    assert all(enc.styles[i].linear.weight.grad is None for i in range(4, 8))
    assert enc.latlayer1.weight.grad is not None and enc.latlayer2.weight.grad is None


def test_e4e_equals_shared_code_plus_psp_heads():
    """Same weights: e4e's w_i - avg = (pSp's w_0 - avg) + (pSp's w_i - avg) for i >= 1, so both
    route heads 0-2 / 3-6 / 7+ to the coarse / middle / fine pyramid levels identically."""
    e4e = _randomize_(Encoder4Editing(num_ws=10, w_dim=64, **TINY), seed=3)
    psp = GradualStyleEncoder(num_ws=10, w_dim=64, **TINY).eval()
    psp.load_state_dict(e4e.state_dict())
    x = _images(3)
    a, b = e4e(x) - e4e.latent_avg, psp(x) - psp.latent_avg
    torch.testing.assert_close(a[:, 0], b[:, 0])
    torch.testing.assert_close(a[:, 1:], b[:, :1] + b[:, 1:], atol=1e-5, rtol=1e-5)


def test_progressive_schedule():
    # e4e: stage 0 until progressive_start, then one more w+ index every progressive_step_every
    f = lambda s: progressive_stage(s, 18, 20_000, 2_000)  # noqa: E731
    assert [f(s) for s in (0, 19_999, 20_000, 21_999, 22_000, 51_999, 52_000, 10**7)] == [
        0, 0, 1, 1, 2, 16, 17, 17,
    ]  # fmt: skip
    assert progressive_stage(0, 18, None, 2000) == 17
    assert progressive_stage(150, 8, 100, 0) == 7


def test_latent_avg_rows():
    v = torch.arange(4.0)
    assert torch.equal(latent_avg_rows(v, 3, 4), v.expand(3, 4))
    assert torch.equal(latent_avg_rows(v[None], 3, 4), v.expand(3, 4))
    rows = torch.randn(3, 4)
    assert torch.equal(latent_avg_rows(rows, 3, 4), rows)
    with pytest.raises(ValueError, match=r"\[2, 4\]"):
        latent_avg_rows(torch.zeros(2, 4), 3, 4)


# Official Encoder4Editing / GradualStyleEncoder layout of e4e_ffhq_encode.pt / psp_ffhq_encode.pt
# (FFHQ 1024, IR-SE50): a sample of exact key names and shapes.
OFFICIAL_1024 = {
    "input_layer.0.weight": [64, 3, 3, 3],
    "input_layer.1.running_var": [64],
    "input_layer.2.weight": [64],
    "body.0.res_layer.0.weight": [64],
    "body.0.res_layer.1.weight": [64, 64, 3, 3],
    "body.0.res_layer.2.weight": [64],
    "body.0.res_layer.3.weight": [64, 64, 3, 3],
    "body.0.res_layer.4.running_mean": [64],
    "body.0.res_layer.5.fc1.weight": [4, 64, 1, 1],
    "body.0.res_layer.5.fc2.weight": [64, 4, 1, 1],
    "body.3.shortcut_layer.0.weight": [128, 64, 1, 1],
    "body.3.shortcut_layer.1.weight": [128],
    "body.7.shortcut_layer.0.weight": [256, 128, 1, 1],
    "body.21.shortcut_layer.0.weight": [512, 256, 1, 1],
    "body.23.res_layer.5.fc2.weight": [512, 32, 1, 1],
    "styles.0.convs.0.weight": [512, 512, 3, 3],
    "styles.0.convs.6.bias": [512],
    "styles.6.convs.8.weight": [512, 512, 3, 3],
    "styles.17.convs.10.weight": [512, 512, 3, 3],
    "styles.17.linear.weight": [512, 512],
    "styles.17.linear.bias": [512],
    "latlayer1.weight": [512, 256, 1, 1],
    "latlayer1.bias": [512],
    "latlayer2.weight": [512, 128, 1, 1],
}
ABSENT_1024 = (
    "body.0.shortcut_layer.0.weight",  # 64 -> 64: a max-pool shortcut
    "body.24.res_layer.1.weight",
    "styles.0.convs.8.weight",  # coarse heads: 4 convs (16 -> 1)
    "styles.6.convs.10.weight",  # middle heads: 5 convs (32 -> 1)
    "styles.18.linear.weight",
)


@pytest.mark.parametrize("cls", [Encoder4Editing, GradualStyleEncoder])
def test_full_size_layout_matches_the_releases(cls):
    with torch.device("meta"):
        enc = cls()  # defaults: num_ws 18, w_dim 512, 256 px input, IR-SE50
        w = enc(torch.empty(2, 3, 256, 256))
    assert w.shape == (2, 18, 512)
    sd = enc.state_dict()
    for key, shape in OFFICIAL_1024.items():
        assert list(sd[key].shape) == shape, key
    for key in ABSENT_1024:
        assert key not in sd
    assert sum(k.startswith("styles.") and k.endswith("linear.weight") for k in sd) == 18
    # model_ir_se50.pth (IR-SE50 face recognition) fits the backbone tensor for tensor
    with torch.device("meta"):
        arcface = IRSE50().state_dict()
    backbone = {k: v.shape for k, v in sd.items() if k.startswith(("input_layer.", "body."))}
    assert backbone == {k: v.shape for k, v in arcface.items() if k in backbone}
    assert set(backbone) <= set(arcface)


def test_any_generator_resolution():
    with torch.device("meta"):
        for res, num_ws in ((256, 14), (512, 16), (1024, 18)):
            enc = Encoder4Editing(num_ws=2 * (res.bit_length() - 1) - 2)
            assert enc(torch.empty(1, 3, 256, 256)).shape == (1, num_ws, 512)
            assert len(enc.styles) == num_ws
