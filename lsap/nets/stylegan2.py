"""StyleGAN2 generator (config-f family) in plain PyTorch: mapping, synthesis, style space.

Layout and conventions follow the published networks so that rosinality `.pt` and NVlabs `.pkl`
checkpoints map onto it one tensor per tensor (see ``lsap.io``):

- equalised learning rate: weights are stored unscaled and multiplied by ``lr_mul / sqrt(fan_in)``
  at run time (mapping ``lr_mul = 0.01``); modulation ("affine") biases start at 1;
- synthesis layer i of ``synthesis.convs`` consumes w+ index i; the toRGB layer of each resolution
  shares its w+ index with the next upsampling conv, the last toRGB uses index ``num_ws - 1``;
- the style space S is the output of each layer's affine map, ``s = A(w)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.nets.ops import (
    bias_leaky_relu,
    demodulation,
    make_filter,
    modulated_conv2d,
    modulated_conv_act,
    modulated_linear,
    upsample_2x,
)

NOISE_MODES = ("random", "const", "none")
CHANNELS_LAST = torch.channels_last


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a StyleGAN2 generator.

    Channels at resolution r are ``min(channel_max, channel_base // r)``; config-f (FFHQ 1024) is
    ``channel_base=32768, channel_max=512``, i.e. rosinality's ``channel_multiplier=2``
    (``channel_base = 16384 * channel_multiplier``).
    """

    resolution: int  # output size in pixels, a power of two in 4..1024 (and beyond)
    z_dim: int = 512  # input latent size
    w_dim: int = 512  # intermediate latent (W) size
    n_mlp: int = 8  # mapping layers
    lr_mlp: float = 0.01  # learning-rate multiplier of the mapping layers
    channel_base: int = 32768  # channels(r) = min(channel_max, channel_base // r)
    channel_max: int = 512
    conv_clamp: float | None = (
        None  # clamp activations to +-conv_clamp (NVlabs nets: 256); None = off
    )

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {r}")
        for name in ("z_dim", "w_dim", "n_mlp", "channel_base", "channel_max"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def log2_resolution(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def num_ws(self) -> int:
        """Number of w+ entries: ``2 * log2(resolution) - 2`` (18 at 1024 px)."""
        return 2 * self.log2_resolution - 2

    @property
    def channel_multiplier(self) -> float:
        """rosinality's name for ``channel_base / 16384``."""
        return self.channel_base / 16384

    def channels(self, res: int) -> int:
        return min(self.channel_max, self.channel_base // res)

    @property
    def resolutions(self) -> list[int]:
        return [2**i for i in range(2, self.log2_resolution + 1)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        """Build from a mapping; accepts rosinality's ``channel_multiplier`` instead of the base."""
        d = dict(d)
        if "channel_multiplier" in d:
            mult = d.pop("channel_multiplier")
            if mult is not None:
                d.setdefault("channel_base", int(16384 * mult))
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        return cls(**d)


class EqualizedLinear(nn.Module):
    """Fully connected layer with equalised learning rate.

    ``y = x @ (weight * lr_mul / sqrt(in)).T + bias * lr_mul``, then optionally leaky ReLU * sqrt(2).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias_init: float = 0.0,  # initial (stored) bias value; modulation layers use 1
        lr_mul: float = 1.0,  # learning-rate multiplier (0.01 in the mapping network)
        activation: bool = False,  # leaky ReLU with gain sqrt(2) after the bias
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        """x [N, in] -> [N, out]."""
        w = self.weight * self.weight_gain
        if self.activation:
            return bias_leaky_relu(F.linear(x, w), self.bias * self.lr_mul)
        return F.linear(x, w, self.bias * self.lr_mul)


def mapping_layer(in_features: int, out_features: int, lr_mul: float) -> nn.Module:
    """StyleGAN2's mapping layer: :class:`EqualizedLinear` with leaky ReLU (fused bias)."""
    return EqualizedLinear(in_features, out_features, lr_mul=lr_mul, activation=True)


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> w [N, w_dim]: 2nd-moment normalisation then ``n_mlp`` leaky-ReLU layers
    ``fc0 .. fc{n_mlp-1}`` (each with ``weight`` and ``bias``), the mapping of StyleGAN2 and 3.

    Holds ``w_avg [w_dim]``, the mean of w over the prior (a buffer, from the checkpoint).

    Args:
        z_dim, w_dim: latent and code sizes.
        n_mlp: number of layers.
        lr_mul: learning-rate multiplier of the layers (0.01 in the reference networks).
        layer: ``(in_features, out_features, lr_mul) -> nn.Module`` building each layer:
            :func:`mapping_layer` (StyleGAN2), or StyleGAN3's ``MappingLayer``, which keeps
            NVlabs' operation order for bit-exact codes.
    """

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        n_mlp: int,
        lr_mul: float,
        layer: Callable[[int, int, float], nn.Module] = mapping_layer,
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.n_mlp = z_dim, w_dim, n_mlp
        for i in range(n_mlp):
            self.add_module(f"fc{i}", layer(z_dim if i == 0 else w_dim, w_dim, lr_mul))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor, truncation_psi: float = 1.0) -> Tensor:
        """Map latents to W.

        Args:
            z: [N, z_dim] samples of N(0, I).
            truncation_psi: pull w towards ``w_avg`` (1 = no truncation).

        Returns:
            w [N, w_dim]
        """
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"mapping expects z [N, {self.z_dim}], got {tuple(z.shape)}")
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.n_mlp):
            x = getattr(self, f"fc{i}")(x)
        if truncation_psi != 1.0:
            x = self.w_avg.to(x.dtype).lerp(x, truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally upsampling 2x) + noise + bias + leaky ReLU (+ clamp)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,  # output resolution of this layer
        *,
        up: bool = False,  # upsample 2x (transposed conv + [1,3,3,1] blur)
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("resample_filter", make_filter(), persistent=False)
        self.weight_gain = 1.0 / math.sqrt(in_channels * 9)

    def _sample_wise(self, x: Tensor) -> bool:
        """Whether the unfused execution runs per-sample weights (``modulated_conv_act``) rather
        than scaled activations around one shared convolution.

        Per-sample weights on CPU (oneDNN: per-sample convolutions run as fast per pixel as batched
        ones, and most elementwise passes disappear), without autocast, unless only the inputs
        need gradients (inverting codes with a frozen generator): there the shared convolution
        skips the weight-gradient convolution, which per-sample weights need for the styles.
        On CUDA the shared convolution (NVlabs' training path) keeps large batched kernels.
        """
        if x.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
            return False
        return not (torch.is_grad_enabled() and not self.weight.requires_grad)

    def forward(
        self,
        x: Tensor,
        w: Tensor,
        noise_mode: str = "const",
        noise: Tensor | None = None,
        fused: bool = False,
    ) -> Tensor:
        """x [N, I, R', R'] (R' = R/2 when upsampling), w [N, w_dim] -> [N, O, R, R].

        ``noise`` [N or 1, 1, R, R] overrides ``noise_mode`` (used to optimise noise maps);
        ``fused`` picks the modulated-conv execution (see ``modulated_conv2d``).
        """
        styles = self.affine(w)
        weight = self.weight * self.weight_gain
        if noise is None and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device)
        elif noise is None and noise_mode == "const":
            noise = self.noise_const.reshape(1, 1, self.resolution, self.resolution)
        if noise is not None:
            noise = noise * self.noise_strength
        if not fused and self._sample_wise(x):
            return modulated_conv_act(
                x,
                weight,
                styles,
                self.bias,
                noise=noise,
                up=self.up,
                kernel=self.resample_filter,
                clamp=self.conv_clamp,
            )
        x = modulated_conv2d(
            x,
            weight,
            styles,
            up=self.up,
            kernel=self.resample_filter,
            fused=fused,
            demodulate=fused,
        )
        # unfused: the demodulation is applied with the bias, in the same pass (bias_leaky_relu)
        scale = None if fused else demodulation(weight, styles)
        return bias_leaky_relu(x, self.bias, self.conv_clamp, scale=scale, noise=noise)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to RGB, no demodulation, + bias (+ clamp)."""

    def __init__(
        self,
        in_channels: int,
        w_dim: int,
        *,
        conv_clamp: float | None = None,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """x [N, I, R, R], w [N, w_dim] -> [N, 3, R, R]."""
        styles = self.affine(w)
        x = modulated_linear(x, self.weight * self.weight_gain, styles)
        x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class SynthesisNetwork(nn.Module):
    """w+ [N, num_ws, w_dim] -> images [N, 3, R, R] with the 'skip' toRGB architecture."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        c = config
        self.resolution, self.num_ws, self.w_dim = c.resolution, c.num_ws, c.w_dim
        ch = c.channels
        self.const = nn.Parameter(torch.randn(ch(4), 4, 4))
        convs = [SynthesisLayer(ch(4), ch(4), c.w_dim, 4, conv_clamp=c.conv_clamp)]
        torgbs = [ToRGBLayer(ch(4), c.w_dim, conv_clamp=c.conv_clamp)]
        for res in c.resolutions[1:]:
            convs.append(
                SynthesisLayer(
                    ch(res // 2), ch(res), c.w_dim, res, up=True, conv_clamp=c.conv_clamp
                )
            )
            convs.append(SynthesisLayer(ch(res), ch(res), c.w_dim, res, conv_clamp=c.conv_clamp))
            torgbs.append(ToRGBLayer(ch(res), c.w_dim, conv_clamp=c.conv_clamp))
        self.convs = nn.ModuleList(convs)  # convs[i] consumes w+ index i
        self.torgbs = nn.ModuleList(torgbs)  # torgbs[j] consumes w+ index 2j+1
        self.register_buffer("resample_filter", make_filter(), persistent=False)

    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        """Shapes [1, 1, R, R] of the per-layer noise maps, in ``convs`` order."""
        return [(1, 1, layer.resolution, layer.resolution) for layer in self.convs]

    def forward(
        self,
        w_plus: Tensor,
        noise_mode: str = "const",
        noise: Sequence[Tensor] | None = None,
        fused_modconv: bool = False,
    ) -> Tensor:
        """Synthesise images.

        Args:
            w_plus: [N, num_ws, w_dim] (a W code [N, w_dim] is broadcast to every layer).
            noise_mode: "const" (the stored noise buffers: reproducible), "random" or "none".
            noise: optional list of ``len(convs)`` maps [N or 1, 1, R, R] that replace the noise.
            fused_modconv: execution of the modulated convs (same result up to rounding):
                grouped per-sample weights (True) or scaled activations around a shared conv
                (False, the default: faster on CPU at every batch size we measured, and the
                NVlabs training path on GPU).

        Returns:
            images [N, 3, R, R], roughly in [-1, 1].
        """
        w_plus = broadcast_w(w_plus, self.num_ws, self.w_dim)
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noise is not None and len(noise) != len(self.convs):
            raise ValueError(f"noise must hold {len(self.convs)} maps, got {len(noise)}")
        noises = list(noise) if noise is not None else [None] * len(self.convs)
        N = w_plus.shape[0]
        # channels-last activations: oneDNN's convolutions, transposed convolutions and the
        # depthwise blur run 1.3-3x faster on them than on NCHW (bench/generator.py)
        x = self.const.unsqueeze(0).expand(N, -1, -1, -1).contiguous(memory_format=CHANNELS_LAST)
        x = self.convs[0](x, w_plus[:, 0], noise_mode, noises[0], fused_modconv)
        img = self.torgbs[0](x, w_plus[:, 1])
        for j in range(1, len(self.torgbs)):
            i = 2 * j - 1
            x = self.convs[i](x, w_plus[:, i], noise_mode, noises[i], fused_modconv)
            x = self.convs[i + 1](x, w_plus[:, i + 1], noise_mode, noises[i + 1], fused_modconv)
            img = upsample_2x(img, self.resample_filter) + self.torgbs[j](x, w_plus[:, i + 2])
        return img.contiguous()


def broadcast_w(codes: Tensor, num_ws: int, w_dim: int) -> Tensor:
    """Return codes as w+ [N, num_ws, w_dim]; a W code [N, w_dim] is repeated on every layer."""
    if codes.ndim == 2 and codes.shape[1] == w_dim:
        return codes.unsqueeze(1).expand(-1, num_ws, -1)
    if codes.ndim != 3 or codes.shape[1:] != (num_ws, w_dim):
        raise ValueError(
            f"expected w_plus [N, {num_ws}, {w_dim}] or w [N, {w_dim}], got {tuple(codes.shape)}"
        )
    return codes


class StyleGeneratorAPI:
    """The public API shared by lsap's generators (StyleGAN2 here, StyleGAN3 in ``stylegan3.py``).

    A subclass is an ``nn.Module`` with ``config`` (resolution, num_ws, w_dim, z_dim), ``mapping``
    (holding ``w_avg``) and ``style_layers``: the num_ws modules whose ``affine`` defines S.

    ``crop``: the valid region (``lsap.nets.crop.ValidRegion``) of a non-square domain, set from
    ``generator.crop`` by ``lsap.io.generator_from_config``; None = the full square.
    """

    crop = None

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    @property
    def w_dim(self) -> int:
        return self.config.w_dim

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    @property
    def w_avg(self) -> Tensor:
        """[w_dim] mean of the mapped prior."""
        return self.mapping.w_avg

    def style_space(self, w_plus: Tensor) -> list[Tensor]:
        """Style vectors, one per w+ index.

        Args:
            w_plus: [N, num_ws, w_dim] (or a W code [N, w_dim]).

        Returns:
            list of num_ws tensors ``s_i [N, C_i]``, ``s_i = A_i(w_plus[:, i])`` where A_i is the
            affine map of ``style_layers[i]``, the layer that first consumes w+ index i (C_i its
            input channels; see each generator's ``style_layers``).
        """
        w_plus = broadcast_w(w_plus, self.num_ws, self.w_dim)
        return [layer.affine(w_plus[:, i]) for i, layer in enumerate(self.style_layers)]


class Generator(StyleGeneratorAPI, nn.Module):
    """StyleGAN2 generator: ``mapping`` (z -> w) and ``synthesis`` (w+ -> image).

    Attributes:
        config: the :class:`GeneratorConfig`.
        sha256: hex digest identifying the weights (the checkpoint file's sha256 when loaded with
            ``lsap.load_generator``; a digest of the tensors for generators built in memory). It
            keys cached anchors and is recorded in every artefact's provenance.
    """

    def __init__(self, config: GeneratorConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = GeneratorConfig.from_dict(kwargs)
        elif kwargs:
            raise TypeError("pass either a GeneratorConfig or keyword arguments, not both")
        self.config = config
        self.mapping = MappingNetwork(config.z_dim, config.w_dim, config.n_mlp, config.lr_mlp)
        self.synthesis = SynthesisNetwork(config)
        self.sha256: str | None = None
        self.source_format: str | None = None  # set by lsap.load_generator

    # -- style space ---------------------------------------------------------------------------
    @property
    def style_layers(self) -> list[SynthesisLayer | ToRGBLayer]:
        """The num_ws layers whose affine output defines S, in w+ order (LSAP.md):
        ``convs[0..num_ws-2]`` then the last toRGB."""
        return [*self.synthesis.convs, self.synthesis.torgbs[-1]]

    def torgb_styles(self, w_plus: Tensor) -> list[Tensor]:
        """Styles of every toRGB layer (torgbs[j] at w+ index 2j+1), each [N, C_j]."""
        w_plus = broadcast_w(w_plus, self.num_ws, self.w_dim)
        return [t.affine(w_plus[:, 2 * j + 1]) for j, t in enumerate(self.synthesis.torgbs)]

    # -- full forward --------------------------------------------------------------------------
    def forward(self, z: Tensor, truncation_psi: float = 1.0, noise_mode: str = "const") -> Tensor:
        """z [N, z_dim] -> images [N, 3, R, R] (W code broadcast to all layers)."""
        return self.synthesis(self.mapping(z, truncation_psi), noise_mode=noise_mode)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"resolution={c.resolution}, num_ws={c.num_ws}, w_dim={c.w_dim}, n_mlp={c.n_mlp}, "
            f"channel_base={c.channel_base}, channel_max={c.channel_max}, conv_clamp={c.conv_clamp}"
        )
