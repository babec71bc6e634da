"""Config helpers shared by the benchmark scripts (``python bench/<name>.py`` puts this folder on
``sys.path``): the shipped ``conf/`` settings with a benchmark's changes laid over them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def loss_config(option: str, *overlays: Mapping[str, Any]) -> dict[str, Any]:
    """``conf/loss/<option>.yaml`` of the imported ``lsap`` with ``overlays`` merged in order
    (mappings key by key, as command-line overrides), as plain values."""
    from omegaconf import OmegaConf

    from lsap.config import config_dir

    cfg = OmegaConf.load(f"{config_dir()}/loss/{option}.yaml")
    return OmegaConf.to_container(OmegaConf.merge(cfg, *overlays), resolve=True)
