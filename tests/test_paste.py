"""Paste-back (lsap.data.paste): the alignment's inverse, the soft mask, and compositing into the
photo, on synthetic geometry and on a real photo aligned by MTCNN (skimage's astronaut)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lsap.core.errors import LsapFileError
from lsap.data.align import FaceAligner, crop_quad
from lsap.data.images import load_crop_photo, load_image_and_crop, pil_to_tensor
from lsap.data.paste import PasteMask, PhotoCrop, paste_back, paste_mask

MASK = PasteMask("ellipse", margin=0.05, feather=0.1)


def _configured_mask() -> PasteMask:
    """The mask the commands use (conf/paste_back/default.yaml)."""
    from omegaconf import OmegaConf

    from lsap.cli._common import config_dir

    return PasteMask.from_config(OmegaConf.load(f"{config_dir()}/paste_back/default.yaml"))


def _quad(centre, side, degrees):
    """An oriented square [4, 2]: top-left, bottom-left, bottom-right, top-right."""
    a = np.deg2rad(degrees)
    x = np.array([np.cos(a), np.sin(a)]) * side / 2
    y = np.array([-x[1], x[0]])
    c = np.asarray(centre, dtype=float)
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def test_corners_and_points_map_forward_and_back():
    crop = PhotoCrop.of("p.png", (300, 200), _quad((140, 90), 100, 25))
    corners = crop.crop_to_photo(np.array([[0, 0], [0, 1], [1, 1], [1, 0]]))
    np.testing.assert_allclose(corners, np.asarray(crop.quad), atol=1e-9)
    pts = np.random.default_rng(0).uniform(-50, 350, (20, 2))
    np.testing.assert_allclose(crop.crop_to_photo(crop.photo_to_crop(pts)), pts, atol=1e-9)
    with pytest.raises(ValueError, match="degenerate"):
        PhotoCrop.of("p.png", (10, 10), [[0, 0], [0, 0], [0, 0], [0, 0]])
    assert PhotoCrop.from_dict(crop.to_dict()) == crop
    with pytest.raises(ValueError, match="malformed photo crop"):
        PhotoCrop.from_dict({"path": "p.png", "size": [3, 4]})


def _dots(size, points, sigma=1.5):
    """[H, W, 3] uint8: white with dark Gaussian dots centred at sub-pixel ``points`` (x, y)."""
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(float)
    dark = sum(np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in points)
    return np.repeat((255 * (1 - np.clip(dark, 0, 1)))[..., None], 3, 2).round().astype(np.uint8)


def _centroids(img, near, radius):
    """Darkness-weighted centroids [k, 2] (x, y) of the dots nearest ``near`` [k, 2] (pixel
    centres at integers)."""
    dark = 255.0 - np.asarray(img, dtype=float).mean(2)
    out = []
    for x0, y0 in near:
        xi, yi = int(np.rint(x0)), int(np.rint(y0))
        box = dark[yi - radius : yi + radius + 1, xi - radius : xi + radius + 1]
        ys, xs = np.mgrid[yi - radius : yi + radius + 1, xi - radius : xi + radius + 1]
        out.append([(box * xs).sum() / box.sum(), (box * ys).sum() / box.sum()])
    return np.array(out)


@pytest.mark.parametrize(
    "side,size", [(128, 64), (610, 64)], ids=["direct", "pre-shrunk"]
)  # 610 / 64: crop_quad shrinks the photo 4x first
def test_crop_quad_is_inverted_within_a_tenth_of_a_crop_pixel(side, size):
    """Dots drawn at known photo positions are found in the aligned crop where the recorded
    crop says: the inverse of the alignment is exact, not off by half a pixel."""
    w, h = side * 2 + 37, side * 2 + 11
    crop = PhotoCrop.of("p.png", (w, h), _quad((w / 2 + 3.3, h / 2 - 1.7), side, 17))
    st = np.array([[0.3, 0.3], [0.7, 0.35], [0.5, 0.6], [0.35, 0.75], [0.72, 0.7]])
    points = crop.crop_to_photo(st)  # [5, 2] in photo pixels
    photo = _dots((w, h), points, sigma=1.5 * side / 128)
    aligned = crop_quad(Image.fromarray(photo), np.asarray(crop.quad), size)
    found = _centroids(aligned, st * size - 0.5, radius=4)  # crop pixel centres at integers
    back = crop.crop_to_photo((found + 0.5) / size)
    pixel = side / size  # photo pixels per crop pixel
    np.testing.assert_array_less(np.hypot(*(back - points).T), 0.1 * pixel)


def test_paste_back_puts_the_crop_where_it_came_from():
    """Dots found in the photo after pasting its own aligned crop back sit where they were
    (within a tenth of a photo pixel; half a crop pixel off would be a whole one)."""
    w, h = 300, 260
    crop = PhotoCrop.of("p.png", (w, h), _quad((151.2, 128.6), 128, -23))
    points = crop.crop_to_photo(np.array([[0.3, 0.3], [0.7, 0.35], [0.5, 0.6], [0.35, 0.75]]))
    photo = _dots((w, h), points)
    aligned = pil_to_tensor(crop_quad(Image.fromarray(photo), np.asarray(crop.quad), 64))
    white = np.full_like(photo, 255)
    pasted = paste_back(white, aligned, crop, MASK)
    found = _centroids(pasted, points, radius=5)
    np.testing.assert_array_less(np.hypot(*(found - points).T), 0.1)
    assert (pasted[paste_mask(crop, MASK).numpy() == 0] == 255).all()


def test_a_large_image_pasted_into_a_small_face_does_not_alias():
    """A 1-pixel checkerboard of 256 px pasted into a 64-pixel crop averages to grey. Placed so
    that every photo pixel centre falls on a centre of the board's black pixels, pointwise
    sampling would paste black."""
    crop = PhotoCrop.of("p.png", (100, 100), _quad((48.875, 48.875), 64, 0))
    board = torch.ones(3, 256, 256)
    board[:, ::2, ::2] = board[:, 1::2, 1::2] = -1
    pasted = paste_back(np.zeros((100, 100, 3), np.uint8), board, crop, MASK)
    core = pasted[paste_mask(crop, MASK).numpy() == 1].astype(float)
    assert abs(core.mean() - 127.5) < 3 and core.std() < 3


def test_mask_is_zero_outside_one_inside_and_soft_between():
    st = torch.tensor([[0.5, 0.5], [0.5, 0.02], [0.0, 0.0], [1.2, 0.5], [0.5, 0.1]])
    m = MASK(st)
    assert m[0] == 1 and m[1] == 0 and m[2] == 0 and m[3] == 0
    assert 0 < m[4] < 1  # in the feather band (radius 0.45, ramp 0.1 wide)
    sq = PasteMask("square", margin=0.1, feather=0.1)(st)
    assert sq[0] == 1 and sq[1] == 0 and sq[3] == 0
    for bad in ({"shape": "star"}, {"margin": 0.5}, {"feather": 0.0}, {"feather": 0.5}):
        with pytest.raises(ValueError, match="paste_back"):
            PasteMask(**{"shape": "ellipse", "margin": 0.05, "feather": 0.1, **bad})


def test_paste_checks_shapes():
    crop = PhotoCrop.of("p.png", (40, 30), _quad((20, 15), 16, 0))
    photo = np.zeros((30, 40, 3), np.uint8)
    gen = torch.zeros(3, 8, 8)
    with pytest.raises(ValueError, match="uint8"):
        paste_back(photo.astype(np.float32), gen, crop, MASK)
    with pytest.raises(ValueError, match="alignment was made on 40x30"):
        paste_back(np.zeros((40, 30, 3), np.uint8), gen, crop, MASK)
    with pytest.raises(ValueError, match=r"\[3, R, R\]"):
        paste_back(photo, gen[0], crop, MASK)
    outside = PhotoCrop.of("p.png", (40, 30), _quad((200, 200), 16, 0))
    assert (paste_back(photo, gen, outside, MASK) == photo).all()


# -- a real photo: skimage's astronaut, aligned by MTCNN ------------------------------------------


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    """(photo [H, W, 3] uint8, its file, the aligned crop at 256 px, its PhotoCrop)."""
    skimage_data = pytest.importorskip("skimage.data")
    photo = skimage_data.astronaut()
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(photo).save(path)
    aligner = FaceAligner(256)
    image, crop = load_image_and_crop(path, 256, align=aligner)
    return photo, path, image, crop


@pytest.fixture(scope="module")
def toy_images():
    """Two toy-generator images [2, 3, 32, 32]: the mean code and an edit of it."""
    import lsap
    from lsap.nets.synthesis import synthesize

    G = lsap.load_generator("asset:toy32/generator.pt")
    w = G.mapping.w_avg.expand(1, G.num_ws, -1)
    edit = torch.zeros_like(w)
    edit[:, :4] = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return synthesize(G, torch.cat([w, w + 2.0 * edit]))


def test_the_recorded_crop_is_where_the_aligned_image_came_from(astronaut):
    photo, path, image, crop = astronaut
    assert crop.path == str(path.resolve()) and crop.size == (photo.shape[1], photo.shape[0])
    # the aligned crop resampled again from the photo by the recorded quad is the same image
    again = pil_to_tensor(crop_quad(Image.fromarray(photo), np.asarray(crop.quad), 256))
    assert (again - image).abs().max() <= 1 / 127.5 + 1e-6


def test_pasting_the_aligned_crop_inverts_the_alignment_within_one_pixel(astronaut):
    """The crop pasted back unmodified matches the photo inside the mask, best at zero shift:
    a one-pixel shift of the photo matches clearly worse."""
    photo, _, image, crop = astronaut
    pasted = paste_back(photo, image, crop, MASK).astype(float)
    core = paste_mask(crop, MASK).numpy() == 1.0  # [H, W]
    core[:2], core[-2:], core[:, :2], core[:, -2:] = False, False, False, False
    assert core.sum() > 10_000
    ys, xs = np.nonzero(core)

    def error(dx, dy):
        return np.abs(pasted[ys, xs] - photo[ys + dy, xs + dx].astype(float)).mean()

    at_zero = error(0, 0)
    shifted = min(error(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0))
    assert at_zero < 6.0, at_zero  # uint8 levels: resampled twice, nearly the photo
    assert at_zero < 0.7 * shifted, (at_zero, shifted)


def test_pasting_a_reconstruction_changes_nothing_outside_the_mask(astronaut, toy_images):
    """An unedited 32 px reconstruction pasted into the 512 px photo: every pixel outside the
    face mask is the photo's, exactly; inside, the face is the generated one."""
    photo, path, _, _ = astronaut
    _, crop = load_image_and_crop(path, 32, align=FaceAligner(32))
    pasted = paste_back(photo, toy_images[0], crop, MASK)
    m = paste_mask(crop, MASK).numpy()
    assert pasted.shape == photo.shape and pasted.dtype == np.uint8
    assert (pasted[m == 0] == photo[m == 0]).all()
    assert (m == 0).mean() > 0.5  # the face is a small part of the photo
    inside = np.abs(pasted[m == 1].astype(int) - photo[m == 1]).mean()
    assert inside > 20  # the toy face is not the astronaut's


