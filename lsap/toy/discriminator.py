"""StyleGAN2 discriminator ('resnet' architecture) in plain PyTorch, for any power-of-two size.

Layout (StyleGAN2, Karras et al. 2020, config E/F): fromRGB (1x1 conv) at the input resolution,
then one residual block per resolution down to 8 px, each halving the size, then an epilogue at
4x4: minibatch standard deviation, a 3x3 conv, two fully connected layers -> one logit per image.
Every layer uses the equalised learning rate (weights stored ~N(0, 1), scaled by
``1 / sqrt(fan_in)`` at run time); downsampling blurs with the [1, 3, 3, 1] filter before a stride-2
convolution. Channels at resolution r are ``min(channel_max, channel_base // r)`` as in the
generator.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.nets.ops import bias_leaky_relu, make_filter
from lsap.nets.stylegan2 import EqualizedLinear


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of a StyleGAN2 discriminator."""

    resolution: int  # input size in pixels, a power of two >= 4
    channel_base: int = 32768  # channels(r) = min(channel_max, channel_base // r)
    channel_max: int = 512
    mbstd_group_size: int = 4  # samples per minibatch-std group (reduced to a divisor of N)
    mbstd_num_channels: int = 1  # features the minibatch-std layer appends

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {r}")

    def channels(self, res: int) -> int:
        return max(1, min(self.channel_max, self.channel_base // res))

    def to_dict(self) -> dict:
        return asdict(self)


def blur(x: Tensor, kernel: Tensor, pad: int) -> Tensor:
    """Depthwise low-pass filter with zero padding.

    Args:
        x: [N, C, H, W]
        kernel: [k, k] normalised filter (``make_filter()``).
        pad: zero padding on every side.

    Returns:
        [N, C, H + 2 pad - k + 1, W + 2 pad - k + 1]
    """
    C = x.shape[1]
    weight = kernel.to(x.dtype).expand(C, 1, *kernel.shape)
    return F.conv2d(F.pad(x, [pad] * 4), weight, groups=C)


class EqualizedConv2d(nn.Module):
    """Conv with equalised learning rate; optionally blur + stride-2 downsampling; optional lrelu."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        activation: bool = False,  # leaky ReLU (slope 0.2) with gain sqrt(2) after the bias
        down: bool = False,  # halve the resolution: [1,3,3,1] blur, then a stride-2 conv
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.activation, self.down, self.kernel_size = activation, down, kernel_size
        self.register_buffer("resample_filter", make_filter(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """x [N, I, H, W] -> [N, O, H, W], or [N, O, H/2, W/2] when ``down``."""
        w = (self.weight * self.weight_gain).to(x.dtype)
        k = self.kernel_size
        if self.down:
            # Pad so that blur (4 taps) then a stride-2 k x k conv maps H to exactly H/2.
            x = blur(x, self.resample_filter, pad=(4 - 2 + k - 1) // 2)
            x = F.conv2d(x, w, stride=2)
        else:
            x = F.conv2d(x, w, padding=k // 2)
        if self.activation:
            bias = self.bias if self.bias is not None else x.new_zeros(x.shape[1])
            return bias_leaky_relu(x, bias)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        return x


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs (the second downsamples) plus a 1x1 downsampling skip.

    ``y = (conv1(conv0(x)) + skip(x)) / sqrt(2)``: x [N, I, R, R] -> y [N, O, R/2, R/2].
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3, activation=True)
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, activation=True, down=True)
        self.skip = EqualizedConv2d(in_channels, out_channels, 1, bias=False, down=True)

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv1(self.conv0(x)) + self.skip(x)) * math.sqrt(0.5)


def minibatch_stddev(x: Tensor, group_size: int, num_channels: int = 1) -> Tensor:
    """Append the across-group standard deviation of the features as extra channels.

    Samples ``n, n + N/G, n + 2N/G, ...`` form a group of G (G = the largest divisor of N that is
    <= ``group_size``); each group's std per feature, averaged over features (split into
    ``num_channels`` chunks) and pixels, is broadcast back to every member.

    Args:
        x: [N, C, H, W] with C divisible by ``num_channels``.

    Returns:
        [N, C + num_channels, H, W]
    """
    N, C, H, W = x.shape
    G = max(g for g in range(1, min(group_size, N) + 1) if N % g == 0)
    F_ = num_channels
    y = x.reshape(G, -1, F_, C // F_, H, W)  # [G, N/G, F, C/F, H, W]
    y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance over the group
    y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))  # [N/G, F]
    y = y.reshape(-1, F_, 1, 1).repeat(G, 1, H, W)  # [N, F, H, W]
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: images [N, 3, R, R] in [-1, 1] -> logits [N].

    Args:
        config: a :class:`DiscriminatorConfig`, or its fields as keyword arguments.
    """

    def __init__(self, config: DiscriminatorConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = DiscriminatorConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a DiscriminatorConfig or keyword arguments, not both")
        self.config = c = config
        R = c.resolution
        self.from_rgb = EqualizedConv2d(3, c.channels(R), 1, activation=True)
        blocks = []
        res = R
        while res > 4:
            blocks.append(DiscriminatorBlock(c.channels(res), c.channels(res // 2)))
            res //= 2
        self.blocks = nn.ModuleList(blocks)  # blocks[j]: R/2^j -> R/2^(j+1)
        ch = c.channels(4)
        self.conv = EqualizedConv2d(ch + c.mbstd_num_channels, ch, 3, activation=True)
        self.fc = EqualizedLinear(ch * 16, ch, activation=True)
        self.out = EqualizedLinear(ch, 1)

    def forward(self, images: Tensor) -> Tensor:
        """images [N, 3, R, R] in [-1, 1] -> logits [N] (real > 0 > fake once trained)."""
        R = self.config.resolution
        if images.ndim != 4 or images.shape[1:] != (3, R, R):
            raise ValueError(f"discriminator expects [N, 3, {R}, {R}], got {tuple(images.shape)}")
        x = self.from_rgb(images)  # [N, C_R, R, R]
        for block in self.blocks:
            x = block(x)
        x = minibatch_stddev(x, self.config.mbstd_group_size, self.config.mbstd_num_channels)
        x = self.conv(x)  # [N, C_4, 4, 4]
        x = self.fc(x.flatten(1))  # [N, C_4]
        return self.out(x).squeeze(1)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"resolution={c.resolution}, channel_base={c.channel_base}, "
            f"channel_max={c.channel_max}, mbstd_group_size={c.mbstd_group_size}"
        )
