"""lsap-demo's config (``conf/demo.yaml`` and ``conf/demo/<generator>.yaml``), typed once.

:meth:`DemoSettings.from_config` is the one place the demo's config is read: ``lsap-demo`` and
``bench/reproduce_toy.py`` convert it there and pass the settings down; the groups whose one
reader lives elsewhere (``generator``, ``alignment``, ``loss``, ``metrics``, ``editing``, the
``data`` entry) are kept as plain values, ``inversion`` as ``InversionSettings``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lsap.core.plain import settings_dict
from lsap.inversion.settings import InversionSettings

_KEYS = (
    "generator",
    "alignment",
    "loss",
    "inversion",
    "metrics",
    "editing",
    "data",
    "paths",
    "seed",
    "device",
    "batch_size",
    "encoders",
    "optimisation",
    "classifier",
    "report",
    "paste_back",
)
_SEE = "conf/demo.yaml"


@dataclass(frozen=True)
class DemoSettings:
    """Everything lsap-demo reads (meanings in ``conf/demo.yaml``).

    Attributes:
        config: the whole resolved config (plain), as provenance records it.
        generator, alignment, loss, metrics, editing, data: those groups, plain.
        inversion: the ``inversion`` group, typed.
        encoders: method name -> encoder file (``asset:<name>`` allowed), or None (skipped).
        optimisation: method name -> weight of the ``sncd`` term, or None (skipped).
        classifier: the toy attribute classifier file, or None.
        device: "cpu", "auto" or "cuda".
        seed: the run seed (per-image seeds derive from it).
        batch_size: images per encoder / optimisation / metric batch.
        edit_images: images per edit grid of the report.
        cell_size: displayed size of each image in report.html (pixels).
        output_dir: the run folder.
        paste_back: the ``paste_back`` group (``lsap.data.paste.PasteMask.from_config``).
    """

    config: dict[str, Any]
    generator: dict[str, Any]
    alignment: dict[str, Any]
    loss: dict[str, Any]
    inversion: InversionSettings
    metrics: dict[str, Any]
    editing: dict[str, Any]
    data: dict[str, Any]
    encoders: dict[str, str | None]
    optimisation: dict[str, float | None]
    classifier: str | None
    device: str
    seed: int
    batch_size: int
    edit_images: int
    cell_size: int
    output_dir: str
    paste_back: dict[str, Any]

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> DemoSettings:
        """The settings of a composed ``demo`` config (an OmegaConf node or plain dict).

        Raises:
            ValueError: a key is missing (named).
        """
        c = settings_dict(cfg, _KEYS, what="the demo config", see=_SEE, exact=False)
        report = settings_dict(c["report"], ("edit_images", "cell_size"), what="report", see=_SEE)
        paths = settings_dict(c["paths"], ("output_dir",), what="paths", see=_SEE, exact=False)
        return cls(
            config=c,
            generator=dict(c["generator"]),
            alignment=dict(c["alignment"]),
            loss=dict(c["loss"]),
            inversion=InversionSettings.from_config(c["inversion"]),
            metrics=dict(c["metrics"]),
            editing=dict(c["editing"]),
            data=dict(c["data"]),
            encoders=dict(c["encoders"] or {}),
            optimisation={
                str(k): None if v is None else float(v)
                for k, v in (c["optimisation"] or {}).items()
            },
            classifier=c["classifier"] or None,
            device=str(c["device"]),
            seed=int(c["seed"]),
            batch_size=int(c["batch_size"]),
            edit_images=int(report["edit_images"]),
            cell_size=int(report["cell_size"]),
            output_dir=str(paths["output_dir"]),
            paste_back=dict(c["paste_back"]),
        )
