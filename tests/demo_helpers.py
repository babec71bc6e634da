"""Stand-ins for the toy assets the demo tests need: small random encoders in lsap's encoder
format and random unit InterFaceGAN-style directions."""

from __future__ import annotations

from pathlib import Path

import torch

from lsap.io.encoders import save_encoder
from lsap.nets.encoder import Encoder4Editing

SMALL_STAGES = [[16, 16, 1], [16, 24, 1], [24, 32, 1], [32, 32, 1]]


def make_encoder(G, path: Path, seed: int) -> Path:
    """A random e4e for G (32 px input, narrow backbone), latent_avg = G.w_avg, saved in lsap's
    encoder format with G's sha256."""
    torch.manual_seed(seed)
    enc = Encoder4Editing(G.num_ws, G.w_dim, input_size=32, stages=SMALL_STAGES)
    enc.set_latent_avg(G.w_avg.detach())
    # small heads: the codes stay near w_avg, like a briefly trained encoder's
    with torch.no_grad():
        for head in enc.styles:
            head.linear.weight.mul_(0.05)
    return save_encoder(enc.eval(), path, generator_sha256=G.sha256)


def random_directions(w_dim: int, names, seed: int) -> dict[str, torch.Tensor]:
    """Random unit [w_dim] directions, one per name (stand-ins for fitted InterFaceGAN ones)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in names:
        d = torch.randn(w_dim, generator=g)
        out[name] = d / d.norm()
    return out


def save_directions(directions: dict[str, torch.Tensor], folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, d in directions.items():
        torch.save(d.clone(), folder / f"{name}.pt")
        paths[name] = str(folder / f"{name}.pt")
    return paths
