"""What ``lsap-demo`` runs: invert the images with every method, edit, evaluate, write the report.

Output folder::

    report.html                      self-contained page (images embedded as base64 PNGs)
    report.json                      every number (per image, per domain, per edit and factor)
    originals/<name>.png             the inputs at the generator's resolution
    methods/<method>/codes/<name>.pt codes in lsap-invert's layout (lsap-edit / lsap-eval read them)
    methods/<method>/reconstructions/<name>.png
    grids/reconstructions.png, grids/<edit>.png

Face-aligned photos (the astronaut, ``data.align=true``) with ``paste_back.enabled`` also::

    pasted/<method>/<name>.png       the photo with the method's reconstruction pasted back
    originals/photos/<name>.png      the full photo when it was not a file (the astronaut)
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lsap.core.atomic import (
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from lsap.core.errors import LsapFileError
from lsap.data.images import load_crop_photo, save_photo
from lsap.data.paste import PasteMask, PhotoCrop, paste_back
from lsap.demo.build import DemoSetup
from lsap.demo.compare import (
    EditedImages,
    edit_inversions,
    editability_summary,
    score_edits,
    score_inversions,
)
from lsap.demo.inputs import PHOTO, TOY, DemoImages
from lsap.demo.methods import (
    Inversion,
    invert_with_encoder,
    invert_with_optimisation,
)
from lsap.demo.report import (
    edit_grid,
    json_safe,
    overview,
    png_bytes,
    render_html,
    stack_edit_rows,
)
from lsap.io.inversions import CodeRecord
from lsap.nets.crop import ValidRegion, crop_valid

log = logging.getLogger(__name__)

DEFINITIONS = {
    "sncd": "sum over the num_ws w+ layers of 1 - cos(n_i, a_i), n_i the normalised style of "
    "layer i and a_i the mean normalised style of the generator's samples (LSAP); lower = closer "
    "to the synthetic distribution",
    "mse / psnr / ssim": "on images quantised to uint8 like saved PNGs, values on [0, 1]; PSNR "
    "in dB capped at 100",
    "lpips": "LPIPS distance to the original (lower is better); see the caveats for its network",
    "id": "cosine similarity of face embeddings of original and reconstruction (higher is better)",
    "fid": "Frechet distance between the feature statistics of the originals and of the "
    "reconstructions (or edited images), in the configured feature space",
    "target shift": "classifier reading of the edited attribute after minus before the edit, "
    "signed towards the edit's side (toy faces; binary attributes: probability, scalar ones: "
    "value in [0, 1])",
    "target success": "binary target: of the toy faces on the side the edit leaves, the fraction "
    "that cross p = 0.5; scalar target: the fraction moved by > 0.1 the intended way",
    "others |Δ|": "mean absolute change of the other attributes' readings (stability; lower is "
    "better)",
    "others flipped": "fraction of the other binary attributes' readings that cross p = 0.5",
    "encoder methods": "e4e: the encoder trained without SNCD; lsap_e: with the SNCD term (LSAP_E)",
    "optimisation methods": "projector: latent optimisation with sncd 0; lsap_o: with sncd > 0 "
    "(LSAP_O); both from w_avg, same steps, seeds and objective otherwise",
}


def _cache_key(setup: DemoSetup, inputs: DemoImages, name: str, seed: int, extra: str) -> str:
    h = hashlib.sha256()
    h.update(
        f"{name}|{seed}|{setup.G.sha256}|{extra}|{sorted(setup.optimisation.items())}".encode()
    )
    h.update(repr(dict(getattr(setup.objectives[name], "weights", {}))).encode())
    h.update("|".join(inputs.names).encode())
    h.update(inputs.images.float().cpu().numpy().tobytes())
    return h.hexdigest()


def invert_all(
    setup: DemoSetup,
    inputs: DemoImages,
    *,
    seed: int = 0,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    cache_extra: str = "",
) -> list[Inversion]:
    """Every configured method's inversion: the encoders, then the optimisation methods.

    Args:
        cache_dir: where optimisation results are kept (``<method>.pt``) and reused by a later
            call with the same method, images, seed, generator, weights and options (long
            benchmark runs resume there); None = no cache.
        cache_extra: more text the cache key depends on (e.g. the resolved loss options).
    """
    G = setup.G
    out = []
    for name, enc in setup.encoders.items():
        log.info("encoding %d images with %s", len(inputs), name)
        out.append(invert_with_encoder(name, enc, G, inputs.images, batch_size=batch_size))
    for name, objective in setup.objectives.items():
        log.info(
            "optimising %d images with %s (%d steps)",
            len(inputs),
            name,
            setup.optimisation.get("steps", 0),
        )
        cached = None
        if cache_dir is not None:
            key = _cache_key(setup, inputs, name, seed, cache_extra)
            cached = Path(cache_dir) / f"{name}.pt"
            if cached.is_file():
                rec = torch.load(cached, weights_only=True)
                if rec.get("key") == key:
                    log.info("reusing %s's inversions from %s", name, cached)
                    out.append(Inversion(**rec["inversion"]))
                    continue
        with torch.enable_grad():
            inv = invert_with_optimisation(
                name,
                G,
                inputs.images,
                objective,
                names=inputs.names,
                seed=seed,
                settings=setup.settings,
                w_std=setup.optimisation.get("w_std"),
                batch_size=batch_size,
            )
        if cached is not None:
            atomic_torch_save(cached, {"key": key, "inversion": dataclasses.asdict(inv)})
        out.append(inv)
    if not out:
        raise ValueError("no method to run: configure encoders and/or optimisation")
    return out


def save_inversion(
    output_dir: Path,
    inv: Inversion,
    inputs: DemoImages,
    scores: Mapping[str, Any],
    provenance: Mapping[str, Any],
    photo_crops: Sequence[PhotoCrop | None] | None = None,
    crop: ValidRegion | None = None,
) -> None:
    """``methods/<method>/codes/<name>.pt`` (lsap-invert's code files, with ``photo_crops[i]``
    as their ``photo_crop``) and reconstructions (the valid region of a non-square generator,
    ``crop``)."""
    root = output_dir / "methods" / inv.name
    photo_crops = list(photo_crops) if photo_crops is not None else [None] * len(inputs)
    for i, name in enumerate(inputs.names):
        png = png_bytes(crop_valid(inv.images[i], crop))
        atomic_write_bytes(root / "reconstructions" / f"{name}.png", png)
        CodeRecord(
            name=name,
            w_plus=inv.w_plus[i : i + 1],
            noise=inv.noise_of(i),
            image_path=str(output_dir / "originals" / f"{name}.png"),
            metrics=dict(scores["per_image"][name]),
            provenance={**provenance, "method": inv.name, "kind": inv.kind},
            photo_crop=photo_crops[i],
        ).save(root / "codes" / f"{name}.pt")


def keep_photos(output_dir: Path, inputs: DemoImages) -> list[PhotoCrop | None]:
    """The images' crops, each naming a photo file: a photo held only in memory (the astronaut)
    is written to ``originals/photos/<name>.png`` first, so that ``lsap-edit`` on the demo's
    codes can paste back too."""
    crops = list(inputs.crops)
    for i, (crop, photo) in enumerate(zip(inputs.crops, inputs.photos, strict=True)):
        if crop is not None and photo is not None:
            path = save_photo(photo, output_dir / "originals" / "photos" / f"{inputs.names[i]}.png")
            crops[i] = dataclasses.replace(crop, path=str(path.resolve()))
    return crops


def paste_inversions(
    output_dir: Path,
    inversions: Sequence[Inversion],
    inputs: DemoImages,
    crops: Sequence[PhotoCrop | None],
    mask: PasteMask,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every method's reconstruction of each face-aligned photo pasted back into the photo
    (``pasted/<method>/<name>.png``).

    Returns:
        ``({name: {"photo": [H, W, 3] uint8, method: pasted [H, W, 3] uint8, ...}}, notes)``;
        a photo that cannot be read is left out with a note.
    """
    out: dict[str, dict[str, Any]] = {}
    notes = []
    for i, crop in enumerate(crops):
        if crop is None:
            continue
        name = inputs.names[i]
        try:
            photo = inputs.photos[i] if inputs.photos[i] is not None else load_crop_photo(crop)
        except LsapFileError as e:
            notes.append(f"{name}: not pasted back ({e})")
            continue
        out[name] = {"photo": photo}
        for inv in inversions:
            pasted = paste_back(photo, inv.images[i], crop, mask)
            save_photo(pasted, output_dir / "pasted" / inv.name / f"{name}.png")
            out[name][inv.name] = pasted
    return out, notes


