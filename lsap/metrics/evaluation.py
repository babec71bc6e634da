"""Evaluate inversions of several methods on the same originals, streamed and sharded over ranks.

A method is a folder (or file) of results: an ``lsap-invert`` output folder, a folder or file of
codes, or a folder of reconstructed images, matched to the originals by ``<name>`` (the image's
path relative to the originals' root without suffix, ``/`` -> ``__``). Codes are synthesised
(with their optimised noise maps when stored) and give SNCD and the editing metrics; image-only
methods give the fidelity metrics and FID. Codes refined by pivotal tuning name their tuned
generators: a method opened with ``tuned=True`` renders (and edits) each code through its own,
with ``tuned=False`` through the run's generator (the first stage alone); SNCD is always that of
the codes (the pivots) under the run's generator.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lsap.alignment.sncd import sncd
from lsap.core.errors import LsapFileError
from lsap.data.images import list_images, load_image, tensor_to_uint8
from lsap.editing.build import EditSpec
from lsap.editing.edit import factor_key
from lsap.io.checkpoints import load_tuned_generators
from lsap.io.inversions import CodeSet, find_images, generator_shas, has_codes, image_name
from lsap.metrics.scorer import Scorer
from lsap.metrics.streaming import MethodMetrics
from lsap.nets.crop import ValidRegion, crop_valid, fit_size
from lsap.nets.stylegan2 import Generator
from lsap.nets.synthesis import stack_noise, synthesize_each

log = logging.getLogger(__name__)


@dataclass
class Method:
    """One method's results: codes (preferred: they also give SNCD and edits) or images."""

    name: str
    path: Path
    codes: CodeSet | None = None
    images: dict[str, Path] | None = None
    tuned: bool = False  # render codes through the tuned generators they name (after PTI)
    _index: dict[str, int] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return "codes" if self.codes is not None else "images"

    def names(self) -> list[str]:
        return self.codes.names if self.codes is not None else list(self.images or {})


def open_method(
    name: str, path: str | Path, G: Generator, *, strict: bool = False, tuned: bool = True
) -> Method:
    """Open a method's results (see the module docstring); codes are checked against G.

    ``tuned``: render codes that name tuned generators through them (False: through G).
    """
    path = Path(path)
    if not path.exists():
        raise LsapFileError(path, f"no such file or folder (results of method {name!r})")
    if has_codes(path):
        codes = CodeSet(path, G.num_ws, G.w_dim, sha256=generator_shas(G), strict=strict)
        m = Method(name, path, codes=codes, tuned=tuned and codes.has_tuned_generators())
        m._index = {n: i for i, n in enumerate(codes.names)}
        return m
    return Method(name, path, images=find_images(path))


def match_originals(
    originals: str | Path | None, methods: Sequence[Method], *, on_missing: str = "error"
) -> list[tuple[str, str]]:
    """``(name, original image path)`` pairs present in every method, sorted by name.

    Args:
        originals: the originals' root folder (or one image); None = the ``image_path`` the codes
            of the first code method record.
        on_missing: "error" (a method lacks an original's result: a clear error) or "skip"
            (evaluate the names every method has, with a warning).
    """
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    if originals is not None:
        root = Path(originals)
        files = list_images(root)
        orig = {image_name(f, root): str(f) for f in files}
    else:
        coded = [m for m in methods if m.codes is not None]
        if not coded:
            raise ValueError("give `originals` (no method has codes that record their image_path)")
        cs = coded[0].codes
        orig = {}
        for i in range(len(cs)):
            rec = cs[i]
            if not rec.image_path:
                raise LsapFileError(rec.source, "records no image_path; give `originals`")
            orig[rec.name] = rec.image_path
    names = set(orig)
    for m in methods:
        have = set(m.names())
        missing = sorted(names - have)
        if missing and on_missing == "error":
            raise LsapFileError(
                m.path,
                f"method {m.name!r} has no result for {len(missing)} of {len(names)} originals "
                f"(e.g. {missing[:3]}); set on_missing=skip to evaluate the common ones",
            )
        if missing:
            log.warning("method %s lacks %d originals (skipped)", m.name, len(missing))
        names &= have
    if not names:
        raise ValueError("no original has results in every method")
    return [(n, orig[n]) for n in sorted(names)]


class _Items(Dataset):
    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        method: Method,
        size: int,
        crop: ValidRegion | None = None,
    ) -> None:
        self.pairs, self.method, self.size, self.crop = list(pairs), method, size, crop

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        name, orig_path = self.pairs[i]
        # photos (and image results, PNGs of the valid region) fill the valid region of a frame
        box = self.crop.box_at(self.size) if self.crop is not None else None
        item: dict[str, Any] = {"name": name, "original": load_image(orig_path, self.size, box=box)}
        m = self.method
        if m.codes is not None:
            rec = m.codes[m._index[name]]
            item["w_plus"], item["noise"] = rec.w_plus, rec.noise
            item["generator"] = rec.generator if m.tuned else None
        else:
            item["reconstruction"] = load_image(m.images[name], self.size, box=box)
        return item


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": [it["name"] for it in items],
        "original": torch.stack([it["original"] for it in items]),
    }
    if "w_plus" in items[0]:
        out["w_plus"] = torch.cat([it["w_plus"] for it in items])
        out["noise"] = [it["noise"] for it in items]
        out["generator"] = [it["generator"] for it in items]
    else:
        out["reconstruction"] = torch.stack([it["reconstruction"] for it in items])
    return out


@dataclass
class MethodResult:
    """Synced numbers (``MethodMetrics.compute``), this rank's per-image rows, and grid cells."""

    results: dict
    rows: list[dict[str, Any]]
    grid: list[dict[str, Any]]


