"""optimize_latents: it inverts, SNCD aligns, images stay independent, the generator is untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from conf_entries import conf_group, inversion_kwargs

from lsap.alignment import compute_anchors, sncd
from lsap.inversion import Schedule, latent_std, optimize_latents
from lsap.losses import build_objective

LPIPS_RANDOM = {"lpips": {"net": "alex", "backbone": "random"}}  # per-image, as vgg; cheaper


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def anchors(tiny_G):
    return compute_anchors(tiny_G, 4000, 0)


@pytest.fixture(scope="module")
def known(tiny_G):
    """Targets made by the generator from known W codes: [3, w_dim] codes, [3, 3, 32, 32] images."""
    w = tiny_G.mapping(torch.randn(3, tiny_G.z_dim, generator=torch.Generator().manual_seed(7)))
    with torch.no_grad():
        images = tiny_G.synthesis(w.detach(), noise_mode="const")
    return w.detach(), images


def _schedule(**changes):
    """conf/inversion/w_plus.yaml's schedule with ``changes``."""
    return Schedule.from_config(conf_group("inversion", "w_plus", schedule=changes)["schedule"])


def test_schedule_follows_the_projector():
    s = _schedule()  # ramp-up 5 %, cosine ramp-down 25 %, noise 0.05 decaying until 75 %
    assert s.lr_scale(0.0) == 0.0
    assert s.lr_scale(0.025) == pytest.approx(0.5)
    assert s.lr_scale(0.05) == pytest.approx(1.0) and s.lr_scale(0.7) == pytest.approx(1.0)
    assert s.lr_scale(0.875) == pytest.approx(0.5)  # half-way down the cosine
    assert s.lr_scale(0.999) < 1e-4
    assert s.noise_scale(0.0) == pytest.approx(0.05)
    assert s.noise_scale(0.375) == pytest.approx(0.05 * 0.25)
    assert s.noise_scale(0.75) == 0.0 and s.noise_scale(0.9) == 0.0
    flat = _schedule(lr_rampup=0, lr_rampdown=0, noise_factor=0)
    assert flat.lr_scale(0.0) == flat.lr_scale(0.99) == 1.0 and flat.noise_scale(0.0) == 0.0
    with pytest.raises(ValueError, match="lr_rampup"):
        _schedule(lr_rampup=1.5)


def test_latent_std_is_rms_distance(tiny_G):
    from lsap.nets import iter_w

    ws = torch.cat(list(iter_w(tiny_G, 2000, seed=3))).double()
    expected = float((ws - ws.mean(0)).norm(dim=1).square().mean().sqrt())
    assert latent_std(tiny_G, 2000, seed=3) == pytest.approx(expected, rel=1e-6)


def test_recovers_images_made_by_the_generator(tiny_G, known):
    _, targets = known
    objective = build_objective(
        conf_group("loss", "projector", l2=1.0, lpips=0.0, noise_reg=0.0), generator=tiny_G
    )
    # the targets were rendered with the stored noise: optimise the codes alone
    result = optimize_latents(
        tiny_G, targets, objective, **inversion_kwargs(tiny_G, steps=100, optimize_noise=False)
    )
    with torch.no_grad():
        start = tiny_G.synthesis(tiny_G.w_avg.expand(3, -1), noise_mode="const")
    mse_start = (start - targets).square().flatten(1).mean(1)
    mse_end = (result.images - targets).square().flatten(1).mean(1)
    assert (mse_end < mse_start / 10).all(), (mse_start, mse_end)
    l2 = result.history["l2"]
    assert l2.shape == (100, 3) and (l2[-1] < l2[0] / 10).all()
    assert set(result.history) == {"loss", "l2"} and result.noise is None
    assert result.w_plus.shape == (3, tiny_G.num_ws, tiny_G.w_dim)
    # the returned images are the generator's output for the returned codes
    with torch.no_grad():
        again = tiny_G.synthesis(result.w_plus, noise_mode="const")
    torch.testing.assert_close(result.images, again)


