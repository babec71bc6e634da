"""A non-square tiny generator (conf/generator/tiny_wide.yaml: 32 x 24 inside 32 x 32) end to end:
photos fitted to the valid region, an encoder that sees only it, encoder training and LSAP_O
inversion whose losses and metrics ignore every pixel outside it, and PNGs of its size."""

from __future__ import annotations

import csv

import pytest
import torch
from conf_entries import conf_group, data_kwargs
from invert_helpers import FAST, compose
from PIL import Image

from lsap.data.images import FRAME_FILL, fit_to_frame, load_image, pil_to_tensor
from lsap.inversion.encode import encode_images, encoder_input, encoder_objective
from lsap.nets.crop import FILL, ValidRegion

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_BOX = [4, 0, 24, 32]


def _outside_changed(frames: torch.Tensor, region: ValidRegion, seed: int = 7) -> torch.Tensor:
    top, left, h, w = region.box_at(frames.shape[-1])
    g = torch.Generator().manual_seed(seed)
    out = torch.rand(frames.shape, generator=g) * 2 - 1
    out[..., top : top + h, left : left + w] = frames[..., top : top + h, left : left + w]
    return out


def _stripes(w: int, h: int, band: int) -> Image.Image:
    """A photo w x h: red bands of ``band`` px at top and bottom, a horizontal gradient between."""
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = (255, 0, 0) if y < band or y >= h - band else (0, 255 * x // (w - 1), 128)
    return img


# -- photos into the frame ----------------------------------------------------------------------
def test_a_photo_of_another_aspect_fills_the_valid_region():
    assert FRAME_FILL == FILL  # one fill value for data and crops
    cars = ValidRegion.from_config([64, 0, 384, 512], 512)
    photo = _stripes(1024, 768, 1)  # 4:3 as the valid region: resized, nothing cut
    frame = fit_to_frame(photo, 512, cars.box_at(512))
    assert frame.shape == (3, 512, 512)
    assert (frame[:, :64] == FILL).all() and (frame[:, 448:] == FILL).all()
    expected = pil_to_tensor(photo.resize((512, 384), Image.LANCZOS))
    torch.testing.assert_close(cars.crop(frame), expected)
    # a square photo with red bands: the bands are cut off (cover + centre crop), not squashed in
    square = _stripes(64, 64, 8)
    tiny = ValidRegion.from_config(TINY_BOX, 32)
    frame = fit_to_frame(square, 32, tiny.box_at(32))
    valid = tiny.crop(frame)
    assert valid.shape == (3, 24, 32)
    assert valid[0].max() < 0.5  # no red band left inside: 64 -> 32 rows, central 24 kept
    assert (frame[:, :4] == FILL).all() and (frame[:, 28:] == FILL).all()
    # without a crop: the usual central square
    torch.testing.assert_close(fit_to_frame(square, 32), fit_to_frame(square, 32, (0, 0, 32, 32)))


def test_load_image_places_a_png_of_the_valid_region_back(tmp_path):
    tiny = ValidRegion.from_config(TINY_BOX, 32)
    photo = _stripes(32, 24, 0)
    photo.save(tmp_path / "valid.png")
    frame = load_image(tmp_path / "valid.png", 32, box=tiny.box_at(32))
    torch.testing.assert_close(tiny.crop(frame), pil_to_tensor(photo))  # exact round trip
    with pytest.raises(ValueError, match="does not fit a 32 px frame"):
        fit_to_frame(photo, 32, (10, 0, 24, 32))


# -- the encoder sees the valid region ----------------------------------------------------------
def test_encoder_input_is_the_valid_region_as_e4e_feeds_cars():
    cars = ValidRegion.from_config([64, 0, 384, 512], 512)
    frames = torch.rand(2, 3, 512, 512) * 2 - 1
    x = encoder_input(frames, 256, cars)
    assert x.shape == (2, 3, 192, 256)  # e4e's Resize((192, 256))
    torch.testing.assert_close(x, torch.nn.functional.avg_pool2d(frames[:, :, 64:448], 2))
    assert encoder_input(frames, 256).shape == (2, 3, 256, 256)


def test_encoder_codes_ignore_pixels_outside_the_valid_region():
    from lsap.nets.encoder import Encoder4Editing

    enc = Encoder4Editing(
        8, 64, input_size=32, stages=[[16, 16, 1], [16, 24, 1], [24, 32, 1], [32, 48, 1]]
    )
    enc.eval()
    tiny = ValidRegion.from_config(TINY_BOX, 32)
    frames = torch.rand(2, 3, 32, 32) * 2 - 1
    w = encode_images(enc, frames, num_ws=8, w_dim=64, crop=tiny)
    w_out = encode_images(enc, _outside_changed(frames, tiny), num_ws=8, w_dim=64, crop=tiny)
    assert torch.equal(w, w_out)
    w_full = encode_images(enc, frames, num_ws=8, w_dim=64)
    w_full_out = encode_images(enc, _outside_changed(frames, tiny), num_ws=8, w_dim=64)
    assert not torch.equal(w_full, w_full_out)  # a square input does see them: the test can fail
    with pytest.raises(ValueError, match="longer side 32"):
        enc(torch.zeros(1, 3, 24, 24))


# -- encoder training ---------------------------------------------------------------------------
def test_encoder_trains_on_the_valid_region(tmp_path, caplog):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lsap.cli._common import config_dir
    from lsap.cli.train import train

    overrides = [
        "experiment=tiny",
        "generator=tiny_wide",
        f"paths.output_dir={tmp_path}",
        f"paths.cache_dir={tmp_path}/cache",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        "+trainer.num_sanity_val_steps=0",
        "alignment.num_samples=2000",
        "trainer.max_steps=4",
        "trainer.val_check_interval=4",
        "data.num_train=16",
        "data.num_val=4",
        "data.batch_size=4",
        "loss.id=0.5",  # every image term: l2, lpips and id (random face network)
        "+loss.options.id={backend: facenet, weights: random, crop: false}",
    ]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides)
    result = train(cfg)
    system = result.system
    assert result.trainer.global_step == 4
    assert system.G.crop == ValidRegion(4, 0, 24, 32, 32)
    assert set(system.objective.terms) >= {"l2", "lpips", "id", "sncd"}
    # the objective and scorer of the trained system: outside pixels change nothing
    frames = torch.rand(3, 3, 32, 32) * 2 - 1
    system.eval()

    def step(images):
        with torch.no_grad():
            loss, values, w_plus, recon = encoder_objective(
                system.encoder,
                system.G,
                system.objective,
                images,
                noise_mode="const",
                crop=system.G.crop,
            )
        scores = system._frozen["scorer"].fidelity(images, recon)
        return loss, values, w_plus, scores

    base = step(frames)
    out = step(_outside_changed(frames, system.G.crop))
    assert torch.equal(base[0], out[0]) and torch.equal(base[2], out[2])
    for k in base[1]:
        assert torch.equal(base[1][k], out[1][k]), k
    for k in base[3]:
        assert torch.equal(base[3][k], out[3][k]), k
    inside = frames.clone()
    inside[:, :, 16, :] *= -1
    moved = step(inside)
    assert not torch.equal(base[0], moved[0])
    for k in ("l2", "lpips", "id"):
        assert not torch.equal(base[1][k], moved[1][k]), k
    # the encoder file records the valid region; an encoder code source for a square generator
    # says the encoder would see another part of the images
    import logging

    from lsap.inversion.sources import EncoderSource
    from lsap.io import generator_from_config
    from lsap.io.encoders import load_encoder

    assert result.encoder_path is not None and load_encoder(result.encoder_path).crop == TINY_BOX
    square = generator_from_config({**dict(cfg.generator), "crop": None})
    caplog.set_level(logging.WARNING, logger="lsap.inversion.sources")
    EncoderSource("encoder", False, result.encoder_path, system.G)
    assert "valid region" not in caplog.text
    EncoderSource("encoder", False, result.encoder_path, square)
    assert "encoder trained for the valid region [4, 0, 24, 32]" in caplog.text
    # the validation grid shows valid regions: rows of 24 px, input | reconstruction of 32 px
    grids = sorted((tmp_path / "images" / "val").glob("*.png"))
    assert grids
    for g in grids:
        w, h = Image.open(g).size
        assert w == 2 * 32 and h % 24 == 0, (g, w, h)


