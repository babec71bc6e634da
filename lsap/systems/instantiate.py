"""Build Lightning objects (trainer, loggers, callbacks) from their Hydra config groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def instantiate_group(cfg: Mapping[str, Any] | None) -> list[Any]:
    """Instantiate every ``{name: {_target_: ...}}`` entry of a config group (loggers, callbacks)."""
    from hydra.utils import instantiate

    if not cfg:
        return []
    return [instantiate(v) for v in cfg.values() if isinstance(v, Mapping) and "_target_" in v]


def build_trainer(
    cfg: Mapping[str, Any], *, logger: Mapping | None = None, callbacks=(), **overrides
):
    """A ``pytorch_lightning.Trainer`` from the ``trainer`` group, with loggers and callbacks.

    Args:
        cfg: the ``trainer`` config (``_target_`` and Trainer arguments).
        logger: the ``logger`` group config ({} or None = no logger).
        callbacks: already-built callbacks, added after those of any config.
        overrides: Trainer arguments that the calling job fixes (e.g. ``inference_mode=False``).
    """
    from hydra.utils import instantiate

    loggers = instantiate_group(logger)
    return instantiate(cfg, logger=loggers or False, callbacks=list(callbacks), **overrides)
