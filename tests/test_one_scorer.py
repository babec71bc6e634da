"""One definition of the per-image metrics (issue 12.3): lsap-invert's per-image metrics, lsap-eval's
scorer, the demo's and training validation's numbers agree for the same images, because they are
one scorer (images scored as their PNGs: quantised to uint8 before LPIPS and ID too)."""

from __future__ import annotations

import pytest
import torch
from conf_entries import conf_group

from lsap.alignment import compute_anchors
from lsap.inversion.report import ReconstructionMetrics
from lsap.losses.identity import FaceEmbedder
from lsap.losses.perceptual import LPIPSLoss
from lsap.metrics.scorer import build_scorer, quantize

pytestmark = pytest.mark.usefixtures("one_thread")

LPIPS = {"net": "alex", "backbone": "random", "resize": None}
ID = {"backend": "facenet", "weights": "random", "crop": False}


@pytest.fixture(scope="module")
def pairs():
    g = torch.Generator().manual_seed(0)
    targets = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1  # off the uint8 levels on purpose
    images = (targets + 0.3 * torch.randn(3, 3, 32, 32, generator=g)).clamp(-1, 1)
    return images, targets


def test_invert_metrics_equal_the_eval_scorer(tiny_G, pairs):
    images, targets = pairs
    anchors = compute_anchors(tiny_G, 500, 0)
    lp, face = LPIPSLoss(**LPIPS), FaceEmbedder(**ID)
    invert = ReconstructionMetrics(tiny_G, anchors, lpips=lp, face=face)
    w = tiny_G.mapping(torch.randn(3, tiny_G.z_dim, generator=torch.Generator().manual_seed(1)))
    got = invert(images, targets, w[:, None].expand(-1, tiny_G.num_ws, -1))
    evaluate = build_scorer(
        conf_group(
            "metrics",
            "default",
            fidelity=["mse", "psnr", "ssim", "lpips", "id"],
            editing=[],
            lpips=LPIPS,
            id=ID,
        ),
        fid=False,
    )
    want = evaluate.fidelity(targets, images)
    for k in ("mse", "psnr", "ssim", "lpips", "id"):
        torch.testing.assert_close(got[k], want[k], msg=k)
    # the shared definition scores images as saved: unquantised inputs give other LPIPS values
    raw = lp.distance(images, targets)
    assert not torch.allclose(raw, want["lpips"])
    torch.testing.assert_close(lp.distance(quantize(images), quantize(targets)), want["lpips"])


def test_a_metric_without_its_network_is_nan(tiny_G, pairs):
    images, targets = pairs
    anchors = compute_anchors(tiny_G, 500, 0)
    w = tiny_G.mapping(torch.randn(3, tiny_G.z_dim, generator=torch.Generator().manual_seed(1)))
    got = ReconstructionMetrics(tiny_G, anchors)(images, targets, w)
    assert torch.isnan(got["lpips"]).all() and torch.isnan(got["id"]).all()
    assert torch.isfinite(got["mse"]).all() and torch.isfinite(got["sncd"]).all()
