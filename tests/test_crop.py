"""Non-square generators (``generator.crop``): the box, its checks, and the consumers that compare
images (objective, scorer) seeing the valid region only: pixels outside it change no value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conf_entries import conf_group
from invert_helpers import FAST
from omegaconf import OmegaConf
from PIL import Image

from lsap.config import compose
from lsap.io import generator_from_config
from lsap.losses import LossInputs, build_objective
from lsap.metrics.scorer import Scorer, build_scorer
from lsap.nets.crop import ValidRegion, crop_valid

pytestmark = pytest.mark.usefixtures("one_thread")

BOX = [4, 0, 24, 32]  # conf/generator/tiny_wide.yaml: 32 x 24 inside the 32 px frame
OFFLINE_OPTIONS = {
    "lpips": {"net": "vgg", "backbone": "random", "resize": None},  # alex needs > 24 px
    "id": {"backend": "facenet", "weights": "random", "crop": False},
}


def _frames(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def _outside_changed(frames: torch.Tensor, region: ValidRegion) -> torch.Tensor:
    """The frames with every pixel outside the valid region replaced by other values."""
    top, left, h, w = region.box_at(frames.shape[-1])
    out = _frames(frames.shape[0], frames.shape[-1], seed=99)
    out[..., top : top + h, left : left + w] = frames[..., top : top + h, left : left + w]
    return out


def _inside_changed(frames: torch.Tensor, region: ValidRegion) -> torch.Tensor:
    top, left, h, w = region.box_at(frames.shape[-1])
    out = frames.clone()
    out[..., top + h // 2, left : left + w] *= -1  # one row inside the box
    return out


# -- the box ------------------------------------------------------------------------------------
def test_box_scales_to_other_frame_sizes_as_e4e_crops_cars():
    cars = ValidRegion.from_config([64, 0, 384, 512], 512)
    assert cars.box_at(512) == (64, 0, 384, 512)
    assert cars.box_at(256) == (32, 0, 192, 256)  # e4e's y_hat[:, :, 32:224, :]
    assert cars.size_at(1024) == (768, 1024)
    frames = torch.arange(256 * 256.0).reshape(1, 1, 256, 256)
    torch.testing.assert_close(cars.crop(frames), frames[:, :, 32:224, :])
    torch.testing.assert_close(crop_valid(frames, [64, 0, 384, 512], 512), frames[:, :, 32:224])
    assert crop_valid(frames, None) is frames
    back = cars.place(cars.crop(frames), 256)
    assert torch.equal(back[:, :, 32:224], frames[:, :, 32:224])
    assert (back[:, :, :32] == -1).all() and (back[:, :, 224:] == -1).all()


def test_crop_needs_square_frames():
    region = ValidRegion.from_config(BOX, 32)
    with pytest.raises(ValueError, match="square frames"):
        region.crop(torch.zeros(1, 3, 24, 32))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([4, 0, 24], "four integer pixels"),
        ("4,0,24,32", "four integer pixels"),
        ([4, 0, 24.5, 32], "four integer pixels"),
        ([4, 0, 0, 32], "height and width >= 1"),
        ([-1, 0, 24, 32], "top and left must be >= 0"),
        ([10, 0, 24, 32], "leaves the generator's 32 x 32 px frame"),
        ([4, 8, 24, 32], "left \\+ width = 40"),
    ],
)
def test_bad_box_is_one_line_naming_the_key(value, problem):
    with pytest.raises(ValueError, match=problem) as e:
        ValidRegion.from_config(value, 32)
    assert str(e.value).startswith("generator.crop")
    assert "\n" not in str(e.value)


def test_generator_config_sets_and_checks_the_crop():
    cfg = OmegaConf.to_container(compose("invert", ["generator=tiny_wide"]).generator)
    G = generator_from_config(cfg)
    assert G.crop == ValidRegion(4, 0, 24, 32, 32)
    plain = generator_from_config({**cfg, "crop": None})
    assert plain.crop is None
    with pytest.raises(ValueError, match=r"^generator.crop=\[4, 0, 40, 32\] leaves"):
        generator_from_config({**cfg, "crop": [4, 0, 40, 32]})


def test_bad_crop_in_a_command_is_one_line(tmp_path):
    """lsap-invert refuses a box that leaves the frame with one line naming generator.crop."""
    (tmp_path / "in").mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "in" / "a.png")
    cmd = [sys.executable, "-m", "lsap.cli.invert", *FAST, "generator=tiny_wide"]
    cmd += ["generator.crop=[0,0,33,32]", f"data.path={tmp_path / 'in'}"]
    cmd += [f"paths.output_dir={tmp_path / 'out'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("lsap-invert: error: generator.crop=[0, 0, 33, 32] leaves"), last
    assert "Traceback" not in proc.stderr


# -- the objective ------------------------------------------------------------------------------
@pytest.mark.parametrize("frame", [32, 64])  # at the generator's resolution, and resized
def test_objective_sees_only_the_valid_region(tiny_G, frame):
    G = generator_from_config({"path": None, "seed": 0, "arch": _tiny_arch(), "crop": BOX})
    cfg = conf_group(
        "loss", "projector", l2=1.0, lpips=1.0, id=1.0, noise_reg=0.0, options=OFFLINE_OPTIONS
    )
    objective = build_objective(cfg, generator=G)
    assert objective.crop == G.crop
    images, targets = _frames(2, frame), _frames(2, frame, seed=1)
    total, values = objective(LossInputs(images=images, targets=targets))
    for a, b in [
        (_outside_changed(images, G.crop), targets),
        (images, _outside_changed(targets, G.crop)),
    ]:
        t2, v2 = objective(LossInputs(images=a, targets=b))
        assert torch.equal(t2, total)
        for k in values:
            assert torch.equal(v2[k], values[k]), k
    _, v3 = objective(LossInputs(images=_inside_changed(images, G.crop), targets=targets))
    for k in values:
        assert not torch.equal(v3[k], values[k]), k
    # without the crop the same change outside does change the loss: the test can fail
    full = build_objective(cfg, generator=tiny_G)
    assert full.crop is None
    t_full, _ = full(LossInputs(images=images, targets=targets))
    t_full2, _ = full(LossInputs(images=_outside_changed(images, G.crop), targets=targets))
    assert not torch.equal(t_full, t_full2)


# -- the scorer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("frame", [32, 64])
def test_scorer_scores_only_the_valid_region(frame):
    region = ValidRegion.from_config(BOX, 32)
    metrics = conf_group(
        "metrics",
        "default",
        fidelity=["mse", "psnr", "ssim", "lpips", "id"],
        editing=["lpips", "id"],
        lpips=OFFLINE_OPTIONS["lpips"],
        id=OFFLINE_OPTIONS["id"],
        fid={"enabled": True, "features": {"name": "random"}},
    )
    scorer = build_scorer(metrics, crop=region)
    full = build_scorer(metrics)
    orig, rec = _frames(2, frame), _frames(2, frame, seed=1)

    def values(s: Scorer, o, r):
        emb = s.embed(o)
        out = {f"fidelity/{k}": v for k, v in s.fidelity(o, r).items()}
        out.update({f"editing/{k}": v for k, v in s.editing(r, o, original_embeddings=emb).items()})
        out["fid_features"] = s.fid_features(r)
        out["embed"] = emb
        return out

    base = values(scorer, orig, rec)
    assert set(base) >= {"fidelity/mse", "fidelity/id", "editing/lpips", "editing/id"}
    for o, r in [(_outside_changed(orig, region), rec), (orig, _outside_changed(rec, region))]:
        again = values(scorer, o, r)
        for k in base:
            assert torch.equal(again[k], base[k]), k
    inside = values(scorer, orig, _inside_changed(rec, region))
    for k in ("fidelity/mse", "fidelity/psnr", "fidelity/ssim", "fidelity/lpips", "fidelity/id"):
        assert not torch.equal(inside[k], base[k]), k
    assert not torch.equal(inside["fid_features"], base["fid_features"])
    # the uncropped scorer does see the outside: the comparison above can fail
    f0 = full.fidelity(orig, rec)["mse"]
    f1 = full.fidelity(orig, _outside_changed(rec, region))["mse"]
    assert not torch.equal(f0, f1)


def _tiny_arch() -> dict:
    from lsap.config import config_dir

    return dict(OmegaConf.load(f"{config_dir()}/generator/tiny.yaml")["arch"])


# -- pivotal tuning -----------------------------------------------------------------------------
def test_pti_tunes_on_the_valid_region_only():
    """PTI's loss (l2 + lpips) and its locality term compare the valid region: targets that differ
    only outside it give bit-identical tuned generators and images; inside, they do not."""
    from conf_entries import pti_kwargs

    from lsap.refinement import pivotal_tuning

    G = generator_from_config({"path": None, "seed": 0, "arch": _tiny_arch(), "crop": BOX})
    with torch.no_grad():
        pivots = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(3)))
        targets = G.synthesis(G.mapping(torch.randn(2, G.z_dim)), noise_mode="const")
    locality = pti_kwargs()["locality"]  # conf/refinement/pti.yaml's, changed where it matters
    kw = pti_kwargs(
        steps=3,
        lr=1e-2,
        weights={"l2": 1.0, "lpips": 1.0},
        locality={**locality, "weight": 0.1, "interval": 1, "l2": 1.0, "lpips": 0.0},
        loss_options={"lpips": OFFLINE_OPTIONS["lpips"]},
        mode="per_set",
    )
    base = pivotal_tuning(G, targets, pivots, **kw)
    same = pivotal_tuning(G, _outside_changed(targets, G.crop), pivots, **kw)
    assert torch.equal(base.images, same.images)
    for a, b in zip(base.history[0].values(), same.history[0].values(), strict=True):
        assert torch.equal(a.nan_to_num(-1), b.nan_to_num(-1))
    moved = pivotal_tuning(G, _inside_changed(targets, G.crop), pivots, **kw)
    assert not torch.equal(base.images, moved.images)
