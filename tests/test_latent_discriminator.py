"""e4e's latent-code discriminator: the network, the code pool, D's update, the encoder's
adversarial term, and its wiring in encoder training (``loss.w_discriminator`` > 0)."""

from __future__ import annotations

import math

import pytest
import torch
from test_train import cache_dir, read_log, tiny_cfg  # noqa: F401  (fixture)

from lsap.cli.train import train
from lsap.nets.latent_discriminator import LatentDiscriminator
from lsap.training import LatentPool, discriminator_step, encoder_adversarial_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_discriminator_maps_codes_to_one_logit_each():
    D = LatentDiscriminator(16, num_layers=4)
    assert D(torch.randn(5, 16)).shape == (5,)
    linears = [m for m in D.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 16)] * 3 + [(16, 1)]
    with pytest.raises(ValueError, match=r"expected codes \[N, 16\]"):
        D(torch.randn(5, 8, 16))
    with pytest.raises(ValueError, match="num_layers"):
        LatentDiscriminator(16, num_layers=0)


def test_pool_passes_through_when_off_and_mixes_in_past_codes_when_full():
    w = torch.randn(6, 4)
    assert torch.equal(LatentPool(0).query(w), w)

    g = torch.Generator().manual_seed(5)  # the test's data: the global random state stays put
    state = torch.random.get_rng_state()
    pool = LatentPool(4, seed=0)
    first = torch.randn(4, 4, generator=g)
    assert torch.equal(pool.query(first), first)  # filling: returned as given
    seen = {tuple(c.tolist()) for c in first}
    swapped = 0
    for _ in range(10):
        new = torch.randn(8, 4, generator=g)
        out = pool.query(new)
        assert out.shape == new.shape
        for o, n in zip(out, new, strict=True):
            assert tuple(o.tolist()) in seen | {tuple(n.tolist())}  # a past code or itself
            swapped += not torch.equal(o, n)
            seen.add(tuple(n.tolist()))  # stored codes include this batch's earlier ones
    assert 20 < swapped < 60  # about half of the 80 queries once full
    assert len(pool.codes) == 4
    assert torch.equal(torch.random.get_rng_state(), state)  # own generator only


def test_discriminator_step_learns_to_tell_mapped_codes_from_the_encoders():
    torch.manual_seed(0)
    D = LatentDiscriminator(8, num_layers=3)
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)
    first = None
    for step in range(150):
        real = torch.randn(32, 8) + 1.5
        fake = torch.randn(32, 8) - 1.5
        stats = discriminator_step(D, opt, real, fake, step=step, r1_gamma=1.0, r1_interval=4)
        assert ("r1" in stats) == (step % 4 == 0)
        first = first or stats
    assert first["loss"] > 1.0  # about 2 log 2 untrained
    assert stats["loss"] < 0.2 and stats["real"] > 2.0 > -2.0 > stats["fake"]
    assert all(p.grad is None for p in D.parameters())  # left clean


def test_encoder_adversarial_term_is_log2_at_zero_logits_and_moves_only_the_codes():
    D = LatentDiscriminator(8, num_layers=2).requires_grad_(False)
    torch.nn.init.zeros_(D.mlp[-1].weight)
    torch.nn.init.zeros_(D.mlp[-1].bias)
    w_plus = torch.randn(3, 5, 8, requires_grad=True)
    loss = encoder_adversarial_loss(D, w_plus, layers=[0, 1])
    torch.testing.assert_close(loss, torch.full((3,), math.log(2.0)))

    torch.nn.init.normal_(D.mlp[-1].weight)
    loss = encoder_adversarial_loss(D, w_plus, layers=[0, 1])
    loss.sum().backward()
    assert w_plus.grad[:, :2].abs().sum() > 0 and w_plus.grad[:, 2:].abs().sum() == 0
    assert all(p.grad is None for p in D.parameters())
    with pytest.raises(ValueError, match="w_plus must be"):
        encoder_adversarial_loss(D, torch.randn(3, 8))


def test_encoder_training_with_the_latent_discriminator_trains_and_resumes_it(
    tmp_path,
    cache_dir,  # noqa: F811
):
    overrides = [
        "trainer.max_steps=12",
        "trainer.val_check_interval=12",
        "data.num_train=64",
        "data.num_val=8",
        "loss.w_discriminator=0.1",
        "loss.options.w_discriminator.r1_interval=4",
        "loss.options.w_discriminator.lr=1e-3",
        "callbacks.checkpoint.every_n_train_steps=6",
    ]
    result = train(tiny_cfg(tmp_path, cache_dir, *overrides))
    system = result.system
    assert result.trainer.global_step == 12  # D's steps are not training steps
    rows = read_log(tmp_path)
    adv = [
        float(r["train/loss/w_discriminator"]) for r in rows if r.get("train/loss/w_discriminator")
    ]
    d_loss = [
        float(r["train/w_discriminator/loss"]) for r in rows if r.get("train/w_discriminator/loss")
    ]
    r1 = [r for r in rows if r.get("train/w_discriminator/r1")]
    assert adv and d_loss and r1
    assert all(0 < v < 5 for v in adv + d_loss)
    # D is trained (not in the encoder's state_dict) and saved beside it with its optimiser
    assert all(k.startswith("encoder.") for k in system.state_dict())
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    saved = ckpt["w_discriminator"]
    assert saved["steps"] == 12 and saved["optimizer"]["state"]
    for k, v in system.w_discriminator.state_dict().items():
        assert torch.equal(saved["state_dict"][k], v)
    fresh = LatentDiscriminator(system.G.w_dim)
    assert not torch.equal(fresh.mlp[0].weight, saved["state_dict"]["mlp.0.weight"])

    # resuming restores D, its Adam state and its step count (then trains on from there)
    resumed = train(tiny_cfg(tmp_path, cache_dir, *overrides[1:], "trainer.max_steps=14"))
    assert resumed.trainer.global_step == 14
    assert resumed.system._wd.steps == 14
    ckpt2 = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt2["w_discriminator"]["optimizer"]["state"][0]["step"] == 14 + 4  # + R1 at 0 4 8 12
