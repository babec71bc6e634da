"""Evaluation metrics: hand-computed values, FID, streaming and DDP sharding, reports."""

from __future__ import annotations

import math
import re
import socket

import pytest
import torch
from conf_entries import conf_group
from inversions import NAMES, sample_codes, write_inversion, write_originals

from lsap.alignment import compute_anchors, sncd
from lsap.editing import EditSpec, sefa_edits
from lsap.io import LsapFileError
from lsap.io.inversions import CodeSet
from lsap.metrics import PSNR_CAP_DB
from lsap.metrics.evaluation import evaluate_method, gather_rows, match_originals, open_method
from lsap.metrics.features import RandomFeatures, build_feature_extractor
from lsap.metrics.fid import FIDSets
from lsap.metrics.report import flat_metrics, markdown_report
from lsap.metrics.scorer import Scorer, quantize
from lsap.metrics.streaming import MethodMetrics


@pytest.fixture(scope="module")
def lpips_random():
    from lsap.losses.perceptual import LPIPSLoss

    return LPIPSLoss(net="alex", backbone="random", resize=None)


def test_scores_of_identical_and_hand_made_images(lpips_random):
    from lsap.losses.identity import FaceEmbedder

    scorer = Scorer(lpips=lpips_random, face=FaceEmbedder(weights="random"))
    a = torch.rand(2, 3, 32, 32) * 2 - 1
    s = scorer.fidelity(a, a)
    assert torch.equal(s["mse"], torch.zeros(2))
    assert torch.equal(
        s["psnr"], torch.full((2,), PSNR_CAP_DB)
    )  # capped, as lsap.metrics documents
    torch.testing.assert_close(s["ssim"], torch.ones(2))
    assert torch.equal(s["lpips"], torch.zeros(2))
    torch.testing.assert_close(s["id"], torch.ones(2))
    black, white = -torch.ones(1, 3, 32, 32), torch.ones(1, 3, 32, 32)
    s = scorer.fidelity(black, white)
    assert s["mse"].item() == 1.0 and s["psnr"].item() == 0.0
    grey = torch.full((1, 3, 32, 32), 2 * 51 / 255 - 1)  # uint8 51 = 0.2
    assert scorer.fidelity(black, grey)["psnr"].item() == pytest.approx(-10 * math.log10(0.04))
    assert scorer.fidelity(a, quantize(a) + 1e-3)["lpips"].max() == 0  # compared as saved PNGs
    e = scorer.editing(a, a, original_embeddings=scorer.embed(a))
    assert torch.equal(e["lpips"], torch.zeros(2))
    torch.testing.assert_close(e["id"], torch.ones(2))
    with pytest.raises(ValueError, match="metric 'id' needs a face embedder"):
        Scorer(["id"])


def test_fid_of_a_set_with_itself_is_zero_and_a_shift_adds_its_square_norm():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g) @ torch.randn(16, 16, generator=g)
    x = x - x.mean(0)  # centred, so scaling leaves the mean at 0
    shift = torch.linspace(-1, 1, 16)
    fid = FIDSets(["same", "shifted", "scaled", "one"], 16)
    for chunk in x.split(64):  # streamed in batches
        fid.update_reference(chunk)
        fid.update("same", chunk)
        fid.update("shifted", chunk + shift)
        fid.update("scaled", chunk * 2)
    fid.update("one", x[:1])
    r = fid.compute()
    assert abs(r["same"]) < 1e-3
    # same covariance: FID = ||mean difference||^2 exactly
    assert r["shifted"] == pytest.approx(float(shift.square().sum()), rel=1e-4)
    cov = torch.cov(x.T.double())
    assert r["scaled"] == pytest.approx(float(cov.trace()), rel=1e-4)  # tr(S + 4S - 2*2S) = tr(S)
    assert math.isnan(r["one"])  # fewer than 2 images


def test_fid_equals_torchmetrics_fid_on_images():
    from torchmetrics.image.fid import FrechetInceptionDistance

    feats = RandomFeatures()
    g = torch.Generator().manual_seed(1)
    real = torch.rand(40, 3, 32, 32, generator=g) * 2 - 1
    fake = (real + 0.3 * torch.randn(40, 3, 32, 32, generator=g)).clamp(-1, 1)
    reference = FrechetInceptionDistance(feature=RandomFeatures())
    reference.update(quantize(real), real=True)
    reference.update(quantize(fake), real=False)
    scorer = Scorer([], features=feats)
    fid = FIDSets(["fake"], scorer.num_features)
    fid.update_reference(scorer.fid_features(real))
    fid.update("fake", scorer.fid_features(fake))
    assert fid.compute()["fake"] == pytest.approx(float(reference.compute()), rel=1e-4)
    assert fid.compute()["fake"] > 1e-3