def test_sncd_term_lowers_sncd_from_the_same_start(tiny_G, known, anchors):
    _, targets = known
    finals = {}
    for weight in (0.0, 1.0):
        objective = build_objective(
            conf_group("loss", "lsap_o", l2=1.0, lpips=0.0, sncd=weight, noise_reg=1e5),
            generator=tiny_G,
            anchors=anchors,
        )
        r = optimize_latents(
            tiny_G, targets, objective, seeds=[1, 2, 3], **inversion_kwargs(tiny_G, steps=30)
        )
        finals[weight] = sncd(tiny_G, r.w_plus, anchors)[0]
    assert (finals[1.0] < finals[0.0]).all(), finals
    assert float(finals[1.0].mean()) < 0.5 * float(finals[0.0].mean())


def test_generator_is_untouched(tiny_G, known, anchors):
    _, targets = known
    before = {k: v.clone() for k, v in tiny_G.state_dict().items()}
    flags = {k: p.requires_grad for k, p in tiny_G.named_parameters()}
    objective = build_objective(
        conf_group("loss", "lsap_o", l2=1.0, lpips=0.0, sncd=0.5, noise_reg=1e5),
        generator=tiny_G,
        anchors=anchors,
    )
    optimize_latents(tiny_G, targets, objective, **inversion_kwargs(tiny_G, steps=5))
    after = tiny_G.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k  # bit-identical
    assert all(p.grad is None for p in tiny_G.parameters())
    assert flags == {k: p.requires_grad for k, p in tiny_G.named_parameters()}


@pytest.mark.parametrize(
    ("space", "terms"),
    [("w_plus", {"lpips": 1.0, "options": LPIPS_RANDOM}), ("w", {"l2": 1.0})],
)
def test_batch_of_n_equals_n_runs_of_one(tiny_G, known, anchors, space, terms):
    """Per-sample losses summed, elementwise Adam, per-image seeded noise: no cross-talk.

    In float64: in float32 the batched convolutions round differently from single ones, and Adam
    turns gradients at rounding level into full-size steps of either sign; in float64 that
    rounding is far below the tolerance, so any cross-talk between images would show.
    """
    G = copy.deepcopy(tiny_G).double()
    targets = known[1].double()
    objective = build_objective(
        conf_group("loss", "lsap_o", **{"lpips": 0.0, **terms, "sncd": 0.5, "noise_reg": 1e5}),
        generator=G,
        anchors=[a.double() for a in anchors],
    ).double()
    seeds = [11, 22, 33]
    kwargs = inversion_kwargs(
        G,
        space=space,
        steps=8,
        schedule=_schedule(lr_rampup=0.0),
        w_std=latent_std(tiny_G, 2000, 123),
    )
    batch = optimize_latents(G, targets, objective, seeds=seeds, **kwargs)
    assert batch.w_plus.dtype == torch.float64
    tol = {"atol": 1e-8, "rtol": 1e-8}
    for i in range(3):
        one = optimize_latents(G, targets[i : i + 1], objective, seeds=seeds[i : i + 1], **kwargs)
        torch.testing.assert_close(batch.w_plus[i : i + 1], one.w_plus, **tol)
        for a, b in zip(batch.noise, one.noise, strict=True):
            torch.testing.assert_close(a[i : i + 1], b, **tol)
        torch.testing.assert_close(batch.history["loss"][:, i : i + 1], one.history["loss"], **tol)
    # batch order does not matter either; the start really moved
    rev = optimize_latents(G, targets.flip(0), objective, seeds=seeds[::-1], **kwargs)
    torch.testing.assert_close(rev.w_plus.flip(0), batch.w_plus, **tol)
    assert (batch.w_plus - G.w_avg).abs().max() > 0.1
    for n in batch.noise:  # optimised noise maps stay normalised per image
        torch.testing.assert_close(n.mean((1, 2, 3)), torch.zeros(3).double(), atol=1e-6, rtol=0)
        torch.testing.assert_close(n.std((1, 2, 3)), torch.ones(3).double(), atol=1e-6, rtol=0)
    if space == "w":  # one code repeated on every layer
        torch.testing.assert_close(batch.w_plus, batch.w_plus[:, :1].expand_as(batch.w_plus))
    # float32 agrees with float64 to float32 precision (one step: before Adam amplifies rounding)
    objective32 = build_objective(
        conf_group("loss", "lsap_o", **{"lpips": 0.0, **terms, "sncd": 0.5, "noise_reg": 1e5}),
        generator=tiny_G,
        anchors=anchors,
    )
    one_step = {**kwargs, "steps": 1, "seeds": seeds[:1]}
    one32 = optimize_latents(tiny_G, known[1][:1], objective32, **one_step)
    one64 = optimize_latents(G, targets[:1], objective, **one_step)
    torch.testing.assert_close(one32.w_plus.double(), one64.w_plus, atol=1e-4, rtol=1e-4)


