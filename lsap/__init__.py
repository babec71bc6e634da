"""lsap: StyleGAN2 inversion with latent-space alignment (LSAP, arXiv 2209.12746).

Importing lsap only defines things: no downloads, no compiled extensions, no device checks.
"""

from typing import Any

from lsap.core.version import __version__
from lsap.io.checkpoints import load_generator, save_generator
from lsap.nets.stylegan2 import Generator, GeneratorConfig

__all__ = [
    "Generator",
    "GeneratorConfig",
    "__version__",
    "load_encoder",
    "load_generator",
    "save_generator",
]


def __getattr__(name: str) -> Any:
    # Encoders are imported on first use: `import lsap` stays minimal.
    if name == "load_encoder":
        from lsap.io.encoders import load_encoder

        return load_encoder
    raise AttributeError(f"module 'lsap' has no attribute {name!r}")
