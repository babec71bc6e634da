"""lsap-invert with a code source (optimisation, encoder, encoder + optimisation, codes file) and
result refinement (PTI): both stages written, tuned generators reload to the refined images,
resume never refines a finished image twice, DDP writes each image once, and lsap-eval makes the
two-stage table from the outputs of the four code sources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from invert_helpers import FAST, compose, make_images, tiny_arch
from PIL import Image

from lsap import load_encoder, load_generator
from lsap.core.hashing import file_sha256
from lsap.data import load_image
from lsap.io import LsapFileError, init_generator
from lsap.io.encoders import save_encoder
from lsap.io.inversion_layout import REFINED_METRIC_NAMES, code_path, read_results
from lsap.io.inversions import CodeSet
from lsap.metrics import mse
from lsap.nets.encoder import build_encoder

# Stage two on the tiny generator: 10x PTI's learning rate, so that tens of steps are enough.
PTI = [
    "refinement=pti",
    "refinement.steps=12",
    "refinement.lr=3e-3",
    "refinement.loss.options.lpips.backbone=random",
]
ENCODER_STAGES = "[[16, 16, 1], [16, 24, 1], [24, 32, 1], [32, 48, 1]]"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def G():
    return init_generator(tiny_arch(), 0)  # the generator of conf/generator/tiny.yaml


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Images of another generator: the run's generator cannot reproduce them exactly."""
    folder = tmp_path_factory.mktemp("images")
    return folder, make_images(folder, n=4, nested=1, bad=False, generator_seed=7)


def _run(tmp_path, images, out, *overrides, cache=None):
    from lsap.cli.invert import run

    folder, _ = images
    cfg = compose(
        *FAST,
        f"data.path={folder}",
        f"paths.output_dir={out}",
        f"paths.cache_dir={cache or tmp_path}/cache",
        "metrics.id=null",
        *overrides,
    )
    run(cfg)
    return out


