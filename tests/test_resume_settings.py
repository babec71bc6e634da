"""A resumed lsap-invert run must have the settings of the results it continues (issue 12.1):
other loss weights, inversion settings, code source, refinement or seed are refused in one line
naming the first differing key, and the folder's results are left as they were."""

from __future__ import annotations

import shutil

import pytest
from invert_helpers import FAST, compose, make_images

from lsap.inversion.settings import first_difference, result_settings

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run over two images (and the folder they came from)."""
    from lsap.cli.invert import run

    folder = tmp_path_factory.mktemp("images")
    make_images(folder, n=2, nested=0, bad=False)
    out = tmp_path_factory.mktemp("run")
    run(_cfg(folder, out, "inversion.steps=2"))
    return folder, out


def _cfg(folder, out, *overrides):
    return compose(
        *FAST,
        f"data.path={folder}",
        f"paths.output_dir={out}",
        f"paths.cache_dir={out.parent}/cache",
        "log.curves=0",
        "log.grid=0",
        *overrides,
    )


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["inversion.steps=3", "inversion=w", "loss.sncd=0"], "inversion.space"),  # the run
        (["inversion.steps=3"], "inversion.steps"),
        (["inversion.steps=2", "loss.sncd=0"], "loss.sncd"),
        (["inversion.steps=2", "loss.options.sncd.anchor_normalized=true"], "loss.options.sncd"),
        (["inversion.steps=2", "seed=1"], "seed"),
        (["inversion.steps=2", "alignment.seed=3"], "alignment.seed"),
    ],
)
def test_resume_with_other_settings_is_refused_and_changes_nothing(
    finished, tmp_path, capsys, overrides, key
):
    from lsap.cli._common import one_line_errors
    from lsap.cli.invert import run

    folder, done = finished
    out = tmp_path / "out"
    shutil.copytree(done, out)
    (folder / "new.png").write_bytes((folder / "img0.png").read_bytes())  # one new image to do
    try:
        before = _snapshot(out)
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            one_line_errors("lsap-invert", settings=True)(run)(_cfg(folder, out, *overrides))
        err = capsys.readouterr().err.strip().splitlines()
    finally:
        (folder / "new.png").unlink()
    assert e.value.code == 2 and len(err) == 1, err
    assert f"holds results made with {key}" in err[0] and f"this run has {key}" in err[0], err[0]
    assert str(out) in err[0]
    after = {k: v for k, v in _snapshot(out).items() if k.parts[0] in ("codes", "results.csv")}
    assert after == {k: v for k, v in before.items() if k.parts[0] in ("codes", "results.csv")}
    assert not (out / "codes" / "new.pt").exists()


def test_resume_with_the_same_settings_finishes_the_new_image(finished, tmp_path):
    from lsap.cli.invert import run

    folder, done = finished
    out = tmp_path / "out"
    shutil.copytree(done, out)
    (folder / "new.png").write_bytes((folder / "img0.png").read_bytes())
    try:
        # batch size, workers and metric networks change no code: a resume may differ in them
        run(_cfg(folder, out, "inversion.steps=2", "data.batch_size=1", "metrics.id=null"))
    finally:
        (folder / "new.png").unlink()
    assert (out / "codes" / "new.pt").is_file()
    assert (out / "codes" / "img0.pt").read_bytes() == (done / "codes" / "img0.pt").read_bytes()


def test_result_settings_name_what_changes_a_result():
    cfg = {
        "seed": 0,
        "data": {"align": False, "batch_size": 4, "path": "a"},
        "inversion": {"steps": 5, "schedule": {"lr_rampup": 0.05}},
        "loss": {"sncd": 0.5, "options": {"lpips": {"net": "vgg"}}},
        "alignment": {"num_samples": 10, "seed": 0, "batch_size": 5, "cache_dir": "x"},
        "refinement": {"name": "pti", "steps": 3, "save": {"deltas": True}},
        "metrics": {"lpips": None},
    }
    src = {"name": "encoder_optimize", "init": "encoder", "optimize": True}
    s = result_settings(cfg, {**src, "encoder": "/a/e.pt", "encoder_sha256": "aa"})
    assert s["inversion.schedule.lr_rampup"] == 0.05 and s["loss.options.lpips.net"] == "vgg"
    assert s["refinement.steps"] == 3 and s["code_source.encoder_sha256"] == "aa"
    for left_out in (
        "data.batch_size",
        "data.path",
        "alignment.cache_dir",
        "refinement.save.deltas",
    ):
        assert left_out not in s
    assert not any(k.startswith("metrics") for k in s)
    # a moved encoder file with the same content is the same code source; another one is not
    moved = result_settings(cfg, {**src, "encoder": "/b/e.pt", "encoder_sha256": "aa"})
    assert first_difference(s, moved) is None
    other = result_settings(cfg, {**src, "encoder": "/a/e.pt", "encoder_sha256": "bb"})
    assert first_difference(s, other) == "code_source.encoder_sha256"
    # the per-image start file a code file records is not a setting of the run
    codes = {"name": "codes", "init": "codes", "optimize": False, "codes": "/runs/a"}
    recorded = result_settings(cfg, {**codes, "code_file": "/runs/a/codes/img0.pt"})
    assert first_difference(recorded, result_settings(cfg, codes)) is None
    # without optimisation the loss and inversion settings change nothing
    fixed = {"name": "encoder", "init": "encoder", "optimize": False, "encoder_sha256": "aa"}
    a = result_settings(cfg, fixed)
    b = result_settings({**cfg, "loss": {"sncd": 0.0}, "inversion": {"steps": 1}}, fixed)
    assert first_difference(a, b) is None
    assert first_difference(a, {**a, "refinement.steps": 4}) == "refinement.steps"
    assert first_difference({"x": 1}, {}) == "x"
