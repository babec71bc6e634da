"""The demo's pieces from its settings (``lsap.demo.settings.DemoSettings``):
generator and anchors, encoders, one objective per optimisation method, edits, metric networks,
and the toy classifier. Used by ``lsap-demo`` and ``bench/reproduce_toy.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lsap.config import plain
from lsap.demo.settings import DemoSettings
from lsap.editing.build import EditSpec, build_edits
from lsap.inversion.settings import InversionSettings
from lsap.metrics.scorer import Scorer
from lsap.nets.stylegan2 import Generator

log = logging.getLogger(__name__)


@dataclass
class DemoSetup:
    """Everything a comparison needs besides the images.

    Attributes:
        G: the generator (eval mode, no gradients).
        anchors: its S^N anchors (num_ws tensors [C_i]).
        encoders: method name -> encoder (``lsap.load_encoder``), in config order.
        objectives: method name -> objective of latent optimisation (``build_objective``).
        optimisation: keyword options of ``optimize_latents`` (space, steps, lr, schedule,
            optimize_noise, w_std).
        edits: the edits and their factors.
        scorer: metric networks (LPIPS, ID, FID features) and fidelity metrics.
        classifier: the toy attribute classifier, or None.
        notes: caveats for the report (offline stand-ins, missing parts).
        settings: the ``inversion`` group, typed (``optimisation`` is its ``optimize_kwargs``).
    """

    G: Generator
    anchors: list[Tensor]
    encoders: dict[str, nn.Module]
    objectives: dict[str, nn.Module]
    optimisation: dict[str, Any]
    edits: list[EditSpec]
    scorer: Scorer
    classifier: nn.Module | None = None
    notes: list[str] = field(default_factory=list)
    settings: InversionSettings | None = None


def shipped(path: Any) -> bool:
    """False for an ``asset:<name>`` that this installation does not ship (any other path: True,
    so that a missing file of the user's is still an error naming it)."""
    from lsap.assets import ASSET_PREFIX, ASSETS_DIR

    s = str(path)
    return not s.startswith(ASSET_PREFIX) or (ASSETS_DIR / s[len(ASSET_PREFIX) :]).is_file()


def load_encoders(
    paths: Mapping[str, Any] | None, G: Generator, device: torch.device
) -> tuple[dict[str, nn.Module], list[str]]:
    """Encoders named in ``paths`` (name -> file, ``asset:<name>`` allowed; null entries skipped).

    Returns:
        (name -> encoder, notes): a note for each skipped encoder (null, or a packaged
        ``asset:`` this installation lacks), and for each encoder recorded as trained for
        another generator (its codes are then scored as they are).

    Raises:
        CheckpointError: a missing or unreadable file (naming it).
    """
    from lsap.assets import resolve
    from lsap.io.encoders import load_encoder

    out, notes = {}, []
    for name, path in (paths or {}).items():
        if not path:
            msg = f"encoders.{name} is null: method {name} skipped (give encoders.{name}=<file>)"
            log.warning(msg)
            notes.append(msg)
            continue
        if not shipped(path):
            msg = f"encoders.{name} = {path} is not shipped with this installation: {name} skipped"
            log.warning(msg)
            notes.append(msg)
            continue
        enc = load_encoder(resolve(path), device)
        trained_for = getattr(enc, "generator_sha256", None)
        if trained_for and G.sha256 and trained_for != G.sha256:
            msg = (
                f"encoder {name} ({path}) was trained for generator {trained_for[:12]}, "
                f"not this one ({G.sha256[:12]})"
            )
            log.warning(msg)
            notes.append(msg)
        out[str(name)] = enc.requires_grad_(False)
    return out, notes


def build_objectives(
    loss: Mapping[str, Any], sncd_weights: Mapping[str, float] | None, G: Generator, anchors
) -> dict[str, nn.Module]:
    """One objective per optimisation method: the ``loss`` config with its ``sncd`` weight set
    to the method's (``projector: 0``, ``lsap_o: 0.5``)."""
    from lsap.losses import build_objective

    out = {}
    for name, weight in (sncd_weights or {}).items():
        if weight is None:
            continue
        cfg = {**plain(loss), "sncd": float(weight)}
        out[str(name)] = build_objective(cfg, generator=G, anchors=anchors)
    return out


def build_demo_edits(
    editing: Mapping[str, Any] | None, G: Generator, notes: list[str] | None = None
) -> list[EditSpec]:
    """The InterFaceGAN edits of ``editing.interfacegan.directions``; SeFa (``editing.sefa``)
    when no direction is configured. Direction paths may be ``asset:<name>``; packaged ones
    this installation lacks are left out (with a note appended to ``notes``)."""
    from lsap.assets import resolve

    editing = plain(editing) or {}
    ig = editing.get("interfacegan") or {}
    directions = {}
    for name, entry in (ig.get("directions") or {}).items():
        path = entry["path"] if isinstance(entry, Mapping) else entry
        if shipped(path):
            directions[name] = entry
        elif notes is not None:
            notes.append(f"InterFaceGAN direction {name} ({path}) is not shipped: left out")
    if directions:
        resolved = {}
        for name, entry in directions.items():
            if isinstance(entry, Mapping):
                resolved[name] = {**entry, "path": str(resolve(entry["path"]))}
            else:
                resolved[name] = str(resolve(entry))
        return build_edits({"interfacegan": {**ig, "directions": resolved}}, G)
    if editing.get("sefa"):
        log.info("no InterFaceGAN direction: editing with SeFa directions")
        if notes is not None:
            notes.append(
                "no InterFaceGAN direction: edits along SeFa directions (no target attribute)"
            )
        return build_edits({"sefa": editing["sefa"]}, G)
    return []


def load_generator_for_demo(generator: Mapping[str, Any], device: torch.device) -> Generator:
    """The ``generator`` config's generator, in eval mode without gradients."""
    from lsap.io import generator_from_config

    return generator_from_config(generator, device).eval().requires_grad_(False)


def build_setup(
    settings: DemoSettings, device: torch.device, G: Generator | None = None
) -> DemoSetup:
    """All pieces from the demo's settings (``conf/demo.yaml``, typed by
    :meth:`DemoSettings.from_config`); ``G``: the generator when already loaded
    (:func:`load_generator_for_demo`)."""
    from lsap.alignment.anchors import anchors_from_config
    from lsap.assets import resolve
    from lsap.metrics.scorer import build_scorer, metric_notes

    G = load_generator_for_demo(settings.generator, device) if G is None else G
    anchors = anchors_from_config(G, settings.alignment)
    encoders, notes = load_encoders(settings.encoders, G, device)
    objectives = build_objectives(settings.loss, settings.optimisation, G, anchors)
    options = settings.inversion.optimize_kwargs(G) if objectives else {}
    edits = build_demo_edits(settings.editing, G, notes)
    scorer = build_scorer(settings.metrics, crop=G.crop).to(device)
    classifier = None
    if settings.classifier:
        from lsap.io.classifier import load_toy_classifier

        classifier = load_toy_classifier(resolve(settings.classifier), device)
        if classifier.config.resolution != G.resolution:
            raise ValueError(
                f"the classifier reads {classifier.config.resolution} px images, the generator "
                f"makes {G.resolution} px"
            )
    for obj in objectives.values():
        obj.to(device)
    notes += metric_notes(settings.metrics)
    return DemoSetup(
        G,
        list(anchors),
        encoders,
        objectives,
        options,
        edits,
        scorer,
        classifier,
        notes,
        settings.inversion,
    )
