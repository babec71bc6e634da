"""Benchmark: StyleGAN2 generator forward and forward+backward, lsap vs the rosinality reference.

Each implementation runs in its own subprocess (clean peak-memory figures) on the same machine in
one invocation, so the printed ratio is meaningful even when absolute CPU times drift day to day.

    python bench/generator.py                       # lsap only, 256 px, channel multiplier 2, batch 4
    python bench/generator.py --rosinality-repo ~/src/stylegan2-pytorch   # + reference, ratio
    python bench/generator.py --device cuda --resolution 1024 --batch 8
    python bench/generator.py --baseline-tree /tmp/lsap-old   # + lsap from another source tree
    python bench/generator.py --device cuda --resolution 1024 --batch 8 --compile inductor
    python bench/generator.py --rosinality-repo ~/src/stylegan2-pytorch --batch 2 --ceiling
    python bench/generator.py --rosinality-repo ~/src/stylegan2-pytorch --batch 2 --rounds 3

On CPU the ratios use process CPU seconds (``OMP_NUM_THREADS=1``: one thread, so CPU seconds are
the compute time and barely move when other jobs share the machine); wall seconds are printed too.

``--rosinality-repo`` is a work tree of rosinality/stylegan2-pytorch; its CUDA extensions are
stubbed so its own pure-PyTorch CPU path (``upfirdn2d_native``) runs, i.e. the path users get on
CPU. Timed: forward (no grad), forward+backward with gradients for the generator's parameters and
the codes (a training step's generator cost), and forward+backward for the codes only (inversion).
``--rounds N`` runs the workers N times in alternating order and reports medians over rounds: CPU
seconds of a shared machine drift by 10-20 % over minutes, and one worker per implementation
runs minutes apart. (Timing both in one process, alternating calls, was tried and dropped: the
reference's 6 GB of batch-4 activations left lsap's steps 25 % slower beside it than alone.)
``--ceiling`` adds, per timing, its GFLOP count and the floor at this CPU's sgemm rate: the largest
ratio over the reference that the same arithmetic allows here (``bench/_ceiling.py``).

StyleGAN3 rows (``bench/_stylegan3.py``): lsap's StyleGAN3 vs NVlabs' reference path on the same
weights and CPU, printed as a ratio:

    python bench/generator.py --family stylegan3 --sg3-config T --resolution 256 --batch 1 \
        --stylegan3-repo ~/src/stylegan3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import _ceiling
import torch
from _timing import median_times


def _stub_cuda_extensions() -> None:
    import torch.utils.cpp_extension as ext

    class _NoExtension:
        def __getattr__(self, name):
            raise RuntimeError("CUDA extension called on the CPU path")

    ext.load = lambda *a, **k: _NoExtension()


def build(impl: str, args) -> tuple[torch.nn.Module, callable, int]:
    if impl.endswith("-sg3"):
        import _stylegan3

        return _stylegan3.build(impl, args)
    if impl in ("lsap", "baseline"):
        from lsap.nets import Generator, GeneratorConfig

        cfg = GeneratorConfig.from_dict(
            {"resolution": args.resolution, "channel_multiplier": args.channel_multiplier}
        )
        G = Generator(cfg)
        return G, lambda w: G.synthesis(w, noise_mode="const"), G.num_ws
    if impl == "rosinality":
        _stub_cuda_extensions()
        sys.path.insert(0, str(Path(args.rosinality_repo).resolve()))
        import model  # rosinality's model.py

        G = model.Generator(args.resolution, 512, 8, channel_multiplier=args.channel_multiplier)
        return G, lambda w: G([w], input_is_latent=True, randomize_noise=False)[0], G.n_latent
    raise ValueError(impl)


def timed_calls(impl: str, args, device: torch.device) -> dict:
    """The three timed calls of ``impl`` (built here, seeded): ``forward`` (no grad), ``fwd_bwd``
    (gradients for the generator's parameters and the codes), ``fwd_bwd_codes`` (codes only)."""
    torch.manual_seed(0)
    G, synth_fp32, num_ws = build(impl, args)

    def synth(w):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
            return synth_fp32(w).float()

    if args.compile:  # compiled in each timing's untimed warm-up call
        synth = torch.compile(synth, backend=args.compile, dynamic=False)

    G = G.to(device)
    w = torch.randn(args.batch, num_ws, 512, device=device)

    def forward():
        with torch.no_grad():
            synth(w)

    def fwd_bwd_all():
        G.requires_grad_(True)
        G.zero_grad(set_to_none=True)
        wp = w.clone().requires_grad_(True)
        synth(wp).square().mean().backward()

    def fwd_bwd_codes():
        G.requires_grad_(False)
        wp = w.clone().requires_grad_(True)
        synth(wp).square().mean().backward()

    return {"forward": forward, "fwd_bwd": fwd_bwd_all, "fwd_bwd_codes": fwd_bwd_codes}


def worker(impl: str, args) -> dict:
    device = torch.device(args.device)
    if args.tf32:  # TF32 matmuls and convolutions (CUDA Ampere+; no effect on CPU)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    calls = timed_calls(impl, args, device)
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = {"impl": impl, "device": str(device)}
    for key, fn in calls.items():
        out[f"{key}_s"], out[f"{key}_cpu_s"] = median_times(fn, device, args.repeats)
        if args.ceiling:  # one more, untimed call of each, counted
            out[f"{key}_gflop"] = _ceiling.count_gflop(fn)
    if args.ceiling:
        out["sgemm_gflops"] = _ceiling.sgemm_gflops()
    out["images_per_s_forward"] = args.batch / out["forward_s"]
    out["images_per_s_fwd_bwd"] = args.batch / out["fwd_bwd_s"]
    if device.type == "cuda":
        out["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_model
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--channel-multiplier", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--device", default="cpu", help="cpu, cuda, or all (cpu and, when present, cuda)"
    )
    p.add_argument(
        "--rosinality-repo", default=None, help="work tree of rosinality/stylegan2-pytorch"
    )
    p.add_argument("--family", default="stylegan2", choices=["stylegan2", "stylegan3"])
    p.add_argument("--sg3-config", default="T", choices=["T", "R"], help="StyleGAN3 config")
    p.add_argument(
        "--stylegan3-repo", default=None, help="work tree of NVlabs/stylegan3 (reference rows)"
    )
    p.add_argument(
        "--baseline-tree",
        default=None,
        help="an lsap source tree (e.g. `git archive` of an older commit) timed as 'baseline'",
    )
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls/convolutions (CUDA)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    p.add_argument(
        "--compile", default=None, help="torch.compile backend of the synthesis (e.g. inductor)"
    )
    p.add_argument(
        "--ceiling",
        action="store_true",
        help="CPU: count each timing's GFLOP and this CPU's sgemm rate; print the arithmetic "
        "floor and the largest ratio over the reference it allows (bench/_ceiling.py)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every implementation's worker this many times, alternating their order; each "
        "figure is the median over rounds (drift in the machine's speed falls on all alike)",
    )
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]
    if args.family == "stylegan3":
        impls = ["lsap-sg3"] + (["nvlabs-sg3"] if args.stylegan3_repo else [])
        arch = f"StyleGAN3-{args.sg3_config} {args.resolution} px"
    else:
        impls = ["lsap"] + (["rosinality"] if args.rosinality_repo else [])
        impls += ["baseline"] if args.baseline_tree else []
        arch = f"StyleGAN2 {args.resolution} px, channel multiplier {args.channel_multiplier}"
    runs: dict[tuple[str, str], list[dict]] = {}
    print(
        f"{arch}, batch {args.batch}, median of {args.repeats}"
        + (f", {args.rounds} alternating rounds" if args.rounds > 1 else "")
        + f"; torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    for device, round_ in ((d, i) for d in devices for i in range(args.rounds)):
        for impl in impls if round_ % 2 == 0 else impls[::-1]:
            if impl in ("rosinality", "nvlabs-sg3") and device == "cuda":
                continue  # its CUDA path needs its compiled extensions; we compare the CPU path
            cmd = [sys.executable, __file__, "--worker", impl, "--device", device]
            cmd += [
                "--resolution",
                str(args.resolution),
                "--channel-multiplier",
                str(args.channel_multiplier),
            ]
            cmd += ["--batch", str(args.batch), "--repeats", str(args.repeats)]
            cmd += ["--tf32"] * args.tf32 + ["--amp"] * args.amp
            cmd += ["--compile", args.compile] if args.compile else []
            cmd += ["--ceiling"] * (args.ceiling and device == "cpu")
            if args.rosinality_repo:
                cmd += ["--rosinality-repo", args.rosinality_repo]
            if args.stylegan3_repo:
                cmd += ["--stylegan3-repo", args.stylegan3_repo]
            cmd += ["--family", args.family, "--sg3-config", args.sg3_config]
            env = dict(os.environ)
            if impl == "baseline":
                env["PYTHONPATH"] = str(Path(args.baseline_tree).resolve())
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            runs.setdefault((impl, device), []).append(r)
            print(
                f"  {impl:<10} {device:<4}  forward {r['forward_s']:7.3f} s ({r['forward_cpu_s']:7.3f} "
                f"CPU s)   fwd+bwd {r['fwd_bwd_s']:7.3f} s ({r['fwd_bwd_cpu_s']:7.3f} CPU s)   codes "
                f"only {r['fwd_bwd_codes_s']:7.3f} s ({r['fwd_bwd_codes_cpu_s']:7.3f} CPU s)   "
                f"peak {r['peak_mem_mb']:8.0f} MB",
                flush=True,
            )
    by = {key: _median_run(rs) for key, rs in runs.items()}
    if args.rounds > 1:
        print(f"  medians over {args.rounds} rounds:")
        for (impl, device), r in by.items():
            print(
                f"  {impl:<10} {device:<4}  forward {r['forward_cpu_s']:7.3f} CPU s   fwd+bwd "
                f"{r['fwd_bwd_cpu_s']:7.3f} CPU s   codes only {r['fwd_bwd_codes_cpu_s']:7.3f} CPU s"
            )
    pairs = [("rosinality", "lsap"), ("baseline", "lsap"), ("nvlabs-sg3", "lsap-sg3")]
    for other, mine in pairs:
        if (other, "cpu") in by and (mine, "cpu") in by:
            ref, ours = by[(other, "cpu")], by[(mine, "cpu")]
            ratio = {
                k: ref[f"{k}_cpu_s"] / ours[f"{k}_cpu_s"]
                for k in ("forward", "fwd_bwd", "fwd_bwd_codes")
            }
            wall = ref["fwd_bwd_s"] / ours["fwd_bwd_s"]
            print(
                f"  speed-up lsap vs {other} (CPU seconds): forward x{ratio['forward']:.2f}, "
                f"fwd+bwd x{ratio['fwd_bwd']:.2f}, codes-only fwd+bwd x{ratio['fwd_bwd_codes']:.2f} "
                f"(wall-clock fwd+bwd x{wall:.2f})"
                + ("  [targets: forward >= x2, fwd+bwd >= x3]" if other == "rosinality" else "")
                + ("  [target: >= x1]" if other == "nvlabs-sg3" else "")
            )
            for k in ("forward", "fwd_bwd", "fwd_bwd_codes") if "sgemm_gflops" in ours else ():
                gflop, rate = ours[f"{k}_gflop"], ours["sgemm_gflops"]
                line = _ceiling.ceiling_line(
                    f"{mine} {k}", gflop, rate, ours[f"{k}_cpu_s"], ref[f"{k}_cpu_s"]
                )
                print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(list(by.values()), indent=2))


def _median_run(runs: list[dict]) -> dict:
    """One implementation's rounds as one result: the median of every number (the best of the
    sgemm rate, a ceiling)."""
    out = dict(runs[0])
    for key, value in out.items():
        if isinstance(value, float):
            values = [r[key] for r in runs]
            out[key] = max(values) if key == "sgemm_gflops" else statistics.median(values)
    return out


if __name__ == "__main__":
    main()
