"""Shared plumbing of the console commands: config folder, devices, one-line errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lsap.config import config_dir
from lsap.io.errors import LsapFileError

__all__ = ["check_config_dir", "config_dir", "one_line_errors", "resolve_device"]


def check_config_dir(command: str) -> None:
    if not Path(config_dir(), f"{command}.yaml").is_file():
        sys.exit(
            f"lsap: cannot find {config_dir()}/{command}.yaml; install lsap from a source checkout "
            "with `pip install -e .` or point $LSAP_CONFIG_DIR at its conf/ folder"
        )


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def one_line_errors(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turn bad-input errors (``LsapFileError``) into ``<command>: error: <file>: <problem>``, exit 2."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except LsapFileError as e:
                print(f"{command}: error: {e}", file=sys.stderr)
                sys.exit(2)

        return inner

    return wrap
