"""Inference-only execution of the e4e / pSp encoders: the same codes, less work per image.

:func:`fuse_for_inference` turns a trained :class:`~lsap.nets.encoder.PyramidEncoder` into a
:class:`FusedEncoder` (a new module; the original is not changed) that

- folds every BatchNorm that follows a convolution into that convolution (input layer, the
  second conv of each IR-SE unit, the projection shortcuts), exactly, with running statistics;
- runs the backbone on channels-last activations (oneDNN's fastest convolution layout on CPU);
- runs the map2style heads of one pyramid level together: the first stride-2 conv of all heads
  that read the same map is one matrix product over one ``unfold`` of that map, the deeper convs
  and the final linear layers one batched product over heads (small maps are where per-head
  convolutions waste most of their time);
- computes no head, pyramid level or lateral layer that the progressive stage leaves off.

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


class _FusedUnit(nn.Module):
    """An IR-SE unit with its conv-BN pairs folded: BN, conv, PReLU, conv+BN, SE, + shortcut."""

    def __init__(self, unit: BottleneckIRSE) -> None:
        super().__init__()
        bn1, conv1, prelu, conv2, bn2, se = unit.res_layer
        self.bn1, self.conv1, self.prelu, self.se = bn1, conv1, prelu, se
        self.conv2 = fold_batchnorm(conv2, bn2)
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


class _HeadGroup(nn.Module):
    """The map2style heads that read one pyramid map, run as matrix products over all of them.

    Head h: ``log2(s)`` conv3x3/stride-2 + leaky ReLU (0.01) layers, then an equalised linear map.
    Layer 0 shares its input: one ``unfold`` and one product with the stacked weights
    [H * C_out, C_in * 9]. Deeper layers: ``unfold`` of every head's map and one batched product
    over heads. ``unfold`` orders a column as (channel, ky, kx), as ``Conv2d.weight.reshape(O, -1)``.
    """

    def __init__(self, heads: list[Map2Style]) -> None:
        super().__init__()
        convs = [[m for m in h.convs if isinstance(m, nn.Conv2d)] for h in heads]
        depth = len(convs[0])
        self.num_heads, self.w_dim = len(heads), heads[0].w_dim
        w = [torch.stack([c[j].weight.detach().reshape(c[j].out_channels, -1) for c in convs])
             for j in range(depth)]  # fmt: skip
        b = [torch.stack([c[j].bias.detach() for c in convs]) for j in range(depth)]
        self.w0 = nn.Parameter(w[0].reshape(-1, w[0].shape[-1]), requires_grad=False)  # [H*O, C*9]
        self.b0 = nn.Parameter(b[0].reshape(-1, 1), requires_grad=False)  # [H*O, 1]
        self.ws = nn.ParameterList(nn.Parameter(t, requires_grad=False) for t in w[1:])
        self.bs = nn.ParameterList(nn.Parameter(t[:, :, None], requires_grad=False) for t in b[1:])
        lin = [h.linear for h in heads]
        self.lin_w = nn.Parameter(
            torch.stack([m.weight.detach() * m.weight_gain for m in lin]), requires_grad=False
        )  # [H, w_dim, w_dim]
        self.lin_b = nn.Parameter(
            torch.stack([m.bias.detach() * m.lr_mul for m in lin])[:, :, None], requires_grad=False
        )  # [H, w_dim, 1]
        self.slope = heads[0].convs[1].negative_slope

    def forward(self, x: Tensor) -> Tensor:
        """x [N, C, s, s] -> codes [N, H, w_dim], one per head."""
        N, H, D = x.shape[0], self.num_heads, self.w_dim
        side = x.shape[-1] // 2
        cols = F.unfold(x, 3, padding=1, stride=2)  # [N, C*9, P]
        y = F.leaky_relu(torch.matmul(self.w0, cols) + self.b0, self.slope)  # [N, H*D, P]
        # -> [H, D, N * P]: heads are the batch of the products below
        y = y.reshape(N, H, D, side * side).permute(1, 2, 0, 3).reshape(H, D, N * side * side)
        for w, b in zip(self.ws, self.bs, strict=True):
            maps = y.reshape(H, D, N, side, side).transpose(1, 2).reshape(H * N, D, side, side)
            side //= 2
            cols = F.unfold(maps, 3, padding=1, stride=2)  # [H*N, D*9, P]
            cols = cols.reshape(H, N, D * 9, side * side).transpose(1, 2)
            y = torch.bmm(w, cols.reshape(H, D * 9, N * side * side)) + b
            y = F.leaky_relu(y, self.slope)  # [H, D, N * P]
        codes = torch.baddbmm(self.lin_b, self.lin_w, y)  # [H, D, N]
        return codes.permute(2, 0, 1)


class FusedEncoder(nn.Module):
    """Inference-only twin of an e4e / pSp encoder (see the module docstring).

    images [N, 3, input_size, input_size] in [-1, 1] -> w_plus [N, num_ws, w_dim], as the source
    encoder at the progressive stage it had when fused.
    """

    def __init__(self, encoder: PyramidEncoder) -> None:
        super().__init__()
        enc = copy.deepcopy(encoder).eval().requires_grad_(False)
        self.arch, self.num_ws, self.w_dim = enc.arch, enc.num_ws, enc.w_dim
        self.input_size, self.input_nc = enc.input_size, enc.input_nc
        self.progressive_stage = enc.progressive_stage if enc.progressive else enc.num_ws - 1
        self._check_input = enc._check_input
        conv, bn, prelu = enc.input_layer
        self.input_layer = nn.Sequential(fold_batchnorm(conv, bn), prelu)
        self.body = nn.ModuleList(_FusedUnit(u) for u in enc.body)
        self._taps = enc._taps
        self.latlayer1, self.latlayer2 = enc.latlayer1, enc.latlayer2
        self.register_buffer("latent_avg", enc.latent_avg.clone())
        # heads that do work: pSp all; e4e head 0 and the deltas up to the progressive stage
        active = list(range(self.progressive_stage + 1))
        levels = [range(0, COARSE_END), range(COARSE_END, MIDDLE_END), range(MIDDLE_END, 10**9)]
        self.levels = [[i for i in active if i in lv] for lv in levels]
        self.groups = nn.ModuleList(
            _HeadGroup([enc.styles[i] for i in idx]) if idx else nn.Identity()
            for idx in self.levels
        )
        self.to(memory_format=CHANNELS_LAST)

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
            out[:, idx] = group(features.contiguous())
        if self.arch == "e4e":
            w0 = out[:, :1].clone()
            out[:, 1:] += w0  # w+_i = w0 + delta_i; heads beyond the stage add nothing
        return out + self.latent_avg


def fuse_for_inference(encoder: PyramidEncoder) -> FusedEncoder:
    """A :class:`FusedEncoder` that gives ``encoder``'s codes (eval mode) with less work."""
    if not isinstance(encoder, PyramidEncoder):
        raise TypeError(
            f"fuse_for_inference needs an e4e/pSp encoder, got {type(encoder).__name__}"
        )
    return FusedEncoder(encoder)
