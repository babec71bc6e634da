"""``lsap-eval``: the same comparison table for any number of methods' inversions.

For each method (an ``lsap-invert`` output folder, codes, or reconstructed images) against the
originals: MSE, PSNR, SSIM, LPIPS, ID, FID, SNCD per layer and total, and per edit and factor the
FID of edited images against the originals, ID to the original and LPIPS to the unedited
reconstruction. Codes refined by pivotal tuning are scored through their tuned generators; with
``two_stage=true`` also without them, and ``eval.md`` gets the two-stage table (first stage x
{no refinement, PTI}). An ``lsap-invert`` folder refined without saved tuned generators has only
the refined images (``refined/``): with ``two_stage=true`` they are scored as images (fidelity and
FID; no edits). Writes ``eval.json`` (every number), ``eval.md`` (tables), ``per_image/<method>.csv``
and PNG grids under the run folder; logs to W&B with ``logger=wandb``. Under torchrun the images
are sharded over ranks and the metrics synced (rank 0 writes; pass ``hydra.run.dir`` so that every
rank agrees on the folder).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from lsap.alignment.anchors import anchors_from_config
from lsap.cli._common import check_config_dir, config_dir, die_with_launcher, one_line_errors
from lsap.cli._runtime import (
    build_loggers,
    close_distributed,
    finish_loggers,
    init_distributed,
    log_to,
)
from lsap.cli._threads import set_num_threads
from lsap.core.plain import plain
from lsap.core.provenance import provenance
from lsap.data.grid import image_grid, save_grid
from lsap.data.images import tensor_to_uint8
from lsap.editing import build_edits, describe_edits
from lsap.io import atomic_write_json, atomic_write_text, generator_from_config
from lsap.io.inversions import REFINED_DIR, merge_mismatches
from lsap.metrics.evaluation import (
    evaluate_method,
    gather_rows,
    match_originals,
    open_method,
)
from lsap.metrics.report import flat_metrics, markdown_report
from lsap.metrics.scorer import build_scorer, metric_notes

log = logging.getLogger(__name__)

DEFINITIONS = {
    "images": "originals and reconstructions quantised to uint8 before every metric (as saved PNGs)",
    "psnr": "dB on [0, 1], identical images capped at 100 dB",
    "id": "cosine similarity of the id network's embeddings (a face network, or MoCo v2 ResNet-50 "
    "features for non-face domains; original vs reconstruction / edited image)",
    "sncd": "sum over w+ layers of 1 - cos(n_i, a_i) (LSAP); 'layer mean' = sum / num_ws",
    "editing.lpips": "LPIPS between the edited image and the unedited reconstruction",
    "editing.fid": "FID of the edited images against the originals",
    "refinement": "pti: codes rendered and edited through their tuned generators (pivotal tuning), "
    "or the refined images of an lsap-invert folder without saved tuned generators (no edits); "
    "none: through the run's generator; SNCD is that of the codes (pivots) in both",
    "two_stage.edited": "edited FID / ID: mean over every edit and non-zero factor",
}


def run(cfg: DictConfig) -> dict:
    """Evaluate every method of ``cfg.methods``; return the results (as written to eval.json)."""
    c = plain(
        cfg, throw_on_missing=True
    )  # the one reading of the config: plain values from here on
    # OMP_NUM_THREADS, else physical cores less data workers (torchrun: LOCAL_WORLD_SIZE)
    set_num_threads(data_workers=int(c["num_workers"]), cpu_processes=1)
    rank, world, device, created = init_distributed(c["device"])
    try:
        return _run(c, rank, world, device)
    finally:
        close_distributed(created)


def _run(c: dict[str, Any], rank: int, world: int, device) -> dict:
    if not c["methods"]:
        raise ValueError("no methods given: methods='{e4e: dirA, lsap_e: dirB}'")
    G = generator_from_config(c["generator"], device)
    methods, two_stage, refined = [], [], set()
    for n, p in c["methods"].items():
        m = open_method(str(n), p, G, strict=c["strict"])
        images_after = Path(p) / REFINED_DIR
        if c["two_stage"] and m.tuned:  # refined by PTI: score the first stage alone, then both
            methods += [replace(m, tuned=False), replace(m, name=f"{n}+pti")]
            two_stage.append({"method": str(n), "none": str(n), "pti": f"{n}+pti"})
        elif c["two_stage"] and m.codes is not None and images_after.is_dir():
            # refined without saved tuned generators: the refined images are the PTI result
            methods += [m, open_method(f"{n}+pti", images_after, G)]
            refined.add(f"{n}+pti")
            two_stage.append({"method": str(n), "none": str(n), "pti": f"{n}+pti"})
        else:
            methods.append(m)
            refinement = "pti" if m.tuned else "none"
            two_stage.append({"method": str(n), "none": None, "pti": None, refinement: str(n)})
    pairs = match_originals(c["originals"], methods, on_missing=c["on_missing"])
    mcfg = c["metrics"]
    anchors = None
    if mcfg["sncd"] and any(m.codes is not None for m in methods):
        anchors = anchors_from_config(G, c["alignment"])
    edits = build_edits(c.get("editing"), G)  # an optional group (editing: null by default)
    scorer = build_scorer(mcfg, crop=G.crop).to(device)
    out = Path(c["paths"]["output_dir"])
    originals = str(c["originals"]) if c["originals"] else "image_path recorded in the codes"
    results: dict = {"methods": {}, "originals": originals, "num_originals": len(pairs)}
    cells = {}
    for m in methods:
        log.info("evaluating %s (%s, %d images)", m.name, m.source, len(pairs))
        r = evaluate_method(
            m,
            pairs,
            G=G,
            scorer=scorer,
            anchors=anchors,
            edits=edits,
            edit_metrics=list(mcfg["editing"]),
            image_size=c["image_size"],
            batch_size=int(c["batch_size"]),
            num_workers=int(c["num_workers"]),
            rank=rank,
            world_size=world,
            grid_images=int(c["grid"]["max_images"]),
            grid_size=int(c["grid"]["size"]),
        )
        results["methods"][m.name] = {
            "path": str(m.path),
            "source": m.source,
            "refinement": "pti" if m.tuned or m.name in refined else "none",
            # codes recorded for another generator (strict=false let them through), or None
            "generator_mismatch": _generator_mismatch(m),
            **r.results,
        }
        rows = gather_rows(r.rows)
        cells[m.name] = r.grid
        if rank == 0:
            _write_rows(out / "per_image" / f"{m.name}.csv", rows)
    if c["two_stage"]:
        results["two_stage"] = two_stage
    results["edits"] = describe_edits(edits)
    results["definitions"] = DEFINITIONS
    results["notes"] = metric_notes(mcfg)
    results["provenance"] = provenance(config=c, generator=G, world_size=world)
    results = _json_safe(results)
    if rank != 0:
        return results
    atomic_write_json(out / "eval.json", results)
    md = markdown_report(results, title=f"lsap-eval: {', '.join(results['methods'])}")
    if results["notes"]:
        md += "\n\nNotes:\n\n" + "\n".join(f"- {n}" for n in results["notes"]) + "\n"
    atomic_write_text(out / "eval.md", md)
    grids = _grids(cells, [e.name for e in edits])
    for key, g in grids.items():
        save_grid(g, out / "grids" / f"{key.replace('/', '__')}.png")
    print(md)
    loggers = build_loggers(c["logger"])
    try:
        log_to(
            loggers,
            metrics=flat_metrics(results),
            images={
                f"eval/{k}": tensor_to_uint8(g).permute(1, 2, 0).numpy() for k, g in grids.items()
            },
            text={"eval/table": md},
        )
    finally:
        finish_loggers(loggers)
    return results


def _generator_mismatch(m) -> dict | None:
    """The method's codes recorded for another generator, over every rank's files."""
    import torch.distributed as dist

    part = m.codes.mismatched_files if m.codes is not None else {}
    parts = [part]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, part)
    return merge_mismatches(parts)


def _grids(cells: dict[str, list[dict]], edit_names: list[str]) -> dict:
    """reconstructions: rows = images, columns = original, then each method; one grid per edit:
    rows = (image, method), columns = factors."""
    methods = list(cells)
    if not methods or not cells[methods[0]]:
        return {}
    n = min(len(c) for c in cells.values())

    def f(x):
        return x.float() / 127.5 - 1.0

    grids = {
        "reconstructions": image_grid(
            [
                [f(cells[methods[0]][i]["original"])]
                + [f(cells[m][i]["reconstruction"]) for m in methods]
                for i in range(n)
            ]
        )
    }
    for e in edit_names:
        rows = [
            [f(x) for x in cells[m][i]["edits"][e]]
            for i in range(n)
            for m in methods
            if e in cells[m][i].get("edits", {})
        ]
        if rows:
            grids[e] = image_grid(rows)
    return grids


def _json_safe(x):
    """NaN (a metric without data, e.g. FID of fewer than 2 images) -> None: strict JSON."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _write_rows(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


@hydra.main(config_path=config_dir(), config_name="eval", version_base="1.3")
@one_line_errors("lsap-eval", settings=True)
def _main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    die_with_launcher()  # a DDP worker ends with its launcher
    check_config_dir("eval")
    _main()


if __name__ == "__main__":
    main()
