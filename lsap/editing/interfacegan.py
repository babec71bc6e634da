"""InterFaceGAN: move codes along a linear attribute boundary's normal (age, smile, pose, ...).

Direction files as the inversion toolboxes ship them: ``.pt`` (a tensor, or a dict holding one)
or ``.npy``, shaped [w_dim], [1, w_dim] (the e4e/GANInverter ``age.pt``/``smile.pt``/``pose.pt``),
[num_ws, w_dim] or [1, num_ws, w_dim] (per-layer directions). A W direction is applied to every
edited layer; a per-layer one row by row. Directions are used as stored (InterFaceGAN's are unit
normals), so a factor is a distance in W.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lsap.editing.edit import Edit, LayerSpec, resolve_layers, restrict
from lsap.io.errors import LsapFileError

DIRECTION_KEYS = ("direction", "boundary", "w", "latent")
DIRECTION_SUFFIXES = (".pt", ".pth", ".npy")


def read_direction(path: str | Path) -> Tensor:
    """The raw direction array in ``path`` as float32 on the CPU (no shape check).

    Raises:
        LsapFileError naming the file: missing, unreadable, refused by the weights-only loader, or
        holding no single floating-point array.
    """
    path = Path(path)
    if not path.is_file():
        raise LsapFileError(path, "no such file (edit direction)")
    suffix = path.suffix.lower()
    if suffix not in DIRECTION_SUFFIXES:
        raise LsapFileError(
            path, f"not a direction file (expected one of {', '.join(DIRECTION_SUFFIXES)})"
        )
    try:
        if suffix == ".npy":
            obj = np.load(path, allow_pickle=False)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise LsapFileError(path, f"not a readable {suffix} file ({type(e).__name__})") from None
    except Exception as e:  # the weights-only unpickler raises its own error types
        raise LsapFileError(path, f"refused or unreadable ({type(e).__name__})") from None
    if isinstance(obj, Mapping):
        found = [k for k in DIRECTION_KEYS if k in obj]
        if found:
            obj = obj[found[0]]
        elif len(obj) == 1:
            obj = next(iter(obj.values()))
        else:
            raise LsapFileError(
                path, f"holds keys {sorted(obj)[:6]}; expected one array or one of {DIRECTION_KEYS}"
            )
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind != "f":
            raise LsapFileError(path, f"direction has dtype {obj.dtype}, expected floats")
        obj = torch.from_numpy(np.ascontiguousarray(obj))
    if not isinstance(obj, Tensor) or not obj.is_floating_point():
        raise LsapFileError(path, f"holds a {type(obj).__name__}, not a float tensor")
    return obj.detach().float().cpu()


def check_direction(
    direction: Tensor, num_ws: int, w_dim: int, path: str | Path = "<direction>"
) -> Tensor:
    """A direction as [num_ws, w_dim] (a W direction repeated on every layer).

    Raises:
        LsapFileError naming ``path`` for any other shape or NaN/inf values.
    """
    d = direction
    if d.ndim == 3 and d.shape[0] == 1:  # [1, num_ws, w_dim]
        d = d[0]
    if d.ndim == 2 and d.shape[0] == 1:  # [1, w_dim], as e4e/GANInverter store them
        d = d[0]
    if d.ndim == 1 and d.shape[0] == w_dim:
        d = d.unsqueeze(0).expand(num_ws, -1)
    elif not (d.ndim == 2 and d.shape == (num_ws, w_dim)):
        raise LsapFileError(
            path,
            f"direction has shape {list(direction.shape)}; this generator needs [{w_dim}], "
            f"[1, {w_dim}] or [{num_ws}, {w_dim}]",
        )
    if not torch.isfinite(d).all():
        raise LsapFileError(path, "direction contains NaN or inf")
    return d.contiguous()


def interfacegan_edit(
    direction: str | Path | Tensor,
    num_ws: int,
    w_dim: int,
    *,
    layers: LayerSpec = None,
    name: str | None = None,
) -> Edit:
    """An InterFaceGAN edit: ``w+[:, layers] += factor * direction``.

    Args:
        direction: a direction file (see the module docstring) or a tensor of those shapes.
        num_ws, w_dim: the generator's sizes (``G.num_ws``, ``G.w_dim``).
        layers: w+ layers to edit (see :func:`lsap.editing.resolve_layers`); None = all.
        name: label; default ``interfacegan/<file stem>``.
    """
    path = Path(direction) if isinstance(direction, str | Path) else None
    raw = read_direction(path) if path is not None else direction.detach().float().cpu()
    full = check_direction(raw, num_ws, w_dim, path or "<direction>")
    idx = resolve_layers(layers, num_ws)
    label = name or f"interfacegan/{path.stem if path is not None else 'direction'}"
    return Edit(
        name=label,
        direction=restrict(full, idx),
        layers=idx,
        info={
            "method": "interfacegan",
            "source": str(path) if path is not None else None,
            "norm": float(raw.norm()),
        },
    )
