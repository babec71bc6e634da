"""lsap-train as users run it (installed console script, subprocesses): 2-process CPU DDP (gloo),
kill -9 and resume, and the loss.sncd sweep with one W&B run per value."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lsap

TESTS = Path(__file__).parent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("lsap-train") is None, reason="lsap not installed"),
]


def _env(**extra):
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",  # tiny networks on a shared machine
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        **extra,
    )
    return env


def _args(run_dir, cache, *overrides):
    return [
        "lsap-train",
        "experiment=tiny",
        f"hydra.run.dir={run_dir}",
        f"paths.cache_dir={cache}",
        "alignment.num_samples=2000",
        "data.num_train=64",
        "data.num_val=16",
        "trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        "+trainer.num_sanity_val_steps=0",
        "+callbacks.probe._target_=encoder_helpers.RecordBatches",
        f"+callbacks.probe.out_dir={run_dir}/probe",
        *overrides,
    ]


def _run(args, timeout=300):
    proc = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _probe(run_dir, rank=0):
    return json.loads((Path(run_dir) / "probe" / f"rank{rank}.json").read_text())


def test_ddp_two_processes_on_cpu(tmp_path):
    run = tmp_path / "ddp"
    _run(
        _args(
            run,
            tmp_path / "cache",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.max_steps=6",
            "trainer.val_check_interval=3",
            "loss.w_discriminator=0.1",  # e4e's latent discriminator lives outside DDP
            "loss.options.w_discriminator.r1_interval=4",
        )
    )
    r0, r1 = _probe(run, 0), _probe(run, 1)
    # its gradients are averaged over the ranks by hand: both end with the same D
    assert r0["w_discriminator_sha256"] == r1["w_discriminator_sha256"] is not None
    assert (r0["world_size"], r1["world_size"]) == (2, 2) and r0["pid"] != r1["pid"]
    assert [s["step"] for s in r0["seen"]] == [s["step"] for s in r1["seen"]] == list(range(6))
    # every step the two ranks train on different images (disjoint shards of each epoch)
    for a, b in zip(r0["seen"], r1["seen"], strict=True):
        assert set(a["index"]).isdisjoint(b["index"])
    assert len({i for s in r0["seen"][:4] + r1["seen"][:4] for i in s["index"]}) == 64
    enc = lsap.load_encoder(run / "encoder.pt")  # written once, by rank zero
    assert enc.num_ws == 8
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6  # D's own Adam steps do not count as training steps
    assert ckpt["w_discriminator"]["steps"] == 6
    log = (run / "csv" / "metrics.csv").read_text()
    assert "val/metric/sncd" in log and "val/metric/lpips" in log


def test_kill_and_resume_continues_from_the_saved_step(tmp_path):
    """A run killed with SIGKILL and restarted in its folder (trainer.ckpt_path=last, the
    default) from a mid-epoch checkpoint ends with exactly the weights, optimiser state and
    progressive stage of an uninterrupted run, having trained on the same batches."""
    cache = tmp_path / "cache"
    common = [
        "optimizer=ranger",  # Lookahead slow weights are optimiser state too
        "optimizer.lr=1e-3",
        "system.noise_mode=const",
        "encoder.progressive_start=4",
        "encoder.progressive_step_every=3",
        "trainer.val_check_interval=8",
        "callbacks.checkpoint.every_n_train_steps=5",  # mid-epoch: an epoch is 64 / 8 = 8 steps
    ]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _args(killed, cache, *common, "trainer.max_steps=100000"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while not list((killed / "checkpoints").glob("step_*.ckpt")):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    time.sleep(0.5)  # let it run on past the checkpoint before the kill
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    step = saved["global_step"]
    assert step % 5 == 0 and step >= 5
    assert saved["lsap_encoder"]["progressive_stage"] == min(7, 1 + (step - 1 - 4) // 3)
    end = step + 8  # across an epoch boundary

    resumed = _run(_args(killed, cache, *common, f"trainer.max_steps={end}"))
    assert "resuming from" in resumed.stdout + resumed.stderr
    straight = tmp_path / "straight"
    _run(_args(straight, cache, *common, f"trainer.max_steps={end}"))

    seen = _probe(killed)["seen"]
    assert seen[0]["step"] == step and seen[-1]["step"] == end - 1  # continued, not restarted
    assert seen == _probe(straight)["seen"][step:]  # same data, same progressive stages
    a = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == end
    assert a["lsap_encoder"]["progressive_stage"] == b["lsap_encoder"]["progressive_stage"]
    for k, v in b["state_dict"].items():
        torch.testing.assert_close(a["state_dict"][k], v, rtol=0, atol=0, msg=k)
    for pid, st in b["optimizer_states"][0]["state"].items():
        for k, v in st.items():
            torch.testing.assert_close(a["optimizer_states"][0]["state"][pid][k], v, rtol=0, atol=0)


def test_slurm_requeue_saves_an_hpc_checkpoint_and_resumes_from_it(tmp_path):
    """SLURM simulated: its environment variables, a fake ``scontrol`` that records the requeue,
    USR1 (sbatch --signal) to the job, then SLURM's kill and the restart of the same command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.txt\n')
    scontrol.chmod(0o755)
    slurm = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_NTASKS": "1",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "lsap-train",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
    }
    run = tmp_path / "job"
    args = _args(
        run, tmp_path / "cache", "trainer.max_steps=100000", "trainer.val_check_interval=50"
    )
    proc = subprocess.Popen(
        args, env=_env(**slurm), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 240
    while not (run / "csv" / "metrics.csv").is_file():  # training has started
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "the job did not start within 240 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR1)
    while not (tmp_path / "scontrol.txt").is_file():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "no requeue within 240 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # SLURM ends the job it requeued
    proc.wait()
    assert (tmp_path / "scontrol.txt").read_text().split() == ["requeue", "4242"]
    hpc = torch.load(run / "hpc_ckpt_1.ckpt", weights_only=True)
    step = hpc["global_step"]
    assert step > 0 and hpc["lsap_encoder"]["generator_sha256"]

    restarted = subprocess.run(
        _args(run, tmp_path / "cache", f"trainer.max_steps={step + 3}"),
        env=_env(**slurm),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "hpc_ckpt_1.ckpt" in restarted.stdout + restarted.stderr
    assert [s["step"] for s in _probe(run)["seen"]] == [step, step + 1, step + 2]


def test_sncd_sweep_makes_one_wandb_run_per_value(tmp_path):
    sweep = tmp_path / "sweep"
    args = _args(
        tmp_path / "unused",
        tmp_path / "cache",
        "sweep=sncd",
        "loss.sncd=0.0,1.0",  # narrows the sweep of sweep/sncd.yaml
        f"hydra.sweep.dir={sweep}",
        "logger=wandb",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
    )
    args = [a for a in args if not a.startswith(("hydra.run.dir", "+callbacks.probe"))]
    _run(args)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name for j in jobs] == ["0_sncd0.0", "1_sncd1.0"]
    run_ids = set()
    for job, value, other in zip(jobs, ("0.0", "1.0"), ("1.0", "0.0"), strict=True):
        runs = list((job / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(runs) == 1, runs  # each value its own W&B run, in its own run folder
        run_ids.add(runs[0].name)
        record = runs[0].read_bytes()  # the run's protobuf log: names are stored as text
        assert f"tiny-sncd{value}".encode() in record and b"tiny-sncd-sweep" in record
        assert f"tiny-sncd{other}".encode() not in record
        assert (job / "encoder.pt").is_file()
    assert len(run_ids) == 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-m", "slow", "-q"]))
