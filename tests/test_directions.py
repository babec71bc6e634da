"""``lsap-directions``: InterFaceGAN directions of the shipped toy32 generator from labelled
generator samples (the shipped classifier) and from labelled images (toy faces + labels.csv,
coded by the shipped encoder or read from code records); bad labels files are one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conf_entries import conf_entry
from omegaconf import open_dict

from lsap.config import compose, plain
from lsap.core.errors import LsapFileError
from lsap.data.labels import read_labels_csv
from lsap.data.toy import write_toy_images
from lsap.editing import check_direction
from lsap.editing.directions_settings import labels_from_config
from lsap.editing.fitting import roc_auc
from lsap.editing.labelled_samples import classify_codes
from lsap.io import generator_from_config
from lsap.io.classifier import load_toy_classifier
from lsap.io.inversions import CodeRecord
from lsap.nets.sampling import sample_z

pytestmark = pytest.mark.usefixtures("one_thread")

ENCODER = "asset:toy32/encoder_lsap_e.pt"


def run_directions(out, *overrides):
    from lsap.cli.directions import run

    cfg = compose("directions", ["device=cpu", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return run(cfg)


@pytest.fixture(scope="module")
def toy():
    cfg = compose("directions")
    G = generator_from_config(cfg.generator).eval().requires_grad_(False)
    return G, load_toy_classifier(cfg.labels.classifier)


# -- labelled generator samples ------------------------------------------------------------------
@pytest.fixture(scope="module")
def from_samples(tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    overrides = [
        "labels.attributes=[glasses,beard,head_size]",
        "labels.num_samples=1500",
        "labels.chunk_size=750",
    ]
    return out, overrides, run_directions(out, *overrides)


def test_directions_from_labelled_samples_separate_held_out_codes_and_edit_their_attribute(
    from_samples, toy
):
    """glasses/beard: held-out AUC high (20 % of 1,500 toy32 samples; shipped fit, 20,000
    samples: 0.99 / 0.96); moving fresh codes along the direction raises the classifier's
    probability and moving against it lowers it, while a random direction of the same length
    barely moves it."""
    out, _, result = from_samples
    G, classifier = toy
    d = result["directions"]
    assert list(d) == ["glasses", "beard", "head_size"]
    assert d["glasses"]["num_train"] == 1200 and d["glasses"]["num_heldout"] == 300
    assert result["num_samples"] == 1500
    assert d["glasses"]["heldout_auc"] > 0.9 and d["beard"]["heldout_auc"] > 0.85, d
    assert d["head_size"]["heldout_pearson_r"] > 0.8, d
    saved = json.loads((out / "directions.json").read_text())
    assert saved["directions"] == d and saved["provenance"]["generator_sha256"] == G.sha256
    assert saved["labels"]["classifier_sha256"] == classifier.sha256

    w = G.mapping(sample_z(200, G.z_dim, seed=11))  # fresh codes (fitting used seed 0)
    before = classify_codes(G, classifier, w, 200)
    g = torch.Generator().manual_seed(0)
    for a, name in ((1, "glasses"), (3, "beard")):
        direction = torch.load(out / "directions" / f"{name}.pt", weights_only=True)
        assert direction.shape == (G.w_dim,) and abs(float(direction.norm()) - 1) < 1e-5
        step = 6.0  # a distance in W (the shipped directions' largest edit)
        up = (
            classify_codes(G, classifier, w + step * direction, 200)[:, a].mean()
            - before[:, a].mean()
        )
        down = (
            classify_codes(G, classifier, w - step * direction, 200)[:, a].mean()
            - before[:, a].mean()
        )
        rand = torch.nn.functional.normalize(torch.randn(G.w_dim, generator=g), dim=0)
        other = (
            classify_codes(G, classifier, w + step * rand, 200)[:, a].mean() - before[:, a].mean()
        )
        assert up > 0.3 and down < -0.03, (name, float(up), float(down))
        assert abs(float(other)) < up / 3, (name, float(other), float(up))


def test_labelled_samples_are_cached_and_a_rerun_reuses_them(from_samples):
    """A rerun into the same folder reads the chunks instead of rendering them again (their files
    are not rewritten) and fits the same directions."""
    out, overrides, first = from_samples
    chunks = sorted((out / "samples").glob("seed*.pt"))
    assert len(chunks) == 2
    stamps = [c.stat().st_mtime_ns for c in chunks]
    again = run_directions(out, *overrides)
    assert [c.stat().st_mtime_ns for c in chunks] == stamps
    assert {k: v["sha256"] for k, v in again["directions"].items()} == {
        k: v["sha256"] for k, v in first["directions"].items()
    }


def test_a_cache_chunk_of_another_seed_or_damaged_is_relabelled(tiny_G, tmp_path):
    """Chunks keyed by generator, classifier, seed and their z: a rerun with the same settings
    gives the same codes and predictions from the cache; another seed or a damaged file is
    recomputed (and equals a run without cache); a larger run reuses the smaller one's chunks."""
    from lsap.editing.labelled_samples import label_samples
    from lsap.nets.toy_classifier import ToyClassifier

    torch.manual_seed(0)
    clf = ToyClassifier(names=("a", "b"), kinds=("binary", "scalar")).eval()
    clf.sha256 = "random"
    labels = conf_entry("directions", "labels", "paths.output_dir=unused")  # conf/labels/samples
    psi = labels["truncation_psi"]
    kw = dict(batch_size=16, chunk_size=24, truncation_psi=psi)
    first = label_samples(tiny_G, clf, 60, seed=0, cache_dir=tmp_path, **kw)
    chunks = sorted(tmp_path.glob("seed*.pt"))
    assert len(chunks) == 3 and first.w.shape == (60, 64) and first.predictions.shape == (60, 2)
    stamps = [c.stat().st_mtime_ns for c in chunks]
    again = label_samples(tiny_G, clf, 60, seed=0, cache_dir=tmp_path, **kw)
    assert [c.stat().st_mtime_ns for c in chunks] == stamps
    assert torch.equal(again.w, first.w) and torch.equal(again.predictions, first.predictions)
    chunks[1].write_bytes(b"damaged")
    other = label_samples(tiny_G, clf, 60, seed=1, cache_dir=tmp_path, **kw)
    fresh = label_samples(tiny_G, clf, 60, seed=1, cache_dir=None, **kw)
    assert torch.equal(other.w, fresh.w) and not torch.equal(other.w, first.w)
    repaired = label_samples(tiny_G, clf, 60, seed=0, cache_dir=tmp_path, **kw)
    assert torch.equal(repaired.w, first.w)
    # more samples of the same seed: the first two chunks are read, not rewritten
    stamps = [c.stat().st_mtime_ns for c in chunks[:2]]
    more = label_samples(tiny_G, clf, 72, seed=0, cache_dir=tmp_path, **kw)
    assert [c.stat().st_mtime_ns for c in chunks[:2]] == stamps
    assert torch.equal(more.w[:60], first.w)
    labels = first.labels(0.5)
    assert set(labels[:, 0].tolist()) <= {0.0, 1.0}
    assert torch.equal(labels[:, 1], first.predictions[:, 1].double())


