"""The numbers of a comparison: every method's inversions of the same images, and their edits.

Per method: SNCD (total over the w+ layers, and per layer), MSE / PSNR / SSIM / LPIPS / ID (the
metrics the :class:`lsap.metrics.scorer.Scorer` is configured with) per image and averaged per
domain, and FID of the reconstructions against the originals. Per edit, factor and method: SNCD
of the edited codes, LPIPS to the unedited reconstruction, ID to the original, FID of the edited
images against the originals and, on the toy domain with a classifier, editability
(``lsap.metrics.attribute_edits``: the target attribute's change and the other attributes' change).
Everything comes back as plain numbers (JSON); the edited images come back separately for grids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lsap.alignment.sncd import sncd
from lsap.demo.inputs import PHOTO, TOY, DemoImages
from lsap.demo.methods import Inversion
from lsap.editing.build import EditSpec
from lsap.editing.edit import factor_key
from lsap.editing.render import render_edit
from lsap.metrics.attribute_edits import (  # attribute_effects: re-exported for old callers
    attribute_effects,
    attribute_index,
    attribute_predictions,
)
from lsap.metrics.scorer import Scorer
from lsap.nets.stylegan2 import Generator

MIN_FID_IMAGES = 2  # FID needs two images per set at least (a covariance)
ALL = "all"


@dataclass
class EditedImages:
    """One method's edit of every image: codes [N, F, num_ws, w_dim], images [N, F, 3, R, R]."""

    method: str
    edit: str
    factors: tuple[float, ...]
    codes: Tensor
    images: Tensor


def _mean(values: Tensor) -> float:
    """Mean of the finite entries (NaN when there is none)."""
    v = values.detach().double().flatten()
    v = v[torch.isfinite(v)]
    return float(v.mean()) if v.numel() else math.nan


def domain_groups(inputs: DemoImages) -> dict[str, list[int]]:
    """``all`` plus every domain present (``toy``, ``photo``) -> image positions."""
    groups = {ALL: list(range(len(inputs)))}
    for d in (TOY, PHOTO):
        idx = inputs.indices(d)
        if idx:
            groups[d] = idx
    return groups


def fid_group(inputs: DemoImages) -> tuple[str, list[int]] | None:
    """The images FID is computed on: the toy faces when there are enough of them (FID against
    out-of-domain photos would mix two distributions), else all images; None if too few."""
    toy = inputs.indices(TOY)
    if len(toy) >= MIN_FID_IMAGES:
        return TOY, toy
    if len(inputs) >= MIN_FID_IMAGES:
        return ALL, list(range(len(inputs)))
    return None


@torch.no_grad()
def frechet_distances(
    scorer: Scorer, reference: Tensor, sets: Mapping[str, Tensor], *, batch_size: int = 256
) -> dict[str, float]:
    """Frechet distance of each image set to the reference images in the scorer's feature space.

    Args:
        reference: [N, 3, R, R] in [-1, 1] (the originals).
        sets: name -> [M, 3, R, R] images.

    Returns:
        name -> distance (NaN without a feature extractor).
    """
    if scorer.features is None:
        return {k: math.nan for k in sets}
    from lsap.metrics.fid import FIDSets

    fids = FIDSets(list(sets), scorer.num_features)
    device = next(scorer.features.parameters()).device
    for s in range(0, reference.shape[0], batch_size):
        fids.update_reference(scorer.fid_features(reference[s : s + batch_size].to(device)).cpu())
    for name, images in sets.items():
        for s in range(0, images.shape[0], batch_size):
            fids.update(name, scorer.fid_features(images[s : s + batch_size].to(device)).cpu())
    return fids.compute()


