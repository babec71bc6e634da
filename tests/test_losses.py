"""Loss terms: zero where they should be, larger further away, per sample, wired by config."""

from __future__ import annotations

import pytest
import torch
from conf_entries import conf_group
from omegaconf import OmegaConf

from lsap.alignment import compute_anchors, sncd_loss
from lsap.losses import LossInputs, build_objective
from lsap.losses.alignment import SNCDLoss
from lsap.losses.identity import FaceEmbedder, IDLoss
from lsap.losses.latent import DeltaNormLoss, NoiseRegLoss, WNormLoss, normalize_noise_
from lsap.losses.perceptual import LPIPSLoss
from lsap.losses.pixel import L2Loss


@pytest.fixture(scope="module")
def lpips_alex():
    return LPIPSLoss(net="alex", backbone="random", resize=None)


def _imgs(n=3, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_l2_is_per_image_mse():
    a, b = _imgs(), _imgs(seed=1)
    v = L2Loss()(LossInputs(images=a, targets=b))
    assert v.shape == (3,)
    torch.testing.assert_close(v, (a - b).square().mean(dim=(1, 2, 3)))
    assert torch.equal(L2Loss()(LossInputs(images=a, targets=a)), torch.zeros(3))


def test_lpips_zero_on_identical_and_grows_with_distortion(lpips_alex):
    a = _imgs(2, 64)
    assert lpips_alex(LossInputs(images=a, targets=a)).abs().max() < 1e-6
    noise = torch.randn_like(a)
    d = [lpips_alex.distance((a + s * noise).clamp(-1, 1), a).mean() for s in (0.05, 0.2, 0.6)]
    assert d[0] < d[1] < d[2]
    single = torch.cat(
        [lpips_alex.distance(a[i : i + 1] + 0.2 * noise[i : i + 1], a[i : i + 1]) for i in range(2)]
    )
    torch.testing.assert_close(
        lpips_alex.distance(a + 0.2 * noise, a), single, atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_keeps_target_features_only_while_the_targets_are_unchanged(net):
    """distance() equals the lpips package's forward (value and gradient) with or without the
    kept target features, and a changed target (in place, another tensor, another crop) is
    never served stale features."""
    loss = LPIPSLoss(net=net, backbone="random", resize=48)
    a, b = _imgs(2, 64), _imgs(2, 64, seed=5)

    def reference(x, y):
        small = torch.nn.functional.adaptive_avg_pool2d
        return loss.model(small(x, (48, 48)), small(y, (48, 48))).flatten()

    for _ in range(2):  # the first call computes b's features, the second reuses them
        x = a.clone().requires_grad_(True)
        d = loss.distance(x, b)
        (g,) = torch.autograd.grad(d.sum(), [x])
        x = a.clone().requires_grad_(True)
        d0 = reference(x, b)
        (g0,) = torch.autograd.grad(d0.sum(), [x])
        torch.testing.assert_close(d, d0, atol=1e-6, rtol=0)
        torch.testing.assert_close(g, g0, atol=1e-6, rtol=1e-5)
        assert loss._targets.get(b, loss) is not None  # kept for the next step
    b.mul_(-1)  # in place: the features must be recomputed
    torch.testing.assert_close(loss.distance(a, b), reference(a, b), atol=1e-6, rtol=0)
    c = _imgs(2, 64, seed=6)
    torch.testing.assert_close(loss.distance(a, c), reference(a, c), atol=1e-6, rtol=0)
    crop = (slice(None), slice(None), slice(8, 56), slice(0, 48))  # a view: same base, new crop
    torch.testing.assert_close(
        loss.distance(a[crop], c[crop]), reference(a[crop], c[crop]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        loss.distance(a[:, :, :48, :48], c[:, :, :48, :48]),
        reference(a[:, :, :48, :48], c[:, :, :48, :48]),
        atol=1e-6,
        rtol=0,
    )
    del c
    assert loss._targets._entry is None  # freed targets take their features with them


def test_lpips_random_backbone_is_deterministic_and_loads_local_weights(tmp_path, lpips_alex):
    import torchvision

    again = LPIPSLoss(net="alex", backbone="random", resize=None)
    a, b = _imgs(2, 64), _imgs(2, 64, seed=3)
    torch.testing.assert_close(lpips_alex.distance(a, b), again.distance(a, b))
    tv = torchvision.models.alexnet(weights=None)
    torch.save(tv.state_dict(), tmp_path / "alex.pth")
    local = LPIPSLoss(net="alex", backbone=str(tmp_path / "alex.pth"), resize=None)
    torch.testing.assert_close(local.model.net.slice1[0].weight, tv.features[0].weight)
    torch.testing.assert_close(getattr(local.model.net.slice5, "10").weight, tv.features[10].weight)


def test_lpips_resizes_large_inputs():
    loss = LPIPSLoss(net="alex", backbone="random", resize=32)
    a, b = _imgs(1, 64), _imgs(1, 64, seed=1)
    pooled = torch.nn.functional.adaptive_avg_pool2d
    torch.testing.assert_close(loss.distance(a, b), loss.distance(pooled(a, 32), pooled(b, 32)))


@pytest.mark.parametrize("backend", ["facenet", "arcface"])
def test_id_loss(backend):
    emb = FaceEmbedder(backend=backend, weights="random", crop=True)
    a, b = _imgs(2, 256), _imgs(2, 256, seed=5)
    e = emb(a)
    assert e.shape == (2, 512)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2))
    loss = IDLoss(emb)
    assert loss(LossInputs(images=a, targets=a)).abs().max() < 1e-5
    assert (loss(LossInputs(images=a, targets=b)) > 0.01).all()  # two white-noise images


def _near_and_mismatched(faces):
    """(faces, the same faces slightly perturbed, other faces), faces [6, 3, 32, 32]."""
    noise = torch.randn(faces.shape, generator=torch.Generator().manual_seed(1))
    return faces, faces + 0.05 * noise, faces.roll(1, 0)


@pytest.mark.parametrize("backend", ["facenet", "arcface"])
def test_random_face_embedder_tells_a_match_from_a_mismatch(backend, toy_faces):
    """The offline ID stand-in must rank a perturbed copy of a face above another face."""
    emb = FaceEmbedder(backend=backend, weights="random", crop=True)
    big = torch.nn.functional.interpolate(toy_faces, size=256, mode="bilinear")
    x, near, other = (emb(t) for t in _near_and_mismatched(big))
    paired, mispaired = (x * near).sum(1), (x * other).sum(1)
    assert (paired > mispaired).all(), (paired, mispaired)
    assert mispaired.mean() < 0.9 < paired.mean()


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_random_lpips_tells_a_match_from_a_mismatch(net, toy_faces):
    loss = LPIPSLoss(net=net, backbone="random", resize=None)
    x, near, other = _near_and_mismatched(toy_faces)
    paired, mispaired = loss.distance(x, near), loss.distance(x, other)
    assert (paired * 2 < mispaired).all(), (paired, mispaired)


def _metrics(**overrides):
    """The metrics group with the published networks, no editing scores, no FID."""
    return conf_group("metrics", "default", editing=[], fid={"enabled": False}, **overrides)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch cache and every weights download failing, as on an offline machine."""
    import facenet_pytorch.models.inception_resnet_v1 as facenet

    def refuse(url, *args, **kwargs):
        raise OSError(f"[Errno 101] Network is unreachable: {url}\n(more lines)")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(facenet, "download_url_to_file", refuse)


def test_failed_downloads_name_the_setting_of_each_command(offline, capsys):
    """LPIPS and ID downloads that fail offline give one line naming the key that takes a local
    file in the config that built the network: loss.options.* for losses, metrics.* for metrics."""
    from lsap.cli._common import one_line_errors
    from lsap.core.errors import WeightsUnavailableError
    from lsap.metrics.scorer import build_scorer
    from lsap.refinement import build_pti_terms

    lpips_cfg = {"net": "alex", "backbone": "torchvision"}
    with pytest.raises(WeightsUnavailableError, match=r"give a local file with lpips\.backbone="):
        LPIPSLoss(**lpips_cfg)
    loss = conf_group("loss", "projector", noise_reg=0.0, options={"lpips": lpips_cfg})
    with pytest.raises(WeightsUnavailableError) as e:
        build_objective(loss)
    assert "loss.options.lpips.backbone=/path/to/weights" in str(e.value)
    assert "Network is unreachable" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(
        WeightsUnavailableError, match=r"refinement\.loss\.options\.lpips\.backbone="
    ):
        build_pti_terms({"lpips": 1.0}, None, {"lpips": {**lpips_cfg, "resize": 256}})
    with pytest.raises(WeightsUnavailableError, match=r" metrics\.lpips\.backbone=/path"):
        build_scorer(_metrics(fidelity=["lpips"], lpips=lpips_cfg))
    with pytest.raises(WeightsUnavailableError, match=r" metrics\.id\.weights=/path"):
        build_scorer(_metrics(fidelity=["id"], id={"weights": "vggface2"}))
    with pytest.raises(WeightsUnavailableError, match=r" loss\.options\.id\.weights=/path"):
        build_objective(
            conf_group(
                "loss",
                "projector",
                lpips=0.0,
                id=1.0,
                noise_reg=0.0,
                options={"id": {"weights": "vggface2"}},
            )
        )

    @one_line_errors("lsap-eval")
    def command():
        build_scorer(_metrics(fidelity=["lpips"], lpips=lpips_cfg))

    with pytest.raises(SystemExit) as stop:
        command()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("lsap-eval: error: LPIPS(alex)'s pretrained torchvision alex backbone ")
    assert "metrics.lpips.backbone=" in err


def test_arcface_weights_round_trip(tmp_path):
    from lsap.nets.irse import IRSE50

    net = IRSE50().eval()
    torch.save(net.state_dict(), tmp_path / "model_ir_se50.pth")
    emb = FaceEmbedder("arcface", weights=str(tmp_path / "model_ir_se50.pth"), crop=False)
    x = _imgs(2, 112)
    torch.testing.assert_close(emb(x), net(x))


def test_sncd_term_matches_reference_loss(tiny_G):
    anchors = compute_anchors(tiny_G, 5000, 0)
    w = torch.randn(4, tiny_G.num_ws, 64)
    term = SNCDLoss(tiny_G, anchors)
    torch.testing.assert_close(term(LossInputs(w_plus=w)).mean(), sncd_loss(tiny_G, w, anchors))
    got = term(LossInputs(w_plus=w, layers=[0, 1, 2]))
    torch.testing.assert_close(got.mean(), sncd_loss(tiny_G, w, anchors, layers=[0, 1, 2]))
    norm = SNCDLoss(tiny_G, anchors, anchor_normalized=True)
    torch.testing.assert_close(
        norm(LossInputs(w_plus=w)).mean(), sncd_loss(tiny_G, w, anchors, anchor_normalized=True)
    )
    assert "anchor_0" in term.state_dict() and not any(
        k.startswith("_G") for k in term.state_dict()
    )


def test_delta_and_w_norm():
    w = torch.randn(2, 1, 8).repeat(1, 5, 1)
    assert torch.equal(DeltaNormLoss()(LossInputs(w_plus=w)), torch.zeros(2))
    w2 = w.clone()
    w2[:, 3] += 2.0
    d = DeltaNormLoss()(LossInputs(w_plus=w2))
    torch.testing.assert_close(d, torch.full((2,), 2.0 * 8**0.5))
    assert torch.equal(DeltaNormLoss()(LossInputs(w_plus=w2, layers=[0, 1, 2])), torch.zeros(2))
    avg = torch.zeros(8)
    torch.testing.assert_close(WNormLoss(avg)(LossInputs(w_plus=w)), w.norm(dim=2).mean(1))


def test_noise_regulariser_prefers_white_noise():
    white = [torch.randn(2, 1, 32, 32), torch.randn(2, 1, 16, 16)]
    smooth = [
        torch.nn.functional.avg_pool2d(torch.randn(2, 1, 36, 36), 5, stride=1) for _ in range(1)
    ]
    normalize_noise_(smooth)
    reg = NoiseRegLoss()
    assert reg(LossInputs(noise=smooth)).min() > 10 * reg(LossInputs(noise=white)).max()
    maps = [torch.randn(3, 1, 8, 8) * 5 + 2]
    normalize_noise_(maps)
    torch.testing.assert_close(maps[0].mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(maps[0].std(dim=(1, 2, 3)), torch.ones(3))


def test_objective_weights_and_skips_terms(tiny_G):
    from lsap.cli._common import config_dir

    cfg = OmegaConf.load(f"{config_dir()}/loss/lsap_o.yaml")
    cfg.options.lpips.backbone = "random"
    cfg.l2 = 0.5
    anchors = compute_anchors(tiny_G, 2000, 0)
    obj = build_objective(cfg, generator=tiny_G, anchors=anchors)
    assert set(obj.terms) == {"l2", "lpips", "sncd", "noise_reg"}  # id, delta_norm, w_norm are 0
    w = torch.randn(2, tiny_G.num_ws, 64)
    noise = [torch.randn(2, *s[1:]) for s in tiny_G.synthesis.noise_shapes()]
    img = tiny_G.synthesis(w, noise=noise)
    inputs = LossInputs(images=img, targets=_imgs(2, 32), w_plus=w, noise=noise)
    total, terms = obj(inputs)
    expected = sum(cfg[k] * terms[k] for k in terms)
    torch.testing.assert_close(total, expected)
    with pytest.raises(ValueError, match="'noise_reg' needs 'noise'"):
        obj(LossInputs(images=img, targets=img, w_plus=w))
    cfg.sncd = 0.0
    assert "sncd" not in build_objective(cfg, generator=tiny_G, anchors=anchors).terms


def test_objective_refuses_a_config_missing_a_key(tiny_G):
    """Every weight and every weighted term's setting comes from conf/loss/: a missing one is a
    one-line error naming it, not a default."""
    anchors = compute_anchors(tiny_G, 200, 0)
    full = conf_group("loss", "lsap_o", l2=1.0, lpips=0.0)
    assert "sncd" in build_objective(full, generator=tiny_G, anchors=anchors).terms
    cases = [
        ({k: v for k, v in full.items() if k != "w_norm"}, "the loss config misses w_norm"),
        ({k: v for k, v in full.items() if k != "options"}, "the loss config misses options"),
        (
            {**full, "options": {**full["options"], "sncd": {"mode": "reference"}}},
            "loss.options.sncd misses anchor_normalized, target, target_samples, target_seed",
        ),
        (
            {**full, "lpips": 1.0, "options": {"sncd": full["options"]["sncd"]}},
            "loss.options.lpips misses net, backbone, resize",
        ),
    ]
    for cfg, message in cases:
        with pytest.raises(ValueError) as e:
            build_objective(cfg, generator=tiny_G, anchors=anchors)
        assert str(e.value) == f"{message} (see conf/loss/)"
    # a term with weight 0 needs no settings
    no_sncd = {**full, "sncd": 0.0, "options": {}}
    assert set(build_objective(no_sncd, generator=tiny_G).terms) == {"l2", "noise_reg"}
    with pytest.raises(ValueError, match=r"^refinement\.loss\.options\.lpips misses resize \(see"):
        build_objective(
            {**no_sncd, "lpips": 1.0, "options": {"lpips": {"net": "vgg", "backbone": "random"}}},
            config_key="refinement.loss",
        )
