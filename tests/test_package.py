"""Packaging contracts: a cheap, side-effect-free import; console scripts; CI runs the README."""

from __future__ import annotations

import configparser
import importlib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_does_nothing(tmp_path):
    """Importing lsap loads no heavy stacks, touches no GPU and writes no files."""
    code = (
        "import sys, torch, lsap, lsap.alignment, lsap.io, lsap.nets\n"
        "heavy = [m for m in ('pytorch_lightning', 'lightning', 'hydra', 'wandb', 'lpips',"
        " 'facenet_pytorch', 'torchmetrics') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert not torch.cuda.is_initialized()\n"
        "print('ok')\n"
    )
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_public_api():
    import lsap
    import lsap.alignment as al

    for name in ("load_generator", "save_generator", "Generator", "__version__"):
        assert hasattr(lsap, name)
    for name in ("compute_anchors", "sncd", "sncd_loss", "SNCDMetric"):
        assert hasattr(al, name)


def test_console_scripts_resolve():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    scripts = [
        ln for ln in cfg["options.entry_points"]["console_scripts"].splitlines() if ln.strip()
    ]
    assert scripts
    for line in scripts:
        name, target = (s.strip() for s in line.split("="))
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_cmd = blocks[1].strip()
    assert "pytest" in test_cmd and "ruff" in test_cmd
    assert test_cmd in (ROOT / ".ci" / "run").read_text()
