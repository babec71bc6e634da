"""StyleGAN3 (configs T and R): parity with NVlabs' own code, safe loading, equivariance."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from stylegan3_format import write_stylegan3_pickle

from lsap import load_generator, save_generator
from lsap.io import CheckpointError, init_generator
from lsap.nets.stylegan3 import StyleGAN3Config, StyleGAN3Generator, make_transform

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_T = StyleGAN3Config(
    resolution=32, z_dim=32, w_dim=32, channel_base=256, channel_max=16, num_layers=6
)
TINY_R = StyleGAN3Config.from_dict({**TINY_T.to_dict(), "config": "R", "channel_base": 512,
                                    "channel_max": 32, "conv_kernel": 1,
                                    "use_radial_filters": True})  # fmt: skip


def _fixture(name):
    gold = torch.load(FIXTURES / f"stylegan3_{name}_tiny_golden.pt", weights_only=True)
    return load_generator(FIXTURES / f"stylegan3_{name}_tiny.pkl"), gold


# -- parity with NVlabs/stylegan3 (tests/fixtures/README.md) --------------------------------------


@pytest.mark.parametrize("name", ["t", "r"])
def test_nvlabs_stylegan3_pickle_reproduces_reference_outputs(name):
    G, gold = _fixture(name)
    assert isinstance(G, StyleGAN3Generator) and G.source_format == "nvlabs-stylegan3"
    assert (G.resolution, G.num_ws, G.w_dim, G.config.name) == (32, 8, 32, name.upper())
    assert G.num_ws == int(gold["num_ws"])
    assert torch.equal(G.w_avg, gold["w_avg"])
    assert torch.equal(G.mapping(gold["z"]), gold["w"])
    assert torch.equal(G.mapping(gold["z"], truncation_psi=0.7), gold["w_trunc"])
    for ours, ref in zip(G.style_space(gold["w_plus"]), gold["styles"], strict=True):
        assert torch.equal(ours, ref)
    cases = [
        (G.synthesis(gold["w_plus"], noise_mode="const"), gold["images"]),
        (G.synthesis(gold["w"]), gold["images_w"]),
        (G.synthesis(gold["w_plus"], transform=gold["transform"]), gold["images_transform"]),
    ]
    for ours, ref in cases:
        err = (ours - ref).abs().max()
        assert err < 1e-3 and err < 0.01 * ref.std(), float(err)
    # the three references differ from each other: the comparisons can fail
    assert (cases[0][1] - cases[2][1]).abs().max() > 0.01


@pytest.mark.parametrize("name", ["t", "r"])
def test_designed_filters_and_geometry_match_the_file(name):
    """A generator built from the config alone (random init) has NVlabs' filters and paddings."""
    G, _ = _fixture(name)
    fresh = StyleGAN3Generator(G.config)
    ref = {k: v for k, v in G.state_dict().items() if k.endswith("_filter")}
    radial = [k for k, v in ref.items() if v.ndim == 2]
    # 6 layers with up and down filters (toRGB has none); R's 4 non-critical layers go radial
    assert len(ref) == 12 and len(radial) == (4 if name == "r" else 0)
    for k, v in ref.items():
        torch.testing.assert_close(fresh.state_dict()[k], v, atol=1e-7, rtol=0)
    assert fresh.synthesis.layer_names == G.synthesis.layer_names


# -- input transform: translation / rotation equivariance ----------------------------------------


@functools.cache
def _tiny(config, seed=0):
    """Tiny random StyleGAN3 (shared between tests: do not mutate)."""
    return init_generator(config, seed=seed)


def test_translation_moves_the_image():
    G = _tiny(TINY_T)
    w = G.mapping(torch.randn(2, G.z_dim))
    base = G.synthesis(w)
    shift = 4  # pixels, to the right and down
    moved = G.synthesis(w, transform=make_transform((shift / 32, shift / 32), 0.0))
    inner = (slice(None), slice(None), slice(shift + 4, -4), slice(shift + 4, -4))
    shifted_ref = base[..., 4 : -shift - 4, 4 : -shift - 4]
    err = (moved[inner] - shifted_ref).abs().mean() / base.abs().mean()
    unmoved = (base[inner] - shifted_ref).abs().mean() / base.abs().mean()
    assert err < 0.1 * unmoved, (float(err), float(unmoved))


def test_config_r_rotation_rotates_the_image():
    G = _tiny(TINY_R)
    w = G.mapping(torch.randn(2, G.z_dim))
    base = G.synthesis(w)
    rotated = G.synthesis(w, transform=make_transform((0.0, 0.0), 90.0))
    # counter-clockwise on screen = torch.rot90 over (H, W) with k=1
    ref = torch.rot90(base, 1, dims=(2, 3))
    err = (rotated - ref).abs().mean() / base.abs().mean()
    wrong = (rotated - torch.rot90(base, -1, dims=(2, 3))).abs().mean() / base.abs().mean()
    assert err < 0.05 and wrong > 0.3, (float(err), float(wrong))
    # per-sample transforms [N, 3, 3] equal the shared ones
    both = torch.stack([make_transform((0, 0), 90.0), make_transform((0, 0), 0.0)])
    per = G.synthesis(w, transform=both)
    torch.testing.assert_close(per[0], rotated[0])
    torch.testing.assert_close(per[1], base[1])


