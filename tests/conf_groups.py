"""One option of a ``conf/`` group as plain values, with overrides: how tests give a settings
builder its whole group (conf's values) and change only what they test."""

from __future__ import annotations

import copy
import functools
from typing import Any


@functools.cache
def _group(group: str, option: str) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from lsap.config import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose(overrides=[f"+{group}={option}"])  # the option's defaults list included
    return OmegaConf.to_container(cfg[group], resolve=True)


def conf_group(group: str, option: str, **overrides: Any) -> dict[str, Any]:
    """``conf/<group>/<option>.yaml`` (with its defaults list) merged with ``overrides`` as a
    command-line override would (mappings merge key by key; lists and scalars replace; None
    sets null), as a fresh plain dict.

    Example: ``conf_group("metrics", "offline", fidelity=["mse"], fid={"enabled": False})``.
    """
    from omegaconf import OmegaConf

    base = OmegaConf.create(copy.deepcopy(_group(group, option)))
    return OmegaConf.to_container(OmegaConf.merge(base, overrides), resolve=True)
