"""Benchmark: pivotal tuning (PTI) steps per second and seconds per image, regulariser on and off.

Each (device, resolution) runs in its own subprocess (clean peak-memory figures) in one invocation,
so the rows are comparable. A PTI call is timed step by step: the steady per-step time (median of
the timed steps) with the locality regulariser off, and with it on every step; seconds per image
extrapolate to the configured run (350 steps; the regulariser every ``interval`` steps) and add
the per-call overhead (copying the generator, Adam's state, the final render, the weight digest).

    python bench/refinement.py                                  # CPU, 256 and 1024 px, config-f
    python bench/refinement.py --device all --resolutions 1024  # CPU and, if present, CUDA
    python bench/refinement.py --device cuda --resolutions 1024 --autocast bf16 --tf32

The generator has random weights and LPIPS a random AlexNet backbone (``backbone: random``): the
arithmetic of real weights is the same, and nothing is downloaded. The CPU columns give process
CPU time per step beside wall time: on a shared machine, ``--threads 1`` and CPU time are the
stable figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import torch


def pti_settings() -> dict:
    """``pivotal_tuning``'s keyword arguments from ``conf/refinement/pti.yaml`` (the reference
    settings, as lsap-invert passes them), with LPIPS on a random AlexNet (nothing downloaded)."""
    from lsap.config import compose, plain
    from lsap.refinement.settings import RefinementSettings

    cfg = compose("invert", ["refinement=pti", "refinement.loss.options.lpips.backbone=random"])
    return RefinementSettings.from_config(plain(cfg.refinement)).pti


def worker(args) -> dict:
    from lsap.nets import Generator, GeneratorConfig, sample_z
    from lsap.refinement import Locality, build_pti_terms, pivotal_tuning

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    R = args.resolutions[0]
    cfg = GeneratorConfig.from_dict({"resolution": R, "channel_multiplier": 2})
    G = Generator(cfg).to(device).eval().requires_grad_(False)
    G.sha256 = "bench"
    targets = torch.rand(1, 3, R, R, device=device) * 2 - 1
    with torch.no_grad():
        pivots = G.mapping(sample_z(1, cfg.z_dim, seed=1, device=device))
    settings = pti_settings()
    loc = Locality.from_any({**settings["locality"], "interval": 1})  # the regulariser every step
    terms = build_pti_terms(settings["weights"], loc, settings["loss_options"])
    out = {"device": str(device), "resolution": R, "timed_steps": args.timed_steps}
    out["threads"] = torch.get_num_threads()
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    options = {}  # refinement.autocast / refinement.tf32, only when asked for
    if args.autocast:
        options["autocast"] = args.autocast
    if args.tf32:
        options["tf32"] = True
    out["options"] = options
    for name, locality in (("off", None), ("on_every_step", loc)):
        stamps: list[float] = []
        cpu_stamps: list[float] = []  # process CPU time: robust on a shared machine

        def on_step(_g, _s, _v, stamps=stamps, cpu_stamps=cpu_stamps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            stamps.append(time.perf_counter())
            cpu_stamps.append(time.process_time())

        t0 = time.perf_counter()
        pivotal_tuning(
            G,
            targets,
            pivots,
            terms=terms,
            on_step=on_step,
            **{
                **settings,
                "steps": args.timed_steps + 1,  # the first step warms up (allocator, cuDNN)
                "locality": locality,
                **options,
            },
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        total = time.perf_counter() - t0
        steps = [b - a for a, b in itertools.pairwise(stamps)]
        step = statistics.median(steps)
        out[f"step_s_{name}"] = step
        out[f"step_cpu_s_{name}"] = statistics.median(
            b - a for a, b in itertools.pairwise(cpu_stamps)
        )
        # everything that is not a steady step: the warm-up step's excess and the per-call work
        # (copy, Adam state, final render, digest); noisy on a loaded machine
        out[f"overhead_s_{name}"] = total - sum(steps) - step
    n, every = args.pti_steps, args.interval
    plain, reg = out["step_s_off"], out["step_s_on_every_step"]
    overhead = out["overhead_s_off"]
    out["steps_per_s_off"] = 1.0 / plain
    out["steps_per_s_on"] = n / (n * plain + math.ceil(n / every) * (reg - plain))
    out["s_per_image_off"] = n * plain + overhead
    out["s_per_image_on"] = n * plain + math.ceil(n / every) * (reg - plain) + overhead
    cpu_plain, cpu_reg = out["step_cpu_s_off"], out["step_cpu_s_on_every_step"]
    out["cpu_s_per_image_off"] = n * cpu_plain
    out["cpu_s_per_image_on"] = n * cpu_plain + math.ceil(n / every) * (cpu_reg - cpu_plain)
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    if device.type == "cuda":
        out["peak_cuda_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda, or all (cpu and cuda if present)")
    p.add_argument("--resolutions", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--timed-steps", type=int, default=3, help="steady steps timed per variant")
    p.add_argument(
        "--pti-steps", type=int, help="steps of the run extrapolated to (default: refinement.steps)"
    )
    p.add_argument(
        "--interval",
        type=int,
        help="regulariser interval extrapolated to (default: refinement.locality.interval)",
    )
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    p.add_argument("--autocast", default=None, help="refinement.autocast, e.g. bf16")
    p.add_argument("--tf32", action="store_true", help="refinement.tf32")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.pti_steps is None or args.interval is None:  # conf/refinement/pti.yaml's
        settings = pti_settings()
        args.pti_steps = args.pti_steps or settings["steps"]
        args.interval = args.interval or settings["locality"]["interval"]
    if args.worker:
        print(json.dumps(worker(args)))
        return
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        print("no CUDA device here: CUDA not measured")
        devices.remove("cuda")
    rows = []
    for device in devices:
        for res in args.resolutions:
            cmd = [sys.executable, __file__, "--worker", "--device", device]
            cmd += ["--resolutions", str(res), "--timed-steps", str(args.timed_steps)]
            cmd += ["--pti-steps", str(args.pti_steps), "--interval", str(args.interval)]
            cmd += ["--threads", str(args.threads)]
            cmd += ["--autocast", args.autocast] if args.autocast else []
            cmd += ["--tf32"] * args.tf32
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(f"{device} {res}px failed:\n{proc.stderr[-2000:]}")
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
    print(
        f"PTI, {args.pti_steps} steps, batch 1, regulariser every {args.interval} steps when on; "
        f"torch {torch.__version__}, {rows[0]['threads'] if rows else '?'} CPU threads, "
        f"options {rows[0]['options'] if rows else '?'}"
    )
    head = (
        "device", "px", "step off", "step +reg", "steps/s off", "steps/s on",
        "s/img off", "s/img on", "on/off", "overhead", "CPU s/step off, +reg",
        "CPU s/img off, on", "peak GB",
    )  # fmt: skip
    print(" | ".join(head))
    for r in rows:
        peak = r.get("peak_cuda_gb", r["peak_rss_gb"])
        print(
            " | ".join(
                [
                    r.get("gpu", r["device"]),
                    str(r["resolution"]),
                    f"{r['step_s_off']:.3f} s",
                    f"{r['step_s_on_every_step']:.3f} s",
                    f"{r['steps_per_s_off']:.2f}",
                    f"{r['steps_per_s_on']:.2f}",
                    f"{r['s_per_image_off']:.1f}",
                    f"{r['s_per_image_on']:.1f}",
                    f"x{r['s_per_image_on'] / r['s_per_image_off']:.3f}",
                    f"{r['overhead_s_off']:.2f} s",
                    f"{r['step_cpu_s_off']:.2f}, {r['step_cpu_s_on_every_step']:.2f}",
                    f"{r['cpu_s_per_image_off']:.0f}, {r['cpu_s_per_image_on']:.0f}",
                    f"{peak:.1f}",
                ]
            )
        )


if __name__ == "__main__":
    main()
