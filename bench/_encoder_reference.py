"""The reference e4e / pSp encoder modules, loaded from their own source trees, for bench/encoder.py.

``--reference-repo`` is a work tree of omertov/encoder4editing (``--reference e4e``:
``Encoder4Editing``) or eladrich/pixel2style2pixel (``--reference psp``: ``GradualStyleEncoder``).
Only ``models/encoders`` is used; ``models.stylegan2.op`` builds CUDA extensions when imported
(for ``EqualLinear``'s module), so ``torch.utils.cpp_extension.load`` is replaced by a stub that
fails if called: the encoders never call it on CPU. Both trees name their package ``models``:
one reference per process.

The weights are the reference module's own (seeded random, with trained-looking BatchNorm
statistics), written as a pSp/e4e release file (``{'state_dict': {'encoder.*'}, 'latent_avg',
'opts'}``) and read back by lsap's reader (:func:`lsap.io.encoders.load_encoder`): both sides run
the same numbers, and the release layout is the one users' files have.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import torch

CLASSES = {"e4e": "Encoder4Editing", "psp": "GradualStyleEncoder"}


def _stub_cuda_extensions() -> None:
    import torch.utils.cpp_extension as ext

    class _NoExtension:
        def __getattr__(self, name):
            raise RuntimeError("CUDA extension called on the CPU path")

    ext.load = lambda *a, **k: _NoExtension()


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Seeded weights: default conv/linear init, BatchNorm statistics and PReLU slopes away from
    their identity values (so folding BatchNorm is tested on numbers a trained file has)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
        elif isinstance(m, torch.nn.PReLU):
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) * 0.3)


def build_reference(repo: str | Path, arch: str, num_ws: int, seed: int = 0) -> torch.nn.Module:
    """The reference encoder class of ``repo`` (IR-SE50, ``num_ws`` heads), eval mode, CPU."""
    _stub_cuda_extensions()
    sys.path.insert(0, str(Path(repo).resolve()))
    from models.encoders import psp_encoders  # the reference tree's module

    size = 2 ** (num_ws // 2 + 1)  # 18 heads <-> a 1024 px generator
    opts = SimpleNamespace(stylegan_size=size, input_nc=3, n_styles=num_ws)
    torch.manual_seed(seed)
    ref = getattr(psp_encoders, CLASSES[arch])(50, "ir_se", opts)
    _randomise(ref, seed)
    return ref.eval().requires_grad_(False)


def write_release_file(ref: torch.nn.Module, arch: str, path: Path, seed: int = 0) -> Path:
    """``ref``'s weights as a pSp/e4e release checkpoint (the layout of ``e4e_ffhq_encode.pt``)."""
    num_ws = len(ref.styles)
    latent_avg = torch.randn(num_ws, 512, generator=torch.Generator().manual_seed(seed + 1))
    obj = {
        "state_dict": {f"encoder.{k}": v.clone() for k, v in ref.state_dict().items()},
        "latent_avg": latent_avg,
        "opts": {"encoder_type": CLASSES[arch], "stylegan_size": 2 ** (num_ws // 2 + 1)},
    }
    torch.save(obj, path)
    return path