def test_an_edit_changes_pixels_only_inside_the_mask(astronaut, toy_images):
    photo, path, _, _ = astronaut
    _, crop = load_image_and_crop(path, 32, align=FaceAligner(32))
    before, after = (paste_back(photo, im, crop, MASK) for im in toy_images)
    changed = (before != after).any(2)
    m = paste_mask(crop, MASK).numpy()
    assert changed.sum() > 100  # the edit shows
    assert not changed[m == 0].any()


# -- the code record keeps the alignment -----------------------------------------------------------


def test_code_record_round_trips_the_photo_crop(tmp_path):
    from lsap.io.inversions import CodeRecord, CodeSet

    crop = PhotoCrop.of(str(tmp_path / "a.jpg"), (640, 480), _quad((300, 200), 150.5, 12.25))
    rec = CodeRecord(name="a", w_plus=torch.randn(1, 8, 16), image_path="a.jpg", photo_crop=crop)
    rec.save(tmp_path / "codes" / "a.pt")
    raw = torch.load(tmp_path / "codes" / "a.pt", weights_only=True)  # plain values on disk
    assert raw["photo_crop"]["size"] == [640, 480] and len(raw["photo_crop"]["quad"]) == 4
    back = CodeRecord.load(tmp_path / "codes" / "a.pt")
    assert back.photo_crop == crop and "photo_crop" not in back.extra
    assert CodeSet(tmp_path, 8, 16)[0].photo_crop == crop


