"""`lsap-edit` and `lsap-eval` as users run them: console scripts, Hydra overrides, outputs."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from inversions import NAMES, sample_codes, write_inversion, write_originals
from PIL import Image

from lsap.alignment import compute_anchors, sncd
from lsap.data import tensor_to_uint8

pytestmark = pytest.mark.skipif(shutil.which("lsap-edit") is None, reason="lsap not installed")


def run_cli(command, tmp_path, *overrides, run_dir="run"):
    generator = [] if any(o.startswith("generator=") for o in overrides) else ["generator=tiny"]
    cmd = [
        command,
        *generator,
        f"hydra.run.dir={tmp_path / run_dir}",
        f"paths.cache_dir={tmp_path}/cache",
        "device=cpu",
        *overrides,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_lsap_edit_renders_factors_writes_codes_and_grid_and_resumes(tiny_G, tmp_path):
    codes = sample_codes(tiny_G, len(NAMES))
    g = torch.Generator().manual_seed(1)
    noise = [None] * len(
        NAMES
    )  # one image carries optimised noise maps, as lsap-invert writes them
    noise[1] = [torch.randn(s, generator=g) for s in tiny_G.synthesis.noise_shapes()]
    inv = write_inversion(tmp_path / "inv", tiny_G, codes, noise=noise)
    direction = torch.nn.functional.normalize(torch.randn(1, 64, generator=g), dim=1)
    torch.save(direction, tmp_path / "smile.pt")
    overrides = [
        f"codes={inv}",
        "editing=interfacegan",
        f"+editing.interfacegan.directions.smile={tmp_path}/smile.pt",
        "editing.interfacegan.layers=2:6",
        "editing.interfacegan.factors=[-1.0,0.0,2.0]",
        "grid.max_images=2",
        "batch_size=2",
    ]
    proc = run_cli("lsap-edit", tmp_path, *overrides)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    folder = run / "edits" / "interfacegan" / "smile"
    for i, name in enumerate(NAMES):
        saved = torch.load(folder / f"{name}.pt", weights_only=True)
        assert saved["factors"] == [-1.0, 0.0, 2.0] and saved["name"] == name
        expected = codes[i].expand(3, -1, -1).clone()
        expected[:, 2:6] += torch.tensor([-1.0, 0.0, 2.0])[:, None, None] * direction
        torch.testing.assert_close(saved["w_plus"], expected)
        assert saved["provenance"]["generator_sha256"] == tiny_G.sha256
        # factor 0 is the reconstruction itself, with the image's own noise maps
        assert np.array_equal(
            _png(folder / "factor+0" / f"{name}.png"), _png(inv / "reconstructions" / f"{name}.png")
        )
        with torch.no_grad():
            img = tiny_G.synthesis(expected[2:3], noise=noise[i])[0]
        assert np.array_equal(
            _png(folder / "factor+2" / f"{name}.png"), tensor_to_uint8(img).permute(1, 2, 0).numpy()
        )
    grid = Image.open(run / "grids" / "interfacegan__smile.png")
    assert grid.size == (3 * (32 + 2) + 2, 2 * (32 + 2) + 2)  # columns = factors, rows = images
    summary = json.loads((run / "edit.json").read_text())
    assert summary["written"] == len(NAMES) and summary["edits"][0]["layers"] == [2, 3, 4, 5]
    # a second run into the same folder resumes: nothing is redone
    mtime = (folder / "a.pt").stat().st_mtime_ns
    proc = run_cli("lsap-edit", tmp_path, *overrides)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run / "edit.json").read_text())
    assert summary["written"] == 0 and summary["skipped_existing"] == len(NAMES)
    assert (folder / "a.pt").stat().st_mtime_ns == mtime


def test_lsap_edit_bad_inputs_are_one_line_errors(tiny_G, other_G, tmp_path):
    codes = sample_codes(tiny_G, 2)
    inv = write_inversion(tmp_path / "inv", other_G, codes, NAMES[:2], reconstructions=False)
    torch.save(torch.randn(1, 512), tmp_path / "age.pt")  # an FFHQ direction for a 64-d generator
    proc = run_cli(
        "lsap-edit",
        tmp_path,
        f"codes={inv}",
        "editing=interfacegan",
        f"+editing.interfacegan.directions.age={tmp_path}/age.pt",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"lsap-edit: error: {tmp_path}/age.pt: direction has shape [1, 512]; "
        "this generator needs [64], [1, 64] or [8, 64]"
    )
    proc = run_cli("lsap-edit", tmp_path)  # no codes=
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (
        proc.stderr.strip().splitlines()[-1] == "lsap-edit: error: codes is not set: give codes=..."
    )
    proc = run_cli("lsap-edit", tmp_path, f"codes={inv}", "strict=true")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"lsap-edit: error: {inv}/codes/a.pt: codes were made for generator {other_G.sha256[:12]}"
    )


def test_codes_of_another_generator_are_recorded_in_edit_and_eval_outputs(
    tiny_G, other_G, tmp_path
):
    """strict=false lets codes made for another generator (same sizes) through with a warning;
    the outputs say so: edit.json, and eval.json / eval.md per method."""
    codes = sample_codes(other_G, 2)
    inv = write_inversion(tmp_path / "inv", other_G, codes, NAMES[:2])
    fine = write_inversion(tmp_path / "fine", tiny_G, sample_codes(tiny_G, 2), NAMES[:2])
    write_originals(tmp_path / "originals", tiny_G, codes, NAMES[:2])
    proc = run_cli("lsap-edit", tmp_path, f"codes={inv}", "editing.sefa.components=[0]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "edit.json").read_text())
    bad = summary["generator_mismatch"]
    assert bad["num_files"] == 2 and bad["first_file"] == str(inv / "codes" / "a.pt")
    assert bad["problem"].startswith(f"codes were made for generator {other_G.sha256[:12]}")
    proc = run_cli(
        "lsap-eval",
        tmp_path,
        f"originals={tmp_path}/originals",
        f"methods={{other: {inv}, fine: {fine}}}",
        "metrics=offline",
        "metrics.fidelity=[mse]",
        "metrics.sncd=false",
        "metrics.fid.enabled=false",
        run_dir="eval",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    methods = json.loads((tmp_path / "eval" / "eval.json").read_text())["methods"]
    assert (
        methods["other"]["generator_mismatch"] == bad
        and methods["fine"]["generator_mismatch"] is None
    )
    md = (tmp_path / "eval" / "eval.md").read_text()
    assert "**Warning: the codes of other were made for another generator** (2 file(s)" in md
    assert "codes of fine" not in md


def test_lsap_eval_compares_methods_in_one_table(tiny_G, tmp_path):
    codes = sample_codes(tiny_G, len(NAMES))
    write_originals(tmp_path / "originals", tiny_G, codes)
    exact = write_inversion(tmp_path / "exact", tiny_G, codes)
    noisy = codes + 0.3 * torch.randn(codes.shape, generator=torch.Generator().manual_seed(2))
    write_inversion(tmp_path / "noisy", tiny_G, noisy)
    shutil.copytree(exact / "reconstructions", tmp_path / "images")  # images only: no codes
    proc = run_cli(
        "lsap-eval",
        tmp_path,
        f"originals={tmp_path}/originals",
        f"methods={{exact: {exact}, noisy: {tmp_path}/noisy, images: {tmp_path}/images}}",
        "metrics=offline",
        "metrics.fidelity=[mse,psnr,ssim,lpips]",
        "metrics.lpips.net=alex",
        "metrics.editing=[lpips,sncd]",
        "editing=sefa",
        "editing.sefa.components=[0]",
        "editing.sefa.factors=[-2.0,0.0,2.0]",
        "alignment.num_samples=2000",
        "batch_size=2",
    )
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    r = json.loads(
        (run / "eval.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON")
    )
    m = r["methods"]
    for name in ("exact", "images"):  # codes and their PNGs score alike: 0 error, capped PSNR
        assert m[name]["num_images"] == len(NAMES)
        assert m[name]["metrics"]["mse"] == 0 and m[name]["metrics"]["psnr"] == 100.0
        assert m[name]["metrics"]["ssim"] == pytest.approx(1.0) and m[name]["metrics"]["lpips"] == 0
        assert abs(m[name]["metrics"]["fid"]) < 1e-3
    assert m["noisy"]["metrics"]["psnr"] < 40 and m["noisy"]["metrics"]["lpips"] > 0
    anchors = compute_anchors(tiny_G, 2000, 0)
    for name, c in (("exact", codes), ("noisy", noisy)):
        total, per_layer = sncd(tiny_G, c, anchors)
        assert m[name]["sncd"]["total"] == pytest.approx(float(total.mean()), rel=1e-5)
        assert m[name]["sncd"]["per_layer"] == pytest.approx(per_layer.mean(0).tolist(), rel=1e-5)
    assert m["images"]["sncd"] is None and m["images"]["editing"] == {}
    edit = m["exact"]["editing"]["sefa/all/dir0"]
    assert set(edit) == {"-2", "+0", "+2"} and edit["+0"]["lpips"] == 0 and edit["+2"]["lpips"] > 0
    assert abs(edit["+0"]["fid"]) < 1e-3 < edit["+2"]["fid"]
    md = (run / "eval.md").read_text()
    assert "| exact | 5 | 0.0000 | 100.00 | 1.0000 | 0.0000 |" in md
    assert "| images | 5 | 0.0000 | 100.00 |" in md and "| edit | factor | exact | noisy |" in md
    assert r["provenance"]["generator_sha256"] == tiny_G.sha256
    with open(run / "per_image" / "noisy.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["name"] for row in rows] == sorted(NAMES)
    total = sncd(tiny_G, noisy, anchors)[0]
    by_name = dict(zip(NAMES, total.tolist(), strict=True))
    assert [float(row["sncd"]) for row in rows] == pytest.approx(
        [by_name[n] for n in sorted(NAMES)], rel=1e-5
    )
    assert "edit/sefa/all/dir0/+2/lpips" in rows[0]
    grid = Image.open(run / "grids" / "reconstructions.png")
    assert grid.size == (4 * 34 + 2, 4 * 34 + 2)  # original + 3 methods, 4 images
    assert (run / "grids" / "sefa__all__dir0.png").is_file()


def test_lsap_eval_missing_results_and_no_methods_are_one_line_errors(tiny_G, tmp_path):
    codes = sample_codes(tiny_G, len(NAMES))
    write_originals(tmp_path / "originals", tiny_G, codes)
    write_inversion(tmp_path / "part", tiny_G, codes[:2], NAMES[:2], reconstructions=False)
    proc = run_cli(
        "lsap-eval",
        tmp_path,
        f"originals={tmp_path}/originals",
        f"methods={{p: {tmp_path}/part}}",
        "metrics=offline",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"lsap-eval: error: {tmp_path}/part: method 'p' has no result for 3 of 5 originals "
        "(e.g. ['d', 'e', 'sub__c']); set on_missing=skip to evaluate the common ones"
    )


def _eval_overrides(tmp_path, exact, noisy):
    return [
        f"originals={tmp_path}/originals",
        f"methods={{exact: {exact}, noisy: {noisy}}}",
        "metrics=offline",
        "metrics.fidelity=[mse,psnr,ssim]",
        "metrics.editing=[sncd]",
        "editing=sefa",
        "editing.sefa.components=[0]",
        "editing.sefa.factors=[0.0,2.0]",
        "alignment.num_samples=2000",
        "batch_size=2",
    ]


@pytest.mark.slow  # two torchrun processes
def test_lsap_eval_under_torchrun_matches_one_process(tiny_G, tmp_path):
    codes = sample_codes(tiny_G, len(NAMES))
    write_originals(tmp_path / "originals", tiny_G, codes)
    exact = write_inversion(tmp_path / "exact", tiny_G, codes, reconstructions=False)
    noisy = write_inversion(
        tmp_path / "noisy", tiny_G, codes + 0.3 * torch.randn(codes.shape), reconstructions=False
    )
    overrides = _eval_overrides(tmp_path, exact, noisy)
    single = run_cli("lsap-eval", tmp_path, *overrides, run_dir="single")
    assert single.returncode == 0, single.stderr
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "lsap.cli.eval",
        "generator=tiny",
        f"hydra.run.dir={tmp_path}/ddp",
        f"paths.cache_dir={tmp_path}/cache",
        "device=cpu",
        *overrides,
    ]
    ddp = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr
    a = json.loads((tmp_path / "single" / "eval.json").read_text())
    b = json.loads((tmp_path / "ddp" / "eval.json").read_text())
    assert b["provenance"]["world_size"] == 2 and a["provenance"]["world_size"] == 1
    for name in ("exact", "noisy"):
        ma, mb = a["methods"][name], b["methods"][name]
        assert mb["num_images"] == ma["num_images"] == len(NAMES)
        assert mb["metrics"] == pytest.approx(ma["metrics"], rel=1e-4, abs=1e-4)
        assert mb["sncd"]["per_layer"] == pytest.approx(ma["sncd"]["per_layer"], rel=1e-5)
        for fk, row in ma["editing"]["sefa/all/dir0"].items():
            assert mb["editing"]["sefa/all/dir0"][fk] == pytest.approx(row, rel=1e-4, abs=1e-4)
    with open(tmp_path / "ddp" / "per_image" / "noisy.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == sorted(NAMES)


@pytest.mark.slow  # starts a W&B run (offline)
def test_lsap_eval_logs_numbers_and_grids_to_wandb(tiny_G, tmp_path, monkeypatch):
    codes = sample_codes(tiny_G, len(NAMES))
    write_originals(tmp_path / "originals", tiny_G, codes)
    exact = write_inversion(tmp_path / "exact", tiny_G, codes, reconstructions=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    proc = run_cli("lsap-eval", tmp_path, *_eval_overrides(tmp_path, exact, exact), "logger=wandb")
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    media = [
        p.relative_to(run / "files" / "media").as_posix()
        for p in (run / "files" / "media").rglob("*.*")
    ]
    assert any(m.startswith("images/eval/reconstructions") for m in media)
    assert any(m.startswith("images/eval/sefa/all/dir0") for m in media)
    assert any(m.startswith("table/eval/table") for m in media)
