"""Toy-scale reproduction of LSAP's claim on held-out procedural faces: e4e vs LSAP_E (encoders)
and the projector vs LSAP_O (optimisation without / with SNCD).

    python bench/reproduce_toy.py                           # 256 held-out toy faces (seed 2), CPU
    python bench/reproduce_toy.py --num-images 64 --out /tmp/r.json inversion.steps=100
    python bench/reproduce_toy.py --extra-sncd-weights 0.02 0.5    # LSAP_O at more SNCD weights

The settings are lsap-demo's (``conf/demo.yaml`` + ``conf/demo/toy32.yaml``: the shipped toy
generator, encoders, InterFaceGAN directions and attribute classifier); trailing arguments are
Hydra overrides of that config. The astronaut is left out: every image is an in-domain toy face
with known labels. For every method:

- SNCD of the codes, MSE / PSNR of the reconstructions (uint8, [0, 1] scale), LPIPS* (the
  config's LPIPS: on the toy generator a fixed *random* VGG backbone, since no ImageNet weights
  are available offline; a perceptual stand-in, not LPIPS), FID of the reconstructions
  (Frechet distance in the toy attribute classifier's 128-d hidden features, not Inception FID);
- editability after every InterFaceGAN edit and non-zero factor: the classifier's change of the
  target attribute towards the edit's side (target Δ), the fraction of faces that read on the
  edit's side afterwards (target success), the mean absolute change of the other attributes
  (others |Δ|, stability), FID of the edited images against the originals.

Prints a Markdown table (mean ± standard error over images), per pair the fraction of images
on which the LSAP method is better, and the frontier table: every LSAP method against its
baseline with the claim's targets (MSE at most +10 % of the baseline's; SNCD at or below the
generator samples' mean and below the baseline's; edit target success above the baseline's).
Writes everything as JSON (``--out``) and the frontier plot ``frontier.png`` beside it (SNCD and
target success against MSE / baseline, the samples' SNCD and the +10 % budget as reference lines). Optimisation
results are kept in ``inversions/`` beside it and reused by a rerun with the same images, seed,
weights and options (e.g. after new edit directions or encoders).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def extra_name(weight: float) -> str:
    """Method name of an extra LSAP_O weight: 0.5 -> ``lsap_o_sncd0p5``."""
    return "lsap_o_sncd" + f"{weight:g}".replace(".", "p").replace("-", "m")


@torch.no_grad()
def samples_mean_sncd(G, anchors, num: int = 5000, seed: int = 1) -> float:
    """Mean SNCD of ``num`` generator samples (W codes of z seed ``seed``): the reference line."""
    from lsap.alignment import sncd

    z = torch.randn(num, G.z_dim, generator=torch.Generator().manual_seed(seed))
    w = G.mapping(z.to(G.w_avg.device))  # [num, w_dim]
    return float(sncd(G, w[:, None].expand(-1, G.num_ws, -1), anchors)[0].mean())


def method_weights(cfg, methods, given: list[str]) -> dict[str, float]:
    """Method name -> SNCD weight: optimisation methods from their objective, shipped toy32
    encoders from the manifest's training config, others from ``NAME=W`` arguments."""
    from lsap.assets import ASSETS_DIR

    out = {}
    for name, m in methods.items():
        w = (m.get("info") or {}).get("weights")
        if w is not None:
            out[name] = float(w.get("sncd", 0.0))
    manifest = ASSETS_DIR / "toy32" / "manifest.json"
    files = json.loads(manifest.read_text()).get("files", {}) if manifest.is_file() else {}
    for name, path in (cfg.get("encoders") or {}).items():
        entry = files.get(str(path).removeprefix("asset:toy32/")) if path else None
        if entry and str(path).startswith("asset:toy32/"):
            out[name] = float(entry["config"]["loss"]["sncd"])
    for item in given:
        name, _, w = item.partition("=")
        out[name] = float(w)
    return out


