"""Batch size of batched LSAP_O from a GPU's memory: ``data.batch_size=auto``.

Memory of a batched W+ optimisation grows linearly with the batch: a fixed part (generator,
loss networks and their workspaces, the S^N anchors, the CUDA context) plus a per-image part
(activations kept for backward at every resolution, the image, target, codes, noise maps and Adam's
state). Both are measured from the peak memory of one optimisation step at batch 1 and at batch 2:

    per_image = peak(2) - peak(1)        fixed = peak(1) - per_image

either once per GPU kind and setting (``bench/inversion.py`` prints them; set in
``data.memory.per_image_mb`` / ``fixed_mb``) or, when those are null, at the start of the run with
the run's own generator, objective, resolution and settings (:func:`measure_footprint` of
:func:`lsap_o_probe`). The largest batch that fits is then

    batch = floor((total * (1 - headroom) - fixed) / per_image), clipped to [1, max_batch]

``headroom`` keeps a share of the card free for the allocator's fragmentation and other processes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from lsap.core.plain import settings_dict
from lsap.inversion.optimize import optimize_latents
from lsap.losses import Objective
from lsap.nets.stylegan2 import Generator

log = logging.getLogger(__name__)

_SEE = "conf/data/images.yaml"
_PLAN = ("per_image_mb", "fixed_mb", "headroom", "max_batch")  # the GPU plan's settings
_PROBE_SEED = 0  # the probe's random targets and noise maps (the footprint does not depend on it)

ProbeStep = Callable[[int], None]  # one optimisation step at the given batch size, no side effects


@dataclass(frozen=True)
class Footprint:
    """Peak memory of one optimisation step as ``fixed_mb + batch * per_image_mb`` (MiB)."""

    per_image_mb: float
    fixed_mb: float


class PeakMemory(Protocol):
    """A peak-memory counter: what :func:`measure_footprint` reads (CUDA: :class:`CudaPeakMemory`;
    tests: a fake allocator)."""

    def reset(self) -> None:
        """Free cached blocks and start a new peak at what is allocated now."""

    def peak_mb(self) -> float:
        """The peak of allocated memory since the last :meth:`reset`, MiB."""


class CudaPeakMemory:
    """:class:`PeakMemory` of one CUDA device (``torch.cuda.max_memory_allocated``)."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)

    def reset(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mb(self) -> float:
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device) / 2**20


def measure_footprint(step: ProbeStep, memory: PeakMemory) -> Footprint:
    """The footprint of ``step`` from its peaks at batch 1 and 2 (formula: module docstring).

    The probe leaves no trace on the run: the global random state (CPU and CUDA) is restored,
    the memory it cached is freed and the peak counter is reset afterwards (the run's own peak
    figures do not include the probe).

    Args:
        step: runs one optimisation step at the given batch size (e.g. :func:`lsap_o_probe`).
        memory: the peak-memory counter of the step's device.

    Raises:
        ValueError: the measured footprint is not positive (the counter does not see the step).
    """
    peaks = []
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            for batch in (1, 2):
                memory.reset()
                step(batch)
                peaks.append(memory.peak_mb())
    finally:
        memory.reset()
    per_image, fixed = peaks[1] - peaks[0], peaks[0] - (peaks[1] - peaks[0])
    if per_image <= 0 or fixed < 0:
        raise ValueError(
            f"memory probe measured peaks {peaks[0]:.0f} MiB (batch 1) and {peaks[1]:.0f} MiB "
            "(batch 2): no per-image footprint; set data.memory.per_image_mb and fixed_mb "
            f"(see {_SEE})"
        )
    return Footprint(per_image_mb=per_image, fixed_mb=fixed)


def lsap_o_probe(
    G: Generator, objective: Objective, optimize_kwargs: Mapping[str, Any]
) -> ProbeStep:
    """One step of the run's latent optimisation (forward, backward and Adam step of ``objective``)
    on random targets at ``G``'s resolution and device, as a :data:`ProbeStep`.

    Each call starts from fresh codes, noise maps and optimiser state and keeps none of them;
    ``G`` and ``objective`` are only read (``optimize_latents`` writes no parameter nor ``.grad``).

    Args:
        G: the run's generator, on its device.
        objective: the run's objective (``lsap.losses.build_objective``), on the same device.
        optimize_kwargs: the run's ``optimize_latents`` keywords
            (``InversionSettings.optimize_kwargs``); ``steps`` is replaced by 1.
    """
    device = G.w_avg.device
    R = G.resolution

    def step(batch: int) -> None:
        rng = torch.Generator().manual_seed(_PROBE_SEED)
        targets = (torch.rand(batch, 3, R, R, generator=rng) * 2 - 1).to(device)  # [N, 3, R, R]
        kwargs = {**optimize_kwargs, "steps": 1, "callback": None}
        seeds = [_PROBE_SEED + i for i in range(batch)]
        with torch.enable_grad():  # Lightning makes the loaders under no_grad
            optimize_latents(G, targets, objective, seeds=seeds, **kwargs)

    return step


