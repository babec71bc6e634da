"""Schedules of the projector-style optimisation: learning-rate ramps and decaying latent noise.

Both are functions of the progress ``t = step / steps`` in [0, 1) (StyleGAN2 projector settings):
the learning rate ramps up linearly over the first ``lr_rampup`` of the steps and down along a
half cosine over the last ``lr_rampdown``; the latent noise starts at ``noise_factor * std(w)`` and
decays quadratically to 0 at ``t = noise_ramp``.

The schedule is read from ``conf/inversion/*.yaml`` alone (:meth:`Schedule.from_config`, every key
required; ``w_plus.yaml`` holds the StyleGAN2 projector's).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lsap.core.plain import settings_dict


@dataclass(frozen=True)
class Schedule:
    """Learning-rate and latent-noise schedule (meanings in ``conf/inversion/w_plus.yaml``)."""

    lr_rampup: float  # fraction of steps of linear lr ramp-up from 0 (0 = start at full lr)
    lr_rampdown: float  # fraction of steps of cosine lr ramp-down to 0 (0 = none)
    noise_factor: float  # initial latent noise, in units of std(w) (0 = no latent noise)
    noise_ramp: float  # fraction of steps over which the latent noise decays to 0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Schedule:
        """The schedule of an ``inversion.schedule`` config (an OmegaConf node or plain dict).

        Raises:
            ValueError: a key is missing or unknown (``inversion.schedule`` named), or a value is
                out of range.
        """
        keys = [f.name for f in dataclasses.fields(cls)]
        c = settings_dict(cfg, keys, what="inversion.schedule", see="conf/inversion/w_plus.yaml")
        return cls(**{k: float(c[k]) for k in keys})

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
