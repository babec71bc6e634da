"""StyleGAN3 generator (configs T and R) in plain PyTorch: mapping, synthesis, style space.

Same public API as :class:`lsap.nets.stylegan2.Generator` (``mapping``, ``synthesis(w_plus)``,
``num_ws``, ``w_dim``, ``w_avg``, ``resolution``, ``style_space``), so alignment, inversion,
editing and encoders run on it unchanged. Module and tensor names follow NVlabs' network pickles
(``synthesis.input``, ``synthesis.L{i}_{size}_{channels}``), so a ``.pkl`` maps onto it one tensor
per tensor (``lsap.io.stylegan3_pickle``).

Architecture (Karras et al. 2021, "Alias-Free Generative Adversarial Networks"):

- ``synthesis.input``: Fourier features of ``channels[0]`` random frequencies, rotated and
  translated per sample by a 4-output affine map of w+ index 0 (and by an optional user transform),
  followed by a learned channel mixing;
- ``num_layers`` synthesis layers then a toRGB layer; layer k consumes w+ index k + 1, so
  ``num_ws = num_layers + 2``. Each is a modulated conv (3x3 for config T, 1x1 for R; toRGB 1x1
  without demodulation), then the filtered leaky ReLU (``stylegan3_ops.filtered_lrelu``), whose
  cutoffs, stopbands and sampling rates grow geometrically layer by layer; the last
  ``num_critical`` layers are critically sampled, config R's other layers downsample with radial
  filters;
- ``magnitude_ema`` (a buffer per layer, from training) scales each layer's input to unit power.

There is no per-pixel noise in StyleGAN3: ``noise_mode`` is accepted and checked for API parity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.nets.stylegan2 import (
    NOISE_MODES,
    EqualizedLinear,
    MappingNetwork,
    StyleGeneratorAPI,
    broadcast_w,
)
from lsap.nets.stylegan3_ops import design_lowpass_filter, filtered_lrelu, modulated_conv2d

CONFIGS = ("T", "R")


@dataclass(frozen=True)
class StyleGAN3Config:
    """Architecture of a StyleGAN3 generator (NVlabs' constructor arguments, same defaults).

    Config T: ``conv_kernel=3``; config R: ``conv_kernel=1, use_radial_filters=True`` and NVlabs
    doubles ``channel_base`` / ``channel_max`` for it (65536 / 1024 in the release networks).
    """

    resolution: int  # output size in pixels (NVlabs releases: 256, 512, 1024)
    z_dim: int = 512
    w_dim: int = 512
    n_mlp: int = 2  # mapping layers (StyleGAN3 default 2)
    lr_mlp: float = 0.01
    channel_base: int = 32768  # channels(layer) = min(channel_max, channel_base / 2 / cutoff)
    channel_max: int = 512
    num_layers: int = 14  # synthesis layers, excluding the Fourier input and toRGB
    num_critical: int = 2  # critically sampled layers at the end
    first_cutoff: float = 2.0
    first_stopband: float = 2**2.1
    last_stopband_rel: float = 2**0.3  # last stopband relative to the last cutoff
    margin_size: int = 10  # extra pixels around the image in the intermediate layers
    output_scale: float = 0.25
    conv_kernel: int = 3  # 3 = config T, 1 = config R (toRGB is always 1x1)
    filter_size: int = 6  # low-pass taps per (lower-rate) sample when resampling
    lrelu_upsampling: int = 2  # oversampling of the nonlinearity
    use_radial_filters: bool = False  # config R: radial downsampling filters (non-critical layers)
    conv_clamp: float | None = 256.0  # clamp activations to +-conv_clamp; None = off
    img_channels: int = 3

    def __post_init__(self) -> None:
        if self.resolution < 4:
            raise ValueError(f"resolution must be >= 4, got {self.resolution}")
        for name in ("z_dim", "w_dim", "n_mlp", "channel_base", "channel_max", "conv_kernel"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.num_critical < self.num_layers:
            raise ValueError(
                f"need 0 <= num_critical < num_layers, got {self.num_critical}, {self.num_layers}"
            )

    @property
    def num_ws(self) -> int:
        """w+ entries: one for the input's affine, one per layer (toRGB included)."""
        return self.num_layers + 2

    @property
    def name(self) -> str:
        """'T' (translation equivariant) or 'R' (rotation equivariant)."""
        return "R" if self.conv_kernel == 1 and self.use_radial_filters else "T"

    def to_dict(self) -> dict:
        return {"family": "stylegan3", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> StyleGAN3Config:
        """Build from a mapping (``family: stylegan3`` and ``config: T|R`` presets allowed)."""
        d = dict(d)
        d.pop("family", None)
        preset = d.pop("config", None)
        if preset is not None:
            if str(preset).upper() not in CONFIGS:
                raise ValueError(f"StyleGAN3 config must be one of {CONFIGS}, got {preset!r}")
            if str(preset).upper() == "R":
                d.setdefault("conv_kernel", 1)
                d.setdefault("use_radial_filters", True)
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown StyleGAN3 config keys: {sorted(unknown)}")
        return cls(**d)

    def layer_specs(self) -> list[dict]:
        """Per-layer geometry (NVlabs' design): sizes, sampling rates, cutoffs, half-widths.

        Cutoffs and minimum stopbands follow a geometric progression from the first layer to the
        last non-critical one; a layer's sampling rate is the smallest power of two above twice
        its stopband (capped at the resolution), its size that rate plus the margins (the last two
        layers are cropped to the image).
        """
        n = self.num_layers
        last_cutoff = self.resolution / 2
        last_stopband = last_cutoff * self.last_stopband_rel
        exponents = np.minimum(np.arange(n + 1) / (n - self.num_critical), 1)
        cutoffs = self.first_cutoff * (last_cutoff / self.first_cutoff) ** exponents
        stopbands = self.first_stopband * (last_stopband / self.first_stopband) ** exponents
        rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, self.resolution))))
        half_widths = np.maximum(stopbands, rates / 2) - cutoffs
        sizes = rates + self.margin_size * 2
        sizes[-2:] = self.resolution
        channels = np.rint(np.minimum((self.channel_base / 2) / cutoffs, self.channel_max))
        channels[-1] = self.img_channels
        return [
            dict(
                channels=int(channels[i]),
                size=int(sizes[i]),
                sampling_rate=int(rates[i]),
                cutoff=float(cutoffs[i]),
                half_width=float(half_widths[i]),
            )
            for i in range(n + 1)
        ]


