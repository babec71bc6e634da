"""The pure-PyTorch operations of StyleGAN3: low-pass filter design, filtered leaky ReLU, modulated conv.

StyleGAN3's cost is its filtered nonlinearity: upsample (zero insertion + low-pass), leaky ReLU,
low-pass + downsample. Here each resampling step is one strided PyTorch convolution that never
multiplies the inserted zeros nor computes the samples that downsampling drops: upsampling is a
stride-``up`` transposed convolution (the polyphase form of "insert zeros, then filter") and
downsampling a stride-``down`` convolution. Separable filters run as two 1-D passes. Same code on
CPU and CUDA, no compiled extension.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

DEMOD_EPS = 1e-8


# -- filter design ------------------------------------------------------------------------------
def _kaiser_beta(numtaps: int, width: float) -> float:
    """Kaiser window shape for a transition band ``width`` (as a fraction of Nyquist)."""
    atten = 2.285 * (numtaps - 1) * math.pi * width + 7.95  # dB, Kaiser's estimate
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def design_lowpass_filter(
    numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
) -> Tensor | None:
    """Kaiser-windowed low-pass FIR filter, normalised to unit DC gain.

    Args:
        numtaps: filter length; 1 means identity (returns None).
        cutoff: cutoff frequency (same units as ``fs``).
        width: transition band width (same units).
        fs: sampling rate.
        radial: a radially symmetric 2-D (jinc) filter instead of a separable 1-D one.

    Returns:
        None, ``[numtaps]`` (separable) or ``[numtaps, numtaps]`` (radial), float32.
    """
    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    nyq = fs / 2
    window = np.kaiser(numtaps, _kaiser_beta(numtaps, width / nyq))
    if not radial:
        c = cutoff / nyq
        m = np.arange(numtaps) - (numtaps - 1) / 2
        h = c * np.sinc(c * m) * window
        return torch.as_tensor(h / h.sum(), dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = torch.as_tensor(np.hypot(*np.meshgrid(x, x)), dtype=torch.float64)
    # jinc: J1(2 pi f_c r) / (pi r), whose limit at r = 0 is f_c.
    safe_r = torch.where(r > 0, r, torch.ones_like(r))
    f = torch.where(
        r > 0, torch.special.bessel_j1(2 * cutoff * math.pi * safe_r) / (math.pi * safe_r), cutoff
    ).numpy()
    f = f * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


# -- resampling ---------------------------------------------------------------------------------
def _depthwise(f: Tensor, channels: int, dtype: torch.dtype) -> Tensor:
    # Convolution (not correlation): flip the taps, one copy per channel for a grouped conv.
    return f.flip(list(range(f.ndim))).to(dtype).expand(channels, 1, *f.shape)


def _upsample_1d(x: Tensor, f: Tensor, up: int, pad: tuple[int, int], dim: int) -> Tensor:
    """Insert ``up - 1`` zeros after each sample along ``dim`` (2 = H, 3 = W), pad, filter (gain up)."""
    C, K = x.shape[1], f.shape[0]
    shape = (K, 1) if dim == 2 else (1, K)
    stride = (up, 1) if dim == 2 else (1, up)
    # A transposed conv applies its kernel unflipped, i.e. it convolves with f.
    w = (f * up).to(x.dtype).expand(C, 1, K).reshape(C, 1, *shape)
    # Its full output starts K-1 samples before the zero-inserted signal and ends K-up samples
    # after it; crop/pad it to the window the explicit padding asks for.
    y = F.conv_transpose2d(x, w, stride=stride, groups=C)
    lo, hi = pad[0] - (K - 1), pad[1] + up - K
    return F.pad(y, (lo, hi, 0, 0) if dim == 3 else (0, 0, lo, hi))


def upsample_filtered(
    x: Tensor, f: Tensor | None, up: int, padding: tuple[int, int, int, int]
) -> Tensor:
    """Zero-insertion upsampling by ``up``, padding, then the separable low-pass ``f`` (gain up^2).

    Args:
        x: [N, C, H, W]
        f: [K] separable filter (None = identity, then ``up`` must be 1).
        up: integer factor.
        padding: (x0, x1, y0, y1) in upsampled samples; negative values crop.

    Returns:
        [N, C, H*up + y0 + y1 - K + 1, W*up + x0 + x1 - K + 1]
    """
    px0, px1, py0, py1 = padding
    if f is None:
        if up != 1:
            raise ValueError("upsampling needs a filter")
        return F.pad(x, (px0, px1, py0, py1))
    if f.ndim != 1:
        raise ValueError(f"upsampling filter must be separable [K], got {tuple(f.shape)}")
    x = _upsample_1d(x, f, up, (px0, px1), dim=3)
    return _upsample_1d(x, f, up, (py0, py1), dim=2)


def downsample_filtered(x: Tensor, f: Tensor | None, down: int) -> Tensor:
    """Low-pass ``f`` (valid part only) then keep every ``down``-th sample, as strided convs.

    Args:
        x: [N, C, H, W]
        f: [K] separable or [K, K] radial filter (None = identity, then ``down`` must be 1).

    Returns:
        [N, C, (H - K) // down + 1, (W - K) // down + 1]
    """
    if f is None:
        if down != 1:
            raise ValueError("downsampling needs a filter")
        return x
    C = x.shape[1]
    if f.ndim == 2:
        return F.conv2d(x, _depthwise(f, C, x.dtype), stride=down, groups=C)
    K = f.shape[0]
    w = _depthwise(f, C, x.dtype)
    x = F.conv2d(x, w.reshape(C, 1, 1, K), stride=(1, down), groups=C)
    return F.conv2d(x, w.reshape(C, 1, K, 1), stride=(down, 1), groups=C)


def filtered_lrelu(
    x: Tensor,
    bias: Tensor,
    up_filter: Tensor | None,
    down_filter: Tensor | None,
    *,
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
) -> Tensor:
    """StyleGAN3's alias-free nonlinearity, as plain PyTorch ops.

    Per channel: add ``bias``; upsample by ``up`` (zero insertion, ``padding``, low-pass
    ``up_filter`` with gain ``up**2``); leaky ReLU (``slope``) times ``gain``; clamp to
    ``[-clamp, clamp]``; low-pass ``down_filter`` and keep every ``down``-th sample.

    Args:
        x: [N, C, H, W]
        bias: [C]
        up_filter: [K_u] or None; down_filter: [K_d], [K_d, K_d] or None.
        padding: (x0, x1, y0, y1) applied after zero insertion; negative crops.

    Returns:
        [N, C, H_out, W_out] with ``H_out = (H*up + y0 + y1 - K_u - K_d + 2 + down - 1) // down``.
    """
    x = x + bias.to(x.dtype).reshape(1, -1, 1, 1)
    x = upsample_filtered(x, up_filter, up, padding)
    x = F.leaky_relu(x, slope) if slope != 1 else x
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return downsample_filtered(x, down_filter, down)


# -- modulated convolution ------------------------------------------------------------------------
def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    *,
    demodulate: bool = True,
    input_gain: Tensor | float = 1.0,
) -> Tensor:
    """StyleGAN3 modulated convolution with full padding (the output grows by k - 1).

    Per sample n: ``conv(x[n], weight * styles[n] * d[n] * input_gain, padding=k-1)`` where, with
    demodulation, the weight is first normalised per output channel and the styles per sample
    (scales that demodulation cancels; they keep the numbers in range) and
    ``d[n, o] = rsqrt(sum_{i,k} (weight[o] * styles[n])^2 + 1e-8)``. Executed as one shared
    convolution between per-sample scalings of the activations and of the outputs.

    Args:
        x: [N, I, H, W]
        weight: [O, I, k, k] (unscaled)
        styles: [N, I]
        demodulate: normalise each output channel (all layers but toRGB).
        input_gain: scalar gain of the input activations (``magnitude_ema ** -0.5``).

    Returns:
        [N, O, H + k - 1, W + k - 1]
    """
    N, I = styles.shape
    if x.shape[:2] != (N, I) or weight.shape[1] != I:
        raise ValueError(
            f"modulated_conv2d: x {tuple(x.shape)}, weight {tuple(weight.shape)} and "
            f"styles {tuple(styles.shape)} disagree on batch or input channels"
        )
    k = weight.shape[-1]
    if demodulate:
        weight = weight * weight.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
        styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
    x = x * styles.to(x.dtype).reshape(N, I, 1, 1)
    if k == 1:
        H, W = x.shape[2:]
        w = weight.reshape(weight.shape[0], I).to(x.dtype)
        x = torch.matmul(w, x.reshape(N, I, H * W)).reshape(N, -1, H, W)  # 1x1 conv as a matmul
    else:
        x = F.conv2d(x, weight.to(x.dtype), padding=k - 1)
    out_scale = input_gain
    if demodulate:
        # sum_{i,k} (w[o,i,k] s[n,i])^2 = sum_i s[n,i]^2 * sum_k w[o,i,k]^2: one small matmul.
        energy = styles.square() @ weight.square().sum(dim=(2, 3)).t()  # [N, O]
        out_scale = (energy + DEMOD_EPS).rsqrt() * input_gain
        return x * out_scale.to(x.dtype).reshape(N, -1, 1, 1)
    return x * out_scale
