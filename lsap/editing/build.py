"""Edits from the ``editing`` config group (``conf/editing/{interfacegan,ganspace,sefa}.yaml``).

Each selected method sits under its own key, so several can be combined
(``editing=[interfacegan,ganspace]``); every edit carries the factors it is rendered with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lsap.editing.edit import Edit
from lsap.editing.ganspace import compute_pca, ganspace_edit, load_pca
from lsap.editing.interfacegan import interfacegan_edit
from lsap.editing.sefa import sefa_edits
from lsap.nets.stylegan2 import Generator

METHODS = ("interfacegan", "ganspace", "sefa")


@dataclass(frozen=True)
class EditSpec:
    """An edit and the factors (columns of a grid, rows of a table) it is applied with."""

    edit: Edit
    factors: tuple[float, ...]

    @property
    def name(self) -> str:
        return self.edit.name


def _factors(value: Any, where: str) -> tuple[float, ...]:
    if value is None or isinstance(value, str | bytes | Mapping):
        raise ValueError(f"{where}.factors must be a list of numbers, got {value!r}")
    try:
        out = tuple(float(f) for f in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}.factors must be a list of numbers, got {value!r}") from None
    if not out:
        raise ValueError(f"{where}.factors is empty")
    return out


def build_edits(cfg: Mapping[str, Any] | None, G: Generator) -> list[EditSpec]:
    """All edits the ``editing`` config describes, in the order methods appear in it.

    Args:
        cfg: ``{method: settings}`` for methods among ``interfacegan``, ``ganspace``, ``sefa``.
        G: the generator (sizes, SeFa weights, GANSpace samples).
    """
    specs: list[EditSpec] = []
    for method, c in (cfg or {}).items():
        if c is None:
            continue
        if method not in METHODS:
            raise ValueError(f"unknown editing method {method!r}; expected one of {METHODS}")
        where = f"editing.{method}"
        factors = _factors(c.get("factors"), where)
        if method == "interfacegan":
            for name, path in (c.get("directions") or {}).items():
                entry = path if isinstance(path, Mapping) else {"path": path}
                edit = interfacegan_edit(
                    entry["path"],
                    G.num_ws,
                    G.w_dim,
                    layers=entry.get("layers", c.get("layers")),
                    name=f"interfacegan/{name}",
                )
                specs.append(EditSpec(edit, _factors(entry.get("factors", factors), where)))
        elif method == "ganspace":
            if c.get("pca_file"):
                pca = load_pca(c["pca_file"])
                if pca.w_dim != G.w_dim:
                    raise ValueError(
                        f"{c['pca_file']}: PCA has w_dim {pca.w_dim}, the generator {G.w_dim}"
                    )
            else:
                pca = compute_pca(
                    G,
                    int(c.get("num_samples", 100_000)),
                    int(c.get("seed", 0)),
                    batch_size=int(c.get("batch_size", 10_000)),
                    cache_dir=c.get("cache_dir"),
                )
            mode = c.get("mode", "relative")
            entries = {
                f"pc{int(k)}": {"component": int(k), "layers": c.get("layers")}
                for k in c.get("components") or ()
            }
            entries.update(c.get("edits") or {})
            for name, e in entries.items():
                edit = ganspace_edit(
                    pca,
                    int(e["component"]),
                    G.num_ws,
                    layers=e.get("layers"),
                    mode=e.get("mode", mode),
                    name=f"ganspace/{name}",
                )
                specs.append(EditSpec(edit, _factors(e.get("factors", factors), where)))
        else:
            edits = sefa_edits(
                G,
                c.get("components", (0, 1, 2, 3, 4)),
                layers=c.get("layers", "all"),
                edit_layers=c.get("edit_layers"),
                channel_normalized=bool(c.get("channel_normalized", False)),
            )
            specs.extend(EditSpec(e, factors) for e in edits)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"edit names must be unique, got {names}")
    return specs


def describe_edits(edits: Sequence[EditSpec]) -> list[dict[str, Any]]:
    """JSON-ready description of edits (name, layers, factors, how they were made)."""
    return [
        {
            "name": e.name,
            "factors": list(e.factors),
            "layers": list(e.edit.layers),
            "absolute": e.edit.absolute,
            **{
                k: v
                for k, v in e.edit.info.items()
                if isinstance(v, str | int | float | bool | list | None)
            },
        }
        for e in edits
    ]
