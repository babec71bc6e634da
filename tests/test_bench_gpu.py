"""bench/gpu.sh, the one command a lent GPU runs: it refuses to run without CUDA, and its dry run
(the same rows on CPU at tiny sizes) writes one table row per benchmark and speed option."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu.sh"
ROWS = (
    "generator fp32", "generator tf32", "generator bf16 autocast", "encoder inference",
    "encoder training fp32", "encoder training bf16", "LSAP_O fp32", "LSAP_O auto batch", "LSAP_O tf32", "LSAP_O bf16",
    "LSAP_O cuda graphs", "LSAP_O graphs+bf16+tf32", "PTI fp32", "PTI bf16+tf32", "eval memory",
    "generator compile", "LSAP_O compile",
)  # fmt: skip

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args, rows=None, timeout=900):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    if rows is not None:
        env["ROWS"] = rows
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_without_cuda_it_refuses_at_once(tmp_path):
    proc = _run(str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr and "--dry-run" in proc.stderr


@pytest.mark.slow  # a benchmark subprocess: tens of seconds on a loaded machine
def test_dry_run_writes_the_selected_rows(tmp_path):
    proc = _run("--dry-run", str(tmp_path), rows="^generator fp32$")
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "gpu_benchmarks.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| generator")]
    assert len(lines) == 1 and "| ok," in lines[0], table  # only the row asked for, and it ran
    assert "forward" in lines[0]  # the benchmark's own output is in the table
    assert "DRY RUN" in table


@pytest.mark.slow
def test_dry_run_has_a_working_row_for_every_option(tmp_path):
    proc = _run("--dry-run", str(tmp_path), timeout=3600)
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "gpu_benchmarks.md").read_text()
    for name in ROWS:
        line = next((ln for ln in table.splitlines() if ln.startswith(f"| {name} |")), None)
        assert line is not None and "| ok," in line, (name, table)
