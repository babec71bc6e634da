"""Reduced-precision execution of the optimisation loops (GPU options, off by default): LSAP_O
(``inversion.autocast`` / ``inversion.tf32``), PTI (``refinement.autocast`` / ``refinement.tf32``)
and encoder training (``system.autocast``) all enter the same :func:`precision` context.

- ``autocast="bf16"``: the generator and the loss run under ``torch.autocast`` in bfloat16 while
  the optimised tensors (codes, noise maps), Adam's state and the summed loss stay float32 (the
  "master" copies); on CPU this is CPU bf16 autocast, which the tests use.
- ``tf32=True``: float32 matmuls and cuDNN convolutions may use TF32 tensor cores (CUDA Ampere+).
  It is switched on only inside the loop and restored afterwards (no process-global change leaks).

Tolerances against float32 tested in tests/test_precision.py (tiny generator, CPU bf16):

- LSAP_O: final codes within 5e-2 of the code change, relative (Frobenius; measured 3.7e-2),
  final loss within 10 %.
- PTI: tuned weights within 10 % of the tuning's weight change (measured 4.5e-2), images at the
  pivots within 5 % of the tuning's image change (measured 6.9e-3), final loss within 10 %.
- Encoder training (tiny e4e, l2 + LPIPS + sncd + delta_norm, Adam): first gradient cosine
  > 0.95 (measured 0.985), loss within 10 % at every one of 40 steps (measured 6 %), codes after
  40 steps within 30 % of the training's code change (measured 21 %).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

AUTOCAST = {None: None, "none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(name: str | None) -> torch.dtype | None:
    """``None``/"none" -> None (float32), "bf16" -> bfloat16, "fp16" -> float16."""
    if name not in AUTOCAST:
        raise ValueError(
            f"autocast must be one of {sorted(k for k in AUTOCAST if k)} or null, got {name!r}"
        )
    return AUTOCAST[name]


@contextlib.contextmanager
def precision(
    device: torch.device, autocast: str | None = None, tf32: bool = False
) -> Iterator[None]:
    """Run the enclosed forward passes with the requested precision on ``device``."""
    dtype = autocast_dtype(autocast)
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        if tf32:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
