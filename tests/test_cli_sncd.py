"""`lsap-sncd` as users run it: the installed console script, Hydra overrides, JSON output."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

from lsap.alignment import compute_anchors
from lsap.assets import asset_path
from lsap.io import file_sha256, init_generator, save_generator

pytestmark = pytest.mark.skipif(shutil.which("lsap-sncd") is None, reason="lsap not installed")


def run_cli(tmp_path, *overrides):
    cmd = [
        "lsap-sncd",
        f"paths.log_dir={tmp_path}/logs",
        f"paths.cache_dir={tmp_path}/cache",
        "alignment.num_samples=20000",
        *overrides,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_default_run_scores_generator_samples(tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli(tmp_path, f"output={out}", "num_codes=500")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["num_codes"] == 500 and len(r["per_layer"]) == 8
    # samples of the generator score at the expectation 1 - ||a_i|| per layer
    assert r["sncd"] == pytest.approx(sum(r["sampled_expectation_per_layer"]), rel=0.05)
    # the default generator is the trained toy generator shipped in the package
    assert r["provenance"]["generator_sha256"] == file_sha256(asset_path("toy32/generator.pt"))
    assert r["provenance"]["config"]["num_codes"] == 500
    assert "total" in proc.stdout and list((tmp_path / "cache" / "anchors").glob("anchors-*.pt"))


def _tiny_arch():
    from omegaconf import OmegaConf

    from lsap.cli._common import config_dir

    return dict(OmegaConf.load(f"{config_dir()}/generator/tiny.yaml")["arch"])


def test_codes_file_of_a_saved_generator(tmp_path):
    G = init_generator(_tiny_arch(), seed=4)
    path = save_generator(G, tmp_path / "g.pt")
    anchors = compute_anchors(G, 20000, 0)
    w = torch.cat([G.mapping(torch.randn(200, 64))])
    far = (G.w_avg + 3 * (w - G.w_avg))[:, None].repeat(1, G.num_ws, 1)
    torch.save({"w_plus": far}, tmp_path / "codes.pt")
    out = tmp_path / "far.json"
    proc = run_cli(
        tmp_path,
        "generator=file",
        f"generator.path={path}",
        f"codes={tmp_path}/codes.pt",
        f"output={out}",
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    from lsap.alignment import sncd

    assert r["sncd"] == pytest.approx(float(sncd(G, far, anchors)[0].mean()), rel=1e-4)
    assert r["sncd"] > 1.5 * sum(r["sampled_expectation_per_layer"])


@pytest.mark.parametrize(
    "codes, problem",
    [
        (torch.randn(3, 7, 64), "codes have 7 layers but the generator has num_ws=8"),
        (
            torch.randn(3, 8, 64, dtype=torch.complex64),
            "codes have dtype complex64, expected floating point",
        ),
        (
            torch.ones(3, 8, 64, dtype=torch.int64),
            "codes have dtype int64, expected floating point",
        ),
    ],
    ids=["layers", "complex", "integer"],
)
def test_bad_codes_file_is_a_one_line_error(tmp_path, codes, problem):
    torch.save(codes, tmp_path / "codes.pt")
    proc = run_cli(tmp_path, "generator=tiny", f"codes={tmp_path}/codes.pt")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == f"lsap-sncd: error: {tmp_path}/codes.pt: {problem}"
    assert "Traceback" not in proc.stderr
