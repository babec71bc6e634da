"""Editing: SeFa, GANSpace and InterFaceGAN edits on the tiny generator, and their bad inputs."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch

from lsap.editing import (
    compute_pca,
    ganspace_edit,
    interfacegan_edit,
    load_pca,
    pca_of_samples,
    resolve_layers,
    sefa,
    sefa_edits,
)
from lsap.editing.ganspace import pca_cache_path
from lsap.io import LsapFileError
from lsap.nets import iter_w


def _codes(G, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = G.mapping(torch.randn(n * G.num_ws, G.z_dim, generator=g))
    return w.reshape(n, G.num_ws, G.w_dim)  # W+ codes with a different w per layer


def _stacked_modulation(G, convs):
    return torch.cat(
        [
            G.synthesis.convs[i].affine.weight.double() * G.synthesis.convs[i].affine.weight_gain
            for i in convs
        ]
    )


# -- SeFa ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("layers", ["all", "2:5", [0, 6]])
def test_sefa_is_orthonormal_ordered_and_matches_an_eigendecomposition(tiny_G, layers):
    k = 6
    directions, values = sefa(tiny_G, layers, k)
    assert directions.shape == (k, tiny_G.w_dim) and values.shape == (k,)
    torch.testing.assert_close(directions @ directions.T, torch.eye(k), atol=1e-5, rtol=0)
    assert (values[:-1] >= values[1:]).all() and values[-1] > 0
    # independent: eigenvectors of A^T A for the stacked weights of those convs (toRGB excluded)
    convs = resolve_layers(layers, tiny_G.num_ws - 1)
    A = _stacked_modulation(tiny_G, convs)
    evals, evecs = torch.linalg.eigh(A.T @ A)
    evals, evecs = evals.flip(0)[:k], evecs.flip(1)[:, :k].T
    torch.testing.assert_close(values.double(), evals.sqrt(), rtol=1e-5, atol=0)
    cos = (directions.double() * evecs).sum(1).abs()  # equal up to sign
    torch.testing.assert_close(cos, torch.ones(k, dtype=torch.float64), atol=1e-5, rtol=0)


def test_sefa_ignores_torgb_and_depends_on_the_chosen_convs(tiny_G):
    G = copy.deepcopy(tiny_G)
    with torch.no_grad():
        for t in G.synthesis.torgbs:
            t.affine.weight.mul_(torch.rand_like(t.affine.weight) * 3)
    d_all, v_all = sefa(tiny_G, "all", 4)
    d_g, v_g = sefa(G, "all", 4)
    assert torch.equal(d_all, d_g) and torch.equal(v_all, v_g)
    d_sub, _ = sefa(tiny_G, "0:2", 4)
    assert (d_sub @ d_all.T).abs().max() < 0.999  # other layers, other top direction


def test_sefa_channel_normalized_variant(tiny_G):
    A = _stacked_modulation(tiny_G, range(tiny_G.num_ws - 1))
    An = A / A.norm(dim=1, keepdim=True)
    _, s, _ = torch.linalg.svd(An)
    _, values = sefa(tiny_G, k=3, channel_normalized=True)
    torch.testing.assert_close(values.double(), s[:3], rtol=1e-5, atol=0)


def test_sefa_bad_arguments(tiny_G):
    with pytest.raises(ValueError, match=re.escape("k must be in 1..64")):
        sefa(tiny_G, "all", 65)
    with pytest.raises(ValueError, match="outside the 7 w\\+ layers"):
        sefa(tiny_G, [7])
    with pytest.raises(ValueError, match=re.escape("k must be in 1..16")):
        sefa(tiny_G, [6], 17)  # the last conv has 16 input channels


def test_sefa_edit_moves_codes_along_the_unit_direction(tiny_G):
    (edit,) = sefa_edits(tiny_G, [1], layers="2:4")
    d, _ = sefa(tiny_G, "2:4", 2)
    w = _codes(tiny_G)
    delta = edit(w, 2.5) - w
    assert edit.layers == (2, 3)
    torch.testing.assert_close(delta[:, 2], 2.5 * d[1].expand(3, -1))
    assert torch.equal(delta[:, [0, 1, 4, 5, 6, 7]], torch.zeros(3, 6, tiny_G.w_dim))


# -- InterFaceGAN ----------------------------------------------------------------------------------
def test_interfacegan_factor_zero_is_identity_and_factors_move_codes_linearly(tiny_G, tmp_path):
    g = torch.Generator().manual_seed(3)
    direction = torch.nn.functional.normalize(torch.randn(1, tiny_G.w_dim, generator=g), dim=1)
    torch.save(direction, tmp_path / "age.pt")  # e4e / GANInverter layout: [1, 512]
    edit = interfacegan_edit(tmp_path / "age.pt", tiny_G.num_ws, tiny_G.w_dim, layers="2:5")
    assert edit.name == "interfacegan/age" and edit.layers == (2, 3, 4)
    w = _codes(tiny_G)
    assert torch.equal(edit(w, 0.0), w)
    d1, d2 = edit(w, 1.5) - w, edit(w, 3.0) - w
    torch.testing.assert_close(d2, 2 * d1)
    torch.testing.assert_close(d1[:, 2:5], 1.5 * direction.expand(3, 3, -1))
    outside = [0, 1, 5, 6, 7]
    assert torch.equal(edit(w, 3.0)[:, outside], w[:, outside])  # bit-identical off the range
    # a W code [N, w_dim] is broadcast first
    torch.testing.assert_close(edit(w[:, 0], 1.0)[:, 3], w[:, 0] + direction[0])


@pytest.mark.parametrize(
    ("shape", "suffix"),
    [((64,), ".pt"), ((1, 64), ".npy"), ((8, 64), ".pt"), ((1, 8, 64), ".npy"), ((8, 64), "dict")],
)
def test_interfacegan_direction_files(tiny_G, tmp_path, shape, suffix):
    direction = torch.randn(shape)
    if suffix == ".npy":
        path = tmp_path / "d.npy"
        np.save(path, direction.numpy())
    else:
        path = tmp_path / "d.pt"
        torch.save({"boundary": direction} if suffix == "dict" else direction, path)
    edit = interfacegan_edit(path, tiny_G.num_ws, tiny_G.w_dim)
    rows = direction.reshape(-1, 64).expand(8, -1)  # a W direction is used on every layer
    w = _codes(tiny_G)
    torch.testing.assert_close(edit(w, 2.0) - w, 2.0 * rows.expand(3, -1, -1))


def test_interfacegan_bad_directions_are_clear_errors(tiny_G, tmp_path):
    torch.save(torch.randn(1, 512), tmp_path / "ffhq.pt")
    with pytest.raises(LsapFileError) as e:
        interfacegan_edit(tmp_path / "ffhq.pt", tiny_G.num_ws, tiny_G.w_dim)
    assert str(e.value) == (
        f"{tmp_path}/ffhq.pt: direction has shape [1, 512]; this generator needs [64], [1, 64] or [8, 64]"
    )
    torch.save(torch.randn(7, 64), tmp_path / "layers.pt")
    with pytest.raises(LsapFileError, match=r"layers.pt: direction has shape \[7, 64\]"):
        interfacegan_edit(tmp_path / "layers.pt", 8, 64)
    with pytest.raises(LsapFileError, match=r"missing.pt: no such file \(edit direction\)"):
        interfacegan_edit(tmp_path / "missing.pt", 8, 64)
    np.save(tmp_path / "ints.npy", np.arange(64))
    with pytest.raises(LsapFileError, match=re.escape("ints.npy: direction has dtype int64")):
        interfacegan_edit(tmp_path / "ints.npy", 8, 64)
    torch.save(torch.full((64,), float("nan")), tmp_path / "nan.pt")
    with pytest.raises(LsapFileError, match=re.escape("nan.pt: direction contains NaN")):
        interfacegan_edit(tmp_path / "nan.pt", 8, 64)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(LsapFileError, match=r"junk.pt: refused or unreadable \(UnpicklingError\)"):
        interfacegan_edit(tmp_path / "junk.pt", 8, 64)


# -- GANSpace --------------------------------------------------------------------------------------
def test_ganspace_pca_is_exact_and_streamed(tiny_G):
    pca = compute_pca(tiny_G, 6000, seed=1, batch_size=700)
    w = torch.cat(list(iter_w(tiny_G, 6000, seed=1)))
    mean, comp, std = pca_of_samples(w)
    torch.testing.assert_close(pca.mean, mean)
    torch.testing.assert_close(pca.std, std, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(pca.components[:10], comp[:10], atol=1e-4, rtol=0)
    torch.testing.assert_close(pca.components @ pca.components.T, torch.eye(64), atol=1e-5, rtol=0)
    assert (pca.std[:-1] >= pca.std[1:]).all()
    # std is the spread of the samples along each component (numpy's own PCA route as a check)
    proj = (w - w.mean(0)) @ pca.components[:3].T
    torch.testing.assert_close(proj.std(0), pca.std[:3], rtol=1e-4, atol=0)
    _, s, vt = np.linalg.svd((w - w.mean(0)).double().numpy(), full_matrices=False)
    torch.testing.assert_close(
        pca.std[:3].double(), torch.from_numpy(s[:3]) / (6000 - 1) ** 0.5, rtol=1e-4, atol=0
    )
    cos = (torch.from_numpy(vt[:3]).float() * pca.components[:3]).sum(1).abs()
    torch.testing.assert_close(cos, torch.ones(3), atol=1e-4, rtol=0)


def test_ganspace_pca_is_cached_by_generator_sha(tiny_G, other_G, tmp_path, monkeypatch):
    pca = compute_pca(tiny_G, 3000, seed=0, cache_dir=tmp_path)
    path = pca_cache_path(tmp_path, tiny_G.sha256, 3000, 0)
    assert path.is_file() and tiny_G.sha256[:16] in path.name

    def boom(*a, **k):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr("lsap.editing.ganspace.iter_w", boom)
    again = compute_pca(tiny_G, 3000, seed=0, cache_dir=tmp_path, num_components=5)
    assert torch.equal(again.components, pca.components[:5]) and torch.equal(again.std, pca.std[:5])
    with pytest.raises(AssertionError, match="recomputed"):  # another generator: another cache file
        compute_pca(other_G, 3000, seed=0, cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="recomputed"):  # another seed too
        compute_pca(tiny_G, 3000, seed=1, cache_dir=tmp_path)


def test_ganspace_strength_zero_returns_the_same_image(tiny_G):
    pca = compute_pca(tiny_G, 3000, seed=0)
    edit = ganspace_edit(pca, 1, tiny_G.num_ws, layers="2:6")
    w = _codes(tiny_G, 2)
    with torch.no_grad():
        assert torch.equal(tiny_G.synthesis(edit(w, 0.0)), tiny_G.synthesis(w))
        moved = edit(w, 2.0)
        assert not torch.equal(tiny_G.synthesis(moved), tiny_G.synthesis(w))
    # strength is in standard deviations along the component, on the chosen layers only
    shift = (moved - w) @ pca.components[1]
    torch.testing.assert_close(shift[:, 2:6], torch.full((2, 4), 2.0 * float(pca.std[1])))
    assert torch.equal(moved[:, [0, 1, 6, 7]], w[:, [0, 1, 6, 7]])


def test_ganspace_absolute_mode_and_released_pca_files(tiny_G, tmp_path):
    pca = compute_pca(tiny_G, 3000, seed=0)
    # a GANSpace / e4e file: mean [1, D], comp [K, 1, D], std [K]
    torch.save(
        {"mean": pca.mean[None], "comp": pca.components[:10, None], "std": pca.std[:10]},
        tmp_path / "ffhq_pca.pt",
    )
    loaded = load_pca(tmp_path / "ffhq_pca.pt")
    assert len(loaded) == 10 and torch.equal(loaded.components, pca.components[:10])
    edit = ganspace_edit(loaded, 3, tiny_G.num_ws, layers="7:8", mode="absolute")
    w = _codes(tiny_G)
    out = edit(w, 1.5)
    coord = ((out[:, 7] - pca.mean) @ pca.components[3]) / pca.std[3]
    torch.testing.assert_close(coord, torch.full((3,), 1.5), atol=1e-4, rtol=0)
    assert torch.equal(out[:, :7], w[:, :7])
    with pytest.raises(ValueError, match="component 10 is outside the PCA's 10 components"):
        ganspace_edit(loaded, 10, tiny_G.num_ws)
    torch.save(
        {"mean": pca.mean, "comp": pca.components[:4], "std": pca.std[:3]}, tmp_path / "bad.pt"
    )
    with pytest.raises(LsapFileError, match=re.escape("bad.pt: shapes do not fit")):
        load_pca(tmp_path / "bad.pt")
    with pytest.raises(LsapFileError, match=r"nope.pt: no such file \(GANSpace PCA\)"):
        load_pca(tmp_path / "nope.pt")


def test_layer_specs():
    assert resolve_layers("7:8", 18) == (7,)
    assert resolve_layers(":4", 8) == (0, 1, 2, 3)
    assert resolve_layers("all", 4) == resolve_layers(None, 4) == (0, 1, 2, 3)
    assert resolve_layers([5, -1, 5], 8) == (5, 7)
    assert resolve_layers(3, 8) == (3,)
    for bad, msg in [
        ("3", "start:end"),
        ("a:b", "start:end"),
        ([8], "outside"),
        ("5:5", "no layer"),
    ]:
        with pytest.raises(ValueError, match=msg):
            resolve_layers(bad, 8)


def test_edits_from_the_config_group(tiny_G, tmp_path):
    from hydra import compose, initialize_config_dir

    from lsap.cli._common import config_dir
    from lsap.editing import build_edits

    torch.save(torch.randn(64), tmp_path / "age.pt")
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "edit",
            [
                "codes=x",
                "paths.output_dir=.",
                "editing=[sefa,ganspace,interfacegan]",
                f"paths.cache_dir={tmp_path}",
                "editing.ganspace.num_samples=2000",
                f"+editing.interfacegan.directions.age={tmp_path}/age.pt",
                "+editing.ganspace.edits.eyes={component: 5, layers: '7:8', factors: [3.0]}",
            ],
        )
    specs = build_edits(cfg.editing, tiny_G)
    names = [s.name for s in specs]
    assert names == [
        "sefa/all/dir0", "sefa/all/dir1", "sefa/all/dir2",
        "ganspace/pc0", "ganspace/pc1", "ganspace/eyes",
        "interfacegan/age",
    ]  # fmt: skip
    eyes = specs[5]
    assert eyes.factors == (3.0,) and eyes.edit.layers == (7,) and eyes.edit.info["component"] == 5
    assert specs[0].factors == (-3.0, -1.5, 0.0, 1.5, 3.0) and specs[0].edit.layers == tuple(
        range(7)
    )
    assert list((tmp_path / "ganspace").glob(f"ganspace-{tiny_G.sha256[:16]}-n2000-seed0.pt"))
    with pytest.raises(ValueError, match="unknown editing method 'stylespace'"):
        build_edits({"stylespace": {"factors": [1.0]}}, tiny_G)
    with pytest.raises(
        ValueError, match=re.escape("editing.sefa.factors must be a list of numbers")
    ):
        build_edits({"sefa": {"factors": "1,2"}}, tiny_G)
