"""InterFaceGAN direction fitting (``fit_direction``) on synthetic W with a known boundary, and the
attribute-edit effects read off classifier predictions (``attribute_edit_effects``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lsap.config import config_dir
from lsap.editing import fit_direction
from lsap.metrics.attribute_edits import attribute_edit_effects, per_attribute_abs_delta

pytestmark = pytest.mark.usefixtures("one_thread")

# lsap-directions' boundary settings as shipped (conf/directions.yaml fit.l2/balanced/max_iter)
_FIT = OmegaConf.load(Path(config_dir()) / "directions.yaml").fit
FIT = {k: _FIT[k] for k in ("l2", "balanced", "max_iter")}


def fit(w, labels, kind="binary", **settings):
    """``fit_direction`` with the shipped settings, ``settings`` replacing some."""
    return fit_direction(w, labels, kind=kind, **{**FIT, **settings})


def _anisotropic_w(n=4000, d=24, seed=0):
    """W-like codes [n, d] and a unit normal [d]: correlated (randomly rotated axes), off-centre,
    axis stds 0.08 .. 2.5 (variance condition number 1000, as the toy generator's W)."""
    g = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    w = (torch.randn(n, d, generator=g) * torch.logspace(-1.1, 0.4, d)) @ rotation.T + 2.0
    normal = torch.randn(d, generator=g)
    return w, normal / normal.norm(), g


def _cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_direction_is_the_known_boundary_normal(seed):
    w, normal, _ = _anisotropic_w(seed=seed)
    score = (w - 2.0) @ normal
    labels = (
        score > 0.3 * score.std()
    ).float()  # separable, off-centre hyperplane, ~38 % positives
    w_before = w.clone()
    d = fit(w, labels, kind="binary")
    assert d.shape == (w.shape[1],) and d.dtype == torch.float32
    assert abs(float(d.norm()) - 1) < 1e-5
    assert _cos(d, normal) > 0.99  # aligned, and pointing towards label 1
    assert torch.equal(w, w_before)
    # the naive class-mean difference is bent by the correlated covariance: the test can fail
    mean_diff = w[labels == 1].mean(0) - w[labels == 0].mean(0)
    assert _cos(mean_diff, normal) < 0.9
    # labels flipped: the direction flips
    assert _cos(fit(w, 1 - labels), normal) < -0.99


def test_strong_penalty_does_not_tilt_the_normal():
    """In whitened coordinates shrinkage pulls towards Sigma^-1 (mu_1 - mu_0), parallel to the
    normal for Gaussian W; a penalty on per-dimension scaled coefficients would not."""
    w, normal, _ = _anisotropic_w(seed=0)
    score = (w - 2.0) @ normal
    labels = (score > 0).float()
    assert _cos(fit(w, labels, l2=10.0), normal) > 0.97


def test_binary_direction_with_label_noise_and_a_rare_class():
    w, normal, g = _anisotropic_w(seed=1)
    score = (w - 2.0) @ normal
    noisy = (torch.rand(len(w), generator=g) < torch.sigmoid(4 * score / score.std())).float()
    assert _cos(fit(w, noisy), normal) > 0.95
    rare = (score > score.quantile(0.9)).float()  # 10 % positives, as glasses on the toy GAN
    assert float(rare.mean()) == pytest.approx(0.1, abs=0.01)
    assert _cos(fit(w, rare, balanced=True), normal) > 0.98
    rare_noisy = (
        torch.rand(len(w), generator=g)
        < torch.sigmoid(8 * (score - score.quantile(0.9)) / score.std())
    ).float()
    assert _cos(fit(w, rare_noisy, balanced=True), normal) > 0.93


def test_scalar_direction_is_the_regression_gradient():
    w, normal, g = _anisotropic_w(seed=2)
    score = (w - 2.0) @ normal
    y = 0.5 + 0.1 * score / score.std() + 0.02 * torch.randn(len(w), generator=g)
    d = fit(w, y, kind="scalar")
    assert _cos(d, normal) > 0.99 and abs(float(d.norm()) - 1) < 1e-5
    assert _cos(fit(w, -y, kind="scalar"), normal) < -0.99


def test_fit_direction_bad_inputs():
    w = torch.randn(10, 4)
    with pytest.raises(ValueError, match="kind must be"):
        fit(w, torch.ones(10), kind="svm")
    with pytest.raises(ValueError, match="only one class"):
        fit(w, torch.ones(10))
    with pytest.raises(ValueError, match="must be 0 or 1"):
        fit(w, torch.rand(10))
    with pytest.raises(ValueError, match=r"labels \[N\]"):
        fit(w, torch.ones(9))
    with pytest.raises(ValueError, match="constant"):
        fit(w, torch.full((10,), 0.3), kind="scalar")
    with pytest.raises(ValueError, match="finite"):
        fit(w.clone().fill_(math.nan), torch.ones(10), kind="scalar")


def test_attribute_edit_effects():
    binary = [True, True, False]  # two binary attributes, one scalar
    before = torch.tensor([[0.1, 0.9, 0.5], [0.2, 0.1, 0.5], [0.8, 0.9, 0.5], [0.3, 0.2, 0.5]])
    after = before.clone()
    after[:, 0] = torch.tensor([0.9, 0.4, 0.95, 0.7])  # 2 of the 3 negatives cross 0.5
    after[1, 1] = 0.6  # one flip of the other binary attribute
    after[:, 2] = 0.6  # the scalar moves by 0.1 everywhere
    e = attribute_edit_effects(before, after, target=0, binary=binary, factor=2.0)
    assert e["target_success"] == pytest.approx(2 / 3)
    assert e["target_delta"] == pytest.approx(float((after[:, 0] - before[:, 0]).mean()))
    assert e["others_flip_rate"] == pytest.approx(1 / 4)
    assert e["others_abs_delta"] == pytest.approx((0.5 / 4 + 0.1) / 2)
    assert e["others_max_abs_delta"] == pytest.approx(0.5 / 4)
    # the opposite sign asks positives to cross downwards: the only positive did not
    assert attribute_edit_effects(before, after, target=0, binary=binary, factor=-1)[
        "target_success"
    ] == pytest.approx(0.0)
    # a scalar target: moved by > scalar_step in the factor's direction
    s = attribute_edit_effects(before, after, target=2, binary=binary, factor=1.0, scalar_step=0.05)
    assert s["target_success"] == 1.0 and s["target_delta"] == pytest.approx(0.1)
    same = attribute_edit_effects(before, before, target=0, binary=binary, factor=0.0)
    assert math.isnan(same["target_success"]) and same["others_abs_delta"] == 0
    torch.testing.assert_close(per_attribute_abs_delta(before, before), torch.zeros(3))
    with pytest.raises(ValueError, match="equal"):
        attribute_edit_effects(before, after[:2], target=0, binary=binary, factor=1.0)


class _LinearAttributeStub:
    """A classifier stub reading W directly: two binary attributes along orthonormal axes
    (probabilities sigmoid(8 * projection)) and one scalar attribute, 0.5 + 0.1 * projection,
    along a third axis; predict(w [N, d]) -> [N, 3]."""

    binary = (True, True, False)

    def __init__(self, d=16, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.axes, _ = torch.linalg.qr(torch.randn(d, 3, generator=g))  # [d, 3], orthonormal

    def predict(self, w):
        proj = w @ self.axes  # [N, 3]
        return torch.stack(
            [torch.sigmoid(8 * proj[:, 0]), torch.sigmoid(8 * proj[:, 1]), 0.5 + 0.1 * proj[:, 2]],
            1,
        )


def test_edit_effects_of_a_fitted_direction_on_a_classifier_stub():
    stub = _LinearAttributeStub()
    g = torch.Generator().manual_seed(1)
    w_fit, w_eval = torch.randn(3000, 16, generator=g), torch.randn(500, 16, generator=g)
    d = fit(w_fit, (stub.predict(w_fit)[:, 0] > 0.5).float())
    assert _cos(d, stub.axes[:, 0]) > 0.99
    before = stub.predict(w_eval)
    e = attribute_edit_effects(
        before, stub.predict(w_eval + 4 * d), target=0, binary=stub.binary, factor=4.0
    )
    # the attribute moves: every held-out code with projection > -4 * cos crosses the boundary
    start = before[:, 0] < 0.5
    crossing = ((w_eval @ stub.axes[:, 0]) + 4 * float(d @ stub.axes[:, 0]) > 0) & start
    assert e["target_success"] == pytest.approx(float(crossing.sum() / start.sum()))
    assert e["target_success"] > 0.99 and e["target_delta"] > 0.3
    # the orthogonal attributes barely change, unlike an edit that mixes the first two axes
    assert e["others_flip_rate"] < 0.03 and e["others_max_abs_delta"] < 0.03
    mixed = (stub.axes[:, 0] + stub.axes[:, 1]) / 2**0.5
    m = attribute_edit_effects(
        before, stub.predict(w_eval + 4 * mixed), target=0, binary=stub.binary, factor=4.0
    )
    assert (
        m["others_flip_rate"] > 0.2 and m["others_max_abs_delta"] > 10 * e["others_max_abs_delta"]
    )
    # the opposite edit moves the target down
    back = attribute_edit_effects(
        before, stub.predict(w_eval - 4 * d), target=0, binary=stub.binary, factor=-4.0
    )
    assert back["target_delta"] < -0.3 and back["target_success"] > 0.99
