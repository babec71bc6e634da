"""Benchmark: lsap-eval's memory does not grow with the number of images (it streams).

For each image count, a child process builds an lsap-invert output folder of that many codes for
the embedded tiny generator (and their originals), then runs the evaluation loop of ``lsap-eval``
(fidelity, FID features, SNCD, one SeFa edit at three factors) and reports its peak resident
memory and time. Same machine, one invocation: compare the rows, not absolute numbers.

    python bench/eval_memory.py                      # 100 and 1000 images
    python bench/eval_memory.py --images 200 2000 --batch 16
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(n: int, batch: int, folder: Path) -> dict:
    import torch
    from omegaconf import OmegaConf

    from lsap.alignment import compute_anchors
    from lsap.cli._common import config_dir
    from lsap.core.provenance import provenance
    from lsap.data import save_image
    from lsap.editing import EditSpec, sefa_edits
    from lsap.io import init_generator
    from lsap.metrics.evaluation import evaluate_method, match_originals, open_method
    from lsap.metrics.features import RandomFeatures
    from lsap.metrics.scorer import Scorer

    G = init_generator(dict(OmegaConf.load(f"{config_dir()}/generator/tiny.yaml")["arch"]), 0)
    (folder / "originals").mkdir()
    (folder / "inv" / "codes").mkdir(parents=True)
    prov = provenance(generator=G)
    g = torch.Generator().manual_seed(0)
    for s in range(0, n, 32):
        k = min(32, n - s)
        with torch.no_grad():
            w = G.mapping(torch.randn(k, G.z_dim, generator=g))[:, None].repeat(1, G.num_ws, 1)
            images = G.synthesis(w)
        for i in range(k):
            name = f"img{s + i:06d}"
            save_image(images[i], folder / "originals" / f"{name}.png")
            code = w[i : i + 1] + 0.1 * torch.randn(1, G.num_ws, G.w_dim, generator=g)
            torch.save(
                {"w_plus": code, "noise": None, "name": name, "provenance": prov},
                folder / "inv" / "codes" / f"{name}.pt",
            )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    method = open_method("inv", folder / "inv", G)
    pairs = match_originals(folder / "originals", [method])
    result = evaluate_method(
        method,
        pairs,
        G=G,
        scorer=Scorer(["mse", "psnr", "ssim"], features=RandomFeatures()),
        anchors=compute_anchors(G, 10_000, 0),
        edits=[EditSpec(e, (-2.0, 0.0, 2.0)) for e in sefa_edits(G, [0])],
        batch_size=batch,
    )
    return {
        "images": result.results["num_images"],
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb_setup": before / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "psnr": result.results["metrics"]["psnr"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(child(args.child, args.batch, Path(tmp))))
        return
    rows = []
    for n in args.images:
        cmd = [sys.executable, __file__, "--child", str(n), "--batch", str(args.batch)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    base = rows[0]
    print(
        f"{'images':>7} {'eval s':>8} {'img/s':>7} {'RSS before eval MB':>19} "
        f"{'peak RSS MB':>12} {'peak vs first':>14}"
    )
    for r in rows:
        print(
            f"{r['images']:>7} {r['seconds']:>8.1f} {r['images'] / r['seconds']:>7.1f} "
            f"{r['peak_rss_mb_setup']:>19.0f} {r['peak_rss_mb']:>12.0f} "
            f"{r['peak_rss_mb'] / base['peak_rss_mb']:>13.2f}x"
        )


if __name__ == "__main__":
    main()
