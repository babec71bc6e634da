"""One inversion pipeline, without Lightning: a batch of target images -> code records.

``lsap-invert`` (``lsap.systems.inversion.InversionSystem``, which adds sharding, resume and
refinement around it), notebooks and scripts call :func:`invert_batch`; the code records it returns
are saved with ``CodeRecord.save`` (``lsap.io.inversions``) or ``lsap.inversion.results``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lsap.inversion.optimize import StepCallback, optimize_latents
from lsap.inversion.settings import InversionSettings, image_seeds
from lsap.inversion.sources import CodeSource
from lsap.io.inversions import CodeRecord
from lsap.nets.stylegan2 import Generator

Scorer = Callable[[Tensor, Tensor, Tensor], dict[str, Tensor]]


@dataclass
class InvertedBatch:
    """What :func:`invert_batch` returns (tensors detached, on the targets' device).

    Attributes:
        records: one code record per image, in order: ``name``, ``w_plus`` [1, num_ws, w_dim],
            ``noise``, ``image_path``, ``metrics`` (the scorer's values and the final ``loss``) and
            ``provenance`` ``{image_seed, steps}`` (the run's own provenance is the caller's).
        w_plus: the codes [N, num_ws, w_dim].
        images: reconstructions [N, 3, R, R] in ~[-1, 1].
        noise: noise maps, one [N, 1, R_k, R_k] per synthesis conv, or None (stored noise).
        metrics: ``{name: [N]}`` (the scorer's and ``loss``; NaN where a value does not exist).
        history: per-step values ``{"loss": [steps, N], <term>: [steps, N]}`` (no steps without
            optimisation).
        seeds: the images' seeds (``image_seed``).
        code_files: per image, the file its start code came from, or None.
    """

    records: list[CodeRecord]
    w_plus: Tensor
    images: Tensor
    noise: list[Tensor] | None
    metrics: dict[str, Tensor]
    history: dict[str, Tensor]
    seeds: list[int]
    code_files: list[str] | None = None


def invert_batch(
    G: Generator,
    targets: Tensor,
    names: Sequence[str],
    source: CodeSource,
    objective: nn.Module | None,
    settings: InversionSettings,
    scorer: Scorer | None,
    *,
    seed: int,
    w_std: float | None = None,
    image_paths: Sequence[str | None] | None = None,
    callback: StepCallback | None = None,
) -> InvertedBatch:
    """Invert one batch: start codes from ``source``, optimisation when it optimises, scores.

    Args:
        G: the generator (frozen; its weights are only read).
        targets: images [N, 3, R, R] in [-1, 1] at ``G.resolution``, on G's device.
        names: the images' ``<name>`` (their seeds come from them: batch-independent results).
        source: where the start codes come from (``lsap.inversion.sources``); its ``optimize``
            decides whether they are optimised.
        objective: the per-sample objective (``lsap.losses.build_objective``); needed when the
            source optimises.
        settings: the ``inversion`` group (:class:`InversionSettings`).
        scorer: ``scorer(images, targets, w_plus) -> {name: [N]}`` (e.g.
            ``lsap.inversion.report.ReconstructionMetrics``), or None for no metrics.
        seed: the run seed.
        w_std: the latent-noise unit (``settings.w_std(G)``, computed when None and needed).
        image_paths: the original files, recorded in the code records.
        callback: ``callback(step, {term: [N]})`` after every optimisation step.

    Returns:
        :class:`InvertedBatch`.
    """
    N = targets.shape[0]
    if len(names) != N:
        raise ValueError(f"{len(names)} names for {N} target images")
    seeds = image_seeds(seed, names)
    start = source.start(names, targets)
    if source.optimize:
        if objective is None:
            raise ValueError("a code source that optimises needs an objective")
        with torch.enable_grad():  # callers such as Lightning's prediction loop run under no_grad
            result = optimize_latents(
                G,
                targets,
                objective,
                **settings.optimize_kwargs(G, w_std=w_std),
                init=start.w_plus if start is not None else None,
                seeds=seeds,
                callback=callback,
            )
        w_plus, images, noise, history = result.w_plus, result.images, result.noise, result.history
    else:  # the source's codes are the result
        w_plus, noise = start.w_plus, start.noise
        with torch.no_grad():
            images = G.synthesis(w_plus, noise_mode="const", noise=noise)
        history = {"loss": torch.zeros(0, N)}
    metrics = dict(scorer(images, targets, w_plus)) if scorer is not None else {}
    final = history["loss"]
    metrics["loss"] = final[-1].to(targets) if len(final) else targets.new_full((N,), float("nan"))
    steps = int(final.shape[0])
    paths = list(image_paths) if image_paths is not None else [None] * N
    records = [
        CodeRecord(
            name=name,
            w_plus=w_plus[i : i + 1].detach(),
            noise=[n[i : i + 1].detach() for n in noise] if noise is not None else None,
            image_path=paths[i],
            metrics={k: float(v[i]) for k, v in metrics.items()},
            provenance={"image_seed": seeds[i], "steps": steps},
        )
        for i, name in enumerate(names)
    ]
    return InvertedBatch(
        records=records,
        w_plus=w_plus,
        images=images,
        noise=noise,
        metrics=metrics,
        history=history,
        seeds=seeds,
        code_files=start.files if start is not None and start.files else None,
    )