# -- API -----------------------------------------------------------------------------------------


def test_api_shapes_and_noise_modes():
    G = _tiny(TINY_T)
    w_plus = G.w_avg.expand(3, G.num_ws, -1) + 0.1 * torch.randn(3, G.num_ws, G.w_dim)
    img = G.synthesis(w_plus, noise_mode="random")
    assert img.shape == (3, 3, 32, 32) and torch.isfinite(img).all()
    torch.testing.assert_close(G.synthesis(w_plus, noise_mode="none"), img)  # no noise inputs
    styles = G.style_space(w_plus)
    assert [s.shape[1] for s in styles] == [4, 16, 16, 16, 16, 13, 8, 8]
    assert G.synthesis.noise_shapes() == []
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(w_plus, noise_mode="bogus")
    with pytest.raises(ValueError, match="w_plus"):
        G.synthesis(w_plus[:, :3])
    # a code's image does not depend on the rest of its batch
    torch.testing.assert_close(G.synthesis(w_plus[:1]), img[:1], atol=1e-6, rtol=1e-5)


# -- files: lsap round trip, refusals --------------------------------------------------------------


def test_lsap_format_round_trip(tmp_path):
    G, gold = _fixture("r")
    path = save_generator(G, tmp_path / "g.pt")
    H = load_generator(path)
    assert isinstance(H, StyleGAN3Generator) and H.config == G.config
    assert torch.equal(H.synthesis(gold["w_plus"]), G.synthesis(gold["w_plus"]))


def test_written_stylegan3_pickle_loads_to_the_same_generator(tmp_path):
    G = _tiny(TINY_R, seed=3)
    H = load_generator(write_stylegan3_pickle(G, tmp_path / "g.pkl"))
    w = torch.randn(2, G.num_ws, G.w_dim)
    assert H.config == G.config
    assert torch.equal(H.synthesis(w), G.synthesis(w))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_stylegan3_pickle_smuggling_a_callable_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = write_stylegan3_pickle(_tiny(TINY_T), tmp_path / "evil.pkl", smuggle=_Evil(marker))
    with pytest.raises(CheckpointError, match=r"evil\.pkl: .*refused global '(posix|os)\.system'"):
        load_generator(path)
    assert not marker.exists()


def test_numpy_arrays_are_data_only(tmp_path):
    G = _tiny(TINY_T)
    obj = np.array([1, "a"], dtype=object)  # object arrays would unpickle arbitrary objects
    path = write_stylegan3_pickle(G, tmp_path / "obj.pkl", smuggle=obj)
    with pytest.raises(CheckpointError, match="refused numpy dtype"):
        load_generator(path)
    # the ndarray global is a marker: calling it, or reconstructing another class, is refused
    for body in (b"cnumpy\nndarray\nK\x02\x85R.", b"cnumpy._core.multiarray\n_reconstruct\n"
                 b"ccollections\nOrderedDict\nK\x00\x85C\x01b\x87R."):  # fmt: skip
        bad = tmp_path / "bad.pkl"
        bad.write_bytes(b"\x80\x02" + body)
        with pytest.raises(CheckpointError, match=r"bad\.pkl"):
            load_generator(bad)


# -- config entries ---------------------------------------------------------------------------------


def test_release_config_entries_describe_the_published_networks():
    from omegaconf import OmegaConf

    from lsap.cli._common import config_dir

    files = sorted(Path(config_dir(), "generator").glob("stylegan3_*.yaml"))
    assert len(files) == 10
    for f in files:
        cfg = OmegaConf.to_container(OmegaConf.load(f))  # unresolved: paths come from config
        arch = StyleGAN3Config.from_dict(cfg["arch"])
        name = Path(cfg["path"]).name  # stylegan3-<t|r>-<data>-<R>x<R>.pkl
        assert cfg["path"].startswith("${paths.checkpoint_dir}/")
        assert name.startswith(f"stylegan3-{arch.name.lower()}-"), f
        assert name.endswith(f"-{arch.resolution}x{arch.resolution}.pkl"), f
        assert arch.num_ws == 16 and (arch.conv_kernel == 1) == (arch.name == "R")


def test_config_check_names_the_mismatch():
    path = FIXTURES / "stylegan3_t_tiny.pkl"
    G = load_generator(path, expected={"family": "stylegan3", "config": "T", "resolution": 32})
    assert G.config.name == "T"
    with pytest.raises(
        CheckpointError, match="StyleGAN3-T generator, the config expects StyleGAN3-R"
    ):
        load_generator(path, expected={"family": "stylegan3", "config": "R"})
    with pytest.raises(CheckpointError, match="resolution is 32 in the file, the config says 1024"):
        load_generator(path, expected={"family": "stylegan3", "config": "T", "resolution": 1024})
    with pytest.raises(
        CheckpointError, match="holds a StyleGAN3 generator, the config expects StyleGAN2"
    ):
        load_generator(path, expected={"resolution": 32})
