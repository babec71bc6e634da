"""Checkpoints users own load to the same images as the networks they came from."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import warnings

import pytest
import torch
from conftest import FIXTURES
from nvlabs_format import fake_nvlabs_modules, write_nvlabs_pickle

from lsap import load_generator, save_generator
from lsap.io import CheckpointError, init_generator, layouts, save_rosinality
from lsap.io.checkpoints import (
    check_config,
    generator_from_config,
    read_generator_state,
    state_from_checkpoint,
)
from lsap.nets import Generator, GeneratorConfig

ATOL = 2e-5


def _images(G, w_plus, mode="const"):
    return G.synthesis(w_plus, noise_mode=mode)


# -- golden outputs of the reference implementations -------------------------------------------


def test_rosinality_file_reproduces_reference_outputs():
    gold = torch.load(FIXTURES / "rosinality_tiny_golden.pt", weights_only=True)
    G = load_generator(FIXTURES / "rosinality_tiny.pt")
    assert (G.resolution, G.num_ws, G.w_dim, G.config.n_mlp) == (32, 8, 32, 3)
    assert [G.config.channels(r) for r in (4, 8, 16, 32)] == [32, 32, 16, 8]
    assert G.source_format == "rosinality"
    torch.testing.assert_close(G.w_avg, gold["latent_avg"])
    torch.testing.assert_close(G.mapping(gold["z"]), gold["w"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        _images(G, gold["w_plus"]), gold["images_const"], atol=ATOL, rtol=1e-4
    )
    torch.testing.assert_close(_images(G, gold["w"]), gold["images_w"], atol=ATOL, rtol=1e-4)
    # the style space exactly as the LSAP reference (GANInverter get_style_space) defines it
    for ours, ref in zip(G.style_space(gold["w_plus"]), gold["styles"], strict=True):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    for ours, ref in zip(G.torgb_styles(gold["w_plus"]), gold["torgb_styles"], strict=True):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_nvlabs_pickle_reproduces_reference_outputs():
    gold = torch.load(FIXTURES / "nvlabs_tiny_golden.pt", weights_only=True)
    G = load_generator(FIXTURES / "nvlabs_tiny.pkl")
    assert G.config.conv_clamp == 0.5 and G.source_format == "nvlabs"
    torch.testing.assert_close(G.w_avg, gold["w_avg"])
    torch.testing.assert_close(G.mapping(gold["z"]), gold["w"], atol=1e-5, rtol=1e-5)
    # conv_clamp=0.5 clamps 5-44 % of activations here: this image checks clamping too
    torch.testing.assert_close(
        _images(G, gold["w_plus"]), gold["images_const"], atol=ATOL, rtol=1e-4
    )
    torch.testing.assert_close(
        _images(G, gold["w_plus"], "none"), gold["images_none"], atol=ATOL, rtol=1e-4
    )
    for ours, ref in zip(G.style_space(gold["w_plus"]), gold["styles"], strict=True):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    for ours, ref in zip(G.torgb_styles(gold["w_plus"]), gold["torgb_styles"], strict=True):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_loaded_generator_reports_file_sha256():
    path = FIXTURES / "rosinality_tiny.pt"
    G = load_generator(path)
    assert G.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not any(p.requires_grad for p in G.parameters()) and not G.training


# -- round trips through every format ----------------------------------------------------------


@pytest.fixture(scope="module")
def w_plus(tiny_G):
    return torch.randn(3, tiny_G.num_ws, tiny_G.w_dim, generator=torch.Generator().manual_seed(5))


def _assert_same_generator(G, ref, w_plus):
    assert G.config == ref.config
    torch.testing.assert_close(G.synthesis(w_plus), ref.synthesis(w_plus), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(G.w_avg, ref.w_avg)


def test_lsap_format_round_trip(tiny_G, w_plus, tmp_path):
    path = save_generator(tiny_G, tmp_path / "g.pt", provenance={"note": "test"})
    obj = torch.load(path, weights_only=True)
    assert obj["format"] == "lsap.generator" and obj["provenance"]["note"] == "test"
    G = load_generator(path)
    _assert_same_generator(G, tiny_G, w_plus)
    for k, v in tiny_G.state_dict().items():
        assert torch.equal(G.state_dict()[k], v), k


def _rosinality_g_ema(G):
    n_res = len(G.synthesis.torgbs)
    sd = layouts.unconvert(G.state_dict(), layouts.rosinality_table(G.config.n_mlp, n_res))
    sd.update(layouts.rosinality_derived(n_res))
    return sd


@pytest.mark.parametrize("wrapper", ["release", "training", "psp", "ganinverter", "ddp_bare"])
def test_rosinality_family_round_trip(tiny_G, w_plus, tmp_path, wrapper):
    g_ema, avg = _rosinality_g_ema(tiny_G), tiny_G.w_avg.clone()
    if wrapper == "release":
        save_rosinality(tiny_G, tmp_path / "g.pt")
    else:
        obj = {
            # rosinality training checkpoint: args is an argparse.Namespace (allow-listed, nothing else)
            "training": {
                "g": g_ema,
                "d": {},
                "g_ema": g_ema,
                "g_optim": {},
                "d_optim": {},
                "args": argparse.Namespace(size=32, channel_multiplier=2),
                "latent_avg": avg,
            },
            # pSp / e4e release: decoder inside state_dict, latent_avg repeated per layer
            "psp": {
                "state_dict": {
                    "encoder.body.0.weight": torch.zeros(2),
                    **{f"decoder.{k}": v for k, v in g_ema.items()},
                },
                "latent_avg": avg.repeat(tiny_G.num_ws, 1),
                "opts": {"encoder_type": "Encoder4Editing"},
            },
            # GANInverter / LSAP toolbox: latent_avg inside the encoder dict
            "ganinverter": {
                "encoder": {"encoder.body.0.weight": torch.zeros(2), "latent_avg": avg[None]},
                "decoder": g_ema,
                "opts": {},
                "global_step": 10,
                "best_val_loss": 0.1,
            },
            "ddp_bare": {**{f"module.{k}": v for k, v in g_ema.items()}},
        }[wrapper]
        torch.save(obj, tmp_path / "g.pt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        G = load_generator(tmp_path / "g.pt")
    if wrapper == "ddp_bare":  # no latent_avg in the file: estimated, with a warning
        assert any("no latent_avg" in str(w.message) for w in caught)
        assert torch.allclose(G.w_avg, tiny_G.w_avg, atol=0.05)
        G.mapping.w_avg.copy_(tiny_G.w_avg)
    _assert_same_generator(G, tiny_G, w_plus)


@pytest.mark.parametrize("clamp", [None, 0.4])
def test_nvlabs_format_round_trip(w_plus, tmp_path, clamp):
    cfg = GeneratorConfig(
        resolution=32,
        z_dim=64,
        w_dim=64,
        n_mlp=3,
        channel_base=512,
        channel_max=64,
        conv_clamp=clamp,
    )
    ref = init_generator(cfg, seed=3)
    G = load_generator(write_nvlabs_pickle(ref, tmp_path / "net.pkl"))
    assert G.config.conv_clamp == clamp
    _assert_same_generator(G, ref, w_plus)


# -- nothing from a pickle is executed ---------------------------------------------------------


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": _Evil(marker)}, f)
    with pytest.raises(
        CheckpointError,
        match=r"evil\.pkl: unsafe or unsupported pickle: refused global '(posix|os)\.system'",
    ):
        load_generator(path)
    assert not marker.exists()


def test_nvlabs_storage_bytes_are_loaded_weights_only(tiny_G, tmp_path):
    """_load_from_bytes payloads would run an unrestricted torch.load in the reference code."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker), protocol=2)  # a legacy torch.save stream is a pickle too

    class EvilStorage:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (payload,))

    path = tmp_path / "evil_storage.pkl"
    with fake_nvlabs_modules(), open(path, "wb") as f:
        pickle.dump({"G_ema": EvilStorage()}, f, protocol=4)
    with pytest.raises(
        CheckpointError,
        match=r"evil_storage.pkl: .*tensor storage refused: .*GLOBAL (posix|os)\.system",
    ):
        load_generator(path)
    assert not marker.exists()


