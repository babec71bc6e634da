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


def set_num_threads(cfg: Mapping[str, Any] | None = None) -> int:
    """Apply :func:`choose_num_threads` to torch for a command's config (``data.num_workers`` or
    ``num_workers``; CPU DDP ``trainer.devices``); returns the number chosen."""
    import torch

    cfg = cfg or {}
    data = cfg.get("data") if isinstance(cfg.get("data"), Mapping) else {}
    workers = (data or {}).get("num_workers", cfg.get("num_workers", 0)) or 0
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0)
    trainer = cfg.get("trainer") if isinstance(cfg.get("trainer"), Mapping) else {}
    if not processes and trainer and str(trainer.get("accelerator")) == "cpu":
        devices = trainer.get("devices", 1)
        processes = devices if isinstance(devices, int) else 1
    n = choose_num_threads(
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        physical_cores=available_physical_cores(),
        data_workers=int(workers),
        local_processes=processes or 1,
    )
    torch.set_num_threads(n)
    return n
