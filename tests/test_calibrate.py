"""The SNCD-weight calibration rule on constructed sweeps (table in, weight out), and lsap-calibrate
end to end on a tiny short sweep (toy32, 2 faces, 2 steps, weights 0 and 0.5)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from invert_helpers import FAST

from lsap.sweeps.calibrate import choose_weight

WEIGHTS = [0.0, 0.01, 0.02, 0.05, 0.5]
# lsap-invert overrides of the tiny short sweep: the shared offline FAST settings on toy32, 2 steps
INVERT = [
    "generator=toy32",
    "inversion.steps=2",
    *(o for o in FAST if not o.startswith(("generator=", "inversion.steps="))),
]


def table(mse, sncd, weights=WEIGHTS):
    return [
        {"sncd_weight": w, "mse": m, "sncd": s, "psnr": -10 * math.log10(m)}
        for w, m, s in zip(weights, mse, sncd, strict=True)
    ]


# MSE +0 / +3 / +5 / +8 / +100 %; SNCD falls with the weight; the samples sit at 0.17
EASY = table([1.0, 1.03, 1.05, 1.08, 2.0], [0.40, 0.20, 0.15, 0.10, 0.02])
# reaching the samples' SNCD needs weight 0.5, which doubles the MSE
COSTLY = table([1.0, 1.03, 1.05, 1.08, 2.0], [0.40, 0.30, 0.25, 0.20, 0.10])


def test_both_stops_at_the_samples_level_within_the_budget():
    c = choose_weight(list(reversed(EASY)), samples_sncd=0.17)  # row order does not matter
    assert c.weight == 0.02
    assert "reaches the samples' mean" in c.reason
    assert [e["weight"] for e in c.evidence] == WEIGHTS
    assert [e["within_budget"] for e in c.evidence] == [True, True, True, True, False]
    assert [e["reaches_samples"] for e in c.evidence] == [False, False, True, True, True]
    assert c.evidence[3]["mse_vs_baseline"] == pytest.approx(0.08)
    assert c.to_dict()["override"] == "loss.sncd=0.02"


def test_fidelity_takes_the_largest_weight_within_the_budget():
    assert choose_weight(EASY, samples_sncd=0.17, rule="fidelity").weight == 0.05
    assert choose_weight(EASY, samples_sncd=0.17, rule="fidelity", tolerance=0.04).weight == 0.01
    assert choose_weight(EASY, samples_sncd=0.17, rule="fidelity", tolerance=0.0).weight == 0.0
    assert choose_weight(EASY, samples_sncd=0.17, rule="fidelity", tolerance=1.5).weight == 0.5


def test_alignment_takes_the_first_weight_reaching_the_samples():
    assert choose_weight(EASY, samples_sncd=0.17, rule="alignment").weight == 0.02
    assert choose_weight(EASY, samples_sncd=0.25, rule="alignment").weight == 0.01
    c = choose_weight(COSTLY, samples_sncd=0.05, rule="alignment")
    assert c.weight == 0.5 and "no weight reaches" in c.reason


def test_both_falls_back_to_the_budget_when_alignment_costs_too_much():
    c = choose_weight(COSTLY, samples_sncd=0.17)
    assert c.weight == 0.05
    assert "costs +100.0 % mse" in c.reason
    c = choose_weight(COSTLY, samples_sncd=0.05)
    assert c.weight == 0.05 and "no swept weight reaches" in c.reason


def test_higher_is_better_metrics_use_a_lower_bound():
    # PSNR = 30 dB - 10 log10(MSE ratio): 29.87 / 29.79 / 29.67 / 26.99 dB at 0.01 / 0.02 / 0.05 / 0.5
    rows = [dict(r, psnr=30.0 - 10 * math.log10(r["mse"])) for r in EASY]
    c = choose_weight(rows, samples_sncd=0.0, rule="fidelity", metric="psnr", tolerance=0.012)
    assert c.weight == 0.05  # 29.67 >= 0.988 * 30 = 29.64
    c = choose_weight(rows, samples_sncd=0.0, rule="fidelity", metric="psnr", tolerance=0.005)
    assert c.weight == 0.01  # 29.87 >= 29.85 > 29.79


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="baseline"):
        choose_weight(EASY[1:], samples_sncd=0.17)
    with pytest.raises(ValueError, match="each weight once"):
        choose_weight(EASY + EASY[:1], samples_sncd=0.17)
    with pytest.raises(ValueError, match="rule"):
        choose_weight(EASY, samples_sncd=0.17, rule="largest")
    bad = [dict(r) for r in EASY]
    bad[2]["mse"] = float("nan")
    with pytest.raises(ValueError, match=r"weight 0\.02 has no mse"):
        choose_weight(bad, samples_sncd=0.17)


def test_lsap_calibrate_end_to_end(tmp_path):
    """A real short sweep through lsap-invert; calibration.json holds the weight the rule picks
    from the written sweep table, with its evidence and provenance."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    out = tmp_path / "calib"
    cmd = [
        sys.executable,
        "-m",
        "lsap.cli.calibrate",
        f"hydra.run.dir={out}",
        f"paths.cache_dir={tmp_path}/cache",
        "num_images=2",
        "weights=[0,0.5]",
        "samples.num_samples=2000",
        "invert_overrides=[" + ",".join(f'"{o}"' for o in INVERT) + "]",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((out / "calibration.json").read_text())
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [row["sncd_weight"] for row in rows] == [0.0, 0.5]
    expected = choose_weight(rows, samples_sncd=result["samples_sncd_mean"])
    assert result["weight"] == expected.weight
    assert (
        r.stdout.strip()
        .splitlines()[-1]
        .startswith(f"lsap-calibrate: loss.sncd={expected.weight:g}")
    )
    curve = result["curves"][0]
    assert [e["weight"] for e in curve["evidence"]] == [0.0, 0.5]
    assert curve["rule"] == "both" and curve["tolerance"] == 0.1
    assert result["provenance"]["config"]["weights"] == [0.0, 0.5]
    assert result["provenance"]["generator_sha256"]
    assert (out / "sweep_frontier.png").is_file() and (out / "calibration.md").is_file()
    assert len(list((out / "images").glob("*.png"))) == 2
