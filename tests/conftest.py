"""Shared fixtures: tiny generators with the same code paths as full-size ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lsap.io import init_generator
from lsap.nets import GeneratorConfig

FIXTURES = Path(__file__).parent / "fixtures"

TINY = GeneratorConfig(resolution=32, z_dim=64, w_dim=64, n_mlp=3, channel_base=512, channel_max=64)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    32 px problems are too small for intra-op threads, which cost more in synchronisation than
    they give (up to 5x slower on a shared, oversubscribed machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_config() -> GeneratorConfig:
    return TINY


@pytest.fixture(scope="session")
def tiny_G():
    """A 32 px generator (num_ws 8, channels 64/64/32/16), random weights, seed 0. Do not mutate."""
    return init_generator(TINY, seed=0)


@pytest.fixture(scope="session")
def other_G():
    """A second tiny generator with different weights (seed 1)."""
    return init_generator(TINY, seed=1)


@pytest.fixture(scope="session")
def toy_faces():
    """Six 32 px faces [6, 3, 32, 32] in [-1, 1] from the shipped toy generator (z seed 0): real
    image statistics, different people, for checking that stand-in networks tell them apart."""
    from lsap.assets import asset_path
    from lsap.io import load_generator

    G = load_generator(asset_path("toy32/generator.pt")).eval()
    z = torch.randn(6, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return G(z, noise_mode="const").clamp(-1, 1)
