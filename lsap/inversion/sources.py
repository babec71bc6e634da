"""Where the inversion job's stage-one codes come from (the ``code_source`` config group).

- ``init: w_avg``: every image starts at the generator's ``w_avg`` (then optimised: LSAP_O, or the
  projector baseline with ``loss=projector``);
- ``init: encoder``: an image encoder's codes (:func:`lsap.inversion.encode.encode_images`), used as
  they are or as the start of the optimisation;
- ``init: codes``: codes of earlier results matched to the images by ``<name>`` (an ``lsap-invert``
  folder, a folder of code files, one code file), with their noise maps; codes recorded for another
  generator are refused.

``optimize: true`` optimises from the start codes (``lsap.inversion.optimize_latents``); ``false``
takes them as the result.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lsap.core.errors import LsapFileError
from lsap.core.plain import settings_dict
from lsap.inversion.encode import encode_images
from lsap.io.inversions import CodeSet
from lsap.nets.stylegan2 import Generator
from lsap.nets.synthesis import stack_noise

log = logging.getLogger(__name__)

INITS = ("w_avg", "encoder", "codes")
_KEYS = ("name", "init", "encoder", "codes", "optimize")  # the code_source group's keys


@dataclass
class StartCodes:
    """Codes of a batch from a source.

    Attributes:
        w_plus: [N, num_ws, w_dim] float32, on the images' device.
        noise: noise maps, one [N, 1, R_k, R_k] per synthesis conv, or None (stored noise).
        files: per image, the file its code was read from (codes source), else None.
    """

    w_plus: Tensor
    noise: list[Tensor] | None = None
    files: list[str] | None = None


class CodeSource:
    """Start codes for the images of a batch; this base class is ``init: w_avg`` (no codes).

    Args:
        name: the source's name (recorded in every code file's provenance).
        optimize: whether the job optimises from the start codes.
    """

    init = "w_avg"

    def __init__(self, name: str, optimize: bool) -> None:
        self.name, self.optimize = str(name), bool(optimize)

    def start(self, names: Sequence[str], images: Tensor) -> StartCodes | None:
        """Codes for ``images`` [N, 3, R, R] in [-1, 1] named ``names`` (None: start at w_avg)."""
        return None

    def check_names(self, names: Sequence[str]) -> None:
        """Raise before any work when some image has no start code."""

    def to(self, device: torch.device | str) -> CodeSource:
        return self

    def describe(self) -> dict[str, Any]:
        """What made the codes, for the code files' provenance (``code_source``)."""
        return {"name": self.name, "init": self.init, "optimize": self.optimize}


class EncoderSource(CodeSource):
    """Codes from an image encoder (``lsap.load_encoder``); see :func:`encode_images`."""

    init = "encoder"

    def __init__(self, name: str, optimize: bool, path: str | Path, generator: Generator) -> None:
        from lsap.assets import resolve
        from lsap.io.encoders import load_encoder

        super().__init__(name, optimize)
        self.path = resolve(path)  # asset:<name> allowed
        self.encoder = load_encoder(self.path).requires_grad_(False)
        self.num_ws, self.w_dim = generator.num_ws, generator.w_dim
        self.crop = generator.crop  # the encoder sees the generator's valid region only
        enc = self.encoder
        if (enc.num_ws, enc.w_dim) != (self.num_ws, self.w_dim):
            raise LsapFileError(
                self.path,
                f"encoder makes codes [N, {enc.num_ws}, {enc.w_dim}], the generator takes "
                f"[N, {self.num_ws}, {self.w_dim}]: an encoder for another generator",
            )
        recorded = getattr(enc, "crop", None)  # lsap files record their generator's valid region
        here = generator.crop.box if generator.crop is not None else None
        if recorded is not None and list(recorded) != here:
            log.warning(
                "%s: encoder trained for the valid region %s, this run's generator.crop is %s: "
                "it will see another part of the images",
                self.path,
                list(recorded),
                here,
            )
        trained_with = getattr(enc, "generator_sha256", None)
        if trained_with and generator.sha256 and trained_with != generator.sha256:
            # a warning, not an error: the same weights in another file format have another sha256
            log.warning(
                "%s: encoder trained with generator %s..., this run's is %s...",
                self.path,
                trained_with[:12],
                generator.sha256[:12],
            )

    def start(self, names: Sequence[str], images: Tensor) -> StartCodes:
        w_plus = encode_images(
            self.encoder, images, num_ws=self.num_ws, w_dim=self.w_dim, crop=self.crop
        )
        return StartCodes(w_plus.to(images.dtype))

    def to(self, device: torch.device | str) -> EncoderSource:
        self.encoder.to(device)
        return self

    def describe(self) -> dict[str, Any]:
        enc = self.encoder
        return {
            **super().describe(),
            "encoder": str(self.path),
            "encoder_sha256": getattr(enc, "sha256", None),
            "encoder_format": getattr(enc, "source_format", None),
            "encoder_arch": getattr(enc, "arch", None),
            "encoder_input_size": int(enc.input_size),
        }


