"""IR-SE50: the ResNet-50 with improved residuals and squeeze-excitation used by ArcFace.

It is the face-recognition network behind the ID loss of pSp/e4e/LSAP (``model_ir_se50.pth``) and
the backbone of their encoders. Module names follow that file (``input_layer``, ``body.{i}``,
``output_layer``) so its weights load as they are.
"""

from __future__ import annotations

from torch import Tensor, nn

# (in channels, out channels, units) per stage; the first unit of each stage has stride 2.
IR50_STAGES = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))


class SqueezeExcite(nn.Module):
    """Channel attention: x * sigmoid(fc2(relu(fc1(avgpool(x)))))."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIRSE(nn.Module):
    """BN-conv3x3-PReLU-conv3x3(stride)-BN-SE residual, plus a (strided) shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SqueezeExcite(depth),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def ir_se50_body() -> nn.Sequential:
    """The 24 bottlenecks of IR-SE50: 112 px in -> [N, 512, 7, 7] (256 px in -> 16x16)."""
    units = []
    for in_c, depth, n in IR50_STAGES:
        units.append(BottleneckIRSE(in_c, depth, 2))
        units += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
    return nn.Sequential(*units)


def ir_se50_input_layer() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))


class IRSE50(nn.Module):
    """ArcFace IR-SE50: face crops [N, 3, 112, 112] in [-1, 1] -> unit embeddings [N, 512]."""

    def __init__(self, drop_ratio: float = 0.4) -> None:
        super().__init__()
        self.input_layer = ir_se50_input_layer()
        self.body = ir_se50_body()
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, 512),
            nn.BatchNorm1d(512, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (112, 112):
            raise ValueError(f"IR-SE50 expects 112x112 crops, got {tuple(x.shape)}")
        x = self.output_layer(self.body(self.input_layer(x)))
        return nn.functional.normalize(x, dim=1)
