"""A small CNN that predicts the toy faces' attributes (``lsap.data.toy.ATTRIBUTES``) from pixels.

Used to label generated samples (InterFaceGAN directions) and to measure edits. One shared trunk,
one output per attribute: a logit for binary attributes, a value for scalar ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ToyClassifierConfig:
    """Architecture of :class:`ToyClassifier`."""

    resolution: int = 32  # input size (a power of two >= 8)
    width: int = 32  # channels of the first conv; doubled at each of the 3 downsamplings (max 4x)
    hidden: int = 128  # width of the fully connected layer
    names: Sequence[str] = field(default_factory=tuple)  # attribute names, output order
    kinds: Sequence[str] = field(default_factory=tuple)  # "binary" | "scalar" per attribute

    def __post_init__(self) -> None:
        if len(self.names) != len(self.kinds) or not self.names:
            raise ValueError("names and kinds must be non-empty and of equal length")
        bad = sorted(set(self.kinds) - {"binary", "scalar"})
        if bad:
            raise ValueError(f"unknown attribute kinds {bad}")
        r = self.resolution
        if r < 8 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["names"], d["kinds"] = list(self.names), list(self.kinds)
        return d


def _conv(i: int, o: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.LeakyReLU(0.2)
    )


class ToyClassifier(nn.Module):
    """images [N, 3, R, R] in [-1, 1] -> raw outputs [N, A] (binary: logits; scalar: values).

    The trunk keeps a 4x4 map before the fully connected layer (no global pooling), so position
    attributes (``offset_x``, ``yaw``) stay readable.
    """

    def __init__(self, config: ToyClassifierConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is None:
            config = ToyClassifierConfig(**kwargs)
        self.config = c = config
        w = c.width
        layers = [_conv(3, w, 1)]
        res, ch = c.resolution, w
        while res > 4:
            nxt = min(ch * 2, 4 * w)
            layers += [_conv(ch, nxt, 2), _conv(nxt, nxt, 1)]
            ch, res = nxt, res // 2
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(ch * 16, c.hidden), nn.LeakyReLU(0.2), nn.Dropout(0.1),
            nn.Linear(c.hidden, len(c.names)),
        )  # fmt: skip
        self.register_buffer(
            "binary_mask", torch.tensor([k == "binary" for k in c.kinds]), persistent=False
        )

    @property
    def names(self) -> list[str]:
        return list(self.config.names)

    def forward(self, images: Tensor) -> Tensor:
        """images [N, 3, R, R] in [-1, 1] -> [N, A] logits (binary) / values (scalar)."""
        R = self.config.resolution
        if images.ndim != 4 or images.shape[1:] != (3, R, R):
            raise ValueError(f"classifier expects [N, 3, {R}, {R}], got {tuple(images.shape)}")
        return self.head(self.trunk(images))

    def features(self, images: Tensor) -> Tensor:
        """images [N, 3, R, R] in [-1, 1] -> [N, hidden]: the fully connected layer's activations
        (the last layer before the per-attribute outputs; e.g. FID features on the toy domain)."""
        R = self.config.resolution
        if images.ndim != 4 or images.shape[1:] != (3, R, R):
            raise ValueError(f"classifier expects [N, 3, {R}, {R}], got {tuple(images.shape)}")
        return self.head[:3](self.trunk(images))  # Flatten, Linear, LeakyReLU

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """[N, A]: probabilities for binary attributes, values clamped to [0, 1] for scalar ones."""
        out = self(images)
        return torch.where(self.binary_mask, out.sigmoid(), out.clamp(0, 1))


def attribute_loss(outputs: Tensor, labels: Tensor, binary_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-attribute training loss.

    Args:
        outputs: [N, A] raw classifier outputs.
        labels: [N, A] binary 0/1 or scalar in [0, 1].
        binary_mask: [A] bool, True for binary attributes.

    Returns:
        (total scalar, per-attribute [A]): binary cross-entropy for binary attributes, 10 x mean
        squared error for scalar ones (so a 0.1 error costs about what a confident mistake does).
    """
    bce = nn.functional.binary_cross_entropy_with_logits(outputs, labels, reduction="none")
    mse = 10.0 * (outputs - labels).square()
    per = torch.where(binary_mask, bce, mse).mean(0)
    return per.sum(), per


def attribute_accuracy(predictions: Tensor, labels: Tensor) -> Tensor:
    """[A] accuracy: for binary attributes p > 0.5 vs the label; for scalar ones, the same side
    of 0.5 as the label (use the mean absolute error too for scalars).

    Args:
        predictions: [N, A] from :meth:`ToyClassifier.predict`.
        labels: [N, A].
    """
    return ((predictions > 0.5) == (labels > 0.5)).float().mean(0)