def _scores_device(scorer: Scorer) -> torch.device:
    p = next(scorer.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def _fidelity(
    scorer: Scorer, originals: Tensor, recon: Tensor, batch_size: int
) -> dict[str, Tensor]:
    device = _scores_device(scorer)
    parts: dict[str, list[Tensor]] = {}
    for s in range(0, originals.shape[0], batch_size):
        sl = slice(s, s + batch_size)
        for k, v in scorer.fidelity(originals[sl].to(device), recon[sl].to(device)).items():
            parts.setdefault(k, []).append(v.cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


@torch.no_grad()
def score_inversions(
    G: Generator,
    anchors: Sequence[Tensor],
    inputs: DemoImages,
    inversions: Sequence[Inversion],
    scorer: Scorer,
    *,
    batch_size: int = 64,
) -> dict[str, dict[str, Any]]:
    """Fidelity, SNCD and FID of each method's reconstructions.

    Returns:
        method -> ``{"kind", "info", "seconds", "seconds_per_image", "per_image": {name:
        {metric: value}}, "mean": {group: {metric: value}}, "sncd_per_layer": {group: [num_ws]},
        "fid": {group: value}}``; groups are ``all`` and each domain present; metrics are the
        scorer's fidelity metrics plus ``sncd`` (total over the num_ws layers).
    """
    device = G.w_avg.device
    groups = domain_groups(inputs)
    fid_on = fid_group(inputs)
    out: dict[str, dict[str, Any]] = {}
    for inv in inversions:
        if inv.w_plus.shape[0] != len(inputs):
            raise ValueError(
                f"method {inv.name!r} holds {inv.w_plus.shape[0]} codes for {len(inputs)} images"
            )
        scores = _fidelity(scorer, inputs.images, inv.images, batch_size)
        total, per_layer = sncd(G, inv.w_plus.to(device), anchors)
        scores["sncd"] = total.cpu()
        per_image = {
            n: {k: float(v[i]) for k, v in scores.items()} for i, n in enumerate(inputs.names)
        }
        mean = {g: {k: _mean(v[idx]) for k, v in scores.items()} for g, idx in groups.items()}
        layers = {g: [float(x) for x in per_layer[idx].mean(0)] for g, idx in groups.items()}
        fid = {}
        if fid_on is not None:
            g, idx = fid_on
            fid[g] = frechet_distances(scorer, inputs.images[idx], {"r": inv.images[idx]})["r"]
        out[inv.name] = {
            "kind": inv.kind,
            "info": dict(inv.info),
            "seconds": inv.seconds,
            "seconds_per_image": inv.seconds / max(1, len(inputs)),
            "per_image": per_image,
            "mean": mean,
            "sncd_per_layer": layers,
            "fid": fid,
        }
    return out


@torch.no_grad()
def edit_inversions(
    G: Generator,
    inversions: Sequence[Inversion],
    edits: Sequence[EditSpec],
    *,
    batch_size: int = 64,
) -> list[EditedImages]:
    """Apply every edit with every factor to every method's codes (with their noise maps)."""
    device = G.w_avg.device
    out = []
    for inv in inversions:
        noise = [n.to(device) for n in inv.noise] if inv.noise is not None else None
        for spec in edits:
            codes, images = render_edit(
                G, inv.w_plus.to(device), spec.edit, spec.factors, noise, batch_size=batch_size
            )
            out.append(EditedImages(inv.name, spec.name, spec.factors, codes.cpu(), images.cpu()))
    return out


@torch.no_grad()
def score_edits(
    G: Generator,
    anchors: Sequence[Tensor],
    inputs: DemoImages,
    inversions: Sequence[Inversion],
    edited: Sequence[EditedImages],
    scorer: Scorer,
    *,
    classifier: nn.Module | None = None,
    batch_size: int = 64,
) -> dict[str, dict[str, Any]]:
    """Scores of every edit, factor and method.

    Args:
        classifier: the toy attribute classifier (``names``, ``predict``); editability is scored
            on the toy images with it. None = no editability scores.

    Returns:
        edit -> ``{"factors": [...], "target": attribute or None, "methods": {method:
        {factor_key: scores}}}`` with scores ``sncd`` (edited codes), ``lpips`` (to the unedited
        reconstruction), ``id`` (to the original; with a face network), ``fid`` (edited images vs
        the originals, on :func:`fid_group`'s images) and, with a classifier and toy images,
        ``target_delta``, ``target_shift``, ``target_success`` (edits with a target attribute),
        ``others_abs_delta``,
        ``others_max_abs_delta``, ``others_flip_rate`` and ``attribute_change`` ({attribute: mean
        change}) over the toy images (:func:`attribute_effects`).
    """
    device = G.w_avg.device
    sdev = _scores_device(scorer)
    by_name = {inv.name: inv for inv in inversions}
    toy = inputs.indices(TOY)
    fid_on = fid_group(inputs)
    names = list(classifier.names) if classifier is not None else []
    binary = [k == "binary" for k in classifier.config.kinds] if classifier is not None else []
    embeddings = None
    if scorer.face is not None:
        embeddings = torch.cat(
            [
                scorer.embed(inputs.images[s : s + batch_size].to(sdev)).cpu()
                for s in range(0, len(inputs), batch_size)
            ]
        )
    before_cache: dict[str, Tensor] = {}
    out: dict[str, dict[str, Any]] = {}
    for e in edited:
        inv = by_name[e.method]
        target = attribute_index(names, e.edit) if classifier is not None else None
        entry = out.setdefault(
            e.edit,
            {
                "factors": list(e.factors),
                "target": names[target] if target is not None else None,
                "methods": {},
            },
        )
        if classifier is not None and toy and e.method not in before_cache:
            before_cache[e.method] = attribute_predictions(
                classifier, inv.images[toy].to(device), batch_size=batch_size
            ).cpu()
        per_factor: dict[str, dict[str, Any]] = {}
        fid_sets = {}
        for j, f in enumerate(e.factors):
            images = e.images[:, j]  # [N, 3, R, R]
            s: dict[str, Any] = {
                "sncd": _mean(sncd(G, e.codes[:, j].to(device), anchors)[0]),
            }
            parts: dict[str, list[Tensor]] = {}
            for b in range(0, images.shape[0], batch_size):
                sl = slice(b, b + batch_size)
                emb = embeddings[sl].to(sdev) if embeddings is not None else None
                sc = scorer.editing(
                    images[sl].to(sdev), inv.images[sl].to(sdev), original_embeddings=emb
                )
                for k, v in sc.items():
                    parts.setdefault(k, []).append(v.cpu())
            s.update({k: _mean(torch.cat(v)) for k, v in parts.items()})
            if classifier is not None and toy:
                after = attribute_predictions(
                    classifier, images[toy].to(device), batch_size=batch_size
                ).cpu()
                s.update(attribute_effects(before_cache[e.method], after, f, target, binary))
                change = (after - before_cache[e.method]).mean(0)
                s["attribute_change"] = {n: float(change[k]) for k, n in enumerate(names)}
            if fid_on is not None:
                fid_sets[factor_key(f)] = images[fid_on[1]]
            per_factor[factor_key(f)] = s
        if fid_on is not None and fid_sets:
            refs = inputs.images[fid_on[1]]
            for k, v in frechet_distances(scorer, refs, fid_sets, batch_size=batch_size).items():
                per_factor[k]["fid"] = v
        entry["methods"][e.method] = per_factor
    return out


EDITABILITY_KEYS = (
    "target_shift",
    "target_success",
    "others_abs_delta",
    "others_flip_rate",
    "fid",
    "lpips",
    "id",
    "sncd",
)


def editability_summary(
    edit_scores: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[str, float]]:
    """Per method: the mean of each editing score over every edit and non-zero factor.

    ``target_shift`` / ``target_success`` average over the edits that have a target attribute.
    """
    acc: dict[str, dict[str, list[float]]] = {}
    for entry in edit_scores.values():
        for method, per_factor in entry["methods"].items():
            m = acc.setdefault(method, {})
            for fk, s in per_factor.items():
                if float(fk) == 0.0:
                    continue
                for k in EDITABILITY_KEYS:
                    v = s.get(k)
                    if isinstance(v, float) and math.isfinite(v):
                        m.setdefault(k, []).append(v)
    return {method: {k: sum(v) / len(v) for k, v in m.items() if v} for method, m in acc.items()}


@torch.no_grad()
def target_shift_per_image(
    G: Generator,
    codes: Any,
    names: Sequence[str],
    edits: Sequence[EditSpec],
    classifier: nn.Module,
    *,
    batch_size: int = 64,
) -> list[float]:
    """Edit success per image as the toy classifier reads it (the demo's ``target shift``).

    For each image: the change of each edit's target attribute (``interfacegan/smile`` ->
    ``smile``), signed towards the edit's side, between the unedited and the edited image,
    averaged over the edits that target an attribute and their non-zero factors.

    Args:
        codes: the images' codes (``lsap.io.inversions.CodeSet``: ``names``, ``[i]`` records with
            ``w_plus`` [1, num_ws, w_dim] and ``noise``).
        names: the images, in the order of the result.
        edits: the edits (``lsap.editing.build_edits``).
        classifier: the toy attribute classifier (``names``, ``predict``; ``lsap.io.classifier``).

    Returns:
        One value per image in [-1, 1] (> 0: the attribute moved the intended way); NaN for every
        image when no edit targets one of the classifier's attributes.
    """
    from lsap.nets.synthesis import stack_noise

    device = G.w_avg.device
    position = {n: i for i, n in enumerate(codes.names)}
    records = [codes[position[n]] for n in names]
    w = torch.cat([r.w_plus for r in records]).to(device)  # [N, num_ws, w_dim]
    noise = None
    if all(r.noise is not None for r in records):
        noise = [n.to(device) for n in stack_noise(G, [r.noise for r in records])]
    targeted = [
        (spec, t)
        for spec in edits
        if (t := attribute_index(classifier.names, spec.name)) is not None
    ]
    shifts: list[Tensor] = []
    before = None
    for spec, t in targeted:
        if before is None:
            _, unedited = render_edit(G, w, spec.edit, (0.0,), noise, batch_size=batch_size)
            before = attribute_predictions(classifier, unedited[:, 0], batch_size=batch_size)
        _, images = render_edit(G, w, spec.edit, spec.factors, noise, batch_size=batch_size)
        for j, f in enumerate(spec.factors):
            if f == 0:
                continue
            after = attribute_predictions(classifier, images[:, j], batch_size=batch_size)
            shifts.append((1.0 if f > 0 else -1.0) * (after[:, t] - before[:, t]))
    if not shifts:
        return [math.nan] * len(names)
    return torch.stack(shifts).mean(0).cpu().tolist()
