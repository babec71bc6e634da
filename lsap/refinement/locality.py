"""PTI's locality regulariser: keep the tuned generator's images away from the pivot unchanged.

Pivotal tuning makes the generator reproduce one image at one code; the regulariser samples codes
at a fixed distance from the pivot, in the direction of typical codes, and penalises how much the
tuned generator's images there differ from the original generator's (Roich et al. 2022, 3.3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from lsap.losses import LossInputs, Objective
from lsap.nets.stylegan2 import Generator


@dataclass(frozen=True)
class Locality:
    """Settings of the locality regulariser (``refinement.locality``; the reference values, PTI /
    GANInverter ``configs/pti/pti.yaml``, live in ``conf/refinement/pti.yaml`` alone)."""

    weight: float  # weight of the regulariser in the PTI loss; 0 = off
    l2: float  # weight of the image l2 change inside the regulariser
    lpips: float  # weight of the image LPIPS change inside the regulariser
    alpha: float  # distance moved from the pivot, in the flattened w+ space
    interval: int  # apply it on steps 0, interval, 2 * interval, ...
    num_samples: int  # sampled codes per pivot each time
    truncation: float  # sampled w pulled towards w_avg: w_avg + truncation * (w - w_avg)

    def __post_init__(self) -> None:
        if self.weight < 0 or self.l2 < 0 or self.lpips < 0:
            raise ValueError("locality weights must be >= 0")
        if self.interval < 1 or self.num_samples < 1:
            raise ValueError(
                f"locality interval and num_samples must be >= 1, got {self.interval}, "
                f"{self.num_samples}"
            )

    @property
    def enabled(self) -> bool:
        return self.weight > 0 and (self.l2 > 0 or self.lpips > 0)

    @classmethod
    def from_any(cls, value: Locality | Mapping | None) -> Locality | None:
        """A :class:`Locality` from itself, a config mapping (every field), or None (off).

        Raises:
            ValueError: unknown or missing settings (named).
        """
        if value is None or isinstance(value, Locality):
            return value
        names = {f.name for f in fields(cls)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"unknown locality settings {sorted(unknown)}; known: {sorted(names)}")
        missing = sorted(names - set(value))
        if missing:
            raise ValueError(
                f"refinement.locality misses {', '.join(missing)} (see conf/refinement/pti.yaml)"
            )
        return cls(**{k: value[k] for k in value})


def locality_codes(
    G: Generator,
    pivots: Tensor,
    *,
    alpha: float,
    num_samples: int,
    truncation: float,
    rng: torch.Generator | None = None,
) -> Tensor:
    """Codes at distance ``alpha`` from each pivot, towards truncated samples of the generator.

    For each pivot p and each of ``num_samples`` samples ``w = f(z)``:
    ``w_t = w_avg + truncation * (w - w_avg)`` (the same on every layer),
    ``code = p + alpha * (w_t - p) / ||w_t - p||`` with the norm over the whole w+ code.

    Args:
        G: the generator whose mapping and ``w_avg`` define the samples.
        pivots: [B, num_ws, w_dim].
        rng: CPU random generator of the z samples (reproducible on every device).

    Returns:
        codes [B * num_samples, num_ws, w_dim], pivot-major (pivot 0's samples first).
    """
    B = pivots.shape[0]
    z = torch.randn(B * num_samples, G.z_dim, generator=rng).to(pivots.device)
    with torch.no_grad():
        w = G.mapping(z)  # [B*S, w_dim]
    w = G.w_avg.to(w) + truncation * (w - G.w_avg.to(w))
    p = pivots.detach().repeat_interleave(num_samples, dim=0)  # [B*S, num_ws, w_dim]
    direction = w[:, None, :] - p
    norm = direction.flatten(1).norm(dim=1).clamp_min(1e-8)
    return p + alpha * direction / norm[:, None, None]


def locality_loss(
    tuned: Generator,
    original: Generator,
    codes: Tensor,
    objective: Objective,
    *,
    noise_mode: str = "const",
) -> tuple[Tensor, dict[str, Tensor]]:
    """Image change of ``tuned`` against ``original`` at ``codes`` [M, num_ws, w_dim].

    ``objective`` weights the l2 and lpips terms (the regulariser's own weights). The original's
    images are computed without gradients; ``original`` is not modified.

    Returns:
        ``(loss, terms)``: the weighted change averaged over the M codes (a scalar with gradients
        for ``tuned``) and the unweighted per-term means.
    """
    with torch.no_grad():
        before = original.synthesis(codes, noise_mode=noise_mode)
    after = tuned.synthesis(codes, noise_mode=noise_mode)
    total, terms = objective(LossInputs(images=after, targets=before))
    return total.mean(), {k: v.detach().mean() for k, v in terms.items()}
