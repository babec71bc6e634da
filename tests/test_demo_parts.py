"""The demo's and the reproduction's pure pieces: editability scores, the toy classifier's FID
features, the reproduction table's statistics."""

from __future__ import annotations

import math

import pytest
import torch

from lsap.assets import asset_path
from lsap.metrics.attribute_edits import attribute_index


def test_attribute_effects_sign_the_target_towards_the_edit():
    from lsap.demo.compare import attribute_effects

    before = torch.tensor([[0.2, 0.5, 0.9], [0.6, 0.1, 0.3]])
    after = torch.tensor([[0.7, 0.4, 0.9], [0.9, 0.3, 0.3]])
    binary = [True, True, False]
    up = attribute_effects(before, after, 3.0, 0, binary)
    assert up["target_shift"] == pytest.approx(0.4) == up["target_delta"]
    assert up["target_success"] == 1.0  # the one face below 0.5 crossed
    assert up["others_abs_delta"] == pytest.approx((0.15 + 0.0) / 2)
    down = attribute_effects(before, after, -3.0, 0, binary)
    assert down["target_shift"] == pytest.approx(-0.4) and down["target_delta"] == pytest.approx(
        0.4
    )
    zero = attribute_effects(before, before, 0.0, 1, binary)
    assert zero["others_abs_delta"] == 0.0 and zero["target_shift"] == 0.0
    # no target (SeFa): every attribute is an "other"
    none = attribute_effects(before, after, 1.0, None, binary)
    assert "target_shift" not in none
    assert none["others_abs_delta"] == pytest.approx(float((after - before).abs().mean()))
    assert none["others_flip_rate"] == pytest.approx(0.25)  # attribute 0 flips on face 0 of 2


def test_attribute_index_reads_the_edit_name():
    names = ["smile", "glasses", "beard"]
    assert attribute_index(names, "interfacegan/glasses") == 1
    assert attribute_index(names, "sefa/all/dir0") is None


def test_toy_classifier_features_are_its_hidden_layer():
    from lsap.io.classifier import load_toy_classifier
    from lsap.metrics.features import build_feature_extractor
    from lsap.metrics.fid import FIDSets

    feats = build_feature_extractor({"name": "toy_classifier"})
    C = load_toy_classifier(asset_path("toy32/classifier.pt"))
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    f = feats(x)
    assert f.shape == (6, C.config.hidden)
    # the hidden layer feeds the attribute head: the rest of the head turns it into the logits
    assert torch.allclose(C.head[3:](f), C(x), atol=1e-5)
    # 64 px images are area-pooled to 32 px: a nearest 2x upscale gives the same features
    big = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    assert torch.allclose(feats(big), f, atol=1e-5)
    fids = FIDSets(["same", "other"], feats.num_features)
    fids.update_reference(f)
    fids.update("same", f)
    fids.update("other", feats(-x))
    d = fids.compute()
    assert abs(d["same"]) < 1e-3 < d["other"]


def test_reproduction_rows_and_pairs():
    from lsap.demo.reproduce import markdown_table, method_rows, paired_comparison

    def method(sncd, mse):
        return {
            "per_image": {
                f"i{k}": {"sncd": s, "mse": m}
                for k, (s, m) in enumerate(zip(sncd, mse, strict=True))
            },
            "fid": {"toy": 3.0},
            "seconds_per_image": 0.5,
        }

    methods = {
        "e4e": method([1.0, 2.0, 3.0], [0.1, 0.1, 0.1]),
        "lsap_e": method([0.5, 2.5, 1.0], [0.2, 0.1, 0.05]),
    }
    names = ["i0", "i1", "i2"]
    rows = method_rows(methods, {"lsap_e": {"target_shift": 0.4}}, names)
    assert rows["e4e"]["sncd"] == pytest.approx(2.0)
    assert rows["e4e"]["sncd_sem"] == pytest.approx(1.0 / math.sqrt(3))
    assert rows["lsap_e"]["edit_target_shift"] == 0.4 and "edit_target_shift" not in rows["e4e"]
    wins = paired_comparison(methods, "e4e", "lsap_e", names)
    assert wins["sncd"] == pytest.approx(2 / 3)  # lower on i0 and i2
    assert wins["mse"] == pytest.approx((0 + 0.5 + 1) / 3)  # worse, tie, better
    table = markdown_table(rows).splitlines()
    assert len(table) == 2 + 2 and table[2].startswith("| e4e | 2.0000 ± 0.5774")


def test_frontier_rows_check_each_target_against_the_baseline():
    from lsap.demo.reproduce import frontier_rows, frontier_table

    def row(sncd, mse, success):
        return {"sncd": sncd, "mse": mse, "edit_target_success": success}

    rows = {
        "projector": row(0.43, 0.0010, 0.58),
        "lsap_o": row(0.15, 0.00109, 0.69),  # every target met
        "lsap_o_sncd0p05": row(0.06, 0.0013, 0.79),  # +30 % MSE
        "lsap_o_sncd0p005": row(0.23, 0.00102, 0.57),  # above the samples, edits worse
        "e4e": row(0.32, 0.0027, 0.88),
    }
    weights = {"lsap_o": 0.0125, "lsap_o_sncd0p05": 0.05, "lsap_o_sncd0p005": 0.005, "e4e": 0}
    f = frontier_rows(rows, weights, samples_sncd=0.169)
    assert [r["method"] for r in f] == ["lsap_o_sncd0p005", "lsap_o", "lsap_o_sncd0p05"]
    ok = {r["method"]: (r["fidelity_ok"], r["alignment_ok"], r["editing_ok"]) for r in f}
    assert ok == {
        "lsap_o_sncd0p005": (True, False, False),
        "lsap_o": (True, True, True),
        "lsap_o_sncd0p05": (False, True, True),
    }
    assert f[1]["mse_vs_baseline"] == pytest.approx(1.09)
    table = frontier_table(f, 0.169).splitlines()
    assert len(table) == 2 + 3 and table[3].endswith("| yes | yes | yes |")


