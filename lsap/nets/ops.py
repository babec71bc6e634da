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
CHANNELS_LAST = torch.channels_last
# Per-sample synthesis layers from this many input channels: the backward's input gradient as a
# forward convolution and the weight gradient as k*k matrix products, instead of oneDNN's
# convolution backward (slow when the weights are new each call, as per-sample weights are).
# Measured on an AVX-512 CPU, one thread, one sample, CPU ms: 3x3 conv 512 ch at 64 px 423 -> 365,
# 256 ch at 128 px 419 -> 314, 512 at 16 px 54 -> 44, but 128 ch at 256 px 333 -> 392 (kept on
# oneDNN); 2x-up transposed conv 512 -> 512 at 32 px 103 -> 82, 512 -> 256 at 64 px 192 -> 169,
# 256 -> 128 at 128 px 200 -> 165.
GEMM_BACKWARD_MIN_CHANNELS = 256


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


def _check_modulated(
    name: str, x: Tensor, weight: Tensor, styles: Tensor, up: bool, kernel: Tensor | None
) -> None:
    """A modulated convolution's boundary check: x [N, I, H, W], weight [O, I, k, k] and styles
    [N, I] agree on batch and input channels; upsampling has its resampling kernel."""
    N, I = styles.shape
    if x.shape[:2] != (N, I) or weight.shape[1] != I:
        raise ValueError(
            f"{name}: x {tuple(x.shape)}, weight {tuple(weight.shape)} and "
            f"styles {tuple(styles.shape)} disagree on batch or input channels"
        )
    if up and kernel is None:
        raise ValueError(f"{name}(up=True) needs the resampling kernel")


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
    _check_modulated("modulated_conv2d", x, weight, styles, up, kernel)
    N, I = styles.shape
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


def modulated_conv_act(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    bias: Tensor,
    *,
    noise: Tensor | None = None,
    up: bool = False,
    kernel: Tensor | None = None,
    clamp: float | None = None,
) -> Tensor:
    """A whole synthesis layer with per-sample weights: modulated, demodulated conv (optionally
    upsampling), + bias + noise, leaky ReLU * sqrt(2), optional clamp.

    Same result as ``bias_leaky_relu(modulated_conv2d(x, weight, styles, up=up, kernel=kernel),
    bias, clamp, noise=noise)`` up to float rounding, executed for the CPU: styles, demodulation
    and the leaky-ReLU gain are folded into per-sample weights [N, O, I, k, k] (small tensors), the
    bias rides in the convolution, and each sample is one plain convolution (as fast per pixel as a
    batched one on oneDNN). The activations see 2 elementwise passes forward (noise add, leaky
    ReLU) and 2 backward (leaky-ReLU gradient, the noise gradient's channel sum), instead of ~4
    and ~9 around a shared convolution; backward saves only the input, the weights and the output.
    The price is the weight-gradient convolution per sample, which a training step computes anyway
    but gradients for the codes alone do not need (use the shared convolution there).

    Args:
        x: [N, I, H, W] input activations (channels-last is fastest on CPU).
        weight: [O, I, k, k] convolution weight, already multiplied by its equalised-lr gain.
        styles: [N, I] modulation coefficients.
        bias: [O].
        noise: optional already-weighted noise [N or 1, 1, R, R] (R = H, or 2H when ``up``).
        up: upsample by 2 (stride-2 transposed conv + blur with ``kernel``); needs a 3x3 weight.
        kernel: [4, 4] resampling filter, needed when ``up``.
        clamp: clamp the result to [-clamp, clamp]; None = no clamp.

    Returns:
        [N, O, R, R], in the memory format of the convolution's output.
    """
    _check_modulated("modulated_conv_act", x, weight, styles, up, kernel)
    bias = (bias * LRELU_GAIN).to(x.dtype)
    if noise is not None:
        noise = (noise * LRELU_GAIN).to(x.dtype)
    return _SampleWiseConvAct.apply(x, weight, styles, bias, noise, kernel if up else None, clamp)


def _conv_bias(x: Tensor, w: Tensor, bias: Tensor, blur: Tensor | None) -> Tensor:
    """One sample: x [1, I, H, W], w [O, I, k, k] -> [1, O, R, R] + bias (blurred 2x up if blur)."""
    if blur is None:
        return F.conv2d(x, w, bias, padding=w.shape[-1] // 2)
    y = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)  # [1, O, 2H+1, 2W+1]
    return F.conv2d(y, blur, bias, padding=1, groups=blur.shape[0])


