"""Every command's defaults run on a fresh offline machine (issue 12, item 17).

The commands run as installed console scripts with the network unreachable (a proxy on a closed
port) and empty torch / Hugging Face caches, so any default that downloads weights fails here.
Only output folders and sizes that need no network either way (steps, anchor samples) are set.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess

import pytest
import torch

from lsap.config import compose, plain
from lsap.io import generator_from_config, init_generator

pytestmark = pytest.mark.skipif(shutil.which("lsap-invert") is None, reason="lsap not installed")

SMALL = ["alignment.num_samples=2000"]  # anchors from fewer samples: faster, no network either way


def offline_env(tmp_path) -> dict[str, str]:
    """No network, nothing cached: a download fails instead of reading a cached copy."""
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy",)}
    return {
        **env,
        "OMP_NUM_THREADS": "1",
        "http_proxy": closed,
        "https_proxy": closed,
        "HTTP_PROXY": closed,
        "HTTPS_PROXY": closed,
        "TORCH_HOME": str(tmp_path / "empty-torch-home"),
        "XDG_CACHE_HOME": str(tmp_path / "empty-cache"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
    }


def run(tmp_path, command, *overrides, timeout=600):
    cmd = [command, f"paths.log_dir={tmp_path}/logs", f"paths.cache_dir={tmp_path}/cache"]
    return subprocess.run(
        [*cmd, *overrides],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=offline_env(tmp_path),
    )


def toy32():
    return generator_from_config(plain(compose("invert").generator))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from lsap.data.toy import write_toy_images

    folder = tmp_path_factory.mktemp("photos")
    write_toy_images(folder, 2, seed=5)
    return folder


@pytest.fixture(scope="module")
def invert_run(photos, tmp_path_factory):
    """``lsap-invert data.path=photos/`` with the default generator, loss and metrics."""
    tmp = tmp_path_factory.mktemp("invert")
    out = tmp / "out"
    proc = run(
        tmp, "lsap-invert", f"data.path={photos}", f"paths.output_dir={out}", "inversion.steps=3",
        *SMALL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_defaults_are_the_shipped_toy_generator_and_offline_settings():
    for command in ("invert", "edit", "eval", "sncd"):
        assert compose(command).generator.path == "asset:toy32/generator.pt", command
    inv = compose("invert")
    assert inv.loss.lpips == 0 and inv.loss.l2 > 0 and inv.loss.id == 0
    assert inv.metrics.lpips is None and inv.metrics.id is None
    ev = plain(compose("eval").metrics)
    assert "id" not in ev["fidelity"] + ev["editing"] and ev["lpips"]["backbone"] == "random"
    assert ev["fid"]["features"]["name"] == "toy_classifier"
    # generator=ffhq keeps the published networks
    inv = compose("invert", ["generator=ffhq"])
    assert inv.loss.lpips == 1.0 and inv.metrics.lpips.backbone == "torchvision"
    assert inv.metrics.id.weights == "vggface2"
    ev = plain(compose("eval", ["generator=ffhq"]).metrics)
    assert "id" in ev["fidelity"] and ev["lpips"]["backbone"] == "torchvision"
    assert ev["fid"]["features"]["name"] == "inception"


def test_lsap_invert_on_toy32_uses_the_weight_calibrated_against_l2():
    """Issue 11: the default LSAP_O weight on toy32 is the demo's calibrated one, not the LPIPS-scale 0.5
    that over-aligns against L2; the projector baseline stays at 0 and the command line still wins."""
    calibrated = compose("demo").optimisation.lsap_o  # the demo's LSAP_O weight on toy32
    assert calibrated == pytest.approx(0.0125)
    assert compose("invert").loss.sncd == pytest.approx(calibrated)
    assert compose("invert", ["loss=projector"]).loss.sncd == 0
    assert compose("invert", ["loss.sncd=0.3"]).loss.sncd == pytest.approx(0.3)
    assert compose("invert", ["generator=tiny"]).loss.sncd == pytest.approx(
        0.5
    )  # other generators: the loss group's


def test_lsap_invert_default_runs_offline(invert_run, photos):
    with open(invert_run / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["name"] for r in rows) == ["toy_5_000000", "toy_5_000001"]
    assert all(math.isfinite(float(r["mse"])) and float(r["psnr"]) > 0 for r in rows)
    record = torch.load(invert_run / "codes" / "toy_5_000000.pt", weights_only=True)
    prov = record["provenance"]
    assert prov["generator_sha256"] == toy32().sha256
    assert prov["config"]["generator"]["path"] == "asset:toy32/generator.pt"


def test_lsap_edit_default_runs_offline(invert_run, tmp_path):
    proc = run(tmp_path, "lsap-edit", f"codes={invert_run}", f"hydra.run.dir={tmp_path}/edit")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "edit" / "edit.json").read_text())
    assert summary["written"] == 2 * len(summary["edits"]) > 0
    assert summary["provenance"]["generator_sha256"] == toy32().sha256


def test_lsap_edit_reads_the_generator_from_the_codes_provenance(tmp_path):
    """Codes made with generator=tiny edit without repeating generator=tiny."""
    arch = plain(compose("invert", ["generator=tiny"]).generator)
    G = init_generator(arch["arch"], arch["seed"])
    w = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0))).detach()
    prov = {"generator_sha256": G.sha256, "config": {"generator": arch}}
    (tmp_path / "codes").mkdir()
    torch.save({"w_plus": w, "name": "a", "provenance": prov}, tmp_path / "codes" / "a.pt")
    proc = run(tmp_path, "lsap-edit", f"codes={tmp_path / 'codes'}", f"hydra.run.dir={tmp_path}/e")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "using theirs" in proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "e" / "edit.json").read_text())
    assert summary["written"] == len(summary["edits"]) > 0
    assert summary["provenance"]["generator_sha256"] == G.sha256
    # codes of a user's own generator file are not redirected: the configured one is used
    prov = {"generator_sha256": "f" * 64, "config": {"generator": {"path": "/x/G.pt"}}}
    torch.save({"w_plus": w, "name": "a", "provenance": prov}, tmp_path / "codes" / "a.pt")
    proc = run(tmp_path, "lsap-edit", f"codes={tmp_path / 'codes'}", f"hydra.run.dir={tmp_path}/f")
    assert proc.returncode != 0 and "using theirs" not in proc.stdout + proc.stderr
    assert f"lsap-edit: error: {tmp_path / 'codes' / 'a.pt'}" in proc.stderr


def test_lsap_eval_default_runs_offline_and_names_its_stand_ins(invert_run, tmp_path):
    proc = run(
        tmp_path,
        "lsap-eval",
        f"methods={{toy: {invert_run}}}",
        f"hydra.run.dir={tmp_path}/ev",
        *SMALL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "ev" / "eval.json").read_text())
    m = r["methods"]["toy"]["metrics"]
    assert {"mse", "psnr", "ssim", "lpips"} <= set(m) and "id" not in m
    assert any("NOT LPIPS" in n for n in r["notes"])
    assert any("toy attribute classifier" in n for n in r["notes"])
    assert "NOT LPIPS" in (tmp_path / "ev" / "eval.md").read_text()


def test_lsap_sncd_default_runs_offline(tmp_path):
    proc = run(tmp_path, "lsap-sncd", f"hydra.run.dir={tmp_path}/s", "num_codes=50", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "s" / "sncd.json").read_text())
    assert r["provenance"]["generator_sha256"] == toy32().sha256
