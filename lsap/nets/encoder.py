"""Image -> W+ encoders on an IR-SE50 feature pyramid: e4e's Encoder4Editing and pSp's
GradualStyleEncoder, plus the progressive schedule e4e trains with.

Both share one layout (module names as in the released checkpoints, so their weights load by name):
``input_layer`` (3x3 conv, BatchNorm, PReLU), ``body.{0..23}`` (IR-SE bottlenecks; with a 256 px
input the three taps are 64x64x128, 32x32x256 and 16x16x512), ``latlayer1``/``latlayer2`` (1x1
convs lifting the 32x32 and 64x64 taps to the top width for a feature pyramid), and one map2style
head ``styles.{i}`` per w+ index (stride-2 3x3 convs down to 1x1, then an equalised linear layer).
Heads 0-2 read the coarse 16x16 map, 3-6 the middle 32x32 map, 7+ the fine 64x64 map.

- :class:`Encoder4Editing` (e4e): ``w+_i = latent_avg_i + styles[0](coarse) + [i <= stage] *
  styles[i](features_i)``: one shared code plus deltas for the w+ indices the progressive stage
  has switched on; a trained (loaded) encoder has every stage on.
- :class:`GradualStyleEncoder` (pSp): ``w+_i = latent_avg_i + styles[i](features_i)``.

Any generator size: ``num_ws`` heads (18 at 1024 px, 14 at 256 px). The defaults build the
official shapes; ``stages`` / ``input_size`` give narrower or smaller variants (tests, toys).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsap.nets.irse import IR50_STAGES, BottleneckIRSE
from lsap.nets.stylegan2 import EqualizedLinear

COARSE_END = 3  # heads [0, 3) read the coarse (16x16 at 256 px) map
MIDDLE_END = 7  # heads [3, 7) the middle (32x32) map, [7, num_ws) the fine (64x64) map
ARCHS = ("e4e", "psp")

Stages = Sequence[Sequence[int]]  # (in channels, out channels, units) per backbone stage


class Map2Style(nn.Module):
    """A map2style head: features [N, C, s, s] -> one style code [N, w_dim].

    ``log2(s)`` 3x3 stride-2 convs with leaky ReLU (0.01) bring the map to 1x1, then an
    equalised linear layer (``linear``) gives the code.
    """

    def __init__(self, in_channels: int, w_dim: int, spatial: int) -> None:
        super().__init__()
        num_convs = int(math.log2(spatial))
        if 2**num_convs != spatial or num_convs < 1:
            raise ValueError(f"map2style needs a power-of-two map >= 2 px, got {spatial}")
        layers: list[nn.Module] = []
        for j in range(num_convs):
            layers += [nn.Conv2d(in_channels if j == 0 else w_dim, w_dim, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualizedLinear(w_dim, w_dim)
        self.w_dim = w_dim

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x)  # [N, w_dim, 1, 1]
        return self.linear(x.reshape(-1, self.w_dim))


def _upsample_add(top: Tensor, lateral: Tensor) -> Tensor:
    """Bilinear upsampling (align_corners) of ``top`` to ``lateral``'s size, plus ``lateral``."""
    return (
        F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral
    )