class MappingLayer(nn.Module):
    """StyleGAN3's layer of the shared ``lsap.nets.stylegan2.MappingNetwork``: equalised-lr fully
    connected layer + leaky ReLU, in NVlabs' operation order
    (``lrelu(x @ W.T * gain + b * lr_mul) * sqrt(2)``), so mapped codes match theirs bit for bit."""

    def __init__(self, in_features: int, out_features: int, lr_mul: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        """x [N, in] -> [N, out]."""
        x = x.matmul((self.weight * self.weight_gain).t())
        return F.leaky_relu(x + self.bias * self.lr_mul, 0.2) * math.sqrt(2)


def make_transform(translate: Sequence[float] = (0.0, 0.0), angle: float = 0.0) -> Tensor:
    """Image-space rotation + translation as a [3, 3] matrix (NVlabs ``gen_images`` convention).

    Args:
        translate: (x, y) shift in units of the image size (1 = the full width); positive x
            moves the content right, positive y down.
        angle: rotation in degrees, counter-clockwise on screen.

    Returns:
        [3, 3] float32, for ``synthesis(w_plus, transform=...)``.
    """
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    return torch.tensor(
        [[c, s, float(translate[0])], [-s, c, float(translate[1])], [0.0, 0.0, 1.0]]
    )


def fourier_features(
    channels: int, bandwidth: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Random input frequencies [C, 2] in the disc of radius ``bandwidth`` (NVlabs' radial
    profile) and phases [C] in [-0.5, 0.5). Loaded networks keep their own."""
    freqs = torch.randn(channels, 2, generator=generator)
    radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
    freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
    return freqs, torch.rand(channels, generator=generator) - 0.5


class SynthesisInput(nn.Module):
    """Fourier-feature input: w [N, w_dim] -> [N, C, size, size].

    The affine output ``t = (r_c, r_s, t_x, t_y)`` sets a per-sample rotation (angle of
    ``(r_c, r_s)``) and translation (``(t_x, t_y) / |(r_c, r_s)|``): only its direction matters.
    """

    def __init__(
        self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float
    ) -> None:
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, size
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        freqs, phases = fourier_features(channels, bandwidth)
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = EqualizedLinear(w_dim, 4)
        with torch.no_grad():  # identity transform at init: r_c = 1
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        # The inverse of a user transform of the image (NVlabs' buffer; identity by default).
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w: Tensor, transform: Tensor | None = None) -> Tensor:
        """w [N, w_dim], transform [3, 3] or [N, 3, 3] image-space (None = stored) -> [N, C, S, S]."""
        N = w.shape[0]
        if transform is None:
            inv = self.transform.unsqueeze(0)
        else:
            if transform.shape[-2:] != (3, 3) or transform.ndim not in (2, 3):
                raise ValueError(
                    f"transform must be [3, 3] or [N, 3, 3], got {tuple(transform.shape)}"
                )
            inv = torch.linalg.inv(transform.to(w.device, torch.float32).reshape(-1, 3, 3))
        t = self.affine(w)  # [N, 4] = (r_c, r_s, t_x, t_y)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        zero, one = torch.zeros_like(t[:, 0]), torch.ones_like(t[:, 0])
        # Inverse rotation then inverse translation of the image, then the user transform.
        m_r = torch.stack(
            [t[:, 0], -t[:, 1], zero, t[:, 1], t[:, 0], zero, zero, zero, one], dim=1
        ).reshape(N, 3, 3)
        m_t = torch.stack(
            [one, zero, -t[:, 2], zero, one, -t[:, 3], zero, zero, one], dim=1
        ).reshape(N, 3, 3)
        transforms = m_r @ m_t @ inv.to(w.dtype)  # [N, 3, 3]
        phases = self.phases.unsqueeze(0) + (self.freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = self.freqs @ transforms[:, :2, :2]  # [N, C, 2]
        # Damp frequencies a user transform pushes out of band.
        amplitudes = (
            1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)
        ).clamp(0, 1)
        # Sample positions: pixel centres of a size x size grid spanning size / sampling_rate.
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = theta[1, 1] = 0.5 * self.size / self.sampling_rate
        grid = F.affine_grid(theta[None], [1, 1, self.size, self.size], align_corners=False)
        x = (grid.unsqueeze(3) @ freqs.transpose(1, 2)[:, None, None]).squeeze(3)  # [N, S, S, C]
        x = torch.sin((x + phases[:, None, None]) * (2 * math.pi)) * amplitudes[:, None, None]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated conv + filtered leaky ReLU (or, as toRGB, modulated 1x1 conv + bias + clamp)."""

    def __init__(
        self,
        config: StyleGAN3Config,
        index: int,  # 0..num_layers (num_layers = toRGB)
        specs: list[dict],
    ) -> None:
        super().__init__()
        c = config
        prev, cur = specs[max(index - 1, 0)], specs[index]
        self.is_torgb = index == c.num_layers
        self.is_critically_sampled = index >= c.num_layers - c.num_critical
        self.in_channels, self.out_channels = prev["channels"], cur["channels"]
        self.in_size, self.out_size = prev["size"], cur["size"]
        self.conv_kernel = 1 if self.is_torgb else c.conv_kernel
        self.conv_clamp = c.conv_clamp
        self.affine = EqualizedLinear(c.w_dim, self.in_channels, bias_init=1.0)
        k = self.conv_kernel
        self.weight = nn.Parameter(torch.randn(self.out_channels, self.in_channels, k, k))
        self.bias = nn.Parameter(torch.zeros(self.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))

        in_rate, out_rate = prev["sampling_rate"], cur["sampling_rate"]
        tmp_rate = max(in_rate, out_rate) * (1 if self.is_torgb else c.lrelu_upsampling)
        self.up_factor = round(tmp_rate / in_rate)
        self.down_factor = round(tmp_rate / out_rate)
        up_taps = c.filter_size * self.up_factor if self.up_factor > 1 and not self.is_torgb else 1
        down_taps = (
            c.filter_size * self.down_factor if self.down_factor > 1 and not self.is_torgb else 1
        )
        radial = c.use_radial_filters and not self.is_critically_sampled
        self.register_buffer(
            "up_filter",
            design_lowpass_filter(up_taps, prev["cutoff"], prev["half_width"] * 2, tmp_rate),
        )
        self.register_buffer(
            "down_filter",
            design_lowpass_filter(
                down_taps, cur["cutoff"], cur["half_width"] * 2, tmp_rate, radial=radial
            ),
        )
        # Padding that lands the output samples on the symmetric grid of the next layer.
        total = (self.out_size - 1) * self.down_factor + 1
        total -= (self.in_size + k - 1) * self.up_factor
        total += up_taps + down_taps - 2
        lo = (total + self.up_factor) // 2
        self.padding = (lo, total - lo, lo, total - lo)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """x [N, I, in_size, in_size], w [N, w_dim] -> [N, O, out_size, out_size]."""
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel**2))
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            demodulate=not self.is_torgb,
            input_gain=self.magnitude_ema.rsqrt(),
        )
        return filtered_lrelu(
            x,
            self.bias,
            self.up_filter,
            self.down_filter,
            up=self.up_factor,
            down=self.down_factor,
            padding=self.padding,
            gain=1.0 if self.is_torgb else math.sqrt(2),
            slope=1.0 if self.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )


