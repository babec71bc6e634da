"""Networks as plain ``nn.Module``s: the StyleGAN2 generator (and, later, encoders)."""

from lsap.nets.sampling import iter_w, sample_images, sample_z
from lsap.nets.stylegan2 import Generator, GeneratorConfig, broadcast_w

__all__ = ["Generator", "GeneratorConfig", "broadcast_w", "iter_w", "sample_images", "sample_z"]
