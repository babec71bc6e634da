"""The ``refinement`` config group (``conf/refinement/{none,pti}.yaml``), typed once.

:meth:`RefinementSettings.from_config` is the one reading of the group: ``lsap-invert`` converts it
there and passes the settings to the inversion system and the writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lsap.core.plain import settings_dict
from lsap.refinement.pti import pti_options

NAMES = ("none", "pti")
_SEE = "conf/refinement/pti.yaml"


@dataclass(frozen=True)
class DeltaSaving:
    """``refinement.save``: whether and how the tuned generators are stored.

    Attributes:
        deltas: store each tuned generator as a delta against the base generator.
        dtype: "float16" or "float32".
        max_total_gb: refuse to start when a run's deltas would exceed this; None = only the
            free disk.
    """

    deltas: bool
    dtype: str
    max_total_gb: float | None


@dataclass(frozen=True)
class RefinementSettings:
    """What happens after the stage-one codes.

    Attributes:
        name: "none" (the codes and the base generator are the result) or "pti".
        pti: keyword arguments of ``lsap.refinement.pivotal_tuning`` (``pti_options``); empty
            without refinement.
        save: how the tuned generators are stored (None without refinement).
    """

    name: str
    pti: dict[str, Any] = field(default_factory=dict)
    save: DeltaSaving | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> RefinementSettings:
        """The settings of a ``refinement`` config (an OmegaConf node or plain dict).

        Raises:
            ValueError: an unknown name, a missing key (named), settings ``pivotal_tuning``
                would refuse.
        """
        c = settings_dict(cfg, ("name",), what="the refinement config", see=_SEE, exact=False)
        name = str(c["name"])
        if name not in NAMES:
            raise ValueError(f"refinement must be 'none' or 'pti', got {name!r}")
        if name == "none":
            return cls(name)
        c = settings_dict(c, ("save",), what="the refinement config", see=_SEE, exact=False)
        save = settings_dict(
            c["save"], ("deltas", "dtype", "max_total_gb"), what="refinement.save", see=_SEE
        )
        gb = save["max_total_gb"]
        return cls(
            name,
            pti_options(c),
            DeltaSaving(
                bool(save["deltas"]), str(save["dtype"]), None if gb is None else float(gb)
            ),
        )

    @property
    def steps(self) -> int:
        """PTI steps per tuned generator (0 without refinement)."""
        return int(self.pti["steps"]) if self.pti else 0

    @property
    def save_deltas(self) -> bool:
        """Whether the tuned generators are stored."""
        return self.save is not None and self.save.deltas
