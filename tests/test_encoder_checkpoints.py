"""lsap.load_encoder on the files users own: pSp/e4e releases, GANInverter (LSAP) checkpoints,
lsap's own files; random weights saved under the reference key names give identical codes."""

from __future__ import annotations

import argparse

import pytest
import torch

import lsap
from lsap.core.errors import CheckpointError
from lsap.io import load_generator, save_rosinality
from lsap.io.encoders import _infer_config, init_backbone, read_encoder_state, save_encoder
from lsap.nets.encoder import Encoder4Editing, GradualStyleEncoder, build_encoder

pytestmark = pytest.mark.usefixtures("one_thread")

STAGES = [[16, 16, 1], [16, 24, 1], [24, 32, 2], [32, 48, 1]]


class NotAllowed:
    encoder_type = "Encoder4Editing"


def _encoder(arch="e4e", seed=0):
    enc = build_encoder(arch, num_ws=8, w_dim=64, input_size=32, stages=STAGES)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in enc.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.2 + (1.0 if t.ndim == 1 else 0.0))
    return enc.eval()


def _images(n=2):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _reference_encoder_keys(enc):
    """The encoder's weights as the releases name them ('encoder.' + ours), latent_avg apart."""
    sd = enc.state_dict()
    return {f"encoder.{k}": v.clone() for k, v in sd.items() if k != "latent_avg"}, sd["latent_avg"]


@pytest.fixture(scope="module")
def g_ema(tiny_G, tmp_path_factory):
    path = save_rosinality(tiny_G, tmp_path_factory.mktemp("g") / "g.pt")
    return torch.load(path, weights_only=True)["g_ema"]


def test_psp_e4e_release_layout(tmp_path, g_ema, tiny_G):
    enc = _encoder("e4e")
    weights, latent_avg = _reference_encoder_keys(enc)
    state = {**weights, **{f"decoder.{k}": v for k, v in g_ema.items()}}
    opts = {"encoder_type": "Encoder4Editing", "stylegan_size": 32, "start_from_latent_avg": True}
    torch.save({"state_dict": state, "latent_avg": latent_avg, "opts": opts}, tmp_path / "e4e.pt")
    loaded = lsap.load_encoder(tmp_path / "e4e.pt")
    assert isinstance(loaded, Encoder4Editing) and loaded.source_format == "psp/e4e"
    assert loaded.progressive_stage == 7 and not loaded.training
    torch.testing.assert_close(loaded(_images()), enc(_images()), rtol=0, atol=0)
    # the same file holds the generator
    assert load_generator(tmp_path / "e4e.pt").num_ws == loaded.num_ws == tiny_G.num_ws


def test_psp_release_with_namespace_opts_and_w_dim_latent_avg(tmp_path, g_ema):
    enc = _encoder("psp")
    weights, latent_avg = _reference_encoder_keys(enc)
    state = {**weights, **{f"decoder.{k}": v for k, v in g_ema.items()}}
    opts = argparse.Namespace(encoder_type="GradualStyleEncoder", output_size=32)
    with torch.no_grad():
        enc.latent_avg.copy_(latent_avg[0].expand(8, 64))  # a [512]-style latent_avg
    torch.save(
        {"state_dict": state, "latent_avg": latent_avg[0], "opts": opts}, tmp_path / "psp.pt"
    )
    loaded = lsap.load_encoder(tmp_path / "psp.pt")
    assert isinstance(loaded, GradualStyleEncoder)
    torch.testing.assert_close(loaded(_images()), enc(_images()), rtol=0, atol=0)


def test_ganinverter_layout_with_ddp_prefixes(tmp_path, g_ema):
    enc = _encoder("e4e", seed=2)
    weights, latent_avg = _reference_encoder_keys(enc)
    weights = {k.replace("encoder.", "encoder.module.", 1): v for k, v in weights.items()}
    obj = {
        "encoder": {**weights, "latent_avg": latent_avg[:1]},  # [1, 512]
        "decoder": g_ema,
        "opts": {
            "encoder_type": "Encoder4Editing",
            "resolution": 32,
            "start_from_latent_avg": True,
        },
        "global_step": 123,
        "best_val_loss": 0.5,
    }
    with torch.no_grad():
        enc.latent_avg.copy_(latent_avg[:1].expand(8, 64))
    torch.save(obj, tmp_path / "lsap_official.pt")
    loaded = lsap.load_encoder(tmp_path / "lsap_official.pt")
    assert loaded.source_format == "ganinverter"
    torch.testing.assert_close(loaded(_images()), enc(_images()), rtol=0, atol=0)
    # no opts: GANInverter's default encoder type (Encoder4Editing)
    del obj["opts"]
    torch.save(obj, tmp_path / "no_opts.pt")
    assert isinstance(lsap.load_encoder(tmp_path / "no_opts.pt"), Encoder4Editing)


