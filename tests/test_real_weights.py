"""Real pretrained weights, when a user has them: each test runs only when the files are named by
environment variables (docs/real-weights.md lists them) and is skipped otherwise; all are marked
``weights`` (run with ``pytest -m weights tests/test_real_weights.py``).

They load the files, invert one image, and compare with published figures where those exist:
the generator's samples' SNCD (0.169, /work/shared/LSAP.md) and, given CelebA-HQ test images, the
GANInverter benchmark's PSNR / LPIPS of pSp, e4e and LSAP_E.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.weights

# Published figures (GANInverter benchmark, CelebA-HQ test, 2,824 images; LPIPS-VGG).
PUBLISHED = {
    "psp": {"psnr": 18.03, "lpips": 0.1591},
    "e4e": {"psnr": 16.66, "lpips": 0.1974},
    "lsap": {"psnr": 17.50, "lpips": 0.1765},
}
# Means over a subset of the test set move with the subset: the tolerance covers that, not bugs
# (a wrong resize, colour order or latent_avg moves PSNR by several dB and LPIPS by > 0.1).
PSNR_TOLERANCE_DB = 1.5
LPIPS_TOLERANCE = 0.03
SAMPLES_SNCD = 0.169  # mean SNCD of FFHQ generator samples (5,000 samples, 100,000 anchors)
SAMPLES_SNCD_TOLERANCE = 0.01

ENCODER_VARIABLES = {"psp": "LSAP_PSP_ENCODER", "e4e": "LSAP_E4E_ENCODER", "lsap": "LSAP_E_ENCODER"}


def _file(variable: str) -> Path:
    """The file an environment variable names; skip the test when it is unset."""
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"set {variable} to run this test (docs/real-weights.md)")
    path = Path(value)
    assert path.exists(), f"{variable}={value}: no such file or folder"
    return path


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="module")
def ffhq_G():
    from lsap import load_generator

    path = _file("LSAP_FFHQ_GENERATOR")
    return load_generator(path, _device())


def _samples(G, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_plus [n, num_ws, w_dim], images [n, 3, R, R] in [-1, 1]) of the generator."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=g).to(G.w_avg.device)
    with torch.no_grad():
        w = G.mapping(z)
        w_plus = w[:, None].expand(-1, G.num_ws, -1) if w.ndim == 2 else w
        images = G.synthesis(w_plus, noise_mode="const").clamp(-1, 1)
    return w_plus, images


def test_ffhq_generator_architecture_and_samples(ffhq_G):
    G = ffhq_G
    assert (G.resolution, G.num_ws, G.w_dim, G.z_dim) == (1024, 18, 512, 512)
    _, images = _samples(G, 2)
    assert images.shape == (2, 3, 1024, 1024) and torch.isfinite(images).all()
    assert (images[0] - images[1]).abs().mean() > 0.05  # two different faces


def test_ffhq_pt_and_pkl_are_the_same_network():
    """Given both releases (rosinality .pt and NVlabs .pkl), they render the same image."""
    from lsap import load_generator

    a = load_generator(_file("LSAP_FFHQ_GENERATOR"), _device())
    b = load_generator(_file("LSAP_FFHQ_GENERATOR_PKL"), _device())
    if a.sha256 == b.sha256:
        pytest.skip("both variables name the same file")
    w, _ = _samples(a, 1)
    with torch.no_grad():
        x, y = a.synthesis(w, noise_mode="const"), b.synthesis(w, noise_mode="const")
    assert (x - y).abs().max() < 2e-2


def test_ffhq_samples_score_the_published_sncd(ffhq_G):
    from lsap.alignment import compute_anchors, sncd

    anchors = compute_anchors(ffhq_G, 100_000, 0)
    w, _ = _samples(ffhq_G, 1, seed=1)  # warm-up shapes only
    g = torch.Generator().manual_seed(2)
    totals = []
    for _ in range(10):  # 5,000 samples in batches
        z = torch.randn(500, ffhq_G.z_dim, generator=g).to(w.device)
        with torch.no_grad():
            codes = ffhq_G.mapping(z)
            codes = codes[:, None].expand(-1, ffhq_G.num_ws, -1) if codes.ndim == 2 else codes
            totals.append(sncd(ffhq_G, codes, anchors)[0].cpu())
    mean = float(torch.cat(totals).mean())
    assert abs(mean - SAMPLES_SNCD) < SAMPLES_SNCD_TOLERANCE, mean


def test_ffhq_inversion_of_one_image(ffhq_G):
    """W+ optimisation (L2, 200 steps) of one generator sample gets far closer than w_avg."""
    from conf_entries import conf_group, inversion_kwargs

    from lsap.inversion import optimize_latents
    from lsap.losses import build_objective
    from lsap.metrics import psnr

    _, target = _samples(ffhq_G, 1, seed=3)
    objective = build_objective(
        conf_group("loss", "projector", l2=1.0, lpips=0.0, noise_reg=1e5)
    ).to(target.device)
    kwargs = inversion_kwargs(ffhq_G, steps=200)
    result = optimize_latents(ffhq_G, target, objective, seeds=[0], **kwargs)
    with torch.no_grad():
        average = ffhq_G.synthesis(ffhq_G.w_avg.expand(1, ffhq_G.num_ws, -1), noise_mode="const")
    got, start = float(psnr(result.images, target)), float(psnr(average.clamp(-1, 1), target))
    assert got > start + 5 and got > 22, (got, start)


@pytest.mark.parametrize("arch", list(ENCODER_VARIABLES))
def test_encoder_reconstructs_a_generator_sample(arch, ffhq_G):
    """pSp / e4e / LSAP_E: a generator sample encodes to codes whose image is closer to it than
    the average face is (every published encoder does this by a wide margin)."""
    from lsap import load_encoder
    from lsap.inversion import encode_images
    from lsap.metrics import psnr

    enc = load_encoder(_file(ENCODER_VARIABLES[arch]), _device())
    assert (enc.num_ws, enc.w_dim) == (ffhq_G.num_ws, ffhq_G.w_dim)
    _, target = _samples(ffhq_G, 1, seed=4)
    with torch.no_grad():
        w_plus = encode_images(enc, target, num_ws=ffhq_G.num_ws, w_dim=ffhq_G.w_dim)
        image = ffhq_G.synthesis(w_plus, noise_mode="const").clamp(-1, 1)
        average = ffhq_G.synthesis(ffhq_G.w_avg.expand(1, ffhq_G.num_ws, -1), noise_mode="const")
    assert float(psnr(image, target)) > float(psnr(average.clamp(-1, 1), target)) + 3


def _lpips_vgg():
    from lsap.losses.perceptual import LPIPSLoss

    return LPIPSLoss(net="vgg", backbone=str(_file("LSAP_LPIPS_VGG_BACKBONE")), resize=256)


@pytest.mark.parametrize("arch", list(ENCODER_VARIABLES))
def test_encoder_matches_the_published_celeba_hq_figures(arch, ffhq_G):
    """Mean PSNR / LPIPS-VGG over the first LSAP_CELEBA_HQ_MAX_IMAGES (default 200) images of the
    CelebA-HQ test folder, against the GANInverter benchmark."""
    from lsap import load_encoder
    from lsap.data import list_images, load_image
    from lsap.inversion import encode_images
    from lsap.metrics import psnr

    folder = _file("LSAP_CELEBA_HQ_TEST")
    enc = load_encoder(_file(ENCODER_VARIABLES[arch]), _device())
    lpips = _lpips_vgg().to(_device())
    limit = int(os.environ.get("LSAP_CELEBA_HQ_MAX_IMAGES", "200"))
    files = list_images(folder)[:limit]
    scores = {"psnr": [], "lpips": []}
    for path in files:
        x = load_image(path, ffhq_G.resolution)[None].to(_device())
        with torch.no_grad():
            y = ffhq_G.synthesis(
                encode_images(enc, x, num_ws=ffhq_G.num_ws, w_dim=ffhq_G.w_dim), noise_mode="const"
            ).clamp(-1, 1)
            scores["psnr"].append(float(psnr(y, x)))
            scores["lpips"].append(float(lpips.distance(y, x)))
    mean = {k: sum(v) / len(v) for k, v in scores.items()}
    want = PUBLISHED[arch]
    assert abs(mean["psnr"] - want["psnr"]) < PSNR_TOLERANCE_DB, (mean, want, len(files))
    assert abs(mean["lpips"] - want["lpips"]) < LPIPS_TOLERANCE, (mean, want, len(files))


@pytest.mark.parametrize(
    ("net", "variable"), [("vgg", "LSAP_LPIPS_VGG_BACKBONE"), ("alex", "LSAP_LPIPS_ALEX_BACKBONE")]
)
def test_lpips_from_local_backbone_weights(net, variable):
    """A torchvision backbone file loads into LPIPS; the distance ranks a slight blur below
    another image and is 0 for identical images."""
    from lsap.losses.perceptual import LPIPSLoss

    loss = LPIPSLoss(net=net, backbone=str(_file(variable)), resize=None)
    g = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(2, 3, 16, 16, generator=g) * 2 - 1, size=128, mode="bicubic")
    a, b = smooth[:1].clamp(-1, 1), smooth[1:].clamp(-1, 1)
    blurred = F.avg_pool2d(a, 3, 1, 1)
    assert float(loss.distance(a, a)) == 0
    assert float(loss.distance(a, blurred)) < float(loss.distance(a, b))
    assert 0 < float(loss.distance(a, b)) < 1.5


@pytest.mark.parametrize(
    ("backend", "variable"),
    [("arcface", "LSAP_ARCFACE_WEIGHTS"), ("facenet", "LSAP_FACENET_WEIGHTS")],
)
def test_face_embedder_tells_a_face_from_another(backend, variable, ffhq_G):
    """ArcFace IR-SE50 (model_ir_se50.pth) / facenet weights: a face and its mirror image are the
    same person, two generator samples are not."""
    from lsap.losses.identity import FaceEmbedder

    face = FaceEmbedder(backend, str(_file(variable))).to(_device())
    _, images = _samples(ffhq_G, 2, seed=5)
    with torch.no_grad():
        e = face(images)
        mirrored = face(images.flip(-1))
    same = (e * mirrored).sum(1)
    other = float(e[0] @ e[1])
    assert (same > 0.5).all() and other < 0.5 and not math.isnan(other), (same, other)
