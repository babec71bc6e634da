"""Image encoders at work: stage-one codes (one forward pass per image: e4e, pSp, LSAP_E) and
the encoder-training objective (what LSAP_E minimises; ``lsap.systems.encoder`` only wires it).

The inversion job reads images at the generator's resolution; encoders take a fixed input size
(256 for the released e4e/pSp/LSAP encoders), so images are resized first: area pooling down (as
pSp's face pool), bilinear up.

A non-square generator (``generator.crop``): the encoder sees the valid region only, resized so
its longer side is the input size, as e4e trains and runs its cars encoder (the 512 x 384 photo
resized to 192 x 256 and fed as it is; the generator's output area-pooled to 256 px and cut to rows
32-224 for the losses). The padding outside the region never reaches the encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.core.precision import precision
from lsap.losses.base import LossInputs
from lsap.nets.crop import ValidRegion, crop_valid, fit_size, resize_valid
from lsap.nets.encoder_inference import inference_twin
from lsap.nets.stylegan2 import Generator


def encoder_input(images: Tensor, size: int, crop: ValidRegion | None = None) -> Tensor:
    """Images [N, 3, R, R] -> [N, 3, size, size] (area pooling down, bilinear up), same range.

    With ``crop`` (the generator's valid region): frames [N, 3, R, R] (any R) -> their valid
    region resized so its longer side is ``size``, [N, 3, h, w] (LSUN cars at 256: 192 x 256).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
    if crop is not None:
        return resize_valid(crop_valid(images, crop), fit_size(crop.height, crop.width, size))
    if images.shape[-2:] == (size, size):
        return images
    if images.shape[-1] > size:
        return F.adaptive_avg_pool2d(images, size)
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


@torch.no_grad()
def encode_images(
    encoder: nn.Module,
    images: Tensor,
    *,
    num_ws: int,
    w_dim: int,
    crop: ValidRegion | None = None,
) -> Tensor:
    """Codes of ``images`` [N, 3, R, R] in [-1, 1] by ``encoder`` (its ``input_size``).

    Args:
        encoder: an ``lsap.nets.encoder`` encoder (``lsap.load_encoder``), used in its current
            mode (a loaded encoder is in eval mode); its ``latent_avg`` is already added. In
            eval mode on the CPU its inference twin runs
            (:func:`lsap.nets.encoder_inference.inference_twin`: the same codes, less work).
        num_ws, w_dim: the generator's sizes; the encoder's codes must have them.
        crop: the generator's valid region (``G.crop``): the encoder sees only that box of the
            frames (:func:`encoder_input`); None = the whole images.

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
    x = encoder_input(images.float(), size, crop)
    if param is not None:
        x = x.to(param.device, param.dtype)
    w_plus = inference_twin(encoder)(x)  # [N, num_ws, w_dim]; the fused twin on CPU
    if tuple(w_plus.shape) != (images.shape[0], num_ws, w_dim):
        raise ValueError(
            f"the encoder returned codes {tuple(w_plus.shape)}, expected "
            f"[{images.shape[0]}, {num_ws}, {w_dim}]"
        )
    return w_plus.float().to(images.device)


def encoder_objective(
    encoder: nn.Module,
    G: Generator,
    objective: nn.Module,
    images: Tensor,
    *,
    noise_mode: str = "random",
    layers: list[int] | None = None,
    crop: ValidRegion | None = None,
    autocast: str | None = None,
    tf32: bool = False,
) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
    """One evaluation of the encoder-training objective (LSAP_E; e4e/pSp when sncd is 0).

    Args:
        encoder: images [N, 3, S, S] in [-1, 1] -> w_plus [N, num_ws, w_dim].
        G: the frozen generator.
        objective: ``lsap.losses.Objective`` (per-sample weighted terms).
        images: inputs, also the reconstruction targets, [N, 3, S, S] in [-1, 1].
        noise_mode: generator noise ("random" in training, "const" for reproducible values).
        layers: w+ indices for the layer-restricted terms (delta_norm, sncd); None = all.
        crop: the generator's valid region (``G.crop``): the encoder sees the valid region of
            ``images`` (:func:`encoder_input` at its ``input_size``) and the objective, built
            with the same region, compares only it; None = square images as they are.
        autocast: None (float32) or "bf16" / "fp16": encoder, generator and loss under
            ``torch.autocast`` (``lsap.core.precision``); the codes are cast back to float32
            before the generator and the latent terms see them, the loss is returned float32, the
            weights (and the optimiser's state) stay float32. GPU option.
        tf32: allow TF32 matmuls/convolutions (CUDA Ampere+). GPU option.

    Returns:
        ``(loss, values, w_plus, reconstructions)``: the batch-mean weighted loss (scalar), each
        term's per-sample values {name: [N]}, the codes [N, num_ws, w_dim] and the generator's
        images resized to S, [N, 3, S, S].
    """
    size = int(getattr(encoder, "input_size", images.shape[-1]))
    with precision(images.device, autocast, tf32):
        # float32 codes whatever the autocast
        w_plus = encoder(images if crop is None else encoder_input(images, size, crop)).float()
        # generator output resized to the input: area pooling down (pSp's face pool), bilinear up
        recon = encoder_input(G.synthesis(w_plus, noise_mode=noise_mode), images.shape[-1])
        inputs = LossInputs(images=recon, targets=images, w_plus=w_plus, layers=layers)
        total, values = objective(inputs)
    if autocast is not None:
        total, values, recon = (
            total.float(),
            {k: v.float() for k, v in values.items()},
            recon.float(),
        )
    return total.mean(), values, w_plus, recon