def grid_indices(inputs: DemoImages, n: int) -> list[int]:
    """Images shown in the edit grids: the first toy faces and the first photo."""
    toy, photo = inputs.indices(TOY), inputs.indices(PHOTO)
    if not toy:
        return photo[:n]
    return (toy[: n - 1] + photo[:1]) if photo else toy[:n]


def summary_line(setup: DemoSetup, inputs: DemoImages, methods: Sequence[str], wall: float) -> str:
    G = setup.G
    toy, photo = inputs.indices(TOY), inputs.indices(PHOTO)
    what = []
    if toy:
        what.append(
            f"{len(toy)} held-out toy images ({inputs.sources[toy[0]]} .. {inputs.sources[toy[-1]]})"
        )
    if photo:
        what.append(f"{len(photo)} photo(s) ({', '.join(inputs.names[i] for i in photo[:4])})")
    return (
        f"Generator {str(G.sha256 or 'random')[:12]} ({G.resolution} px, num_ws {G.num_ws}, "
        f"w_dim {G.w_dim}); {' and '.join(what)}; methods {', '.join(methods)}; "
        f"{len(setup.edits)} edits; {wall:.1f} s in total."
    )


@dataclass
class Comparison:
    """Every method's inversions of the same images, their edits, and the scores of both
    (``score_inversions``, ``score_edits``, ``editability_summary``)."""

    inversions: list[Inversion]
    methods: dict[str, dict[str, Any]]
    edited: list[EditedImages]
    edits: dict[str, dict[str, Any]]
    editability: dict[str, dict[str, float]]