def test_lsap_format_round_trip(tmp_path, tiny_G):
    enc = _encoder("psp", seed=4)
    save_encoder(enc, tmp_path / "enc.pt", generator_sha256=tiny_G.sha256)
    loaded = lsap.load_encoder(tmp_path / "enc.pt", "cpu")
    assert loaded.config() == enc.config() and loaded.generator_sha256 == tiny_G.sha256
    torch.testing.assert_close(loaded(_images()), enc(_images()), rtol=0, atol=0)


def test_a_mid_schedule_encoder_loads_at_its_saved_progressive_stage(tmp_path, tiny_G):
    """e4e trains its deltas progressively: a checkpoint at stage 2 has untrained heads for w+
    indices 3..7, which must stay off when it is loaded (lsap-train's .ckpt and encoder.pt)."""
    from lsap.io.encoders import LIGHTNING_KEY

    enc = _encoder("e4e", seed=6)
    enc.set_progressive_stage(2)
    want = enc(_images())
    save_encoder(enc, tmp_path / "enc.pt", generator_sha256=tiny_G.sha256)
    ckpt = {
        LIGHTNING_KEY: {
            "format": "lsap.encoder",
            "config": enc.config(),
            "generator_sha256": tiny_G.sha256,
            "progressive_stage": 2,
        },
        "state_dict": {f"encoder.{k}": v for k, v in enc.state_dict().items()},
    }
    torch.save(ckpt, tmp_path / "step.ckpt")
    for name in ("enc.pt", "step.ckpt"):
        loaded = lsap.load_encoder(tmp_path / name)
        assert loaded.progressive_stage == 2, name
        torch.testing.assert_close(loaded(_images()), want, rtol=0, atol=0)
    enc.set_progressive_stage(7)  # the untrained heads change the codes: the test can tell
    assert (enc(_images()) - want).abs().max() > 1e-3
    save_encoder(enc, tmp_path / "full.pt")
    assert lsap.load_encoder(tmp_path / "full.pt").progressive_stage == 7


def test_fp16_encoder_file_is_smaller_and_loads_float32(tmp_path, tiny_G):
    """Shipped toy encoders are stored fp16: weights rounded once, latent_avg kept exact."""
    enc = _encoder("e4e", seed=5)
    with torch.no_grad():
        enc.latent_avg.copy_(torch.randn(8, 64) + 0.123456789)  # not representable in fp16
    p32 = save_encoder(enc, tmp_path / "e32.pt", generator_sha256=tiny_G.sha256)
    p16 = save_encoder(enc, tmp_path / "e16.pt", dtype=torch.float16)
    assert p16.stat().st_size < 0.6 * p32.stat().st_size
    raw = torch.load(p16, weights_only=True)["state_dict"]
    assert (
        raw["latent_avg"].dtype == torch.float32
        and raw["styles.0.linear.weight"].dtype == torch.float16
    )
    loaded = lsap.load_encoder(p16)
    assert all(
        t.dtype == torch.float32 for t in loaded.state_dict().values() if t.is_floating_point()
    )
    assert torch.equal(loaded.latent_avg, enc.latent_avg)
    ref, got = enc(_images()), loaded(_images())
    assert not torch.equal(ref, got) and (ref - got).abs().max() < 0.05 * ref.abs().max()
    with pytest.raises(ValueError, match="floating"):
        save_encoder(enc, tmp_path / "bad.pt", dtype=torch.int8)