# -- LSAP_O inversion, edits, evaluation -------------------------------------------------------
@pytest.fixture(scope="module")
def wide_run(tmp_path_factory):
    """lsap-invert (LSAP_O, 5 steps) on tiny_wide over two photos of other aspects."""
    from lsap.cli.invert import run

    tmp = tmp_path_factory.mktemp("wide")
    folder = tmp / "in"
    folder.mkdir()
    _stripes(48, 30, 3).save(folder / "wide.png")  # 8:5, wider than 4:3
    _stripes(30, 40, 4).save(folder / "tall.png")  # portrait
    out = tmp / "out"
    cfg = compose(
        *FAST,
        "generator=tiny_wide",
        "loss.sncd=0.5",
        f"data.path={folder}",
        f"paths.output_dir={out}",
        f"paths.cache_dir={tmp}/cache",
    )
    run(cfg)
    return tmp, folder, out


def test_lsap_o_writes_pngs_of_the_valid_region(wide_run):
    from lsap.io.inversion_layout import read_results

    _, _, out = wide_run
    for name in ("wide", "tall"):
        assert Image.open(out / "reconstructions" / f"{name}.png").size == (32, 24)
    gw, gh = Image.open(out / "grid.png").size
    assert gh < gw  # rows of 24 px target | reconstruction cells, not 32 px squares
    rows = {r["name"]: r for r in read_results(out)}
    assert set(rows) == {"wide", "tall"} and all(float(r["lpips"]) >= 0 for r in rows.values())


