"""The thread rule of the console commands (lsap.cli._threads), as a pure function."""

from __future__ import annotations

import torch

from lsap.cli._threads import (
    available_physical_cores,
    choose_num_threads,
    cpu_processes,
    set_num_threads,
)


def test_omp_num_threads_is_respected():
    assert choose_num_threads(omp_num_threads="3", physical_cores=16) == 3
    assert choose_num_threads(omp_num_threads="1", physical_cores=16, data_workers=4) == 1
    assert choose_num_threads(omp_num_threads="6,2", physical_cores=2) == 6  # OpenMP list form
    # unset, empty or nonsense: the physical-core rule
    for value in (None, "", "zero", "0", "-2"):
        assert choose_num_threads(omp_num_threads=value, physical_cores=8) == 8


def test_physical_cores_shared_with_data_workers_and_local_processes():
    assert choose_num_threads(omp_num_threads=None, physical_cores=8, data_workers=2) == 6
    assert choose_num_threads(omp_num_threads=None, physical_cores=8, local_processes=2) == 4
    assert (
        choose_num_threads(
            omp_num_threads=None, physical_cores=8, data_workers=1, local_processes=2
        )
        == 3
    )
    # never oversubscribed, never below one thread
    for cores in range(1, 9):
        for workers in range(0, 10):
            for procs in (1, 2, 4):
                n = choose_num_threads(
                    omp_num_threads=None,
                    physical_cores=cores,
                    data_workers=workers,
                    local_processes=procs,
                )
                assert n >= 1
                assert n == 1 or procs * (n + workers) <= cores
    # a busy 2-core machine with lsap-invert's 2 data workers: one thread
    assert choose_num_threads(omp_num_threads=None, physical_cores=2, data_workers=2) == 1


def test_set_num_threads_reads_the_config(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
        monkeypatch.setattr("lsap.cli._threads.available_physical_cores", lambda: 8)
        one = cpu_processes({"accelerator": "auto", "devices": 2})  # GPU ranks: one CPU process
        assert set_num_threads(data_workers=2, cpu_processes=one) == 6 == torch.get_num_threads()
        assert set_num_threads(data_workers=3, cpu_processes=one) == 5
        cpu_ddp = cpu_processes({"accelerator": "cpu", "devices": 2})
        assert set_num_threads(data_workers=1, cpu_processes=cpu_ddp) == 3
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
        assert set_num_threads(data_workers=0, cpu_processes=1) == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_num_threads(data_workers=0, cpu_processes=1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_available_physical_cores_is_positive():
    import os

    n = available_physical_cores()
    assert 1 <= n <= (os.cpu_count() or 1)
