"""Edits from the ``editing`` config group (``conf/editing/{interfacegan,ganspace,sefa}.yaml``).

Each selected method sits under its own key, so several can be combined
(``editing=[interfacegan,ganspace]``); every edit carries the factors it is rendered with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lsap.core.plain import settings_dict
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


# Keys each method's settings must hold (conf/editing/<method>.yaml holds their values).
REQUIRED = {
    "interfacegan": ("directions", "layers", "factors"),
    "ganspace": (
        "num_samples",
        "seed",
        "batch_size",
        "cache_dir",
        "pca_file",
        "mode",
        "components",
        "layers",
        "edits",
        "factors",
    ),
    "sefa": ("layers", "components", "edit_layers", "channel_normalized", "factors"),
}


def build_edits(cfg: Mapping[str, Any] | None, G: Generator) -> list[EditSpec]:
    """All edits the ``editing`` config describes, in the order methods appear in it.

    Args:
        cfg: ``{method: settings}`` for methods among ``interfacegan``, ``ganspace``, ``sefa``;
            each method's settings hold every key of ``conf/editing/<method>.yaml``.
        G: the generator (sizes, SeFa weights, GANSpace samples).

    Raises:
        ValueError: an unknown method, a missing key (named), bad factors, repeated names.
    """
    specs: list[EditSpec] = []
    for method, c in (cfg or {}).items():
        if c is None:
            continue
        if method not in METHODS:
            raise ValueError(f"unknown editing method {method!r}; expected one of {METHODS}")
        where = f"editing.{method}"
        factors = _factors(c.get("factors"), where)
        c = settings_dict(
            c, REQUIRED[method], what=where, see=f"conf/editing/{method}.yaml", exact=False
        )
        if method == "interfacegan":
            for name, path in (c["directions"] or {}).items():
                entry = path if isinstance(path, Mapping) else {"path": path}
                edit = interfacegan_edit(
                    entry["path"],
                    G.num_ws,
                    G.w_dim,
                    layers=entry.get("layers", c["layers"]),  # per direction, else the group's
                    name=f"interfacegan/{name}",
                )
                specs.append(EditSpec(edit, _factors(entry.get("factors", factors), where)))
        elif method == "ganspace":
            if c["pca_file"]:
                pca = load_pca(c["pca_file"])
                if pca.w_dim != G.w_dim:
                    raise ValueError(
                        f"{c['pca_file']}: PCA has w_dim {pca.w_dim}, the generator {G.w_dim}"
                    )
            else:
                pca = compute_pca(
                    G,
                    int(c["num_samples"]),
                    int(c["seed"]),
                    batch_size=int(c["batch_size"]),
                    cache_dir=c["cache_dir"],
                )
            mode = c["mode"]
            entries = {
                f"pc{int(k)}": {"component": int(k), "layers": c["layers"]}
                for k in c["components"] or ()
            }
            entries.update(c["edits"] or {})
            for name, e in entries.items():
                edit = ganspace_edit(
                    pca,
                    int(e["component"]),
                    G.num_ws,
                    layers=e.get("layers"),
                    mode=e.get("mode", mode),  # per named edit, else the group's
                    name=f"ganspace/{name}",
                )
                specs.append(EditSpec(edit, _factors(e.get("factors", factors), where)))
        else:
            edits = sefa_edits(
                G,
                c["components"],
                layers=c["layers"],
                edit_layers=c["edit_layers"],
                channel_normalized=bool(c["channel_normalized"]),
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
