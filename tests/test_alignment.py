"""SNCD behaves as LSAP defines it: low on the generator's own samples, higher away from them."""

from __future__ import annotations

import itertools
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lsap.alignment import (
    SNCDMetric,
    compute_anchors,
    normalize_styles,
    sncd,
    sncd_batched,
    sncd_loss,
)
from lsap.alignment.anchors import anchor_cache_path
from lsap.nets import iter_w

N_ANCHOR = 20_000


@pytest.fixture(scope="module")
def anchors(tiny_G):
    return compute_anchors(tiny_G, N_ANCHOR, seed=0)


def _w_plus(G, n, seed):
    w = torch.cat(list(iter_w(G, n, seed=seed)))
    return w[:, None].repeat(1, G.num_ws, 1)


def test_anchor_is_the_mean_unit_style(tiny_G, anchors):
    w = torch.cat(list(iter_w(tiny_G, N_ANCHOR, seed=0)))
    for i, (a, n) in enumerate(zip(anchors, normalize_styles(tiny_G.style_space(w)), strict=True)):
        assert a.shape == (tiny_G.style_layers[i].affine.weight.shape[0],)
        torch.testing.assert_close(a, n.mean(0), atol=1e-5, rtol=1e-4)
        assert 0.0 < a.norm() < 1.0


