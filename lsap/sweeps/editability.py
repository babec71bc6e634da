"""Editability of a set of codes, read by an attribute classifier: the measure ``lsap-demo`` uses.

Each code is edited along labelled InterFaceGAN directions (by default the demo's: smile, glasses,
long hair, beard on the toy generator, factors -3 and +3), the edited images and the unedited
reconstruction are read by the attribute classifier, and the effects are averaged over edits and
factors (``lsap.metrics.attribute_edits.attribute_effects``): ``target_success`` (the fraction of faces whose
edited attribute crosses to the edit's side), ``target_shift`` (the classifier's change of that
attribute, signed towards the edit) and ``others_abs_delta`` (how much the other attributes move).

Generators without an attribute classifier (FFHQ and other real-image generators: no labelled
classifier ships) get no such numbers; their sweep report plots fidelity against SNCD, the paper's
proxy for editability, and ``lsap-eval editing=...`` measures edited FID / ID on the side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lsap.editing.build import EditSpec, build_edits
from lsap.editing.render import render_edit
from lsap.metrics.attribute_edits import (
    attribute_effects,
    attribute_index,
    attribute_predictions,
)
from lsap.nets.stylegan2 import Generator
from lsap.nets.synthesis import synthesize

EDIT_KEYS = ("target_success", "target_shift", "others_abs_delta")
MEASURE = (
    "attribute classifier ({classifier}) read before and after InterFaceGAN edits ({edits}) "
    "with factors {factors}: target_success = fraction of faces whose edited attribute crosses "
    "to the edit's side, target_shift = its signed change, others_abs_delta = mean change of the "
    "other attributes; means over edits and factors"
)


@dataclass
class EditProbe:
    """An attribute classifier and the labelled edits it reads."""

    classifier: nn.Module
    edits: list[EditSpec]
    source: str  # the classifier file, for the report

    @property
    def description(self) -> str:
        factors = sorted({f for e in self.edits for f in e.factors})
        return MEASURE.format(
            classifier=self.source,
            edits=", ".join(e.name.rsplit("/", 1)[-1] for e in self.edits),
            factors=factors,
        )


def demo_editing(generator_choice: str | None) -> dict[str, Any] | None:
    """The classifier and InterFaceGAN edits ``lsap-demo`` uses with this generator config
    (``conf/demo/<choice>.yaml``), or None when it names no classifier."""
    if not generator_choice:
        return None
    from omegaconf import OmegaConf

    from lsap.config import config_dir

    path = Path(config_dir(), "demo", f"{generator_choice}.yaml")
    if not path.is_file():
        return None
    demo = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    base = OmegaConf.to_container(OmegaConf.load(Path(config_dir(), "demo.yaml")), resolve=False)
    directions = ((demo.get("editing") or {}).get("interfacegan") or {}).get("directions")
    if not demo.get("classifier") or not directions:
        return None
    factors = base["editing"]["interfacegan"]["factors"]
    return {"classifier": demo["classifier"], "directions": directions, "factors": factors}


def build_probe(
    cfg: Mapping[str, Any] | str | None, G: Generator, generator_choice: str | None = None
) -> EditProbe | None:
    """The probe a sweep report's ``editability`` setting asks for.

    Args:
        cfg: ``"auto"`` (the demo's classifier and edits for this generator config, None when the
            demo has none), ``"none"`` / None, or ``{classifier, directions: {attr: file},
            factors}`` (an ``lsap.io.classifier`` file; direction names must be its attributes).
        generator_choice: the job's ``generator`` config option (``toy32``, ``ffhq``, ...).
    """
    if cfg is None or cfg == "none":
        return None
    if cfg == "auto":
        cfg = demo_editing(generator_choice)
        if cfg is None:
            return None
    if not isinstance(cfg, Mapping):
        raise ValueError(f"editability must be auto, none or a mapping, got {cfg!r}")
    from lsap.assets import resolve
    from lsap.io.classifier import load_toy_classifier

    factors = [float(f) for f in cfg.get("factors") or (-3.0, 3.0) if float(f) != 0.0]
    edits = build_edits(
        {
            "interfacegan": {
                "directions": dict(cfg["directions"]),
                "layers": None,  # every w+ layer, as the demo's edits
                "factors": factors,
            }
        },
        G,
    )
    classifier = load_toy_classifier(resolve(cfg["classifier"]), G.w_avg.device).eval()
    names = list(classifier.names)
    unknown = [e.name for e in edits if attribute_index(names, e.name) is None]
    if unknown:
        raise ValueError(f"edits {unknown} name no attribute of the classifier ({names})")
    return EditProbe(classifier, edits, str(cfg["classifier"]))


@torch.no_grad()
def edit_scores(
    probe: EditProbe,
    G: Generator,
    w_plus: Tensor,
    noise: Sequence[Tensor] | None = None,
    *,
    batch_size: int = 64,
) -> dict[str, float]:
    """Mean editability of codes over the probe's edits and factors.

    Args:
        w_plus: [N, num_ws, w_dim] codes (any device; moved to G's).
        noise: per-layer noise maps [N, 1, R, R] the codes were inverted with, or None (the
            generator's constant noise).

    Returns:
        ``{target_success, target_shift, others_abs_delta}`` (NaN where undefined, e.g. no face
        on the side an edit leaves).
    """
    device = G.w_avg.device
    w_plus = w_plus.to(device)
    noise = [n.to(device) for n in noise] if noise is not None else None
    clf = probe.classifier
    names = list(clf.names)
    binary = [k == "binary" for k in clf.config.kinds]
    recon = synthesize(G, w_plus, noise, batch_size=batch_size)
    before = attribute_predictions(clf, recon, batch_size=batch_size).cpu()
    acc: dict[str, list[float]] = {k: [] for k in EDIT_KEYS}
    for spec in probe.edits:
        target = attribute_index(names, spec.name)
        _, images = render_edit(
            G, w_plus, spec.edit, spec.factors, noise, batch_size=batch_size
        )  # [N, F, 3, R, R]
        for j, f in enumerate(spec.factors):
            after = attribute_predictions(clf, images[:, j], batch_size=batch_size).cpu()
            eff = attribute_effects(before, after, f, target, binary)
            for k in EDIT_KEYS:
                v = eff.get(k, math.nan)
                if math.isfinite(v):
                    acc[k].append(v)
    return {k: (sum(v) / len(v) if v else math.nan) for k, v in acc.items()}
