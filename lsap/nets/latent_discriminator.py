"""The latent-code discriminator of e4e: tells the generator's own W codes from an encoder's.

e4e (Tov et al. 2021) trains its encoder with an adversarial term that keeps every w+ code inside
the distribution of the mapping network's outputs; LSAP_E replaces that with SNCD, and the e4e
baseline here runs without it unless ``loss.w_discriminator`` > 0. The network is an MLP of
``num_layers`` linear layers on one code: ``num_layers - 1`` layers of width ``w_dim`` with
LeakyReLU(0.2), then a linear layer to one logit (e4e's published setting: 4 layers, w_dim 512).
"""

from __future__ import annotations

from torch import Tensor, nn


class LatentDiscriminator(nn.Module):
    """MLP logits of single W codes: w [N, w_dim] -> [N] (higher = more like a mapped code).

    Args:
        w_dim: width of the codes (the generator's ``w_dim``).
        num_layers: linear layers in all (>= 1); e4e uses 4.
    """

    def __init__(self, w_dim: int, num_layers: int = 4) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.w_dim = int(w_dim)
        layers: list[nn.Module] = []
        for _ in range(num_layers - 1):
            layers += [nn.Linear(w_dim, w_dim), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(w_dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, w: Tensor) -> Tensor:
        if w.ndim != 2 or w.shape[1] != self.w_dim:
            raise ValueError(f"expected codes [N, {self.w_dim}], got {tuple(w.shape)}")
        return self.mlp(w).squeeze(1)