def plan_batch_size(
    total_mb: float, per_image_mb: float, fixed_mb: float, *, headroom: float, max_batch: int
) -> int:
    """The largest batch whose planned peak fits ``total_mb`` (see the module docstring).

    Args:
        total_mb: device memory in MiB (e.g. ``torch.cuda.get_device_properties(d).total_memory``).
        per_image_mb: measured peak growth per image in the batch, MiB (> 0).
        fixed_mb: measured peak that does not grow with the batch, MiB (>= 0).
        headroom: share of ``total_mb`` kept free, in [0, 1) (``data.memory.headroom``).
        max_batch: upper bound, >= 1 (``data.memory.max_batch``).

    Raises:
        ValueError: non-positive footprint, headroom outside [0, 1), or not even one image fits.
    """
    if per_image_mb <= 0 or fixed_mb < 0 or not 0 <= headroom < 1 or max_batch < 1:
        raise ValueError(
            f"memory plan needs per_image_mb > 0, fixed_mb >= 0, 0 <= headroom < 1, max_batch >= 1; "
            f"got {per_image_mb}, {fixed_mb}, {headroom}, {max_batch}"
        )
    usable = total_mb * (1.0 - headroom) - fixed_mb
    batch = math.floor(usable / per_image_mb)
    if batch < 1:
        raise ValueError(
            f"one image needs {fixed_mb + per_image_mb:.0f} MiB but only {usable + fixed_mb:.0f} MiB "
            f"of {total_mb:.0f} MiB are usable (headroom {headroom}): set data.batch_size=1 on a "
            "larger device or lower the resolution"
        )
    return min(batch, max_batch)


def resolve_batch_size(
    batch_size: int | str,
    memory: Mapping[str, Any] | None,
    device: torch.device | str | None,
    probe: Callable[[], ProbeStep] | None = None,
    peak: PeakMemory | None = None,
    total_mb: float | None = None,
) -> int:
    """``data.batch_size`` as an int: itself, or the plan for ``device`` when it is ``"auto"``.

    Args:
        batch_size: a positive int, or "auto".
        memory: the ``data.memory`` settings ``{per_image_mb, fixed_mb, headroom, max_batch,
            cpu_batch}``; ``per_image_mb`` / ``fixed_mb`` null = measured here by ``probe``.
        device: the device that will run the optimisation; "auto" on a CPU-only run (or with
            no device) gives ``memory.cpu_batch``.
        probe: makes the run's :data:`ProbeStep` (e.g. ``InversionSystem.memory_probe``); called
            only when the footprint is measured.
        peak: the peak-memory counter of ``device`` (default :class:`CudaPeakMemory`).
        total_mb: the device's memory, MiB (default: the CUDA device's total memory).

    Raises:
        ValueError: the footprint is not set and there is no probe, or not one image fits.
    """
    if batch_size != "auto":
        return int(batch_size)
    memory = settings_dict(memory, ("cpu_batch",), what="data.memory", see=_SEE, exact=False)
    device = torch.device(device) if device is not None else None
    if device is None or device.type != "cuda":
        log.info(
            "data.batch_size=auto on %s: data.memory.cpu_batch %s", device, memory["cpu_batch"]
        )
        return int(memory["cpu_batch"])
    memory = settings_dict(memory, _PLAN, what="data.memory", see=_SEE, exact=False)
    if total_mb is None:
        total_mb = torch.cuda.get_device_properties(device).total_memory / 2**20
    if memory["per_image_mb"] is None or memory["fixed_mb"] is None:
        if probe is None:
            raise ValueError(
                "data.batch_size=auto without data.memory.per_image_mb / fixed_mb measures them "
                "with the run's optimisation step, and this run has none: set data.batch_size"
            )
        found = measure_footprint(probe(), peak or CudaPeakMemory(device))
        source = "measured by one step at batch 1 and 2"
    else:
        found = Footprint(float(memory["per_image_mb"]), float(memory["fixed_mb"]))
        source = "from data.memory"
    batch = plan_batch_size(
        total_mb,
        found.per_image_mb,
        found.fixed_mb,
        headroom=float(memory["headroom"]),
        max_batch=int(memory["max_batch"]),
    )
    log.info(
        "data.batch_size=auto on %s: %.0f MiB per image + %.0f MiB fixed (%s), %.0f MiB total, "
        "headroom %s, max_batch %s -> batch %d",
        device,
        found.per_image_mb,
        found.fixed_mb,
        source,
        total_mb,
        memory["headroom"],
        memory["max_batch"],
        batch,
    )
    return batch