def test_anchors_do_not_depend_on_batch_size(tiny_G, anchors):
    for a, b in zip(anchors, compute_anchors(tiny_G, N_ANCHOR, 0, batch_size=777), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_samples_score_near_the_anchor_expectation(tiny_G, anchors):
    # E[<n_i, a_i>] = ||a_i||^2 over the samples, so E[SNCD_i] = 1 - ||a_i||.
    total, per_layer = sncd(tiny_G, _w_plus(tiny_G, 4000, seed=99), anchors)
    expected = torch.stack([1 - a.norm() for a in anchors])
    torch.testing.assert_close(per_layer.mean(0), expected, atol=0.01, rtol=0.05)
    assert total.mean() == pytest.approx(float(expected.sum()), rel=0.03)


def test_per_layer_values_sum_to_total_and_lie_in_range(tiny_G, anchors):
    total, per_layer = sncd(tiny_G, torch.randn(5, tiny_G.num_ws, 64) * 3, anchors)
    assert per_layer.shape == (5, tiny_G.num_ws)
    torch.testing.assert_close(total, per_layer.sum(1))
    assert (per_layer >= 0).all() and (per_layer <= 2).all()
    sub_total, sub = sncd(tiny_G, torch.randn(5, tiny_G.num_ws, 64), anchors, layers=[0, 3, -1])
    assert sub.shape == (5, 3)
    torch.testing.assert_close(sub_total, sub.sum(1))


def test_sncd_is_zero_exactly_along_the_anchor(tiny_G, anchors):
    styles = [a[None].clone() * 3.0 for a in anchors]  # any positive multiple of the anchor
    _total, per_layer = sncd(styles, None, anchors)
    torch.testing.assert_close(per_layer, torch.zeros_like(per_layer), atol=1e-6, rtol=0)


def _mean_sncd(G, anchors, codes):
    return float(sncd(G, codes, anchors)[0].mean())


def test_codes_pushed_away_score_worse_monotonically(tiny_G, anchors):
    base = _w_plus(tiny_G, 500, seed=7)
    avg = tiny_G.w_avg
    direction = torch.randn(tiny_G.w_dim, generator=torch.Generator().manual_seed(1))
    direction = direction / direction.norm() * (base - avg).norm(dim=-1).mean()
    noise = torch.randn(base.shape, generator=torch.Generator().manual_seed(2))
    noise = noise * (base - avg).norm(dim=-1, keepdim=True).mean() / tiny_G.w_dim**0.5
    pushes = {
        "scaled away from w_avg": lambda t: avg + (1 + t) * (base - avg),
        "shifted along a direction": lambda t: base + t * direction,
        "W+ layers decorrelated": lambda t: base + t * noise,
    }
    for name, push in pushes.items():
        scores = [_mean_sncd(tiny_G, anchors, push(t)) for t in (0.0, 0.5, 1.0, 2.0, 4.0)]
        assert all(b > a for a, b in itertools.pairwise(scores)), (name, scores)
        assert scores[-1] > 1.5 * scores[0], (name, scores)


def test_resampling_a_layer_from_the_prior_is_not_penalised(tiny_G, anchors):
    """SNCD scores each layer's marginal: mixing w's of different samples is still 'aligned'."""
    mixed = torch.cat(list(iter_w(tiny_G, 500 * tiny_G.num_ws, seed=3))).view(
        500, tiny_G.num_ws, -1
    )
    same = _w_plus(tiny_G, 500, seed=3)
    assert _mean_sncd(tiny_G, anchors, mixed) == pytest.approx(
        _mean_sncd(tiny_G, anchors, same), rel=0.1
    )


@pytest.mark.parametrize("anchor_normalized", [False, True])
def test_loss_matches_its_definition(tiny_G, anchors, anchor_normalized):
    w_plus = torch.randn(6, tiny_G.num_ws, 64)
    loss = sncd_loss(tiny_G, w_plus, anchors, anchor_normalized=anchor_normalized)
    _, per_layer = sncd(tiny_G, w_plus, anchors)
    cos = 1 - per_layer  # [N, L]
    weights = (
        torch.ones(len(anchors)) if anchor_normalized else torch.stack([a.norm() for a in anchors])
    )
    torch.testing.assert_close(loss, -(cos.mean(0) * weights).sum(), atol=1e-5, rtol=1e-5)
    # its minimum is reached exactly on the anchors
    best = sncd_loss([a[None] for a in anchors], None, anchors, anchor_normalized=anchor_normalized)
    torch.testing.assert_close(best, -weights.sum(), atol=1e-5, rtol=1e-5)
    assert loss > best
    sub = sncd_loss(tiny_G, w_plus, anchors, layers=[0, 1], anchor_normalized=anchor_normalized)
    torch.testing.assert_close(sub, -(cos[:, :2].mean(0) * weights[:2]).sum(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("anchor_normalized", [False, True])
def test_gradient_descent_on_the_loss_lowers_sncd(tiny_G, anchors, anchor_normalized):
    start = tiny_G.w_avg + 3.0 * torch.randn(
        4, tiny_G.num_ws, 64, generator=torch.Generator().manual_seed(4)
    )
    w_plus = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([w_plus], lr=0.05)
    before = sncd(tiny_G, start, anchors)[0]
    for _ in range(100):
        opt.zero_grad()
        sncd_loss(tiny_G, w_plus, anchors, anchor_normalized=anchor_normalized).backward()
        opt.step()
    after = sncd(tiny_G, w_plus.detach(), anchors)[0]
    assert (after < 0.5 * before).all(), (before, after)
    assert all(p.grad is None for p in tiny_G.parameters())


def test_anchor_cache_is_keyed_and_reused(tiny_G, other_G, tmp_path, monkeypatch):
    import lsap.alignment.anchors as mod

    calls = []
    real = mod._compute
    monkeypatch.setattr(mod, "_compute", lambda *a: calls.append(a[1:]) or real(*a))
    a1 = compute_anchors(tiny_G, 2000, 0, cache_dir=tmp_path)
    assert anchor_cache_path(tmp_path, tiny_G.sha256, 2000, 0).is_file()
    a2 = compute_anchors(tiny_G, 2000, 0, cache_dir=tmp_path)
    assert len(calls) == 1
    for x, y in zip(a1, a2, strict=True):
        assert torch.equal(x, y)
    compute_anchors(tiny_G, 2000, 1, cache_dir=tmp_path)  # other seed
    compute_anchors(other_G, 2000, 0, cache_dir=tmp_path)  # other generator
    assert len(calls) == 3
    # a cache file that lies about its generator is ignored, not trusted
    path = anchor_cache_path(tmp_path, other_G.sha256, 2000, 0)
    bad = torch.load(path, weights_only=True)
    bad["sha256"] = "0" * 64
    torch.save(bad, path)
    compute_anchors(other_G, 2000, 0, cache_dir=tmp_path)
    assert len(calls) == 4


def test_batched_scoring_equals_direct(tiny_G, anchors):
    codes = torch.randn(37, tiny_G.num_ws, 64)
    t1, p1 = sncd(tiny_G, codes, anchors)
    t2, p2 = sncd_batched(tiny_G, codes, anchors, batch_size=10)
    torch.testing.assert_close(t1, t2)
    torch.testing.assert_close(p1, p2)


def test_metric_accumulates_like_one_pass(tiny_G, anchors):
    codes = torch.randn(30, tiny_G.num_ws, 64)
    _, per_layer = sncd(tiny_G, codes, anchors)
    metric = SNCDMetric(tiny_G.num_ws)
    for chunk in per_layer.split(7):
        metric.update(chunk)
    out = metric.compute()
    torch.testing.assert_close(out["per_layer"], per_layer.mean(0))
    torch.testing.assert_close(out["total"], per_layer.sum(1).mean())
    torch.testing.assert_close(out["mean"], out["total"] / tiny_G.num_ws)
    with pytest.raises(ValueError, match=r"per_layer \[N, 8\]"):
        metric.update(per_layer[:, :3])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, per_layer, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        metric = SNCDMetric(per_layer.shape[1])
        metric.update(per_layer[rank::world])  # each rank sees a different, uneven share
        res = metric.compute()
        if rank == 0:
            out.put({k: v.tolist() for k, v in res.items()})  # plain values outlive the process
        dist.barrier()  # both ranks done before either tears down gloo (else a rank may abort)
    finally:
        dist.destroy_process_group()


def test_metric_over_two_ddp_ranks_equals_single_process(tiny_G, anchors):
    _, per_layer = sncd(tiny_G, torch.randn(11, tiny_G.num_ws, 64), anchors)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    mp.start_processes(
        _ddp_worker, args=(2, _free_port(), per_layer, out), nprocs=2, start_method="spawn"
    )
    res = out.get(timeout=60)
    single = SNCDMetric(tiny_G.num_ws)
    single.update(per_layer)
    ref = single.compute()
    for k in ("total", "mean", "per_layer"):
        torch.testing.assert_close(torch.tensor(res[k]), ref[k])
