"""Test data in the lsap-invert output layout: originals, codes with provenance, reconstructions."""

from __future__ import annotations

from pathlib import Path

import torch

from lsap.core.provenance import provenance
from lsap.data import save_image

NAMES = ["a", "sub__b", "sub__c", "d", "e"]  # `sub__b` is originals/sub/b.png


def original_path(root: Path, name: str) -> Path:
    return root.joinpath(*name.split("__")).with_suffix(".png")


def sample_codes(G, n: int, seed: int = 0) -> torch.Tensor:
    """W+ codes [n, num_ws, w_dim] with a different mapped w on every layer."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = G.mapping(torch.randn(n * G.num_ws, G.z_dim, generator=g))
    return w.reshape(n, G.num_ws, G.w_dim)


def write_originals(root: Path, G, codes: torch.Tensor, names=NAMES) -> list[Path]:
    """Save G's images of ``codes`` as the originals (so exact codes reconstruct them)."""
    with torch.no_grad():
        images = G.synthesis(codes, noise_mode="const")
    paths = []
    for name, im in zip(names, images, strict=True):
        p = original_path(root, name)
        p.parent.mkdir(parents=True, exist_ok=True)
        save_image(im, p)
        paths.append(p)
    return paths


def write_inversion(
    out: Path,
    G,
    codes: torch.Tensor,
    names=NAMES,
    *,
    originals: Path | None = None,
    noise: list | None = None,
    sha256: str | None = "generator",
    reconstructions: bool = True,
) -> Path:
    """An lsap-invert output folder for ``codes`` [N, num_ws, w_dim].

    ``noise``: per-image noise lists (or None entries); ``sha256="generator"`` records G's sha256.
    """
    (out / "codes").mkdir(parents=True, exist_ok=True)
    sha = G.sha256 if sha256 == "generator" else sha256
    prov = provenance(generator=G, seed=0)
    prov["generator_sha256"] = sha
    for i, name in enumerate(names):
        nz = noise[i] if noise is not None else None
        image_path = str(original_path(originals, name)) if originals is not None else f"{name}.png"
        torch.save(
            {
                "w_plus": codes[i : i + 1].clone(),
                "noise": nz,
                "image_path": image_path,
                "name": name,
                "metrics": {},
                "provenance": prov,
            },
            out / "codes" / f"{name}.pt",
        )
        if reconstructions:
            (out / "reconstructions").mkdir(exist_ok=True)
            with torch.no_grad():
                im = G.synthesis(codes[i : i + 1], noise=nz)[0]
            save_image(im, out / "reconstructions" / f"{name}.png")
    return out
