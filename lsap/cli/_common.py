"""Shared plumbing of the console commands: config folder, devices, one-line errors."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from lsap.config import config_dir, register_resolvers
from lsap.core.errors import LsapFileError, WeightsUnavailableError

register_resolvers()  # before any command's @hydra.main composes (conf/invert.yaml uses one)

__all__ = [
    "check_config_dir",
    "config_dir",
    "die_with_launcher",
    "finish_wandb",
    "one_line_errors",
    "resolve_device",
]


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_WATCHDOG_INTERVAL_S = 1.0  # where prctl is missing: how often a worker checks its launcher


def die_with_launcher() -> None:
    """Make a DDP worker process end when the process that launched it dies, even by SIGKILL.

    A worker is a process started with ``LOCAL_RANK`` in its environment: Lightning's DDP
    launcher starts ranks >= 1 as children that rerun the command, torchrun starts every rank.
    Without this, a SIGKILLed launcher leaves its workers running (and writing their shards)
    until a collective times out. On Linux the kernel sends them SIGKILL (``PR_SET_PDEATHSIG``);
    elsewhere a daemon thread watches the parent pid. Call it first thing in a command's main().
    """
    if "LOCAL_RANK" not in os.environ:  # launched by a user or a scheduler: not a worker
        return
    import signal

    parent = os.getppid()
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    # The launcher died between getppid() and prctl(). (A parent pid of 1 alone proves nothing: a
    # container's init can be the legitimate parent of a command started with LOCAL_RANK set.)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)
    if not armed:
        import threading
        import time

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(_WATCHDOG_INTERVAL_S)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, name="lsap-die-with-launcher", daemon=True).start()


def check_config_dir(command: str) -> None:
    if not Path(config_dir(), f"{command}.yaml").is_file():
        sys.exit(
            f"lsap: cannot find {config_dir()}/{command}.yaml; install lsap from a source checkout "
            "with `pip install -e .` or point $LSAP_CONFIG_DIR at its conf/ folder"
        )


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def one_line_errors(
    command: str, *, settings: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Print bad input as one line, ``<command>: error: <problem>``, and exit with status 2.

    Always: bad files (``LsapFileError``: ``<file>: <problem>``), a mandatory setting left at
    ``???`` (``<key> is not set``) and weights that could not be downloaded
    (``WeightsUnavailableError``, naming the setting that takes a local file).

    Args:
        command: the console command's name.
        settings: also bad settings (any ``ValueError``, raised while building edits, metrics,
            code sources, ...).
    """
    from omegaconf.errors import MissingMandatoryValue

    catch = (ValueError if settings else LsapFileError, WeightsUnavailableError)

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except catch as e:
                print(f"{command}: error: {e}", file=sys.stderr)
                sys.exit(2)
            except MissingMandatoryValue as e:
                key = e.full_key or "a mandatory setting"
                print(f"{command}: error: {key} is not set: give {key}=...", file=sys.stderr)
                sys.exit(2)

        return inner

    return wrap


def finish_wandb() -> None:
    """End the active W&B run, if any, so that each job of a sweep or multirun (same process)
    logs to its own run. Never imports wandb itself."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


_DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextlib.contextmanager
def multirun_ddp_job() -> Iterator[None]:
    """Around one Hydra job: lets a multirun's jobs each run on DDP (Lightning's launcher).

    Lightning starts each extra DDP rank as ``sys.argv`` again plus
    ``hydra.run.dir=<HydraConfig run.dir>``. In a multirun that would rerun the whole sweep, in a
    run folder whose ``${now:...}`` is evaluated anew (rank 1 then writes elsewhere). Inside a
    multirun job this sets ``sys.argv`` to the job's own overrides and the run folder to the job's
    output folder, so the workers join this job in its folder; on exit it ends the job's process
    group and restores the launcher's environment variables (``LOCAL_RANK``, ``MASTER_PORT``, ...),
    so the next job starts its own group with its own workers. Outside a multirun (or without
    Hydra) it does nothing.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import read_write

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        yield
        return
    hc = HydraConfig.get()
    argv = sys.argv
    env = {k: os.environ.get(k) for k in _DDP_ENV}  # Lightning's launcher sets these in-process
    sys.argv = [argv[0], *hc.overrides.task]
    with read_write(hc):
        hc.run.dir = hc.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = argv
        for k, v in env.items():  # else the next job's launcher would think its ranks exist
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
