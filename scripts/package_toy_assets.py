"""Copy a trained toy generator and classifier into ``lsap/assets/<name>/`` and write the manifest.

    python scripts/package_toy_assets.py --gan-run outputs/toy_gan/default \
        --classifier-run outputs/toy_classifier/default
    python scripts/package_toy_assets.py --domain cars --name toycars32 \
        --gan-run outputs/toy_gan/toycars --classifier-run outputs/toy_classifier/toycars

The manifest records, per file: sha256, size, the training command and resolved config (from the
file's own provenance), seed, steps, images seen, final losses / held-out accuracy, the run's wall
time (first to last file of the run folder) and the machine. Entries already in the manifest
(encoders, directions) are kept.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
from pathlib import Path

import torch

from lsap.assets import ASSETS_DIR
from lsap.core.atomic import atomic_write_json
from lsap.core.hashing import file_sha256
from lsap.core.provenance import git_commit

DESCRIPTION = {
    "faces": "32 px StyleGAN2 trained on lsap.data.toy faces, and an attribute classifier for "
    "the toy labels (lsap.data.toy.ATTRIBUTES)",
    "cars": "32 px StyleGAN2 trained on lsap.data.toy_cars (a 32x24 picture in rows 4..27 of the "
    "32x32 frame, black bars), and an attribute classifier for the toy car labels "
    "(lsap.data.toy_cars.ATTRIBUTES)",
}


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} x {model}, {gpu}"


def wall_time_s(run: Path) -> float:
    """Seconds from the run folder's first file to its last (resumed runs include the gaps)."""
    times = [p.stat().st_mtime for p in run.rglob("*") if p.is_file()]
    hydra_cfg = run / ".hydra" / "config.yaml"
    start = min(times) if not hydra_cfg.exists() else min(min(times), hydra_cfg.stat().st_mtime)
    return round(max(times) - start, 1)


def last_metrics(run: Path, rows: int = 20) -> dict[str, float]:
    """Mean of each logged column over its last ``rows`` logged values (all CSV versions, in
    order), so single noisy GAN steps do not stand for the final losses."""
    values: dict[str, list[float]] = {}
    for f in sorted((run / "csv").glob("**/metrics.csv"), key=lambda p: p.stat().st_mtime):
        with open(f) as fh:
            for row in csv.DictReader(fh):
                for k, v in row.items():
                    if v not in ("", None):
                        values.setdefault(k, []).append(float(v))
    return {k: round(sum(v[-rows:]) / len(v[-rows:]), 4) for k, v in values.items()}


def entry(src: Path, dst: Path, run: Path, extra: dict) -> dict:
    shutil.copyfile(src, dst)
    prov = torch.load(dst, map_location="cpu", weights_only=True).get("provenance", {})
    return {
        "file": dst.name,
        "sha256": file_sha256(dst),
        "bytes": dst.stat().st_size,
        "command": "python " + prov.get("command", "?"),
        "seed": prov.get("seed"),
        "config": prov.get("config"),
        "lsap_version": prov.get("lsap_version"),
        "torch_version": prov.get("torch_version"),
        "created": prov.get("created"),
        "run_wall_time_s": wall_time_s(run),
        **extra(prov, run),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gan-run", type=Path, required=True)
    ap.add_argument("--classifier-run", type=Path, required=True)
    ap.add_argument("--name", default="toy32", help="asset folder under lsap/assets")
    ap.add_argument("--domain", default="faces", choices=sorted(DESCRIPTION))
    ap.add_argument("--note", default="", help="free text stored in the manifest")
    args = ap.parse_args()
    dst = ASSETS_DIR / args.name
    dst.mkdir(parents=True, exist_ok=True)

    def gan_extra(prov, run):
        m = last_metrics(run)
        return {
            "steps": prov.get("steps"),
            "images_seen": prov.get("seen_images"),
            "final_losses": {
                k: v for k, v in m.items() if k.startswith("train/") and k != "train/kimg"
            },
            "final_losses_are": "means of the last 20 logged values (logged every 25 steps)",
        }

    def clf_extra(prov, run):
        metrics = {}
        if (run / "metrics.json").is_file():
            import json

            metrics = json.loads((run / "metrics.json").read_text())
        return {
            "steps": metrics.get("steps"),
            "heldout": metrics.get("heldout", prov.get("heldout")),
            "heldout_set": metrics.get("heldout_set"),
        }

    old = {}
    if (dst / "manifest.json").is_file():
        import json

        old = json.loads((dst / "manifest.json").read_text())
    manifest = {
        **old,
        "name": args.name,
        "description": DESCRIPTION[args.domain],
        "machine": machine(),
        "code_commit": git_commit(),
        "note": args.note,
        "files": {
            **old.get("files", {}),
            "generator.pt": entry(
                args.gan_run / "generator.pt", dst / "generator.pt", args.gan_run, gan_extra
            ),
            "classifier.pt": entry(
                args.classifier_run / "classifier.pt",
                dst / "classifier.pt",
                args.classifier_run,
                clf_extra,
            ),
        },
    }
    atomic_write_json(dst / "manifest.json", manifest)
    for name, e in manifest["files"].items():
        print(f"{name}: {e['bytes'] / 1e6:.2f} MB sha256 {e['sha256'][:16]}...")


if __name__ == "__main__":
    main()
