"""Inference-only execution of the e4e / pSp encoders: the same codes, less work per image.

:func:`fuse_for_inference` turns a trained :class:`~lsap.nets.encoder.PyramidEncoder` into a
:class:`FusedEncoder` (a new module; the original is not changed) that

- folds every BatchNorm that follows a convolution into that convolution (input layer, the
  second conv of each IR-SE unit, the projection shortcuts), exactly, with running statistics;
- runs the backbone on channels-last activations (oneDNN's fastest convolution layout on CPU)
  and its wide stride-1 3x3 convs as Winograd F(2x2, 3x3) (:class:`Winograd3x3`: 16 products
  per 2x2 outputs instead of 36, batched matrix products over the transform points);
- runs the map2style heads of one pyramid level together on channels-last maps: the first
  stride-2 conv of all heads that read the same map is one convolution with the stacked weights,
  the deeper convs and the final linear layers batched products over heads, a 1x1 output reads
  only the 4 weight taps that meet its 2x2 map;
- computes no head, pyramid level or lateral layer that the progressive stage leaves off.

:func:`inference_twin` is what encodes images (``lsap.inversion.encode.encode_images``): the
fused twin of an eval-mode encoder on the CPU, built once and kept until the weights change.

Codes equal the unfused module's up to float rounding (tests: 1e-5). Training keeps the plain
module (BatchNorm statistics, gradients); call ``fuse_for_inference`` again after loading new
weights.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.nets.encoder import COARSE_END, MIDDLE_END, Map2Style, PyramidEncoder, _upsample_add
from lsap.nets.irse import BottleneckIRSE

CHANNELS_LAST = torch.channels_last
# Winograd pays where channels are wide (measured on an AVX-512 CPU, one thread, 256 px input:
# 256 -> 256 channels at 32 px x1.6, 512 at 16 px x1.3, 128 at 64 px x0.9): narrower convs keep oneDNN.
WINOGRAD_MIN_CHANNELS = 256
# The heads' stride-2 convs: Winograd from this output side up. Measured neutral at 256 px input
# (e4e batch 1: x1.22 with it vs x1.24 without, same run) while its transformed weights take 25/9
# the memory, so off for a 256 px input's heads (outputs 1-32 px); the path stays tested.
WINOGRAD_MIN_SIDE = 64

# Winograd F(2, 3) (Lavin & Gray 2016): 2 outputs of a 3-tap filter from 4 products instead of 6.
# y = A^T [(G g) * (B^T d)] for a 4-sample window d and taps g.
_F23_BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_F23_G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
_F23_AT = ((1, 1, 1, 0), (0, 1, -1, -1))
# F(2, 2) at the points 0, 1, infinity: 2 outputs of a 2-tap filter from 3 products instead of 4.
_F22_BT = ((1, -1, 0), (0, 1, 0), (0, -1, 1))
_F22_G = ((1, 0), (1, 1), (0, 1))
_F22_AT = ((1, 1, 0), (0, 1, 1))


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode (running statistics).

    ``bn(y) = (y - mean) * gamma / sqrt(var + eps) + beta``: the per-output-channel scale moves into
    the weight and the shift into the bias.
    """
    scale = bn.weight.detach() * (bn.running_var + bn.eps).rsqrt()  # [O]
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(scale)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
    ).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(conv.weight.detach() * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def _winograd_1d(stride: int) -> tuple[Tensor, Tensor, Tensor]:
    """1-D transforms of a 3-tap filter (padding 1) giving 2 outputs per tile, float64.

    Returns ``T [n, w]`` (input window of w samples -> n points), ``K [n, 3]`` (taps -> points)
    and ``A [2, n]`` (points -> outputs). Stride 1: F(2, 3), w = n = 4. Stride 2 (polyphase):
    output i reads samples 2i, 2i+1, 2i+2 of the padded input; the even samples meet taps
    (g0, g2) as a 2-tap stride-1 filter (F(2, 2): 3 points), the odd ones tap g1 alone (2 points,
    no transform): w = n = 5, 5 products per 2 outputs instead of 6.
    """
    f64 = torch.float64
    if stride == 1:
        return (
            torch.tensor(_F23_BT, dtype=f64),
            torch.tensor(_F23_G, dtype=f64),
            torch.tensor(_F23_AT, dtype=f64),
        )
    T, K, A = (
        torch.zeros(5, 5, dtype=f64),
        torch.zeros(5, 3, dtype=f64),
        torch.zeros(2, 5, dtype=f64),
    )
    T[:3, 0::2] = torch.tensor(_F22_BT, dtype=f64)  # even samples 0, 2, 4
    T[3:, 1::2] = torch.eye(2, dtype=f64)  # odd samples 1, 3
    K[:3, 0::2] = torch.tensor(_F22_G, dtype=f64)
    K[3:, 1] = 1.0
    A[:, :3] = torch.tensor(_F22_AT, dtype=f64)
    A[:, 3:] = torch.eye(2, dtype=f64)
    return T, K, A


class Winograd3x3(nn.Module):
    """3x3 convolutions (padding 1, stride 1 or 2) by Winograd minimal filtering on 2x2 tiles.

    Stride 1: F(2x2, 3x3), 16 products per 2x2 outputs instead of 36. Stride 2: the polyphase
    form of :func:`_winograd_1d` in both directions, 25 instead of 36. The products are one
    batched matrix product per transform point; the transforms are small matrix products. Float32
    results differ from a direct convolution by float rounding only (measured relative error
    < 1e-6; the transforms' coefficients are 0, +-1 and +-1/2).

    ``weight [G, O, C, 3, 3]``: G independent convolutions (each with its own input map), run
    together; ``bias [G, O]`` or None. Works on channels-last maps: ``x [G, N, H, W, C]`` ->
    ``[G, N, ceil(H/s), ceil(W/s), O]``.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, stride: int) -> None:
        super().__init__()
        if weight.ndim != 5 or weight.shape[-2:] != (3, 3) or stride not in (1, 2):
            raise ValueError(f"Winograd3x3 needs weight [G, O, C, 3, 3] and stride 1 or 2, got "
                             f"{tuple(weight.shape)}, stride {stride}")  # fmt: skip
        T, K, A = _winograd_1d(stride)
        self.stride, self.n, self.w = stride, T.shape[0], T.shape[1]
        G, O, C = weight.shape[:3]
        u = torch.einsum("ik,gockl,jl->ijgco", K, weight.detach().double(), K)  # [n, n, G, C, O]
        dev, dt = weight.device, weight.dtype
        self.register_buffer("u", u.reshape(self.n * self.n * G, C, O).to(dev, dt).contiguous())
        self.register_buffer("t", torch.kron(T, T).to(dev, dt))  # [n*n, w*w]
        self.register_buffer("a", torch.kron(A, A).to(dev, dt))  # [4, n*n]
        self.register_buffer(
            "bias", None if bias is None else bias.detach().reshape(G, 1, 1, 1, O).to(dev, dt)
        )

    def forward(self, x: Tensor) -> Tensor:
        G, N, H, W, C = x.shape
        s, n, w = self.stride, self.n, self.w
        Ho, Wo = -(-H // s), -(-W // s)
        th, tw = -(-Ho // 2), -(-Wo // 2)  # 2x2 output tiles
        step = 2 * s
        pad_h, pad_w = step * (th - 1) + w - H - 1, step * (tw - 1) + w - W - 1
        xp = F.pad(x, (0, 0, 1, pad_w, 1, pad_h))  # zero padding 1 (+ whole tiles)
        d = xp.unfold(2, w, step).unfold(3, w, step)  # [G, N, th, tw, C, w, w]
        d = d.permute(5, 6, 0, 1, 2, 3, 4).reshape(w * w, -1)  # [w*w, G*N*th*tw*C]
        P = N * th * tw
        v = torch.matmul(self.t, d).reshape(n * n * G, P, C)
        m = torch.bmm(v, self.u)  # [n*n*G, P, O]
        O = m.shape[-1]
        y = torch.matmul(self.a, m.reshape(n * n, -1)).reshape(2, 2, G, N, th, tw, O)
        y = y.permute(2, 3, 4, 0, 5, 1, 6)  # [G, N, th, 2, tw, 2, O]
        out = torch.empty(G, N, th, 2, tw, 2, O, device=x.device, dtype=x.dtype)
        if self.bias is None:
            out.copy_(y)
        else:
            torch.add(y, self.bias[:, :, :, None, :, None], out=out)
        return out.reshape(G, N, 2 * th, 2 * tw, O)[:, :, :Ho, :Wo]


class _WinogradConv2d(nn.Module):
    """A channels-last ``nn.Conv2d`` 3x3 (padding 1) as :class:`Winograd3x3`: x [N, C, H, W]."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        bias = None if conv.bias is None else conv.bias.detach()[None]
        self.conv = Winograd3x3(conv.weight.detach()[None], bias, conv.stride[0])

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x.permute(0, 2, 3, 1)[None])[0]  # [N, H, W, O]
        return y.permute(0, 3, 1, 2)  # channels-last strides


