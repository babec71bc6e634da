"""Stage-one codes from an image encoder: one forward pass per image (e4e, pSp, LSAP_E).

The inversion job reads images at the generator's resolution; encoders take a fixed input size
(256 for the released e4e/pSp/LSAP encoders), so images are resized first: area pooling down (as
pSp's face pool), bilinear up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def encoder_input(images: Tensor, size: int) -> Tensor:
    """Images [N, 3, R, R] -> [N, 3, size, size] (area pooling down, bilinear up), same range."""
    if images.ndim != 4:
        raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
    if images.shape[-2:] == (size, size):
        return images
    if images.shape[-1] > size:
        return F.adaptive_avg_pool2d(images, size)
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


@torch.no_grad()
def encode_images(encoder: nn.Module, images: Tensor, *, num_ws: int, w_dim: int) -> Tensor:
    """Codes of ``images`` [N, 3, R, R] in [-1, 1] by ``encoder`` (its ``input_size``).

    Args:
        encoder: an ``lsap.nets.encoder`` encoder (``lsap.load_encoder``), used in its current
            mode (a loaded encoder is in eval mode); its ``latent_avg`` is already added.
        num_ws, w_dim: the generator's sizes; the encoder's codes must have them.

    Returns:
        w_plus [N, num_ws, w_dim] float32, on the images' device.

    Raises:
        ValueError: the encoder makes codes of another shape than the generator takes.
    """
    size = int(getattr(encoder, "input_size", images.shape[-1]))
    enc_ws, enc_dim = getattr(encoder, "num_ws", num_ws), getattr(encoder, "w_dim", w_dim)
    if (enc_ws, enc_dim) != (num_ws, w_dim):
        raise ValueError(
            f"the encoder makes codes [N, {enc_ws}, {enc_dim}]; the generator takes "
            f"[N, {num_ws}, {w_dim}] (an encoder for another generator)"
        )
    param = next(encoder.parameters(), None)
    x = encoder_input(images.float(), size)
    if param is not None:
        x = x.to(param.device, param.dtype)
    w_plus = encoder(x)  # [N, num_ws, w_dim]
    if tuple(w_plus.shape) != (images.shape[0], num_ws, w_dim):
        raise ValueError(
            f"the encoder returned codes {tuple(w_plus.shape)}, expected "
            f"[{images.shape[0]}, {num_ws}, {w_dim}]"
        )
    return w_plus.float().to(images.device)