def test_code_file_without_a_photo_crop_still_loads(tmp_path):
    """A file written before the field existed (or of a photo not aligned) reads as None, and a
    record without a crop writes no entry; a malformed entry is an error naming the file."""
    from lsap.io.inversions import CodeRecord

    old = {"w_plus": torch.randn(1, 8, 16), "noise": None, "image_path": "", "name": "old",
           "metrics": {"mse": 0.1}, "provenance": {}}  # fmt: skip
    torch.save(old, tmp_path / "old.pt")
    rec = CodeRecord.load(tmp_path / "old.pt")
    assert rec.photo_crop is None and rec.metrics == {"mse": 0.1}
    assert "photo_crop" not in rec.to_dict(tmp_path)
    torch.save({**old, "photo_crop": {"path": "x", "size": [4, 4]}}, tmp_path / "bad.pt")
    with pytest.raises(LsapFileError, match=r"bad\.pt.*photo_crop"):
        CodeRecord.load(tmp_path / "bad.pt")


# -- the commands: lsap-invert and lsap-edit on an aligned photo -----------------------------------


@pytest.fixture(scope="module")
def inverted_astronaut(tmp_path_factory):
    """lsap-invert data.align=true on the astronaut (one step and two of PTI: pasting does not
    need a good reconstruction) and a photo that is not a face; returns (photo, run folder)."""
    from invert_helpers import FAST, compose

    from lsap.cli.invert import run

    skimage_data = pytest.importorskip("skimage.data")
    tmp = tmp_path_factory.mktemp("paste_invert")
    (tmp / "photos").mkdir()
    photo = skimage_data.astronaut()
    Image.fromarray(photo).save(tmp / "photos" / "astronaut.png")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp / "photos" / "noise.png")
    overrides = [*FAST, f"data.path={tmp}/photos", f"paths.cache_dir={tmp}/cache"]
    overrides += ["data.align=true", "inversion.steps=1", "metrics.id=null"]
    overrides += ["refinement=pti", "refinement.steps=2", "refinement.lr=3e-2"]
    overrides += ["refinement.loss.options.lpips.backbone=random"]
    run(compose(*overrides, f"paths.output_dir={tmp}/run"))
    return photo, tmp / "run"