def _png(path) -> torch.Tensor:
    """A PNG as [3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1).float() / 127.5 - 1


def _records(out):
    return {p.stem: torch.load(p, weights_only=True) for p in sorted((out / "codes").glob("*.pt"))}


@pytest.fixture(scope="module")
def pti_run(images, tmp_path_factory):
    """LSAP_O codes (5 steps), then PTI per image, tuned generators saved; batches of 3."""
    tmp = tmp_path_factory.mktemp("pti")
    return _run(
        tmp,
        images,
        tmp / "out",
        *PTI,
        "refinement.save.deltas=true",
        "data.batch_size=3",
        cache=tmp,
    )


def test_pti_writes_both_stages_and_refines(pti_run, images, G):
    out = pti_run
    _, names = images
    rows = read_results(out)
    assert [r["name"] for r in rows] == names
    for r in rows:
        # the generator cannot reproduce these targets: PTI gets much closer than the codes alone
        assert r["pti_mse"] < 0.7 * r["mse"], r
        assert r["pti_lpips"] < 0.7 * r["lpips"], r
        assert r["pti_psnr"] > r["psnr"] and int(r["pti_steps"]) == 12
        assert all(np.isfinite(r[k]) for k in REFINED_METRIC_NAMES if k != "pti_id")
    records = _records(out)
    for r in rows:
        name, rec = r["name"], records[r["name"]]
        target = load_image(r["image_path"], G.resolution)[None]
        # stage one: the base generator's image at the code; stage two: the refined PNG
        with torch.no_grad():
            base = G.synthesis(rec["w_plus"], noise_mode="const", noise=rec["noise"])
        stage_one = _png(out / "reconstructions" / f"{name}.png")[None]
        refined = _png(out / "refined" / f"{name}.png")[None]
        assert (stage_one - base.clamp(-1, 1)).abs().max() <= 1 / 127.5 + 1e-6
        assert r["mse"] == pytest.approx(float(mse(stage_one, target)), rel=1e-4)
        assert r["pti_mse"] == pytest.approx(float(mse(refined, target)), rel=1e-4)
        assert rec["metrics"]["pti_mse"] == pytest.approx(r["pti_mse"], rel=1e-6)
        assert rec["refinement"]["name"] == "pti" and rec["refinement"]["steps_run"] == 12
        prov = rec["provenance"]
        assert prov["refinement"] == "pti" and prov["code_source"]["name"] == "optimize"
        # the saved tuned generator reloads on its base to the refined image
        assert rec["generator"] == f"../generators/{name}.pt"
        tuned = load_generator(out / "codes" / rec["generator"], base=G)
        assert tuned.base_sha256 == G.sha256
        with torch.no_grad():
            again = tuned.synthesis(rec["w_plus"], noise_mode="const", noise=rec["noise"])
        diff = (again.clamp(-1, 1) - refined).abs() * 127.5
        assert diff.max() <= 1.01 and (diff > 0.5).float().mean() < 0.01
    # the readers of lsap-edit / lsap-eval see the tuned generators
    assert CodeSet(out, G.num_ws, G.w_dim, sha256=G.sha256, strict=True).has_tuned_generators()
    grid = Image.open(out / "grid.png")
    assert grid.size == (3 * G.resolution, len(names) * G.resolution)  # target | stage 1 | PTI


def test_resume_never_refines_a_finished_image_twice(
    pti_run, images, encoder_file, tmp_path, monkeypatch
):
    """A killed run leaves finished images (code files) and, for an unfinished one, maybe a
    delta; the rerun refines exactly the unfinished images."""
    import lsap.systems.inversion as system

    _, names = images
    out = tmp_path / "resumed"
    shutil.copytree(pti_run, out)
    (out / "results.csv").unlink()
    redo = names[1:3]
    for n in redo:
        code_path(out, n).unlink()
    kept = {n: code_path(out, n).stat().st_mtime_ns for n in names if n not in redo}
    refined_pngs = {n: (out / "refined" / f"{n}.png").stat().st_mtime_ns for n in kept}
    tuned = []
    original = system.pivotal_tuning

    def counting(G, targets, pivots, **kw):
        tuned.append(targets.shape[0])
        return original(G, targets, pivots, **kw)

    monkeypatch.setattr(system, "pivotal_tuning", counting)
    _run(tmp_path, images, out, *PTI, "refinement.save.deltas=true", "data.batch_size=1")
    assert sum(tuned) == len(redo)  # the finished images were not refined again
    for n, t in kept.items():
        assert code_path(out, n).stat().st_mtime_ns == t
        assert (out / "refined" / f"{n}.png").stat().st_mtime_ns == refined_pngs[n]
    rows = read_results(out)
    assert [r["name"] for r in rows] == names and all(np.isfinite(r["pti_mse"]) for r in rows)
    # a folder refined with PTI is not continued without it (its images would not match)
    with pytest.raises(LsapFileError, match="holds results of refinement=pti"):
        _run(tmp_path, images, out, "refinement=none")
    # ... nor with codes from another source (LSAP_O codes and encoder codes in one table)
    with pytest.raises(LsapFileError, match="holds codes of code_source=optimize, this run uses"):
        _run(
            tmp_path,
            images,
            out,
            *PTI,
            "code_source=encoder",
            f"code_source.encoder={encoder_file}",
        )


def test_tuned_generators_past_the_disk_budget_are_refused_before_any_work(images, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(LsapFileError, match=r"4 tuned generator deltas .* over the configured"):
        _run(
            tmp_path,
            images,
            out,
            *PTI,
            "refinement.save.deltas=true",
            "refinement.save.max_total_gb=1e-6",
        )
    assert not (out / "codes").exists()


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory, G):
    """A random e4e encoder for the tiny generator, input 64 px (images are resized to it)."""
    torch.manual_seed(3)
    enc = build_encoder(
        "e4e", num_ws=G.num_ws, w_dim=G.w_dim, input_size=64, stages=json.loads(ENCODER_STAGES)
    )
    enc.set_latent_avg(G.w_avg)
    path = tmp_path_factory.mktemp("encoder") / "e4e.pt"
    save_encoder(enc, path, generator_sha256=G.sha256)
    return path


def test_encoder_codes_are_the_encoders(encoder_file, images, tmp_path, G):
    out = _run(
        tmp_path,
        images,
        tmp_path / "enc",
        "code_source=encoder",
        f"code_source.encoder={encoder_file}",
        "data.batch_size=3",
    )
    enc = load_encoder(encoder_file)
    records = _records(out)
    for r in read_results(out):
        rec = records[r["name"]]
        x = load_image(r["image_path"], G.resolution)[None]  # as the job reads it
        with torch.no_grad():
            want = enc(F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False))
        torch.testing.assert_close(rec["w_plus"], want, atol=1e-5, rtol=1e-5)
        assert rec["noise"] is None and int(r["steps"]) == 0
        src = rec["provenance"]["code_source"]
        assert src["name"] == "encoder" and src["encoder_sha256"] == file_sha256(encoder_file)
        assert not src["optimize"]
    # encoder, then optimisation from its codes: with 0 steps the codes are the encoder's
    opt = _run(
        tmp_path,
        images,
        tmp_path / "enc_opt",
        "code_source=encoder_optimize",
        f"code_source.encoder={encoder_file}",
        "inversion.steps=0",
    )
    for name, rec in _records(opt).items():
        torch.testing.assert_close(rec["w_plus"], records[name]["w_plus"], atol=1e-5, rtol=1e-5)
    opt5 = _run(
        tmp_path,
        images,
        tmp_path / "enc_opt5",
        "code_source=encoder_optimize",
        f"code_source.encoder={encoder_file}",
    )
    before = {r["name"]: r["mse"] for r in read_results(out)}
    after = {r["name"]: r["mse"] for r in read_results(opt5)}
    # optimisation from the encoder's codes improves every image (measured: MSE about 3x lower)
    assert all(after[n] < 0.6 * before[n] for n in before), (before, after)


def test_codes_source_reuses_codes_without_optimising(pti_run, images, tmp_path, monkeypatch):
    import lsap.inversion.pipeline as system

    def no_optimisation(*args, **kwargs):
        raise AssertionError("code_source=codes must not re-optimise")

    monkeypatch.setattr(system, "optimize_latents", no_optimisation)
    out = _run(
        tmp_path, images, tmp_path / "again", "code_source=codes", f"code_source.codes={pti_run}"
    )
    source, reused = _records(pti_run), _records(out)
    assert sorted(reused) == sorted(source)
    for name, rec in reused.items():
        assert torch.equal(rec["w_plus"], source[name]["w_plus"])  # the pivots, exactly
        assert all(
            torch.equal(a, b) for a, b in zip(rec["noise"], source[name]["noise"], strict=True)
        )
        assert "generator" not in rec  # a tuned generator is not carried over
        assert rec["metrics"]["mse"] == pytest.approx(source[name]["metrics"]["mse"], rel=1e-6)
        src = rec["provenance"]["code_source"]
        assert src["name"] == "codes" and src["code_file"] == str(code_path(pti_run, name))
        assert rec["provenance"]["steps"] == 0
    assert all(int(r["steps"]) == 0 for r in read_results(out))
    partial = tmp_path / "partial"
    shutil.copytree(pti_run / "codes", partial)
    (partial / f"{images[1][0]}.pt").unlink()
    with pytest.raises(LsapFileError, match="holds no codes for 1 of the 4 images"):
        _run(
            tmp_path,
            images,
            tmp_path / "partial_out",
            "code_source=codes",
            f"code_source.codes={partial}",
        )


def _cli_error(tmp_path, images, out, *overrides, capsys) -> str:
    """Run as the lsap-invert command does (its error wrappers); return its one stderr line."""
    from lsap.cli._common import one_line_errors

    main = one_line_errors("lsap-invert", settings=True)(_run)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(tmp_path, images, out, *overrides)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    assert not (out / "codes").exists()  # refused before any work
    return err[0]


def test_bad_code_sources_are_one_line_errors_naming_the_file(pti_run, images, tmp_path, G, capsys):
    missing = tmp_path / "missing_encoder.pt"
    line = _cli_error(
        tmp_path,
        images,
        tmp_path / "o1",
        "code_source=encoder",
        f"code_source.encoder={missing}",
        capsys=capsys,
    )
    assert line == f"lsap-invert: error: {missing}: no such file"
    line = _cli_error(tmp_path, images, tmp_path / "o2", "code_source=encoder", capsys=capsys)
    assert line == "lsap-invert: error: code_source.init=encoder needs code_source.encoder=<path>"
    # codes of the default tiny generator, read for another one (generator.seed=1)
    line = _cli_error(
        tmp_path,
        images,
        tmp_path / "o3",
        "code_source=codes",
        f"code_source.codes={pti_run}",
        "generator.seed=1",
        capsys=capsys,
    )
    first = min(images[1])
    assert line.startswith(
        f"lsap-invert: error: {code_path(pti_run, first)}: codes were made for generator "
        f"{G.sha256[:12]}"
    ), line
    # an encoder for another generator (w_dim 32, the run's is 64)
    torch.manual_seed(0)
    enc = build_encoder(
        "e4e", num_ws=G.num_ws, w_dim=32, input_size=32, stages=json.loads(ENCODER_STAGES)
    )
    other = save_encoder(enc, tmp_path / "other_enc.pt")
    line = _cli_error(
        tmp_path,
        images,
        tmp_path / "o4",
        "code_source=encoder",
        f"code_source.encoder={other}",
        capsys=capsys,
    )
    assert line.startswith(f"lsap-invert: error: {other}: encoder makes codes [N, 8, 32]"), line


def test_pti_leaves_the_generator_file_untouched(images, tmp_path, G):
    """generator=file: PTI tunes copies; the file keeps its bytes, the deltas name it as base."""
    from lsap.io import save_generator

    path = tmp_path / "G.pt"
    save_generator(G, path)
    before, mtime = file_sha256(path), path.stat().st_mtime_ns
    out = _run(
        tmp_path,
        images,
        tmp_path / "out",
        *PTI,
        "refinement.save.deltas=true",
        "generator=file",
        f"generator.path={path}",
        "inversion.steps=2",
    )
    assert file_sha256(path) == before and path.stat().st_mtime_ns == mtime
    base = load_generator(path)
    for r in read_results(out):
        assert r["pti_mse"] < r["mse"]
        rec = torch.load(code_path(out, r["name"]), weights_only=True)
        tuned = load_generator(out / "codes" / rec["generator"])  # base: the file it records
        assert tuned.base_sha256 == base.sha256 == file_sha256(path)
        with torch.no_grad():
            again = tuned.synthesis(rec["w_plus"], noise_mode="const", noise=rec["noise"])
        refined = _png(out / "refined" / f"{r['name']}.png")[None]
        assert ((again.clamp(-1, 1) - refined).abs() * 127.5).max() <= 1.01


def test_lsap_edit_edits_through_the_tuned_generators(pti_run, images, tmp_path, G):
    """lsap-edit on a refined lsap-invert folder: factor 0 is the refined image, not stage one's."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lsap.cli._common import config_dir
    from lsap.cli.edit import run as edit

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = hydra_compose(
            "edit",
            [
                "generator=tiny",
                f"codes={pti_run}",
                f"paths.output_dir={tmp_path}/edit",
                f"paths.cache_dir={tmp_path}/cache",
                "device=cpu",
                "editing=sefa",
                "editing.sefa.components=[0]",
                "editing.sefa.factors=[0.0,3.0]",
            ],
        )
    summary = edit(cfg)
    _, names = images
    assert summary["written"] == summary["through_tuned_generators"] == len(names)
    (folder,) = {p.parent.parent for p in (tmp_path / "edit").rglob("factor+0/*.png")}
    for name in names:
        at_zero = _png(folder / "factor+0" / f"{name}.png")
        refined = _png(pti_run / "refined" / f"{name}.png")
        stage_one = _png(pti_run / "reconstructions" / f"{name}.png")
        diff = (at_zero - refined).abs() * 127.5  # the fp16 delta against the fp32 tuned weights
        assert diff.max() <= 1.01 and (diff > 0.5).float().mean() < 0.01, name
        assert (at_zero - stage_one).abs().mean() * 127.5 > 10.0  # not the base generator's image
        moved = _png(folder / "factor+3" / f"{name}.png")
        assert (moved - at_zero).abs().mean() * 127.5 > 5.0  # the edit changes the image


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("lsap-invert") is None, reason="lsap not installed")
def test_ddp_with_refinement_writes_each_image_once(tmp_path):
    """2 gloo processes, PTI per set (one generator per batch of a shard), deltas saved."""
    names = make_images(tmp_path / "in", n=5, nested=1, bad=False, generator_seed=7)
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [
            "lsap-invert",
            *FAST,
            *PTI,
            "refinement.mode=per_set",
            "refinement.save.deltas=true",
            f"data.path={tmp_path}/in",
            f"paths.output_dir={out}",
            f"paths.log_dir={tmp_path}/logs",
            f"paths.cache_dir={tmp_path}/cache",
            "data.batch_size=2",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "metrics.id=null",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "5 to invert on 2 process(es)" in proc.stdout + proc.stderr
    rows = read_results(out)
    assert [r["name"] for r in rows] == names
    for folder in ("codes", "reconstructions", "refined"):
        assert sorted(p.stem for p in (out / folder).iterdir()) == names, folder
    assert not list(out.rglob("*.tmp"))
    G = init_generator(tiny_arch(), 0)
    records = _records(out)
    # shards of 3 and 2 images in batches of 2: three sets, one tuned generator each
    sets = {rec["generator"] for rec in records.values()}
    assert len(sets) == 3 and len(list((out / "generators").iterdir())) == 3
    for r in rows:
        rec = records[r["name"]]
        assert r["pti_mse"] < r["mse"]
        tuned = load_generator(out / "codes" / rec["generator"], base=G)
        with torch.no_grad():
            again = tuned.synthesis(rec["w_plus"], noise_mode="const", noise=rec["noise"])
        refined = _png(out / "refined" / f"{r['name']}.png")[None]
        assert ((again.clamp(-1, 1) - refined).abs() * 127.5).max() <= 1.01


def test_eval_two_stage_table_from_the_four_code_sources(
    pti_run, encoder_file, images, tmp_path, G
):
    """The README's commands: lsap-invert with the four code sources and refinement=pti, then
    lsap-eval two_stage=true: rows {e4e, LSAP_E, optimisation, LSAP_O} x {none, PTI}. The
    optimisation run keeps no tuned generators: its PTI row comes from refined/ (no edits)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lsap.cli._common import config_dir
    from lsap.cli.eval import run as evaluate

    folder, _ = images
    torch.manual_seed(4)  # another random encoder stands in for LSAP_E
    enc = build_encoder(
        "e4e", num_ws=G.num_ws, w_dim=G.w_dim, input_size=32, stages=json.loads(ENCODER_STAGES)
    )
    enc.set_latent_avg(G.w_avg)
    lsap_e = save_encoder(enc, tmp_path / "lsap_e.pt", generator_sha256=G.sha256)
    deltas = "refinement.save.deltas=true"
    runs = {
        "e4e": _run(
            tmp_path,
            images,
            tmp_path / "e4e",
            *PTI,
            deltas,
            "code_source=encoder",
            f"code_source.encoder={encoder_file}",
        ),
        "lsap_e": _run(
            tmp_path,
            images,
            tmp_path / "lsap_e",
            *PTI,
            deltas,
            "code_source=encoder",
            f"code_source.encoder={lsap_e}",
        ),
        "optimisation": _run(tmp_path, images, tmp_path / "opt", *PTI, "loss.sncd=0"),
        "lsap_o": pti_run,
    }
    methods = "{" + ", ".join(f"{k}: {v}" for k, v in runs.items()) + "}"
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = hydra_compose(
            "eval",
            [
                "generator=tiny",
                f"paths.output_dir={tmp_path}/eval",
                f"paths.cache_dir={tmp_path}/cache",
                f"originals={folder}",
                f"methods={methods}",
                "two_stage=true",
                "device=cpu",
                "metrics=offline",
                "metrics.fidelity=[mse,psnr,lpips]",
                "metrics.lpips.net=alex",
                "metrics.editing=[lpips]",
                "editing=sefa",
                "editing.sefa.components=[0]",
                "editing.sefa.factors=[0.0,2.0]",
                "alignment.num_samples=2000",
            ],
        )
    r = evaluate(cfg)
    assert r["two_stage"] == [{"method": k, "none": k, "pti": f"{k}+pti"} for k in runs]
    m = r["methods"]
    for k, out in runs.items():
        one, two = m[k], m[f"{k}+pti"]
        assert (one["refinement"], two["refinement"]) == ("none", "pti")
        table = read_results(out)
        # both stages score what lsap-invert wrote (the tuned generators' images up to the
        # float16 rounding of their deltas)
        assert one["metrics"]["mse"] == pytest.approx(np.mean([t["mse"] for t in table]), rel=1e-4)
        assert two["metrics"]["mse"] == pytest.approx(
            np.mean([t["pti_mse"] for t in table]), rel=1e-2
        )
        assert two["metrics"]["mse"] < one["metrics"]["mse"]
    assert m["optimisation+pti"]["source"] == "images" and m["lsap_o+pti"]["source"] == "codes"
    md = (tmp_path / "eval" / "eval.md").read_text()
    table = md[md.index("Two-stage inversion") :]
    for k in runs:
        for stage in ("none", "PTI"):
            line = next(x for x in table.splitlines() if x.startswith(f"| {k} | {stage} |"))
            sncd = line.rstrip(" |").rsplit("|", 1)[1].strip()
            assert sncd != "–" and float(sncd) > 0, line  # SNCD of the pivots, in both rows
