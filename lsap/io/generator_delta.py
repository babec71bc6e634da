"""Generator deltas: a fine-tuned generator stored as its difference from the base it came from.

Pivotal tuning (``lsap.refinement``) changes the synthesis weights of a generator a little per
image; a full copy per image would cost 120 MB at 1024 px, a half-precision delta 57 MB. A delta
file is a weights-only torch file::

    format: "lsap.generator_delta", format_version: 1
    base_sha256: sha256 of the base generator (``Generator.sha256``: its file's, or its tensors')
    base_path: where the base was loaded from when saved (a hint used when no base is given) or None
    config: the base's GeneratorConfig as a dict
    dtype: "float16" (default) or "float32"
    delta: {state-dict key: tuned - base}, only the tensors that differ, stored in ``dtype``
    nbytes: bytes of the stored delta tensors; provenance: lsap version and what the caller adds

Loading adds the delta to the base in float32 (``base + delta.float()``): the result is the tuned
generator up to the rounding of the delta to ``dtype`` (``max_abs_error`` of :class:`DeltaInfo`),
and every load of the same file on the same base gives bit-identical weights.
:func:`apply_generator_delta` builds exactly that generator in memory, so a caller can render from
what a reload will give.
"""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lsap.core.atomic import atomic_torch_save
from lsap.core.errors import CheckpointError, LsapFileError
from lsap.core.hashing import file_sha256
from lsap.nets.stylegan2 import Generator

log = logging.getLogger(__name__)

GENERATOR_DELTA_FORMAT = "lsap.generator_delta"
FORMAT_VERSION = 1
DELTA_DTYPES = {"float16": torch.float16, "float32": torch.float32}
FILE_OVERHEAD_BYTES = 64 * 1024  # zip headers and metadata of a torch file, generous


@dataclass(frozen=True)
class DeltaInfo:
    """What :func:`save_generator_delta` wrote."""

    path: Path
    nbytes: int  # size of the file on disk
    num_tensors: int  # tensors that differ from the base
    num_params: int  # their elements
    max_abs_error: float  # max |(base + stored delta) - tuned| over all weights


def is_generator_delta(obj: Any) -> bool:
    """Whether a loaded torch object is a generator delta."""
    return isinstance(obj, Mapping) and obj.get("format") == GENERATOR_DELTA_FORMAT


def _dtype(name: str) -> torch.dtype:
    if name not in DELTA_DTYPES:
        raise ValueError(f"delta dtype must be one of {sorted(DELTA_DTYPES)}, got {name!r}")
    return DELTA_DTYPES[name]


def generator_delta(tuned: Generator, base: Generator, dtype: str = "float16") -> dict[str, Tensor]:
    """``{key: tuned - base}`` (CPU, in ``dtype``) for every state tensor that differs.

    Raises:
        ValueError: different architectures, or a difference too large for ``dtype``.
    """
    if tuned.config != base.config:
        raise ValueError(
            f"tuned generator {tuned.config} does not have the base's architecture {base.config}"
        )
    dt = _dtype(dtype)
    tuned_sd, base_sd = tuned.state_dict(), base.state_dict()
    delta: dict[str, Tensor] = {}
    for key, b in base_sd.items():
        t = tuned_sd[key]
        if not t.is_floating_point() or torch.equal(t, b):
            continue
        d = (t.detach().float() - b.detach().float().to(t.device)).cpu()
        stored = d.to(dt)
        if not torch.isfinite(stored).all():
            raise ValueError(
                f"the change of '{key}' (max {d.abs().max():.3g}) does not fit in {dtype}; "
                "save the delta as float32"
            )
        delta[key] = stored
    return delta


