"""Read NVlabs stylegan2-ada-pytorch / stylegan3 network pickles without executing their code.

An NVlabs ``.pkl`` pickles each network as a call of
``torch_utils.persistence._reconstruct_persistent_obj(meta)``, where ``meta`` carries the full
source of the network module (unpickling with the reference code imports and runs it) and the
module's ``__dict__`` (parameters, buffers, children, constructor kwargs). Tensor storages come as
``torch.storage._load_from_bytes(bytes)``, which would run an unrestricted ``torch.load``.

:class:`SafeUnpickler` resolves exactly the globals such a file needs to *data*: the persistent-object
hook returns ``meta`` untouched, storage bytes go through ``torch.load(weights_only=True)``, tensors
are rebuilt by torch's own rebuild functions, and ``EasyDict``/``OrderedDict``/numpy scalars and
numeric numpy arrays (StyleGAN3 keeps sizes and gains as arrays) become plain values. Any other
global is refused; nothing from the file is executed.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch._utils
from torch import Tensor

from lsap.core.errors import refusal_reason

PERSISTENT_KEY = "__nvlabs_persistent__"


class _PlainDict(dict):
    """Stands in for ``dnnlib.util.EasyDict``: a plain dict that ignores pickled instance state."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.update(state)


def _reconstruct_persistent_obj(meta: dict) -> dict:
    # The reference implementation compiles meta['module_src'] here; we only keep the data.
    if not isinstance(meta, dict) or "state" not in meta:
        raise pickle.UnpicklingError("persistent object without a 'state' dict")
    return {PERSISTENT_KEY: True, **meta}


def _load_storage_from_bytes(data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray):
        raise pickle.UnpicklingError("storage payload is not bytes")
    # weights_only refuses any code hidden in the bytes.
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(f"tensor storage refused: {refusal_reason(e)}") from None


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    return np.frombuffer(data, dtype=dtype)[0] if data is not None else dtype.type()


def _numpy_dtype(name: str, align: bool = False, copy: bool = False) -> np.dtype:
    # numpy.dtype("f8", False, True) is how dtypes pickle; only plain numeric kinds are allowed.
    dt = np.dtype(name)
    if dt.kind not in "biufc":
        raise pickle.UnpicklingError(f"refused numpy dtype {name!r}")
    return dt


class _NdarrayToken:
    """Stands in for ``numpy.ndarray`` in a pickle: a marker, not callable, only accepted by
    :func:`_numpy_reconstruct`."""


_NDARRAY = _NdarrayToken()


def _numpy_reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') followed by BUILD with
    # (version, shape, dtype, is_fortran, raw bytes): an empty plain array whose __setstate__ (numpy's
    # own) fills in data; the dtype comes through _numpy_dtype, so only numeric kinds get there.
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError("numpy array reconstruction of a class other than ndarray")
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and 0 <= n < 2**31 for n in shape)):
        raise pickle.UnpicklingError("numpy array reconstruction with a malformed shape")
    return np.ndarray(shape, dtype=np.uint8)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): _PlainDict,
    ("dnnlib", "EasyDict"): _PlainDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    # Older protocols spell sets and bytes through these (pickles written by Python 2-era tools).
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("_codecs", "encode"): codecs.encode,
}
for _name in ("_rebuild_parameter_with_state", "_rebuild_tensor_v3"):
    if hasattr(torch._utils, _name):
        _ALLOWED[("torch._utils", _name)] = getattr(torch._utils, _name)
for _dtype in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool"):
    _ALLOWED[("torch", _dtype)] = getattr(torch, _dtype)


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds only tensors, plain containers and NVlabs persistent-object data."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global '{module}.{name}': lsap reads network data only and never "
                "executes code from a pickle"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id (not an NVlabs network pickle)")


def safe_load_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler` (raises ``pickle.UnpicklingError`` on refusal)."""
    with open(path, "rb") as f:
        return SafeUnpickler(f).load()


def is_persistent(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get(PERSISTENT_KEY) is True


def flatten_module(meta: Mapping[str, Any], prefix: str = "") -> dict[str, Tensor]:
    """State dict (parameters and buffers, recursively) of an unpickled persistent module."""
    state = meta["state"]
    out: dict[str, Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, t in (state.get(group) or {}).items():
            if t is not None:
                out[prefix + name] = t.detach() if isinstance(t, Tensor) else t
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not is_persistent(child):
            raise pickle.UnpicklingError(f"submodule '{prefix}{name}' is not a persistent network")
        out.update(flatten_module(child, f"{prefix}{name}."))
    return out


def init_kwargs(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor kwargs recorded for an unpickled persistent module."""
    kw = meta["state"].get("_init_kwargs") or {}
    return dict(kw)
