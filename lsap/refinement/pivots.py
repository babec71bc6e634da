"""Pivots for PTI from ``lsap-invert`` code files, checked against the generator to be tuned.

A code file (``<output_dir>/codes/<name>.pt``) holds ``w_plus [1, num_ws, w_dim]``, ``noise`` (list
of [1, 1, R, R] or None) and ``provenance.generator_sha256``; PTI must tune the generator the codes
were made for, so a different sha256 is an error naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lsap.core.errors import LsapFileError
from lsap.io.codes import check_codes
from lsap.io.inversions import CodeRecord
from lsap.nets.stylegan2 import Generator


@dataclass
class Pivots:
    """Codes read for PTI: ``w_plus [N, num_ws, w_dim]``, ``noise`` (list of [N, 1, R, R]) or None."""

    w_plus: Tensor
    noise: list[Tensor] | None
    names: list[str]
    image_paths: list[str | None]


def load_pivots(paths: Sequence[str | Path], generator: Generator) -> Pivots:
    """Read lsap-invert code files as PTI pivots for ``generator``.

    Raises:
        LsapFileError naming the file: unreadable, no ``w_plus``, wrong shape, codes made with
            another generator (sha256 in their provenance), noise maps that do not fit, or some
            files with noise maps and others without.
    """
    if not paths:
        raise ValueError("no code files given")
    codes, noises, names, images = [], [], [], []
    shapes = [s[1:] for s in generator.synthesis.noise_shapes()]
    for path in map(Path, paths):
        rec = CodeRecord.load(path)
        made_with = rec.generator_sha256
        if made_with and generator.sha256 and made_with != generator.sha256:
            raise LsapFileError(
                path,
                f"codes made with generator sha256 {str(made_with)[:16]}..., not with the "
                f"generator to be tuned ({generator.sha256[:16]}...): codes for another generator",
            )
        w = check_codes(rec.w_plus, generator.num_ws, generator.w_dim, path)
        if w.shape[0] != 1:
            raise LsapFileError(path, f"holds {w.shape[0]} codes; a code file holds one")
        noise = rec.noise
        fits = noise is None or (
            len(noise) == len(shapes)
            and all(tuple(n.shape) == (1, *s) for n, s in zip(noise, shapes, strict=True))
        )
        if not fits:
            raise LsapFileError(
                path, f"noise maps do not fit the generator (expected {len(shapes)} maps)"
            )
        codes.append(w)
        noises.append(noise)
        names.append(rec.name)
        images.append(rec.image_path)
    with_noise = [n is not None for n in noises]
    if any(with_noise) and not all(with_noise):
        missing = [str(p) for p, h in zip(paths, with_noise, strict=True) if not h]
        raise LsapFileError(missing[0], "has no noise maps while other code files have them")
    noise = (
        [torch.cat([n[i] for n in noises]).float() for i in range(len(shapes))]
        if all(with_noise)
        else None
    )
    return Pivots(torch.cat(codes), noise, names, images)
