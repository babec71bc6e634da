"""lsap-train in-process on the tiny generator (CPU): fast_dev_run, the loss goes down, SNCD
alignment lowers the validation SNCD, checkpoints hold the encoder only."""

from __future__ import annotations

import csv
import os

import pytest
import torch
from hydra import compose, initialize_config_dir

import lsap
from lsap.cli._common import config_dir
from lsap.cli.train import resolve_ckpt_path, train
from lsap.core.errors import CheckpointError, LsapFileError
from lsap.core.hashing import tensors_sha256
from lsap.io import init_generator

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")  # anchors computed once for the session


def tiny_cfg(out, cache, *overrides):
    base = [
        "experiment=tiny",
        f"paths.output_dir={out}",
        f"paths.cache_dir={cache}",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        "+trainer.num_sanity_val_steps=0",
        "alignment.num_samples=2000",
    ]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=[*base, *overrides])


def read_log(out):
    with open(out / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_fast_dev_run_trains_the_encoder_only(tmp_path, cache_dir):
    cfg = tiny_cfg(tmp_path, cache_dir, "debug=fdr")
    G_ref = init_generator(dict(cfg.generator.arch), int(cfg.generator.seed))
    result = train(cfg)
    system = result.system
    assert result.trainer.global_step == 1
    # one optimiser step changed the encoder; the generator is bit-identical
    assert tensors_sha256(system.G.state_dict()) == G_ref.sha256 == system.G.sha256
    assert not any(p.requires_grad for p in system.G.parameters())
    assert {n.split(".")[0] for n, _ in system.named_parameters()} == {"encoder"}
    assert result.metrics["val/metric/sncd"] > 0 and "val/metric/lpips" in result.metrics
    # the checkpoint holds the encoder (no generator or loss networks) and what load_encoder needs
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["state_dict"] and all(k.startswith("encoder.") for k in ckpt["state_dict"])
    head = ckpt["lsap_encoder"]
    assert head["generator_sha256"] == G_ref.sha256 and head["progressive_stage"] == 0
    enc = lsap.load_encoder(tmp_path / "checkpoints" / "last.ckpt")
    assert enc.progressive_stage == 0  # the stage it was saved at: untrained heads stay off
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    system.encoder.eval().set_progressive_stage(0)
    torch.testing.assert_close(enc(x), system.encoder(x))


def test_training_lowers_the_loss_and_sncd_lowers_val_sncd(tmp_path, cache_dir):
    """Same seed and steps, with and without the alignment term: both fit the rendered targets,
    and the run with sncd > 0 ends better aligned (lower validation SNCD)."""
    common = [
        "trainer.max_steps=160",
        "trainer.val_check_interval=160",
        "data.num_train=96",
        "data.num_val=32",
        "encoder.progressive_start=0",
        "encoder.progressive_step_every=20",
        "loss.lpips=0",
        "system.noise_mode=const",
        "callbacks.checkpoint.every_n_train_steps=0",
    ]
    runs = {}
    for sncd in (0.0, 1.0):
        out = tmp_path / f"sncd{sncd}"
        result = train(tiny_cfg(out, cache_dir, *common, f"loss.sncd={sncd}"))
        rows = [r for r in read_log(out) if r.get("train/loss/l2")]
        l2 = [float(r["train/loss/l2"]) for r in rows]
        assert len(l2) == 16
        assert sum(l2[-3:]) < 0.7 * sum(l2[:3]), (sncd, l2)
        runs[sncd] = result.metrics
        assert (out / "encoder.pt").is_file() and list((out / "images" / "val").glob("*.png"))
    assert runs[1.0]["val/metric/sncd"] < 0.5 * runs[0.0]["val/metric/sncd"], runs
    assert runs[1.0]["train/progressive_stage"] == 7.0


def test_generator_mismatch_on_resume_is_an_error(tmp_path, cache_dir):
    cfg = tiny_cfg(tmp_path, cache_dir, "debug=fdr")
    train(cfg)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert resolve_ckpt_path("last", tmp_path) == str(last)
    other = tiny_cfg(tmp_path, cache_dir, "trainer.max_steps=2", "generator.seed=1")
    with pytest.raises(CheckpointError, match="trained with generator sha256"):
        train(other)


def test_resolve_ckpt_path(tmp_path):
    assert resolve_ckpt_path(None, tmp_path) is None
    assert resolve_ckpt_path("last", tmp_path) is None  # a first run
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    (tmp_path / "hpc_ckpt_3.ckpt").write_bytes(b"")  # written later by a SLURM requeue
    os.utime(tmp_path / "checkpoints" / "last.ckpt", (1e9, 1e9))
    assert resolve_ckpt_path("last", tmp_path) == str(tmp_path / "hpc_ckpt_3.ckpt")
    with pytest.raises(LsapFileError, match="no such checkpoint"):
        resolve_ckpt_path(str(tmp_path / "nope.ckpt"), tmp_path)


@pytest.mark.parametrize("w_discriminator", [0.0, 0.1], ids=["plain", "latent_discriminator"])
def test_resume_from_a_mid_epoch_checkpoint_is_bit_identical_with_random_noise(
    tmp_path, cache_dir, w_discriminator
):
    """Training draws random numbers (generator noise, noise_mode=random, the default; the latent
    discriminator's real codes): the checkpoint holds every RNG state and the discriminator's step
    of the saved batch, so a run resumed from step 3 ends with exactly the weights of an
    uninterrupted one."""
    common = [
        f"loss.w_discriminator={w_discriminator}",
        "trainer.max_steps=6",
        "trainer.val_check_interval=100",
        "data.num_train=64",  # 8 steps per epoch: step 3 is mid-epoch
        "data.num_val=8",
        "system.noise_mode=random",
        "callbacks.checkpoint.every_n_train_steps=3",
        "callbacks.image_grid.every_n_train_steps=0",
    ]
    straight = tmp_path / "straight"
    train(tiny_cfg(straight, cache_dir, *common, "trainer.ckpt_path=null"))
    mid = straight / "checkpoints" / "step_0000003.ckpt"
    assert torch.load(mid, weights_only=True)["global_step"] == 3
    torch.manual_seed(123)  # whatever the process did before, the resumed steps draw the same
    resumed = tmp_path / "resumed"
    train(tiny_cfg(resumed, cache_dir, *common, f"trainer.ckpt_path={mid}"))
    a = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    for k, v in b["state_dict"].items():
        torch.testing.assert_close(a["state_dict"][k], v, rtol=0, atol=0, msg=k)


def test_a_missing_setting_is_one_line_from_the_command(tmp_path, cache_dir, capsys):
    """lsap-train's typed settings name a missing key; the command prints it as one line and
    exits with status 2 (``one_line_errors(settings=True)``), before any training."""
    from omegaconf import open_dict

    from lsap.cli.train import _main

    cfg = tiny_cfg(tmp_path, cache_dir, "debug=fdr")
    with open_dict(cfg):
        del cfg.system.noise_mode
    with pytest.raises(SystemExit) as e:
        _main.__wrapped__(cfg)  # what @hydra.main calls: the command's one_line_errors
    assert e.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == ["lsap-train: error: system misses noise_mode (see conf/train.yaml)"], err
    assert not (tmp_path / "checkpoints").exists()
