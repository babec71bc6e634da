"""The pure-PyTorch operations of StyleGAN2: resampling filter, blur, 2x upsampling, modulated conv.

Every op is a handful of large PyTorch calls (grouped/transposed convolutions), the same code on CPU
and CUDA, and autocast-friendly. No compiled extensions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8


def make_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> Tensor:
    """Separable low-pass filter as a 2-D kernel.

    Args:
        taps: 1-D filter taps; StyleGAN2 uses [1, 3, 3, 1].

    Returns:
        kernel [k, k], the outer product of ``taps`` with itself, normalised to sum 1.
    """
    t = torch.as_tensor(taps, dtype=torch.float32)
    kernel = t[:, None] * t[None, :]
    return kernel / kernel.sum()


def _depthwise(kernel: Tensor, channels: int, dtype: torch.dtype) -> Tensor:
    # [k, k] -> [C, 1, k, k]: one copy of the filter per channel, for a grouped convolution.
    return kernel.to(dtype).expand(channels, 1, *kernel.shape)


def blur_after_transposed_conv(x: Tensor, kernel: Tensor) -> Tensor:
    """Low-pass the output of a stride-2, 3x3 transposed convolution (size 2H+1 -> 2H).

    Args:
        x: [N, C, 2H+1, 2W+1] output of ``conv_transpose2d(stride=2)`` with a 3x3 kernel.
        kernel: [4, 4] filter from :func:`make_filter` (gain 4 is applied here).

    Returns:
        [N, C, 2H, 2W]
    """
    C = x.shape[1]
    # Gain 4 (= factor**2) keeps the signal magnitude after zero-insertion.
    return F.conv2d(x, _depthwise(kernel * 4, C, x.dtype), padding=1, groups=C)


def upsample_2x(x: Tensor, kernel: Tensor) -> Tensor:
    """Upsample by 2 with the low-pass filter: zero insertion + blur as one transposed conv.

    Args:
        x: [N, C, H, W]
        kernel: [4, 4] filter from :func:`make_filter`.

    Returns:
        [N, C, 2H, 2W]
    """
    C = x.shape[1]
    # A stride-2 transposed conv is zero insertion followed by the (symmetric) filter; padding 1
    # crops the full 2H+2 output to the 2H window that the reference upfirdn2d(up=2) keeps.
    return F.conv_transpose2d(x, _depthwise(kernel * 4, C, x.dtype), stride=2, padding=1, groups=C)


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    *,
    demodulate: bool = True,
    up: bool = False,
    kernel: Tensor | None = None,
    fused: bool = False,
) -> Tensor:
    """StyleGAN2 modulated convolution.

    Per sample n: ``conv(x[n], weight * styles[n][None, :] * d[n][:, None])`` with demodulation
    ``d[n] = rsqrt(sum_{in,k} (weight * styles[n])^2 + 1e-8)``. Two equivalent executions:

    - ``fused=False``: scale the activations by the styles, run one shared convolution for the
      whole batch, scale the outputs by ``d`` (the NVlabs training path; best for large batches and
      on GPU).
    - ``fused=True``: build per-sample weights and run one grouped convolution with N groups
      (fewer full-size elementwise ops; faster on CPU at small batches).

    Args:
        x: [N, I, H, W] input activations.
        weight: [O, I, k, k] convolution weight, already multiplied by its equalised-lr gain.
        styles: [N, I] modulation coefficients (the style vector s of this layer).
        demodulate: normalise each output channel (True for synthesis convs).
        up: upsample by 2 (stride-2 transposed conv + blur with ``kernel``); needs a 3x3 weight.
        kernel: [4, 4] resampling filter, needed when ``up``.
        fused: execution strategy (same result up to float rounding).

    Returns:
        [N, O, H, W], or [N, O, 2H, 2W] when ``up``.
    """
    N, I = styles.shape
    if x.shape[:2] != (N, I) or weight.shape[1] != I:
        raise ValueError(
            f"modulated_conv2d: x {tuple(x.shape)}, weight {tuple(weight.shape)} and "
            f"styles {tuple(styles.shape)} disagree on batch or input channels"
        )
    if up and kernel is None:
        raise ValueError("modulated_conv2d(up=True) needs the resampling kernel")
    O, k = weight.shape[0], weight.shape[-1]
    if fused:
        w = weight.unsqueeze(0) * styles.reshape(N, 1, I, 1, 1)  # [N, O, I, k, k]
        if demodulate:
            w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + DEMOD_EPS).rsqrt()
        w = w.to(x.dtype)
        x = x.reshape(1, N * I, *x.shape[2:])
        if up:
            w = w.transpose(1, 2).reshape(N * I, O, k, k)
            x = F.conv_transpose2d(x, w, stride=2, groups=N)
        else:
            x = F.conv2d(x, w.reshape(N * O, I, k, k), padding=k // 2, groups=N)
        x = x.reshape(N, O, *x.shape[2:])
        return blur_after_transposed_conv(x, kernel) if up else x

    x = x * styles.to(x.dtype).reshape(N, I, 1, 1)
    w = weight.to(x.dtype)
    if up:
        x = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)  # [N, O, 2H+1, 2W+1]
        x = blur_after_transposed_conv(x, kernel)
    else:
        x = F.conv2d(x, w, padding=k // 2)
    if demodulate:
        x = x * demodulation(weight, styles).to(x.dtype).reshape(N, -1, 1, 1)
    return x


def demodulation(weight: Tensor, styles: Tensor) -> Tensor:
    """Demodulation coefficients ``d[n, o] = rsqrt(sum_{i,k} (weight[o,i,k] styles[n,i])^2 + 1e-8)``.

    Args:
        weight: [O, I, k, k] convolution weight (with its equalised-lr gain).
        styles: [N, I] modulation coefficients.

    Returns:
        d [N, O]: the per-sample, per-output-channel scale that ``modulated_conv2d(demodulate=True)``
        applies after the convolution (callers may apply it later, fused with the bias).
    """
    # sum_{i,k} (w[o,i,k] s[n,i])^2 = sum_i s[n,i]^2 * sum_k w[o,i,k]^2: one small matmul.
    energy = styles.square() @ weight.square().sum(dim=(2, 3)).t()  # [N, O]
    return (energy + DEMOD_EPS).rsqrt()


def modulated_linear(x: Tensor, weight: Tensor, styles: Tensor) -> Tensor:
    """Modulated 1x1 convolution without demodulation (toRGB) as one batched matmul.

    Args:
        x: [N, I, H, W]
        weight: [O, I] (or [O, I, 1, 1]), already multiplied by its equalised-lr gain.
        styles: [N, I]

    Returns:
        [N, O, H, W] = per sample ``(weight * styles[n]) @ x[n]``.
    """
    N, I, H, W = x.shape
    w = weight.reshape(weight.shape[0], I).unsqueeze(0) * styles.unsqueeze(1)  # [N, O, I]
    w = w.to(x.dtype)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        # channels-last activations are [N, H, W, I] in memory: multiply there, no layout copy
        y = torch.bmm(x.permute(0, 2, 3, 1).reshape(N, H * W, I), w.transpose(1, 2))
        return y.reshape(N, H, W, -1).permute(0, 3, 1, 2)  # [N, O, H, W], channels-last
    return torch.bmm(w, x.reshape(N, I, H * W)).reshape(N, -1, H, W)


def bias_leaky_relu(
    x: Tensor,
    bias: Tensor,
    clamp: float | None = None,
    *,
    scale: Tensor | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """``leaky_relu(x * scale + bias + noise, 0.2) * sqrt(2)``, optionally clamped.

    Two full-size passes (one ``addcmul`` or ``add``, one leaky ReLU) plus one per noise map: the
    gain is moved inside the (positively homogeneous) leaky ReLU onto the small operands, and the
    per-sample ``scale`` (demodulation) rides along with the bias in one ``addcmul``. Noise stays
    a separate [N or 1, 1, H, W] add: a [1, C, H, W] bias+noise map would need a batch reduction
    in backward, slow on channels-last activations.

    Args:
        x: [N, C, H, W] (or [N, C]).
        bias: [C], or any tensor broadcastable to ``x``.
        clamp: clamp the result to [-clamp, clamp] (NVlabs ``conv_clamp``); None = no clamp.
        scale: optional [N, C] per-sample channel scale applied to ``x`` first (demodulation).
        noise: optional already-weighted noise [N or 1, 1, H, W] added with the bias.
    """
    if bias.ndim == 1:
        bias = bias.reshape((1, -1) + (1,) * (x.ndim - 2))
    bias = bias.to(x.dtype) * LRELU_GAIN
    if scale is None:
        x = torch.add(bias, x, alpha=LRELU_GAIN)
    else:
        scale = scale.to(x.dtype).reshape(scale.shape + (1,) * (x.ndim - 2))
        x = torch.addcmul(bias, x, scale * LRELU_GAIN)
    if noise is not None:
        x = x + noise.to(x.dtype) * LRELU_GAIN
    x = F.leaky_relu(x, LRELU_SLOPE)
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x