def test_old_files_without_num_batches_tracked(tmp_path):
    enc = _encoder("e4e")
    weights, latent_avg = _reference_encoder_keys(enc)
    weights = {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    opts = {"encoder_type": "Encoder4Editing"}
    torch.save({"state_dict": weights, "latent_avg": latent_avg, "opts": opts}, tmp_path / "old.pt")
    torch.testing.assert_close(lsap.load_encoder(tmp_path / "old.pt")(_images()), enc(_images()))


def _release(tmp_path, name, **changes):
    weights, latent_avg = _reference_encoder_keys(_encoder())
    obj = {"state_dict": weights, "latent_avg": latent_avg, "opts": {"stylegan_size": 32}}
    obj["opts"]["encoder_type"] = "Encoder4Editing"
    for k, v in changes.items():
        obj[k] = v
    torch.save(obj, tmp_path / name)
    return tmp_path / name


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        lsap.load_encoder(tmp_path / "missing.pt")
    torch.save({"g_ema": {}}, tmp_path / "gen.pt")
    with pytest.raises(CheckpointError, match="no encoder found"):
        lsap.load_encoder(tmp_path / "gen.pt")
    p = _release(tmp_path, "noopts.pt", opts={"stylegan_size": 32})
    with pytest.raises(CheckpointError, match="cannot tell e4e from pSp"):
        lsap.load_encoder(p)
    assert isinstance(lsap.load_encoder(p, arch="psp"), GradualStyleEncoder)
    p = _release(tmp_path, "other.pt", opts={"encoder_type": "BackboneEncoderUsingLastLayerIntoW"})
    with pytest.raises(CheckpointError, match="not supported"):
        lsap.load_encoder(p)
    p = _release(
        tmp_path, "size.pt", opts={"encoder_type": "Encoder4Editing", "stylegan_size": 1024}
    )
    with pytest.raises(CheckpointError, match=r"means 18 w\+ layers but the encoder has 8"):
        lsap.load_encoder(p)
    p = _release(tmp_path, "avg.pt", latent_avg=torch.zeros(3, 64))
    with pytest.raises(CheckpointError, match=r"latent_avg has shape \[3, 64\]"):
        lsap.load_encoder(p)
    weights, latent_avg = _reference_encoder_keys(_encoder())
    weights["encoder.latlayer1.weight"] = torch.zeros(48, 20, 1, 1)
    opts = {"encoder_type": "Encoder4Editing"}
    torch.save({"state_dict": weights, "latent_avg": latent_avg, "opts": opts}, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match=r"'latlayer1.weight' has shape \[48, 20, 1, 1\]"):
        lsap.load_encoder(tmp_path / "s.pt")
    del weights["encoder.latlayer1.weight"]
    torch.save({"state_dict": weights, "latent_avg": latent_avg, "opts": opts}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"missing \['latlayer1.weight'\]"):
        lsap.load_encoder(tmp_path / "m.pt")


def test_unsafe_pickles_are_refused(tmp_path):
    weights, latent_avg = _reference_encoder_keys(_encoder())
    opts = NotAllowed()  # any class outside the allow-list
    torch.save(
        {"state_dict": weights, "latent_avg": latent_avg, "opts": opts}, tmp_path / "evil.pt"
    )
    with pytest.raises(CheckpointError, match="refused by the weights-only loader"):
        lsap.load_encoder(tmp_path / "evil.pt")


def test_config_is_read_off_full_size_tensors():
    with torch.device("meta"):
        for cls in (Encoder4Editing, GradualStyleEncoder):
            enc = cls()
            cfg = _infer_config(enc.state_dict(), enc.arch)
            assert cfg == enc.config()
            assert cfg["num_ws"] == 18 and cfg["input_size"] == 256
            assert cfg["stages"] == [[64, 64, 3], [64, 128, 4], [128, 256, 14], [256, 512, 3]]


def test_read_state_reports_generator_of_lsap_files(tmp_path):
    enc = _encoder()
    save_encoder(enc, tmp_path / "e.pt", generator_sha256="abc")
    es = read_encoder_state(tmp_path / "e.pt")
    assert es.source_format == "lsap" and es.generator_sha256 == "abc"


def test_backbone_init_from_ir_se50_weights(tmp_path):
    enc = _encoder()
    donor = _encoder(seed=9)
    sd = {k: v for k, v in donor.state_dict().items() if k.startswith(("input_layer.", "body."))}
    sd["output_layer.3.weight"] = torch.zeros(4, 4)  # the face-recognition head is ignored
    torch.save(sd, tmp_path / "model_ir_se50.pth")
    heads_before = enc.styles[0].linear.weight.clone()
    n = init_backbone(enc, tmp_path / "model_ir_se50.pth")
    assert n == len([k for k in sd if not k.endswith("num_batches_tracked") and "output" not in k])
    torch.testing.assert_close(enc.body[3].res_layer[1].weight, donor.body[3].res_layer[1].weight)
    assert torch.equal(enc.styles[0].linear.weight, heads_before)
    sd["body.0.res_layer.1.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(
        CheckpointError, match=r"'body.0.res_layer.1.weight' has shape \[3, 3, 3, 3\]"
    ):
        init_backbone(enc, tmp_path / "bad.pth")