def _weight_grad_gemm(x: Tensor, g: Tensor, k: int) -> Tensor:
    """The weight gradient of a stride-1, padding ``k // 2`` convolution of one sample as ``k * k``
    matrix products: x [1, I, H, W], output gradient g [1, O, H, W] -> [O, I, k, k].

    Channels-last rows padded to ``W + 2p`` pixels and flattened: the input window of tap
    (ky, kx) is then one contiguous slice of the padded input, offset ``ky (W + 2p) + kx``, and
    the output gradient padded with zero columns cancels the slices' wrap-around pixels.
    """
    p, (H, W) = k // 2, x.shape[2:]
    Wp, I, O = W + 2 * p, x.shape[1], g.shape[1]
    xp = F.pad(x.permute(0, 2, 3, 1)[0], (0, 0, p, p, p, p + 1)).reshape(-1, I)  # [(H+2p+1) Wp, I]
    gt = F.pad(g.permute(0, 2, 3, 1)[0], (0, 0, 0, 2 * p)).reshape(-1, O).t()  # [O, H Wp]
    gw = x.new_empty(k, k, O, I)
    for ky in range(k):
        for kx in range(k):
            start = ky * Wp + kx
            torch.mm(gt, xp[start : start + H * Wp], out=gw[ky, kx])
    return gw.permute(2, 3, 0, 1)


