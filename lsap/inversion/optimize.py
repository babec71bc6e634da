"""``optimize_latents``: Adam on W or W+ codes (and noise maps) so that G reproduces target images.

The StyleGAN2 projector, batched: N images are optimised at once, each on its own. Every loss term
is per sample and the per-sample losses are summed, Adam is elementwise, and the random numbers
(initial noise maps, latent noise) of image i come from a generator seeded with ``seeds[i]``; so a
batch of N gives the codes of N runs of 1 (up to float rounding). LSAP_O is this with an objective
whose ``sncd`` weight is > 0; the projector baseline is the same objective with ``sncd`` 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lsap.core.compile import compiled
from lsap.core.precision import precision
from lsap.inversion.schedules import Schedule
from lsap.inversion.static import StaticAdam, capture
from lsap.losses import LossInputs, Objective
from lsap.losses.latent import normalize_noise_
from lsap.nets.sampling import iter_w
from lsap.nets.stylegan2 import Generator, broadcast_w

SPACES = ("w", "w_plus")
# Adam's betas of the StyleGAN2 projector (fixed, like Adam's eps; not a setting of conf/inversion).
ADAM_BETAS = (0.9, 0.999)

StepCallback = Callable[[int, dict[str, Tensor]], None]


@dataclass
class InversionResult:
    """What :func:`optimize_latents` returns (all tensors detached).

    Attributes:
        w_plus: optimised codes [N, num_ws, w_dim] (in W space the W code repeated on every layer).
        images: final reconstructions [N, 3, R, R], roughly in [-1, 1] (no latent noise).
        noise: optimised noise maps, one [N, 1, R_k, R_k] per synthesis conv, or None when the
            generator's stored noise was used.
        history: per-step values on the CPU, ``{"loss": [steps, N], <term>: [steps, N], ...}``:
            the weighted total and every unweighted term of the objective, per image.
    """

    w_plus: Tensor
    images: Tensor
    noise: list[Tensor] | None
    history: dict[str, Tensor]


@torch.no_grad()
def latent_std(G: Generator, num_samples: int, seed: int) -> float:
    """``sqrt(mean_k ||w_k - mean(w)||^2)`` over ``num_samples`` mapped samples (z seeded by
    ``seed``; ``inversion.w_std_samples`` / ``w_std_seed``): the latent-noise unit.

    This is the projector's ``std(w)`` (a root-mean-square distance, not a per-dimension std).
    """
    ws = torch.cat(list(iter_w(G, num_samples, seed=seed))).double()  # [K, w_dim]
    return float((ws - ws.mean(0)).square().sum(1).mean().sqrt())


def optimize_latents(
    G: Generator,
    targets: Tensor,
    objective: Objective,
    *,
    space: str,
    steps: int,
    lr: float,
    schedule: Schedule,
    optimize_noise: bool,
    autocast: str | None,
    tf32: bool,
    compile: str | None,
    cuda_graphs: bool,
    init: Tensor | None = None,
    w_std: float | None = None,
    seeds: Sequence[int] | None = None,
    callback: StepCallback | None = None,
) -> InversionResult:
    """Invert a batch of images by Adam on their latent codes (StyleGAN2 projector / LSAP_O).

    The settings (``space`` .. ``cuda_graphs``) are required: they live in ``conf/inversion/``
    alone; ``InversionSettings.from_config(cfg.inversion).optimize_kwargs(G)`` gives them all (with
    ``w_std``). ``init``, ``w_std``, ``seeds`` and ``callback`` are run-time inputs.

    Args:
        G: generator; its weights are only read (no ``.grad`` is written, nothing changes).
        targets: images [N, 3, R, R] in [-1, 1], R = ``G.resolution``, on G's device and in its
            dtype (codes, noise maps and the optimisation follow the targets' dtype).
        objective: per-sample loss (``lsap.losses.build_objective``); it sees the images, targets,
            the (noised) codes as w+ and the noise maps.
        space: "w_plus" (one code per layer) or "w" (one code repeated on every layer).
        steps: Adam steps (0 returns the start codes).
        lr: base learning rate, scaled by ``schedule.lr_scale(step / steps)``.
        schedule: lr ramps and latent noise (``Schedule.from_config``).
        init: start codes [N, w_dim] or [N, num_ws, w_dim] (e.g. an encoder's output); None =
            ``G.w_avg`` for every image. In W space a W+ start is averaged over layers.
        optimize_noise: optimise per-image noise maps (random start, re-normalised to zero mean
            and unit variance after every step); False = the generator's stored noise.
        w_std: unit of the latent noise (:func:`latent_std`; ``InversionSettings.w_std(G)``);
            may be None only when the schedule adds no latent noise.
        seeds: one seed per image (initial noise maps and latent noise); None = 0..N-1. Key them
            by image (not by batch position) to make results independent of batch composition.
        callback: called as ``callback(step, {"loss": [N], <term>: [N]})`` after every step with
            device tensors (no host sync is forced).
        autocast: None (float32) or "bf16" / "fp16": generator and loss under ``torch.autocast``;
            codes, noise maps, Adam and the summed loss stay float32 (``lsap.core.precision``).
        tf32: allow TF32 matmuls/convolutions inside the loop (CUDA).
        compile: None, or a ``torch.compile`` backend ("inductor", "aot_eager", ...;
            ``lsap.core.compile``) for the step's forward (generator and loss) and, through
            AOTAutograd, its backward.
        cuda_graphs: run the static-shape loop (``lsap.inversion.static``): Adam with tensor
            state, learning rate and latent noise written into buffers between steps, the step
            captured as one CUDA graph and replayed on CUDA (run eagerly elsewhere). Same
            results as the regular loop up to float rounding.

    Returns:
        :class:`InversionResult` with codes, final images, noise maps and per-step loss terms.
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    R, num_ws, w_dim = G.resolution, G.num_ws, G.w_dim
    if targets.ndim != 4 or targets.shape[1:] != (3, R, R):
        raise ValueError(f"targets must be [N, 3, {R}, {R}], got {tuple(targets.shape)}")
    N, device = targets.shape[0], targets.device
    if not targets.is_floating_point():
        raise ValueError(f"targets must be floating point images in [-1, 1], got {targets.dtype}")
    targets = targets.detach()
    dtype = targets.dtype
    seeds = list(range(N)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != N:
        raise ValueError(f"{len(seeds)} seeds for {N} images")
    if not optimize_noise and "noise_reg" in objective.terms:
        raise ValueError(
            "the objective regularises noise maps (noise_reg > 0) but optimize_noise is False; "
            "set the noise_reg weight to 0 or optimise the noise"
        )
    rngs = [torch.Generator().manual_seed(s) for s in seeds]  # CPU: same numbers on any device

    start = _start_codes(G, init, N, device, dtype)  # [N, num_ws, w_dim]
    code = (start.mean(1) if space == "w" else start).clone().requires_grad_(True)
    noise = _initial_noise(G, rngs, device, dtype) if optimize_noise else None
    if w_std is None:
        if schedule.noise_factor > 0:
            raise ValueError(
                "the schedule adds latent noise (noise_factor > 0): pass w_std "
                "(InversionSettings.w_std(G), from inversion.w_std_samples and w_std_seed)"
            )
        w_std = 0.0

    def loss(w: Tensor, noise: list[Tensor] | None) -> tuple[Tensor, dict[str, Tensor]]:
        """codes [N, w_dim] or [N, num_ws, w_dim] -> (total [N], {term: [N]}), float32."""
        w_plus = broadcast_w(w, num_ws, w_dim)  # [N, num_ws, w_dim]
        with precision(device, autocast, tf32):
            images = G.synthesis(w_plus, noise_mode="const", noise=noise)  # [N, 3, R, R]
            total, terms = objective(
                LossInputs(images=images, targets=targets, w_plus=w_plus, noise=noise)
            )
        return total.to(dtype), {k: v.to(dtype) for k, v in terms.items()}

    loss = compiled(loss, compile)
    names = ["loss", *objective.terms.keys()]
    history = {k: torch.zeros(steps, N, device=device, dtype=dtype) for k in names}
    run = _static_loop if cuda_graphs else _regular_loop
    run(code, noise, loss, history, rngs, lr, ADAM_BETAS, schedule, w_std, steps, callback)

    with torch.no_grad():
        w_plus = broadcast_w(code.detach(), num_ws, w_dim).contiguous()
        images = G.synthesis(w_plus, noise_mode="const", noise=noise)
    return InversionResult(
        w_plus=w_plus.clone(),
        images=images,
        noise=[n.detach().clone() for n in noise] if noise is not None else None,
        history={k: v.cpu() for k, v in history.items()},
    )


def _latent_noise(rngs: list[torch.Generator], shape, device, dtype) -> Tensor:
    """One standard-normal code perturbation per image [N, *shape], from each image's generator."""
    return torch.stack([torch.randn(shape, generator=g) for g in rngs]).to(device, dtype)


def _regular_loop(code, noise, loss, history, rngs, lr, betas, schedule, w_std, steps, callback):
    """torch.optim.Adam, one step at a time (the reference loop)."""
    params = [code, *(noise or [])]
    optimizer = torch.optim.Adam(params, lr=lr, betas=betas)
    for step in range(steps):
        t = step / steps
        for group in optimizer.param_groups:
            group["lr"] = lr * schedule.lr_scale(t)
        w = code
        strength = w_std * schedule.noise_scale(t)
        if strength > 0:
            w = code + strength * _latent_noise(rngs, code.shape[1:], code.device, code.dtype)
        total, terms = loss(w, noise)
        # Summed per-sample losses keep the images independent; autograd.grad (not backward)
        # leaves the generator's parameters and their .grad untouched.
        grads = torch.autograd.grad(total.sum(), params, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.zeros_like(p) if g is None else g
        optimizer.step()
        if noise is not None:
            normalize_noise_(noise)
        values = {"loss": total.detach(), **{k: v.detach() for k, v in terms.items()}}
        for k, v in values.items():
            history[k][step] = v
        if callback is not None:
            callback(step, values)


def _static_loop(code, noise, loss, history, rngs, lr, betas, schedule, w_std, steps, callback):
    """The regular loop's steps on static tensors, captured as one CUDA graph on CUDA.

    Between steps only buffers are written (learning rate, noise strength, latent noise); the step
    itself reads and writes the same tensors every time and never waits for the host.
    """
    params = [code, *(noise or [])]
    adam = StaticAdam(params, lr, betas)
    strength = torch.zeros((), device=code.device, dtype=code.dtype)
    eps = torch.zeros_like(code)  # the step's latent noise [N, ...], times strength (0 = none)

    def step() -> dict[str, Tensor]:
        total, terms = loss(code + strength * eps, noise)
        grads = torch.autograd.grad(total.sum(), params, allow_unused=True)
        adam.step(
            [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
        )
        if noise is not None:
            normalize_noise_(noise)
        return {"loss": total.detach(), **{k: v.detach() for k, v in terms.items()}}

    def prepare(step_index: int) -> None:
        t = step_index / steps
        adam.set_lr(lr * schedule.lr_scale(t))
        s = w_std * schedule.noise_scale(t)
        strength.fill_(s)
        if s > 0:  # the same draws, in the same order, as the regular loop
            eps.copy_(_latent_noise(rngs, code.shape[1:], code.device, code.dtype))

    if steps == 0:
        return
    prepare(0)
    run = capture(step, adam.state())
    for i in range(steps):
        if i > 0:
            prepare(i)
        values = run()
        for k, v in values.items():
            history[k][i].copy_(v)
        if callback is not None:
            callback(i, {k: h[i] for k, h in history.items()})


def _start_codes(
    G: Generator, init: Tensor | None, N: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    if init is None:
        return G.w_avg.detach().to(device, dtype).expand(N, G.num_ws, -1)
    init = broadcast_w(init.detach().to(device, dtype), G.num_ws, G.w_dim)
    if init.shape[0] != N:
        raise ValueError(f"init holds {init.shape[0]} codes for {N} targets")
    return init


def _initial_noise(
    G: Generator, rngs: list[torch.Generator], device: torch.device, dtype: torch.dtype
) -> list[Tensor]:
    """One standard-normal map per synthesis conv and image: [N, 1, R, R] each, image-keyed."""
    shapes = G.synthesis.noise_shapes()
    per_image = [[torch.randn(s, generator=g) for s in shapes] for g in rngs]
    return [
        torch.cat([maps[k] for maps in per_image]).to(device, dtype).requires_grad_(True)
        for k in range(len(shapes))
    ]
