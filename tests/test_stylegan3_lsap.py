"""LSAP on StyleGAN3: S^N anchors and SNCD, LSAP_O, PTI, lsap-invert/-edit/-eval/-train on a tiny
StyleGAN3 (``conf/generator/tiny_sg3.yaml``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conf_entries import conf_group, inversion_kwargs
from hydra import compose, initialize_config_dir
from invert_helpers import FAST, make_images
from omegaconf import OmegaConf
from PIL import Image

from lsap.alignment import compute_anchors, sncd
from lsap.cli._common import config_dir
from lsap.editing import sefa, sefa_edits
from lsap.inversion import optimize_latents
from lsap.io import init_generator
from lsap.losses import build_objective
from lsap.nets import iter_w
from lsap.nets.stylegan3 import StyleGAN3Generator

pytestmark = pytest.mark.usefixtures("one_thread")

SG3 = ["generator=tiny_sg3"]


def _arch():
    return dict(OmegaConf.load(f"{config_dir()}/generator/tiny_sg3.yaml")["arch"])


@pytest.fixture(scope="module")
def G():
    return init_generator(_arch(), seed=0)


@pytest.fixture(scope="module")
def anchors(G):
    return compute_anchors(G, 4000, 0)


def test_tiny_sg3_config_builds_a_stylegan3(G):
    assert isinstance(G, StyleGAN3Generator) and G.config.name == "T"
    assert (G.resolution, G.num_ws, G.w_dim) == (32, 8, 64)
    R = init_generator({**_arch(), "config": "R"}, seed=0)
    assert R.config.name == "R" and R.synthesis.layers[0].weight.shape[-1] == 1


def test_samples_score_near_the_anchor_expectation(G, anchors):
    # As for StyleGAN2: E[<n_i, a_i>] = ||a_i||^2 over the samples, so E[SNCD_i] = 1 - ||a_i||.
    assert [a.shape[0] for a in anchors] == [4] + [
        layer.in_channels for layer in G.synthesis.layers
    ]
    w = torch.cat(list(iter_w(G, 4000, seed=99)))
    total, per_layer = sncd(G, w, anchors)
    expected = torch.stack([1 - a.norm() for a in anchors])
    torch.testing.assert_close(per_layer.mean(0), expected, atol=0.01, rtol=0.05)
    assert total.mean() == pytest.approx(float(expected.sum()), rel=0.03)
    # index 0 (the input's rotation / translation) is concentrated, not a constant
    assert 0.5 < float(anchors[0].norm()) < 1.0
    # codes pushed away from the samples score worse
    far = sncd(G, w[:200] + 3 * torch.randn(200, G.w_dim) * w.std(0), anchors)[0]
    assert far.mean() > 1.5 * total[:200].mean()


def test_lsap_o_lowers_sncd_against_the_projector(G, anchors):
    other = init_generator(_arch(), seed=5)  # targets off G's range
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        targets = other.synthesis(other.mapping(z))
    finals, l2 = {}, {}
    for name, weight in (("projector", 0.0), ("lsap_o", 1.0)):
        objective = build_objective(
            conf_group("loss", "lsap_o", l2=1.0, lpips=0.0, sncd=weight, noise_reg=1e5),
            generator=G,
            anchors=anchors,
        )
        r = optimize_latents(G, targets, objective, seeds=[1, 2], **inversion_kwargs(G, steps=12))
        assert r.noise in (None, []) or len(r.noise) == 0  # StyleGAN3 has no noise maps
        finals[name] = sncd(G, r.w_plus, anchors)[0]
        l2[name] = r.history["l2"]
    assert (finals["lsap_o"] < finals["projector"]).all(), finals
    assert (l2["projector"][-1] < l2["projector"][0]).all()  # the projector does invert


def test_sefa_factorises_the_stylegan3_affines(G):
    directions, values = sefa(G, k=3)
    assert directions.shape == (3, G.w_dim) and (values[:-1] >= values[1:]).all()
    edits = sefa_edits(G, components=[0])
    # layers k = 0..num_layers-1 (toRGB and the input's affine left out) sit at w+ 1..num_layers
    assert edits[0].layers == tuple(range(1, G.num_ws - 1))


# -- the commands, in-process on the tiny StyleGAN3 -----------------------------------------------


def _png(path):
    return torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 127.5 - 1)


def _compose(name, *overrides):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose(name, overrides=[*overrides, *SG3])  # after FAST's generator=tiny


@pytest.fixture(scope="module")
def inverted(tmp_path_factory):
    """lsap-invert (LSAP_O, then PTI with deltas) on 3 images: the output folder."""
    from lsap.cli.invert import run

    tmp = tmp_path_factory.mktemp("sg3_invert")
    make_images(tmp / "in", n=3, nested=1, bad=False)
    out = tmp / "out"
    cfg = _compose(
        "invert",
        *FAST,
        f"data.path={tmp}/in",
        f"paths.output_dir={out}",
        f"paths.log_dir={tmp}/logs",
        f"paths.cache_dir={tmp}/cache",
        "loss.sncd=0.5",
        "metrics.id=null",
        "refinement=pti",
        "refinement.steps=3",
        "refinement.loss.lpips=0",
        "refinement.locality.lpips=0",
        "refinement.locality.interval=1",
        "refinement.save.deltas=true",
    )
    run(cfg)
    return out


def test_lsap_invert_and_pti_write_codes_and_tuned_generators(inverted):
    codes = sorted((inverted / "codes").glob("*.pt"))
    assert len(codes) == 3
    rec = torch.load(codes[0], weights_only=True)
    assert rec["w_plus"].shape == (1, 8, 64)
    assert not rec["noise"], [tuple(n.shape) for n in rec["noise"]]
    assert len(list((inverted / "refined").glob("*.png"))) == 3
    assert rec["generator"] and (inverted / "codes" / rec["generator"]).is_file()


def test_lsap_edit_factor_zero_reproduces_the_reconstruction(inverted, tmp_path):
    from lsap.cli.edit import run as edit

    cfg = _compose(
        "edit",
        f"codes={inverted}",
        f"paths.output_dir={tmp_path}/edit",
        f"paths.cache_dir={tmp_path}/cache",
        "device=cpu",
        "editing=sefa",
        "editing.sefa.components=[0]",
        "editing.sefa.factors=[0.0,3.0]",
    )
    summary = edit(cfg)
    assert summary["written"] == 3
    (folder,) = {p.parent.parent for p in (tmp_path / "edit").rglob("factor+0/*.png")}
    for png in sorted((inverted / "refined").glob("*.png")):
        at_zero = _png(folder / "factor+0" / png.name)
        diff = (at_zero - _png(png)).abs() * 127.5  # refined (fp32) vs the fp16 delta
        assert diff.max() <= 1.01, png.name
        moved = _png(folder / "factor+3" / png.name)
        assert (moved - at_zero).abs().mean() * 127.5 > 1.0  # the edit changes the image


def test_lsap_eval_scores_the_stylegan3_run(inverted, tmp_path):
    from lsap.cli.eval import run as evaluate

    cfg = _compose(
        "eval",
        "metrics=offline",
        f"+methods.lsap_o={inverted}",
        f"paths.output_dir={tmp_path}/eval",
        f"paths.cache_dir={tmp_path}/cache",
        "alignment.num_samples=2000",
        "device=cpu",
    )
    summary = evaluate(cfg)
    row = summary["table"][0] if "table" in summary else summary
    text = (tmp_path / "eval" / "eval.md").read_text()
    assert "lsap_o" in text and "SNCD" in text, row


@pytest.mark.slow
def test_lsap_train_trains_an_encoder_against_stylegan3(tmp_path):
    from lsap.cli.train import train

    cfg = _compose(
        "train",
        "experiment=tiny",
        *SG3,
        f"paths.output_dir={tmp_path}",
        f"paths.cache_dir={tmp_path}/cache",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        "+trainer.num_sanity_val_steps=0",
        "alignment.num_samples=2000",
        "debug=fdr",
    )
    result = train(cfg)
    assert isinstance(result.system.G, StyleGAN3Generator)
    assert result.system.encoder.num_ws == 8
    assert result.metrics["val/metric/sncd"] > 0