def apply_generator_delta(base: Generator, delta: Mapping[str, Tensor]) -> Generator:
    """A new generator with ``base + delta`` (float32, on base's device); ``base`` is unchanged.

    The result is what loading a delta file gives (``sha256`` is left to the caller).

    Raises:
        ValueError: a key the base lacks or a shape that does not fit.
    """
    G = copy.deepcopy(base)
    state = G.state_dict()
    with torch.no_grad():
        for key, d in delta.items():
            if key not in state:
                raise ValueError(f"'{key}' is not a tensor of the base generator")
            if tuple(d.shape) != tuple(state[key].shape):
                raise ValueError(
                    f"'{key}' has shape {list(d.shape)} in the delta, {list(state[key].shape)} "
                    "in the base generator"
                )
            state[key].add_(d.to(state[key].device, torch.float32))
    G.base_sha256 = base.sha256
    return G.eval().requires_grad_(False)


def estimate_delta_nbytes(G: Generator, dtype: str = "float16", prefix: str = "synthesis.") -> int:
    """Upper estimate of a delta file's size when every parameter under ``prefix`` is tuned.

    Pivotal tuning tunes ``synthesis.*``: about 57 MB in float16 for the FFHQ 1024 px generator.
    """
    itemsize = torch.empty((), dtype=_dtype(dtype)).element_size()
    numel = sum(p.numel() for n, p in G.named_parameters() if n.startswith(prefix))
    return numel * itemsize + FILE_OVERHEAD_BYTES


def check_disk_budget(
    directory: str | Path,
    count: int,
    nbytes_each: int,
    *,
    max_total_bytes: int | None,
    what: str = "generator deltas",
) -> int:
    """Refuse to start writing ``count`` files of ``nbytes_each`` that would not fit.

    Logs the estimate, and raises when the total exceeds ``max_total_bytes`` (a configured limit;
    None = no limit) or the free space of ``directory`` (keeping 5 % of the disk free).

    Returns:
        The estimated total in bytes.

    Raises:
        LsapFileError naming ``directory``, the estimate and the limit.
    """
    directory = Path(directory)
    total = int(count) * int(nbytes_each)
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free = max(0, usage.free - int(0.05 * usage.total))
    log.info(
        "%d %s of %s each = %s in %s (%s free)",
        count,
        what,
        _human(nbytes_each),
        _human(total),
        directory,
        _human(usage.free),
    )
    if max_total_bytes is not None and total > max_total_bytes:
        raise LsapFileError(
            directory,
            f"{count} {what} of {_human(nbytes_each)} each need {_human(total)}, over the "
            f"configured limit of {_human(max_total_bytes)}; raise the limit, save fewer "
            "(per_set mode stores one per set) or turn saving off",
        )
    if total > free:
        raise LsapFileError(
            directory,
            f"{count} {what} of {_human(nbytes_each)} each need {_human(total)} but only "
            f"{_human(free)} are free (keeping 5 % of the disk)",
        )
    return total


