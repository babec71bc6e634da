"""A ResNet-50 without its classifier: pooled features for the non-face similarity term.

e4e compares images of cars, churches and horses by the cosine of these features, with the query
encoder of a self-supervised MoCo v2 ResNet-50 (``lsap.io.moco`` reads its checkpoint). The
architecture is torchvision's ``resnet50`` (same parameter names, so a torchvision state dict
without ``fc.*`` fits); nothing is downloaded.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck, ResNet

FEATURE_DIM = 2048  # channels of the last stage, average-pooled


class ResNet50Features(ResNet):
    """Images [N, 3, H, W] (H, W >= 32) -> average-pooled last-stage features [N, 2048].

    The classifier head is replaced by the identity; every other parameter is torchvision's
    ``resnet50`` (``conv1``, ``bn1``, ``layer1..layer4``).

    Args:
        zero_init_residual: torchvision's option to start each residual branch's last batch-norm
            scale at 0 (the blocks start as their shortcuts). Only random networks care: a random
            ResNet-50 with full-depth residual branches maps every image to nearly the same
            features (cosine > 0.97 between unrelated photos), one with zeroed branches keeps them
            apart (``lsap.losses.identity`` uses it for ``weights=random``).
    """

    def __init__(self, zero_init_residual: bool = False) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3], zero_init_residual=zero_init_residual)
        self.fc = nn.Identity()

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [N, 3, H, W], got {tuple(images.shape)}")
        return super().forward(images)  # [N, 2048]