def _fast_conv(conv: nn.Conv2d, min_channels: int) -> nn.Module:
    """``conv`` as Winograd where that is faster (3x3, padding 1, wide), else itself."""
    if (
        conv.kernel_size == (3, 3)
        and conv.padding == (1, 1)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.in_channels >= min_channels
    ):
        return _WinogradConv2d(conv)
    return conv


class _FusedUnit(nn.Module):
    """An IR-SE unit with its conv-BN pairs folded: BN, conv, PReLU, conv+BN, SE, + shortcut."""

    def __init__(self, unit: BottleneckIRSE, winograd_min_channels: int) -> None:
        super().__init__()
        bn1, conv1, prelu, conv2, bn2, se = unit.res_layer
        self.bn1, self.prelu, self.se = bn1, prelu, se
        self.conv1 = _fast_conv(conv1, winograd_min_channels)
        self.conv2 = _fast_conv(fold_batchnorm(conv2, bn2), winograd_min_channels)
        short = unit.shortcut_layer
        if isinstance(short, nn.MaxPool2d):  # a 1x1 max-pool with stride s is a subsampling
            self.stride = int(short.stride if isinstance(short.stride, int) else short.stride[0])
            self.shortcut = None
        else:
            self.stride = 1
            self.shortcut = fold_batchnorm(short[0], short[1])

    def forward(self, x: Tensor) -> Tensor:
        res = self.se(self.conv2(self.prelu(self.conv1(self.bn1(x)))))
        if self.shortcut is not None:
            return res + self.shortcut(x)
        return res + (x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x)