def test_edits_and_evaluation_of_a_non_square_generator(wide_run):
    from lsap.cli.edit import run as edit
    from lsap.cli.eval import run as evaluate
    from lsap.config import compose as compose_config

    tmp, folder, out = wide_run
    common = ["generator=tiny_wide", f"paths.cache_dir={tmp}/cache", "device=cpu"]
    cfg = compose_config(
        "edit",
        [*common, f"codes={out}", "editing.sefa.components=[0]", "editing.sefa.factors=[-1.0,1.0]"],
    )
    cfg.paths.output_dir = str(tmp / "edit")
    edit(cfg)
    pngs = sorted((tmp / "edit" / "edits").rglob("*.png"))
    assert len(pngs) == 4 and all(Image.open(p).size == (32, 24) for p in pngs)
    grid = next((tmp / "edit" / "grids").glob("*.png"))
    assert Image.open(grid).size == (2 * (32 + 2) + 2, 2 * (24 + 2) + 2)
    # lsap-eval: the codes, and their reconstruction PNGs (valid regions put back at the box),
    # score alike against the photos fitted to the valid region
    cfg = compose_config(
        "eval",
        [
            *common,
            "metrics=offline",
            "metrics.fidelity=[mse,psnr,ssim]",
            "metrics.fid.enabled=false",
            "metrics.editing=[sncd]",
            "alignment.num_samples=2000",
            f"originals={folder}",
            f"methods={{codes: {out}, images: {out / 'reconstructions'}}}",
        ],
    )
    cfg.paths.output_dir = str(tmp / "eval")
    evaluate(cfg)
    per_image = {}
    for method in ("codes", "images"):
        with open(tmp / "eval" / "per_image" / f"{method}.csv") as f:
            per_image[method] = {r["name"]: float(r["mse"]) for r in csv.DictReader(f)}
    assert per_image["codes"].keys() == {"wide", "tall"}
    for name, v in per_image["codes"].items():
        assert v == pytest.approx(per_image["images"][name], abs=1e-6)
    from lsap.io.inversion_layout import read_results

    recorded = {r["name"]: float(r["mse"]) for r in read_results(out)}
    for name, v in per_image["codes"].items():
        assert v == pytest.approx(recorded[name], abs=1e-6)  # lsap-invert's own number


