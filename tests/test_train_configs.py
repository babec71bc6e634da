"""The lsap-train config tree: every option of every group composes, every ``_target_``
instantiates, and the experiments carry the reference settings (LSAP.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lsap.cli._common import config_dir
from lsap.config import build_data

pytestmark = pytest.mark.usefixtures("one_thread")

CONF = Path(config_dir())
GROUPS = (
    "generator",
    "encoder",
    "data",
    "loss",
    "optimizer",
    "trainer",
    "logger",
    "callbacks",
    "experiment",
    "debug",
    "sweep",
    "hydra/launcher",
)


def _options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            "train",
            overrides=[f"paths.output_dir={tmp_path}", *overrides],
            return_hydra_config=True,
        )


def _targets(node, path=""):
    """(dotted path, node) of every dict with a ``_target_`` in a plain container."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node
        for k, v in node.items():
            yield from _targets(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _targets(v, f"{path}[{i}]")


# What a command adds to its data entry at run time (lsap.config.build_data): lsap-invert's
# images and lsap-demo's inputs are data entries of the same shape as lsap-train's.
DATA_RUNTIME = {
    "lsap.systems.data.InversionDataModule": {"output_dir": "out", "size": 32},
    "lsap.demo.inputs.demo_images": {"resolution": 32},
}


def _instantiate(path, node):
    if path == "data":
        return build_data(node, **DATA_RUNTIME.get(node["_target_"], {}))
    if path == "trainer":
        node = {k: v for k, v in node.items() if k != "ckpt_path"}  # a fit() argument
        if node["accelerator"] == "gpu" and not torch.cuda.is_available():
            node["accelerator"] = "cpu"  # the same arguments, on the machine we have
    obj = instantiate(node)
    if path == "encoder.net":
        with torch.device("meta"):  # full-size encoders: shapes without memory
            return obj(num_ws=8, w_dim=64)
    if path == "optimizer":
        return obj([torch.nn.Parameter(torch.zeros(2, 2))])
    return obj


@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g in GROUPS for o in _options(g)], ids=lambda x: str(x)
)
def test_every_option_composes_and_instantiates(group, option, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    base = [] if group == "experiment" else ["experiment=tiny"]
    extra = {
        ("generator", "file"): ["generator.path=G.pkl"],
        ("data", "demo"): ["data.toy.num_images=1", "data.astronaut=false"],  # quick to render
        ("data", "images"): ["data.path=in"],  # lsap-invert's required setting
    }.get((group, option), [])
    cfg = _compose(tmp_path, *base, f"{group}={option}", *extra)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    job = {k: cfg[k] for k in cfg if k != "hydra"}  # the rest of Hydra's node needs a running job
    found = dict(_targets(OmegaConf.to_container(OmegaConf.create(job), resolve=True)))
    assert found, "no _target_ in the config"
    if group == "hydra/launcher":  # ours; Hydra's default launcher is not ours to build
        found["hydra.launcher"] = launcher
    for path, node in found.items():
        assert _instantiate(path, node) is not None, path


def test_lsap_e_ffhq_has_the_reference_settings(tmp_path):
    cfg = _compose(tmp_path, "experiment=lsap_e_ffhq")
    loss = cfg.loss
    assert (loss.l2, loss.lpips, loss.id, loss.delta_norm, loss.sncd) == (1.0, 0.8, 0.1, 2e-4, 0.5)
    assert (loss.w_norm, loss.options.lpips.net, loss.options.id.backend) == (
        0.0,
        "alex",
        "arcface",
    )
    assert loss.options.sncd.anchor_normalized is False
    assert cfg.optimizer._target_ == "lsap.optim.Ranger"
    assert cfg.optimizer.lr == 1e-4 and list(cfg.optimizer.betas) == [0.95, 0.999]
    assert cfg.data.batch_size == 8 and cfg.data.size == 256 and cfg.data.hflip == 0.5
    assert cfg.encoder.net._target_.endswith("Encoder4Editing")
    assert (cfg.encoder.progressive_start, cfg.encoder.progressive_step_every) == (20000, 2000)
    assert cfg.generator.arch.resolution == 1024 and cfg.alignment.num_samples == 100_000
    assert cfg.system.noise_mode == "random"


def test_baselines_differ_from_lsap_e_only_where_they_should(tmp_path):
    def plain(*o):
        cfg = _compose(tmp_path, *o)
        return {
            k: OmegaConf.to_container(cfg[k], resolve=True)
            if OmegaConf.is_config(cfg[k])
            else cfg[k]
            for k in cfg
            if k != "hydra"
        }

    lsap_e, e4e, psp = (plain(f"experiment={x}") for x in ("lsap_e_ffhq", "e4e_ffhq", "psp_ffhq"))
    assert e4e["loss"] == {**lsap_e["loss"], "sncd": 0.0}
    assert {k for k in lsap_e if lsap_e[k] != e4e[k]} == {"loss", "task_name"}
    assert psp["encoder"]["net"]["_target_"].endswith("GradualStyleEncoder")
    assert psp["encoder"]["progressive_start"] is None
    assert psp["loss"] == {**e4e["loss"], "delta_norm": 0.0}


def test_tiny_experiment_is_offline(tmp_path):
    cfg = _compose(tmp_path, "experiment=tiny")
    assert cfg.generator.path is None and cfg.encoder.backbone_weights is None
    assert cfg.loss.options.lpips.backbone == "random" and cfg.loss.id == 0.0
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.data._target_.endswith("GeneratedImagesDataModule")


def test_sweep_debug_and_slurm_wiring(tmp_path):
    cfg = _compose(tmp_path, "experiment=lsap_e_ffhq", "sweep=sncd", "logger=wandb")
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweeper.params["loss.sncd"] == "0.0,0.1,0.5,1.0"
    assert cfg.logger.wandb.name == "lsap_e_ffhq-sncd0.5"  # one W&B run per value
    assert cfg.logger.wandb.group == "lsap_e_ffhq-sncd-sweep"
    assert _compose(tmp_path, "logger=wandb").logger.wandb.name == "train"
    fdr = _compose(tmp_path, "experiment=tiny", "debug=fdr")
    assert fdr.trainer.fast_dev_run is True and fdr.data.num_workers == 0
    slurm = _compose(
        tmp_path,
        "hydra/launcher=submitit_slurm",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
    )
    launcher = OmegaConf.to_container(slurm.hydra.launcher, resolve=True)
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    assert launcher["additional_parameters"]["signal"].startswith(
        slurm.slurm.requeue_signal.removeprefix("SIG") + "@"
    )
