"""Batch size of batched LSAP_O from a GPU's memory: ``data.batch_size=auto``.

Memory of a batched W+ optimisation grows linearly with the batch: a fixed part (generator,
loss networks and their workspaces, the S^N anchors, the CUDA context) plus a per-image part
(activations kept for backward at every resolution, the image, target, codes, noise maps and Adam's
state). With both measured once per setting (``bench/inversion.py`` prints the peak memory of
batches 1 and 2; ``per_image = peak(2) - peak(1)``, ``fixed = peak(1) - per_image``), the largest
batch that fits is

    batch = floor((total * (1 - headroom) - fixed) / per_image), clipped to [1, max_batch]

``headroom`` keeps a share of the card free for the allocator's fragmentation and other processes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from lsap.core.plain import settings_dict

_SEE = "conf/data/images.yaml"
_PLAN = ("per_image_mb", "fixed_mb", "headroom", "max_batch")  # the GPU plan's settings


def plan_batch_size(
    total_mb: float,
    per_image_mb: float,
    fixed_mb: float,
    *,
    headroom: float = 0.1,
    max_batch: int = 64,
) -> int:
    """The largest batch whose planned peak fits ``total_mb`` (see the module docstring).

    Args:
        total_mb: device memory in MiB (e.g. ``torch.cuda.get_device_properties(d).total_memory``).
        per_image_mb: measured peak growth per image in the batch, MiB (> 0).
        fixed_mb: measured peak that does not grow with the batch, MiB (>= 0).
        headroom: share of ``total_mb`` kept free, in [0, 1).
        max_batch: upper bound (very large batches stop paying off).

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
    batch_size: int | str, memory: Mapping[str, Any] | None, device: torch.device | str | None
) -> int:
    """``data.batch_size`` as an int: itself, or the plan for ``device`` when it is ``"auto"``.

    Args:
        batch_size: a positive int, or "auto".
        memory: the ``data.memory`` settings ``{per_image_mb, fixed_mb, headroom, max_batch}``.
        device: the CUDA device that will run the optimisation; "auto" on a CPU-only run (or with
            no device) gives ``memory.cpu_batch``.
    """
    if batch_size != "auto":
        return int(batch_size)
    memory = settings_dict(memory, ("cpu_batch",), what="data.memory", see=_SEE, exact=False)
    device = torch.device(device) if device is not None else None
    if device is None or device.type != "cuda" or not torch.cuda.is_available():
        return int(memory["cpu_batch"])
    memory = settings_dict(memory, _PLAN, what="data.memory", see=_SEE, exact=False)
    if memory["per_image_mb"] is None or memory["fixed_mb"] is None:
        raise ValueError(
            "data.batch_size=auto needs data.memory.per_image_mb and data.memory.fixed_mb: measure "
            "them with bench/inversion.py (peak of batches 1 and 2) on this kind of GPU"
        )
    total_mb = torch.cuda.get_device_properties(device).total_memory / 2**20
    return plan_batch_size(
        total_mb,
        float(memory["per_image_mb"]),
        float(memory["fixed_mb"]),
        headroom=float(memory["headroom"]),
        max_batch=int(memory["max_batch"]),
    )
