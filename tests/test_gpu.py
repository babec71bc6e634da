"""CUDA checks (marker ``gpu``; run with ``pytest -m gpu`` on a machine with a GPU)."""

from __future__ import annotations

import pytest
import torch

from lsap.alignment import compute_anchors, sncd

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def pair(tiny_G):
    import copy

    return tiny_G, copy.deepcopy(tiny_G).cuda()


def test_same_images_on_cuda_and_cpu(pair):
    G, Gc = pair
    w_plus = torch.randn(4, G.num_ws, G.w_dim)
    ref = G.synthesis(w_plus)
    torch.testing.assert_close(Gc.synthesis(w_plus.cuda()).cpu(), ref, atol=2e-4, rtol=1e-3)
    assert Gc.mapping(torch.randn(3, G.z_dim).cuda()).device.type == "cuda"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_on_cuda(pair, dtype):
    G, Gc = pair
    w_plus = torch.randn(4, G.num_ws, G.w_dim, device="cuda")
    ref = Gc.synthesis(w_plus)
    with torch.autocast("cuda", dtype=dtype):
        low = Gc.synthesis(w_plus)
    assert low.dtype == dtype
    assert (low.float() - ref).norm() / ref.norm() < (0.05 if dtype == torch.bfloat16 else 0.01)


def test_anchors_and_sncd_do_not_depend_on_device(pair):
    G, Gc = pair
    a_cpu = compute_anchors(G, 4000, seed=3)
    a_gpu = compute_anchors(Gc, 4000, seed=3)
    for a, b in zip(a_cpu, a_gpu, strict=True):
        torch.testing.assert_close(b.cpu(), a, atol=1e-5, rtol=1e-4)
    w_plus = torch.randn(5, G.num_ws, G.w_dim)
    torch.testing.assert_close(
        sncd(Gc, w_plus.cuda(), a_gpu)[0].cpu(), sncd(G, w_plus, a_cpu)[0], atol=1e-5, rtol=1e-4
    )
