"""``lsap-edit``: edit inverted codes (InterFaceGAN, GANSpace, SeFa) and render them.

Writes under the run folder: ``edits/<method>/<edit>/factor<factor>/<name>.png``, the edited codes
``edits/<method>/<edit>/<name>.pt`` (``w_plus [F, num_ws, w_dim]``, factors, noise, provenance),
one grid per edit ``grids/<method>__<edit>.png`` (rows = images, columns = factors) and
``edit.json``. Codes of face-aligned photos (code files with a ``photo_crop``) are also pasted back
into their photos: ``pasted/<method>/<edit>/factor<factor>/<name>.png`` (the ``paste_back``
group). An image whose edited codes exist is not redone (resume with the same run folder).
Codes refined by pivotal tuning (code files naming their tuned generator) are edited through that
generator; ``generator`` may itself be a tuned generator (a delta file with ``generator.base``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from lsap.cli._common import check_config_dir, config_dir, one_line_errors, resolve_device
from lsap.cli._runtime import build_loggers, finish_loggers, log_to
from lsap.cli._threads import set_num_threads
from lsap.core.errors import LsapFileError
from lsap.core.plain import plain
from lsap.core.provenance import provenance
from lsap.data.grid import image_grid, save_grid
from lsap.data.images import load_crop_photo, save_image, save_photo, tensor_to_uint8
from lsap.data.paste import PasteMask, paste_back
from lsap.editing import build_edits, describe_edits, factor_key
from lsap.editing.render import render_edit
from lsap.io import atomic_write_json, generator_from_config
from lsap.io.checkpoints import load_tuned_generators
from lsap.io.inversions import CodeRecord, CodeSet, generator_shas, recorded_generator
from lsap.nets.crop import crop_valid
from lsap.nets.synthesis import stack_noise

log = logging.getLogger(__name__)


def generator_for_codes(generator: Any, codes: str, device: torch.device) -> Any:
    """The ``generator`` config's generator, or, when the codes were made for another one that
    their provenance can rebuild (a shipped toy model or a random ``tiny`` one:
    ``lsap.io.inversions.recorded_generator``), that one, so that codes of the toy models edit
    without repeating ``generator=``."""
    G = generator_from_config(generator, device)
    recorded = recorded_generator(codes)
    if recorded is None or recorded[1] in generator_shas(G):
        return G
    config, sha256 = recorded
    try:
        R = generator_from_config(config, device)
    except (LsapFileError, ValueError, KeyError):
        return G  # not rebuildable here: CodeSet warns about the mismatch as before
    if R.sha256 != sha256:
        return G
    log.warning(
        "the codes were made with generator %s (%s), not the configured one (%s): using theirs",
        sha256[:12],
        config.get("path") or f"random, seed {config.get('seed', 0)}",
        str(G.sha256)[:12],
    )
    return R


def run(cfg: DictConfig) -> dict:
    """Edit ``cfg.codes`` with every edit of ``cfg.editing``; return the summary written to edit.json."""
    c = plain(
        cfg, throw_on_missing=True
    )  # the one reading of the config: plain values from here on
    set_num_threads(data_workers=0, cpu_processes=1)  # OMP_NUM_THREADS, else physical cores
    device = resolve_device(c["device"])
    G = generator_for_codes(c["generator"], c["codes"], device)
    specs = build_edits(c["editing"], G)
    if not specs:
        raise ValueError(
            "no edits configured: choose editing=sefa|ganspace|interfacegan and give directions, "
            "e.g. +editing.interfacegan.directions.age=/path/age.pt"
        )
    codes = CodeSet(
        c["codes"], G.num_ws, G.w_dim, sha256=generator_shas(G), strict=bool(c["strict"])
    )
    paste = PasteMask.from_config(c["paste_back"])
    out = Path(c["paths"]["output_dir"])
    prov = provenance(config=c, generator=G)
    grid_max = int(c["grid"]["max_images"])
    grid_rows: dict[str, list[list[torch.Tensor]]] = {s.name: [] for s in specs}
    written = skipped = tuned_count = pasted = 0
    bs = int(c["batch_size"])
    for start in range(0, len(codes), bs):
        idx = list(range(start, min(start + bs, len(codes))))
        recs = [codes[i] for i in idx]
        tuned = load_tuned_generators([r.generator for r in recs], G)  # None -> G
        photos = _Photos(recs) if paste is not None else None
        for spec in specs:
            folder = out / "edits" / spec.name
            todo = [j for j, r in enumerate(recs) if not (folder / f"{r.name}.pt").is_file()]
            in_grid = [j for j, i in enumerate(idx) if i < grid_max]
            sel = sorted(set(todo) | set(in_grid))
            skipped += len(recs) - len(todo)
            if not sel:
                continue
            w = torch.cat([recs[j].w_plus for j in sel]).to(device)
            noise = stack_noise(G, [recs[j].noise for j in sel])
            gens = [tuned[recs[j].generator] for j in sel]
            edited, images = render_edit(
                gens[0] if len(tuned) == 1 else gens,
                w,
                spec.edit,
                spec.factors,
                noise,
                batch_size=int(c["synthesis_batch_size"]),
            )
            for k, j in enumerate(sel):
                rec = recs[j]
                # PNGs and grids hold the valid region of a non-square generator (generator.crop)
                shown = [crop_valid(im, G.crop) for im in images[k]]
                if j in in_grid:
                    grid_rows[spec.name].append([im.cpu() for im in shown])
                if j not in todo:
                    continue
                for f, im in zip(spec.factors, shown, strict=True):
                    path = folder / f"factor{factor_key(f)}" / f"{rec.name}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    save_image(im, path)
                photo = photos.get(j) if photos is not None else None
                if photo is not None:
                    for f, im in zip(spec.factors, images[k], strict=True):
                        path = (
                            out
                            / "pasted"
                            / spec.name
                            / f"factor{factor_key(f)}"
                            / f"{rec.name}.png"
                        )
                        save_photo(paste_back(photo, im, rec.photo_crop, paste), path)
                    pasted += 1
                CodeRecord(  # the code record of the image, its codes edited with each factor
                    name=rec.name,
                    w_plus=edited[k],
                    noise=rec.noise,
                    image_path=rec.image_path,
                    provenance={**prov, "source_generator_sha256": rec.generator_sha256},
                    generator=rec.generator,
                    photo_crop=rec.photo_crop,
                    extra={"factors": list(spec.factors), "edit": spec.name, "source": rec.source},
                ).save(folder / f"{rec.name}.pt")
                written += 1
                tuned_count += rec.generator is not None
    grids = {}
    for spec in specs:
        if grid_rows[spec.name]:
            path = out / "grids" / f"{spec.name.replace('/', '__')}.png"
            grid = image_grid(grid_rows[spec.name])
            save_grid(grid, path)
            grids[spec.name] = grid
    summary = {
        "codes": str(c["codes"]),
        "num_codes": len(codes),
        "written": written,
        "skipped_existing": skipped,
        "through_tuned_generators": tuned_count,
        "pasted": pasted,  # edited codes of face-aligned photos pasted back into their photos
        # codes recorded for another generator (strict=false let them through): null when none
        "generator_mismatch": codes.generator_mismatch(),
        "edits": describe_edits(specs),
        "layout": {
            "images": "edits/<edit>/factor<+factor>/<name>.png",
            "codes": "edits/<edit>/<name>.pt",
            "grids": "grids/<edit with / as __>.png (rows = images, columns = factors)",
            "pasted": "pasted/<edit>/factor<+factor>/<name>.png (face-aligned photos)",
        },
        "provenance": prov,
    }
    atomic_write_json(out / "edit.json", summary)
    loggers = build_loggers(c["logger"])
    try:
        images = {
            f"edit/{name}": tensor_to_uint8(g).permute(1, 2, 0).numpy() for name, g in grids.items()
        }
        log_to(loggers, images=images)
    finally:
        finish_loggers(loggers)
    log.info("edited %d codes with %d edits into %s", len(codes), len(specs), out)
    return summary


class _Photos:
    """The photos of a batch's face-aligned codes, read once each; a photo gone or changed since
    the inversion is a warning (its edits are written, not pasted)."""

    def __init__(self, recs: list[CodeRecord]) -> None:
        self.recs, self.cache = recs, {}

    def get(self, j: int) -> np.ndarray | None:
        if j not in self.cache:
            crop, self.cache[j] = self.recs[j].photo_crop, None
            if crop is not None:
                try:
                    self.cache[j] = load_crop_photo(crop)
                except LsapFileError as e:
                    log.warning("%s: not pasted back: %s", self.recs[j].name, e)
        return self.cache[j]


@hydra.main(config_path=config_dir(), config_name="edit", version_base="1.3")
@one_line_errors("lsap-edit", settings=True)
def _main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    check_config_dir("edit")
    _main()


if __name__ == "__main__":
    main()
