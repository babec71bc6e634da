"""Benchmark: LSAP_E encoder training steps/s, inference images/s, and the SNCD term's share.

    python bench/encoder.py                                    # CPU: tiny, then FFHQ 256 and 1024 sizes
    python bench/encoder.py --preset ffhq1024 --device cuda --batch 8 --infer-batch 128 --amp

Presets: ``tiny`` (the 32 px tiny generator and the tiny experiment's narrow e4e, 32 px input,
no ID term as in that experiment),
``ffhq256`` / ``ffhq1024`` (config-f generator at 256 / 1024 px, channel multiplier 2; the full
IR-SE50 e4e at 256 px input: the paper's sizes). Weights are random (the cost does not depend on
them): LPIPS-alex and the ArcFace ID network run on random backbones.

Timed, median of ``--repeats`` after one warm-up:
- inference: ``encoder(images)`` without gradients, batch ``--infer-batch`` -> images/s;
- training step: the system's objective (``encoder_objective``: encoder, generator, resize, L2 +
  0.8 LPIPS + 0.1 ID + 2e-4 delta_norm + 0.5 SNCD as LSAP_E), backward, Ranger step -> steps/s;
- SNCD term: its forward+backward alone on the step's codes, and the same step with the term off;
  share = SNCD time / step time (target <= 2 %).

``--inference-only`` times only inference, the plain module against its inference-only twin
(``lsap.nets.encoder_inference.fuse_for_inference``: BatchNorm folded, channels-last, heads as
batched products) with the same random weights, IR-SE50 at 256 px, 18 heads (FFHQ 1024), e4e and
pSp, batches ``--infer-batches``; CPU ratios on process CPU seconds (``OMP_NUM_THREADS=1``):

    python bench/encoder.py --inference-only --infer-batches 1,4 --repeats 5

``--reference-repo PATH`` (with ``--inference-only``) adds the reference module: PATH is a work tree
of omertov/encoder4editing (``--reference e4e``, the default) or eladrich/pixel2style2pixel
(``--reference psp``). The reference encoder with seeded weights is written as a release file, read
back by lsap's reader, its codes (plus ``latent_avg``, which pSp/e4e add outside the encoder)
checked equal to lsap's plain and fused codes (1e-5), then reference, plain and fused are timed
interleaved in one process (CPU seconds, median of ``--repeats`` rounds, the order rotating each
round), at 18 heads (FFHQ 1024), 256 px input, batches ``--infer-batches``:

    python bench/encoder.py --inference-only --reference-repo /tmp/enc/e4e --infer-batches 1,4
    python bench/encoder.py --inference-only --reference-repo /tmp/enc/psp --reference psp

``--ceiling`` adds each module's GFLOP count, this CPU's sgemm rate and the largest ratio over the
reference that the same arithmetic allows here (``bench/_ceiling.py``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import _ceiling
import torch
from _conf import loss_config
from _timing import interleaved_times, median_time, median_times

from lsap.alignment import compute_anchors
from lsap.inversion.encode import encoder_objective
from lsap.io import init_generator
from lsap.losses import LossInputs, build_objective
from lsap.nets import GeneratorConfig
from lsap.nets.encoder import Encoder4Editing
from lsap.optim import Ranger

TINY_ARCH = {
    "resolution": 32,
    "z_dim": 64,
    "w_dim": 64,
    "n_mlp": 3,
    "channel_base": 512,
    "channel_max": 64,
}
TINY_STAGES = [[16, 16, 1], [16, 24, 1], [24, 32, 1], [32, 48, 1]]
PRESETS = {
    # the tiny experiment: no ID term (a 112 px face network would dwarf a 32 px model)
    "tiny": {
        "arch": TINY_ARCH,
        "encoder": {"input_size": 32, "stages": TINY_STAGES},
        "loss": {"id": 0.0},
    },
    "ffhq256": {"arch": {"resolution": 256, "channel_multiplier": 2}, "encoder": {}},
    "ffhq1024": {"arch": {"resolution": 1024, "channel_multiplier": 2}, "encoder": {}},
}
# conf/loss/lsap_e.yaml (the LSAP_E reference weights) with random stand-in networks: no download
LOSS_OVERRIDES = {"options": {"lpips": {"backbone": "random"}, "id": {"weights": "random"}}}


def run(preset: str, device: torch.device, batch: int, infer_batch: int, repeats: int, amp: bool):
    p = PRESETS[preset]
    torch.manual_seed(0)
    G = init_generator(GeneratorConfig.from_dict(p["arch"]), seed=0).to(device)
    enc = Encoder4Editing(num_ws=G.num_ws, w_dim=G.w_dim, **p["encoder"]).to(device)
    enc.set_latent_avg(G.w_avg)
    size = enc.input_size
    anchors = compute_anchors(G, 1000, 0, batch_size=500)  # content irrelevant to the timing
    loss_cfg = loss_config("lsap_e", LOSS_OVERRIDES, p.get("loss", {}))
    objective = {
        on: build_objective(
            {**loss_cfg, "sncd": loss_cfg["sncd"] if on else 0.0}, generator=G, anchors=anchors
        )
        .to(device)
        .eval()
        for on in (True, False)
    }
    opt = Ranger(enc.parameters(), lr=1e-4, betas=(0.95, 0.999))
    g = torch.Generator().manual_seed(1)
    images = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device)
    infer_images = (torch.rand(infer_batch, 3, size, size, generator=g) * 2 - 1).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    @torch.no_grad()
    def infer():
        enc.eval()
        with autocast:
            enc(infer_images)

    def step(sncd_on=True):
        enc.train()
        # the training option itself (system.autocast): codes and loss float32
        loss, *_ = encoder_objective(
            enc,
            G,
            objective[sncd_on],
            images,
            noise_mode="random",
            autocast="bf16" if amp else None,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sncd_term = objective[True].terms["sncd"]
    w = enc(images).detach().requires_grad_(True)

    def sncd_only():
        with autocast:
            v = sncd_term(LossInputs(w_plus=w)).mean()
        v.backward()

    t_infer = median_time(infer, device, repeats)
    t_step = median_time(step, device, repeats)
    t_step_off = median_time(lambda: step(False), device, repeats)
    t_sncd = median_time(sncd_only, device, max(repeats, 5))
    return {
        "preset": preset,
        "device": str(device),
        "num_ws": G.num_ws,
        "G px": G.resolution,
        "enc px": size,
        "batch": batch,
        "infer img/s": infer_batch / t_infer,
        "step s": t_step,
        "steps/s": 1.0 / t_step,
        "train img/s": batch / t_step,
        "sncd ms": 1000 * t_sncd,
        "sncd share %": 100 * t_sncd / t_step,
        "step w/o sncd s": t_step_off,
    }


def compare_inference(device: torch.device, batches: list[int], repeats: int) -> list[dict]:
    """Plain vs fused inference, same weights: seconds per batch and the speed-up."""
    from lsap.nets.encoder import build_encoder
    from lsap.nets.encoder_inference import fuse_for_inference

    rows = []
    for arch in ("e4e", "psp"):
        torch.manual_seed(0)
        enc = build_encoder(arch, num_ws=18).to(device).eval()
        fused = fuse_for_inference(enc)
        for batch in batches:
            x = torch.rand(batch, 3, 256, 256, device=device) * 2 - 1
            with torch.no_grad():
                err = (fused(x) - enc(x)).abs().max().item()
                plain = median_times(lambda: enc(x), device, repeats)  # noqa: B023
                fast = median_times(lambda: fused(x), device, repeats)  # noqa: B023
            k = 1 if device.type == "cpu" else 0  # CPU: CPU seconds; CUDA: wall
            rows.append(
                {"arch": arch, "batch": batch, "plain_s": plain[k], "fused_s": fast[k],
                 "plain_wall_s": plain[0], "fused_wall_s": fast[0],
                 "speedup": plain[k] / fast[k], "max_abs_diff": err}
            )  # fmt: skip
            r = rows[-1]
            print(
                f"{arch:>4} {device.type:>4} 256 px batch {batch}: plain {r['plain_s']:.3f} s, "
                f"fused {r['fused_s']:.3f} s ({'CPU' if k else 'wall'} s; wall {r['plain_wall_s']:.3f}"
                f" / {r['fused_wall_s']:.3f}) -> x{r['speedup']:.2f} ({batch / r['fused_s']:.1f} "
                f"img/s), max |codes diff| {err:.1e}",
                flush=True,
            )
    return rows


def compare_reference(
    repo: str, arch: str, batches: list[int], repeats: int, ceiling: bool = False
) -> list[dict]:
    """Reference module vs lsap plain vs lsap fused on CPU, same weights, interleaved;
    ``ceiling``: also the arithmetic floor of each (``bench/_ceiling.py``)."""
    from _encoder_reference import build_reference, write_release_file

    from lsap.io.encoders import load_encoder
    from lsap.nets.encoder_inference import fuse_for_inference

    ref = build_reference(repo, arch, num_ws=18)
    with tempfile.TemporaryDirectory() as tmp:
        enc = load_encoder(write_release_file(ref, arch, Path(tmp) / "release.pt"))
    fused = fuse_for_inference(enc)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average "
        f"{os.getloadavg()[0]:.1f}; reference {arch} from {repo}",
        flush=True,
    )
    rows = []
    for batch in batches:
        x = torch.rand(batch, 3, 256, 256, generator=torch.Generator().manual_seed(batch)) * 2 - 1
        with torch.no_grad():
            w_ref = ref(x) + enc.latent_avg  # pSp/e4e add latent_avg outside the encoder
            w_plain, w_fused = enc(x), fused(x)
        torch.testing.assert_close(w_plain, w_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(w_fused, w_plain, atol=1e-5, rtol=1e-5)
        diffs = ((w_plain - w_ref).abs().max().item(), (w_fused - w_plain).abs().max().item())

        def timed(module):
            def call():
                with torch.no_grad():
                    module(x)  # noqa: B023

            return call

        t = interleaved_times(
            {"reference": timed(ref), "plain": timed(enc), "fused": timed(fused)}, repeats
        )
        ref_s, plain_s, fused_s = (t[k][1] for k in ("reference", "plain", "fused"))
        rows.append(
            {"arch": arch, "batch": batch, "reference_s": ref_s, "plain_s": plain_s,
             "fused_s": fused_s, "plain_x": ref_s / plain_s, "fused_x": ref_s / fused_s,
             "max_diff_plain_ref": diffs[0], "max_diff_fused_plain": diffs[1]}
        )  # fmt: skip
        print(
            f"{arch:>4} cpu 256 px 18 heads batch {batch}: CPU s reference {ref_s:.3f}, plain "
            f"{plain_s:.3f}, fused {fused_s:.3f} -> plain x{ref_s / plain_s:.2f}, fused "
            f"x{ref_s / fused_s:.2f} of the reference (wall {t['reference'][0]:.3f} / "
            f"{t['plain'][0]:.3f} / {t['fused'][0]:.3f}); max |codes diff| plain-ref "
            f"{diffs[0]:.1e}, fused-plain {diffs[1]:.1e}; load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        if ceiling:
            rate = _ceiling.sgemm_gflops()
            for name, module, secs in (("plain", enc, plain_s), ("fused", fused, fused_s)):
                gflop = _ceiling.count_gflop(timed(module))
                print(
                    _ceiling.ceiling_line(f"{arch} {name} batch {batch}", gflop, rate, secs, ref_s)
                )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", choices=[*PRESETS, "all"], default="all")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, or all (cpu and cuda if present)")
    ap.add_argument(
        "--batch",
        type=int,
        default=None,
        help="training batch (default 8 tiny, 2 real on CPU, 8 CUDA)",
    )
    ap.add_argument(
        "--infer-batch", type=int, default=None, help="inference batch (default 32 CPU, 128 CUDA)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--inference-only", action="store_true", help="plain vs fused inference")
    ap.add_argument("--infer-batches", default="1,4", help="batches of --inference-only")
    ap.add_argument(
        "--reference-repo",
        default=None,
        help="work tree of encoder4editing or pixel2style2pixel (with --inference-only)",
    )
    ap.add_argument("--reference", choices=["e4e", "psp"], default="e4e", help="reference class")
    ap.add_argument(
        "--ceiling",
        action="store_true",
        help="with --reference-repo: GFLOP counts, this CPU's sgemm rate, the arithmetic floor "
        "and the largest ratio over the reference it allows (bench/_ceiling.py)",
    )
    ap.add_argument(
        "--amp", action="store_true", help="bfloat16 autocast (training: system.autocast=bf16)"
    )
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [torch.device(d) for d in devices if d != "cuda" or torch.cuda.is_available()]
    if args.device in ("cuda", "all") and not torch.cuda.is_available():
        print("no CUDA device: CPU only")
    if args.inference_only and args.reference_repo:
        batches = [int(b) for b in args.infer_batches.split(",")]
        compare_reference(args.reference_repo, args.reference, batches, args.repeats, args.ceiling)
        return
    if args.inference_only:
        for device in devices:
            compare_inference(device, [int(b) for b in args.infer_batches.split(",")], args.repeats)
        return
    presets = list(PRESETS) if args.preset == "all" else [args.preset]
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}, amp {args.amp}"
    )
    rows = []
    for device in devices:
        for preset in presets:
            cuda = device.type == "cuda"
            batch = args.batch or (8 if cuda or preset == "tiny" else 2)
            infer_batch = args.infer_batch or (128 if cuda else 32)
            rows.append(run(preset, device, batch, infer_batch, args.repeats, args.amp))
            r = rows[-1]
            print(
                f"{r['preset']:>9} {r['device']:>5} G {r['G px']:>4}px num_ws {r['num_ws']:>2} "
                f"batch {r['batch']:>2}: inference {r['infer img/s']:8.1f} img/s | "
                f"train {r['steps/s']:7.3f} steps/s ({r['step s']:.3f} s/step, "
                f"{r['step w/o sncd s']:.3f} s without sncd) | "
                f"sncd {r['sncd ms']:.2f} ms = {r['sncd share %']:.2f} % of a step",
                flush=True,
            )


if __name__ == "__main__":
    main()