def _human(n: int | float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def save_generator_delta(
    tuned: Generator,
    base: Generator,
    path: str | Path,
    *,
    dtype: str = "float16",
    base_path: str | Path | None = None,
    provenance: Mapping[str, Any] | None = None,
    max_bytes: int | None = None,
) -> DeltaInfo:
    """Write ``tuned`` as a delta against ``base`` (atomically) and report its size.

    Args:
        tuned: the fine-tuned generator (same architecture as ``base``).
        base: the generator it was tuned from; must carry ``sha256``.
        path: the file to write.
        dtype: "float16" (half the size) or "float32".
        base_path: where ``base`` lives, recorded as a hint for loading without ``base=``.
        provenance: extra plain values recorded in the file.
        max_bytes: refuse (before writing) a delta larger than this; None = no limit.

    Raises:
        ValueError: ``base`` has no sha256, ``tuned`` records another base, or the delta is
            larger than ``max_bytes``.
    """
    from lsap.core.version import __version__

    if not base.sha256:
        raise ValueError("the base generator has no sha256; a delta must name its base")
    tuned_base = getattr(tuned, "base_sha256", None)
    if tuned_base is not None and tuned_base != base.sha256:
        raise ValueError(
            f"the tuned generator was tuned from base sha256 {tuned_base[:16]}..., not from the "
            f"given base {base.sha256[:16]}..."
        )
    delta = generator_delta(tuned, base, dtype)
    tensor_bytes = sum(d.numel() * d.element_size() for d in delta.values())
    if max_bytes is not None and tensor_bytes > max_bytes:
        raise ValueError(
            f"{path}: the delta needs {_human(tensor_bytes)}, over the limit of {_human(max_bytes)}"
        )
    max_err = 0.0
    tuned_sd, base_sd = tuned.state_dict(), base.state_dict()
    for key, d in delta.items():
        rebuilt = base_sd[key].float() + d.to(base_sd[key].device, torch.float32)
        max_err = max(max_err, float((rebuilt - tuned_sd[key].float()).abs().max()))
    obj = {
        "format": GENERATOR_DELTA_FORMAT,
        "format_version": FORMAT_VERSION,
        "base_sha256": base.sha256,
        "base_path": str(Path(base_path).resolve()) if base_path is not None else None,
        "config": base.config.to_dict(),
        "dtype": dtype,
        "delta": delta,
        "nbytes": tensor_bytes,
        "provenance": {"lsap_version": __version__, **dict(provenance or {})},
    }
    path = atomic_torch_save(path, obj)
    info = DeltaInfo(
        path=path,
        nbytes=path.stat().st_size,
        num_tensors=len(delta),
        num_params=sum(d.numel() for d in delta.values()),
        max_abs_error=max_err,
    )
    log.info(
        "wrote generator delta %s (%s, %d tensors, %s weights, max rounding error %.2g)",
        path,
        _human(info.nbytes),
        info.num_tensors,
        f"{info.num_params:,}",
        info.max_abs_error,
    )
    return info


def delta_base_file(obj: Mapping[str, Any], path: str | Path) -> str:
    """The base generator file a loaded delta recorded (``base_path``), for a load without ``base``.

    Raises:
        CheckpointError naming ``path``: the delta records no base file, or it no longer exists.
    """
    hint = obj.get("base_path")
    if not hint or not Path(hint).is_file():
        want = str(obj.get("base_sha256") or "")
        raise CheckpointError(
            path,
            f"a generator delta needs its base generator (sha256 {want[:16]}..., saved from "
            f"{hint or 'an in-memory generator'}); pass base=<generator or file>",
        )
    return str(hint)


def check_delta(obj: Mapping[str, Any], path: str | Path) -> None:
    """Raise ``CheckpointError`` naming ``path`` for an unsupported or malformed delta file."""
    if obj.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            path, f"generator delta format_version {obj.get('format_version')} is not supported"
        )
    if not str(obj.get("base_sha256") or "") or not isinstance(obj.get("delta"), Mapping):
        raise CheckpointError(path, "malformed generator delta (no base_sha256 or no delta)")


def generator_from_delta(
    obj: Mapping[str, Any],
    path: str | Path,
    base: Generator,
    device: torch.device | str = "cpu",
    *,
    base_desc: str = "generator",
) -> Generator:
    """Build the tuned generator of a loaded delta file on ``base`` (``lsap.load_generator`` loads
    the base first and calls this: this module imports no loader, so the two form no circle).

    Args:
        obj: the loaded delta file (checked with :func:`check_delta`).
        path: its path (for errors and the result's ``sha256``).
        base: the base generator (its sha256 and architecture must be the delta's).
        base_desc: how ``base`` is named in errors (e.g. ``"file G.pt"``).

    Raises:
        CheckpointError naming ``path``: a base with another sha256 or architecture, a malformed
            delta.
    """
    path = Path(path)
    check_delta(obj, path)
    want = str(obj["base_sha256"])
    if base.sha256 != want:
        raise CheckpointError(
            path,
            f"delta for another base generator: it was made against sha256 {want[:16]}... but "
            f"the given base {base_desc} has sha256 {str(base.sha256)[:16]}...",
        )
    if obj.get("config") != base.config.to_dict():
        raise CheckpointError(
            path, f"delta architecture {obj.get('config')} differs from the base's {base.config}"
        )
    try:
        G = apply_generator_delta(base, obj["delta"]).to(device)
    except ValueError as e:
        raise CheckpointError(path, f"malformed generator delta: {e}") from None
    G.sha256 = file_sha256(path)
    G.base_sha256 = want
    G.source_format = "lsap-delta"
    return G
