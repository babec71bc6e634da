"""The speed options of the LSAP_O loop that change how it runs, not what it computes: the
static-shape loop (``inversion.cuda_graphs``; on CPU its steps run eagerly) and ``torch.compile``
of the step (``inversion.compile``). Both must give the regular loop's codes."""

from __future__ import annotations

import pytest
import torch
from conf_entries import conf_group, inversion_kwargs
from torch.utils._python_dispatch import TorchDispatchMode

import lsap.inversion.optimize as optimize_module
from lsap.alignment import compute_anchors
from lsap.inversion import optimize_latents
from lsap.inversion.settings import InversionSettings
from lsap.inversion.static import StaticAdam
from lsap.losses import build_objective

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def problem(tiny_G):
    torch.manual_seed(0)
    with torch.no_grad():
        targets = tiny_G.synthesis(tiny_G.mapping(torch.randn(2, tiny_G.z_dim)))
    anchors = compute_anchors(tiny_G, 200, 0)
    objective = build_objective(
        conf_group("loss", "lsap_o", l2=1.0, lpips=0.0, sncd=0.5, noise_reg=1e3),
        generator=tiny_G,
        anchors=anchors,
    )
    return targets, objective


def _run(G, problem, space="w_plus", steps=20, **options):
    targets, objective = problem
    # w_std > 0: latent noise on for the first 75 % of the steps, off after
    kwargs = inversion_kwargs(G, space=space, steps=steps, lr=0.05, w_std=0.5, **options)
    return optimize_latents(G, targets, objective, seeds=[3, 4], **kwargs)


def _assert_same(a, b, G, rtol):
    rel = (a.w_plus - b.w_plus).norm() / (b.w_plus - G.w_avg).norm()
    assert rel <= rtol, rel
    for x, y in zip(a.noise, b.noise, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=rtol * 10)
    torch.testing.assert_close(a.history["loss"], b.history["loss"], rtol=rtol, atol=0)


@pytest.mark.parametrize("space", ["w_plus", "w"])
def test_static_loop_gives_the_regular_loops_codes(tiny_G, problem, space):
    ref = _run(tiny_G, problem, space)
    static = _run(tiny_G, problem, space, cuda_graphs=True)
    # stated tolerance: 1e-6 of the code change (measured: bit-identical on CPU, the static Adam
    # does torch.optim.Adam's arithmetic with the same float64 scalars)
    _assert_same(static, ref, tiny_G, 1e-6)
    assert (ref.w_plus - tiny_G.w_avg).norm() > 0.1  # it optimised


class _HostSyncs(TorchDispatchMode):
    """Records ops that need the host to read a tensor's value or a data-dependent shape."""

    SYNCS = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "item")

    def __init__(self):
        super().__init__()
        self.ops, self.syncs = set(), []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        self.ops.add(name)
        if name in self.SYNCS:
            self.syncs.append(name)
        return func(*args, **(kwargs or {}))


def test_static_step_never_waits_for_the_host(tiny_G, problem, monkeypatch):
    """What CUDA graphs need: inside the step no .item(), no bool(tensor), no data-dependent shape
    (recorded on CPU at the dispatcher, forward and backward)."""
    modes = []

    def record(step, state):
        def run():
            with _HostSyncs() as mode:
                out = step()
            modes.append(mode)
            return out

        return run

    monkeypatch.setattr(optimize_module, "capture", record)
    _run(tiny_G, problem, steps=3, cuda_graphs=True)
    assert len(modes) == 3
    assert {"convolution_backward", "addcmul_"} <= modes[0].ops  # the whole step was seen
    assert all(not m.syncs for m in modes), [m.syncs for m in modes]
    with _HostSyncs() as probe:  # the detector can fail
        float(torch.ones(1).sum())
    assert probe.syncs


def test_static_adam_is_torch_adam():
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(5, 3, generator=torch.Generator().manual_seed(1)) for _ in range(2))
    ref = torch.optim.Adam([a], lr=0.1, betas=(0.9, 0.99))
    static = StaticAdam([b], lr=0.1, betas=(0.9, 0.99))
    for i in range(20):
        grad = torch.randn(5, 3, generator=g)
        for group in ref.param_groups:
            group["lr"] = 0.1 / (i + 1)
        static.set_lr(0.1 / (i + 1))
        a.grad = grad
        ref.step()
        static.step([grad])
    torch.testing.assert_close(b, a, rtol=0, atol=0)
    assert float(static.count) == 20


def test_compiled_step_gives_the_same_codes(tiny_G, problem):
    ref = _run(tiny_G, problem, steps=4)
    # aot_eager: Dynamo capture and AOTAutograd's forward/backward split, run eagerly (the real
    # compiler's numerics are the slow test below); stated tolerance 1e-6 (measured: identical)
    _assert_same(_run(tiny_G, problem, steps=4, compile="aot_eager"), ref, tiny_G, 1e-6)


@pytest.mark.slow
def test_inductor_compiled_step_stays_within_tolerance(tiny_G, problem):
    """The real compiler (C++ kernels on CPU; minutes: slow). Stated tolerance 1e-4 of the code
    change (measured 7e-5 after 40 steps W+; fused kernels round differently)."""
    ref = _run(tiny_G, problem, steps=10)
    _assert_same(_run(tiny_G, problem, steps=10, compile="inductor"), ref, tiny_G, 1e-4)


def test_settings_carry_the_options_and_refuse_unknown_backends(tiny_G):
    base = conf_group("inversion", "w_plus", steps=1, w_std_samples=10, w_std_seed=0)
    kw = InversionSettings.from_config(base).optimize_kwargs(tiny_G, 0.0)
    assert kw["compile"] is None and kw["cuda_graphs"] is False
    kw = InversionSettings.from_config(
        {**base, "compile": "inductor", "cuda_graphs": True}
    ).optimize_kwargs(tiny_G, 0.0)
    assert kw["compile"] == "inductor" and kw["cuda_graphs"] is True
    with pytest.raises(ValueError, match="compile backend must be one of"):
        InversionSettings.from_config({**base, "compile": "tensorrt"})
