"""The generator families lsap runs (StyleGAN2, StyleGAN3): one place that picks the class.

Both expose the same API (``mapping``, ``synthesis(w_plus, noise_mode=...)``, ``num_ws``,
``w_dim``, ``w_avg``, ``resolution``, ``style_space``), so everything above ``lsap.nets`` takes
either. A config dict names its family with ``family: stylegan3``; without it, StyleGAN2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lsap.nets.stylegan2 import Generator, GeneratorConfig
from lsap.nets.stylegan3 import StyleGAN3Config, StyleGAN3Generator

AnyGenerator = Generator | StyleGAN3Generator
AnyConfig = GeneratorConfig | StyleGAN3Config
FAMILIES = ("stylegan2", "stylegan3")


def config_from_dict(d: Mapping[str, Any] | AnyConfig) -> AnyConfig:
    """The config a dict describes (``family`` key: "stylegan2", the default, or "stylegan3")."""
    if isinstance(d, GeneratorConfig | StyleGAN3Config):
        return d
    d = dict(d)
    family = d.pop("family", "stylegan2") or "stylegan2"
    if family == "stylegan3":
        return StyleGAN3Config.from_dict(d)
    if family != "stylegan2":
        raise ValueError(f"unknown generator family {family!r}; expected one of {FAMILIES}")
    return GeneratorConfig.from_dict(d)


def build_generator(config: Mapping[str, Any] | AnyConfig) -> AnyGenerator:
    """An (uninitialised) generator of the family and architecture ``config`` describes."""
    cfg = config_from_dict(config)
    return StyleGAN3Generator(cfg) if isinstance(cfg, StyleGAN3Config) else Generator(cfg)


def is_stylegan3(G: Any) -> bool:
    return isinstance(G, StyleGAN3Generator)
