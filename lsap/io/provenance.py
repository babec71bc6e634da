"""Provenance recorded with every artefact: package version, resolved config, generator, seed."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

import torch


def provenance(
    *, config: Any = None, generator: Any = None, seed: int | None = None, **extra: Any
) -> dict[str, Any]:
    """A JSON/weights-only friendly dict describing how an artefact was made.

    Args:
        config: the run's config (an OmegaConf node is resolved to plain containers).
        generator: a ``Generator``; its ``sha256`` and source format are recorded.
        seed: the run's seed.
        extra: further plain values.
    """
    from lsap import __version__

    out: dict[str, Any] = {
        "lsap_version": __version__,
        "torch_version": str(torch.__version__),  # TorchVersion is not weights-only loadable
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if generator is not None:
        out["generator_sha256"] = getattr(generator, "sha256", None)
        out["generator_format"] = getattr(generator, "source_format", None)
    if seed is not None:
        out["seed"] = int(seed)
    if config is not None:
        out["config"] = _plain(config)
    out.update(extra)
    return out


def _plain(config: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(config, DictConfig | ListConfig):
            return OmegaConf.to_container(config, resolve=True, throw_on_missing=False)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(config, Mapping):
        return {str(k): _plain(v) for k, v in config.items()}
    return config


def git_commit(cwd: str | None = None) -> str | None:
    """The checked-out commit of the git work tree at ``cwd`` (the current folder by default), or
    None outside one (an installed package, no git): recorded by the asset scripts' manifests."""
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=cwd
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
