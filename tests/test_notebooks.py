"""The notebooks: stored without outputs, glue only, and executed (nbclient) on their default
generator, the embedded toy32 one.

Each run injects a cell after the one tagged ``parameters`` (papermill's convention) that shrinks
the configs (few steps and samples) and names a temporary output folder; the kernel runs with the
network unreachable and empty weight caches, so the notebooks' defaults must work offline. The
tests then check the numbers the notebook wrote against the codes it wrote, recomputed here.
"""

from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from lsap.alignment import compute_anchors, sncd  # noqa: E402
from lsap.alignment.reference import sample_sncd  # noqa: E402
from lsap.config import compose, plain  # noqa: E402
from lsap.editing.widgets import widgets_available  # noqa: E402
from lsap.io import generator_from_config, load_codes  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "lsap-test-python"
# glue imports only: lsap, the plotting/tensor stack, and the standard library bits they need
ALLOWED_IMPORTS = {"lsap", "matplotlib", "torch", "numpy", "tempfile", "pathlib"}
ANCHOR_SAMPLES = 4000
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def fast_overrides(cache_dir: Path) -> list[str]:
    return [
        "inversion.w_std_samples=2000",
        f"alignment.num_samples={ANCHOR_SAMPLES}",
        f"paths.cache_dir={cache_dir}",
    ]


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A kernelspec running this test's Python (the venv's lsap), in a private JUPYTER_PATH."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lsap tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny networks on a shared 2-core machine
    monkeypatch.setenv("LSAP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "agg")
    # offline and nothing cached: a default that downloads weights fails here
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return KERNEL


def run_notebook(name: str, params: str, workdir: Path, kernel_name: str):
    """Execute a notebook with ``params`` injected after its parameters cell; returns it."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    check = f"import sys\nassert sys.executable == {sys.executable!r}, sys.executable\n"
    nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(check + params))
    workdir.mkdir(parents=True, exist_ok=True)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name=kernel_name, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return nb


def toy_generator():
    """The notebooks' default generator (``asset:toy32/generator.pt``)."""
    return generator_from_config(plain(compose("invert", generator="toy32").generator))


def finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


# -- stored form -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_stored_without_outputs_and_glue_only(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state (an output)"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "one cell tagged 'parameters' (the tests inject after it)"
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"{path.name}: a cell has outputs"
        assert cell.execution_count is None, f"{path.name}: a cell has an execution count"
        tree = ast.parse(cell.source)
        for node in ast.walk(tree):
            assert not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Lambda), (
                f"{path.name}: logic defined in a cell (put it in the library): {cell.source[:80]}"
            )
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED_IMPORTS, f"{path.name} imports {roots - ALLOWED_IMPORTS}"


def test_both_notebooks_exist():
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == {
        "01_invert_and_edit.ipynb",
        "02_sncd_vs_editability.ipynb",
    }


# -- 01: invert and edit ----------------------------------------------------------------------


