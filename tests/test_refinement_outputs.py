"""PTI results in an inversion folder: lsap-edit edits through each image's tuned generator and
lsap-eval scores both stages (the two-stage table)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from conf_entries import pti_kwargs
from inversions import NAMES, original_path, sample_codes, write_inversion
from PIL import Image

from lsap import load_generator
from lsap.data import load_image, save_image, tensor_to_uint8
from lsap.io import LsapFileError
from lsap.io.inversions import CodeSet, generator_shas
from lsap.metrics import mse
from lsap.refinement import pivotal_tuning, save_tuned_generators

LPIPS_OPTIONS = {"lpips": {"net": "alex", "backbone": "random", "resize": None}}
N = 3


def _png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def _uint8(image):
    return tensor_to_uint8(image).permute(1, 2, 0).numpy()


def _read_originals(root, names):
    return torch.stack([load_image(original_path(root / "originals", n), 32) for n in names])


@pytest.fixture(scope="module")
def pti_folder(tmp_path_factory, tiny_G, other_G):
    """Originals from another generator, tiny_G codes as pivots, an inversion folder whose code
    files name per-image tuned generators (as the inversion job writes them with PTI)."""
    root = tmp_path_factory.mktemp("pti")
    names = NAMES[:N]
    with torch.no_grad():
        originals = other_G.synthesis(sample_codes(other_G, N, seed=5)).clamp(-1, 1)
    for name, im in zip(names, originals, strict=True):
        p = original_path(root / "originals", name)
        p.parent.mkdir(parents=True, exist_ok=True)
        save_image(im, p)
    targets = _read_originals(root, names)
    codes = sample_codes(tiny_G, N, seed=9)
    inv = write_inversion(root / "inv", tiny_G, codes, names, originals=root / "originals")
    res = pivotal_tuning(
        tiny_G,
        targets,
        codes,
        **pti_kwargs(steps=30, lr=3e-3, loss_options=LPIPS_OPTIONS, locality=None),
    )
    rel = save_tuned_generators(res, tiny_G, inv, names)
    assert rel == [f"../generators/{n}.pt" for n in names]
    for name, r in zip(names, rel, strict=True):
        obj = torch.load(inv / "codes" / f"{name}.pt", weights_only=True)
        torch.save({**obj, "generator": r}, inv / "codes" / f"{name}.pt")
    return root, inv, codes, names


def test_code_files_name_their_tuned_generators(pti_folder, tiny_G, other_G, tmp_path):
    _, inv, _, _ = pti_folder
    cs = CodeSet(inv, tiny_G.num_ws, tiny_G.w_dim, sha256=tiny_G.sha256)
    assert cs.has_tuned_generators()
    rec = cs[0]
    assert rec.generator == str((inv / "generators" / f"{rec.name}.pt").resolve())
    G0 = load_generator(rec.generator, base=tiny_G)
    # codes made for the base generator fit its tuned generators (they are their pivots)
    assert generator_shas(G0) == (G0.sha256, tiny_G.sha256)
    CodeSet(inv, tiny_G.num_ws, tiny_G.w_dim, sha256=generator_shas(G0), strict=True)
    with pytest.raises(LsapFileError, match="codes were made for generator"):
        CodeSet(inv, tiny_G.num_ws, tiny_G.w_dim, sha256=generator_shas(other_G), strict=True)


@pytest.mark.skipif(shutil.which("lsap-edit") is None, reason="lsap not installed")
def test_lsap_edit_and_eval_go_through_the_tuned_generators(pti_folder, tiny_G, tmp_path):
    root, inv, codes, names = pti_folder
    common = ["generator=tiny", f"paths.cache_dir={tmp_path}/cache", "device=cpu"]
    proc = subprocess.run(
        [
            "lsap-edit",
            f"hydra.run.dir={tmp_path}/edit",
            *common,
            f"codes={inv}",
            "editing=sefa",
            "editing.sefa.components=[0]",
            "editing.sefa.factors=[0.0,3.0]",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "edit" / "edits" / "sefa" / "all" / "dir0"
    assert (
        json.loads((tmp_path / "edit" / "edit.json").read_text())["through_tuned_generators"] == N
    )
    for i, name in enumerate(names):
        tuned = load_generator(inv / "generators" / f"{name}.pt", base=tiny_G)
        saved = torch.load(folder / f"{name}.pt", weights_only=True)
        assert (folder / saved["generator"]).resolve() == (inv / "generators" / f"{name}.pt")
        with torch.no_grad():
            want = [tuned.synthesis(saved["w_plus"][k : k + 1])[0] for k in range(2)]
            base = tiny_G.synthesis(codes[i : i + 1])[0]
        for k, key in enumerate(("+0", "+3")):
            got = _png(folder / f"factor{key}" / f"{name}.png").astype(int)
            diff = np.abs(got - _uint8(want[k]).astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
        # ... and not the base generator's image
        assert np.abs(_uint8(want[0]).astype(int) - _uint8(base).astype(int)).mean() > 5

    proc = subprocess.run(
        [
            "lsap-eval",
            f"hydra.run.dir={tmp_path}/eval",
            *common,
            f"originals={root}/originals",
            f"methods={{lsap_o: {inv}}}",
            "two_stage=true",
            "metrics=offline",
            "metrics.fidelity=[mse,psnr,lpips]",
            "metrics.lpips.net=alex",
            "metrics.editing=[lpips,sncd]",
            "editing=sefa",
            "editing.sefa.components=[0]",
            "editing.sefa.factors=[0.0,2.0]",
            "alignment.num_samples=2000",
            "batch_size=2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "eval" / "eval.json").read_text())
    one, two = r["methods"]["lsap_o"], r["methods"]["lsap_o+pti"]
    assert (one["refinement"], two["refinement"]) == ("none", "pti")
    assert r["two_stage"] == [{"method": "lsap_o", "none": "lsap_o", "pti": "lsap_o+pti"}]
    # the refined numbers are those of the tuned generators' images, and better than stage one
    originals = _read_originals(root, names)
    with torch.no_grad():
        tuned_images = torch.cat(
            [
                load_generator(inv / "generators" / f"{n}.pt", base=tiny_G).synthesis(
                    codes[i : i + 1]
                )
                for i, n in enumerate(names)
            ]
        )
        base_images = tiny_G.synthesis(codes)
    assert two["metrics"]["mse"] == pytest.approx(
        float(mse(tuned_images, originals).mean()), rel=1e-4
    )
    assert one["metrics"]["mse"] == pytest.approx(
        float(mse(base_images, originals).mean()), rel=1e-4
    )
    assert two["metrics"]["mse"] < 0.5 * one["metrics"]["mse"]
    assert two["sncd"]["total"] == pytest.approx(one["sncd"]["total"])  # SNCD of the same pivots
    md = (tmp_path / "eval" / "eval.md").read_text()
    assert "Two-stage inversion (first stage x result refinement):" in md
    assert "| lsap_o | none |" in md and "| lsap_o | PTI |" in md


@pytest.mark.skipif(shutil.which("lsap-edit") is None, reason="lsap not installed")
def test_lsap_edit_with_the_tuned_generator_as_generator(tiny_G, other_G, tmp_path):
    """The documented `lsap-edit generator=file generator.path=<run>/generators/<name>.pt
    generator.base=G.pt codes=<run>/codes/<name>.pt`: the code file names the tuned generator
    that is already the configured one; its delta is not added a second time."""
    from lsap.io import save_generator
    from lsap.io.checkpoints import load_tuned_generators

    base_path = save_generator(tiny_G, tmp_path / "G.pt")
    G = load_generator(base_path)  # sha256 = the file's, as the deltas record it
    names = NAMES[:2]
    codes = sample_codes(G, 2, seed=9)
    inv = write_inversion(tmp_path / "inv", G, codes, names, reconstructions=False)
    with torch.no_grad():
        targets = other_G.synthesis(sample_codes(other_G, 2, seed=5)).clamp(-1, 1)
    res = pivotal_tuning(
        G, targets, codes, **pti_kwargs(steps=5, lr=3e-3, loss_options=LPIPS_OPTIONS, locality=None)
    )
    for name, r in zip(names, save_tuned_generators(res, G, inv, names), strict=True):
        obj = torch.load(inv / "codes" / f"{name}.pt", weights_only=True)
        torch.save({**obj, "generator": r}, inv / "codes" / f"{name}.pt")
    delta = inv / "generators" / f"{names[0]}.pt"
    tuned = load_generator(delta, base=base_path)
    assert load_tuned_generators([str(delta)], tuned) == {str(delta): tuned}
    with pytest.raises(LsapFileError, match="configured generator is another tuned generator"):
        load_tuned_generators([str(inv / "generators" / f"{names[1]}.pt")], tuned)
    proc = subprocess.run(
        [
            "lsap-edit",
            f"hydra.run.dir={tmp_path}/edit",
            f"paths.cache_dir={tmp_path}/cache",
            "device=cpu",
            "generator=file",
            f"generator.path={delta}",
            f"generator.base={base_path}",
            f"codes={inv}/codes/{names[0]}.pt",
            "editing=sefa",
            "editing.sefa.components=[0]",
            "editing.sefa.factors=[0.0]",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = _png(tmp_path / "edit/edits/sefa/all/dir0/factor+0" / f"{names[0]}.png").astype(int)
    with torch.no_grad():
        want = _uint8(tuned.synthesis(codes[:1])[0]).astype(int)
    assert np.abs(got - want).max() <= 1


def test_tuned_generators_are_not_written_past_the_disk_budget(tiny_G, tmp_path):
    codes = sample_codes(tiny_G, 2, seed=1)
    with torch.no_grad():
        targets = tiny_G.synthesis(codes).clamp(-1, 1)
    one_step = pti_kwargs(steps=1, loss_options=LPIPS_OPTIONS, locality=None)
    res = pivotal_tuning(tiny_G, targets, codes, **one_step)
    with pytest.raises(LsapFileError, match=r"2 generator deltas .* over the configured limit"):
        save_tuned_generators(res, tiny_G, tmp_path, ["a", "b"], max_total_bytes=1000)
    assert not (tmp_path / "generators").exists() or not any((tmp_path / "generators").iterdir())
    per_set = pivotal_tuning(tiny_G, targets, codes, **{**one_step, "mode": "per_set"})
    rel = save_tuned_generators(per_set, tiny_G, tmp_path, ["a", "b"])
    assert rel == ["../generators/set__a.pt"] * 2
    G = load_generator(tmp_path / "generators" / "set__a.pt", base=tiny_G)
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(codes), per_set.images, atol=2e-3, rtol=0)