class CodesSource(CodeSource):
    """Codes of earlier results (``lsap.io.inversions.CodeSet``), matched by ``<name>``.

    A code file naming a tuned generator (a PTI result) gives its pivot; the tuned generator is not
    reused. Raises ``LsapFileError`` naming the file for codes recorded for another generator.
    """

    init = "codes"

    def __init__(self, name: str, optimize: bool, path: str | Path, generator: Generator) -> None:
        super().__init__(name, optimize)
        self.path = Path(path)
        self.G = generator
        self.codes = CodeSet(
            self.path, generator.num_ws, generator.w_dim, sha256=generator.sha256, strict=True
        )
        self.index = {n: i for i, n in enumerate(self.codes.names)}

    def check_names(self, names: Sequence[str]) -> None:
        missing = sorted(set(names) - self.index.keys())
        if missing:
            raise LsapFileError(
                self.path,
                f"holds no codes for {len(missing)} of the {len(names)} images to invert (e.g. "
                f"{missing[:3]}); codes are matched to images by <name>, the lsap-invert naming",
            )

    def start(self, names: Sequence[str], images: Tensor) -> StartCodes:
        records = [self.codes[self.index[n]] for n in names]
        w_plus = torch.cat([r.w_plus for r in records]).to(images.device, images.dtype)
        try:
            noise = stack_noise(self.G, [r.noise for r in records])
        except ValueError as e:
            raise LsapFileError(records[0].source, f"noise maps do not fit: {e}") from None
        if noise is not None:
            noise = [n.to(images.device, images.dtype) for n in noise]
        return StartCodes(w_plus, noise, [r.source for r in records])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "codes": str(self.path)}


def build_code_source(cfg: Mapping[str, Any], generator: Generator) -> CodeSource:
    """The source a ``code_source`` config describes (``conf/code_source/*.yaml``), on the CPU.

    Raises:
        ValueError: a missing or unknown key, an unknown ``init``, a missing path, or
            ``init: w_avg`` without optimisation.
        LsapFileError / CheckpointError: an unreadable encoder or codes, codes of another generator.
    """
    cfg = settings_dict(cfg, _KEYS, what="code_source", see="conf/code_source/optimize.yaml")
    name, init, optimize = str(cfg["name"]), str(cfg["init"]), bool(cfg["optimize"])
    if init not in INITS:
        raise ValueError(f"code_source.init must be one of {INITS}, got {init!r}")
    if init == "w_avg":
        if not optimize:
            raise ValueError(
                "code_source.init=w_avg with code_source.optimize=false would give w_avg for every image; "
                "optimise, or start from an encoder or earlier codes"
            )
        return CodeSource(name, optimize)
    path = cfg[init]
    if not path:
        raise ValueError(f"code_source.init={init} needs code_source.{init}=<path>")
    if init == "encoder":
        return EncoderSource(name, optimize, path, generator)
    return CodesSource(name, optimize, path, generator)