def compare_methods(
    setup: DemoSetup,
    inputs: DemoImages,
    *,
    seed: int = 0,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    cache_extra: str = "",
) -> Comparison:
    """Invert with every method, edit every inversion, score both (files are written only to
    ``cache_dir``: see :func:`invert_all`)."""
    G = setup.G
    inversions = invert_all(
        setup,
        inputs,
        seed=seed,
        batch_size=batch_size,
        cache_dir=cache_dir,
        cache_extra=cache_extra,
    )
    methods = score_inversions(
        G, setup.anchors, inputs, inversions, setup.scorer, batch_size=batch_size
    )
    log.info("editing: %d edits x %d methods", len(setup.edits), len(inversions))
    edited = edit_inversions(G, inversions, setup.edits, batch_size=batch_size)
    edits = score_edits(
        G,
        setup.anchors,
        inputs,
        inversions,
        edited,
        setup.scorer,
        classifier=setup.classifier,
        batch_size=batch_size,
    )
    return Comparison(inversions, methods, edited, edits, editability_summary(edits))


def run_demo(
    setup: DemoSetup,
    inputs: DemoImages,
    output_dir: str | Path,
    *,
    seed: int = 0,
    batch_size: int = 64,
    edit_images: int = 3,
    cell_size: int = 96,
    provenance: Mapping[str, Any] | None = None,
    started: float | None = None,
    paste: PasteMask | None = None,
) -> dict[str, Any]:
    """Invert, edit, evaluate and write the report under ``output_dir`` (see the module docstring).

    Args:
        setup: the pieces (:func:`lsap.demo.build.build_setup`).
        inputs: the images.
        seed: seeds of the optimisation (per image, from the image's name).
        edit_images: images shown in each edit grid.
        cell_size: displayed size of each image in the report (pixels).
        provenance: recorded in the JSON and in every code file.
        started: ``time.perf_counter()`` at the start of the command (the report's wall time
            includes loading); None = the start of this call.
        paste: the mask for pasting reconstructions of face-aligned photos back into them
            (``lsap.data.paste.PasteMask.from_config``); None = no pasting.

    Returns:
        the results, as written to ``report.json``.
    """
    started = time.perf_counter() if started is None else started
    output_dir = Path(output_dir)
    provenance = dict(provenance or {})
    G = setup.G
    crop = G.crop  # what is written and shown: the valid region of a non-square generator
    skipped_notes = [f"skipped {path}: {reason}" for path, reason in inputs.skipped]
    for note in skipped_notes:
        log.warning(note)
    for i, name in enumerate(inputs.names):
        png = png_bytes(crop_valid(inputs.images[i], crop))
        atomic_write_bytes(output_dir / "originals" / f"{name}.png", png)

    crops = keep_photos(output_dir, inputs)

    comparison = compare_methods(setup, inputs, seed=seed, batch_size=batch_size)
    inversions, methods = comparison.inversions, comparison.methods
    edited, edits = comparison.edited, comparison.edits
    for inv in inversions:
        save_inversion(output_dir, inv, inputs, methods[inv.name], provenance, crops, crop)
    pasted, paste_notes = (
        ({}, [])
        if paste is None
        else paste_inversions(output_dir, inversions, inputs, crops, paste)
    )
    names = [inv.name for inv in inversions]
    images_info = []
    for i, n in enumerate(inputs.names):
        entry: dict[str, Any] = {
            "name": n,
            "source": inputs.sources[i],
            "domain": inputs.domains[i],
        }
        if inputs.labels is not None and inputs.domains[i] == TOY:
            entry["labels"] = dict(zip(inputs.label_names, inputs.labels[i].tolist(), strict=True))
        images_info.append(entry)
    samples_sncd = sum(1.0 - float(a.norm()) for a in setup.anchors)
    results: dict[str, Any] = {
        "generator": {
            "sha256": G.sha256,
            "resolution": G.resolution,
            "num_ws": G.num_ws,
            "w_dim": G.w_dim,
            "samples_expected_sncd": samples_sncd,
        },
        "images": images_info,
        "skipped": [{"path": path, "reason": reason} for path, reason in inputs.skipped],
        "methods": methods,
        "edits": edits,
        "editability": comparison.editability,
        "pasted": {
            n: {m: f"pasted/{m}/{n}.png" for m in p if m != "photo"} for n, p in pasted.items()
        },
        "notes": [*skipped_notes, *paste_notes, *setup.notes],
        "definitions": {
            **DEFINITIONS,
            "sncd of generator samples": f"{samples_sncd:.4f} on average (sum_i 1 - ||a_i||)",
        },
        "provenance": provenance,
    }

    # grids (PNG files and the report's images)
    recon = {inv.name: crop_valid(inv.images, crop) for inv in inversions}
    originals = crop_valid(inputs.images, crop)
    from lsap.data.grid import image_grid, save_grid

    cols = [[originals[i], *(r[i] for r in recon.values())] for i in range(len(inputs))]
    save_grid(
        image_grid(cols, size=min(cell_size, G.resolution * 4)),
        output_dir / "grids" / "reconstructions.png",
    )
    by_key = {(e.method, e.edit): e.images for e in edited}
    chosen = grid_indices(inputs, edit_images)
    grids = {}
    for spec in setup.edits:
        rows = stack_edit_rows(by_key, spec.name, names, chosen, inputs.names)
        rows = [(label, crop_valid(images, crop)) for label, images in rows]
        grid = edit_grid(rows, min(cell_size, max(G.resolution, 64)))
        save_grid(grid, output_dir / "grids" / f"{spec.name.replace('/', '__')}.png")
        grids[spec.name] = rows

    wall = time.perf_counter() - started
    results["wall_time_s"] = wall
    results["summary"] = summary_line(setup, inputs, names, wall)
    results["overview"] = overview(results)
    page = render_html(
        json_safe(results),
        names=inputs.names,
        originals=originals,
        reconstructions=recon,
        grids=grids,
        cell=cell_size,
        pasted=pasted,
    )
    atomic_write_text(output_dir / "report.html", page)
    atomic_write_json(output_dir / "report.json", json_safe(results))
    log.info("wrote %s (%.1f s)", output_dir / "report.html", wall)
    return results
