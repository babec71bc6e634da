"""Config values as plain Python containers (what provenance records and builders take)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def plain(node: Any, *, throw_on_missing: bool = False) -> Any:
    """A config node as plain Python values (dicts, lists), interpolations resolved.

    OmegaConf ``DictConfig``/``ListConfig`` become containers (missing ``???`` values are kept as
    the string ``"???"``, or raise OmegaConf's ``MissingMandatoryValue`` naming the key with
    ``throw_on_missing``: what a command's one conversion of its config wants); plain dicts and
    lists are copied item by item (their values may be config nodes), so the result never shares
    a container with ``node``; anything else is returned unchanged.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True, throw_on_missing=throw_on_missing)
    if isinstance(node, Mapping):
        return {str(k): plain(v, throw_on_missing=throw_on_missing) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v, throw_on_missing=throw_on_missing) for v in node]
    return node


def settings_dict(
    node: Any,
    required: Sequence[str],
    *,
    what: str,
    see: str,
    optional: Sequence[str] = (),
    exact: bool = True,
) -> dict[str, Any]:
    """A config group as a plain dict holding every ``required`` key: the one check behind each
    typed settings object (``conf/`` holds the defaults; code reads required keys).

    Args:
        node: the group (a config node or a mapping).
        required: keys that must be present.
        what: how the message names the group ("the inversion config", "loss.options.id").
        see: the config file to look at ("conf/inversion/w_plus.yaml").
        optional: keys that may be absent (``exact``: the only others allowed).
        exact: also refuse keys that are neither required nor optional.

    Raises:
        ValueError: one line: ``<what> misses a, b (see <see>)`` or ``<what> has unknown c ...``.
    """
    cfg = plain(node)
    if not isinstance(cfg, Mapping):
        raise ValueError(f"{what} must be a mapping, got {cfg!r} (see {see})")
    missing = [k for k in required if k not in cfg]
    unknown = sorted(set(cfg) - set(required) - set(optional)) if exact else []
    if missing or unknown:
        problem = f"misses {', '.join(missing)}" if missing else f"has unknown {', '.join(unknown)}"
        raise ValueError(f"{what} {problem} (see {see})")
    return dict(cfg)