def test_init_codes_and_stored_noise(tiny_G, known):
    w, targets = known
    objective = build_objective(
        conf_group("loss", "projector", l2=1.0, lpips=0.0, noise_reg=0.0), generator=tiny_G
    )
    start = optimize_latents(
        tiny_G,
        targets,
        objective,
        init=w,
        **inversion_kwargs(tiny_G, steps=0, optimize_noise=False),
    )
    assert start.noise is None and start.history["loss"].shape == (0, 3)
    torch.testing.assert_close(start.w_plus, w[:, None].expand(-1, tiny_G.num_ws, -1))
    torch.testing.assert_close(start.images, targets)  # the stored noise reproduces the targets
    # without latent noise a start at the answer has zero gradient: Adam leaves it there
    kwargs = inversion_kwargs(
        tiny_G, steps=5, optimize_noise=False, schedule=_schedule(noise_factor=0.0)
    )
    from_w = optimize_latents(tiny_G, targets, objective, init=w, **kwargs)
    assert float(from_w.history["l2"].abs().max()) == 0.0
    torch.testing.assert_close(from_w.w_plus, start.w_plus, atol=0, rtol=0)
    from_avg = optimize_latents(tiny_G, targets, objective, **kwargs)
    assert (from_avg.history["l2"] > 0.01).all()
    with pytest.raises(ValueError, match="noise_reg"):
        reg = build_objective(
            conf_group("loss", "projector", l2=1.0, lpips=0.0, noise_reg=1.0), generator=tiny_G
        )
        optimize_latents(
            tiny_G, targets, reg, **inversion_kwargs(tiny_G, steps=1, optimize_noise=False)
        )


def test_bad_arguments(tiny_G, known):
    _, targets = known
    objective = build_objective(
        conf_group("loss", "projector", l2=1.0, lpips=0.0, noise_reg=0.0), generator=tiny_G
    )
    kw = inversion_kwargs(tiny_G, steps=1)
    with pytest.raises(ValueError, match=r"targets must be \[N, 3, 32, 32\]"):
        optimize_latents(tiny_G, targets[:, :, :16, :16], objective, **kw)
    with pytest.raises(ValueError, match="space must be one of"):
        optimize_latents(tiny_G, targets, objective, **{**kw, "space": "s"})
    with pytest.raises(ValueError, match="2 seeds for 3 images"):
        optimize_latents(tiny_G, targets, objective, seeds=[1, 2], **kw)
    with pytest.raises(ValueError, match="init holds 1 codes for 3 targets"):
        optimize_latents(tiny_G, targets, objective, init=tiny_G.w_avg[None], **kw)
    with pytest.raises(ValueError, match=r"adds latent noise .* pass w_std"):
        optimize_latents(tiny_G, targets, objective, **{**kw, "w_std": None})
