"""The demo's and the reproduction's pure pieces: editability scores, the toy classifier's FID
features, the reproduction table's statistics."""

from __future__ import annotations

import math

import pytest
import torch

from lsap.assets import asset_path
from lsap.metrics.editability import attribute_index, edit_attribute_scores


def test_edit_scores_sign_the_target_towards_the_edit():
    before = torch.tensor([[0.2, 0.5, 0.9], [0.6, 0.1, 0.3]])
    after = torch.tensor([[0.7, 0.4, 0.9], [0.9, 0.3, 0.3]])
    up = edit_attribute_scores(before, after, factor=3.0, target=0)
    assert torch.allclose(up["target_change"], torch.tensor([0.5, 0.3]))
    assert torch.allclose(up["target_success"], torch.tensor([1.0, 1.0]))
    # others: mean |change| of attributes 1 and 2
    assert torch.allclose(up["others_change"], torch.tensor([0.05, 0.1]))
    down = edit_attribute_scores(before, after, factor=-3.0, target=0)
    assert torch.allclose(down["target_change"], torch.tensor([-0.5, -0.3]))
    assert torch.equal(down["target_success"], torch.tensor([0.0, 0.0]))
    zero = edit_attribute_scores(before, before, factor=0.0, target=1)
    assert torch.equal(zero["others_change"], torch.zeros(2))
    assert torch.isnan(zero["target_success"]).all()
    none = edit_attribute_scores(before, after, factor=1.0, target=None)
    assert "target_change" not in none
    assert torch.allclose(none["others_change"], (after - before).abs().mean(1))
    with pytest.raises(ValueError, match="outside"):
        edit_attribute_scores(before, after, factor=1.0, target=3)


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
    rows = method_rows(methods, {"lsap_e": {"target_change": 0.4}}, names)
    assert rows["e4e"]["sncd"] == pytest.approx(2.0)
    assert rows["e4e"]["sncd_sem"] == pytest.approx(1.0 / math.sqrt(3))
    assert rows["lsap_e"]["edit_target_change"] == 0.4 and "edit_target_change" not in rows["e4e"]
    wins = paired_comparison(methods, "e4e", "lsap_e", names)
    assert wins["sncd"] == pytest.approx(2 / 3)  # lower on i0 and i2
    assert wins["mse"] == pytest.approx((0 + 0.5 + 1) / 3)  # worse, tie, better
    table = markdown_table(rows).splitlines()
    assert len(table) == 2 + 2 and table[2].startswith("| e4e | 2.0000 ± 0.5774")
