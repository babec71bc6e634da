"""lsap's Hydra config tree (``conf/``) from Python: where it is, and composing it outside a CLI.

The console commands compose their configs through ``@hydra.main``; notebooks and scripts get the
same settings from :func:`compose` (every tunable lives once, in ``conf/``), and pick a generator by
config name or file with :func:`generator_choice`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsap.assets import ASSET_PREFIX
from lsap.core.plain import plain

__all__ = [
    "build_data",
    "compose",
    "config_dir",
    "generator_choice",
    "group_options",
    "job_dir_name",
    "plain",
    "register_resolvers",
]

JOB_DIR_MAX_LEN = 200  # characters of a multirun job folder name (file systems allow 255 bytes)


def job_dir_name(num: Any, override_dirname: str, max_len: int = JOB_DIR_MAX_LEN) -> str:
    """A multirun job's folder name: ``<num>_<overrides>`` (Hydra's ``override_dirname``), with
    ``/`` replaced (a path value must not nest folders) and, past ``max_len`` characters, cut and
    ended with 8 hex digits of the overrides' sha1 (distinct jobs keep distinct folders)."""
    import hashlib

    name = f"{num}_{override_dirname}" if override_dirname else str(num)
    name = name.replace("/", "_")
    if len(name) <= max_len:
        return name
    digest = hashlib.sha1(override_dirname.encode()).hexdigest()[:8]
    return f"{name[: max_len - 9]}_{digest}"


def build_data(data: Any, **runtime: Any) -> Any:
    """What gives a command its images, from its ``data`` group entry.

    Every ``conf/data/<name>.yaml`` has one shape: ``_target_`` (the DataModule, or the function
    that makes the images) and its settings as keyword arguments. What the command learns only at
    run time (the generator's resolution, the run folder, ...) is never in the entry; the command
    passes it here and it reaches the target unchanged, beside the entry's settings.

    Args:
        data: the ``data`` config (``cfg.data``).
        runtime: keyword arguments the command adds (none for lsap-train's DataModules).

    Returns:
        ``_target_(**settings, **runtime)``.
    """
    from hydra.utils import instantiate

    return instantiate(data, _partial_=True)(**runtime)


def register_resolvers() -> None:
    """Register lsap's OmegaConf resolvers (``lsap_job_dir``: :func:`job_dir_name`); idempotent.
    The console commands call it before Hydra composes; :func:`compose` does too."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("lsap_job_dir"):
        OmegaConf.register_new_resolver("lsap_job_dir", job_dir_name)


def config_dir() -> str:
    """Absolute path of lsap's ``conf/`` folder.

    ``$LSAP_CONFIG_DIR`` if set, else ``conf/`` beside the package (a source checkout or an
    editable install: ``pip install -e .``).
    """
    env = os.environ.get("LSAP_CONFIG_DIR")
    if env:
        return str(Path(env).resolve())
    return str(Path(__file__).resolve().parents[1] / "conf")


def group_options(group: str) -> list[str]:
    """Names of the options of a config group (``group_options("generator")`` -> tiny, ffhq, ...)."""
    folder = Path(config_dir(), group)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def generator_choice(
    generator: str, path: str | os.PathLike | None = None
) -> tuple[str, str | None]:
    """Which ``generator`` config option to compose, and the file to put in ``generator.path``.

    Args:
        generator: the name of a ``conf/generator`` option (``"toy32"``, ``"tiny"``, ``"ffhq"``, ...), or a
            generator file (an existing path or a packaged ``asset:<name>``), which selects the
            ``file`` option.
        path: a generator file; when given it wins over ``generator`` (``file`` option).

    Returns:
        ``(option, file or None)``.

    Raises:
        ValueError: ``generator`` is neither an option nor an existing file (the message lists
            the options).
    """
    if path is not None:
        return "file", os.fspath(path)
    options = group_options("generator")
    if generator in options:
        return generator, None
    if generator.startswith(ASSET_PREFIX) or Path(generator).expanduser().is_file():
        return "file", generator
    raise ValueError(
        f"generator {generator!r} is neither a config in {Path(config_dir(), 'generator')} "
        f"({', '.join(options)}) nor an existing file"
    )


def compose(
    config_name: str,
    overrides: Sequence[str] = (),
    *,
    generator: str | None = None,
    generator_path: str | os.PathLike | None = None,
) -> Any:
    """Compose one of lsap's configs (``invert``, ``eval``, ``edit``, ...) as its command would.

    Args:
        config_name: the primary config (``conf/<config_name>.yaml``).
        overrides: Hydra overrides, e.g. ``["loss=projector", "inversion.steps=200"]``.
        generator, generator_path: choose the generator (see :func:`generator_choice`); the file
            is set on the composed config, so paths need no override quoting. None keeps the
            config's default generator.

    Returns:
        The composed ``DictConfig`` (unresolved: ``paths.output_dir`` needs a Hydra run and is
        only resolved if read). Take plain values of a group with :func:`plain`.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    register_resolvers()
    overrides = list(overrides)
    file = None
    if generator is not None or generator_path is not None:
        option, file = generator_choice(generator or "", generator_path)
        overrides.insert(0, f"generator={option}")
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=overrides)
    if file is not None:
        with open_dict(cfg):
            cfg.generator.path = file
    return cfg