def test_torch_file_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused by the weights-only loader"):
        load_generator(path)
    assert not marker.exists()


def test_stylegan3_and_conditional_pickles_are_refused(tiny_G, tmp_path):
    p = write_nvlabs_pickle(
        tiny_G, tmp_path / "sg3.pkl", class_name="training.networks_stylegan3.Generator"
    )
    # A StyleGAN2 layout under the StyleGAN3 class name: read as StyleGAN3, refused for its kwargs
    with pytest.raises(
        CheckpointError, match=r"G_ema \(StyleGAN3\): unknown StyleGAN3 constructor"
    ):
        load_generator(p)


# -- bad input gets a clear error ---------------------------------------------------------------


def test_config_mismatch_names_key_and_both_shapes():
    wider = dict(resolution=32, z_dim=32, w_dim=32, n_mlp=3, channel_base=512, channel_max=64)
    with pytest.raises(CheckpointError) as err:
        load_generator(FIXTURES / "rosinality_tiny.pt", expected=wider)
    msg = str(err.value)
    assert "rosinality_tiny.pt: key 'g_ema.input.input' has shape [1, 32, 4, 4] in the file" in msg
    assert "expects [1, 64, 4, 4]" in msg
    bigger = dict(resolution=64, z_dim=32, w_dim=32, n_mlp=3, channel_base=256, channel_max=32)
    with pytest.raises(
        CheckpointError,
        match=r"key 'g_ema\.convs\.6\.conv\.weight' missing in the file \(resolution=32",
    ):
        load_generator(FIXTURES / "rosinality_tiny.pt", expected=bigger)
    with pytest.raises(
        CheckpointError, match=r"key 'G_ema\.mapping\.fc2\.weight' in the file .* has no place"
    ):
        load_generator(
            FIXTURES / "nvlabs_tiny.pkl", expected={**bigger, "resolution": 32, "n_mlp": 2}
        )


