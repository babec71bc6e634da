"""Benchmark: batched W+ optimisation (LSAP_O) with optimize_latents: steps/s, images/s, the share
of step time spent in the SNCD term, and peak memory.

Each setting runs in its own subprocess (clean peak-memory figures), all in one invocation on one
machine. The objective is LSAP_O's: LPIPS(vgg) + sncd 0.5 + noise_reg 1e5, with noise maps
optimised. LPIPS uses a *random* VGG backbone: the same architecture and cost as the real one, no
download. The generators have random weights (timing does not depend on them).

    python bench/inversion.py                                   # CPU: 32 px tiny and 1024 px config-f
    python bench/inversion.py --device cuda --sizes 1024 --batches 1,4,8 --steps 30
    python bench/inversion.py --device all                      # CPU, and CUDA when present
    python bench/inversion.py --sizes 32,256 --batches 1 --baseline-tree /tmp/lsap-main   # + before
    python bench/inversion.py --device cuda --sizes 1024 --batches 8 --cuda-graphs --autocast bf16
    python bench/inversion.py --device cuda --sizes 256,1024 --footprint    # data.batch_size=auto

Speed options (``inversion.*`` keys, off by default) are passed with ``--autocast bf16``,
``--tf32``, ``--compile inductor`` and ``--cuda-graphs``. ``--baseline-tree`` times the same
setting with another lsap source tree (e.g. ``git archive`` of main) in a subprocess of the same
invocation, with the options off there (an older tree may not know them), and prints the ratio of
step times (CPU: process CPU seconds per step, stable under load; CUDA: wall time); ``--repeats``
alternates the trees that many times and compares medians (a shared machine's load drifts).

The SNCD share is measured two ways: the SNCD term's own forward+backward timed alone, divided by
the full step time (direct); and the step time with sncd 0.5 minus the step time with sncd 0
(difference; noisy when the share is small). Throughput for a full inversion is extrapolated from
the median step time: ``s/image = steps_per_inversion * step_time / batch``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _conf import loss_config
from _timing import sync

SIZES = {  # name -> generator config (channels as StyleGAN2 config-f at 1024 px; tiny as the tests)
    "32": {
        "resolution": 32,
        "z_dim": 64,
        "w_dim": 64,
        "n_mlp": 3,
        "channel_base": 512,
        "channel_max": 64,
    },
    "256": {"resolution": 256, "channel_multiplier": 2},
    "1024": {"resolution": 1024, "channel_multiplier": 2},
}


def _loss(**overrides) -> dict:
    """conf/loss/lsap_o.yaml (l2, id, delta_norm, w_norm: 0) with a random LPIPS backbone (no
    download) and ``overrides`` merged in, as plain values."""
    return loss_config("lsap_o", {"options": {"lpips": {"backbone": "random"}}}, overrides)


def _peak_mb(device: torch.device, rss_before: float) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before


def footprint_worker(args) -> dict:
    """``data.batch_size=auto``'s probe at one size: the footprint of one LSAP_O step (batch 1 and
    2, the run's optimisation settings from conf/inversion/w_plus.yaml) and the batch it plans on
    this card (``data.memory`` of conf/data/images.yaml). CPU: the probe runs (wiring check) but a
    CPU has no peak counter, so no footprint."""
    from omegaconf import OmegaConf

    from lsap.alignment import compute_anchors
    from lsap.config import config_dir
    from lsap.inversion import InversionSettings
    from lsap.inversion.memory import (
        CudaPeakMemory,
        lsap_o_probe,
        measure_footprint,
        plan_batch_size,
    )
    from lsap.losses import build_objective
    from lsap.nets import Generator, GeneratorConfig

    torch.manual_seed(0)
    device = torch.device(args.device)
    G = Generator(GeneratorConfig.from_dict(SIZES[args.size])).eval().requires_grad_(False)
    G = G.to(device)
    anchors = compute_anchors(G, args.anchor_samples, 0)
    cfg = _loss(lpips=1.0, sncd=0.5, noise_reg=1e5)
    objective = build_objective(cfg, generator=G, anchors=anchors).to(device)
    settings = InversionSettings.from_config(
        OmegaConf.load(f"{config_dir()}/inversion/w_plus.yaml")
    )
    kwargs = settings.optimize_kwargs(G, w_std=1.0)
    kwargs.update(autocast=args.autocast, tf32=args.tf32, compile=args.compile)
    kwargs["cuda_graphs"] = args.cuda_graphs
    step = lsap_o_probe(G, objective, kwargs)
    out = {"device": str(device), "size": args.size, "options": kwargs["autocast"]}
    t = time.perf_counter()
    if device.type != "cuda":
        step(1), step(2)
        out["probe_s"] = time.perf_counter() - t
        return out
    found = measure_footprint(step, CudaPeakMemory(device))
    memory = OmegaConf.load(f"{config_dir()}/data/images.yaml")["memory"]
    total = torch.cuda.get_device_properties(device).total_memory / 2**20
    batch = plan_batch_size(
        total, found.per_image_mb, found.fixed_mb,
        headroom=float(memory["headroom"]), max_batch=int(memory["max_batch"]),
    )  # fmt: skip
    out.update(
        gpu=torch.cuda.get_device_name(device),
        probe_s=time.perf_counter() - t,
        per_image_mb=found.per_image_mb,
        fixed_mb=found.fixed_mb,
        total_mb=total,
        auto_batch=batch,
    )
    return out


def _tree_settings(G) -> dict:
    """``optimize_latents``' settings from the imported tree's ``conf/inversion/w_plus.yaml``
    (``InversionSettings``); {} for an older tree whose ``optimize_latents`` has them as defaults."""
    try:
        from lsap.inversion.settings import InversionSettings
    except ImportError:
        return {}
    from omegaconf import OmegaConf

    from lsap.config import config_dir

    cfg = OmegaConf.load(f"{config_dir()}/inversion/w_plus.yaml")
    return InversionSettings.from_config(cfg).optimize_kwargs(G, w_std=1.0)


def worker(args) -> dict:
    from lsap.alignment import compute_anchors
    from lsap.inversion import optimize_latents
    from lsap.losses import LossInputs, build_objective
    from lsap.nets import Generator, GeneratorConfig

    torch.manual_seed(0)
    device = torch.device(args.device)
    G = (
        Generator(GeneratorConfig.from_dict(SIZES[args.size]))
        .eval()
        .requires_grad_(False)
        .to(device)
    )
    anchors = compute_anchors(G, args.anchor_samples, 0)
    targets = torch.rand(args.batch, 3, G.resolution, G.resolution, device=device) * 2 - 1
    lpips = {"net": "vgg", "backbone": "random", "resize": 256}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step_times(sncd_weight: float) -> list[float]:
        cfg = _loss(lpips=1.0, sncd=sncd_weight, noise_reg=1e5, options={"lpips": lpips})
        objective = build_objective(cfg, generator=G, anchors=anchors).to(device)
        stamps, cpu_stamps = [], []

        def tick(step, values):
            sync(device)
            stamps.append(time.perf_counter())
            cpu_stamps.append(time.process_time())

        sync(device)
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())
        kwargs = {**settings, "space": "w_plus", "steps": args.steps, "w_std": 1.0, **options}
        optimize_latents(G, targets, objective, callback=tick, **kwargs)
        times = [b - a for a, b in itertools.pairwise(stamps)]
        cpu = [b - a for a, b in itertools.pairwise(cpu_stamps)]
        cpu_steps.append(statistics.median(cpu[args.warmup :] or cpu[-1:]))
        return times[args.warmup :] or times[-1:]

    settings = _tree_settings(G)
    options = {}  # only the options asked for: a baseline tree may not know them
    if args.autocast:
        options["autocast"] = args.autocast
    if args.tf32:
        options["tf32"] = True
    if args.compile:
        options["compile"] = args.compile
    if args.cuda_graphs:
        options["cuda_graphs"] = True
    cpu_steps: list[float] = []
    with_sncd = step_times(0.5)
    peak = _peak_mb(device, rss_before)
    without = step_times(0.0)

    # the SNCD term alone, forward + backward to the codes, at the same batch size
    sncd_term = build_objective(
        _loss(lpips=0.0, sncd=0.5, noise_reg=0.0), generator=G, anchors=anchors
    ).to(device)
    w = G.w_avg.expand(args.batch, G.num_ws, -1).clone().requires_grad_(True)
    sncd_times = []
    for _ in range(args.warmup + max(5, args.steps)):
        sync(device)
        t = time.perf_counter()
        total, _ = sncd_term(LossInputs(w_plus=w))
        torch.autograd.grad(total.sum(), [w])
        sync(device)
        sncd_times.append(time.perf_counter() - t)
    step = statistics.median(with_sncd)
    step0 = statistics.median(without)
    sncd_alone = statistics.median(sncd_times[args.warmup :])
    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "size": args.size,
        "batch": args.batch,
        "steps_timed": len(with_sncd),
        "step_s": step,
        "step_cpu_s": cpu_steps[0],
        "options": options,
        "step_no_sncd_s": step0,
        "sncd_term_s": sncd_alone,
        "steps_per_s": 1 / step,
        "images_per_s": args.batch / (args.steps_per_inversion * step),
        "s_per_image": args.steps_per_inversion * step / args.batch,
        "sncd_share_direct": sncd_alone / step,
        "sncd_share_difference": (step - step0) / step,
        "peak_mem_mb": peak,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--device", default="cpu", help="cpu, cuda, or all (cpu and, when present, cuda)"
    )
    p.add_argument("--sizes", default="32,1024", help=f"comma-separated of {sorted(SIZES)}")
    p.add_argument("--batches", default=None, help="comma-separated batch sizes (default per size)")
    p.add_argument("--steps", type=int, default=None, help="steps timed per run (default per size)")
    p.add_argument("--warmup", type=int, default=1, help="first steps not timed")
    p.add_argument("--steps-per-inversion", type=int, default=1000)
    p.add_argument("--anchor-samples", type=int, default=2000, help="anchors only shape the cost")
    p.add_argument("--autocast", default=None, help="inversion.autocast, e.g. bf16")
    p.add_argument("--tf32", action="store_true", help="inversion.tf32")
    p.add_argument("--compile", default=None, help="inversion.compile backend, e.g. inductor")
    p.add_argument("--cuda-graphs", action="store_true", help="inversion.cuda_graphs")
    p.add_argument(
        "--footprint",
        action="store_true",
        help="data.batch_size=auto's measured footprint and planned batch per size (CUDA)",
    )
    p.add_argument("--baseline-tree", default=None, help="an lsap source tree timed as 'baseline'")
    p.add_argument(
        "--repeats", type=int, default=1, help="runs per tree and setting, alternating (median)"
    )
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--size", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(footprint_worker(args) if args.footprint else worker(args)))
        return
    if args.footprint:
        _footprints(args)
        return

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        print("no CUDA device present: CPU only")
        devices = [d for d in devices if d != "cuda"] or ["cpu"]
    print(
        f"W+ optimisation, objective LPIPS(vgg) + 0.5 sncd + 1e5 noise_reg, noise maps optimised; "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    results = []
    for device in devices:
        for size in args.sizes.split(","):
            big = int(size) >= 256
            batches = args.batches or ("1,2" if big and device == "cpu" else "1,4,8")
            steps = args.steps or (3 if big and device == "cpu" else 20)
            for batch in (int(b) for b in batches.split(",")):
                pair: dict[str, list[dict]] = {}
                trees = ["lsap"] + (["baseline"] if args.baseline_tree else [])
                for tree in trees * args.repeats:  # alternating: both see the same load drift
                    cmd = [sys.executable, __file__, "--worker", "--device", device, "--size", size]
                    cmd += ["--batch", str(batch), "--steps", str(steps)]
                    cmd += ["--warmup", str(args.warmup)]
                    cmd += ["--steps-per-inversion", str(args.steps_per_inversion)]
                    cmd += ["--anchor-samples", str(args.anchor_samples)]
                    env = dict(os.environ)
                    if tree == "lsap":
                        cmd += ["--autocast", args.autocast] if args.autocast else []
                        cmd += ["--compile", args.compile] if args.compile else []
                        cmd += ["--tf32"] * args.tf32 + ["--cuda-graphs"] * args.cuda_graphs
                    else:
                        env["PYTHONPATH"] = str(Path(args.baseline_tree).resolve())
                    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    if proc.returncode != 0:
                        print(f"  {tree} {device} {size} px batch {batch}: failed")
                        print(proc.stderr[-2000:])
                        continue
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    r["tree"] = tree
                    results.append(r)
                    pair.setdefault(tree, []).append(r)
                    _print_row(r, args)
                if len(pair) == 2:
                    key = "step_s" if device == "cuda" else "step_cpu_s"
                    ours, base = (statistics.median(r[key] for r in pair[t]) for t in trees)
                    what = "wall" if device == "cuda" else "CPU"
                    runs = f"median of {len(pair['lsap'])} run(s) each" if args.repeats > 1 else ""
                    print(
                        f"  speed-up lsap {pair['lsap'][0]['options'] or '(defaults)'} vs baseline "
                        f"tree, {size} px batch {batch}: x{base / ours:.2f} ({what} seconds per "
                        f"step{', ' + runs if runs else ''})"
                    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def _footprints(args) -> None:
    """One subprocess per size (a clean allocator): the probe's footprint and planned batch."""
    print("data.batch_size=auto probe: one LSAP_O step (conf/inversion/w_plus.yaml) at batch 1, 2")
    for size in args.sizes.split(","):
        cmd = [sys.executable, __file__, "--worker", "--footprint", "--device", args.device]
        cmd += ["--size", size, "--anchor-samples", str(args.anchor_samples)]
        cmd += ["--autocast", args.autocast] if args.autocast else []
        cmd += ["--compile", args.compile] if args.compile else []
        cmd += ["--tf32"] * args.tf32 + ["--cuda-graphs"] * args.cuda_graphs
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"  {args.device} {size} px: failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        if "per_image_mb" not in r:
            print(f"  {r['device']} {size} px: probe ran ({r['probe_s']:.1f} s), no peak counter")
            continue
        print(
            f"  {r['gpu']} {size} px: per_image_mb {r['per_image_mb']:.0f}, fixed_mb "
            f"{r['fixed_mb']:.0f} of {r['total_mb']:.0f} MiB -> data.batch_size=auto "
            f"plans {r['auto_batch']} (probe {r['probe_s']:.1f} s)",
            flush=True,
        )


def _print_row(r: dict, args) -> None:
    print(
        f"  {r['tree']:<8} {r['device']:<4} {r['size']:>4} px  batch {r['batch']:>2}: "
        f"step {r['step_s'] * 1e3:9.1f} ms ({r['steps_timed']} timed)  "
        f"{r['steps_per_s']:7.2f} steps/s  {r['images_per_s']:8.4f} img/s = "
        f"{r['s_per_image']:8.1f} s/image per {args.steps_per_inversion} steps  "
        f"SNCD share {100 * r['sncd_share_direct']:5.2f} % direct "
        f"({100 * r['sncd_share_difference']:+6.2f} % by difference)  "
        f"peak {r['peak_mem_mb']:8.0f} MB  CPU {r['step_cpu_s'] * 1e3:9.1f} ms/step",
        flush=True,
    )


if __name__ == "__main__":
    main()