def _small(images: Tensor, size: int, crop: ValidRegion | None = None) -> Tensor:
    """A grid cell: the valid region (``crop``) of [3, S, S], longer side at most ``size``."""
    images = crop_valid(images, crop)
    h, w = images.shape[-2:]
    if max(h, w) > size:
        images = torch.nn.functional.interpolate(
            images[None].float(), size=fit_size(h, w, size), mode="area"
        )[0]
    return tensor_to_uint8(images).cpu()


@torch.no_grad()
def evaluate_method(
    method: Method,
    pairs: Sequence[tuple[str, str]],
    *,
    G: Generator,
    scorer: Scorer,
    anchors: Sequence[Tensor] | None = None,
    edits: Sequence[EditSpec] = (),
    edit_metrics: Sequence[str] = ("id", "lpips", "sncd"),
    image_size: int | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    grid_images: int = 4,
    grid_size: int = 256,
) -> MethodResult:
    """Stream one method's results through the metrics.

    Args:
        method: from :func:`open_method`.
        pairs: ``(name, original path)`` from :func:`match_originals` (all ranks pass the same).
        G: the generator (synthesises codes; on the device to run on).
        scorer: per-image scores and FID features (on G's device).
        anchors: S^N anchors (``compute_anchors(G, num_samples, seed)``) for SNCD; None = no SNCD.
        edits: edits scored per factor (methods with codes only).
        edit_metrics: per-image editing metrics among id, lpips, sncd.
        image_size: size originals (and image results) are read at; default G.resolution (codes
            always are compared at G.resolution).
        rank, world_size: this process' shard is ``pairs[rank::world_size]``; the returned
            numbers are synced over ranks when torch.distributed is initialised.
        grid_images: per-rank number of images whose originals, reconstructions and edits are
            kept (uint8, at most ``grid_size`` px) for the PNG grid.

    Returns:
        :class:`MethodResult`.
    """
    device = G.w_avg.device
    size = G.resolution if method.codes is not None or image_size is None else int(image_size)
    coded = method.codes is not None
    edits = list(edits) if coded else []
    available = {
        "id": scorer.face is not None,
        "lpips": scorer.lpips is not None,
        "sncd": anchors is not None,
    }
    edit_metrics = [m for m in edit_metrics if available.get(m, False)]
    metrics = MethodMetrics(
        scorer.metrics,
        num_layers=G.num_ws if coded and anchors is not None else None,
        num_features=scorer.num_features,
        edits=[(e.name, e.factors) for e in edits],
        edit_metrics=edit_metrics,
    ).to(device)
    shard = list(pairs)[rank::world_size]
    loader = DataLoader(
        _Items(shard, method, size, G.crop),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    rows: list[dict[str, Any]] = []
    grid: list[dict[str, Any]] = []
    for batch in loader:
        originals = batch["original"].to(device)
        if coded:
            w_plus = batch["w_plus"].to(device)
            noise = stack_noise(G, batch["noise"])
            # each image's tuned generator after PTI (one batch's worth loaded at a time), else G
            tuned = load_tuned_generators(batch["generator"], G)
            gens = [tuned[p] for p in batch["generator"]]
            recon = synthesize_each(gens, w_plus, noise, batch_size=batch_size)
        else:
            recon = batch["reconstruction"].to(device)
        emb = scorer.embed(originals)
        scores = scorer.fidelity(originals, recon, original_embeddings=emb)
        per_layer = sncd(G, w_plus, anchors)[1] if coded and anchors is not None else None
        f_orig, f_rec = scorer.fid_features(originals), scorer.fid_features(recon)
        metrics.update(
            scores,
            num_images=originals.shape[0],
            sncd_per_layer=per_layer,
            original_features=f_orig,
            reconstruction_features=f_rec,
        )
        batch_rows = [{"name": n} for n in batch["name"]]
        for k, v in scores.items():
            for r, x in zip(batch_rows, v.tolist(), strict=True):
                r[k] = x
        if per_layer is not None:
            for r, x in zip(batch_rows, per_layer.sum(1).tolist(), strict=True):
                r["sncd"] = x
        keep = max(0, min(grid_images - len(grid), len(batch_rows)))
        cells = [
            {
                "name": n,
                "original": _small(originals[i], grid_size, G.crop),
                "reconstruction": _small(recon[i], grid_size, G.crop),
            }
            for i, n in enumerate(batch["name"][:keep])
        ]
        for spec in edits:
            for f in spec.factors:
                codes = spec.edit(w_plus, f)
                images = synthesize_each(gens, codes, noise, batch_size=batch_size)
                es = scorer.editing(images, recon, original_embeddings=emb)
                es = {k: v for k, v in es.items() if k in edit_metrics}
                if anchors is not None and "sncd" in edit_metrics:
                    es["sncd"] = sncd(G, codes, anchors)[0]
                metrics.update_edit(spec.name, f, es, features=scorer.fid_features(images))
                for k, v in es.items():
                    for r, x in zip(batch_rows, v.tolist(), strict=True):
                        r[f"edit/{spec.name}/{factor_key(f)}/{k}"] = x
                for i, c in enumerate(cells):
                    c.setdefault("edits", {}).setdefault(spec.name, []).append(
                        _small(images[i], grid_size, G.crop)
                    )
        rows.extend(batch_rows)
        grid.extend(cells)
    return MethodResult(metrics.compute(), rows, grid)


def gather_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's per-image rows on every rank (unchanged without torch.distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, rows)
    merged = [r for p in parts for r in p]
    return sorted(merged, key=lambda r: r["name"])
