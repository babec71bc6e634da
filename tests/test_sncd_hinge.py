"""The hinge variant of the alignment loss: zero where codes are as aligned as the generator's
samples, positive beyond, and its gradient pulls only from the far side (with the reference
loss's gradient there). Also the samples' SNCD it uses as a target, and its cache."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from lsap.alignment import compute_anchors, sncd, sncd_loss
from lsap.alignment.reference import SampleSNCD, sample_sncd
from lsap.alignment.sncd import sncd_hinge_loss
from lsap.losses import LossInputs, build_objective
from lsap.losses.alignment import SNCDLoss
from lsap.nets import iter_w

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def anchors(tiny_G):
    return compute_anchors(tiny_G, 5000, seed=0)


@pytest.fixture(scope="module")
def samples(tiny_G, anchors):
    return sample_sncd(tiny_G, anchors, 2000, seed=1)


def _w_plus(G, n, seed):
    w = torch.cat(list(iter_w(G, n, seed=seed)))
    return w[:, None].repeat(1, G.num_ws, 1)


def test_samples_sncd_matches_the_metric(tiny_G, anchors, samples):
    per_layer = sncd(tiny_G, _w_plus(tiny_G, 2000, 1), anchors)[1]
    torch.testing.assert_close(samples.per_layer, per_layer)
    assert samples.per_layer.shape == (2000, tiny_G.num_ws)
    torch.testing.assert_close(samples.layer_target("mean"), per_layer.mean(0))
    q = samples.layer_target(0.1)
    assert (q < samples.layer_target("mean")).all()  # SNCD is skewed right: the 10 % are lower
    assert samples.quantile(0.01) < samples.mean < samples.quantile(0.99)
    with pytest.raises(ValueError, match="quantile"):
        samples.layer_target(1.5)
    with pytest.raises(ValueError, match="mean"):
        samples.layer_target("median")


def test_zero_where_codes_are_as_aligned_as_samples(tiny_G, anchors, samples):
    target = samples.layer_target("mean")
    w = _w_plus(tiny_G, 200, 7)
    per_layer = sncd(tiny_G, w, anchors)[1]
    aligned = (per_layer <= target).all(1)  # codes at or below the target on every layer
    assert aligned.sum() >= 2 and (~aligned).sum() >= 2
    w_in = w[aligned].clone().requires_grad_(True)
    loss = sncd_hinge_loss(tiny_G, w_in, anchors, target)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(w_in.grad) == 0  # no pull at all: nothing makes them more average
    # codes exactly at their own per-layer SNCD as target: zero too
    own = sncd(tiny_G, w[:1], anchors)[1][0]
    assert sncd_hinge_loss(tiny_G, w[:1], anchors, own + 1e-6).item() == 0.0


def test_positive_beyond_and_growing_with_distance(tiny_G, anchors, samples):
    target = samples.layer_target("mean")
    w0 = _w_plus(tiny_G, 32, 3)
    direction = torch.randn(1, 1, tiny_G.w_dim, generator=torch.Generator().manual_seed(0))
    values = [
        sncd_hinge_loss(tiny_G, w0 + s * direction * 3.0, anchors, target).item()
        for s in (1.0, 2.0, 4.0)
    ]
    assert values[0] > 0
    assert values[0] < values[1] < values[2]
    # per sample: the hinge is the sum of the layers' excess over the target, weighted by ||a_i||
    w = w0 + 4.0 * direction * 3.0
    per_layer = sncd(tiny_G, w, anchors)[1]
    norms = torch.stack([a.norm() for a in anchors])
    expected = (norms * (per_layer - target).clamp_min(0)).sum(1).mean()
    torch.testing.assert_close(sncd_hinge_loss(tiny_G, w, anchors, target), expected)
    unit = (per_layer - target).clamp_min(0).sum(1).mean()
    got = sncd_hinge_loss(tiny_G, w, anchors, target, anchor_normalized=True)
    torch.testing.assert_close(got, unit)


def test_gradient_pulls_only_from_the_far_side(tiny_G, anchors, samples):
    """Above the target a layer gets exactly the reference loss's gradient; below, none; a descent
    step lowers the excess and never pushes a code below the target."""
    target = samples.layer_target("mean")
    w = _w_plus(tiny_G, 64, 11)
    w[32:] += 2.0 * torch.randn(w[32:].shape, generator=torch.Generator().manual_seed(1))
    per_layer = sncd(tiny_G, w, anchors)[1].detach()
    above = per_layer > target  # [N, L]
    assert above.any() and (~above).any()
    w_h = w.clone().requires_grad_(True)
    sncd_hinge_loss(tiny_G, w_h, anchors, target).backward()
    for i in range(tiny_G.num_ws):
        w_r = w.clone().requires_grad_(True)
        sncd_loss(tiny_G, w_r, anchors, layers=[i]).backward()
        ref = w_r.grad[:, i]
        torch.testing.assert_close(w_h.grad[above[:, i], i], ref[above[:, i]])
        assert torch.count_nonzero(w_h.grad[~above[:, i], i]) == 0
    # descent on the hinge: excess shrinks, and a layer starting below never moves
    w_opt = w.clone().requires_grad_(True)
    opt = torch.optim.Adam([w_opt], lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        sncd_hinge_loss(tiny_G, w_opt, anchors, target).backward()
        opt.step()
    after = sncd(tiny_G, w_opt, anchors)[1].detach()
    excess_before = (per_layer - target).clamp_min(0).sum()
    excess_after = (after - target).clamp_min(0).sum()
    assert excess_after < 0.5 * excess_before
    untouched = ~above
    torch.testing.assert_close(w_opt.detach()[untouched], w[untouched])


def test_loss_term_and_objective(tiny_G, anchors, samples, tmp_path):
    target = samples.layer_target("mean")
    w = _w_plus(tiny_G, 8, 5) + 3.0 * torch.randn(8, tiny_G.num_ws, tiny_G.w_dim)
    term = SNCDLoss(tiny_G, anchors, mode="hinge", target=target)
    torch.testing.assert_close(
        term(LossInputs(w_plus=w)).mean(), sncd_hinge_loss(tiny_G, w, anchors, target)
    )
    got = term(LossInputs(w_plus=w, layers=[0, 1, 2])).mean()
    torch.testing.assert_close(got, sncd_hinge_loss(tiny_G, w, anchors, target, layers=[0, 1, 2]))
    with pytest.raises(ValueError, match="mode"):
        SNCDLoss(tiny_G, anchors, mode="average")
    with pytest.raises(ValueError, match="target"):
        SNCDLoss(tiny_G, anchors, mode="hinge")

    from lsap.cli._common import config_dir

    cfg = OmegaConf.load(f"{config_dir()}/loss/lsap_o.yaml")
    assert cfg.options.sncd.mode == "reference"  # the paper's loss stays the default
    cfg.lpips = 0.0
    cfg.l2 = 1.0
    cfg.options.sncd.mode = "hinge"
    cfg.options.sncd.target_samples = 2000
    obj = build_objective(cfg, generator=tiny_G, anchors=anchors, cache_dir=str(tmp_path))
    torch.testing.assert_close(obj.terms["sncd"].target, target)  # seed 1, 2000 samples
    a_sha = next(tmp_path.glob("sample-sncd-*.pt")).name
    assert a_sha.endswith("-n2000-seed1.pt")
    cfg.options.sncd.target = 0.25
    obj = build_objective(cfg, generator=tiny_G, anchors=anchors, cache_dir=str(tmp_path))
    torch.testing.assert_close(obj.terms["sncd"].target, samples.layer_target(0.25))


def test_sample_cache_is_keyed_and_reused(tiny_G, other_G, anchors, tmp_path, monkeypatch):
    first = sample_sncd(tiny_G, anchors, 500, seed=1, cache_dir=tmp_path)
    path = next(tmp_path.glob("*.pt"))
    assert path.name.startswith(f"sample-sncd-{tiny_G.sha256[:16]}-a")
    assert path.name.endswith("-n500-seed1.pt")

    def boom(*a, **k):
        raise AssertionError("recomputed despite a valid cache")

    import lsap.alignment.reference as ref

    monkeypatch.setattr(ref, "iter_w", boom)
    again = sample_sncd(tiny_G, anchors, 500, seed=1, cache_dir=tmp_path)
    torch.testing.assert_close(again.per_layer, first.per_layer)
    monkeypatch.undo()
    other_anchors = compute_anchors(other_G, 1000, seed=0)
    other = sample_sncd(other_G, other_anchors, 500, seed=1, cache_dir=tmp_path)
    assert not torch.equal(other.per_layer, first.per_layer)
    assert len(list(tmp_path.glob("*.pt"))) == 2
    assert isinstance(other, SampleSNCD)