def test_demo_seeds_are_lsap_invert_seeds():
    """The demo's optimisation draws the same per-image random numbers as lsap-invert."""
    from lsap.inversion.settings import image_seed, image_seeds

    names = ["toy_2_000000", "astronaut", "a__b"]
    assert image_seeds(3, names) == [image_seed(3, n) for n in names]
    assert len(set(image_seeds(3, names))) == 3


def _results(sncd, psnr, success, samples=0.2):
    """A report.json-like dict: per method mean SNCD / PSNR on the toy faces, target success."""
    methods = {
        n: {"mean": {"toy": {"sncd": sncd[n], "psnr": psnr[n]}}, "per_image": {}} for n in sncd
    }
    return {
        "methods": methods,
        "generator": {"samples_expected_sncd": samples},
        "editability": {n: {"target_success": v} for n, v in success.items()},
        "images": [],
    }


def test_report_overview_is_written_from_the_numbers():
    from lsap.demo.report import overview

    r = _results(
        {"projector": 0.9, "lsap_o": 0.3}, {"projector": 30.0, "lsap_o": 28.5},
        {"projector": 0.4, "lsap_o": 0.7},
    )  # fmt: skip
    text = " ".join(overview(r))
    assert "lsap_o gives the lowest SNCD (0.300), projector the highest (0.900)" in text
    assert "samples average 0.200" in text
    assert "projector is closest to the originals (PSNR 30.00 dB); lsap_o 28.50 dB" in text
    assert "moved SNCD 0.900 -> 0.300 and PSNR 30.00 -> 28.50 dB" in text
    assert "target success 0.40 -> 0.70" in text and "lsap_o edits best" in text
    assert "lsap-demo data.path=" in text  # what to run next
    # other numbers, other sentences
    r = _results({"projector": 0.2, "lsap_o": 0.5}, {"projector": 20.0, "lsap_o": 25.0}, {})
    text = " ".join(overview(r))
    assert "projector gives the lowest SNCD (0.200)" in text
    assert "lsap_o is closest to the originals (PSNR 25.00 dB)" in text
    assert "edits best" not in text


def test_report_plots_sncd_against_fidelity_and_edit_success():
    import re

    from lsap.demo.report import sncd_plots

    r = _results(
        {"e4e": 0.8, "lsap_e": 0.4}, {"e4e": 22.0, "lsap_e": 21.0}, {"e4e": 0.3, "lsap_e": 0.5}
    )
    svg = sncd_plots(r)
    assert svg.count("<svg") == 2
    assert "SNCD against fidelity" in svg and "SNCD against edit success" in svg
    assert svg.count('data-method="e4e"') == 2 and svg.count('data-method="lsap_e"') == 2
    assert svg.count("generator samples") == 2 and svg.count("stroke-dasharray") == 2
    # lower SNCD is further left; higher PSNR is higher up (smaller y)
    first = svg.split("</svg>")[0]
    xy = {
        m: (float(x), float(y))
        for m, x, y in re.findall(r'data-method="(\w+)" cx="([\d.]+)" cy="([\d.]+)"', first)
    }
    assert xy["lsap_e"][0] < xy["e4e"][0] and xy["e4e"][1] < xy["lsap_e"][1]
    assert sncd_plots(_results({"a": 0.1}, {"a": 20.0}, {})).count("<svg") == 1


def test_edit_tables_do_not_mark_factor_zero_rows_best():
    from lsap.demo.report import edit_table

    entry = {
        "methods": {
            m: {
                "-3": {"lpips": lp, "sncd": 1.0},
                "+0": {"lpips": 0.0, "sncd": 0.5},
                "+3": {"lpips": lp + 0.01, "sncd": 1.2},
            }
            for m, lp in (("a", 0.2), ("b", 0.1))
        }
    }
    html = edit_table("interfacegan/smile", entry)
    rows = {r.split('"')[0]: r for r in html.split('<tr data-row="')[1:]}  # row name -> its cells
    assert all("best" not in rows[f"{m} @ +0"] for m in "ab")
    assert 'class="best">0.1000' in rows["b @ -3"]
    assert 'class="best">1.0000' in rows["a @ -3"] or 'class="best">1.0000' in rows["b @ -3"]


def test_edit_grids_label_rows_and_factor_columns():
    from lsap.demo.report import labelled_grid

    rows = [("toy_1 / e4e", torch.zeros(3, 3, 8, 8)), ("toy_1 / lsap_e", torch.ones(3, 3, 8, 8))]
    html = labelled_grid("g", rows, [-3.0, 0.0, 3.0], 16)
    assert "<th>factor -3</th><th>factor +0</th><th>factor +3</th>" in html
    assert html.count("<img") == 6 and "toy_1 / e4e" in html and "toy_1 / lsap_e" in html


def test_optimisation_progress_is_logged(caplog):
    import logging

    from lsap.demo.methods import step_progress

    report = step_progress("lsap_o", 0, 4, 6, 20, parts=4)
    with caplog.at_level(logging.INFO, logger="lsap.demo.methods"):
        for step in range(20):
            report(step, {"loss": torch.full((4,), 0.5)})
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert lines[0].startswith("lsap_o: images 1-4 of 6, step 5/20 (25 %), mean loss 0.5")
    assert "step 20/20 (100 %)" in lines[-1]
