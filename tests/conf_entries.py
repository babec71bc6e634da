"""Settings of the real ``conf/`` entries for tests that call library code directly: the code
has no defaults of its own (they live in ``conf/`` alone), so a test takes the shipped entry and
changes only what it is about.

- :func:`conf_entry`: a group as a command composes it (interpolations of the root config, such
  as ``${seed}`` or ``${paths.data_dir}``, resolved).
- :func:`conf_group`: one option of a group composed alone, with overrides merged in.
- :func:`data_kwargs`, :func:`pti_kwargs`, :func:`inversion_kwargs`: keyword arguments of the
  training DataModules, of ``pivotal_tuning`` and of ``optimize_latents`` from their entries.
"""

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


@functools.cache
def _group(group: str, option: str) -> dict[str, Any]:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lsap.config import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = hydra_compose(overrides=[f"+{group}={option}"])  # the option's defaults list included
    return plain(cfg[group])


def conf_group(group: str, option: str, **overrides: Any) -> dict[str, Any]:
    """``conf/<group>/<option>.yaml`` composed alone (with its defaults list) and merged with
    ``overrides`` as a command-line override would (mappings merge key by key; lists and scalars
    replace; None sets null), as a fresh plain dict. For groups whose values do not interpolate
    the root config; :func:`conf_entry` composes a group inside its command's config.

    Example: ``conf_group("metrics", "offline", fidelity=["mse"], fid={"enabled": False})``.
    """
    from omegaconf import OmegaConf

    base = OmegaConf.create(copy.deepcopy(_group(group, option)))
    return plain(OmegaConf.merge(base, overrides))


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


def inversion_kwargs(G, option: str = "w_plus", **settings: Any) -> dict[str, Any]:
    """Keyword arguments of ``lsap.inversion.optimize_latents`` for generator ``G`` from
    ``conf/inversion/<option>.yaml`` (``InversionSettings.optimize_kwargs``, as the commands pass
    them), with ``settings`` replacing entries (``schedule`` a ``Schedule``; a given ``w_std`` is
    not computed)."""
    import dataclasses

    from lsap.inversion.settings import InversionSettings

    inversion = InversionSettings.from_config(conf_group("inversion", option))
    kwargs = inversion.optimize_kwargs(G, w_std=0.0)
    unknown = set(settings) - set(kwargs)
    assert not unknown, f"optimize_latents' settings have no {sorted(unknown)}"
    kwargs.update(settings)
    if "w_std" not in settings:  # std(w) under the schedule that runs
        kwargs["w_std"] = dataclasses.replace(inversion, schedule=kwargs["schedule"]).w_std(G)
    return kwargs