class _HeadConv(nn.Module):
    """G map2style convs (3x3, stride 2, padding 1) on channels-last maps, each the fastest way
    for its output size: ``x [G, N, h, w, C] -> [G, N, ceil(h/2), ceil(w/2), O]`` (no activation).

    - nominal output side >= ``WINOGRAD_MIN_SIDE``: :class:`Winograd3x3` (25 products per 2x2
      outputs instead of 36);
    - smaller outputs (few positions: the cost is reading the weights, which Winograd's
      transformed weights make 25/9 times larger): one product over a (ky, kx, c) unfold;
    - a 1x1 output from a 2x2 map: only taps (1..2, 1..2) meet data, 4 of the 9 weight planes.
    """

    def __init__(self, weight: Tensor, bias: Tensor, side_out: int, min_side: int) -> None:
        super().__init__()
        G, O = weight.shape[:2]
        self.winograd = Winograd3x3(weight, bias, 2) if side_out >= min_side else None
        w = None if self.winograd is not None else weight.detach().permute(0, 3, 4, 2, 1)
        self.register_buffer("w", None if w is None else w.contiguous())  # [G, 3, 3, C, O]
        self.register_buffer("b", bias.detach().reshape(G, 1, O))

    def forward(self, x: Tensor) -> Tensor:
        if self.winograd is not None:
            return self.winograd(x)
        G, N, h, w, C = x.shape
        if (h, w) == (2, 2):  # the padded 4x4 window meets taps (1..2, 1..2) only
            y = self.b
            for i in range(2):
                for j in range(2):
                    y = torch.baddbmm(y, x[:, :, i, j], self.w[:, 1 + i, 1 + j])
            return y.reshape(G, N, 1, 1, -1)  # [G, N, 1, 1, O]
        ho, wo = -(-h // 2), -(-w // 2)
        xp = F.pad(x, (0, 0, 1, 2 * wo - w, 1, 2 * ho - h))
        cols = xp.unfold(2, 3, 2).unfold(3, 3, 2)  # [G, N, ho, wo, C, 3, 3]
        cols = cols.permute(0, 1, 2, 3, 5, 6, 4).reshape(G, N * ho * wo, 9 * C)
        y = torch.baddbmm(self.b, cols, self.w.reshape(G, 9 * C, -1))  # [G, N * ho * wo, O]
        return y.reshape(G, N, ho, wo, -1)


class _HeadGroup(nn.Module):
    """The map2style heads that read one pyramid map, run together on channels-last maps.

    Head h: ``log2(s)`` conv3x3/stride-2 + leaky ReLU (0.01) layers, then an equalised linear map.
    Layer 0 shares its input: one convolution with the heads' weights stacked along the output
    channels [H * D, C, 3, 3]. Deeper layers: one batched convolution over heads (G = H), each
    layer as :class:`_HeadConv` chooses. The final linear maps: one batched product.
    """

    def __init__(self, heads: list[Map2Style], side: int, winograd_min_side: int) -> None:
        super().__init__()
        convs = [[m for m in h.convs if isinstance(m, nn.Conv2d)] for h in heads]
        self.num_heads, self.w_dim = len(heads), heads[0].w_dim
        w = [torch.stack([c[j].weight.detach() for c in convs]) for j in range(len(convs[0]))]
        b = [torch.stack([c[j].bias.detach() for c in convs]) for j in range(len(convs[0]))]
        H, D = w[0].shape[:2]
        side //= 2
        w0, b0 = w[0].reshape(1, H * D, *w[0].shape[2:]), b[0].reshape(1, H * D)
        layers = [_HeadConv(w0, b0, side, winograd_min_side)]
        for wj, bj in zip(w[1:], b[1:], strict=True):
            side //= 2
            layers.append(_HeadConv(wj, bj, side, winograd_min_side))
        self.layers = nn.ModuleList(layers)
        lin = [h.linear for h in heads]
        self.register_buffer(
            "lin_w", torch.stack([m.weight.detach().T * m.weight_gain for m in lin])
        )  # [H, w_dim in, w_dim out]
        self.register_buffer(
            "lin_b", torch.stack([m.bias.detach() * m.lr_mul for m in lin])[:, None]
        )
        self.slope = heads[0].convs[1].negative_slope

    def forward(self, x: Tensor) -> Tensor:
        """x [N, C, h, w] (any memory format; the heads bring it to 1x1) -> codes [N, H, w_dim]."""
        N, H, D = x.shape[0], self.num_heads, self.w_dim
        y = F.leaky_relu_(self.layers[0](x.permute(0, 2, 3, 1)[None]), self.slope)
        h, w = y.shape[2:4]
        y = y.reshape(N, h, w, H, D).permute(3, 0, 1, 2, 4)  # [H, N, h, w, D]
        for layer in self.layers[1:]:
            y = F.leaky_relu_(layer(y), self.slope)
        codes = torch.baddbmm(self.lin_b, y.reshape(H, N, D), self.lin_w)  # [H, N, D]
        return codes.transpose(0, 1)


class FusedEncoder(nn.Module):
    """Inference-only twin of an e4e / pSp encoder (see the module docstring).

    images [N, 3, input_size, input_size] in [-1, 1] -> w_plus [N, num_ws, w_dim], as the source
    encoder at the progressive stage it had when fused.
    """

    def __init__(
        self,
        encoder: PyramidEncoder,
        *,
        winograd_min_channels: int = WINOGRAD_MIN_CHANNELS,
        winograd_min_side: int = WINOGRAD_MIN_SIDE,
    ) -> None:
        super().__init__()
        memo = {id(encoder.__dict__.get("_inference_twin")): None}  # not a cached older twin
        enc = copy.deepcopy(encoder, memo).eval().requires_grad_(False)
        self.arch, self.num_ws, self.w_dim = enc.arch, enc.num_ws, enc.w_dim
        self.input_size, self.input_nc = enc.input_size, enc.input_nc
        self.progressive_stage = enc.progressive_stage if enc.progressive else enc.num_ws - 1
        self._check_input = enc._check_input
        conv, bn, prelu = enc.input_layer
        self.input_layer = nn.Sequential(fold_batchnorm(conv, bn), prelu)
        self.body = nn.ModuleList(_FusedUnit(u, winograd_min_channels) for u in enc.body)
        self._taps = enc._taps
        self.latlayer1, self.latlayer2 = enc.latlayer1, enc.latlayer2
        self.register_buffer("latent_avg", enc.latent_avg.clone())
        # heads that do work: pSp all; e4e head 0 and the deltas up to the progressive stage
        active = list(range(self.progressive_stage + 1))
        levels = [range(0, COARSE_END), range(COARSE_END, MIDDLE_END), range(MIDDLE_END, 10**9)]
        self.levels = [[i for i in active if i in lv] for lv in levels]
        coarse = enc.input_size // 16  # side of the coarse map; middle 2x, fine 4x
        sides = [coarse, 2 * coarse, 4 * coarse]
        self.groups = nn.ModuleList(
            _HeadGroup([enc.styles[i] for i in idx], side, winograd_min_side)
            if idx
            else nn.Identity()
            for idx, side in zip(self.levels, sides, strict=True)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.to(memory_format=CHANNELS_LAST)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        self._check_input(images)
        x = self.input_layer(images.contiguous(memory_format=CHANNELS_LAST))
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self._taps:
                taps.append(x)
        c1, c2, c3 = taps
        N = images.shape[0]
        out = torch.zeros(N, self.num_ws, self.w_dim, device=images.device, dtype=images.dtype)
        features = c3
        for level, (idx, group) in enumerate(zip(self.levels, self.groups, strict=True)):
            if not idx:
                break
            if level == 1:
                features = p2 = _upsample_add(c3, self.latlayer1(c2))
            elif level == 2:
                features = _upsample_add(p2, self.latlayer2(c1))
            out[:, idx] = group(features)
        if self.arch == "e4e":
            w0 = out[:, :1].clone()
            out[:, 1:] += w0  # w+_i = w0 + delta_i; heads beyond the stage add nothing
        return out + self.latent_avg


def fuse_for_inference(encoder: PyramidEncoder, **winograd: int) -> FusedEncoder:
    """A :class:`FusedEncoder` that gives ``encoder``'s codes (eval mode) with less work.

    ``winograd``: ``winograd_min_channels`` (backbone 3x3 convs with at least this many input
    channels) and ``winograd_min_side`` (head convs with at least this output side) run as
    :class:`Winograd3x3`; the defaults are the measured break-even points (tests lower them to
    cover every path on tiny encoders).
    """
    if not isinstance(encoder, PyramidEncoder):
        raise TypeError(
            f"fuse_for_inference needs an e4e/pSp encoder, got {type(encoder).__name__}"
        )
    return FusedEncoder(encoder, **winograd)


def _weights_key(encoder: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or modified in place (optimiser steps,
    ``load_state_dict``), the progressive stage, device or dtype changes."""
    tensors = [*encoder.parameters(), *encoder.buffers()]
    return (
        getattr(encoder, "progressive_stage", None),
        tuple((id(t), t._version, t.device, t.dtype) for t in tensors),
    )


def inference_twin(encoder: nn.Module) -> nn.Module:
    """What encodes images fastest with ``encoder``'s codes: its :class:`FusedEncoder` for an
    e4e / pSp encoder in eval mode with float32 weights on the CPU (built once and kept on the
    encoder until its weights, stage, device or dtype change), else ``encoder`` itself (training
    mode, other modules; CUDA, where cuDNN already picks its convolution algorithms).
    """
    param = next(encoder.parameters(), None)
    if (
        not isinstance(encoder, PyramidEncoder)
        or encoder.training
        or param is None
        or param.device.type != "cpu"
        or param.dtype != torch.float32
    ):
        return encoder
    key = _weights_key(encoder)
    cached = encoder.__dict__.get("_inference_twin")
    if cached is None or cached[0] != key:
        cached = (key, fuse_for_inference(encoder))
        encoder.__dict__["_inference_twin"] = cached  # not a submodule: no state_dict entry
    return cached[1]
