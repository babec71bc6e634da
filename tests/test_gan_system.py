"""The Lightning GAN trainer on a 16 px generator: steps change G and D, G_ema follows the EMA rule,
and the training script resumes from its last checkpoint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lsap.data.toy import ToyFaces, collate_toy
from lsap.toy.ema import ema_beta
from lsap.toy.gan import GANSystem

ROOT = Path(__file__).resolve().parents[1]
ARCH = dict(resolution=16, z_dim=16, w_dim=16, n_mlp=2, channel_base=128, channel_max=32)
D_ARCH = dict(channel_base=128, channel_max=32)


def _fit(system: GANSystem, batches: int, batch_size: int = 4) -> None:
    faces = ToyFaces(batches * batch_size, seed=0, resolution=16)
    data = DataLoader(faces, batch_size=batch_size, collate_fn=collate_toy)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=batches,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(system, data)


def _params(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.named_parameters()}


def test_one_step_updates_g_and_d_and_ema_follows_the_rule():
    ema_kimg = 0.008  # half-life 8 images: beta = 0.5 ** (4 / 8) at batch 4
    system = GANSystem(ARCH, D_ARCH, ema_kimg=ema_kimg, ema_rampup=None, seed=0)
    g0, d0, e0 = _params(system.G), _params(system.D), _params(system.G_ema)
    for k in g0:
        torch.testing.assert_close(e0[k], g0[k])  # G_ema starts as a copy of G
    w_avg0 = system.G.w_avg.clone()
    _fit(system, batches=1)

    g1, d1, e1 = _params(system.G), _params(system.D), _params(system.G_ema)
    changed_g = [k for k in g0 if not torch.equal(g0[k], g1[k])]
    changed_d = [k for k in d0 if not torch.equal(d0[k], d1[k])]
    # all of D moves; every generator weight except those the loss cannot reach yet
    assert len(changed_d) == len(d0)
    assert len(changed_g) > 0.9 * len(g0)
    beta = ema_beta(4, ema_kimg)
    assert beta == pytest.approx(0.5**0.5)
    for k in g0:  # G_ema = beta * G_ema_before + (1 - beta) * G_after
        torch.testing.assert_close(e1[k], beta * e0[k] + (1 - beta) * g1[k], rtol=1e-5, atol=1e-6)
    assert int(system.seen_images) == 4 and int(system.reg_steps) == 1
    assert not torch.equal(system.G.w_avg, w_avg0)  # tracks the mapped batches
    torch.testing.assert_close(system.G_ema.w_avg, system.G.w_avg)  # buffers are copied


def test_two_steps_and_max_images_stop():
    system = GANSystem(ARCH, D_ARCH, max_images=8, r1_interval=1, seed=1)
    d0 = _params(system.D)
    _fit(system, batches=5)
    assert int(system.seen_images) == 8 and int(system.reg_steps) == 2  # stopped after 8 images
    assert all(not torch.equal(d0[k], v) for k, v in _params(system.D).items())


def test_seed_makes_initialisation_reproducible():
    a, b = GANSystem(ARCH, D_ARCH, seed=3), GANSystem(ARCH, D_ARCH, seed=3)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


@pytest.mark.slow
def test_training_script_writes_and_resumes(tmp_path):
    from hydra import compose, initialize_config_dir

    spec = importlib.util.spec_from_file_location(
        "train_toy_gan", ROOT / "scripts/train_toy_gan.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    import lsap

    overrides = [
        f"paths.output_dir={tmp_path}",
        "logger=none",
        "data.num_train=32",
        "data.resolution=16",
        "data.batch_size=4",
        "generator.arch.resolution=16",
        "discriminator.resolution=16",
        "generator.arch.channel_base=128",
        "generator.arch.channel_max=32",
        "generator.arch.w_dim=16",
        "generator.arch.z_dim=16",
        "discriminator.channel_base=128",
        "discriminator.channel_max=32",
        "checkpoint_every_n_steps=2",
        "samples.every_n_steps=2",
        "samples.num=4",
        "export.every_n_steps=2",
        "gan.max_images=12",
    ]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("toy_gan", overrides=overrides)
    script.train(cfg)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert int(state["seen_images"]) == 12
    G = lsap.load_generator(tmp_path / "generator.pt")
    assert G.resolution == 16 and G.synthesis.const.dtype == torch.float32
    assert (tmp_path / "samples" / "latest.png").is_file()

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("toy_gan", overrides=[*overrides[:-1], "gan.max_images=20"])
    script.train(cfg)  # same run folder + ckpt_path=last: continues from 12 images
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert int(state["seen_images"]) == 20 and int(state["reg_steps"]) == 5
