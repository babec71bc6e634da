"""The non-face similarity term (backend moco): its random stand-in tells matches from mismatches,
its loader reads MoCo's key layout into the same network, and wrong files fail in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conf_entries import conf_group

from lsap.core.errors import CheckpointError
from lsap.losses import LossInputs, build_objective
from lsap.losses.identity import FaceEmbedder, IDLoss
from lsap.metrics.scorer import build_scorer, metric_notes
from lsap.nets.resnet_features import FEATURE_DIM, ResNet50Features

MOCO_RANDOM = {"backend": "moco", "weights": "random", "crop": False}


def _photos(size: int = 256) -> torch.Tensor:
    """Six unrelated photographs from skimage.data [6, 3, size, size] in [-1, 1]."""
    from skimage import data

    out = []
    for f in (
        data.astronaut,
        data.chelsea,
        data.coffee,
        data.rocket,
        data.camera,
        data.hubble_deep_field,
    ):
        a = torch.from_numpy(np.asarray(f())).float() / 127.5 - 1
        a = a[..., None].expand(*a.shape, 3) if a.ndim == 2 else a[..., :3]
        x = a.permute(2, 0, 1)[None]
        out.append(F.interpolate(x, size=(size, size), mode="bilinear", antialias=True))
    return torch.cat(out).clamp(-1, 1)


def _near(images: torch.Tensor, seed: int = 1) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return (images + 0.05 * noise).clamp(-1, 1)


@pytest.fixture(scope="module")
def moco_random():
    return FaceEmbedder(**MOCO_RANDOM)


@pytest.fixture(scope="module")
def photos():
    return _photos()


@pytest.mark.parametrize("which", ["photos", "toy_faces"])
def test_random_moco_scores_a_near_copy_above_every_other_image(which, moco_random, request):
    images = request.getfixturevalue(which)
    images = F.interpolate(images, size=256, mode="bilinear") if images.shape[-1] != 256 else images
    with torch.no_grad():
        e, near = moco_random(images), moco_random(_near(images))
    assert e.shape == (len(images), FEATURE_DIM)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(len(images)))
    cos = e @ near.T  # [i, j]: image i against the near copy of image j
    mispaired = cos - 2 * torch.eye(len(images))
    assert (cos.diag() > mispaired.max(dim=1).values).all(), cos
    assert (cos.diag() > mispaired.max(dim=0).values).all(), cos
    # a margin, not a tie broken by rounding: unrelated images are far from their near copies
    assert (1 - cos.diag()).max() < 0.02 and mispaired.max(dim=1).values.mean() < 0.95, cos


def test_random_moco_is_the_same_network_in_every_process(moco_random, photos):
    again = FaceEmbedder(**MOCO_RANDOM)
    with torch.no_grad():
        torch.testing.assert_close(again(photos[:2]), moco_random(photos[:2]))


def test_moco_loss_is_zero_on_a_match_and_has_gradients(moco_random, photos):
    loss = IDLoss(moco_random)
    a, b = photos[:2], photos[2:4]
    assert loss(LossInputs(images=a, targets=a)).abs().max() < 1e-5
    x = b.clone().requires_grad_(True)
    v = loss(LossInputs(images=x, targets=a))
    assert v.shape == (2,) and (v > 0.05).all()
    v.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def _moco_checkpoint(net: ResNet50Features) -> dict:
    """What MoCo's training writes: the DDP-wrapped query encoder with its MLP head, a (here
    truncated) momentum encoder and queue, and training bookkeeping."""
    q = {f"module.encoder_q.{k}": v for k, v in net.state_dict().items()}
    q["module.encoder_q.fc.0.weight"] = torch.randn(2048, 2048)
    q["module.encoder_q.fc.0.bias"] = torch.randn(2048)
    q["module.encoder_q.fc.2.weight"] = torch.randn(128, 2048)
    q["module.encoder_q.fc.2.bias"] = torch.randn(128)
    q["module.encoder_k.conv1.weight"] = torch.randn(64, 3, 7, 7)
    q["module.queue"] = torch.randn(128, 16)
    q["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    return {"epoch": 800, "arch": "resnet50", "state_dict": q, "optimizer": {"state": {}}}


@pytest.fixture(scope="module")
def trained_looking():
    """A ResNet-50 unlike the stand-in: seed 3, default init, batch norms set on other noise."""
    from lsap.losses.identity import _calibrate_batch_norm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        net = ResNet50Features()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
        _calibrate_batch_norm(net, 64)
    return net.eval()


def test_loader_reads_moco_layout_into_the_same_network(tmp_path, trained_looking, photos):
    path = tmp_path / "moco_v2_800ep_pretrain.pt"
    torch.save(_moco_checkpoint(trained_looking), path)
    emb = FaceEmbedder("moco", weights=str(path), crop=False)
    x = photos[:3]
    with torch.no_grad():
        want = F.normalize(trained_looking(F.adaptive_avg_pool2d(x, 224)), dim=1)
        torch.testing.assert_close(emb(x), want)
        # ... and a different network gives different features (the comparison can fail)
        assert (emb(x) - FaceEmbedder(**MOCO_RANDOM)(x)).abs().max() > 1e-2
    assert not any(p.requires_grad for p in emb.parameters())


def test_loader_reads_a_plain_torchvision_state_dict(tmp_path, trained_looking, photos):
    state = dict(trained_looking.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    del state["bn1.num_batches_tracked"]  # counters are optional
    torch.save(state, tmp_path / "r50.pth")
    from lsap.io.moco import load_moco_resnet50

    net = load_moco_resnet50(tmp_path / "r50.pth")
    with torch.no_grad():
        torch.testing.assert_close(net(photos[:1]), trained_looking(photos[:1]))


@pytest.mark.parametrize(
    "content, problem",
    [
        ({"state_dict": {"module.encoder_q.fc.0.weight": torch.zeros(1)}}, "no conv1.weight under"),
        ({"input_layer.0.weight": torch.zeros(64, 3, 3, 3)}, "keys start 'input_layer.0.weight'"),
        (
            {"state_dict": {"module.encoder_q.conv1.weight": torch.zeros(64, 3, 7, 7)}},
            "missing 'bn1",
        ),
        ([1, 2, 3], "no state dict in the file"),
    ],
)
def test_wrong_checkpoint_is_one_line_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "wrong.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError) as err:
        FaceEmbedder("moco", weights=str(path), crop=False)
    msg = str(err.value)
    assert msg.startswith(f"{path}: not MoCo v2 ResNet-50 weights") and problem in msg, msg
    assert "\n" not in msg


def test_wrong_shapes_and_missing_file_name_the_file(tmp_path, trained_looking):
    state = {f"module.encoder_q.{k}": v for k, v in trained_looking.state_dict().items()}
    state["module.encoder_q.layer4.2.conv3.weight"] = torch.zeros(1024, 512, 1, 1)
    torch.save({"state_dict": state}, tmp_path / "r50.pt")
    with pytest.raises(CheckpointError, match=r"r50\.pt: .*'layer4\.2\.conv3\.weight' is \[1024"):
        FaceEmbedder("moco", weights=str(tmp_path / "r50.pt"))
    with pytest.raises(CheckpointError, match=r"nope\.pt: no such file \(MoCo v2 ResNet-50"):
        FaceEmbedder("moco", weights=str(tmp_path / "nope.pt"))
    with pytest.raises(ValueError, match="'facenet', 'arcface' or 'moco', got 'simclr'"):
        FaceEmbedder("simclr", weights="random")


def test_loss_and_metric_take_the_moco_backend(photos):
    objective = build_objective(
        conf_group(
            "loss", "projector", lpips=0.0, id=1.0, noise_reg=0.0, options={"id": MOCO_RANDOM}
        )
    )
    assert objective.terms["id"].embedder.backend == "moco"
    metrics = conf_group(
        "metrics", "default", fidelity=["id"], editing=[], id=MOCO_RANDOM, fid={"enabled": False}
    )
    scorer = build_scorer(metrics)
    near, other = _near(photos[:3]), photos[3:6]
    paired, mispaired = scorer.fidelity(photos[:3], near), scorer.fidelity(photos[:3], other)
    assert (paired["id"] > mispaired["id"]).all(), (paired, mispaired)
    notes = " ".join(metric_notes(metrics))
    assert "random ResNet-50" in notes and "face" not in notes


@pytest.mark.weights
def test_real_moco_weights_tell_a_photo_from_another(photos):
    """MoCo v2 (moco_v2_800ep_pretrain.pt / .pth.tar, named by LSAP_MOCO_WEIGHTS): a photo and its
    mirror image are closer than any two of the six unrelated photos."""
    import os

    value = os.environ.get("LSAP_MOCO_WEIGHTS")
    if not value:
        pytest.skip("set LSAP_MOCO_WEIGHTS to run this test (docs/real-weights.md)")
    moco = FaceEmbedder("moco", weights=value, crop=False)
    with torch.no_grad():
        e, mirrored = moco(photos), moco(photos.flip(-1))
    cos = e @ mirrored.T
    others = (e @ e.T - 2 * torch.eye(len(e))).max(dim=1).values
    assert (cos.diag() > others).all(), (cos.diag(), others)