class SynthesisNetwork(nn.Module):
    """w+ [N, num_ws, w_dim] -> images [N, 3, R, R]."""

    def __init__(self, config: StyleGAN3Config) -> None:
        super().__init__()
        c = config
        self.resolution, self.num_ws, self.w_dim = c.resolution, c.num_ws, c.w_dim
        self.output_scale = c.output_scale
        specs = c.layer_specs()
        self.input = SynthesisInput(
            c.w_dim, specs[0]["channels"], specs[0]["size"], specs[0]["sampling_rate"],
            specs[0]["cutoff"],
        )  # fmt: skip
        self.layer_names: list[str] = []
        for i in range(c.num_layers + 1):
            layer = SynthesisLayer(c, i, specs)
            name = f"L{i}_{layer.out_size}_{layer.out_channels}"  # NVlabs' names
            self.add_module(name, layer)
            self.layer_names.append(name)

    @property
    def layers(self) -> list[SynthesisLayer]:
        """The synthesis layers in order; ``layers[k]`` consumes w+ index k + 1 (last: toRGB)."""
        return [getattr(self, n) for n in self.layer_names]

    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        """StyleGAN3 has no noise inputs: an empty list (inversion then optimises no noise maps)."""
        return []

    def forward(
        self,
        w_plus: Tensor,
        noise_mode: str = "const",
        noise: Sequence[Tensor] | None = None,
        transform: Tensor | None = None,
    ) -> Tensor:
        """Synthesise images.

        Args:
            w_plus: [N, num_ws, w_dim] (a W code [N, w_dim] is broadcast to every layer).
            noise_mode: accepted for API parity ("const" | "random" | "none"); no effect.
            noise: must be None or empty (there are no noise maps).
            transform: image-space rotation/translation, [3, 3] for all or [N, 3, 3] per sample
                (:func:`make_transform`); None = the stored ``input.transform`` (identity in
                NVlabs' releases).

        Returns:
            images [N, 3, R, R], roughly in [-1, 1].
        """
        w_plus = broadcast_w(w_plus, self.num_ws, self.w_dim)
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noise:
            raise ValueError(f"StyleGAN3 has no noise inputs, got {len(noise)} noise maps")
        if transform is not None and transform.ndim == 3 and transform.shape[0] != w_plus.shape[0]:
            raise ValueError(
                f"transform [N, 3, 3] must have N = {w_plus.shape[0]}, got {tuple(transform.shape)}"
            )
        x = self.input(w_plus[:, 0], transform)
        for k, layer in enumerate(self.layers):
            x = layer(x, w_plus[:, k + 1])
        return x * self.output_scale if self.output_scale != 1 else x


