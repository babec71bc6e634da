"""Images of edited codes (every factor of an edit, batched; optimised noise maps honoured)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lsap.editing.edit import Edit
from lsap.nets.stylegan2 import Generator
from lsap.nets.synthesis import synthesize, synthesize_each


@torch.no_grad()
def render_edit(
    G: Generator | Sequence[Generator],
    w_plus: Tensor,
    edit: Edit,
    factors: Sequence[float],
    noise: Sequence[Tensor] | None = None,
    *,
    batch_size: int = 8,
) -> tuple[Tensor, Tensor]:
    """Edit codes with every factor and synthesise them.

    Args:
        G: the generator, or one per code (each image's tuned generator after pivotal tuning).
        w_plus: [N, num_ws, w_dim] codes on G's device.
        noise: per-layer noise [N, 1, R, R] (see :func:`stack_noise`) or None.

    Returns:
        ``(codes [N, F, num_ws, w_dim], images [N, F, 3, R, R])``.
    """
    codes = edit.factors(w_plus, factors)  # [N, F, L, D]
    N, F_ = codes.shape[:2]
    nz = None
    if noise is not None:  # every factor of an image uses that image's noise
        nz = [n.expand(N, -1, -1, -1).repeat_interleave(F_, dim=0) for n in noise]
    if not isinstance(G, Sequence):  # one generator (of either family)
        images = synthesize(G, codes.flatten(0, 1), nz, batch_size=batch_size)
    else:
        per_code = [g for g in G for _ in range(F_)]
        images = synthesize_each(per_code, codes.flatten(0, 1), nz, batch_size=batch_size)
    return codes, images.unflatten(0, (N, F_))
