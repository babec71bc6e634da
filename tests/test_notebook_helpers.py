"""Library functions the notebooks call: sampled targets, inversion settings from config, writing
in-memory inversions in the lsap-invert layout, per-image editing means, sliders, fixed random
ID networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conf_entries import conf_group
from PIL import Image

from lsap.config import compose, plain
from lsap.data import tensor_to_pil, tensor_to_uint8
from lsap.editing import EditSpec, sefa_edits
from lsap.editing.widgets import combine_edits, png_bytes, widgets_available
from lsap.inversion import Schedule, latent_std, optimize_latents, optimize_settings
from lsap.inversion.results import save_inversion
from lsap.io.inversion_layout import read_results
from lsap.io.inversions import CodeSet
from lsap.losses import build_objective
from lsap.metrics.report import edited_means, edited_means_per_image
from lsap.nets import broadcast_w, sample_images, sample_z
from lsap.nets.synthesis import synthesize

# -- sample_images ------------------------------------------------------------------------------


def test_sample_images_are_the_generators_samples(tiny_G):
    images, w_plus = sample_images(tiny_G, 3, seed=5)
    with torch.no_grad():
        w = tiny_G.mapping(sample_z(3, tiny_G.z_dim, seed=5))
        expected = tiny_G.synthesis(broadcast_w(w, tiny_G.num_ws, tiny_G.w_dim), noise_mode="const")
    assert torch.equal(w_plus, broadcast_w(w, tiny_G.num_ws, tiny_G.w_dim))
    assert torch.equal(images, expected.clamp(-1, 1))
    again, _ = sample_images(tiny_G, 3, seed=5)
    other, _ = sample_images(tiny_G, 3, seed=6)
    assert torch.equal(images, again) and not torch.equal(images, other)


def test_sample_images_pixel_noise(tiny_G):
    clean, w0 = sample_images(tiny_G, 4, seed=1)
    noisy, w1 = sample_images(tiny_G, 4, seed=1, pixel_noise=0.1)
    assert torch.equal(w0, w1)
    assert noisy.min() >= -1 and noisy.max() <= 1
    inside = (clean.abs() < 0.5) & (noisy.abs() < 1)  # unclamped pixels
    diff = (noisy - clean)[inside]
    assert diff.std().item() == pytest.approx(0.1, rel=0.1)
    with pytest.raises(ValueError, match="pixel_noise"):
        sample_images(tiny_G, 1, seed=0, pixel_noise=-1)


# -- optimize_settings --------------------------------------------------------------------------


def test_optimize_settings_follow_the_inversion_config(tiny_G):
    cfg = plain(compose("invert", ["inversion.steps=3", "inversion.w_std_samples=500"]).inversion)
    s = optimize_settings(cfg, tiny_G)
    assert s["steps"] == 3 and s["space"] == "w_plus" and s["lr"] == 0.1
    assert s["optimize_noise"] is True
    assert s["schedule"] == Schedule(**cfg["schedule"])
    assert s["w_std"] == latent_std(tiny_G, 500, cfg["w_std_seed"])
    cfg["schedule"]["noise_factor"] = 0.0
    assert optimize_settings({**cfg, "space": "w"}, tiny_G)["w_std"] == 0.0


def test_optimize_settings_run_the_configured_optimisation(tiny_G):
    cfg = plain(
        compose(
            "invert",
            [
                "inversion.steps=4",
                "inversion.w_std_samples=500",
                "inversion.schedule.lr_rampup=0.5",
            ],
        ).inversion
    )
    objective = build_objective(
        conf_group("loss", "projector", l2=1.0, lpips=0.0, noise_reg=1e5), generator=tiny_G
    )
    targets, _ = sample_images(tiny_G, 2, seed=3, pixel_noise=0.1)
    a = optimize_latents(tiny_G, targets, objective, **optimize_settings(cfg, tiny_G))
    b = optimize_latents(
        tiny_G,
        targets,
        objective,
        space="w_plus",
        steps=4,
        lr=0.1,
        schedule=Schedule(lr_rampup=0.5, lr_rampdown=0.25, noise_factor=0.05, noise_ramp=0.75),
        optimize_noise=True,
        w_std=latent_std(tiny_G, 500, 123),
        autocast=None,
        tf32=False,
        compile=None,
        cuda_graphs=False,
    )
    assert torch.equal(a.w_plus, b.w_plus)


# -- save_inversion -----------------------------------------------------------------------------


def _fake_inversion(G, n=2):
    images, w_plus = sample_images(G, n, seed=9)
    noise = [torch.randn(n, *s[1:]) for s in G.synthesis.noise_shapes()]
    return w_plus, images, noise


def test_save_inversion_round_trips_through_the_readers(tmp_path, tiny_G):
    w_plus, images, noise = _fake_inversion(tiny_G)
    metrics = {"psnr": torch.tensor([20.0, 21.0]), "sncd": torch.tensor([0.5, 0.25])}
    prov = {"generator_sha256": tiny_G.sha256, "method": "x"}
    save_inversion(
        tmp_path,
        ["b", "a"],
        w_plus,
        images,
        noise=noise,
        image_paths=["/data/b.png", None],
        metrics=metrics,
        provenance=prov,
    )
    codes = CodeSet(tmp_path, tiny_G.num_ws, tiny_G.w_dim, sha256=tiny_G.sha256, strict=True)
    assert codes.names == ["a", "b"]
    b, a = codes[1], codes[0]
    assert torch.equal(b.w_plus, w_plus[:1]) and torch.equal(a.w_plus, w_plus[1:])
    assert all(torch.equal(x, n[:1]) for x, n in zip(b.noise, noise, strict=True))
    assert b.image_path == "/data/b.png" and a.image_path is None
    # the PNG is the image as uint8
    with Image.open(tmp_path / "reconstructions" / "b.png") as im:
        assert np.array_equal(np.asarray(im), tensor_to_uint8(images[0]).permute(1, 2, 0).numpy())
    rows = {r["name"]: r for r in read_results(tmp_path)}
    assert rows["b"]["psnr"] == 20.0 and rows["a"]["sncd"] == 0.25
    assert math.isnan(rows["a"]["lpips"])  # not computed
    record = torch.load(tmp_path / "codes" / "b.pt", weights_only=True)
    assert record["provenance"] == prov and record["metrics"] == {"psnr": 20.0, "sncd": 0.5}


def test_save_inversion_keeps_other_rows_and_replaces_its_own(tmp_path, tiny_G):
    w_plus, images, _ = _fake_inversion(tiny_G)
    save_inversion(tmp_path, ["a", "b"], w_plus, images, metrics={"mse": torch.tensor([1.0, 2.0])})
    save_inversion(tmp_path, ["b"], w_plus[:1], images[:1], metrics={"mse": torch.tensor([3.0])})
    rows = read_results(tmp_path)
    assert [(r["name"], r["mse"]) for r in rows] == [("a", 1.0), ("b", 3.0)]
    assert CodeSet(tmp_path, tiny_G.num_ws, tiny_G.w_dim)[1].noise is None


def test_save_inversion_refuses_mismatched_inputs(tmp_path, tiny_G):
    w_plus, images, _ = _fake_inversion(tiny_G)
    with pytest.raises(ValueError, match="unique"):
        save_inversion(tmp_path, ["a", "a"], w_plus, images)
    with pytest.raises(ValueError, match="w_plus"):
        save_inversion(tmp_path, ["a", "b", "c"], w_plus, images)
    with pytest.raises(ValueError, match="metric"):
        save_inversion(tmp_path, ["a", "b"], w_plus, images, metrics={"mse": torch.zeros(3)})
    assert not (tmp_path / "codes").exists()


# -- per-image editing means --------------------------------------------------------------------


def test_edited_means_per_image_average_nonzero_factors():
    rows = [
        {
            "name": "x",
            "sncd": 1.0,
            "edit/sefa/all/dir0/-3/lpips": 0.2,
            "edit/sefa/all/dir0/+0/lpips": 0.0,
            "edit/sefa/all/dir0/+3/lpips": 0.4,
            "edit/interfacegan/age/+1.5/lpips": 0.6,
            "edit/interfacegan/age/+1.5/id": 0.9,
        },
        {"name": "y", "edit/a/+1/lpips": float("nan"), "edit/a/+2/lpips": "0.5"},
        {"name": "z"},
    ]
    lp = edited_means_per_image(rows, "lpips")
    assert lp[0] == pytest.approx(0.4) and lp[1] == 0.5 and math.isnan(lp[2])
    assert edited_means_per_image(rows, "id")[0] == 0.9


def test_edited_means_take_other_metrics():
    method = {"editing": {"e": {"-1": {"lpips": 0.2, "fid": 3.0}, "+0": {"lpips": 0.0}}}}
    assert edited_means(method) == {"fid": 3.0, "id": None}
    assert edited_means(method, ("lpips",)) == {"lpips": 0.2}


# -- sliders ------------------------------------------------------------------------------------


def test_combine_edits_is_additive_and_zero_is_identity(tiny_G):
    e0, e1 = (EditSpec(e, (-3.0, 3.0)) for e in sefa_edits(tiny_G, (0, 1)))
    w = sample_images(tiny_G, 1, seed=0)[1]
    assert torch.equal(combine_edits(w, [e0, e1], [0.0, 0.0]), w)
    both = combine_edits(w, [e0, e1], [2.0, -1.0])
    assert torch.allclose(both, e1.edit(e0.edit(w, 2.0), -1.0))
    assert torch.allclose(both - w, 2.0 * e0.edit.direction - e1.edit.direction, atol=1e-6)
    with pytest.raises(ValueError, match="factors"):
        combine_edits(w, [e0], [1.0, 2.0])


@pytest.mark.skipif(not widgets_available(), reason="ipywidgets not installed")
def test_edit_sliders_render_the_edited_code(tiny_G):
    from lsap.editing.widgets import edit_sliders

    specs = [EditSpec(e, (-3.0, -1.5, 0.0, 1.5, 3.0)) for e in sefa_edits(tiny_G, (0, 1))]
    w = sample_images(tiny_G, 1, seed=0)[1]
    box = edit_sliders(tiny_G, w, specs)
    assert [(s.min, s.max, s.value) for s in box.sliders] == [(-3.0, 3.0, 0.0)] * 2
    assert box.image.value == png_bytes(synthesize(tiny_G, w)[0])
    box.sliders[1].value = 1.5
    expected = synthesize(tiny_G, specs[1].edit(w, 1.5))[0]
    assert box.image.value == png_bytes(expected)
    assert box.image.value != png_bytes(synthesize(tiny_G, w)[0])


def test_tensor_to_pil_matches_uint8():
    x = torch.rand(3, 5, 7) * 2.4 - 1.2
    assert np.array_equal(np.asarray(tensor_to_pil(x)), tensor_to_uint8(x).permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="image"):
        tensor_to_pil(torch.zeros(1, 3, 4, 4))


# -- fixed random ID networks -------------------------------------------------------------------


def test_random_face_embedder_is_fixed_and_leaves_the_global_rng_alone():
    from lsap.losses.identity import FaceEmbedder

    torch.manual_seed(1)
    a = FaceEmbedder(weights="random")
    state = torch.get_rng_state()
    torch.manual_seed(2)
    torch.rand(5)
    b = FaceEmbedder(weights="random")
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    torch.manual_seed(1)
    FaceEmbedder(weights="random")
    assert torch.equal(torch.get_rng_state(), state)