def test_offline_scorer_ranks_a_reconstruction_above_another_face(toy_faces):
    """metrics=offline's stand-ins (random LPIPS backbone, random ID network, random FID
    features) still rank a near copy of each face above a different face, on every score."""
    from lsap.metrics.scorer import build_scorer

    scorer = build_scorer(
        conf_group(
            "metrics",
            "default",
            fidelity=["lpips", "id"],
            editing=[],
            lpips={"net": "alex", "backbone": "random", "resize": None},
            id={"weights": "random"},
            fid={"features": {"name": "random"}},
        )
    )
    faces = torch.nn.functional.interpolate(toy_faces, size=256, mode="bilinear")
    near = faces + 0.05 * torch.randn(faces.shape, generator=torch.Generator().manual_seed(1))
    paired, mispaired = scorer.fidelity(near, faces), scorer.fidelity(faces.roll(1, 0), faces)
    assert (paired["lpips"] < mispaired["lpips"]).all()
    assert (paired["id"] > mispaired["id"]).all(), (paired["id"], mispaired["id"])
    assert mispaired["id"].mean() < 0.9
    feats = scorer.fid_features(faces)
    to_near = (scorer.fid_features(near) - feats).norm(dim=1)
    to_other = (scorer.fid_features(faces.roll(1, 0)) - feats).norm(dim=1)
    assert (to_near < to_other).all()


def test_feature_extractor_config():
    assert isinstance(build_feature_extractor("random"), RandomFeatures)
    custom = build_feature_extractor({"_target_": "torch.nn.Flatten"})
    assert isinstance(custom, torch.nn.Flatten)
    with pytest.raises(ValueError, match="unknown FID feature extractor 'vgg'"):
        build_feature_extractor({"name": "vgg"})
    with pytest.raises(LsapFileError, match=r"inc.pth: no such file \(FID Inception weights\)"):
        build_feature_extractor({"name": "inception", "weights": "/nonexistent/inc.pth"})


def test_method_metrics_do_not_depend_on_batching():
    g = torch.Generator().manual_seed(0)
    scores = {"mse": torch.rand(10, generator=g), "psnr": torch.rand(10, generator=g)}
    per_layer = torch.rand(10, 4, generator=g)
    f0, f1 = torch.randn(10, 8, generator=g), torch.randn(10, 8, generator=g)
    results = []
    for splits in ([10], [3, 3, 4]):
        m = MethodMetrics(
            ["mse", "psnr"],
            num_layers=4,
            num_features=8,
            edits=[("e", [1.0])],
            edit_metrics=["lpips"],
        )
        start = 0
        for n in splits:
            sl = slice(start, start + n)
            m.update(
                {k: v[sl] for k, v in scores.items()},
                num_images=n,
                sncd_per_layer=per_layer[sl],
                original_features=f0[sl],
                reconstruction_features=f1[sl],
            )
            m.update_edit("e", 1.0, {"lpips": scores["mse"][sl]}, features=f1[sl] + 1)
            start += n
        results.append(m.compute())
    a, b = results
    assert a["num_images"] == b["num_images"] == 10
    assert a["metrics"]["mse"] == pytest.approx(float(scores["mse"].mean()))
    assert a["sncd"]["per_layer"] == pytest.approx(per_layer.mean(0).tolist())
    assert a["sncd"]["total"] == pytest.approx(float(per_layer.sum(1).mean()))
    for x, y in [(a["metrics"], b["metrics"]), (a["editing"]["e"]["+1"], b["editing"]["e"]["+1"])]:
        assert x == pytest.approx(y, rel=1e-5)
    assert a["editing"]["e"]["+1"]["lpips"] == pytest.approx(float(scores["mse"].mean()))


def _tiny_setup(tmp_path, G):
    codes = sample_codes(G, len(NAMES))
    write_originals(tmp_path / "originals", G, codes)
    noisy = codes + 0.2 * torch.randn(codes.shape, generator=torch.Generator().manual_seed(5))
    exact = write_inversion(tmp_path / "exact", G, codes, originals=tmp_path / "originals")
    noisy_dir = write_inversion(tmp_path / "noisy", G, noisy, originals=tmp_path / "originals")
    return codes, noisy, exact, noisy_dir


