"""`lsap-invert` as users run it: the installed console script, overrides, kill + resume, DDP on
two CPU processes, a Hydra multirun over loss.sncd, W&B offline."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from invert_helpers import FAST, make_images, tiny_arch

from lsap import load_generator
from lsap.alignment import compute_anchors, sncd
from lsap.io import init_generator, save_generator
from lsap.io.inversion_layout import read_results

pytestmark = pytest.mark.skipif(shutil.which("lsap-invert") is None, reason="lsap not installed")


def cli(tmp_path: Path, *overrides: str, fast=FAST) -> list[str]:
    return [
        "lsap-invert",
        *fast,
        f"paths.log_dir={tmp_path}/logs",
        f"paths.cache_dir={tmp_path}/cache",
        *overrides,
    ]


def run_cli(tmp_path, *overrides, env=None, fast=FAST, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        cli(tmp_path, *overrides, fast=fast),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def codes_of(out: Path) -> dict[str, dict]:
    return {p.stem: torch.load(p, weights_only=True) for p in sorted((out / "codes").glob("*.pt"))}


def assert_each_once(out: Path, names: list[str]) -> None:
    assert [r["name"] for r in read_results(out)] == names
    assert sorted(codes_of(out)) == names
    assert sorted(p.stem for p in (out / "reconstructions").glob("*.png")) == names
    assert not list(out.rglob("*.tmp"))


def test_console_script_with_overrides(tmp_path):
    """generator=file, inversion=w, loss.sncd, trainer.devices; the progress bar is shown."""
    names = make_images(tmp_path / "in", n=3, nested=1)
    path = save_generator(init_generator(tiny_arch(), seed=3), tmp_path / "g.pt")
    G = load_generator(path)  # its sha256 is the file's
    out = tmp_path / "out"
    proc = run_cli(
        tmp_path,
        "generator=file",
        f"generator.path={path}",
        f"data.path={tmp_path}/in",
        "inversion=w",
        "loss.lpips=1.0",
        "loss.sncd=0.2",
        "trainer.devices=1",
        f"paths.output_dir={out}",
        "metrics.id=null",
        fast=[f for f in FAST if "progress_bar" not in f and f != "loss.lpips=0"],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_each_once(out, names)
    for record in codes_of(out).values():
        w = record["w_plus"]
        torch.testing.assert_close(w, w[:, :1].expand_as(w))  # W space: one code on every layer
        prov = record["provenance"]
        assert prov["generator_sha256"] == G.sha256
        assert prov["config"]["loss"]["sncd"] == 0.2 and prov["config"]["inversion"]["space"] == "w"
        assert prov["config"]["loss"]["lpips"] == 1.0
    log = proc.stdout + proc.stderr
    assert "skipped 1 unreadable file(s)" in log and "bad.png" in log
    assert "images" in proc.stdout and "steps" in proc.stdout  # the rich progress bars


def test_empty_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli(tmp_path, f"data.path={tmp_path}/empty", f"paths.output_dir={tmp_path}/out")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lsap-invert: error: {tmp_path}/empty: folder holds no images")


def test_a_folder_of_only_unreadable_images_is_a_one_line_error(tmp_path):
    """Bad files are skipped when some are good (above); when none could be read the run fails."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.png").write_bytes(b"this is not a png")
    (tmp_path / "in" / "empty.jpg").write_bytes(b"")
    proc = run_cli(tmp_path, f"data.path={tmp_path}/in", f"paths.output_dir={tmp_path}/out")
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"lsap-invert: error: {tmp_path}/in: no image could be read (2 unreadable"
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_sigkill_then_rerun_finishes_every_image_once(tmp_path):
    names = make_images(tmp_path / "in", n=6, nested=2, bad=False)
    out = tmp_path / "out"
    args = (
        f"data.path={tmp_path}/in",
        f"paths.output_dir={out}",
        "data.batch_size=1",
        "inversion.steps=40",
        "metrics.id=null",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cli(tmp_path, *args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / "codes").glob("*.pt"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done_before = {p.stem: p.stat().st_mtime_ns for p in (out / "codes").glob("*.pt")}
    assert 2 <= len(done_before) < 6 and not (out / "results.csv").exists()
    again = run_cli(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert f"{len(done_before)} finished earlier, {6 - len(done_before)} to invert" in log
    assert_each_once(out, names)
    for name, mtime in done_before.items():  # finished images were not redone
        assert (out / "codes" / f"{name}.pt").stat().st_mtime_ns == mtime


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped has died)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_ddp_workers_die_with_their_sigkilled_launcher(tmp_path):
    """Lightning starts rank 1 as a child process; SIGKILL to the launcher (rank 0) ends it
    within seconds, not when gloo times out (~40 s later, still writing its shard)."""
    make_images(tmp_path / "in", n=4, nested=0, bad=False)
    out = tmp_path / "out"
    log = tmp_path / "log.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = (
        f"data.path={tmp_path}/in",
        f"paths.output_dir={out}",
        "data.batch_size=1",
        "inversion.steps=100000",  # runs until killed
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "metrics.id=null",
    )
    with open(log, "w") as f:
        proc = subprocess.Popen(cli(tmp_path, *args), env=env, stdout=f, stderr=f)
    workers: list[int] = []
    try:
        deadline = time.time() + 500  # two processes importing torch on a loaded machine
        while "to invert on 2 process(es)" not in log.read_text():  # both ranks are running
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "the DDP run did not start within 500 s"
            time.sleep(0.2)
        workers += [c for c in _children(proc.pid) if _alive(c)]
        assert workers, "no worker process found"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 10
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "a worker outlived its launcher by 10 s"
    finally:
        for pid in [proc.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_does_each_image_once(tmp_path):
    """7 inputs (one corrupt) on 2 gloo processes, batch 2: uneven shards, no duplicates; the codes
    equal a one-process run's (seeds follow the image, not the process or batch)."""
    from hydra import compose, initialize_config_dir

    from lsap.cli._common import config_dir
    from lsap.cli.invert import run

    names = make_images(tmp_path / "in", n=6, nested=2)
    out = tmp_path / "ddp"
    args = (
        f"data.path={tmp_path}/in",
        f"paths.output_dir={out}",
        "data.batch_size=2",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "metrics.id=null",
    )
    proc = run_cli(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "7 to invert on 2 process(es)" in proc.stdout + proc.stderr
    assert_each_once(out, names)
    single = tmp_path / "single"
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose(
            "invert",
            [
                *FAST,
                f"data.path={tmp_path}/in",
                f"paths.output_dir={single}",
                "data.batch_size=3",
                "metrics.id=null",
                f"paths.cache_dir={tmp_path}/cache",
            ],
        )
    run(cfg)
    a, b = codes_of(out), codes_of(single)
    for n in names:
        torch.testing.assert_close(a[n]["w_plus"], b[n]["w_plus"], atol=1e-3, rtol=1e-3)
    # one image left for two processes: rank 1's shard is empty, nobody waits forever
    (out / "codes" / f"{names[-1]}.pt").unlink()
    again = run_cli(tmp_path, *args, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 to invert on 2 process(es)" in again.stdout + again.stderr  # + the corrupt file
    assert_each_once(out, names)


@pytest.mark.slow
def test_multirun_over_sncd_writes_separate_runs(tmp_path):
    make_images(tmp_path / "in", n=2, nested=0, bad=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            "lsap-invert",
            "--multirun",  # before the overrides (argparse takes them as one positional list)
            *cli(tmp_path, f"data.path={tmp_path}/in", "inversion.steps=15", "metrics.id=null")[1:],
            "loss.sncd=0,2.0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted((tmp_path / "logs" / "invert" / "multirun").glob("*/[0-9]_*"))
    assert len(runs) == 2 and [r.name[:2] for r in runs] == ["0_", "1_"]
    # named after the overrides, cut to 200 characters with a hash: these tests pass many
    assert all(
        len(r.name) <= 200 and r.name.startswith(f"{i}_alignment") for i, r in enumerate(runs)
    )
    swept = [yaml.safe_load((r / ".hydra" / "overrides.yaml").read_text())[-1] for r in runs]
    assert swept == ["loss.sncd=0", "loss.sncd=2.0"]
    G = init_generator(tiny_arch(), 0)
    anchors = compute_anchors(G, 2000, 0)
    mean_sncd = {}
    for r in runs:
        assert (r / "csv" / "metrics.csv").is_file() and (r / "grid.png").is_file()
        assert (r / ".hydra" / "overrides.yaml").is_file()
        records = codes_of(r)
        assert len(records) == 2
        weight = next(iter(records.values()))["provenance"]["config"]["loss"]["sncd"]
        w = torch.cat([rec["w_plus"] for rec in records.values()])
        mean_sncd[weight] = float(sncd(G, w, anchors)[0].mean())
        table = read_results(r)
        assert np.mean([t["sncd"] for t in table]) == pytest.approx(mean_sncd[weight], rel=1e-4)
    assert mean_sncd[2.0] < mean_sncd[0.0]


@pytest.mark.slow
def test_multirun_on_ddp_runs_each_job_once_in_its_folder(tmp_path):
    """--multirun with trainer=ddp: Lightning's rank-1 worker joins its own job (not a rerun of
    the sweep, not a new ${now} folder), and the next job starts its own process group."""
    names = make_images(tmp_path / "in", n=4, nested=0, bad=False)
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    proc = subprocess.run(
        [
            "lsap-invert",
            "--multirun",
            *cli(tmp_path, f"data.path={tmp_path}/in", "inversion.steps=10", "metrics.id=null")[1:],
            *ddp,
            "loss.sncd=0,2.0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = list((tmp_path / "logs" / "invert" / "multirun").iterdir())
    assert len(sweeps) == 1, sweeps  # the worker did not open a sweep folder of its own
    runs = sorted(p for p in sweeps[0].iterdir() if p.is_dir())
    assert [r.name[:2] for r in runs] == ["0_", "1_"]
    weights = []
    for r in runs:
        assert len(r.name) <= 200
        assert_each_once(r, names)  # both ranks' images, in this job's folder only
        assert (r / "train_ddp_process_1.log").is_file()  # rank 1 ran in the job's folder
        records = codes_of(r)
        weights.append(next(iter(records.values()))["provenance"]["config"]["loss"]["sncd"])
    assert weights == [0.0, 2.0]


@pytest.mark.slow
def test_wandb_offline_logs_curves_metrics_and_grid(tmp_path):
    pytest.importorskip("wandb")
    make_images(tmp_path / "in", n=2, nested=0, bad=False)
    out = tmp_path / "out"
    proc = run_cli(
        tmp_path,
        f"data.path={tmp_path}/in",
        f"paths.output_dir={out}",
        "logger=wandb",
        "metrics.id=null",
        env={"WANDB_MODE": "offline", "WANDB_SILENT": "true", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = list((runs[0] / "files" / "media" / "images").rglob("grid*.png"))
    assert media, "the target | reconstruction grid was not logged"
    history = next(runs[0].glob("*.wandb")).read_bytes()  # the run's record log
    for key in (b"invert/metric/sncd", b"invert/loss/sncd/img0", b"invert/loss/l2/img1"):
        assert key in history, key