def test_invert_and_edit_notebook(tmp_path, kernel):
    """The notebook's defaults: toy32 with its shipped LSAP_E encoder and smile/glasses directions."""
    G = toy_generator()
    out = tmp_path / "out"
    params = f"OVERRIDES = {fast_overrides(tmp_path / 'cache')!r}\nOUTPUT_DIR = {str(out)!r}\n"
    nb = run_notebook("01_invert_and_edit.ipynb", params, tmp_path / "work", kernel)
    data = [o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    if widgets_available():  # the sliders were displayed (else the grid alone)
        assert any(WIDGET_MIME in d for d in data)

    summary = json.loads((out / "invert_and_edit.json").read_text())
    methods = summary["methods"]
    assert set(methods) == {"projector", "lsap_o", "encoder", "encoder+lsap_o"}
    anchors = compute_anchors(G, ANCHOR_SAMPLES, 0)
    for name, m in methods.items():
        assert len(m["sncd_per_layer"]) == G.num_ws
        assert all(finite(v) for v in m["sncd_per_layer"]), name
        assert m["sncd"] == pytest.approx(sum(m["sncd_per_layer"]), abs=1e-4)
        assert finite(m["psnr"]) and finite(m["mse"]), name
        # the numbers are those of the codes the notebook wrote
        w = load_codes(Path(m["codes"]) / "codes" / "target.pt", G.num_ws, G.w_dim)
        total, per_layer = sncd(G, w, anchors)
        assert float(total[0]) == pytest.approx(m["sncd"], abs=1e-4), name
        assert per_layer[0].tolist() == pytest.approx(m["sncd_per_layer"], abs=1e-5), name
    # the SNCD term at the calibrated weight (issue 11) aligns the code about as closely as the
    # generator's own samples sit, far closer than the projector's, at nearly no fidelity cost
    lsap_o, projector = methods["lsap_o"], methods["projector"]
    samples = sample_sncd(G, anchors, 2000, seed=1).mean
    assert lsap_o["sncd"] < 0.7 * projector["sncd"], (lsap_o["sncd"], projector["sncd"])
    assert lsap_o["sncd"] < 1.1 * samples, (lsap_o["sncd"], samples)
    assert lsap_o["mse"] < 1.15 * projector["mse"], (lsap_o["mse"], projector["mse"])
    assert methods["encoder+lsap_o"]["sncd"] < projector["sncd"]
    # the shipped LSAP_E encoder's code is aligned too, and reconstructs the face
    assert methods["encoder"]["sncd"] < 0.7 * projector["sncd"]
    assert methods["encoder"]["sncd"] < 1.1 * samples
    assert methods["encoder"]["psnr"] > 15.0

    # edit grid: rows = (3 SeFa directions + 2 shipped InterFaceGAN files) x 4 codes, 5 factors
    edits = [e["name"] for e in summary["edits"]]
    assert edits == [
        "sefa/all/dir0",
        "sefa/all/dir1",
        "sefa/all/dir2",
        "interfacegan/smile",
        "interfacegan/glasses",
    ]
    assert len(summary["edit_grid"]["rows"]) == len(edits) * len(methods)
    from PIL import Image

    with Image.open(summary["edit_grid"]["file"]) as grid:
        pad, cell = 2, G.resolution
        assert grid.size == (pad + 5 * (cell + pad), pad + 20 * (cell + pad))
    for f in summary["figures"]:
        with Image.open(f) as im:
            assert im.size[0] > 100 and im.size[1] > 100


def test_invert_and_edit_notebook_off_faces(tmp_path, kernel):
    """Issue 15: the same notebook on the toy car domain (a 32 x 24 valid region in a 32 px
    generator) with its shipped LSAP_E encoder and a direction: LSAP off faces."""
    G = generator_from_config(plain(compose("invert", generator="toycars32").generator))
    assert G.crop is not None
    out = tmp_path / "out"
    params = (
        'GENERATOR = "toycars32"\n'
        'ENCODER_PATH = "asset:toycars32/encoder_lsap_e.pt"\n'
        'INTERFACEGAN_DIRECTIONS = {"spoiler": "asset:toycars32/directions/spoiler.pt"}\n'
        f"OVERRIDES = {fast_overrides(tmp_path / 'cache')!r}\n"
        f"OUTPUT_DIR = {str(out)!r}\n"
    )
    run_notebook("01_invert_and_edit.ipynb", params, tmp_path / "work", kernel)
    methods = json.loads((out / "invert_and_edit.json").read_text())["methods"]
    assert set(methods) == {"projector", "lsap_o", "encoder", "encoder+lsap_o"}
    lsap_o, projector, encoder = methods["lsap_o"], methods["projector"], methods["encoder"]
    # the SNCD term aligns the code at nearly no fidelity cost, and the encoder (fed the valid
    # region, as it was trained) reconstructs the car with an aligned code
    assert lsap_o["sncd"] < 0.8 * projector["sncd"], (lsap_o["sncd"], projector["sncd"])
    assert lsap_o["mse"] < 1.15 * projector["mse"], (lsap_o["mse"], projector["mse"])
    samples = sample_sncd(G, compute_anchors(G, ANCHOR_SAMPLES, 0), 2000, seed=1).mean
    assert encoder["sncd"] < 1.5 * samples, (encoder["sncd"], samples)
    assert encoder["psnr"] > 15.0, encoder["psnr"]


# -- 02: SNCD against editability ---------------------------------------------------------------


def eval_overrides(cache_dir: Path) -> list[str]:
    return [
        "metrics.lpips.resize=null",
        "editing.interfacegan.factors=[-3,0,3]",
        f"alignment.num_samples={ANCHOR_SAMPLES}",
        f"paths.cache_dir={cache_dir}",
    ]


def test_sncd_vs_editability_notebook(tmp_path, kernel):
    out = tmp_path / "out"
    params = (
        "NUM_IMAGES = 3\n"
        f"OVERRIDES = {fast_overrides(tmp_path / 'cache')!r}\n"
        f"EVAL_OVERRIDES = {eval_overrides(tmp_path / 'cache')!r}\n"
        f"OUTPUT_DIR = {str(out)!r}\n"
    )
    run_notebook("02_sncd_vs_editability.ipynb", params, tmp_path / "work", kernel)

    summary = json.loads((out / "sncd_vs_editability.json").read_text())
    per_image = summary["per_image"]
    assert set(per_image) == {"projector", "lsap_o"}
    G = toy_generator()
    anchors = compute_anchors(G, ANCHOR_SAMPLES, 0)
    # on toy32: the classifier-read edit success and the classifier-feature FID are plotted; LPIPS
    # is a labelled random-network stand-in; no face network, so no ID
    assert list(summary["axes"]) == ["edit_target_shift", "edit_lpips"]
    assert "stand-in" in summary["axes"]["edit_lpips"]
    assert any("NOT LPIPS" in n for n in summary["notes"])
    assert any("toy attribute classifier" in n for n in summary["notes"])
    assert [e["name"] for e in summary["edits"]] == [
        f"interfacegan/{a}" for a in ("smile", "glasses", "long_hair", "beard")
    ]
    for name, v in per_image.items():
        assert v["names"] == ["sample000", "sample001", "sample002"]
        for key in ("sncd", "edit_lpips", "edit_target_shift"):
            assert len(v[key]) == 3 and all(finite(x) for x in v[key]), (name, key)
        assert all(x > 0 for x in v["edit_lpips"]), "non-zero edits change the images"
        assert all(-1 <= x <= 1 for x in v["edit_target_shift"])
        assert sum(v["edit_target_shift"]) > 0, "the edits move their attribute the intended way"
        assert all(math.isnan(x) for x in v["edit_id"])
        # per-image SNCD is that of the codes written in the lsap-invert layout
        for n, s in zip(v["names"], v["sncd"], strict=True):
            w = load_codes(out / name / "codes" / f"{n}.pt", G.num_ws, G.w_dim)
            assert float(sncd(G, w, anchors)[0][0]) == pytest.approx(s, abs=1e-4)
    mean = {k: sum(v["sncd"]) / 3 for k, v in per_image.items()}
    assert mean["lsap_o"] < 0.7 * mean["projector"], mean
    for name, m in summary["per_method"].items():
        assert m["sncd"] == pytest.approx(mean[name], abs=1e-4)
        assert finite(m["fid"]) and finite(m["lpips"]) and m["id"] is None, name
        # the method's means over edits and factors agree with the per-image points plotted
        for key in ("lpips",):
            per = per_image[name][f"edit_{key}"]
            assert m[key] == pytest.approx(sum(per) / len(per), rel=1e-4), (name, key)
    assert Path(summary["figure"]).is_file()


@pytest.mark.slow
def test_sncd_vs_editability_reads_result_folders(tmp_path, kernel):
    """METHODS given as lsap-invert folders: no inversion, the same numbers as the first run."""
    first, second = tmp_path / "first", tmp_path / "second"
    base = (
        "NUM_IMAGES = 2\n"
        f"OVERRIDES = {fast_overrides(tmp_path / 'cache')!r}\n"
        f"EVAL_OVERRIDES = {eval_overrides(tmp_path / 'cache')!r}\n"
    )
    run_notebook(
        "02_sncd_vs_editability.ipynb", base + f"OUTPUT_DIR = {str(first)!r}\n", tmp_path, kernel
    )
    methods = {"a": str(first / "lsap_o"), "b": str(first / "projector")}
    params = base + f"METHODS = {methods!r}\nOUTPUT_DIR = {str(second)!r}\n"
    run_notebook("02_sncd_vs_editability.ipynb", params, tmp_path, kernel)
    one = json.loads((first / "sncd_vs_editability.json").read_text())["per_image"]
    two = json.loads((second / "sncd_vs_editability.json").read_text())["per_image"]
    assert not (second / "lsap_o").exists(), "no inversion when METHODS is given"
    for new, old in (("a", "lsap_o"), ("b", "projector")):
        for key in ("sncd", "edit_lpips", "edit_target_shift"):
            assert two[new][key] == pytest.approx(one[old][key], abs=1e-5)