def _evaluate(G, tmp_path, rank=0, world_size=1, anchors=None):
    methods = [
        open_method("exact", tmp_path / "exact", G),
        open_method("noisy", tmp_path / "noisy", G),
    ]
    pairs = match_originals(tmp_path / "originals", methods)
    scorer = Scorer(["mse", "psnr", "ssim"], features=RandomFeatures())
    edits = [EditSpec(e, (-2.0, 0.0, 2.0)) for e in sefa_edits(G, [0])]
    out = {}
    for m in methods:
        r = evaluate_method(
            m,
            pairs,
            G=G,
            scorer=scorer,
            anchors=anchors,
            edits=edits,
            rank=rank,
            world_size=world_size,
            batch_size=2,
            grid_images=1,
        )
        out[m.name] = (r.results, gather_rows(r.rows))
    return out


def test_evaluate_methods_against_hand_computed_values(tiny_G, tmp_path):
    codes, noisy, _, _ = _tiny_setup(tmp_path, tiny_G)
    anchors = compute_anchors(tiny_G, 2000, 0)
    out = _evaluate(tiny_G, tmp_path, anchors=anchors)
    exact, rows = out["exact"]
    assert exact["num_images"] == len(NAMES) and [r["name"] for r in rows] == sorted(NAMES)
    assert exact["metrics"]["mse"] == 0 and exact["metrics"]["psnr"] == PSNR_CAP_DB
    assert exact["metrics"]["ssim"] == pytest.approx(1.0)
    assert abs(exact["metrics"]["fid"]) < 1e-3
    total, per_layer = sncd(tiny_G, codes, anchors)
    assert exact["sncd"]["total"] == pytest.approx(float(total.mean()), rel=1e-5)
    assert exact["sncd"]["per_layer"] == pytest.approx(per_layer.mean(0).tolist(), rel=1e-5)
    edit = exact["editing"]["sefa/all/dir0"]
    assert edit["+0"]["lpips"] == 0 if "lpips" in edit["+0"] else True
    assert abs(edit["+0"]["fid"]) < 1e-3 and edit["+2"]["fid"] > 1e-3
    assert edit["+0"]["sncd"] == pytest.approx(exact["sncd"]["total"], rel=1e-5)
    noisy_r = out["noisy"][0]
    assert noisy_r["metrics"]["psnr"] < 40 and noisy_r["metrics"]["fid"] > exact["metrics"]["fid"]
    assert noisy_r["sncd"]["total"] == pytest.approx(
        float(sncd(tiny_G, noisy, anchors)[0].mean()), rel=1e-5
    )
    results = {"methods": {k: {"source": "codes", **v[0]} for k, v in out.items()}}
    md = markdown_report(results)
    assert "| exact | 5 | 0.0000 | 100.00 | 1.0000 |" in md
    assert "| edit | factor | exact | noisy |" in md and "| sefa/all/dir0 | -2 |" in md
    flat = flat_metrics(results)
    assert flat["eval/exact/metric/psnr"] == 100.0
    assert (
        flat["eval/noisy/edit/sefa/all/dir0/+2/fid"]
        == noisy_r["editing"]["sefa/all/dir0"]["+2"]["fid"]
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world_size, port, tmp_path, queue):
    import torch.distributed as dist
    from conftest import TINY

    from lsap.io import init_generator

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        torch.set_num_threads(1)
        G = init_generator(TINY, 0)
        anchors = compute_anchors(G, 2000, 0)
        out = _evaluate(G, tmp_path, rank=rank, world_size=world_size, anchors=anchors)
        if rank == 0:
            queue.put(out)
        dist.barrier()  # both ranks done before either tears down gloo (else a rank may abort)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two fresh processes import torch, torchmetrics and lsap
def test_two_gloo_ranks_give_the_single_process_numbers(tiny_G, tmp_path):
    import torch.multiprocessing as mp

    _tiny_setup(tmp_path, tiny_G)
    single = _evaluate(tiny_G, tmp_path, anchors=compute_anchors(tiny_G, 2000, 0))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(
        _ddp_worker, args=(2, _free_port(), tmp_path, queue), nprocs=2, start_method="spawn"
    )
    sharded = queue.get(timeout=60)
    for name in ("exact", "noisy"):
        a, b = single[name][0], sharded[name][0]
        assert b["num_images"] == a["num_images"] == len(NAMES)  # every image once, none twice
        assert b["metrics"] == pytest.approx(a["metrics"], rel=1e-4, abs=1e-4)
        assert b["sncd"]["total"] == pytest.approx(a["sncd"]["total"], rel=1e-5)
        assert b["sncd"]["per_layer"] == pytest.approx(a["sncd"]["per_layer"], rel=1e-5)
        for e, by_factor in a["editing"].items():
            for fk, row in by_factor.items():
                assert b["editing"][e][fk] == pytest.approx(row, rel=1e-4, abs=1e-4)
        # per-image rows are gathered from both ranks into the single-process table
        assert [r["name"] for r in sharded[name][1]] == [r["name"] for r in single[name][1]]
        for r, s in zip(sharded[name][1], single[name][1], strict=True):
            assert {k: v for k, v in r.items() if k != "name"} == pytest.approx(
                {k: v for k, v in s.items() if k != "name"}, rel=1e-5, abs=1e-6
            )


