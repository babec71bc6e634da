"""The pieces of a static-shape optimisation step that a CUDA graph can capture
(``inversion.cuda_graphs``, off by default).

A CUDA graph replays a fixed sequence of kernels on fixed memory: every tensor a step reads or
writes must live at the same address on every step, and nothing inside the step may wait for the
host (no ``.item()``, no Python branch on a tensor's value, no host-to-device copy). So:

- :class:`StaticAdam` is Adam with its whole state (moments, step count) and its learning rate in
  tensors on the parameters' device, updated in place; ``torch.optim.Adam(capturable=True)`` does
  the same but refuses CPU tensors, and the CPU tests must run the very code that is captured.
- the learning rate, the latent-noise strength and the latent noise itself are written into
  their buffers *between* steps (``fill_`` / ``copy_``), outside the captured step;
- :func:`capture` records one step on CUDA (after warm-up steps on a side stream, whose effect on
  the optimised state is undone) and returns a replay function; on any other device the step
  simply runs eagerly, which is how CPU tests check that the static loop computes what the regular
  loop computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


class StaticAdam:
    """Adam (Kingma & Ba; ``torch.optim.Adam``'s update, no weight decay) with tensor state.

    Args:
        params: the optimised tensors (updated in place by :meth:`step`).
        lr: initial learning rate; change it between steps with :meth:`set_lr`.
        betas, eps: as ``torch.optim.Adam``.
    """

    def __init__(
        self,
        params: Sequence[Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        device = self.params[0].device
        # 0-d float64 tensors, as torch.optim.Adam's Python floats: lr set between steps, the
        # step count and bias corrections kept on the device (no host read inside a step)
        self.lr = torch.tensor(float(lr), device=device, dtype=torch.float64)
        self.count = torch.zeros((), device=device, dtype=torch.float64)
        self.betas, self.eps = betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def set_lr(self, lr: float) -> None:
        """Set the learning rate for the next step (in place: a captured step sees it)."""
        self.lr.fill_(float(lr))

    def state(self) -> list[Tensor]:
        """Every tensor :meth:`step` changes (parameters, moments, step count)."""
        return [*self.params, *self.exp_avg, *self.exp_avg_sq, self.count]

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        """One Adam update of every parameter with ``grads`` (same shapes), all on the device."""
        beta1, beta2 = self.betas
        self.count.add_(1)
        bias1 = 1 - beta1**self.count  # 0-d tensors: no host sync
        bias2_sqrt = (1 - beta2**self.count).sqrt()
        step_size = self.lr / bias1
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            p.sub_(step_size * m / denom)


def capture(
    step: Callable[[], dict[str, Tensor]], state: Sequence[Tensor], warmup: int = 3
) -> Callable[[], dict[str, Tensor]]:
    """A function that runs ``step`` as one replayed CUDA graph, or ``step`` itself off CUDA.

    Args:
        step: one optimisation step on static tensors, returning ``{name: tensor}`` (after a
            replay the returned tensors hold that step's values; copy them before the next).
        state: every tensor ``step`` changes; the warm-up steps' changes to them are undone, so
            the first replay is the optimisation's first step.
        warmup: eager steps on a side stream before capture (cuBLAS/cuDNN workspaces, autograd).
    """
    device = state[0].device
    if device.type != "cuda":
        return step
    saved = [t.detach().clone() for t in state]
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    with torch.no_grad():
        for t, s in zip(state, saved, strict=True):
            t.copy_(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = step()

    def replay() -> dict[str, Tensor]:
        graph.replay()
        return outputs

    return replay
