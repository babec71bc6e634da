"""``torch.compile`` as an option (off by default): the LSAP_O step (``inversion.compile``) and
benchmarks of the generator (``bench/generator.py --compile``).

The backend is named in the config: ``"inductor"`` (the real compiler: Triton kernels on CUDA,
C++/OpenMP on CPU, which needs a C++ compiler and takes minutes for a 1024 px generator),
``"aot_eager"`` (traces forward and backward through AOTAutograd, runs them eagerly: checks that a
function compiles without the compiler's cost, which the CPU tests use) or ``"eager"`` (Dynamo
capture only). Nothing is imported from ``torch._dynamo`` until a function is compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

BACKENDS = ("inductor", "aot_eager", "eager", "cudagraphs")


def check_backend(backend: str | None) -> str | None:
    """``backend`` when it is None or one of :data:`BACKENDS`; else a ValueError naming them."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"compile backend must be one of {BACKENDS} or null, got {backend!r}")
    return backend


def compiled(fn: F, backend: str | None) -> F:
    """``fn`` itself when ``backend`` is None, else ``torch.compile(fn, backend=backend)``.

    Shapes are static (``dynamic=False``): an inversion runs one batch shape for all its steps,
    and a recompile for a new batch size is cheaper than dynamic-shape kernels on every step.
    """
    if check_backend(backend) is None:
        return fn
    import torch

    return torch.compile(fn, backend=backend, dynamic=False)