def test_lsap_invert_pastes_the_reconstruction_back_into_the_photo(inverted_astronaut):
    from lsap.io.inversions import CodeRecord

    photo, out = inverted_astronaut
    rec = CodeRecord.load(out / "codes" / "astronaut.pt")
    assert rec.photo_crop is not None and rec.photo_crop.path.endswith("astronaut.png")
    pasted = np.asarray(Image.open(out / "pasted" / "astronaut.png"))
    assert pasted.shape == photo.shape  # the photo's own size, not the generator's
    recon = pil_to_tensor(Image.open(out / "reconstructions" / "astronaut.png"))
    again = paste_back(
        photo, recon, rec.photo_crop, _configured_mask()
    )  # from the PNG: rounded once more
    assert np.abs(pasted.astype(int) - again).max() <= 1
    m = paste_mask(rec.photo_crop, _configured_mask()).numpy()
    assert (pasted[m == 0] == photo[m == 0]).all() and (pasted[m == 1] != photo[m == 1]).any()
    assert sorted(p.name for p in (out / "pasted").iterdir()) == ["astronaut.png"]
    # after PTI also the refined image, pasted the same way
    refined = np.asarray(Image.open(out / "refined_pasted" / "astronaut.png"))
    assert (refined[m == 0] == photo[m == 0]).all() and (refined != pasted).any()


