"""lsap.config: composing lsap's configs outside a command, and choosing the generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

import lsap.cli._common as common
from lsap.config import compose, config_dir, generator_choice, group_options, plain

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_config_dir_is_the_checkout_and_follows_the_environment(monkeypatch, tmp_path):
    assert Path(config_dir()) == CONF
    assert common.config_dir is config_dir  # the commands and Python read the same tree
    monkeypatch.setenv("LSAP_CONFIG_DIR", str(tmp_path))
    assert config_dir() == str(tmp_path.resolve())


def test_group_options_lists_the_yaml_files():
    options = group_options("generator")
    assert {"tiny", "ffhq", "file"} <= set(options)
    assert options == sorted(p.stem for p in (CONF / "generator").glob("*.yaml"))
    assert group_options("no_such_group") == []


def test_compose_gives_the_files_values_and_applies_overrides():
    cfg = compose("invert", ["generator=tiny"])
    assert plain(cfg.loss) == OmegaConf.to_container(OmegaConf.load(CONF / "loss" / "lsap_o.yaml"))
    cfg = compose("invert", ["generator=tiny", "loss=projector", "inversion.steps=7"])
    assert cfg.loss.sncd == 0.0 and cfg.loss.lpips == 1.0
    assert cfg.inversion.steps == 7


def test_generator_by_name_or_file(tmp_path):
    assert generator_choice("tiny") == ("tiny", None)
    assert generator_choice("toy32") == ("toy32", None)  # the notebooks' default
    assert generator_choice("ffhq", tmp_path / "G.pt") == ("file", str(tmp_path / "G.pt"))
    f = tmp_path / "my G=1.pt"
    f.write_bytes(b"")
    assert generator_choice(str(f)) == ("file", str(f))
    assert generator_choice("asset:toy32/generator.pt") == ("file", "asset:toy32/generator.pt")
    with pytest.raises(ValueError, match="tiny") as e:
        generator_choice("no_such_generator")
    assert "no_such_generator" in str(e.value)


def test_compose_sets_a_generator_file_without_override_quoting(tmp_path):
    path = str(tmp_path / "weird name, a=b's.pt")
    cfg = compose("invert", generator_path=path)
    assert cfg.generator.path == path
    assert cfg.generator.arch is None  # the `file` option: architecture read off the file
    assert compose("invert", generator="toy32").generator.path == "asset:toy32/generator.pt"
    cfg = compose("eval", ["metrics=offline"], generator="tiny")
    assert plain(cfg.generator) == yaml.safe_load((CONF / "generator" / "tiny.yaml").read_text())
    assert cfg.metrics.lpips.backbone == "random"


def test_job_dir_names_stay_short_flat_and_distinct():
    from lsap.config import JOB_DIR_MAX_LEN, job_dir_name

    assert job_dir_name(0, "loss.sncd=0.5") == "0_loss.sncd=0.5"
    assert job_dir_name(3, "") == "3"
    assert "/" not in job_dir_name(1, "loss.options.id.weights=/w/ir.pth,loss.sncd=1")
    long_a = ",".join(f"option{i}=value" for i in range(40)) + ",loss.sncd=0"
    long_b = long_a[:-1] + "2"  # differs only past the cut
    a, b = job_dir_name(0, long_a), job_dir_name(0, long_b)
    assert len(a) == len(b) == JOB_DIR_MAX_LEN and a != b
    assert a[:-9] == b[:-9] and a.startswith("0_option0=value")
