"""Settings are typed once from conf/: every key is required (a missing one is a one-line error
naming it), the typed objects round-trip, and every `data` entry has the one shape."""

from __future__ import annotations

import pytest

from lsap.config import build_data, compose, plain
from lsap.core.plain import settings_dict

pytestmark = pytest.mark.usefixtures("one_thread")


def test_settings_dict_names_missing_and_unknown_keys():
    assert settings_dict({"a": 1, "b": 2}, ("a", "b"), what="x", see="conf/x.yaml") == {
        "a": 1,
        "b": 2,
    }
    with pytest.raises(ValueError, match=r"^the foo config misses b, c \(see conf/foo.yaml\)$"):
        settings_dict({"a": 1}, ("a", "b", "c"), what="the foo config", see="conf/foo.yaml")
    with pytest.raises(ValueError, match=r"^foo has unknown z \(see conf/foo.yaml\)$"):
        settings_dict({"a": 1, "z": 0}, ("a",), what="foo", see="conf/foo.yaml")
    # optional keys may be absent; exact=False lets other keys through
    assert settings_dict({"a": 1}, ("a",), optional=("o",), what="f", see="s") == {"a": 1}
    assert settings_dict({"a": 1, "z": 0}, ("a",), what="f", see="s", exact=False)["z"] == 0
    with pytest.raises(ValueError, match="must be a mapping"):
        settings_dict(None, ("a",), what="f", see="s")


def _train(*overrides):
    return plain(compose("train", ["experiment=tiny", "paths.output_dir=/tmp/x", *overrides]))


def test_encoder_training_settings_round_trip_and_required_keys():
    from lsap.systems.encoder_settings import EncoderTrainingSettings

    cfg = _train()
    s = EncoderTrainingSettings.from_config(cfg)
    assert EncoderTrainingSettings.from_config(s.to_dict()) == s  # what a checkpoint stores
    assert (s.encoder.progressive_start, s.encoder.progressive_step_every) == (100, 50)
    assert (s.noise_mode, s.w_discriminator, s.w_discriminator_options) == ("random", 0.0, None)
    del cfg["system"]["noise_mode"]
    with pytest.raises(ValueError, match=r"system misses noise_mode \(see conf/train.yaml\)"):
        EncoderTrainingSettings.from_config(cfg)
    cfg = _train("loss=e4e_original")  # the latent discriminator on: its options are checked
    s = EncoderTrainingSettings.from_config(cfg)
    assert s.w_discriminator == 0.1 and s.w_discriminator_options["r1_interval"] == 16
    del cfg["loss"]["options"]["w_discriminator"]["lr"]
    with pytest.raises(ValueError, match=r"loss\.options\.w_discriminator misses lr"):
        EncoderTrainingSettings.from_config(cfg)
    with pytest.raises(ValueError, match=r"system\.noise_mode must be one of"):
        EncoderTrainingSettings.from_config(_train("system.noise_mode=fixed"))


def test_refinement_settings():
    from lsap.refinement.settings import RefinementSettings

    none = RefinementSettings.from_config({"name": "none"})
    assert (none.steps, none.save_deltas, none.pti) == (0, False, {})
    c = plain(compose("invert", ["refinement=pti", "data.path=x", "paths.output_dir=/tmp/x"]))
    pti = RefinementSettings.from_config(c["refinement"])
    assert pti.steps == 350 and pti.pti["mode"] == "per_image" and not pti.save_deltas
    assert pti.save.dtype == "float16" and pti.save.max_total_gb == 20.0
    with pytest.raises(ValueError, match="refinement must be 'none' or 'pti'"):
        RefinementSettings.from_config({"name": "gan"})
    del c["refinement"]["steps"]
    with pytest.raises(ValueError, match="the refinement config misses steps"):
        RefinementSettings.from_config(c["refinement"])


def test_edits_need_every_key_of_their_group():
    from lsap.editing.build import build_edits

    with pytest.raises(ValueError, match=r"editing.sefa misses components, edit_layers"):
        build_edits({"sefa": {"layers": "all", "factors": [1.0]}}, None)


def test_every_data_entry_is_a_target_with_its_settings():
    """The data group's one shape: `_target_` + keyword settings; the command adds the rest."""
    from lsap.config import group_options

    for option in group_options("data"):
        cfg = compose("train", [f"data={option}", "paths.output_dir=/tmp/x"])
        assert str(cfg.data._target_).startswith("lsap."), option
    cfg = compose("demo", ["data.toy.num_images=2", "data.astronaut=false"])
    images = build_data(cfg.data, resolution=32)
    assert images.names == ["toy_2_000000", "toy_2_000001"]
    assert tuple(images.images.shape) == (2, 3, 32, 32)
    assert images.images.min() >= -1 and images.images.max() <= 1


def test_stylegan2_and_3_share_one_mapping_network():
    from lsap.io import generator_from_config
    from lsap.nets.stylegan2 import MappingNetwork
    from lsap.nets.stylegan3 import MappingLayer

    sg2, sg3 = (
        generator_from_config(compose("sncd", [f"generator={g}"]).generator, "cpu")
        for g in ("tiny", "tiny_sg3")
    )
    for G in (sg2, sg3):
        assert type(G.mapping) is MappingNetwork
        keys = {f"fc{i}.{p}" for i in range(G.mapping.n_mlp) for p in ("weight", "bias")}
        assert set(G.mapping.state_dict()) == keys | {"w_avg"}
    assert isinstance(sg3.mapping.fc0, MappingLayer)
    assert not isinstance(sg2.mapping.fc0, MappingLayer)