def _transposed_weight_grad_gemm(x: Tensor, g: Tensor, k: int) -> Tensor:
    """The weight gradient of a stride-2 transposed convolution (no padding) of one sample as
    ``k * k`` matrix products: x [1, I, H, W], output gradient g [1, O, 2H + k - 2, 2W + k - 2]
    -> [O, I, k, k] (the gradient of the [O, I, k, k] weight whose transpose the layer uses).

    Tap (ky, kx) meets ``g[2h + ky, 2w + kx]``: the output gradient's four parity phases, each
    copied once into rows of ``W + m`` pixels (m = k // 2), make every tap's window one contiguous
    slice, offset ``(ky // 2)(W + m) + kx // 2``; the input, padded with m zero columns, cancels
    the slices' wrap-around pixels.
    """
    m, (H, W) = k // 2, x.shape[2:]
    Wp, I, O = W + m, x.shape[1], g.shape[1]
    gh = g.permute(0, 2, 3, 1)[0]  # [2H + k - 2, 2W + k - 2, O]
    phases = g.new_zeros(2, 2, H + m + 1, Wp, O)  # one spare row: the last window's wrap-around
    for a in range(2):
        for b in range(2):
            src = gh[a::2, b::2]
            phases[a, b, : src.shape[0], : src.shape[1]] = src
    xf = F.pad(x.permute(0, 2, 3, 1)[0], (0, 0, 0, m)).reshape(-1, I)  # [H Wp, I]
    gw = x.new_empty(k, k, O, I)
    for ky in range(k):
        for kx in range(k):
            start = (ky // 2) * Wp + kx // 2
            phase = phases[ky % 2, kx % 2].reshape(-1, O)
            torch.mm(phase[start : start + H * Wp].t(), xf, out=gw[ky, kx])
    return gw.permute(2, 3, 0, 1)


class _SampleWiseConvAct(torch.autograd.Function):
    """``leaky_relu(conv(x[n], w_n) + bias + noise)`` (clamped) for every sample n, with the
    per-sample weights ``w_n[o, i] = weight[o, i] * styles[n, i] * c[n, o]``, ``c`` the
    demodulation times the leaky-ReLU gain.

    Inputs: x [N, I, H, W], weight [O, I, k, k], styles [N, I], bias [O] and noise
    [N or 1, 1, R, R] or None (gain folded in), kernel [4, 4] or None (upsampling), clamp or None.
    The per-sample weights are rebuilt one at a time in backward, never stored for the batch, and
    their gradient goes to ``weight`` and ``styles`` in closed form (two passes over the
    [O, I, k, k] weight per sample instead of autograd's ~10 over [N, O, I, k, k]).
    """

    @staticmethod
    def forward(ctx, x, weight, styles, bias, noise, kernel, clamp):
        N, O = styles.shape[0], weight.shape[0]
        w2 = weight.square().sum(dim=(2, 3))  # [O, I]
        c = (styles.square() @ w2.t() + DEMOD_EPS).rsqrt() * LRELU_GAIN  # [N, O]
        blur = None if kernel is None else _depthwise(kernel * 4, O, x.dtype)
        out = None
        for n in range(N):
            w_n = weight * (c[n, :, None] * styles[n, None, :])[..., None, None]  # [O, I, k, k]
            y = _conv_bias(x[n : n + 1], w_n.to(x.dtype), bias, blur)  # [1, O, R, R]
            if out is None:  # the samples are written straight into one batch tensor
                cl = y.is_contiguous(memory_format=CHANNELS_LAST)
                out = torch.empty(
                    (N, *y.shape[1:]),
                    dtype=y.dtype,
                    device=y.device,
                    memory_format=CHANNELS_LAST if cl else torch.contiguous_format,
                )
            if noise is None:
                out[n : n + 1].copy_(y)
            else:
                torch.add(y, noise[n if noise.shape[0] > 1 else 0], out=out[n : n + 1])
        F.leaky_relu(out, LRELU_SLOPE, inplace=True)
        if clamp is not None:
            out.clamp_(-clamp, clamp)
        ctx.clamp, ctx.blur = clamp, blur
        ctx.save_for_backward(x, weight, styles, c, w2, out, noise)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, styles, c, w2, out, noise = ctx.saved_tensors
        blur = ctx.blur
        need_x, need_w, need_s, need_b, need_noise = ctx.needs_input_grad[:5]
        N, O = styles.shape[0], weight.shape[0]
        need_wn = need_w or need_s  # the per-sample weights' gradient feeds both
        # the output has the sign of the leaky ReLU's input: its slope is readable from it
        g = torch.ops.aten.leaky_relu_backward(grad, out, LRELU_SLOPE, True)  # [N, O, R, R]
        if ctx.clamp is not None:  # clamped outputs pass no gradient
            g = g.masked_fill_(out.abs() >= ctx.clamp, 0)
        grad_noise = None
        if need_noise:
            grad_noise = g.sum(dim=1, keepdim=True)  # [N, 1, R, R]
            if noise.shape[0] == 1:
                grad_noise = grad_noise.sum(dim=0, keepdim=True)
        k = weight.shape[-1]
        gemm = weight.shape[1] >= GEMM_BACKWARD_MIN_CHANNELS
        grad_bias = g.sum(dim=(0, 2, 3)) if need_b and (blur is not None or gemm) else None
        grad_x, grad_b, grad_s, b = [], [], [], []
        # the weight-side arithmetic runs tap-major, [k, k, O, I], the layout of the matrix-product
        # weight gradients: contiguous passes instead of strided ones
        weight_t = weight.permute(2, 3, 0, 1).contiguous() if need_wn else None
        grad_w_t = torch.zeros_like(weight_t) if need_w else None
        for n in range(N):
            cs = c[n, :, None] * styles[n, None, :]  # [O, I]
            w_n = (weight * cs[..., None, None]).to(x.dtype)
            gn, xn = g[n : n + 1], x[n : n + 1]
            if gemm and blur is None:  # input gradient: conv with the flipped, transposed weight
                flipped = w_n.transpose(0, 1).flip(2, 3)  # [I, O, k, k]
                gx = F.conv2d(gn, flipped, padding=k // 2) if need_x else None
                gw = _weight_grad_gemm(xn, gn, k) if need_wn else None
            elif gemm:  # blur adjoint; the transposed conv's input gradient is a stride-2 conv
                gn = F.conv_transpose2d(gn, blur, padding=1, groups=O)  # [1, O, 2H+1, 2W+1]
                gx = F.conv2d(gn, w_n.transpose(0, 1), stride=2) if need_x else None
                gw = _transposed_weight_grad_gemm(xn, gn, k) if need_wn else None
            elif blur is None:  # plain conv: the bias gradient comes with the weight gradient
                gx, gw, gb = torch.ops.aten.convolution_backward(
                    gn, xn, w_n, [O], [1, 1], [w_n.shape[-1] // 2] * 2, [1, 1], False, [0, 0],
                    1, [need_x, need_wn, need_b],
                )  # fmt: skip
                grad_b.append(gb)
            else:  # the blur's adjoint, then the transposed conv's gradients
                gn = F.conv_transpose2d(gn, blur, padding=1, groups=O)  # [1, O, 2H+1, 2W+1]
                gx, gw, _ = torch.ops.aten.convolution_backward(
                    gn, xn, w_n.transpose(0, 1), None, [2, 2], [0, 0], [1, 1], True, [0, 0],
                    1, [need_x, need_wn, False],
                )  # fmt: skip
                gw = None if gw is None else gw.transpose(0, 1)
            grad_x.append(gx)
            if need_wn:  # w_n = weight * styles[n, i] * c[n, o], c = gain * rsqrt(energy + eps)
                gw_t = gw.to(weight.dtype).permute(2, 3, 0, 1)  # [k, k, O, I]
                q = (gw_t * weight_t).sum(dim=(0, 1))  # [O, I]
                a = q @ styles[n]  # [O]: dL/dc[n]
                b_n = -a * c[n] ** 3 / LRELU_GAIN**2  # [O]: 2 dL/d energy[n]
                grad_s.append(q.t() @ c[n] + styles[n] * (w2.t() @ b_n))
                b.append(b_n)
                if need_w:
                    grad_w_t.addcmul_(gw_t, cs)
        grad_w = None
        if need_w:  # the demodulation's share: sum_n b[n, o] styles[n, i]^2 * weight
            grad_w_t.addcmul_(weight_t, torch.stack(b).t() @ styles.square())
            grad_w = grad_w_t.permute(2, 3, 0, 1).contiguous()  # [O, I, k, k]
        if need_b and grad_b:
            grad_bias = torch.stack(grad_b).sum(dim=0)
        return (
            torch.cat(grad_x) if need_x else None,
            grad_w,
            torch.stack(grad_s) if need_s else None,
            grad_bias,
            grad_noise,
            None,
            None,
        )


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
