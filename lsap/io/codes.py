"""Read files of latent codes (W or W+) and check them against a generator.

Accepted: ``.pt`` (a tensor, or a dict holding one under ``w_plus``/``codes``/``latents``/``w``),
``.npy`` and ``.npz`` (a single array, or one of those keys). Shapes [N, w_dim] (W codes, repeated
on every layer) or [N, num_ws, w_dim] (W+).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lsap.core.errors import LsapFileError, refusal_reason

CODE_KEYS = ("w_plus", "codes", "latents", "latent", "w")
CODE_SUFFIXES = (".pt", ".pth", ".npy", ".npz")


def _pick(container: Mapping[str, Any], path: Path) -> Any:
    for key in CODE_KEYS:
        if key in container:
            return container[key]
    if len(container) == 1:
        return next(iter(container.values()))
    raise LsapFileError(
        path, f"no codes found: expected one array or a key among {list(CODE_KEYS)}"
    )


def read_codes(path: str | Path) -> Tensor:
    """Read the raw code array in ``path`` as a float32 tensor (no shape check).

    Raises:
        LsapFileError naming the file: missing, unreadable, no array, or codes that are not
        floating point (complex and integer arrays are refused, not cast).
    """
    path = Path(path)
    if not path.is_file():
        raise LsapFileError(path, "no such file")
    suffix = path.suffix.lower()
    if suffix not in CODE_SUFFIXES:
        raise LsapFileError(path, f"not a tensor file (expected one of {', '.join(CODE_SUFFIXES)})")
    try:
        if suffix in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
        elif suffix == ".npy":
            obj = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as z:
                obj = {k: z[k] for k in z.files}
    except (OSError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise LsapFileError(path, f"not a readable {suffix} file ({type(e).__name__})") from None
    except Exception as e:  # the weights-only unpickler raises its own error types
        reason = refusal_reason(e)
        raise LsapFileError(path, f"refused or unreadable ({type(e).__name__}: {reason})") from None
    if isinstance(obj, Mapping):
        obj = _pick(obj, path)
    if isinstance(obj, np.ndarray):
        # complex or integer codes are not latents (a cast would drop the imaginary part)
        if obj.dtype.kind != "f":
            raise LsapFileError(path, f"codes have dtype {obj.dtype}, expected floating point")
        obj = torch.from_numpy(np.ascontiguousarray(obj))
    if not isinstance(obj, Tensor):
        raise LsapFileError(path, f"holds a {type(obj).__name__}, not a tensor of codes")
    if not obj.is_floating_point():
        dtype = str(obj.dtype).removeprefix("torch.")
        raise LsapFileError(path, f"codes have dtype {dtype}, expected floating point")
    return obj.float()


def check_codes(codes: Tensor, num_ws: int, w_dim: int, path: str | Path = "<codes>") -> Tensor:
    """Validate codes for a generator and return them as w+ [N, num_ws, w_dim].

    Raises:
        LsapFileError naming ``path`` for a wrong rank or size, an empty set, or NaN/inf values.
    """
    if codes.ndim == 2:
        if codes.shape[1] != w_dim:
            raise LsapFileError(
                path, f"codes have shape {list(codes.shape)}, expected [N, {w_dim}]"
            )
        codes = codes.unsqueeze(1).expand(-1, num_ws, -1)
    elif codes.ndim == 3:
        if codes.shape[2] != w_dim:
            raise LsapFileError(path, f"codes have w_dim {codes.shape[2]}, the generator {w_dim}")
        if codes.shape[1] != num_ws:
            raise LsapFileError(
                path, f"codes have {codes.shape[1]} layers but the generator has num_ws={num_ws}"
            )
    else:
        raise LsapFileError(
            path,
            f"codes have shape {list(codes.shape)}; expected [N, {w_dim}] or [N, {num_ws}, {w_dim}]",
        )
    if codes.shape[0] == 0:
        raise LsapFileError(path, "holds no codes (N = 0)")
    bad = ~torch.isfinite(codes)
    if bad.any():
        rows = bad.flatten(1).any(1).nonzero().flatten().tolist()
        raise LsapFileError(
            path, f"codes contain NaN or inf (rows {rows[:5]}{'...' if len(rows) > 5 else ''})"
        )
    return codes


def load_codes(path: str | Path, num_ws: int, w_dim: int) -> Tensor:
    """Read and validate a codes file: w+ [N, num_ws, w_dim] float32."""
    return check_codes(read_codes(path), num_ws, w_dim, path)