# -- inversion, code source and metrics groups: every key from conf/ -----------------------------
def test_inversion_settings_need_every_key_of_their_group():
    from conf_entries import conf_group

    from lsap.config import group_options
    from lsap.inversion.schedules import Schedule
    from lsap.inversion.settings import InversionSettings

    # the StyleGAN2 projector's schedule (LSAP.md; projector.py's initial_learning_rate ramps
    # and initial_noise_factor / noise_ramp_length)
    projector = Schedule(lr_rampup=0.05, lr_rampdown=0.25, noise_factor=0.05, noise_ramp=0.75)

    for option in group_options("inversion"):  # every option carries every key
        s = InversionSettings.from_config(conf_group("inversion", option))
        assert s.schedule == projector  # conf's schedule is the projector's
        assert (s.autocast, s.tf32, s.compile, s.cuda_graphs) == (None, False, None, False)
    for key in ("autocast", "tf32", "compile", "cuda_graphs", "schedule"):
        cfg = conf_group("inversion", "w_plus")
        del cfg[key]
        with pytest.raises(
            ValueError, match=rf"^the inversion config misses {key} \(see conf/inversion/w_plus"
        ):
            InversionSettings.from_config(cfg)
    schedule = conf_group("inversion", "w_plus")["schedule"]
    del schedule["noise_ramp"]
    with pytest.raises(ValueError, match=r"^inversion\.schedule misses noise_ramp \(see conf/"):
        Schedule.from_config(schedule)


def test_code_source_needs_every_key_of_its_group(tiny_G):
    from conf_entries import conf_group

    from lsap.inversion.sources import build_code_source

    source = build_code_source(conf_group("code_source", "optimize"), tiny_G)
    assert source.describe() == {"name": "optimize", "init": "w_avg", "optimize": True}
    for key in ("name", "init", "optimize", "encoder"):
        cfg = conf_group("code_source", "optimize")
        del cfg[key]
        with pytest.raises(
            ValueError, match=rf"^code_source misses {key} \(see conf/code_source/optimize.yaml\)$"
        ):
            build_code_source(cfg, tiny_G)
    with pytest.raises(ValueError, match=r"^code_source has unknown init_codes "):
        build_code_source({**conf_group("code_source", "optimize"), "init_codes": "x"}, tiny_G)


def test_scorer_needs_every_key_of_the_metrics_group():
    from conf_entries import conf_group

    from lsap.metrics.scorer import ScorerSettings, build_scorer, metric_notes

    offline = conf_group("metrics", "offline")
    s = ScorerSettings.from_config(offline)
    assert s.fidelity == ("mse", "psnr", "ssim", "lpips", "id")
    assert s.editing == ("id", "lpips", "sncd") and s.fid and s.features["name"] == "random"
    for key in ("editing", "lpips", "id", "fid"):
        cfg = conf_group("metrics", "offline")
        del cfg[key]
        with pytest.raises(
            ValueError, match=rf"^metrics misses {key} \(see conf/metrics/default.yaml\)$"
        ):
            build_scorer(cfg)
        with pytest.raises(ValueError, match=rf"^metrics misses {key} "):
            metric_notes(cfg)
    for key in ("enabled", "features"):
        cfg = conf_group("metrics", "offline")
        del cfg["fid"][key]
        with pytest.raises(ValueError, match=rf"^metrics\.fid misses {key} \(see conf/metrics/"):
            build_scorer(cfg)
    cfg = conf_group("metrics", "offline")
    del cfg["fid"]["features"]["name"]
    with pytest.raises(ValueError, match=r"^metrics\.fid\.features misses name \(see conf/"):
        build_scorer(cfg)
    cfg = conf_group("metrics", "offline")
    del cfg["lpips"]["backbone"]
    with pytest.raises(ValueError, match=r"^metrics\.lpips misses backbone \(see conf/"):
        metric_notes(cfg)
    # a network a listed metric needs cannot be null (it was silently the default network)
    with pytest.raises(ValueError, match=r"^metrics\.id is null but metrics\.fidelity or "):
        build_scorer(conf_group("metrics", "offline", id=None))
    scorer = build_scorer(conf_group("metrics", "offline", fidelity=["mse"], editing=[], id=None))
    assert scorer.metrics == ("mse",) and scorer.face is None and scorer.lpips is None


def test_metric_labels_read_the_metrics_group():
    """The notebook's plot labels name stand-in networks from the same settings as the scorer."""
    from conf_entries import conf_group

    from lsap.metrics.report import editability_axes, fid_label

    offline, default = conf_group("metrics", "offline"), conf_group("metrics", "default")
    assert fid_label(offline) == "FID(edited, originals) [random-network stand-in]"
    assert fid_label(default) == "FID(edited, originals) [Inception]"
    assert editability_axes(offline, classifier=True) == [
        ("edit_target_shift", "target attribute shift (classifier), ↑"),
        ("edit_lpips", "LPIPS(edited, unedited) [random-network stand-in]"),
        ("edit_id", "ID(edited, original) [random-network stand-in]"),
    ]
    assert editability_axes(default) == [
        ("edit_lpips", "LPIPS(edited, unedited)"),
        ("edit_id", "ID(edited, original)"),
    ]
    del default["editing"]
    with pytest.raises(ValueError, match=r"^metrics misses editing \(see conf/metrics/"):
        editability_axes(default)


def test_invert_reads_the_trainer_keys_it_uses_from_conf():
    from lsap.cli.invert import _trainer_keys

    trainer = plain(
        compose("invert", ["trainer=cpu", "data.path=x", "paths.output_dir=/tmp/x"]).trainer
    )
    assert _trainer_keys(trainer)["accelerator"] == "cpu"
    del trainer["enable_progress_bar"]
    with pytest.raises(
        ValueError, match=r"^trainer misses enable_progress_bar \(see conf/trainer/default.yaml\)$"
    ):
        _trainer_keys(trainer)
