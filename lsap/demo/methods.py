"""The inversion methods compared: an encoder (e4e, LSAP_E) or latent optimisation (the StyleGAN2
projector, LSAP_O), each turning images into W+ codes of one generator.

Both return an :class:`Inversion`: the codes, their noise maps (optimisation only), the
reconstructions and the time taken. The algorithms are ``lsap.nets.encoder`` and
``lsap.inversion.optimize_latents``; this module only batches them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lsap.inversion.settings import InversionSettings
from lsap.nets.crop import ValidRegion
from lsap.nets.stylegan2 import Generator
from lsap.nets.synthesis import synthesize

log = logging.getLogger(__name__)

ENCODER = "encoder"
OPTIMISATION = "optimisation"


@dataclass
class Inversion:
    """One method's inversion of N images.

    Attributes:
        name: method name (``e4e``, ``lsap_e``, ``projector``, ``lsap_o``, ...).
        kind: ``"encoder"`` or ``"optimisation"``.
        w_plus: [N, num_ws, w_dim] float32 codes (CPU).
        noise: optimised noise maps, one [N, 1, R_k, R_k] per synthesis conv, or None (the
            generator's constant noise).
        images: reconstructions [N, 3, R, R] in ~[-1, 1] (CPU).
        seconds: wall time of the inversion (encoding or optimisation, not the set-up).
        info: plain values for the report (file, sha256, sncd weight, steps, final loss, ...).
    """

    name: str
    kind: str
    w_plus: Tensor
    noise: list[Tensor] | None
    images: Tensor
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    def noise_of(self, i: int) -> list[Tensor] | None:
        """Image i's noise maps as ``lsap-invert`` stores them (list of [1, 1, R, R]) or None."""
        return None if self.noise is None else [n[i : i + 1].clone() for n in self.noise]


@torch.no_grad()
def encode(
    encoder: nn.Module,
    images: Tensor,
    *,
    num_ws: int,
    w_dim: int,
    batch_size: int = 64,
    crop: ValidRegion | None = None,
) -> Tensor:
    """W+ codes of images [N, 3, R, R] in [-1, 1] -> [N, num_ws, w_dim] float32 (CPU), in batches
    of ``lsap.inversion.encode.encode_images`` (resized to the encoder's ``input_size``; with
    ``crop``, the generator's valid region only)."""
    from lsap.inversion.encode import encode_images

    p = next(encoder.parameters())
    out = [
        encode_images(
            encoder, images[s : s + batch_size].to(p.device), num_ws=num_ws, w_dim=w_dim, crop=crop
        )
        for s in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(out).cpu()


def invert_with_encoder(
    name: str, encoder: nn.Module, G: Generator, images: Tensor, *, batch_size: int = 64
) -> Inversion:
    """Encode images [N, 3, R, R] (R = G.resolution) and synthesise the codes.

    Raises:
        ValueError: the encoder's codes do not fit the generator (num_ws or w_dim).
    """
    t0 = time.perf_counter()
    encoder.eval()
    w_plus = encode(
        encoder, images, num_ws=G.num_ws, w_dim=G.w_dim, batch_size=batch_size, crop=G.crop
    )
    seconds = time.perf_counter() - t0
    recon = synthesize(G, w_plus.to(G.w_avg.device), batch_size=batch_size).cpu()
    info = {
        "sha256": getattr(encoder, "sha256", None),
        "trained_for_generator": getattr(encoder, "generator_sha256", None),
        "arch": getattr(encoder, "arch", None),
        "input_size": int(encoder.input_size),
    }
    return Inversion(name, ENCODER, w_plus, None, recon, seconds, info)


def step_progress(
    name: str, first: int, last: int, total: int, steps: int, *, parts: int = 10
) -> Callable[[int, Mapping[str, Tensor]], None]:
    """An ``optimize_latents`` callback that logs progress ``parts`` times per batch (the
    optimisation methods take the demo's first minutes: show that they advance)."""
    every = max(1, steps // parts)
    started = time.perf_counter()

    def report(step: int, values: Mapping[str, Tensor]) -> None:
        done = step + 1
        if done % every and done != steps:
            return
        log.info(
            "%s: images %d-%d of %d, step %d/%d (%.0f %%), mean loss %.4g, %.1f s",
            name, first + 1, last, total, done, steps, 100.0 * done / max(1, steps),
            float(values["loss"].mean()), time.perf_counter() - started,
        )  # fmt: skip

    return report


def invert_with_optimisation(
    name: str,
    G: Generator,
    images: Tensor,
    objective: nn.Module,
    *,
    names: Sequence[str],
    seed: int,
    settings: InversionSettings,
    w_std: float | None = None,
    batch_size: int = 64,
) -> Inversion:
    """Invert images [N, 3, R, R] by latent optimisation from w_avg (``lsap.inversion.invert_batch``,
    lsap-invert's pipeline) in batches (images are independent: each is seeded by its name).

    Args:
        objective: the per-sample objective (``lsap.losses.build_objective``).
        names, seed: the images' names and the run seed (``lsap.inversion.settings.image_seed``).
        settings: the ``inversion`` group; ``w_std`` its latent-noise unit (computed when None).
    """
    from lsap.inversion.pipeline import invert_batch
    from lsap.inversion.sources import CodeSource

    device = G.w_avg.device
    objective.to(device)
    source = CodeSource("optimize", True)
    w_std = settings.w_std(G) if w_std is None else w_std
    codes, noises, recons, final = [], [], [], []
    t0 = time.perf_counter()
    N = images.shape[0]
    for s in range(0, N, batch_size):
        r = invert_batch(
            G,
            images[s : s + batch_size].to(device),
            list(names[s : s + batch_size]),
            source,
            objective,
            settings,
            None,
            seed=seed,
            w_std=w_std,
            callback=step_progress(name, s, min(s + batch_size, N), N, settings.steps),
        )
        codes.append(r.w_plus.float().cpu())
        recons.append(r.images.float().cpu())
        noises.append([n.float().cpu() for n in r.noise] if r.noise is not None else None)
        if len(r.history["loss"]):
            final.append(r.history["loss"][-1])
    seconds = time.perf_counter() - t0
    noise = None
    if noises and noises[0] is not None:
        noise = [torch.cat([nz[k] for nz in noises]) for k in range(len(noises[0]))]
    info = {
        "weights": dict(getattr(objective, "weights", {})),
        "steps": settings.steps,
        "space": settings.space,
        "final_loss_mean": float(torch.cat(final).mean()) if final else None,
    }
    return Inversion(name, OPTIMISATION, torch.cat(codes), noise, torch.cat(recons), seconds, info)