def test_codes_for_another_generator_warn_or_fail_with_strict(tiny_G, other_G, tmp_path):
    codes = sample_codes(tiny_G, 3)
    write_inversion(tmp_path / "inv", other_G, codes, NAMES[:3], reconstructions=False)
    with pytest.warns(UserWarning, match="codes were made for generator") as rec:
        cs = CodeSet(tmp_path / "inv", tiny_G.num_ws, tiny_G.w_dim, sha256=tiny_G.sha256)
        [cs[i] for i in range(len(cs))]
    assert len(rec) == 1  # once per set, not once per file
    with pytest.raises(
        LsapFileError,
        match=r"inv/codes/a.pt: codes were made for generator [0-9a-f]{12}, not this one",
    ):
        CodeSet(tmp_path / "inv", tiny_G.num_ws, tiny_G.w_dim, sha256=tiny_G.sha256, strict=True)
    with pytest.raises(LsapFileError, match=r"nowhere: no such file or folder \(codes\)"):
        CodeSet(tmp_path / "nowhere", 8, 64)
    torch.save({"w_plus": torch.randn(1, 7, 64)}, tmp_path / "bad.pt")
    with pytest.raises(
        LsapFileError, match=re.escape("bad.pt: codes have 7 layers but the generator has num_ws=8")
    ):
        CodeSet(tmp_path / "bad.pt", 8, 64)


def test_missing_results_are_clear_errors(tiny_G, tmp_path):
    _tiny_setup(tmp_path, tiny_G)
    (tmp_path / "noisy" / "codes" / "d.pt").unlink()
    methods = [
        open_method("exact", tmp_path / "exact", tiny_G),
        open_method("noisy", tmp_path / "noisy", tiny_G),
    ]
    with pytest.raises(
        LsapFileError,
        match=r"noisy: method 'noisy' has no result for 1 of 5 originals \(e.g. \['d'\]\)",
    ):
        match_originals(tmp_path / "originals", methods)
    pairs = match_originals(tmp_path / "originals", methods, on_missing="skip")
    assert [n for n, _ in pairs] == ["a", "e", "sub__b", "sub__c"]
    with pytest.raises(
        LsapFileError, match=r"gone: no such file or folder \(results of method 'x'\)"
    ):
        open_method("x", tmp_path / "gone", tiny_G)
    # without an originals folder the codes' recorded image paths are used
    pairs = match_originals(None, methods[:1])
    assert dict(pairs)["sub__b"].endswith("originals/sub/b.png")


def test_inception_weights_from_a_local_file_are_read_weights_only(tmp_path, monkeypatch):
    import argparse

    import torch_fidelity.feature_extractor_inceptionv3 as tfi
    from torchmetrics.image.fid import NoTrainInceptionV3

    from lsap.metrics.features import InceptionFeatures

    # a randomly initialised network stands in for the released weights (no download here)
    with monkeypatch.context() as m:
        m.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        reference = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
    torch.save(reference.state_dict(), tmp_path / "inception.pth")
    features = InceptionFeatures(tmp_path / "inception.pth")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out = features(x)
        assert out.shape == (2, 2048)
        assert torch.equal(out, reference(((x + 1) * 127.5).round().to(torch.uint8)))
    torch.save(
        {"weights": argparse.Namespace(a=1)}, tmp_path / "pickled.pth"
    )  # a non-tensor global
    with pytest.raises(
        LsapFileError, match=re.escape("pickled.pth: refused or unreadable (UnpicklingError)")
    ):
        InceptionFeatures(tmp_path / "pickled.pth")
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(
        LsapFileError, match=re.escape("other.pth: not the FID Inception-v3 weights")
    ):
        InceptionFeatures(tmp_path / "other.pth")