class StyleGAN3Generator(StyleGeneratorAPI, nn.Module):
    """StyleGAN3 generator: ``mapping`` (z -> w) and ``synthesis`` (w+ -> image).

    Attributes:
        config: the :class:`StyleGAN3Config`.
        sha256: hex digest identifying the weights (file sha256 when loaded).
    """

    family = "stylegan3"

    def __init__(self, config: StyleGAN3Config | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = StyleGAN3Config.from_dict(kwargs)
        elif kwargs:
            raise TypeError("pass either a StyleGAN3Config or keyword arguments, not both")
        self.config = config
        self.mapping = MappingNetwork(
            config.z_dim, config.w_dim, config.n_mlp, config.lr_mlp, layer=MappingLayer
        )
        self.synthesis = SynthesisNetwork(config)
        self.sha256: str | None = None
        self.source_format: str | None = None

    # -- style space ---------------------------------------------------------------------------
    @property
    def style_layers(self) -> list[nn.Module]:
        """The num_ws modules whose ``affine`` output defines S, in w+ order: the Fourier input
        (index 0: ``s_0 [N, 4] = (r_c, r_s, t_x, t_y)``, rotation and translation) then every
        layer (``s_{k+1}`` of layer k, C its input channels), toRGB last (without its weight gain,
        as for StyleGAN2)."""
        return [self.synthesis.input, *self.synthesis.layers]

    def forward(
        self,
        z: Tensor,
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
        transform: Tensor | None = None,
    ) -> Tensor:
        """z [N, z_dim] -> images [N, 3, R, R] (W code broadcast to all layers)."""
        w = self.mapping(z, truncation_psi)
        return self.synthesis(w, noise_mode=noise_mode, transform=transform)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"config={c.name}, resolution={c.resolution}, num_ws={c.num_ws}, w_dim={c.w_dim}, "
            f"channel_base={c.channel_base}, channel_max={c.channel_max}"
        )