def plot_frontier(frontier: list[dict], samples_sncd: float, path: Path) -> Path:
    """SNCD and edit target success against MSE / baseline, one curve per pair (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=90)
    for base, marker in (("projector", "o"), ("e4e", "s")):  # baseline first, then by weight
        pts = [f for f in frontier if f["baseline"] == base]
        if not pts:
            continue
        x = [1.0] + [f["mse_vs_baseline"] for f in pts]
        ys = (
            [pts[0]["baseline_sncd"]] + [f["sncd"] for f in pts],
            [pts[0]["baseline_success"]] + [f["success"] for f in pts],
        )
        labels = [base] + [f"{f['sncd_weight']:g}" for f in pts]
        for ax, y in zip(axes, ys, strict=True):
            ax.plot(
                x,
                y,
                marker=marker,
                label=f"{'LSAP_O' if base == 'projector' else 'LSAP_E'} vs {base}",
            )
            for xi, yi, lab in zip(x, y, labels, strict=True):
                ax.annotate(lab, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes[0].axhline(
        samples_sncd, color="gray", ls="--", lw=1, label=f"samples' SNCD {samples_sncd:.3f}"
    )
    for ax, ylab in zip(
        axes, ("mean SNCD (lower = more aligned)", "edit target success"), strict=True
    ):
        ax.axvline(1.10, color="red", ls=":", lw=1, label="MSE budget +10 %")
        ax.set_xlabel("MSE / baseline's MSE")
        ax.set_ylabel(ylab)
        ax.legend(fontsize=7)
    fig.suptitle("SNCD weight frontier (labels: weight)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--num-images", type=int, default=256, help="held-out toy faces")
    ap.add_argument("--seed", type=int, default=2, help="toy seed of the faces (2: held out)")
    ap.add_argument("--out", default="outputs/reproduce_toy/results.json", help="JSON output")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument(
        "--extra-sncd-weights",
        type=float,
        nargs="*",
        default=[0.5],
        help="more LSAP_O methods, one per SNCD weight (lsap_o_sncd<w>); the demo's lsap_o uses loss.sncd",
    )
    ap.add_argument(
        "--encoder-sncd-weights",
        nargs="*",
        default=[],
        metavar="NAME=W",
        help="SNCD weight an encoder method was trained with (shipped toy32 encoders: read from "
        "the manifest), for the frontier table",
    )
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of conf/demo.yaml")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from lsap.cli._common import resolve_device
    from lsap.config import build_data
    from lsap.core.atomic import atomic_write_json
    from lsap.core.provenance import provenance
    from lsap.demo.build import build_setup
    from lsap.demo.inputs import TOY
    from lsap.demo.pipeline import compare_methods
    from lsap.demo.report import json_safe
    from lsap.demo.reproduce import (
        PAIRS,
        frontier_rows,
        frontier_table,
        markdown_table,
        method_rows,
        paired_comparison,
        pairs_table,
    )
    from lsap.demo.settings import DemoSettings

    overrides = [
        f"data.toy.num_images={args.num_images}",
        f"data.toy.seed={args.seed}",
        "data.astronaut=false",
        "paths.output_dir=" + str(Path(args.out).parent),
        *[f"+optimisation.{extra_name(w)}={w}" for w in args.extra_sncd_weights],
        *args.overrides,
    ]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("demo", overrides=overrides)
    t0 = time.perf_counter()
    settings = DemoSettings.from_config(cfg)
    device = resolve_device(settings.device)
    setup = build_setup(settings, device)
    inputs = build_data(settings.data, resolution=setup.G.resolution)
    toy = [inputs.names[i] for i in inputs.indices(TOY)]
    c = compare_methods(
        setup,
        inputs,
        seed=settings.seed,
        batch_size=settings.batch_size,
        cache_dir=Path(args.out).parent / "inversions",
        cache_extra=OmegaConf.to_yaml(cfg.loss) + OmegaConf.to_yaml(cfg.inversion),
    )
    rows = method_rows(c.methods, c.editability, toy)
    pairs = {
        f"{m} vs {b}": paired_comparison(c.methods, b, m, toy)
        for b, lsap in PAIRS
        for m in c.methods
        if b in c.methods and (m == lsap or m.startswith(f"{lsap}_"))
    }
    wall = time.perf_counter() - t0
    samples_sncd = samples_mean_sncd(setup.G, setup.anchors)
    weights = method_weights(cfg, c.methods, args.encoder_sncd_weights)
    frontier = frontier_rows(rows, weights, samples_sncd=samples_sncd)

    edits = ", ".join(s.name for s in setup.edits)
    factors = sorted({f for s in setup.edits for f in s.factors if f != 0})
    print(
        f"\n{len(toy)} held-out toy faces (seed {args.seed}); edits {edits}; "
        f"factors {factors}; {wall:.0f} s\n"
    )
    print(markdown_table(rows))
    print()
    print(pairs_table(pairs))
    print()
    print(frontier_table(frontier, samples_sncd))
    for note in setup.notes:
        print(f"- {note}")
    result = {
        "num_images": len(toy),
        "seed": args.seed,
        "rows": rows,
        "pairs": pairs,
        "samples_sncd": samples_sncd,
        "frontier": frontier,
        "methods": c.methods,
        "edits": c.edits,
        "editability": c.editability,
        "notes": setup.notes,
        "wall_time_s": wall,
        "machine_threads": torch.get_num_threads(),
        "provenance": provenance(config=cfg, generator=setup.G, seed=cfg.seed),
    }
    atomic_write_json(args.out, json_safe(result))
    plot = plot_frontier(frontier, samples_sncd, Path(args.out).parent / "frontier.png")
    print(f"\nwrote {args.out} and {plot}")
    print(json.dumps({"overrides": overrides}))


if __name__ == "__main__":
    main()