def test_unreadable_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.pt: no such file"):
        load_generator(tmp_path / "missing.pt")
    for seed in range(20):  # random bytes fail in many different places inside torch.load
        junk = torch.randint(0, 256, (256,), generator=torch.Generator().manual_seed(seed))
        (tmp_path / "junk.pt").write_bytes(bytes(junk.to(torch.uint8).tolist()))
        with pytest.raises(CheckpointError, match=r"junk\.pt: "):
            load_generator(tmp_path / "junk.pt")
    torch.save({"model": {"fc.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(
        CheckpointError, match=r"other.pt: no generator found \(top-level keys: model\)"
    ):
        load_generator(tmp_path / "other.pt")
    g = _rosinality_g_ema(
        init_generator(
            dict(resolution=8, z_dim=8, w_dim=8, n_mlp=1, channel_base=64, channel_max=8)
        )
    )
    del g["convs.1.activate.bias"]
    torch.save({"g_ema": g}, tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match=r"cut.pt: missing key 'convs.1.activate.bias'"):
        load_generator(tmp_path / "cut.pt")
    (tmp_path / "trunc.pkl").write_bytes((FIXTURES / "nvlabs_tiny.pkl").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"trunc\.pkl: "):
        load_generator(tmp_path / "trunc.pkl")


# -- full-size layouts (shapes only) ------------------------------------------------------------

FFHQ = {"resolution": 1024, "z_dim": 512, "w_dim": 512, "n_mlp": 8, "channel_multiplier": 2}


def _meta_state(name):
    shapes = json.loads((FIXTURES / name).read_text())
    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


def _assert_config_f(gs):
    assert (
        gs.config.resolution == 1024 and gs.config.channel_multiplier == 2 and gs.config.n_mlp == 8
    )
    assert gs.config.num_ws == 18
    with torch.device("meta"):
        ours = Generator(gs.config).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in gs.state.items()
    }
    check_config(gs, FFHQ, "ffhq")
    with pytest.raises(CheckpointError, match="missing in the file"):
        check_config(gs, {**FFHQ, "resolution": 2048}, "ffhq")


def test_full_size_rosinality_layout():
    sd = _meta_state("layout_rosinality_1024.json")
    gs = state_from_checkpoint({"g_ema": sd, "latent_avg": torch.empty(512, device="meta")})
    _assert_config_f(gs)


def test_full_size_nvlabs_layout():
    sd = _meta_state("layout_nvlabs_1024.json")
    state, entries = layouts.convert(sd, layouts.nvlabs_table(8, 9), layouts.nvlabs_derived(9))
    from lsap.io.checkpoints import GeneratorState

    _assert_config_f(
        GeneratorState(layouts.infer_config(state), state, "nvlabs", entries, "G_ema.")
    )


def test_generator_from_config(tmp_path, tiny_G, w_plus):
    arch = tiny_G.config.to_dict()
    a = generator_from_config({"path": None, "seed": 0, "arch": arch})
    _assert_same_generator(a, tiny_G, w_plus)
    assert a.sha256 == tiny_G.sha256
    b = generator_from_config({"path": None, "seed": 1, "arch": arch})
    assert b.sha256 != a.sha256
    path = save_generator(tiny_G, tmp_path / "g.pt")
    c = generator_from_config({"path": str(path), "arch": arch})
    _assert_same_generator(c, tiny_G, w_plus)
    assert read_generator_state(path).source_format == "lsap"