# -- labelled images -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    write_toy_images(folder, 300, seed=7)  # toy faces of a seed no toy model saw, + labels.csv
    return folder


@pytest.fixture(scope="module")
def from_images(faces, tmp_path_factory):
    out = tmp_path_factory.mktemp("images")
    overrides = [
        "labels=images",
        f"labels.images={faces}",
        "labels.attributes=[glasses,beard,skin_tone]",
        "code_source=encoder",
        f"code_source.encoder={ENCODER}",
    ]
    return out, overrides, run_directions(out, *overrides)


def test_directions_from_labelled_images_recover_the_attribute_and_shuffled_labels_do_not(
    from_images, faces, tmp_path
):
    """Toy faces coded by the shipped LSAP_E encoder: glasses, beard and skin tone are read from
    the codes on held-out faces; the same faces with their labels shuffled among them (the same
    label counts) give chance-level held-out scores."""
    _, overrides, result = from_images
    d = result["directions"]
    assert result["num_samples"] == 300 and d["glasses"]["num_heldout"] == 60
    assert d["glasses"]["heldout_auc"] > 0.9 and d["beard"]["heldout_auc"] > 0.85, d
    assert d["skin_tone"]["heldout_pearson_r"] > 0.9, d
    assert result["labels"]["code_source"]["encoder_sha256"]

    table = read_labels_csv(faces / "labels.csv")
    perm = torch.randperm(len(table.names), generator=torch.Generator().manual_seed(3))
    rows = ["file," + ",".join(table.attributes)]
    for i, f in enumerate(table.files):
        rows.append(f + "," + ",".join(f"{v:g}" for v in table.values[perm[i]].tolist()))
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join(rows) + "\n")
    control = run_directions(tmp_path / "out", *overrides, f"labels.csv={shuffled}")["directions"]
    for name in ("glasses", "beard"):
        assert abs(control[name]["heldout_auc"] - 0.5) < 0.2, (name, control[name])
    assert abs(control["skin_tone"]["heldout_pearson_r"]) < 0.3, control["skin_tone"]


