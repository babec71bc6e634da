"""Provenance recorded with every artefact: package version, resolved config, generator, seed."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import torch

from lsap.core.plain import plain
from lsap.core.version import __version__


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
        out["config"] = plain(config)
    out.update(extra)
    return out


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
