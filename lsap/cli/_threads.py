"""How many CPU threads a command's torch ops use.

torch's default (one per logical CPU, whatever else runs) made ``lsap-demo`` six times slower on a
busy 2-core machine than one thread did. The rule: an ``OMP_NUM_THREADS`` the user set wins;
otherwise the physical cores this process may run on, shared among the node's training processes,
less one core per data-loader worker (each worker runs its own single-threaded torch), at least 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


def choose_num_threads(
    *,
    omp_num_threads: str | None,
    physical_cores: int,
    data_workers: int = 0,
    local_processes: int = 1,
) -> int:
    """Threads for one process's torch ops (pure: every input is an argument).

    Args:
        omp_num_threads: the ``OMP_NUM_THREADS`` environment value (None or "" = not set; a value
            that is not a positive integer is ignored, as OpenMP ignores it).
        physical_cores: physical cores available to the job (:func:`available_physical_cores`).
        data_workers: data-loader worker processes of each process (each takes a core).
        local_processes: processes of the job on this machine (CPU DDP ranks, torchrun's
            ``LOCAL_WORLD_SIZE``); the cores are split among them.
    """
    if omp_num_threads:
        try:
            n = int(omp_num_threads.split(",")[0])  # OpenMP's list form: the outermost level
        except ValueError:
            n = 0
        if n > 0:
            return n
    per_process = max(1, int(physical_cores)) // max(1, int(local_processes))
    return max(1, per_process - max(0, int(data_workers)))


def available_physical_cores() -> int:
    """Physical cores (not hyper-threads) among the CPUs this process may run on."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    logical = logical or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or logical
        total = psutil.cpu_count(logical=True) or logical
    except ImportError:
        return logical
    # an affinity mask (taskset, a cluster's cgroup) keeps the same ratio of threads per core
    return max(1, round(logical * physical / total))


def cpu_processes(trainer: Mapping[str, Any]) -> int:
    """Processes a ``trainer`` config (plain) starts on this machine's CPU: ``trainer.devices``
    for CPU DDP (``accelerator: cpu`` and an integer ``devices``), else 1 (GPU ranks do not share
    the CPU's threads this way)."""
    if str(trainer.get("accelerator")) != "cpu":
        return 1
    devices = trainer.get("devices")
    return devices if isinstance(devices, int) and devices > 0 else 1


def set_num_threads(*, data_workers: int, cpu_processes: int) -> int:
    """Apply :func:`choose_num_threads` to torch; returns the number chosen.

    Args:
        data_workers: data-loader worker processes of each process (the command's typed settings:
            ``data.num_workers``, ``num_workers``, 0 for commands without loaders).
        cpu_processes: processes the command starts on this CPU (:func:`cpu_processes` of its
            trainer settings; 1 without one). torchrun's ``LOCAL_WORLD_SIZE`` wins when set.
    """
    import torch

    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0) or int(cpu_processes)
    n = choose_num_threads(
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        physical_cores=available_physical_cores(),
        data_workers=int(data_workers),
        local_processes=processes,
    )
    torch.set_num_threads(n)
    return n