def test_codes_of_an_inversion_run_give_the_encoders_directions_and_per_layer_ones_fit_lsap_edit(
    from_images, faces, toy, tmp_path
):
    """The faces' codes written as an lsap-invert run (codes/<name>.pt) fit the same directions as
    coding on the fly; fit.layers=per_layer gives [num_ws, w_dim] unit rows that lsap-edit
    accepts, scoring about as well; a run missing one image's code is an error naming it."""
    from lsap.cli.directions import from_images as codes_of

    out, overrides, _ = from_images
    G, _ = toy
    cfg = compose("directions", ["device=cpu", *overrides])
    labels, source = labels_from_config(cfg.labels), plain(cfg.code_source)
    w_plus, _, _, _, _ = codes_of(labels, source, G, torch.device("cpu"))
    table = read_labels_csv(faces / "labels.csv")
    run_dir = tmp_path / "invert"
    for name, w in zip(table.names, w_plus, strict=True):
        CodeRecord(name=name, w_plus=w[None], provenance={"generator_sha256": G.sha256}).save(
            run_dir / "codes" / f"{name}.pt"
        )
    base = [
        "labels=images",
        f"labels.images={faces}",
        "labels.attributes=[glasses,beard,skin_tone]",
    ]
    same = run_directions(tmp_path / "a", *base, f"labels.codes={run_dir}")
    for entry in same["directions"].values():
        torch.testing.assert_close(
            torch.load(tmp_path / "a" / entry["file"], weights_only=True),
            torch.load(out / entry["file"], weights_only=True),
        )
    per_layer = run_directions(
        tmp_path / "b", *base, f"labels.codes={run_dir}", "fit.layers=per_layer"
    )
    for entry in per_layer["directions"].values():
        t = torch.load(tmp_path / "b" / entry["file"], weights_only=True)
        assert t.shape == (G.num_ws, G.w_dim)
        torch.testing.assert_close(t.norm(dim=1), torch.ones(G.num_ws))
        assert check_direction(t, G.num_ws, G.w_dim).shape == (G.num_ws, G.w_dim)
    assert per_layer["directions"]["glasses"]["heldout_auc"] > 0.85

    (run_dir / "codes" / f"{table.names[5]}.pt").unlink()
    with pytest.raises(LsapFileError, match=f"1 of 300 .*{table.names[5]}") as e:
        run_directions(tmp_path / "c", *base, f"labels.codes={run_dir}")
    assert e.value.path == str(run_dir)


def test_mean_difference_directions_of_image_codes_edit_generator_samples(
    from_images, toy, tmp_path
):
    """Encoder codes of images do not vary like the generator's W (their covariance has much
    smaller eigenvalues), so a boundary normal fitted in whitened codes separates held-out codes
    yet hardly edits; the class-mean difference (fit.method=mean_difference) moves fresh generator
    samples towards the attribute and away from it (the shipped classifier's mean probability)."""
    first_run, overrides, _ = from_images
    G, classifier = toy
    md = run_directions(tmp_path, *overrides, "fit.method=mean_difference")["directions"]
    assert md["beard"]["heldout_auc"] > 0.8 and md["skin_tone"]["heldout_pearson_r"] > 0.8, md
    w = G.mapping(sample_z(200, G.z_dim, seed=11))
    before = classify_codes(G, classifier, w, 200)
    a = classifier.names.index("beard")
    moved = {}
    for method, folder in (("boundary", first_run), ("mean_difference", tmp_path)):
        d = torch.load(folder / "directions" / "beard.pt", weights_only=True)
        moved[method] = [
            float(classify_codes(G, classifier, w + f * d, 200)[:, a].mean() - before[:, a].mean())
            for f in (-6.0, 6.0)
        ]
    assert moved["mean_difference"][1] > 0.3 and moved["mean_difference"][0] < -0.05, moved
    assert moved["mean_difference"][1] > 2 * moved["boundary"][1], moved


