"""Settings of the real ``conf/`` entries for tests that call library code directly: the code
has no defaults of its own (they live in ``conf/`` alone), so a test takes the shipped entry and
changes only what it is about."""

from __future__ import annotations

import copy
import functools
from typing import Any

from lsap.config import compose, plain


def conf_entry(config: str, key: str, *overrides: str) -> dict[str, Any]:
    """The group ``key`` of the composed ``conf/<config>.yaml`` (with Hydra ``overrides``), as plain
    resolved values (``conf_entry("train", "data", "data=ffhq")``); a fresh copy each call."""
    return copy.deepcopy(_entry(config, key, overrides))


@functools.cache
def _entry(config: str, key: str, overrides: tuple[str, ...]) -> dict[str, Any]:
    return plain(compose(config, list(overrides))[key])


def data_kwargs(option: str, **settings: Any) -> dict[str, Any]:
    """Keyword arguments of ``conf/data/<option>.yaml``'s DataModule (its ``_target_``'s settings, as
    ``lsap.config.build_data`` passes them), with ``settings`` replacing entries."""
    entry = conf_entry("train", "data", f"data={option}")
    entry.pop("_target_")
    unknown = set(settings) - set(entry) - {"crop"}  # crop: what lsap-train adds at run time
    assert not unknown, f"conf/data/{option}.yaml has no {sorted(unknown)}"
    return {**entry, **settings}


def pti_kwargs(**settings: Any) -> dict[str, Any]:
    """Keyword arguments of ``lsap.refinement.pivotal_tuning`` from ``conf/refinement/pti.yaml``
    (``RefinementSettings``, as lsap-invert passes them), with ``settings`` replacing entries."""
    from lsap.refinement.settings import RefinementSettings

    kwargs = dict(
        RefinementSettings.from_config(conf_entry("invert", "refinement", "refinement=pti")).pti
    )
    unknown = set(settings) - set(kwargs)
    assert not unknown, f"pivotal_tuning's settings have no {sorted(unknown)}"
    return {**kwargs, **settings}
