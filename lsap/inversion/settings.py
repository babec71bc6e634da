"""How an inversion run is set up, typed once.

- :class:`InversionSettings`: the ``inversion`` config group (``conf/inversion/*.yaml``) as a frozen
  dataclass, built in one place (:meth:`InversionSettings.from_config`); code never re-reads the
  dict nor repeats a default that ``conf/`` holds.
- The per-image seed rule (:func:`image_seed`): every image's random numbers come from the run
  seed and the image's name, so a result does not depend on batching, sharding or order.
- What makes two runs' results comparable (:func:`result_settings`, :func:`first_difference`): a
  resumed ``lsap-invert`` run must have the settings of the run whose results it continues.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lsap.core.compile import check_backend
from lsap.core.plain import plain, settings_dict
from lsap.core.precision import autocast_dtype
from lsap.inversion.optimize import latent_std
from lsap.inversion.schedules import Schedule
from lsap.nets.stylegan2 import Generator

SPACES = ("w", "w_plus")


@dataclass(frozen=True)
class InversionSettings:
    """The ``inversion`` config group (meanings in ``conf/inversion/w_plus.yaml``).

    Attributes:
        space: ``"w_plus"`` (one code per layer) or ``"w"`` (one code repeated on every layer).
        steps: Adam steps per image.
        lr: base learning rate.
        schedule: learning-rate ramps and latent noise.
        optimize_noise: optimise per-image noise maps.
        w_std_samples, w_std_seed: mapped samples (and their seed) for std(w), the latent-noise
            unit.
        autocast, tf32, compile, cuda_graphs: speed options of the loop (``optimize_latents``).
    """

    space: str
    steps: int
    lr: float
    schedule: Schedule
    optimize_noise: bool
    w_std_samples: int
    w_std_seed: int
    autocast: str | None  # GPU option: "bf16" | "fp16" | None (float32)
    tf32: bool  # GPU option: TF32 matmuls/convolutions in the loop
    compile: str | None  # torch.compile backend of the step, None = off
    cuda_graphs: bool  # static-shape loop captured as a CUDA graph

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"inversion.space must be one of {SPACES}, got {self.space!r}")
        if self.steps < 0:
            raise ValueError(f"inversion.steps must be >= 0, got {self.steps}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> InversionSettings:
        """The settings of an ``inversion`` config (an OmegaConf node or plain dict).

        Raises:
            ValueError: a key is missing or unknown (``inversion.<key>`` named), or a value is out
                of range.
        """
        required = [f.name for f in dataclasses.fields(cls)]
        cfg = settings_dict(
            cfg, required, what="the inversion config", see="conf/inversion/w_plus.yaml"
        )
        return cls(
            space=str(cfg["space"]),
            steps=int(cfg["steps"]),
            lr=float(cfg["lr"]),
            schedule=Schedule.from_config(cfg["schedule"]),
            optimize_noise=bool(cfg["optimize_noise"]),
            w_std_samples=int(cfg["w_std_samples"]),
            w_std_seed=int(cfg["w_std_seed"]),
            autocast=autocast_dtype(cfg["autocast"]) and str(cfg["autocast"]),
            tf32=bool(cfg["tf32"]),
            compile=check_backend(cfg["compile"]),
            cuda_graphs=bool(cfg["cuda_graphs"]),
        )

    def w_std(self, G: Generator) -> float:
        """The latent-noise unit std(w) of ``G`` (0.0 when the schedule adds no latent noise)."""
        if self.schedule.noise_factor <= 0:
            return 0.0
        return latent_std(G, self.w_std_samples, self.w_std_seed)

    def optimize_kwargs(self, G: Generator, w_std: float | None = None) -> dict[str, Any]:
        """Keyword arguments of ``lsap.inversion.optimize_latents``: ``space, steps, lr, schedule,
        optimize_noise, w_std`` (computed from ``G`` unless given) and the speed options."""
        return {
            "space": self.space,
            "steps": self.steps,
            "lr": self.lr,
            "schedule": self.schedule,
            "optimize_noise": self.optimize_noise,
            "w_std": self.w_std(G) if w_std is None else float(w_std),
            "autocast": self.autocast,
            "tf32": self.tf32,
            "compile": self.compile,
            "cuda_graphs": self.cuda_graphs,
        }


def optimize_settings(cfg: Mapping[str, Any], G: Generator) -> dict[str, Any]:
    """Keyword arguments of ``optimize_latents`` from an ``inversion`` config group:
    ``InversionSettings.from_config(cfg).optimize_kwargs(G)`` (start codes are the caller's to
    read: pass them as ``init=``).

    Returns:
        ``{space, steps, lr, schedule, optimize_noise, w_std, autocast, tf32, compile,
        cuda_graphs}``.
    """
    return InversionSettings.from_config(cfg).optimize_kwargs(G)


def image_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one image, from the run seed and the image's output name."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def image_seeds(seed: int, names: Sequence[str]) -> list[int]:
    """:func:`image_seed` of each name (batch-independent)."""
    return [image_seed(seed, n) for n in names]


# -- what changes a result ---------------------------------------------------------------------
# Keys of a code source's description (``CodeSource.describe()``, as code files record it) that
# are not settings: the encoder's path (a moved encoder with the same sha256 gives the same codes)
# and the per-image file a start code was read from (the writer adds it to each code file).
_SOURCE_PATHS = ("encoder", "code_file")
# Config entries that change no number of a result (whether and where tuned generators are saved).
_NOT_RESULTS = ("save",)


def result_settings(config: Mapping[str, Any], code_source: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that changes an ``lsap-invert`` result, as ``{dotted key: value}``, in order.

    Args:
        config: the run's resolved config (``invert.yaml``; as recorded in a code file's
            ``provenance.config``).
        code_source: the code source's description (``CodeSource.describe()``, recorded as
            ``provenance.code_source``): its name, start, whether it optimises, and the encoder
            file's sha256 (not its path) or the codes it reads.

    Returns:
        ``seed``, ``data.align``, ``generator.crop``, ``code_source.*``; when the codes are optimised also
        ``inversion.*`` and ``loss.*`` (weights and options); ``alignment.num_samples`` and
        ``alignment.seed`` (the S^N anchors); ``refinement.*`` (its settings, not where the tuned
        generators are saved). Metric networks and batch sizes are left out: they change no code.
    """
    cfg = plain(config)
    out: dict[str, Any] = {
        "seed": cfg.get("seed"),
        "data.align": (cfg.get("data") or {}).get("align"),
        "generator.crop": (cfg.get("generator") or {}).get("crop"),  # what the photos fill
    }
    source = {k: v for k, v in dict(code_source).items() if k not in _SOURCE_PATHS}
    _flatten("code_source", source, out)
    if source.get("optimize", True):
        _flatten("inversion", cfg.get("inversion"), out)
        _flatten("loss", cfg.get("loss"), out)
    alignment = cfg.get("alignment") or {}
    for k in ("num_samples", "seed"):
        out[f"alignment.{k}"] = alignment.get(k)
    _flatten("refinement", cfg.get("refinement") or {"name": "none"}, out)
    return out


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k not in _NOT_RESULTS:
                _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def first_difference(earlier: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """The first key (in ``now``'s order, then ``earlier``'s) whose value differs, or None."""
    for key in [*now, *(k for k in earlier if k not in now)]:
        if earlier.get(key, _UNSET) != now.get(key, _UNSET):
            return key
    return None


_UNSET = "<unset>"