@torch.no_grad()
def randomize_(G: StyleGAN3Generator, seed: int = 0, calibration_samples: int = 8) -> None:
    """Random weights for a test/default StyleGAN3, deterministic in ``seed`` (in place).

    Input frequencies and phases are redrawn from ``seed``. Weights ~ N(0, 1) (mapping ``N(0, 1) / lr_mlp``), affine biases ``1 + 0.1 N``, layer biases
    ``0.1 N``; the input's affine starts near the identity transform (small rotations and shifts).
    Each layer's ``magnitude_ema`` is then set to the mean square of its input over
    ``calibration_samples`` mapped samples, as training's moving average would make it.
    ``w_avg`` is left to the caller.
    """
    g = torch.Generator().manual_seed(seed)
    inp = G.synthesis.input
    freqs, phases = fourier_features(inp.channels, inp.bandwidth, g)
    inp.freqs.copy_(freqs)
    inp.phases.copy_(phases)
    for name, p in G.named_parameters():
        r = torch.randn(p.shape, generator=g)
        if name == "synthesis.input.affine.weight":
            p.copy_(0.1 * r)
        elif name == "synthesis.input.affine.bias":
            p.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]) + 0.05 * r)
        elif name.endswith("affine.bias"):
            p.copy_(1.0 + 0.1 * r)
        elif name.startswith("mapping."):
            p.copy_(0.1 * r if name.endswith("bias") else r / G.config.lr_mlp)
        elif name.endswith(".bias"):
            p.copy_(0.1 * r)
        else:
            p.copy_(r)
    z = torch.randn(calibration_samples, G.z_dim, generator=g).to(G.w_avg.device)
    w = G.mapping(z)
    x = G.synthesis.input(w)
    for layer in G.synthesis.layers:
        # 2 significant digits: the same weights (and sha256) whatever the thread count's rounding
        layer.magnitude_ema.fill_(float(f"{float(x.square().mean()):.2g}"))
        x = layer(x, w)