def test_lsap_edit_pastes_every_factor_and_only_inside_the_mask(inverted_astronaut, tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lsap.cli._common import config_dir
    from lsap.cli.edit import run
    from lsap.io.inversions import CodeRecord

    _, inv = inverted_astronaut
    overrides = ["generator=tiny", f"codes={inv}", "device=cpu", f"paths.output_dir={tmp_path}"]
    overrides += ["editing.sefa.components=[0]", "editing.sefa.factors=[-5.0,0.0,5.0]"]
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = hydra_compose("edit", overrides=[*overrides, f"paths.cache_dir={tmp_path}/c"])
    summary = run(cfg)
    assert summary["pasted"] == 1
    crop = CodeRecord.load(inv / "codes" / "astronaut.pt").photo_crop
    edit = tmp_path / "pasted" / "sefa" / "all" / "dir0"  # the edit's name: sefa/all/dir0
    imgs = {
        f: np.asarray(Image.open(edit / f"factor{f}" / "astronaut.png")) for f in ("-5", "+0", "+5")
    }
    m = paste_mask(crop, _configured_mask()).numpy()
    for f in ("-5", "+5"):
        changed = (imgs[f] != imgs["+0"]).any(2)
        assert changed.sum() > 100 and not changed[m == 0].any()
    # factor 0 is the reconstruction, pasted as lsap-invert pasted it (float synthesis of
    # another batch: a level of rounding apart at most)
    recon = np.asarray(Image.open(inv / "pasted" / "astronaut.png")).astype(int)
    assert np.abs(imgs["+0"] - recon).max() <= 1
    assert CodeRecord.load(tmp_path / "edits/sefa/all/dir0/astronaut.pt").photo_crop == crop


def test_photos_not_aligned_have_nothing_to_paste(tmp_path):
    from invert_helpers import FAST, compose

    from lsap.cli.invert import run
    from lsap.io.inversions import CodeRecord

    skimage_data = pytest.importorskip("skimage.data")
    Image.fromarray(skimage_data.astronaut()).save(tmp_path / "astronaut.png")
    overrides = [*FAST, f"data.path={tmp_path}/astronaut.png", f"paths.cache_dir={tmp_path}/c"]
    run(compose(*overrides, "inversion.steps=1", f"paths.output_dir={tmp_path}/run"))
    assert CodeRecord.load(tmp_path / "run" / "codes" / "astronaut.pt").photo_crop is None
    assert not (tmp_path / "run" / "pasted").exists()
    assert PasteMask.from_config({"enabled": False, "shape": "ellipse"}) is None
    assert PasteMask.from_config(None) is None


def test_lsap_demo_pastes_the_astronaut_back_and_shows_it(tmp_path):
    """The demo's astronaut: each method's reconstruction pasted into the photo (files and the
    report's table); the code files keep the crop, naming the photo the demo wrote."""
    import re

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lsap.cli._common import config_dir
    from lsap.cli.demo import run
    from lsap.io.inversions import CodeRecord

    skimage_data = pytest.importorskip("skimage.data")
    overrides = ["generator=tiny", "data.toy.num_images=0", "inversion.steps=2", "editing=sefa"]
    overrides += ["editing.sefa.components=[0]", "metrics.fidelity=[mse,psnr]"]
    overrides += ["alignment.num_samples=500", f"paths.output_dir={tmp_path}/out"]
    overrides += [f"paths.cache_dir={tmp_path}/cache", f"paths.log_dir={tmp_path}/logs"]
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = hydra_compose("demo", overrides=overrides)
    results = run(cfg)
    out = tmp_path / "out"
    methods = list(results["methods"])
    assert results["pasted"] == {"astronaut": {m: f"pasted/{m}/astronaut.png" for m in methods}}
    photo = skimage_data.astronaut()
    for m in methods:
        rec = CodeRecord.load(out / "methods" / m / "codes" / "astronaut.pt")
        assert np.array_equal(np.asarray(Image.open(rec.photo_crop.path)), photo)
        pasted = np.asarray(Image.open(out / "pasted" / m / "astronaut.png"))
        outside = paste_mask(rec.photo_crop, _configured_mask()).numpy() == 0
        assert (pasted[outside] == photo[outside]).all() and (pasted != photo).any()
    table = re.search(r'<table id="pasted">(.*?)</table>', (out / "report.html").read_text())
    assert table and table.group(1).count("<img") == 1 + len(methods)


def test_alignment_and_paste_work_in_the_exif_oriented_frame(tmp_path):
    """A photo stored sideways with an EXIF orientation: the crop is recorded in the upright
    frame the aligner saw, and the photo read for pasting is that frame (same size)."""

    class FixedAligner:  # stands in for MTCNN: the same square of whatever it is given
        def align(self, img):
            quad = _quad((img.width / 2, img.height / 2), 40, 10)
            return crop_quad(img, quad, 16), quad

    upright = np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8)  # 90 x 60
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # 60 x 90 on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": undoes the ROTATE_90 (counter-clockwise) above
    stored.save(tmp_path / "sideways.png", exif=exif)
    image, crop = load_image_and_crop(tmp_path / "sideways.png", 16, align=FixedAligner())
    assert crop.size == (90, 60) and image.shape == (3, 16, 16)
    photo = load_crop_photo(crop)
    np.testing.assert_array_equal(photo, upright)
    pasted = paste_back(photo, image, crop, MASK)
    assert (
        pasted[paste_mask(crop, MASK).numpy() == 0] == upright[paste_mask(crop, MASK).numpy() == 0]
    ).all()
    Image.fromarray(upright[:, :80]).save(tmp_path / "sideways.png")  # the photo changed
    with pytest.raises(LsapFileError, match="the photo changed"):
        load_crop_photo(crop)
