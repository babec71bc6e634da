"""Shared helpers of the lsap-invert tests: a folder of generated images, a composed config."""

from __future__ import annotations

from pathlib import Path

import torch

from lsap.data import save_image
from lsap.io import init_generator

# Tiny, offline settings every lsap-invert test uses: random LPIPS and face networks (LPIPS on
# AlexNet, the cheaper of the lpips package's two), and l2 instead of LPIPS in the objective (LPIPS
# stays a metric): tests that compare codes across batchings need gradients well above float32
# rounding, which a random LPIPS network on 32 px images does not give everywhere.
FAST = [
    "generator=tiny",  # the random tiny generator (the default is the shipped toy32 one)
    "inversion.steps=5",
    "loss.l2=1.0",
    "loss.lpips=0",
    "loss.options.lpips.backbone=random",
    "loss.options.lpips.net=alex",
    "loss.options.id.weights=random",
    "alignment.num_samples=2000",
    "data.num_workers=0",
    "trainer.enable_progress_bar=false",
]


def tiny_arch() -> dict:
    from omegaconf import OmegaConf

    from lsap.cli._common import config_dir

    return dict(OmegaConf.load(f"{config_dir()}/generator/tiny.yaml")["arch"])


def make_images(
    folder: Path, n: int = 5, *, nested: int = 2, bad: bool = True, generator_seed: int = 0
) -> list[str]:
    """``n`` images of the default tiny generator (another random one with ``generator_seed``;
    the last ``nested`` in ``sub/``), a corrupt ``bad.png`` and a non-image file. Returns the
    expected output names, sorted."""
    G = init_generator(tiny_arch(), generator_seed)
    with torch.no_grad():
        w = G.mapping(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(5)))
        images = G.synthesis(w, noise_mode="const")
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        sub = i >= n - nested
        save_image(images[i], folder / ("sub" if sub else ".") / f"img{i}.png")
        names.append(f"sub__img{i}" if sub else f"img{i}")
    if bad:
        (folder / "bad.png").write_bytes(b"this is not a png")
    (folder / "notes.txt").write_text("not an image suffix: ignored")
    return sorted(names)


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lsap.cli._common import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        return hydra_compose("invert", overrides=list(overrides))
