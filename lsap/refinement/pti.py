"""Pivotal tuning (PTI, Roich et al. 2022): fine-tune the synthesis network around fixed codes.

Stage one of inversion gives a code per image (an encoder, LSAP_O, a codes file); PTI keeps each
code fixed as a pivot and briefly fine-tunes a copy of the generator so that the pivot reproduces
its image, with an optional locality regulariser that keeps the rest of the latent space as it was
(``lsap.refinement.locality``). Per image (one tuned generator each, the paper's setting) or per
set (one generator for all images, the multi-ID variant).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lsap.core.hashing import tensors_sha256
from lsap.core.plain import settings_dict
from lsap.core.precision import autocast_dtype, precision
from lsap.losses import TERM_NAMES, LossInputs, LossTerm, Objective, build_objective
from lsap.nets.stylegan2 import Generator
from lsap.refinement.locality import Locality, locality_codes, locality_loss

log = logging.getLogger(__name__)

MODES = ("per_image", "per_set")
PTI_TERMS = ("l2", "lpips")


@dataclass
class PTIResult:
    """What :func:`pivotal_tuning` returns.

    Attributes:
        generators: the tuned generators: one per image (``per_image``) or one (``per_set``); each
            in eval mode without gradients, with ``base_sha256`` = the base's sha256 and
            ``sha256`` = a digest of its tensors.
        image_index: for each generator, the indices of the images it was tuned on.
        history: for each generator, per-step values ``{"loss", "l2", "lpips", "locality"}``, each
            a float tensor [steps_run] (unweighted terms, batch means; ``locality`` is NaN on steps
            without the regulariser).
        steps_run: for each generator, the steps taken (fewer than ``steps`` after an early stop).
        images: reconstructions at the pivots after tuning, [N, 3, R, R] in ~[-1, 1] (detached).
    """

    generators: list[Generator]
    image_index: list[list[int]]
    history: list[dict[str, Tensor]]
    steps_run: list[int]
    images: Tensor
    settings: dict[str, Any] = field(default_factory=dict)

    def generator_for(self, i: int) -> Generator:
        """The tuned generator that reconstructs image ``i``."""
        for G, idx in zip(self.generators, self.image_index, strict=True):
            if i in idx:
                return G
        raise IndexError(f"no tuned generator covers image {i}")


def build_pti_terms(
    weights: Mapping[str, float],
    locality: Locality | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, LossTerm]:
    """The l2 / lpips loss terms PTI needs (shared by its loss and the regulariser), built once.

    Args:
        weights: PTI loss weights ``{"l2": ..., "lpips": ...}``.
        locality: the regulariser, whose own l2 / lpips weights may need a term too.
        options: term settings as in the ``loss`` config group (``{"lpips": {"net": "alex"}}``).
    """
    need = {k for k in PTI_TERMS if float(weights.get(k, 0.0) or 0.0)}
    if locality is not None and locality.enabled:
        need |= {k for k in PTI_TERMS if getattr(locality, k) > 0}
    cfg = {k: (1.0 if k in need else 0.0) for k in TERM_NAMES}  # only l2 / lpips can be in need
    if not need:
        raise ValueError("PTI needs a non-zero l2 or lpips weight")
    objective = build_objective(
        {**cfg, "options": dict(options or {})}, config_key="refinement.loss"
    )
    return dict(objective.terms)


def check_pivots(
    generator: Generator,
    targets: Tensor,
    pivots: Tensor,
    *,
    pivot_sha256: str | None = None,
) -> Tensor:
    """Validate PTI inputs and return the pivots as w+ [N, num_ws, w_dim] float32.

    Raises:
        ValueError naming the problem: targets not [N, 3, R, R] at the generator's resolution or
            not floating point; pivots not [N, num_ws, w_dim] (or W codes [N, w_dim]); different
            counts; non-finite values; pivots made with another generator (sha256 mismatch).
    """
    R, L, D = generator.resolution, generator.num_ws, generator.w_dim
    if not isinstance(targets, Tensor) or not isinstance(pivots, Tensor):
        raise TypeError("targets and pivots must be tensors")
    if targets.ndim != 4 or tuple(targets.shape[1:]) != (3, R, R):
        raise ValueError(
            f"targets have shape {list(targets.shape)}; the generator needs images [N, 3, {R}, {R}]"
        )
    if pivots.ndim == 2 and pivots.shape[1] == D:
        pivots = pivots[:, None, :].expand(-1, L, -1)
    elif pivots.ndim != 3 or tuple(pivots.shape[1:]) != (L, D):
        raise ValueError(
            f"pivots have shape {list(pivots.shape)}; this generator needs w+ codes "
            f"[N, {L}, {D}] (num_ws={L}, w_dim={D}) or W codes [N, {D}]"
        )
    if targets.shape[0] != pivots.shape[0]:
        raise ValueError(
            f"got {targets.shape[0]} targets but {pivots.shape[0]} pivots; PTI needs one pivot "
            "per target image"
        )
    if targets.shape[0] == 0:
        raise ValueError("no targets to tune on (N = 0)")
    if not torch.isfinite(pivots).all():
        raise ValueError("pivots contain NaN or inf")
    if not targets.is_floating_point():
        raise ValueError(f"targets are {targets.dtype}; expected float images in [-1, 1]")
    if not torch.isfinite(targets).all():
        raise ValueError("targets contain NaN or inf")
    if (
        pivot_sha256 is not None
        and generator.sha256 is not None
        and pivot_sha256 != (generator.sha256)
    ):
        raise ValueError(
            f"pivots were made with generator sha256 {pivot_sha256[:16]}... but PTI was given "
            f"generator sha256 {generator.sha256[:16]}...: codes from another generator"
        )
    return pivots.float()


def pivotal_tuning(
    generator: Generator,
    targets: Tensor,
    pivots: Tensor,
    *,
    steps: int,
    lr: float,
    weights: Mapping[str, float],
    locality: Locality | Mapping | None,
    mode: str,
    early_stop_lpips: float | None,
    batch_size: int | None,
    noise_mode: str,
    loss_options: Mapping[str, Any] | None,
    seed: int,
    autocast: str | None,
    tf32: bool,
    noise: Sequence[Tensor] | None = None,
    terms: Mapping[str, LossTerm] | None = None,
    pivot_sha256: str | None = None,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
) -> PTIResult:
    """Fine-tune copies of ``generator``'s synthesis network so the pivots reproduce the targets.

    The caller's ``generator`` is not modified (its weights stay bit-identical): every tuned
    generator is a deep copy whose ``synthesis`` parameters are optimised with Adam against
    ``weights["l2"] * L2 + weights["lpips"] * LPIPS`` (the shared ``lsap.losses`` terms), pivots
    and the mapping network fixed. With ``locality`` on, every ``locality.interval`` steps the loss
    adds ``locality.weight *`` the image change of the tuned against the original generator at
    :func:`~lsap.refinement.locality.locality_codes` (``locality.l2 * L2 + locality.lpips * LPIPS``).

    The settings (``steps`` .. ``tf32``) have no defaults here: they are the ``refinement: pti``
    config's (``conf/refinement/pti.yaml``, the reference values), typed once by
    :class:`~lsap.refinement.settings.RefinementSettings` (its ``pti`` holds them as keyword
    arguments); the others are what a caller adds at run time.

    Args:
        generator: the base generator (``.sha256`` identifies it).
        targets: images [N, 3, R, R] in [-1, 1], R = the generator's resolution.
        pivots: stage-one codes [N, num_ws, w_dim] (or W codes [N, w_dim]) for ``generator``.
        steps: optimisation steps per tuned generator.
        lr: Adam learning rate.
        weights: ``{"l2": ..., "lpips": ...}``; missing keys are 0.
        locality: the regulariser (:class:`Locality`, a mapping of its fields, or None = off).
        mode: "per_image" (one tuned generator per image) or "per_set" (one for all N images).
        early_stop_lpips: stop a generator's tuning once LPIPS of every image of the step's batch
            is below this (checked before each step, as in PTI); None = run all steps.
        batch_size: per_set only: images per step, cycling through the set (None = all N).
        noise: noise maps of the pivots (list of [N or 1, 1, R_i, R_i], e.g. optimised by LSAP_O);
            None = the generator's stored noise (``noise_mode``).
        noise_mode: "const" (stored noise) or "none"; used where ``noise`` is not given.
        loss_options: term settings (``{"lpips": {"net": "alex", "backbone": ...}}``) used when
            ``terms`` is None.
        terms: prebuilt terms from :func:`build_pti_terms` (reuse the LPIPS network across calls).
        pivot_sha256: the sha256 of the generator the pivots were made with (codes provenance);
            a mismatch with ``generator.sha256`` is an error.
        seed: seed of the regulariser's samples (the same seed gives the same samples).
        on_step: called as ``on_step(generator_index, step, values)`` after each step (logging).
        autocast: None (float32) or "bf16" / "fp16": the tuned generator, the original one (the
            regulariser) and the loss run under ``torch.autocast``; the tuned weights, Adam's state
            and the summed loss stay float32 (``lsap.core.precision``). GPU option.
        tf32: allow TF32 matmuls/convolutions while tuning (CUDA Ampere+). GPU option.

    Returns:
        :class:`PTIResult` with the tuned generators, their per-step losses and reconstructions.

    Raises:
        ValueError: bad shapes, counts, dtypes, settings or a pivot/generator sha256 mismatch.
    """
    if mode not in MODES:
        raise ValueError(f"PTI mode must be one of {MODES}, got {mode!r}")
    if steps < 1 or lr <= 0:
        raise ValueError(f"PTI needs steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    if noise_mode not in ("const", "none"):
        raise ValueError(
            f"PTI needs reproducible noise: noise_mode 'const' or 'none', not {noise_mode!r}"
        )
    if batch_size is not None and (batch_size < 1 or mode != "per_set"):
        raise ValueError("batch_size applies to mode='per_set' only and must be >= 1")
    weights = {k: float(v) for k, v in dict(weights).items()}
    unknown = set(weights) - set(PTI_TERMS)
    if unknown:
        raise ValueError(f"PTI weights are {PTI_TERMS}; unknown {sorted(unknown)}")
    autocast_dtype(autocast)  # a bad name fails before any work
    loc = Locality.from_any(locality)
    if loc is not None and not loc.enabled:
        loc = None
    device = generator.w_avg.device
    pivots = check_pivots(generator, targets, pivots, pivot_sha256=pivot_sha256).to(device)
    targets = targets.to(device, torch.float32)
    N = targets.shape[0]
    if noise is not None:
        noise = _check_noise(generator, noise, N, device)

    if terms is None:
        terms = build_pti_terms(weights, loc, loss_options)
    terms = {k: t.to(device) for k, t in terms.items()}
    # the generator's valid region (generator.crop) is what is compared, in the loss and locality
    objective = _objective(terms, weights, "PTI loss", generator.crop)
    if early_stop_lpips is not None and "lpips" not in objective.terms:
        raise ValueError("early_stop_lpips needs the lpips term (weights['lpips'] > 0)")
    loc_objective = (
        _objective(terms, {"l2": loc.l2, "lpips": loc.lpips}, "locality", generator.crop)
        if loc
        else None
    )

    groups = [[i] for i in range(N)] if mode == "per_image" else [list(range(N))]
    result = PTIResult([], [], [], [], torch.empty(0))
    images = []
    for g, idx in enumerate(groups):
        tuned, hist, n_run = _tune_one(
            generator,
            targets[idx],
            pivots[idx],
            [n[idx] if n.shape[0] == N else n for n in noise] if noise is not None else None,
            noise_mode=noise_mode,
            steps=steps,
            lr=lr,
            objective=objective,
            loc=loc,
            loc_objective=loc_objective,
            early_stop_lpips=early_stop_lpips,
            batch_size=batch_size,
            # each generator draws the same regulariser samples: an image's result does not
            # depend on which other images share its call (batches, shards, resumed runs)
            rng=torch.Generator().manual_seed(seed),
            on_step=(lambda s, v, g=g: on_step(g, s, v)) if on_step is not None else None,
            autocast=autocast,
            tf32=tf32,
        )
        with torch.no_grad():
            images.append(_render(tuned, pivots[idx], noise, idx, N, noise_mode))
        result.generators.append(tuned)
        result.image_index.append(idx)
        result.history.append(hist)
        result.steps_run.append(n_run)
    result.images = torch.cat(images) if mode == "per_image" else images[0]
    result.settings = {
        "mode": mode,
        "steps": steps,
        "lr": lr,
        "weights": weights,
        "locality": None if loc is None else loc.__dict__.copy(),
        "early_stop_lpips": early_stop_lpips,
        "seed": seed,
        "autocast": autocast,
        "tf32": tf32,
        "base_sha256": generator.sha256,
    }
    return result


def _objective(
    terms: Mapping[str, LossTerm], weights: Mapping[str, float], what: str, crop=None
) -> Objective:
    active = {k: float(w) for k, w in weights.items() if float(w)}
    missing = set(active) - set(terms)
    if missing:
        raise ValueError(f"{what} needs terms {sorted(missing)} that were not built")
    if not active:
        raise ValueError(f"{what} has no non-zero l2 or lpips weight")
    return Objective({k: terms[k] for k in active}, active, crop=crop)


def _check_noise(G: Generator, noise: Sequence[Tensor], N: int, device) -> list[Tensor]:
    shapes = G.synthesis.noise_shapes()
    if len(noise) != len(shapes):
        raise ValueError(f"noise must hold {len(shapes)} maps, got {len(noise)}")
    out = []
    for i, (n, s) in enumerate(zip(noise, shapes, strict=True)):
        if n.ndim != 4 or tuple(n.shape[1:]) != s[1:] or n.shape[0] not in (1, N):
            raise ValueError(
                f"noise map {i} has shape {list(n.shape)}; expected [{N} or 1, {s[1]}, {s[2]}, {s[3]}]"
            )
        out.append(n.detach().to(device, torch.float32))
    return out


def _render(G, pivots, noise, idx, N, noise_mode) -> Tensor:
    n = [m[idx] if m.shape[0] == N else m for m in noise] if noise is not None else None
    return G.synthesis(pivots, noise_mode=noise_mode, noise=n).detach()


def _tune_one(
    base: Generator,
    targets: Tensor,  # [B, 3, R, R]
    pivots: Tensor,  # [B, num_ws, w_dim]
    noise: list[Tensor] | None,
    *,
    noise_mode: str,
    steps: int,
    lr: float,
    objective: Objective,
    loc: Locality | None,
    loc_objective: Objective | None,
    early_stop_lpips: float | None,
    batch_size: int | None,
    rng: torch.Generator,
    on_step: Callable[[int, dict[str, float]], None] | None,
    autocast: str | None = None,
    tf32: bool = False,
) -> tuple[Generator, dict[str, Tensor], int]:
    tuned = copy.deepcopy(base)
    tuned.requires_grad_(False)
    params = list(tuned.synthesis.parameters())
    for p in params:
        p.requires_grad_(True)
    tuned.train()
    opt = torch.optim.Adam(params, lr=lr)
    B = targets.shape[0]
    bs = B if batch_size is None else min(batch_size, B)
    keys = ("loss", "l2", "lpips", "locality")
    hist: dict[str, list[float]] = {k: [] for k in keys}
    nan = float("nan")
    n_run = 0
    with torch.enable_grad():
        for step in range(steps):
            sel = _batch(step, bs, B, targets.device)
            n = [m[sel] if m.shape[0] == B else m for m in noise] if noise is not None else None
            with precision(targets.device, autocast, tf32):
                img = tuned.synthesis(pivots[sel], noise_mode=noise_mode, noise=n)
                total, values = objective(LossInputs(images=img, targets=targets[sel]))
            total, values = total.float(), {k: v.float() for k, v in values.items()}
            if early_stop_lpips is not None and bool(
                (values["lpips"].detach() < early_stop_lpips).all()
            ):
                log.info("PTI early stop at step %d (LPIPS < %g)", step, early_stop_lpips)
                break
            loss = total.mean()
            loc_value = nan
            if loc is not None and step % loc.interval == 0:
                codes = locality_codes(
                    base,
                    pivots[sel],
                    alpha=loc.alpha,
                    num_samples=loc.num_samples,
                    truncation=loc.truncation,
                    rng=rng,
                )
                with precision(targets.device, autocast, tf32):
                    reg, _ = locality_loss(tuned, base, codes, loc_objective, noise_mode=noise_mode)
                loss = loss + loc.weight * reg.float()
                loc_value = float(reg.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n_run += 1
            row = {
                "loss": float(loss.detach()),
                "l2": float(values["l2"].detach().mean()) if "l2" in values else nan,
                "lpips": float(values["lpips"].detach().mean()) if "lpips" in values else nan,
                "locality": loc_value,
            }
            for k in keys:
                hist[k].append(row[k])
            if on_step is not None:
                on_step(step, row)
    tuned.eval().requires_grad_(False)
    tuned.base_sha256 = base.sha256
    tuned.sha256 = tensors_sha256(tuned.state_dict())
    tuned.source_format = "pti"
    return tuned, {k: torch.tensor(v, dtype=torch.float32) for k, v in hist.items()}, n_run


def _batch(step: int, bs: int, B: int, device) -> Tensor:
    """Indices of the images used at ``step``: consecutive chunks of ``bs``, cycling over B."""
    start = (step * bs) % B
    return (torch.arange(bs) + start).remainder(B).to(device)


def pti_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`pivotal_tuning` from a ``refinement: pti`` config.

    The config's ``loss`` holds the weights (``l2``, ``lpips``) and ``options``; ``name`` and
    ``save`` (what the caller stores) are not arguments of the algorithm.

    Raises:
        ValueError: settings :func:`pivotal_tuning` would refuse (mode, steps, locality), so a job
            fails before any work.
    """
    cfg = settings_dict(
        cfg,
        ("mode", "steps", "loss", "locality"),
        what="the refinement config",
        see="conf/refinement/pti.yaml",
        exact=False,
    )
    loss = dict(cfg.pop("loss") or {})
    cfg.pop("name", None)
    cfg.pop("save", None)
    options = dict(loss.pop("options", None) or {})
    locality = cfg.pop("locality")
    mode, steps = cfg["mode"], int(cfg["steps"])
    if mode not in MODES or steps < 1:
        raise ValueError(
            f"refinement.mode must be one of {MODES} and refinement.steps >= 1, got "
            f"{mode!r} and {steps}"
        )
    Locality.from_any(dict(locality) if locality else None)
    return {
        **cfg,
        "weights": {k: float(v) for k, v in loss.items()},
        "loss_options": {k: dict(v) for k, v in options.items()},
        "locality": dict(locality) if locality else None,
    }