def test_mean_difference_direction_is_the_class_mean_difference_and_the_regression_slope():
    from lsap.editing.fitting import mean_difference_direction

    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 4, generator=g)
    y = (torch.arange(50) % 3 == 0).float()
    d = mean_difference_direction(x, y, kind="binary")
    expected = x[y == 1].mean(0) - x[y == 0].mean(0)
    torch.testing.assert_close(d, expected / expected.norm())
    t = torch.rand(50, generator=g)
    codes = t[:, None] * torch.tensor([3.0, 0, -4, 0]) + 0.01 * torch.randn(50, 4, generator=g)
    d = mean_difference_direction(codes, t, kind="scalar")
    torch.testing.assert_close(d, torch.tensor([0.6, 0, -0.8, 0]), atol=0.02, rtol=0)
    with pytest.raises(ValueError, match="one class"):
        mean_difference_direction(x, torch.ones(50), kind="binary")
    with pytest.raises(ValueError, match="constant"):
        mean_difference_direction(x, torch.ones(50), kind="scalar")


# -- bad labels files ----------------------------------------------------------------------------
def write_faces(folder, n=6):
    write_toy_images(folder, n, seed=9)
    return folder


@pytest.mark.parametrize(
    "header, row, problem",
    [
        ("file,glasses", None, "has no column 'beard'"),
        (
            "file,beard",
            ["1", "yes", "0", "1", "0", "1"],
            "line 3, column 'beard': 'yes' is not a number",
        ),
        ("photo,beard", None, "first column must name the images"),
        ("file,beard", ["1", "0", "", "1", "0", "1"], "line 4, column 'beard': '' is not a number"),
    ],
)
def test_bad_labels_csv_is_an_error_naming_the_file(tmp_path, header, row, problem):
    faces = write_faces(tmp_path / "faces")
    values = row or ["1", "0", "0", "1", "0", "1"]
    names = sorted(p.name for p in faces.glob("*.png"))
    lines = [header] + [f"{n},{v}" for n, v in zip(names, values, strict=True)]
    (faces / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(LsapFileError) as e:
        read_labels_csv(faces / "labels.csv", ["beard"])
    assert e.value.path == str(faces / "labels.csv") and problem in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_labels_naming_missing_images_fail_in_one_line_from_the_command(tmp_path):
    """As users run it (``python -m lsap.cli.directions``): exit status 2 and one stderr line
    naming labels.csv and the images it lacks; no directions written."""
    faces = write_faces(tmp_path / "faces")
    text = (faces / "labels.csv").read_text().splitlines()
    text.append("toy_9_999999.png" + text[1][text[1].index(",") :])
    text.append("gone/lost.jpg" + text[1][text[1].index(",") :])
    (faces / "labels.csv").write_text("\n".join(text) + "\n")
    cmd = [
        sys.executable,
        "-m",
        "lsap.cli.directions",
        "labels=images",
        f"labels.images={faces}",
        "code_source=encoder",
        f"code_source.encoder={ENCODER}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "device=cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"lsap-directions: error: {faces / 'labels.csv'}: 2 of 8 names")
    assert "'toy_9_999999'" in lines[0] and "'gone__lost'" in lines[0]
    assert not (tmp_path / "run" / "directions.json").exists()


def test_one_attribute_may_be_given_without_a_list():
    from lsap.cli.directions import attribute_list

    assert attribute_list("smile") == ["smile"] and attribute_list(None) is None
    assert attribute_list([]) is None
    assert attribute_list(["smile", "beard"]) == ["smile", "beard"]


def test_labels_csv_names_and_kinds(tmp_path):
    """Names as lsap-invert names images (sub/a.png -> sub__a; with or without suffix); binary
    columns are inferred from 0/1 values and can be forced scalar; one class cannot be fitted."""
    path = tmp_path / "labels.csv"
    path.write_text("name,smile,age\nsub/a.png,1,31.5\nb,0,40\nc.jpg,1,22\n")
    t = read_labels_csv(path)
    assert t.names == ["sub__a", "b", "c"] and t.attributes == ["smile", "age"]
    assert t.kinds == ["binary", "scalar"]
    torch.testing.assert_close(t.column("age"), torch.tensor([31.5, 40, 22], dtype=torch.float64))
    assert read_labels_csv(path, ["smile"], {"smile": "scalar"}).kinds == ["scalar"]
    with pytest.raises(LsapFileError, match="binary but holds values other than 0 and 1"):
        read_labels_csv(path, ["age"], {"age": "binary"})
    path.write_text("name,smile\na,1\nb,1\na.png,0\n")
    with pytest.raises(LsapFileError, match="line 4 names image 'a' again"):
        read_labels_csv(path)


def test_roc_auc_counts_ties_half_and_orders_by_score():
    labels = torch.tensor([0, 0, 1, 1, 0, 1.0])
    assert roc_auc(torch.tensor([1, 2, 3, 4, 0, 5.0]), labels) == 1.0
    assert roc_auc(-torch.tensor([1, 2, 3, 4, 0, 5.0]), labels) == 0.0
    assert roc_auc(torch.ones(6), labels) == 0.5
    # positives 3, 2, 9 against negatives 1, 2, 0: 3 + (2 + one tie) + 3 = 8.5 of 9 pairs
    assert roc_auc(torch.tensor([1, 2, 3, 2, 0, 9.0]), labels) == pytest.approx(8.5 / 9)


def test_a_non_square_generator_shows_classifier_and_encoder_its_valid_region(tmp_path):
    """generator.crop: the classifier reads generated frames as image files are read into the
    frame (the valid region, FILL outside), and labelled images are fitted to the valid region."""
    from types import SimpleNamespace

    from PIL import Image

    from lsap.editing.labelled_images import encode_files
    from lsap.nets.crop import FILL
    from lsap.nets.stylegan2 import broadcast_w

    G = generator_from_config(compose("directions", ["generator=tiny_wide"]).generator)
    top, left, h, w = G.crop.box_at(G.resolution)
    assert (h, w) != (G.resolution, G.resolution)
    seen = []

    class Spy:
        names, sha256 = ["a"], "spy"
        config = SimpleNamespace(resolution=G.resolution, kinds=["scalar"])

        def predict(self, images):
            seen.append(images)
            return images.mean((1, 2, 3))[:, None]

    codes = G.mapping(sample_z(3, G.z_dim, seed=0))
    classify_codes(G, Spy(), codes, 3)
    frames = seen[0]
    expected = G.synthesis(broadcast_w(codes, G.num_ws, G.w_dim), noise_mode="const")
    inside = frames[..., top : top + h, left : left + w]
    torch.testing.assert_close(inside, expected[..., top : top + h, left : left + w])
    outside = frames.clone()
    outside[..., top : top + h, left : left + w] = FILL
    assert (outside == FILL).all() and not (expected == FILL).all()

    Image.new("RGB", (48, 36), (200, 30, 30)).save(tmp_path / "car.png")
    got = []
    encode_files(
        [tmp_path / "car.png"],
        ["car"],
        lambda names, images: got.append(images) or torch.zeros(1, G.num_ws, G.w_dim),
        resolution=G.resolution,
        batch_size=1,
        box=(top, left, h, w),
    )
    frame = got[0][0]
    assert (frame[:, top : top + h, left : left + w] > 0.5).any()  # the red photo fills the box
    frame[:, top : top + h, left : left + w] = FILL
    assert (frame == FILL).all()


def test_a_missing_setting_is_one_line_from_the_command(tmp_path, capsys):
    """lsap-directions reads its config once into typed settings: a key deleted from the config
    (``fit.l2``) or a ``???`` left unset (``labels.images``) is one stderr line naming it, exit 2,
    before any work."""
    from lsap.cli.directions import _main

    for overrides, key, line in (
        ([], "l2", "lsap-directions: error: fit misses l2 (see conf/directions.yaml)"),
        (["labels=images"], None, "lsap-directions: error: labels.images is not set"),
    ):
        cfg = compose("directions", ["device=cpu", *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path)
            if key is not None:
                del cfg.fit[key]
        with pytest.raises(SystemExit) as e:
            _main.__wrapped__(cfg)  # what @hydra.main calls: the command's one_line_errors
        assert e.value.code == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and err[0].startswith(line), err
    assert not (tmp_path / "directions.json").exists()
