"""Schedules of the projector-style optimisation: learning-rate ramps and decaying latent noise.

Both are functions of the progress ``t = step / steps`` in [0, 1) (StyleGAN2 projector settings):
the learning rate ramps up linearly over the first ``lr_rampup`` of the steps and down along a
half cosine over the last ``lr_rampdown``; the latent noise starts at ``noise_factor * std(w)`` and
decays quadratically to 0 at ``t = noise_ramp``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """Learning-rate and latent-noise schedule (defaults: the StyleGAN2 projector, LSAP.md)."""

    lr_rampup: float = 0.05  # fraction of steps of linear lr ramp-up from 0 (0 = start at full lr)
    lr_rampdown: float = 0.25  # fraction of steps of cosine lr ramp-down to 0 (0 = none)
    noise_factor: float = 0.05  # initial latent noise, in units of std(w) (0 = no latent noise)
    noise_ramp: float = 0.75  # fraction of steps over which the latent noise decays to 0

    def __post_init__(self) -> None:
        for name in ("lr_rampup", "lr_rampdown", "noise_ramp"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"schedule.{name} must lie in [0, 1], got {v}")
        if self.noise_factor < 0:
            raise ValueError(f"schedule.noise_factor must be >= 0, got {self.noise_factor}")

    def lr_scale(self, t: float) -> float:
        """Multiplier in [0, 1] of the base learning rate at progress t."""
        down = min(1.0, (1.0 - t) / self.lr_rampdown) if self.lr_rampdown > 0 else 1.0
        scale = 0.5 - 0.5 * math.cos(down * math.pi)
        if self.lr_rampup > 0:
            scale *= min(1.0, t / self.lr_rampup)
        return scale

    def noise_scale(self, t: float) -> float:
        """Latent-noise standard deviation at progress t, in units of std(w)."""
        if self.noise_ramp <= 0:
            return 0.0
        return self.noise_factor * max(0.0, 1.0 - t / self.noise_ramp) ** 2
