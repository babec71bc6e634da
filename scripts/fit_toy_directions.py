"""Fit InterFaceGAN directions of the toy generator and measure their edits (``conf/toy_directions.yaml``;
not run in CI).

    python scripts/fit_toy_directions.py                 # outputs/toy_directions/default/
    python scripts/fit_toy_directions.py ship=true       # and ship them in lsap/assets/toy32

The functions of ``lsap-directions`` (``labels=samples``) with the toy's own held-out set:

1. ``labels.num_samples`` W codes (z seed ``labels.seed``) are rendered (constant noise) and
   labelled by the shipped attribute classifier (``lsap.editing.labelled_samples``, cached in
   ``labels.cache_dir``: a rerun resumes): binary attributes as ``p > labels.threshold``, scalar
   ones as the predicted value. ``lsap.editing.fitting.fit_directions`` fits one unit direction
   per attribute on all of them.
2. ``eval.num_samples`` held-out codes (z seed ``eval.seed``) score each boundary (ROC AUC of the
   projection for binary attributes, Pearson r for scalar ones) and are edited along each
   direction by every factor of ``eval.factors`` (all w+ layers); the classifier reads the edited
   images (``lsap.metrics.attribute_edits``: the target's change and success rate, the other
   attributes' mean absolute change and flip rate).

Writes under the run folder: ``directions/<attribute>.pt`` (a float32 [w_dim] unit tensor, as
``lsap-edit editing=interfacegan`` reads) and ``directions.json`` (as ``lsap-directions``
writes them), ``results.json``, ``results.md`` and
``grids/<attribute>.png`` (rows: held-out samples, columns: factors). With ``ship=true`` the
directions are copied to ``lsap/assets/<ship_dir>/directions/`` and recorded in its
``manifest.json`` under ``directions`` (sha256, command, seed, config, held-out numbers).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from lsap.assets import ASSETS_DIR
from lsap.core.atomic import atomic_write_json, atomic_write_text
from lsap.core.hashing import file_sha256
from lsap.core.provenance import git_commit, provenance
from lsap.data import save_image
from lsap.data.toy import toy_grid
from lsap.editing.fitting import FitSettings, fit_directions, write_directions
from lsap.editing.labelled_samples import classify_codes, label_samples
from lsap.io import generator_from_config
from lsap.io.classifier import load_toy_classifier
from lsap.metrics.attribute_edits import attribute_edit_effects, per_attribute_abs_delta

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def recommended_factor(per_factor: dict[str, dict], min_success: float) -> float | None:
    """Smallest positive factor f of the grid whose edits by +f and -f both reach ``min_success``."""
    factors = sorted(float(k) for k in per_factor if float(k) > 0)
    for f in factors:
        neg = per_factor.get(f"{-f:+g}")
        if neg is None:
            continue
        if min(per_factor[f"{f:+g}"]["target_success"], neg["target_success"]) >= min_success:
            return f
    return None


def markdown(results: dict) -> str:
    lines = [
        "| direction | kind | held-out fit | factor | target delta | target success | "
        "others mean abs delta | others max abs delta | others flip rate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["directions"].items():
        for f, e in r["edits"].items():
            if float(f) == 0:
                continue
            lines.append(
                f"| {name} | {r['kind']} | {r['heldout_fit_name']} {r['heldout_fit']:.3f} | {f} | "
                f"{e['target_delta']:+.3f} | {e['target_success']:.3f} | "
                f"{e['others_abs_delta']:.3f} | {e['others_max_abs_delta']:.3f} "
                f"({e['others_max_attribute']}) | {e['others_flip_rate']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def run(cfg: DictConfig) -> dict:
    start = time.time()
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    out = Path(cfg.paths.output_dir)
    G = generator_from_config(cfg.generator).eval().requires_grad_(False)
    lab = cfg.labels
    classifier = load_toy_classifier(lab.classifier)
    names = classifier.names
    kinds = list(classifier.config.kinds)
    binary = [k == "binary" for k in kinds]
    bs = int(lab.batch_size)
    wanted = names if lab.attributes is None else list(lab.attributes)  # null: every output
    unknown = [a for a in wanted if a not in names]
    if unknown:
        raise ValueError(f"labels.attributes: {unknown[0]!r} is not a classifier output {names}")
    attrs = list(wanted)
    idx = [names.index(a) for a in attrs]

    def labelled(num: int, seed: int):
        return label_samples(
            G,
            classifier,
            num,
            seed=seed,
            batch_size=bs,
            chunk_size=int(lab.chunk_size),
            truncation_psi=float(lab.truncation_psi),
            cache_dir=lab.cache_dir,
        )

    fit_set = labelled(int(lab.num_samples), int(lab.seed))  # w [N, w_dim], predictions [N, A]
    eval_set = labelled(int(cfg.eval.num_samples), int(cfg.eval.seed))
    w_eval, p_eval = eval_set.w, eval_set.predictions
    print(f"labelled {len(fit_set.w)} + {len(w_eval)} samples ({time.time() - start:.0f} s)")
    threshold = float(lab.threshold)
    settings = FitSettings.from_config(cfg.fit, cfg.split)
    fits = fit_directions(
        fit_set.w,
        fit_set.labels(threshold)[:, idx],
        attrs,
        [kinds[i] for i in idx],
        settings,
        heldout=(w_eval, eval_set.labels(threshold)[:, idx]),
    )

    factors = [float(f) for f in cfg.eval.factors]
    results: dict = {
        "label_rates_fit": {
            n: float((fit_set.predictions[:, i] > threshold).float().mean())
            for i, n in enumerate(names)
            if binary[i]
        },
        "directions": {},
    }
    (out / "grids").mkdir(parents=True, exist_ok=True)
    for fit, a in zip(fits, idx, strict=True):
        name, d = fit.attribute, fit.direction  # [w_dim]
        edits, grid = {}, []
        for f in factors:
            # factor 0 renders the unedited codes: reuse their predictions
            p_edit = p_eval if f == 0 else classify_codes(G, classifier, w_eval + f * d, bs)
            e = attribute_edit_effects(
                p_eval,
                p_edit,
                target=a,
                binary=binary,
                factor=f,
                scalar_step=float(cfg.eval.scalar_step),
            )
            per_attr = per_attribute_abs_delta(p_eval, p_edit)
            per_attr[a] = -1.0
            e["others_max_attribute"] = names[int(per_attr.argmax())]
            e["per_attribute_abs_delta"] = {
                n: round(float(v), 4) for n, v in zip(names, per_attr.tolist(), strict=True)
            }
            e["per_attribute_abs_delta"][name] = round(
                float((p_edit - p_eval)[:, a].abs().mean()), 4
            )
            edits[f"{f:+g}"] = e
            with torch.no_grad():
                n_rows = int(cfg.eval.grid_images)
                wp = (w_eval[:n_rows] + f * d)[:, None].expand(-1, G.num_ws, -1)
                grid.append(G.synthesis(wp, noise_mode="const"))  # [n, 3, R, R]
        images = torch.stack(grid, 1).flatten(0, 1)  # row-major: sample, factor
        save_image(toy_grid(images, len(factors)), out / "grids" / f"{name}.png")
        results["directions"][name] = {
            "kind": fit.kind,
            "heldout_fit_name": fit.metric,
            "heldout_fit": fit.value,
            "projection_std": fit.projection_std,
            "recommended_factor": recommended_factor(edits, float(cfg.eval.min_success)),
            "edits": edits,
        }
        best = results["directions"][name]["recommended_factor"]
        print(f"{name:11s} {fit.metric} {fit.value:.3f} recommended factor {best}")
    results["wall_time_s"] = round(time.time() - start, 1)
    prov = provenance(
        config=cfg, generator=G, seed=int(lab.seed), command="python " + " ".join(sys.argv)
    )
    write_directions(
        out,
        fits,
        {
            "labels": {"source": "samples", "classifier_sha256": classifier.sha256},
            "num_samples": len(fit_set.w),
            "fit": asdict(settings),
            "provenance": prov,
        },
    )
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", markdown(results))
    atomic_write_json(out / "provenance.json", prov)
    print(markdown(results))
    if cfg.ship:
        ship(cfg, out, results, prov, classifier.sha256)
    return results


def ship(cfg: DictConfig, out: Path, results: dict, prov: dict, classifier_sha256: str) -> None:
    """Copy the directions into the package and record them in its manifest.json."""
    dst_root = ASSETS_DIR / str(cfg.ship_dir)
    dst = dst_root / "directions"
    dst.mkdir(parents=True, exist_ok=True)
    manifest_path = dst_root / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    entries = {}
    for name, r in results["directions"].items():
        path = dst / f"{name}.pt"
        shutil.copyfile(out / "directions" / f"{name}.pt", path)
        entries[name] = {
            "file": f"directions/{name}.pt",
            "sha256": file_sha256(path),
            "bytes": path.stat().st_size,
            "kind": r["kind"],
            f"heldout_{r['heldout_fit_name']}": round(r["heldout_fit"], 4),
            "projection_std": round(r["projection_std"], 4),
            "recommended_factor": r["recommended_factor"],
            "heldout_edits": {
                f: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in e.items()}
                for f, e in r["edits"].items()
            },
        }
    manifest["directions"] = {
        "description": "InterFaceGAN directions in W: unit normals of linear attribute "
        "boundaries (lsap.editing.fit_direction: balanced L2 logistic regression for binary "
        "attributes, ridge least squares for scalar ones) fitted on generator samples labelled "
        "by classifier.pt; each file is a float32 [w_dim] unit tensor (lsap-edit "
        "editing=interfacegan +editing.interfacegan.directions.smile=asset:toy32/directions/smile.pt)"
        ". Factors are distances in W (projection_std: the std of the fitting codes along the "
        "direction). heldout_edits: held-out codes edited by each factor on all "
        "w+ layers and re-classified (lsap.metrics.attribute_edits).",
        "command": prov["command"],
        "seed": prov["seed"],
        "config": prov["config"],
        "generator_sha256": prov["generator_sha256"],
        "classifier_sha256": classifier_sha256,
        "code_commit": git_commit(),
        "created": prov["created"],
        "run_wall_time_s": results["wall_time_s"],
        "label_rates_fit": {k: round(v, 4) for k, v in results["label_rates_fit"].items()},
        "files": entries,
    }
    atomic_write_json(manifest_path, manifest)
    print(f"shipped {len(entries)} directions to {dst} and {manifest_path}")


@hydra.main(config_path=CONF, config_name="toy_directions", version_base="1.3")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    run(cfg)


if __name__ == "__main__":
    main()
