"""Ranger = torch RAdam + Lookahead (+ gradient centralisation), and its state round trip."""

from __future__ import annotations

import copy

import torch

from lsap.optim import Ranger


def _grads(n, shape=(4, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(n)]


def _run(opt, p, grads):
    for g in grads:
        opt.zero_grad()
        p.grad = g.clone()
        opt.step()


def test_is_radam_between_syncs_and_lookahead_at_k():
    init = torch.randn(4, 3)
    fast = torch.nn.Parameter(init.clone())
    ranger = torch.nn.Parameter(init.clone())
    kw = {"lr": 0.05, "betas": (0.95, 0.999), "eps": 1e-5}
    radam = torch.optim.RAdam([fast], **kw, decoupled_weight_decay=True)
    opt = Ranger([ranger], **kw, alpha=0.5, k=3, gc=False)
    slow = init.clone()
    for step, g in enumerate(_grads(9), start=1):
        _run(radam, fast, [g])
        _run(opt, ranger, [g])
        if step % 3:  # between synchronisations Ranger is RAdam
            torch.testing.assert_close(ranger, fast, rtol=0, atol=0)
            continue
        # every k steps: slow += alpha * (fast - slow), and the weights jump to it
        slow = slow + 0.5 * (fast.detach() - slow)
        torch.testing.assert_close(ranger.detach(), slow)
        torch.testing.assert_close(opt.state[ranger]["slow_buffer"], slow)
        with torch.no_grad():
            fast.copy_(ranger)  # RAdam continues from the synchronised weights


def test_first_steps_equal_radam():
    init = torch.randn(5, 2)
    a, b = torch.nn.Parameter(init.clone()), torch.nn.Parameter(init.clone())
    radam = torch.optim.RAdam([a], lr=0.01, betas=(0.95, 0.999), eps=1e-5)
    ranger = Ranger([b], lr=0.01, betas=(0.95, 0.999), eps=1e-5, k=6, gc=False)
    grads = _grads(5, (5, 2), seed=1)
    _run(radam, a, grads)
    _run(ranger, b, grads)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_gradient_centralisation():
    w = torch.nn.Parameter(torch.randn(6, 4, 3, 3))
    bias = torch.nn.Parameter(torch.randn(6))
    opt = Ranger([w, bias], lr=0.01, gc=True)
    gw, gb = torch.randn(6, 4, 3, 3), torch.randn(6)
    w.grad, bias.grad = gw.clone(), gb.clone()
    opt.step()
    torch.testing.assert_close(w.grad, gw - gw.mean(dim=(1, 2, 3), keepdim=True))
    assert torch.equal(bias.grad, gb)  # 1-D tensors are left alone
    conv_only = Ranger([w], lr=0.01, gc=True, gc_conv_only=True)
    lin = torch.nn.Parameter(torch.randn(3, 2))
    conv_only.add_param_group({"params": [lin]})
    lin.grad = torch.randn(3, 2)
    before = lin.grad.clone()
    conv_only.step()
    assert torch.equal(lin.grad, before)


def test_state_dict_round_trip_resumes_exactly():
    init = torch.randn(4, 3)
    a = torch.nn.Parameter(init.clone())
    opt_a = Ranger([a], lr=0.02, k=4)
    grads = _grads(12, seed=2)
    _run(opt_a, a, grads[:7])
    saved_param, saved_state = a.detach().clone(), copy.deepcopy(opt_a.state_dict())
    _run(opt_a, a, grads[7:])

    b = torch.nn.Parameter(saved_param)
    opt_b = Ranger([b], lr=0.5, k=99)  # hyper-parameters come back from the state
    opt_b.load_state_dict(saved_state)
    assert opt_b.param_groups[0]["lookahead_k"] == 4
    _run(opt_b, b, grads[7:])
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_minimises_a_quadratic():
    target = torch.randn(8, 8)
    w = torch.nn.Parameter(torch.zeros(8, 8))
    opt = Ranger([w], lr=0.1, gc=False)
    for _ in range(300):
        opt.zero_grad()
        loss = (w - target).square().sum()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-2 * target.square().sum().item()
