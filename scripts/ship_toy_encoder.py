"""Ship a toy encoder trained by lsap-train into ``lsap/assets/<asset-dir>/`` and record it in the manifest.

    python scripts/ship_toy_encoder.py --run /work/scratch/toy/runs/toy_lsap_e/<timestamp> \
        --name encoder_lsap_e.pt --train-commit e9031c7 \
        --command "OMP_NUM_THREADS=1 lsap-train experiment=toy_lsap_e"
    python scripts/ship_toy_encoder.py --run outputs/toycars_lsap_e/<timestamp> \
        --name encoder_lsap_e.pt --asset-dir toycars32     # the toy cars (the run's data.domain)

Takes the run's final checkpoint (``checkpoints/last.ckpt``; ``--checkpoint best`` for the
best-validation one, or a path), writes the encoder in lsap's format with fp16 weights
(``lsap.io.encoders.save_encoder``; ``latent_avg`` stays float32) and adds an entry to
``manifest.json`` under ``files``: sha256, bytes, command, seed, resolved config, steps, final
train losses (means of the last 10 logged values) and validation metrics (the last validation row
and the best one) from ``csv/metrics.csv``, the run's wall time, the training and shipping
commits, and a held-out check run here: on ``--num-heldout`` toy images of seed 2 of the run's
``data.domain`` (seen by no toy model) the reconstruction MSE over the generator's valid region
(``generator.crop``; the whole frame when null) (images in [0, 1], uint8-quantised as ``lsap.metrics.mse``) and the
SNCD of the codes, for the shipped fp16 file, the fp32 checkpoint and the generator's mean image
(``w_avg`` on every layer) as a reference. Other manifest entries are kept.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from omegaconf import OmegaConf

from lsap.alignment import compute_anchors, sncd
from lsap.assets import ASSETS_DIR
from lsap.core.atomic import atomic_write_json
from lsap.core.hashing import file_sha256
from lsap.core.provenance import git_commit
from lsap.data.toy import toy_dataset
from lsap.inversion.encode import encode_images
from lsap.io import generator_from_config
from lsap.io.encoders import load_encoder, save_encoder
from lsap.metrics.image import mse
from lsap.nets.crop import crop_valid

HELDOUT_SEED = 2  # toy images seen by no toy model (GAN and encoders: seed 0, val: 1)
DOMAIN_MODULE = {"faces": "lsap.data.toy", "cars": "lsap.data.toy_cars"}
_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+\]")


def read_metrics(run: Path) -> list[dict[str, float]]:
    """Rows of every ``csv/**/metrics.csv`` of the run (resumed runs add versions), in order."""
    rows = []
    for f in sorted((run / "csv").glob("**/metrics.csv"), key=lambda p: p.stat().st_mtime):
        with open(f) as fh:
            for row in csv.DictReader(fh):
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def final_train_losses(rows: list[dict[str, float]], last: int = 10) -> dict[str, float]:
    """Mean of each ``train/loss*`` column over its last ``last`` logged values."""
    values: dict[str, list[float]] = {}
    for row in rows:
        for k, v in row.items():
            if k.startswith("train/loss"):
                values.setdefault(k, []).append(v)
    return {k: round(sum(v[-last:]) / len(v[-last:]), 6) for k, v in values.items()}


def val_rows(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    return [
        {"step": int(r["step"]), **{k: round(v, 6) for k, v in r.items() if k.startswith("val/")}}
        for r in rows
        if "val/metric/mse" in r
    ]


def wall_time_s(run: Path) -> float | None:
    """From the first timestamp of ``train.log`` to the newest checkpoint file."""
    log, ckpts = run / "train.log", list((run / "checkpoints").glob("*.ckpt"))
    if not log.is_file() or not ckpts:
        return None
    for line in log.read_text().splitlines():
        m = _LOG_TIME.match(line)
        if m:
            start = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
            return round(max(p.stat().st_mtime for p in ckpts) - start, 1)
    return None


def pick_checkpoint(run: Path, which: str) -> Path:
    if which == "last":
        return run / "checkpoints" / "last.ckpt"
    if which == "best":
        best = sorted((run / "checkpoints").glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
        if not best:
            raise SystemExit(f"{run}/checkpoints: no best*.ckpt")
        return best[-1]
    return Path(which)


@torch.no_grad()
def heldout_check(
    G, anchors, encoders: dict, num: int, domain: str = "faces"
) -> dict[str, dict[str, float]]:
    """Reconstruction MSE (over the generator's valid region ``G.crop``) and SNCD of the codes
    on ``num`` held-out toy images of ``domain``, per encoder (which sees the valid region only,
    as ``lsap-invert`` and the demo feed it), and ``w_avg`` (the generator's mean image, the floor
    an encoder has to beat)."""
    faces = toy_dataset(domain)(num, seed=HELDOUT_SEED, resolution=G.resolution)
    images = faces.images.float() / 127.5 - 1  # [num, 3, R, R] in [-1, 1]
    out = {}
    codes = {
        name: encode_images(enc, images, num_ws=G.num_ws, w_dim=G.w_dim, crop=G.crop)
        for name, enc in encoders.items()
    }  # [num, num_ws, w_dim]
    codes["w_avg"] = G.w_avg.expand(num, G.num_ws, -1)
    for name, w_plus in codes.items():
        recon = G.synthesis(w_plus, noise_mode="const")
        total, per_layer = sncd(G, w_plus, anchors)
        out[name] = {
            "mse": round(
                float(mse(crop_valid(recon, G.crop), crop_valid(images, G.crop)).mean()), 6
            ),
            "sncd": round(float(total.mean()), 6),
            "sncd_layer_mean": round(float(per_layer.mean()), 6),
        }
    a = codes[next(iter(encoders))]
    if len(encoders) == 2:
        b = codes[list(encoders)[1]]
        out["fp16_vs_fp32_max_abs_code_diff"] = round(float((a - b).abs().max()), 6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="lsap-train run folder")
    ap.add_argument("--name", required=True, help="file name in the asset folder")
    ap.add_argument("--checkpoint", default="last", help="last | best | a .ckpt path")
    ap.add_argument("--asset-dir", default="toy32")
    ap.add_argument("--command", default=None, help="training command (default: from .hydra)")
    ap.add_argument("--train-commit", default=None, help="commit the run was trained at")
    ap.add_argument("--num-heldout", type=int, default=64)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    start = time.time()
    torch.set_num_threads(1)

    run = args.run
    ckpt = pick_checkpoint(run, args.checkpoint)
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    overrides = list(OmegaConf.load(run / ".hydra" / "overrides.yaml"))
    command = args.command or "lsap-train " + " ".join(overrides)
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    step, stage = int(raw["global_step"]), raw["lsap_encoder"].get("progressive_stage")
    del raw
    enc32 = load_encoder(ckpt)
    G = generator_from_config(cfg.generator).eval().requires_grad_(False)
    if enc32.generator_sha256 not in (None, G.sha256):
        raise SystemExit(f"{ckpt}: trained with generator {enc32.generator_sha256}, not {G.sha256}")
    metrics = read_metrics(run)
    vals = val_rows(metrics)
    done = step >= int(cfg.trainer.max_steps)

    dst_root = ASSETS_DIR / args.asset_dir
    dst = dst_root / args.name
    prov = {
        "command": command,
        "seed": int(cfg.seed),
        "steps": step,
        "checkpoint": ckpt.name,
        "train_commit": args.train_commit,
    }
    save_encoder(enc32, dst, generator_sha256=G.sha256, provenance=prov, dtype=torch.float16)
    enc16 = load_encoder(dst)

    a = cfg.alignment
    anchors = compute_anchors(
        G,
        int(a.num_samples),
        int(a.seed),
        batch_size=int(a.batch_size),
        cache_dir=str(Path(str(a.cache_dir))),
    )
    domain = str(cfg.data.get("domain", "faces"))  # runs before data.domain existed: faces
    crop = G.crop.box if G.crop is not None else None
    heldout = heldout_check(G, anchors, {"fp16": enc16, "fp32": enc32}, args.num_heldout, domain)

    manifest_path = dst_root / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.setdefault("files", {})[args.name] = {
        "file": args.name,
        "sha256": file_sha256(dst),
        "bytes": dst.stat().st_size,
        "format": "lsap.encoder, fp16 weights (latent_avg float32); lsap.load_encoder gives float32",
        "command": command,
        "seed": int(cfg.seed),
        "config": OmegaConf.to_container(cfg, resolve=False),
        "steps": step,
        "max_steps": int(cfg.trainer.max_steps),
        "finished": done,
        "progressive_stage": stage,
        "images_seen": step * int(cfg.data.batch_size),
        "checkpoint": f"{args.checkpoint} ({ckpt.name})",
        "generator_sha256": G.sha256,
        "train_commit": args.train_commit,
        "ship_commit": git_commit(),
        "run_wall_time_s": wall_time_s(run),
        "final_losses": final_train_losses(metrics),
        "final_losses_are": "means of the last 10 logged values (logged every "
        f"{int(cfg.trainer.log_every_n_steps)} steps)",
        "val_final": vals[-1] if vals else None,
        "val_best_mse": min(vals, key=lambda r: r["val/metric/mse"]) if vals else None,
        "val_set": f"{DOMAIN_MODULE[domain]} seed {int(cfg.data.val_seed)}, images 0..{int(cfg.data.num_val) - 1}",
        "heldout": heldout,
        "heldout_set": f"{DOMAIN_MODULE[domain]} seed {HELDOUT_SEED}, images 0..{args.num_heldout - 1}; "
        f"mse of images in [0, 1] (uint8-quantised) over the valid region {crop}, "
        "sncd summed over layers (metric form), "
        "w_avg = the generator's mean image",
        "note": args.note,
    }
    atomic_write_json(manifest_path, manifest)
    print(json.dumps({k: manifest["files"][args.name][k] for k in ("sha256", "bytes", "steps")}))
    print(json.dumps(heldout))
    print(f"shipped {dst} ({time.time() - start:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
