"""Config values as plain Python containers (what provenance records and builders take)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def plain(node: Any) -> Any:
    """A config node as plain Python values (dicts, lists), interpolations resolved.

    OmegaConf ``DictConfig``/``ListConfig`` become containers (missing ``???`` values are kept as
    the string ``"???"``); plain dicts and lists are copied item by item (their values may be
    config nodes), so the result never shares a container with ``node``; anything else is
    returned unchanged.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, Mapping):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node