def test_lsap_o_result_ignores_pixels_outside_the_valid_region(tmp_path):
    from lsap.alignment.anchors import compute_anchors
    from lsap.inversion.pipeline import invert_batch
    from lsap.inversion.report import ReconstructionMetrics
    from lsap.inversion.settings import InversionSettings
    from lsap.inversion.sources import CodeSource
    from lsap.io import generator_from_config
    from lsap.losses import build_objective
    from lsap.losses.perceptual import LPIPSLoss

    cfg = compose(*FAST, "generator=tiny_wide", "inversion.steps=4", "loss.lpips=1.0")
    G = generator_from_config(dict(cfg.generator))
    anchors = compute_anchors(G, num_samples=500, seed=0)
    objective = build_objective(
        conf_group(
            "loss",
            "lsap_o",
            l2=1.0,
            lpips=1.0,
            sncd=0.5,
            noise_reg=1e5,
            options={"lpips": {"net": "vgg", "backbone": "random", "resize": None}},
        ),
        generator=G,
        anchors=anchors,
    )
    lpips = LPIPSLoss(net="vgg", backbone="random", resize=None)
    metrics = ReconstructionMetrics(G, anchors, lpips=lpips)
    settings = InversionSettings.from_config(cfg.inversion)
    with torch.no_grad():
        targets = G.synthesis(G.mapping(torch.randn(2, G.z_dim)), noise_mode="const")

    def invert(t):
        return invert_batch(
            G, t, ["a", "b"], CodeSource("optimize", True), objective, settings, metrics, seed=0
        )

    base = invert(targets)
    out = invert(_outside_changed(targets, G.crop))
    assert base.history["loss"].shape[0] == 4
    assert torch.equal(base.w_plus, out.w_plus)
    for k in base.metrics:
        assert torch.equal(base.metrics[k].nan_to_num(-9), out.metrics[k].nan_to_num(-9)), k
    inside = targets.clone()
    inside[:, :, 10:14] = 0
    moved = invert(inside)
    assert not torch.equal(base.w_plus, moved.w_plus)
    assert not torch.equal(base.metrics["mse"], moved.metrics["mse"])


def test_training_folders_fit_photos_and_augment_inside_the_valid_region(tmp_path):
    from lsap.systems.datamodule import ImageFolderDataModule

    tiny = ValidRegion.from_config(
        [6, 0, 20, 28], 32
    )  # off-centre: a flip of the frame would move it
    for i in range(2):
        _stripes(64 + 16 * i, 40, 0).save(tmp_path / f"p{i}.png")
    kw = {"size": 32, "batch_size": 2, "val_batch_size": 2, "num_workers": 0}
    paths = {"train_path": str(tmp_path), "val_path": str(tmp_path)}
    dm = ImageFolderDataModule(
        **data_kwargs("ffhq", **paths, hflip=1.0, crop_scale=(0.5, 0.5), crop=tiny, **kw)
    )
    dm.setup("fit")
    val = next(iter(dm.val_dataloader()))["images"]
    assert val.shape == (2, 3, 32, 32)
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[6:26, 0:28] = False
    assert (val[:, :, outside] == FILL).all()
    train = next(iter(dm.train_dataloader()))["images"]
    assert (train[:, :, outside] == FILL).all()  # augmentation never moves padding in
    assert not torch.equal(train.sort(0).values, val.sort(0).values)  # it did augment


def test_the_demo_shows_and_writes_the_valid_region(tmp_path):
    from lsap.cli.demo import run
    from lsap.config import compose as compose_config

    folder = tmp_path / "photos"
    folder.mkdir()
    _stripes(40, 40, 5).save(folder / "square.png")
    cfg = compose_config(
        "demo",
        [
            "generator=tiny_wide",
            f"data.path={folder}",
            f"paths.cache_dir={tmp_path}/cache",
            "alignment.num_samples=2000",
            "inversion.steps=3",
            "editing.sefa.components=[0]",
        ],
    )
    cfg.paths.output_dir = str(tmp_path / "out")
    run(cfg)
    out = tmp_path / "out"
    pngs = [out / "originals" / "square.png", *(out / "methods").glob("*/reconstructions/*.png")]
    assert len(pngs) == 3  # the original, projector and lsap_o
    assert all(Image.open(p).size == (32, 24) for p in pngs)
    original = pil_to_tensor(Image.open(out / "originals" / "square.png").convert("RGB"))
    assert original[0].max() < 0.5  # the photo's red bands were cut off, not squashed in
    grid = Image.open(out / "grids" / "reconstructions.png")
    assert grid.size == (3 * (96 + 2) + 2, 72 + 2 + 2)  # one row of three 96 x 72 cells
    assert 'height="72"' in (out / "report.html").read_text()  # 96 px wide 4:3 cells