class PyramidEncoder(nn.Module):
    """IR-SE backbone, feature pyramid and map2style heads shared by e4e and pSp.

    Args:
        num_ws: number of w+ indices (the generator's ``num_ws``); one head each.
        w_dim: code width (the generator's ``w_dim``, 512 for FFHQ).
        input_size: side of the input images (256 as in pSp/e4e/LSAP); sets the head depths.
        stages: backbone stages ``(in, out, units)``; None = IR-SE50 (64/128/256/512 channels,
            3/4/14/3 units, the ``model_ir_se50.pth`` layout). The first unit of each stage
            halves the resolution; the last three stages feed the pyramid.
        input_nc: input channels (3, RGB).

    Attributes:
        latent_avg: buffer [num_ws, w_dim] added to every code (the generator's w_avg per layer).
        progressive_stage: e4e only; highest w+ index with an active delta (num_ws - 1 = all).
    """

    arch = ""
    progressive = False

    def __init__(
        self,
        num_ws: int = 18,
        w_dim: int = 512,
        *,
        input_size: int = 256,
        stages: Stages | None = None,
        input_nc: int = 3,
    ) -> None:
        super().__init__()
        stages = tuple(tuple(int(v) for v in s) for s in (stages or IR50_STAGES))
        if len(stages) != 4 or any(len(s) != 3 or s[2] < 1 or s[1] < 16 for s in stages):
            # out >= 16: the squeeze-excite blocks reduce channels 16-fold
            raise ValueError(f"stages must be 4 triples (in, out >= 16, units >= 1), got {stages}")
        if num_ws < 1:
            raise ValueError(f"num_ws must be >= 1, got {num_ws}")
        coarse = input_size // 16  # side of the last tap after four stride-2 stages
        if input_size % 16 or coarse < 2 or coarse & (coarse - 1):
            raise ValueError(f"input_size must be 16 * a power of two >= 2, got {input_size}")
        self.num_ws, self.w_dim, self.input_size, self.input_nc = (
            num_ws,
            w_dim,
            input_size,
            input_nc,
        )
        self.stages = stages
        first = stages[0][0]
        self.input_layer = nn.Sequential(
            nn.Conv2d(input_nc, first, 3, 1, 1, bias=False), nn.BatchNorm2d(first), nn.PReLU(first)
        )
        units: list[nn.Module] = []
        for in_c, depth, n in stages:
            units.append(BottleneckIRSE(in_c, depth, 2))
            units += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
        self.body = nn.Sequential(*units)
        ends = [sum(s[2] for s in stages[: k + 1]) - 1 for k in range(4)]
        self._taps = (ends[1], ends[2], ends[3])  # body indices of the fine, middle, coarse maps
        top = stages[3][1]
        self.styles = nn.ModuleList(
            Map2Style(top, w_dim, coarse * (1 if i < COARSE_END else 2 if i < MIDDLE_END else 4))
            for i in range(num_ws)
        )
        self.latlayer1 = nn.Conv2d(stages[2][1], top, 1, 1, 0)
        self.latlayer2 = nn.Conv2d(stages[1][1], top, 1, 1, 0)
        self.register_buffer("latent_avg", torch.zeros(num_ws, w_dim))
        self.progressive_stage = num_ws - 1

    # -- configuration --------------------------------------------------------------------------
    def config(self) -> dict:
        """Constructor arguments (plain values) that rebuild this architecture."""
        return {
            "arch": self.arch,
            "num_ws": self.num_ws,
            "w_dim": self.w_dim,
            "input_size": self.input_size,
            "stages": [list(s) for s in self.stages],
            "input_nc": self.input_nc,
        }

    @property
    def active_layers(self) -> list[int]:
        """w+ indices whose codes the current progressive stage lets the encoder shape."""
        return list(range(self.progressive_stage + 1))

    def set_progressive_stage(self, stage: int) -> None:
        if not 0 <= stage < self.num_ws:
            raise ValueError(f"progressive stage must be in [0, {self.num_ws - 1}], got {stage}")
        self.progressive_stage = int(stage)

    def set_latent_avg(self, w_avg: Tensor) -> None:
        """Set the offset added to every code from [w_dim], [1, w_dim] or [num_ws, w_dim]."""
        self.latent_avg.copy_(latent_avg_rows(w_avg, self.num_ws, self.w_dim))

    # -- forward ---------------------------------------------------------------------------------
    def _check_input(self, images: Tensor) -> None:
        """Square ``input_size`` images, or the valid region of a non-square generator with its
        longer side ``input_size`` (e4e's 192 x 256 cars: the heads still reach 1 x 1)."""
        s = self.input_size
        ok = images.ndim == 4 and images.shape[1] == self.input_nc
        h, w = (int(images.shape[-2]), int(images.shape[-1])) if images.ndim == 4 else (0, 0)
        if not (ok and max(h, w) == s):
            raise ValueError(
                f"{type(self).__name__} expects images [N, {self.input_nc}, {s}, {s}] (or a "
                f"non-square valid region with longer side {s}) in [-1, 1], got "
                f"{tuple(images.shape)}"
            )

    def features(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Backbone taps ``(fine, middle, coarse)``: at 256 px [N,128,64,64], [N,256,32,32],
        [N,512,16,16] (channels from ``stages``)."""
        x = self.input_layer(images)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self._taps:
                taps.append(x)
        return taps[0], taps[1], taps[2]

    def forward(self, images: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Encoder4Editing(PyramidEncoder):
    """e4e: images [N, 3, input_size, input_size] in [-1, 1] -> w_plus [N, num_ws, w_dim].

    ``w+_i = latent_avg_i + styles[0](coarse) + delta_i`` with ``delta_i = styles[i](features_i)``
    for ``1 <= i <= progressive_stage`` and 0 beyond. The middle/fine pyramid levels are only
    computed once a head that reads them is active. See :class:`PyramidEncoder` for arguments.
    """

    arch = "e4e"
    progressive = True

    def forward(self, images: Tensor) -> Tensor:
        self._check_input(images)
        c1, c2, c3 = self.features(images)
        w0 = self.styles[0](c3)  # [N, w_dim]
        codes = [w0]
        features, p2 = c3, None
        for i in range(1, self.num_ws):
            if i > self.progressive_stage:
                codes.append(w0)
                continue
            if i == COARSE_END:
                p2 = features = _upsample_add(c3, self.latlayer1(c2))
            elif i == MIDDLE_END:
                features = _upsample_add(p2, self.latlayer2(c1))
            codes.append(w0 + self.styles[i](features))
        return torch.stack(codes, dim=1) + self.latent_avg  # [N, num_ws, w_dim]


class GradualStyleEncoder(PyramidEncoder):
    """pSp: images [N, 3, input_size, input_size] in [-1, 1] -> w_plus [N, num_ws, w_dim].

    ``w+_i = latent_avg_i + styles[i](features_i)`` for every i (no progressive stages).
    See :class:`PyramidEncoder` for arguments.
    """

    arch = "psp"

    def forward(self, images: Tensor) -> Tensor:
        self._check_input(images)
        c1, c2, c3 = self.features(images)
        codes = [self.styles[i](c3) for i in range(min(COARSE_END, self.num_ws))]
        if self.num_ws > COARSE_END:
            p2 = _upsample_add(c3, self.latlayer1(c2))
            codes += [self.styles[i](p2) for i in range(COARSE_END, min(MIDDLE_END, self.num_ws))]
        if self.num_ws > MIDDLE_END:
            p1 = _upsample_add(p2, self.latlayer2(c1))
            codes += [self.styles[i](p1) for i in range(MIDDLE_END, self.num_ws)]
        return torch.stack(codes, dim=1) + self.latent_avg  # [N, num_ws, w_dim]


ENCODERS: dict[str, type[PyramidEncoder]] = {"e4e": Encoder4Editing, "psp": GradualStyleEncoder}


def build_encoder(arch: str, **kwargs) -> PyramidEncoder:
    """``Encoder4Editing`` (``arch="e4e"``) or ``GradualStyleEncoder`` (``"psp"``)."""
    if arch not in ENCODERS:
        raise ValueError(f"encoder arch must be one of {sorted(ENCODERS)}, got {arch!r}")
    return ENCODERS[arch](**kwargs)


def latent_avg_rows(latent_avg: Tensor, num_ws: int, w_dim: int) -> Tensor:
    """[w_dim], [1, w_dim] or [num_ws, w_dim] -> [num_ws, w_dim] (float32, detached)."""
    t = torch.as_tensor(latent_avg).detach().float()
    if t.ndim == 1 and t.shape[0] == w_dim:
        return t.expand(num_ws, w_dim).clone()
    if t.ndim == 2 and t.shape[1] == w_dim and t.shape[0] in (1, num_ws):
        return t.expand(num_ws, w_dim).clone()
    raise ValueError(
        f"latent_avg has shape {list(t.shape)}; expected [{w_dim}], [1, {w_dim}] or "
        f"[{num_ws}, {w_dim}]"
    )


def progressive_stage(step: int, num_ws: int, start: int | None, every: int) -> int:
    """e4e's progressive schedule: the stage (highest active w+ index) at a training step.

    Stage 0 (only the shared code) until ``start``; then one more w+ index every ``every`` steps,
    up to ``num_ws - 1``. ``start=None`` switches progressive training off (all stages from the
    first step).
    """
    if start is None:
        return num_ws - 1
    if step < start:
        return 0
    if every <= 0:
        return num_ws - 1
    return min(num_ws - 1, 1 + (step - start) // every)
