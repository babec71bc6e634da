"""The lsap-invert job in-process: the output layout contract, resume, sharding, bad input."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch
from invert_helpers import FAST, compose, make_images, tiny_arch
from PIL import Image

from lsap.data import load_image
from lsap.io import LsapFileError, init_generator, load_codes
from lsap.io.inversion_layout import RESULT_COLUMNS, code_path, read_results
from lsap.io.inversions import CodeSet, find_images, image_name
from lsap.metrics import mse, psnr
from lsap.systems.sharding import ShardSampler, plan_inversion
from lsap.systems.writer import PARTS_DIR, merge_results

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    return folder, make_images(folder)


@pytest.fixture(scope="module")
def first_run(images, tmp_path_factory):
    """One in-process run over the folder: batch 3, W+, sncd 0.5, CSV logger."""
    from lsap.cli.invert import run

    folder, _ = images
    out = tmp_path_factory.mktemp("run")
    cfg = compose(
        *FAST,
        f"data.path={folder}",
        f"paths.output_dir={out}",
        f"paths.cache_dir={out}/cache",
        "data.batch_size=3",
        "log.curves=2",
    )
    run(cfg)
    return out


def test_shards_cover_every_item_once():
    for length in range(0, 12):
        for world in (1, 2, 3, 5):
            shards = [list(ShardSampler(length, r, world)) for r in range(world)]
            flat = sorted(i for s in shards for i in s)
            assert flat == list(range(length)), (length, world)
            assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_output_names(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert image_name(tmp_path / "a" / "b" / "x.png", tmp_path) == "a__b__x"
    (tmp_path / "y.jpg").write_bytes(b"")
    assert image_name(tmp_path / "y.jpg", tmp_path / "y.jpg") == "y"


def test_plan_skips_finished_and_rejects_bad_input(tmp_path, images):
    folder, names = images
    out = tmp_path / "out"
    plan = plan_inversion(folder, out)
    assert [n for _, n in plan.todo] == ["bad", *names] and plan.num_done == 0
    (out / "codes").mkdir(parents=True)
    torch.save({"provenance": {"generator_sha256": "abc"}}, out / "codes" / "img0.pt")
    (out / "codes" / ".img1.pt.x1y2.tmp").write_bytes(b"torn")  # an interrupted atomic write
    plan = plan_inversion(folder, out, "abc")
    assert "img0" not in {n for _, n in plan.todo} and "img1" in {n for _, n in plan.todo}
    assert plan.num_done == 1 and plan.num_images == len(names) + 1
    with pytest.raises(LsapFileError, match="holds codes of generator abc"):
        plan_inversion(folder, out, "def")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LsapFileError, match="empty: folder holds no images"):
        plan_inversion(tmp_path / "empty", out)
    (tmp_path / "dup").mkdir()
    (tmp_path / "dup" / "x.png").write_bytes(b"")
    (tmp_path / "dup" / "x.jpg").write_bytes(b"")
    with pytest.raises(LsapFileError, match="same output name 'x'"):
        plan_inversion(tmp_path / "dup", out)


def test_layout_contract(first_run, images):
    out = first_run
    folder, names = images
    G = init_generator(tiny_arch(), 0)
    rows = read_results(out)
    assert [r["name"] for r in rows] == names  # one row per image, sorted, bad file not there
    with open(out / "results.csv", newline="") as f:
        assert tuple(next(csv.reader(f))[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    with open(out / "skipped.csv", newline="") as f:
        skipped = list(csv.DictReader(f))
    assert [s["image_path"] for s in skipped] == [str(folder / "bad.png")]
    assert "not a readable image" in skipped[0]["reason"]
    assert not (out / PARTS_DIR).exists()
    for row in rows:
        name = row["name"]
        record = torch.load(code_path(out, name), map_location="cpu", weights_only=True)
        assert record["name"] == name and record["image_path"] == row["image_path"]
        w_plus = record["w_plus"]
        assert w_plus.shape == (1, G.num_ws, G.w_dim) and w_plus.dtype == torch.float32
        assert [tuple(n.shape) for n in record["noise"]] == G.synthesis.noise_shapes()
        assert set(record["metrics"]) >= {"mse", "psnr", "lpips", "id", "sncd"}
        prov = record["provenance"]
        assert prov["generator_sha256"] == G.sha256 and prov["seed"] == 0
        assert prov["config"]["loss"]["sncd"] == 0.5 and prov["config"]["inversion"]["steps"] == 5
        assert prov["lsap_version"] and isinstance(prov["image_seed"], int)
        torch.testing.assert_close(load_codes(code_path(out, name), G.num_ws, G.w_dim), w_plus)
        # the PNG is the generator's image for the stored code and noise (round trip)
        png = np.array(Image.open(out / "reconstructions" / f"{name}.png"))
        with torch.no_grad():
            again = G.synthesis(w_plus, noise_mode="const", noise=record["noise"])
        again = ((again[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
        assert np.abs(again - png.astype(np.float64)).max() <= 1
        # the table's metrics are those of the PNG against the (preprocessed) input
        target = load_image(row["image_path"], G.resolution)[None]
        recon = torch.from_numpy(png).permute(2, 0, 1)[None].float() / 127.5 - 1
        assert row["mse"] == pytest.approx(float(mse(recon, target)), rel=1e-4, abs=1e-6)
        assert row["psnr"] == pytest.approx(float(psnr(recon, target)), rel=1e-4)
        for k in ("lpips", "id", "sncd"):
            assert np.isfinite(row[k]) and row[k] == pytest.approx(record["metrics"][k], rel=1e-5)
    # every output (codes, PNGs, tables, caches) is readable as the umask allows, not mkstemp's 0600
    mask = os.umask(0o022)
    os.umask(mask)
    modes = {p.relative_to(out): p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert modes and all(m == 0o666 & ~mask for m in modes.values()), modes
    grid = Image.open(out / "grid.png")
    assert grid.size == (2 * G.resolution, len(names) * G.resolution)
    # lsap-edit / lsap-eval read the folder back (their reader, strict about the generator)
    codes = CodeSet(out, G.num_ws, G.w_dim, sha256=G.sha256, strict=True)
    assert codes.names == names and sorted(find_images(out)) == names
    rec = codes[0]
    torch.testing.assert_close(rec.w_plus, torch.load(code_path(out, names[0]))["w_plus"])
    assert rec.image_path == rows[0]["image_path"] and len(rec.noise) == len(G.synthesis.convs)


def test_logs_loss_terms_per_step_and_final_metrics(first_run):
    out = first_run
    with open(out / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keys = set(rows[0])
    for term in ("loss", "l2", "sncd", "noise_reg"):
        assert {f"invert/loss/{term}/img0", f"invert/loss/{term}/img1"} <= keys
    assert not any(k.endswith("/img2") for k in keys)  # log.curves=2
    curve = [float(r["invert/loss/loss/img0"]) for r in rows if r["invert/loss/loss/img0"]]
    assert len(curve) == 5
    final = [r for r in rows if r["invert/metric/mse"]]
    table = read_results(out)
    assert float(final[-1]["invert/metric/mse"]) == pytest.approx(
        np.mean([r["mse"] for r in table]), rel=1e-5
    )


def test_resume_redoes_only_missing_images_identically(first_run, images, tmp_path):
    """Codes are keyed by image, not by batch: a rerun in other batches gives the same codes."""
    from lsap.cli.invert import run

    out = first_run
    folder, names = images
    resumed = tmp_path / "resumed"
    (resumed / "codes").mkdir(parents=True)
    (resumed / "reconstructions").mkdir()
    kept = names[:2]
    for n in kept:
        (resumed / "codes" / f"{n}.pt").write_bytes(code_path(out, n).read_bytes())
    os.utime(resumed / "codes" / f"{kept[0]}.pt", (1, 1))
    # a killed run also leaves a torn row in its part file
    (resumed / PARTS_DIR).mkdir()
    (resumed / PARTS_DIR / "results-rank0.csv").write_text(
        "name,image_path,mse,psnr,lpips,id,sncd\nimg0,x,0.1,1"
    )
    cfg = compose(
        *FAST,
        f"data.path={folder}",
        f"paths.output_dir={resumed}",
        f"paths.cache_dir={out}/cache",
        "data.batch_size=1",
        "metrics.id=null",
    )
    run(cfg)
    assert os.stat(resumed / "codes" / f"{kept[0]}.pt").st_mtime == 1  # not redone
    rows = read_results(resumed)
    assert [r["name"] for r in rows] == names
    for r in rows:
        a = torch.load(code_path(out, r["name"]), weights_only=True)["w_plus"]
        b = torch.load(code_path(resumed, r["name"]), weights_only=True)["w_plus"]
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
    # rows of the earlier run come back from the code files; new rows have no ID
    assert np.isfinite(rows[0]["id"]) and np.isnan(rows[-1]["id"])


def test_merge_keeps_one_row_per_finished_image(tmp_path):
    (tmp_path / "codes").mkdir()
    for n in ("a", "b"):
        torch.save(
            {"image_path": n, "metrics": {"mse": 0.5}, "provenance": {}},
            tmp_path / "codes" / f"{n}.pt",
        )
    parts = tmp_path / PARTS_DIR
    parts.mkdir()
    (parts / "results-rank0.csv").write_text(
        "name,image_path,mse,psnr,lpips,id,sncd\na,a,0.1,2,3,4,5\nb,b,0.2,2,3"
    )
    (parts / "results-rank1.csv").write_text(
        "name,image_path,mse,psnr,lpips,id,sncd\na,a,0.3,2,3,4,5\nc,c,1,1,1,1,1\n"
    )
    summary = merge_results(tmp_path)
    rows = read_results(tmp_path)
    assert [r["name"] for r in rows] == ["a", "b"] and summary["num_images"] == 2  # c: no code
    assert rows[0]["mse"] == 0.3  # the later part wins
    assert rows[1]["mse"] == 0.5 and np.isnan(rows[1]["psnr"])  # torn row -> from the code file
    merge_results(tmp_path)  # idempotent
    assert [r["name"] for r in read_results(tmp_path)] == ["a", "b"]


def test_empty_folder_is_a_clear_error(tmp_path):
    from lsap.cli.invert import run

    (tmp_path / "empty").mkdir()
    cfg = compose(*FAST, f"data.path={tmp_path}/empty", f"paths.output_dir={tmp_path}/out")
    with pytest.raises(LsapFileError, match="folder holds no images"):
        run(cfg)


def test_face_alignment_flag(tmp_path):
    """data.align=true: a photo is cropped FFHQ-style before inversion; no face = skipped by name."""
    from lsap.cli.invert import run

    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut.jpg")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "noise.png")
    out = tmp_path / "out"
    cfg = compose(
        *FAST,
        f"data.path={folder}",
        f"paths.output_dir={out}",
        f"paths.cache_dir={tmp_path}/cache",
        "data.align=true",
        "inversion.steps=1",
        "metrics.id=null",
    )
    run(cfg)
    assert [r["name"] for r in read_results(out)] == ["astronaut"]
    with open(out / "skipped.csv", newline="") as f:
        (skipped,) = list(csv.DictReader(f))
    assert skipped["image_path"].endswith("noise.png") and "no face found" in skipped["reason"]
    # the grid's target is the aligned crop, not the center crop of the whole photo
    from lsap.data.align import FaceAligner

    aligned = load_image(folder / "astronaut.jpg", 32, align=FaceAligner(32))
    plain = load_image(folder / "astronaut.jpg", 32)
    grid = torch.from_numpy(np.array(Image.open(out / "grid.png"))).permute(2, 0, 1)
    target = grid[:, :, :32].float() / 127.5 - 1
    assert (target - aligned).abs().max() <= 1 / 127.5 + 1e-6
    assert (target - plain).abs().mean() > 0.1


def test_inference_mode_is_refused(tmp_path, images):
    from lsap.cli.invert import run

    folder, _ = images
    cfg = compose(
        *FAST,
        f"data.path={folder}",
        f"paths.output_dir={tmp_path}/out",
        f"paths.cache_dir={tmp_path}/cache",
        "trainer.inference_mode=true",
        "metrics.id=null",
    )
    with pytest.raises(RuntimeError, match=r"set trainer\.inference_mode=false"):
        run(cfg)
    assert not (tmp_path / "out" / "codes").exists()


def test_logging_happens_as_images_finish_not_at_teardown(tmp_path):
    """Curves, per-image metrics and the grid reach the disk after each batch: a run killed
    before its teardown keeps what it logged (its step numbers follow the earlier runs' images)."""
    from types import SimpleNamespace

    from lsap.systems.inversion_callbacks import GRID_FILE, InversionLogging
    from lsap.systems.loggers import ResumableCSVLogger

    logger = ResumableCSVLogger(save_dir=tmp_path, name="csv", version="")
    plan = SimpleNamespace(num_done=3)  # three images finished by an earlier run of the folder
    trainer = SimpleNamespace(
        is_global_zero=True, loggers=[logger], datamodule=SimpleNamespace(plan=plan)
    )
    cb = InversionLogging(tmp_path, curves=1, grid=2)
    cb.on_predict_start(trainer, None)
    steps, N = 4, 2
    outputs = {
        "name": ["a", "b"],
        "w_plus": torch.zeros(N, 8, 64),
        "history": {"loss": torch.arange(steps * N, dtype=torch.float32).view(steps, N)},
        "targets": torch.zeros(N, 3, 8, 8),
        "images": torch.ones(N, 3, 8, 8),
        "metrics": {"mse": torch.tensor([0.25, 0.75]), "lpips": torch.full((N,), float("nan"))},
    }
    cb.on_predict_batch_end(trainer, None, outputs, None, 0)
    # no teardown: read what is on disk now
    with open(tmp_path / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    curve = [float(r["invert/loss/loss/a"]) for r in rows if r.get("invert/loss/loss/a")]
    assert curve == [0.0, 2.0, 4.0, 6.0]
    assert not any(k.endswith("/b") for k in rows[0])  # curves=1
    per_image = {int(r["step"]): r for r in rows if r.get("invert/image/mse")}
    assert sorted(per_image) == [4, 5]  # after the earlier run's three images
    assert float(per_image[4]["invert/image/mse"]) == 0.25
    assert float(per_image[5]["invert/progress/mse"]) == pytest.approx(0.5)
    assert not any(r.get("invert/progress/lpips") for r in rows)  # NaN metrics stay out
    assert Image.open(tmp_path / GRID_FILE).size == (16, 16)
