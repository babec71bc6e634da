"""`lsap-demo` as users run it (the installed console script) on the tiny generator with tiny
random encoders and directions, and the demo's pieces on their own."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from demo_helpers import make_encoder, random_directions, save_directions
from PIL import Image

from lsap.core.errors import LsapFileError
from lsap.io import init_generator

pytestmark = pytest.mark.skipif(shutil.which("lsap-demo") is None, reason="lsap not installed")

METHODS = ["e4e", "lsap_e", "projector", "lsap_o"]


def _tiny_G():
    """The generator `generator=tiny` builds (conf/generator/tiny.yaml, seed 0)."""
    from omegaconf import OmegaConf

    from lsap.cli._common import config_dir

    return init_generator(dict(OmegaConf.load(f"{config_dir()}/generator/tiny.yaml")["arch"]), 0)


def run_demo_cli(tmp_path, *overrides, timeout=400):
    generator = [] if any(o.startswith("generator=") for o in overrides) else ["generator=tiny"]
    cmd = [
        "lsap-demo",
        *generator,
        f"paths.log_dir={tmp_path}/logs",
        f"paths.cache_dir={tmp_path}/cache",
        f"paths.output_dir={tmp_path}/out",
        "alignment.num_samples=2000",
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Two held-out toy faces, every method, one InterFaceGAN direction, the toy classifier."""
    tmp = tmp_path_factory.mktemp("demo")
    G = _tiny_G()
    e4e = make_encoder(G, tmp / "e4e.pt", seed=1)
    lsap_e = make_encoder(G, tmp / "lsap_e.pt", seed=2)
    dirs = save_directions(random_directions(G.w_dim, ["smile", "glasses"], seed=3), tmp / "dirs")
    proc = run_demo_cli(
        tmp,
        "data.toy.num_images=2",
        "data.astronaut=false",
        f"encoders.e4e={e4e}",
        f"encoders.lsap_e={lsap_e}",
        f"+editing.interfacegan.directions.smile={dirs['smile']}",
        f"+editing.interfacegan.directions.glasses={dirs['glasses']}",
        "editing.interfacegan.factors=[-3.0,0.0,3.0]",
        "classifier=asset:toy32/classifier.pt",
        "inversion.steps=30",
        "metrics.fidelity=[mse,psnr,ssim,lpips,id]",
        "metrics.id.weights=random",
        "metrics.fid.features.name=random",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp / "out"
    return out, json.loads((out / "report.json").read_text()), proc


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def test_report_has_one_row_per_method(demo_run):
    out, r, proc = demo_run
    assert list(r["methods"]) == METHODS
    html = (out / "report.html").read_text()
    table = re.search(r'<table id="inversion-toy">(.*?)</table>', html, flags=re.S).group(1)
    assert re.findall(r'<tr data-row="([^"]+)"', table) == METHODS
    # the reconstructions table: one row per image, the original and one cell per method
    recon = re.search(r'<table id="reconstructions">(.*?)</table>', html, flags=re.S).group(1)
    assert re.findall(r'<tr data-row="([^"]+)"', recon) == ["toy_2_000000", "toy_2_000001"]
    assert recon.count("<img") == 2 * (1 + len(METHODS))
    assert "report.html" in proc.stdout
    for m in METHODS:
        assert len(r["methods"][m]["sncd_per_layer"]["toy"]) == 8


def test_report_opens_with_an_overview_plots_and_labelled_grids(demo_run):
    """A newcomer's view: sentences from the numbers, SNCD plots with the samples' line, edit
    grids with labelled rows and factor columns, progress of the optimisation methods."""
    out, r, proc = demo_run
    html = (out / "report.html").read_text()
    assert html.index('id="overview"') < html.index('id="inversion-toy"')
    sncd = {m: r["methods"][m]["mean"]["toy"]["sncd"] for m in METHODS}
    best = min(sncd, key=sncd.get)
    assert f"{best} gives the lowest SNCD ({sncd[best]:.3f})" in " ".join(r["overview"])
    assert f"{best} gives the lowest SNCD ({sncd[best]:.3f})" in html
    plots = re.search(r'<div id="sncd-plots">(.*?)</div>', html, flags=re.S).group(1)
    assert plots.count("<svg") == 2 and plots.count("generator samples") == 2
    assert all(plots.count(f'data-method="{m}"') == 2 for m in METHODS)
    grid = re.search(r'<table class="grid" id="grid-interfacegan-smile">(.*?)</table>', html)
    assert "<th>factor -3</th><th>factor +0</th><th>factor +3</th>" in grid.group(1)
    assert "toy_2_000000 / lsap_o" in grid.group(1)
    edit = re.search(r'<table id="edit-interfacegan-smile">(.*?)</table>', html).group(1)
    zero_rows = re.findall(r'<tr data-row="[^"]+ @ \+0">(.*?)</tr>', edit)
    assert len(zero_rows) == len(METHODS) and not any("best" in row for row in zero_rows)
    log = proc.stdout + proc.stderr
    for m in ("projector", "lsap_o"):
        assert f"{m}: images 1-2 of 2, step 30/30 (100 %)" in log


def test_id_column_is_the_face_similarity_of_the_written_images(demo_run):
    """The ID column (random stand-in network) is the cosine of the saved images' embeddings,
    and the stand-in tells the two different originals apart (it is not a constant)."""
    from lsap.losses.identity import FaceEmbedder

    out, r, _ = demo_run
    face = FaceEmbedder(weights="random")

    def embed(path):
        return face(torch.from_numpy(_png(path)).permute(2, 0, 1)[None].float() * 2 - 1)[0]

    names = sorted(r["methods"]["lsap_o"]["per_image"])
    originals = {n: embed(out / "originals" / f"{n}.png") for n in names}
    assert float(originals[names[0]] @ originals[names[1]]) < 0.9
    reported = []
    for m in METHODS:
        for name, scores in r["methods"][m]["per_image"].items():
            rec = embed(out / "methods" / m / "reconstructions" / f"{name}.png")
            assert scores["id"] == pytest.approx(float(rec @ originals[name]), abs=2e-3)
            reported.append(scores["id"])
    assert max(reported) - min(reported) > 1e-2


def test_per_image_mse_matches_the_written_images(demo_run):
    out, r, _ = demo_run
    for m in METHODS:
        for name, scores in r["methods"][m]["per_image"].items():
            a = _png(out / "originals" / f"{name}.png")
            b = _png(out / "methods" / m / "reconstructions" / f"{name}.png")
            mse = float(np.mean((a - b) ** 2))
            assert scores["mse"] == pytest.approx(mse, rel=1e-4, abs=1e-7)
            assert scores["psnr"] == pytest.approx(-10 * np.log10(mse), rel=1e-4)
        means = [s["mse"] for s in r["methods"][m]["per_image"].values()]
        assert r["methods"][m]["mean"]["toy"]["mse"] == pytest.approx(np.mean(means))


def test_code_files_reproduce_the_reconstructions(demo_run):
    """Codes are written in lsap-invert's layout; rendering them gives the saved images."""
    out, r, _ = demo_run
    G = _tiny_G()
    for m in ("lsap_e", "lsap_o"):
        rec = torch.load(out / "methods" / m / "codes" / "toy_2_000001.pt", weights_only=True)
        assert rec["w_plus"].shape == (1, G.num_ws, G.w_dim)
        assert rec["metrics"]["mse"] == r["methods"][m]["per_image"]["toy_2_000001"]["mse"]
        with torch.no_grad():
            img = G.synthesis(rec["w_plus"], noise_mode="const", noise=rec["noise"])
        x = ((img[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy() / 255.0
        saved = _png(out / "methods" / m / "reconstructions" / "toy_2_000001.png")
        assert np.abs(x - saved).max() <= 1.5 / 255


def test_lsap_o_is_better_aligned_than_the_projector(demo_run):
    """Same images, seeds, steps and objective but the SNCD term: LSAP_O's codes have lower SNCD."""
    _, r, _ = demo_run
    for name, s in r["methods"]["lsap_o"]["per_image"].items():
        assert s["sncd"] < r["methods"]["projector"]["per_image"][name]["sncd"]
    assert r["methods"]["lsap_o"]["info"]["weights"]["sncd"] > 0
    assert r["methods"]["projector"]["info"]["weights"].get("sncd", 0.0) == 0  # not built at 0


def test_edits_at_factor_zero_change_nothing(demo_run):
    out, r, _ = demo_run
    assert set(r["edits"]) == {"interfacegan/smile", "interfacegan/glasses"}
    for edit, entry in r["edits"].items():
        assert entry["target"] == edit.split("/")[-1]
        for m in METHODS:
            zero = entry["methods"][m]["+0"]
            # the factor-0 image is the reconstruction up to float rounding of another batch
            assert zero["others_abs_delta"] == pytest.approx(0.0, abs=1e-5)
            assert zero["target_shift"] == pytest.approx(0.0, abs=1e-5)
            assert all(abs(v) < 1e-5 for v in zero["attribute_change"].values())
            assert zero["lpips"] == pytest.approx(0.0, abs=1e-5)
            moved = entry["methods"][m]["+3"]
            assert moved["lpips"] > 1e-3 and moved["sncd"] != zero["sncd"]
            assert max(abs(v) for v in moved["attribute_change"].values()) > 1e-3
    summary = r["editability"]
    assert set(summary) == set(METHODS)
    assert all("target_shift" in s and "others_abs_delta" in s for s in summary.values())
    assert (out / "grids" / "interfacegan__smile.png").exists()


def test_null_encoder_is_skipped_with_a_message(tmp_path):
    from lsap.demo.build import load_encoders

    G = _tiny_G()
    path = make_encoder(G, tmp_path / "e.pt", seed=1)
    encoders, notes = load_encoders({"e4e": None, "lsap_e": str(path)}, G, torch.device("cpu"))
    assert list(encoders) == ["lsap_e"]
    assert any("encoders.e4e is null" in n and "skipped" in n for n in notes)
    w = encoders["lsap_e"](torch.zeros(1, 3, 32, 32))
    assert w.shape == (1, G.num_ws, G.w_dim)
    # a packaged encoder this installation lacks is skipped too; a missing user file is an error
    encoders, notes = load_encoders({"e4e": "asset:toy32/no_such.pt"}, G, torch.device("cpu"))
    assert encoders == {} and "not shipped" in notes[0]
    with pytest.raises(LsapFileError, match=r"no_such_file\.pt"):
        load_encoders({"e4e": str(tmp_path / "no_such_file.pt")}, G, torch.device("cpu"))


def test_edits_fall_back_to_sefa_without_directions(tmp_path):
    from lsap.demo.build import build_demo_edits

    G = _tiny_G()
    dirs = save_directions(random_directions(G.w_dim, ["smile"], seed=3), tmp_path)
    editing = {
        "interfacegan": {
            "directions": {"smile": dirs["smile"]},
            "layers": "all",
            "factors": [-1.0, 1.0],
        },
        "sefa": {
            "layers": "all",
            "components": [0, 1],
            "edit_layers": None,
            "channel_normalized": False,
            "factors": [2.0],
        },
    }
    assert [e.name for e in build_demo_edits(editing, G)] == ["interfacegan/smile"]
    editing["interfacegan"]["directions"] = {"smile": "asset:toy32/directions/no_such.pt"}
    notes = []
    edits = build_demo_edits(editing, G, notes)
    assert [e.name for e in edits] == ["sefa/all/dir0", "sefa/all/dir1"]
    assert edits[0].factors == (2.0,)
    assert any("not shipped" in n for n in notes) and any("SeFa" in n for n in notes)


def test_bad_data_path_is_a_one_line_error(tmp_path):
    missing = tmp_path / "no_such_photos"
    proc = run_demo_cli(tmp_path, f"data.path={missing}", timeout=120)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and str(missing) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_generator_file_and_an_image_folder(tmp_path):
    """The same command on a user's checkpoint and photo folder (no toy faces, no astronaut):
    images named as lsap-invert names them, the folder's own pixels scored."""
    from lsap.data.toy import write_toy_images
    from lsap.io import file_sha256, save_generator

    G = init_generator(_tiny_G().config, 7)
    gpath = save_generator(G, tmp_path / "G.pt")
    photos = tmp_path / "photos"
    write_toy_images(photos / "set_a", 1, seed=9)
    write_toy_images(photos, 1, seed=8)
    enc = make_encoder(G, tmp_path / "enc.pt", seed=4)
    proc = run_demo_cli(
        tmp_path,
        "generator=file",
        f"generator.path={gpath}",
        f"data.path={photos}",
        "data.align=false",
        f"encoders.lsap_e={enc}",
        "optimisation.lsap_o=null",
        "inversion.steps=5",
        "loss.lpips=0",
        "loss.l2=1",
        "metrics=offline",
        "metrics.fidelity=[mse,psnr]",
        "metrics.editing=[sncd]",
        "editing.sefa.components=[0]",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "out" / "report.json").read_text())
    assert list(r["methods"]) == ["lsap_e", "projector"]
    names = sorted(r["methods"]["lsap_e"]["per_image"])
    assert len(names) == 2 and any(n.startswith("set_a__") for n in names)
    assert {i["domain"] for i in r["images"]} == {"photo"}
    assert r["generator"]["sha256"] == file_sha256(gpath)
    assert any("encoders.e4e is null" in n for n in r["notes"])
    for name in names:
        src = next(i["source"] for i in r["images"] if i["name"] == name)
        assert _png(src).shape == (32, 32, 3)
        assert np.array_equal(_png(src), _png(tmp_path / "out" / "originals" / f"{name}.png"))


def _photos_with_a_faceless_one(folder):
    skimage_data = pytest.importorskip("skimage.data")
    folder.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut.jpg")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "noise.png")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def test_photos_without_a_face_are_skipped_with_a_note(tmp_path):
    """data.align=true on a folder whose photos are not all faces: the others are run, the
    skipped ones named with their reason in report.json / report.html (as lsap-invert does)."""
    folder = _photos_with_a_faceless_one(tmp_path / "photos")
    proc = run_demo_cli(
        tmp_path,
        f"data.path={folder}",
        "data.align=true",
        "optimisation.lsap_o=null",
        "inversion.steps=2",
        "metrics=offline",
        "metrics.fidelity=[mse,psnr]",
        "metrics.editing=[sncd]",
        "editing.sefa.components=[0]",
        timeout=200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    r = json.loads((out / "report.json").read_text())
    assert [i["name"] for i in r["images"]] == ["astronaut"]
    skipped = {s["path"]: s["reason"] for s in r["skipped"]}
    assert set(skipped) == {str(folder / "noise.png"), str(folder / "broken.png")}
    assert "no face found" in skipped[str(folder / "noise.png")]
    assert "not a readable image" in skipped[str(folder / "broken.png")]
    html = (out / "report.html").read_text()
    assert f"skipped {folder / 'noise.png'}" in html and "no face found" in html


def test_a_folder_without_any_usable_photo_is_a_one_line_error(tmp_path):
    from lsap.demo.inputs import folder_images

    folder = _photos_with_a_faceless_one(tmp_path / "photos")
    (folder / "astronaut.jpg").unlink()
    with pytest.raises(LsapFileError, match=r"no image could be read \(first: .*broken\.png"):
        folder_images(folder, 32, align=True)
