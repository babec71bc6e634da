"""Ranger: torch's RAdam with Lookahead and gradient centralisation (the pSp/e4e/LSAP optimiser).

- RAdam (torch.optim.RAdam, rectification threshold 5, decoupled weight decay);
- gradient centralisation: before the update, every gradient with more than ``gc_min_dim``
  dimensions has its mean over all but the first dimension removed (convs and linear layers);
- Lookahead: every ``k`` steps of a parameter, its slow copy moves ``alpha`` of the way to the
  fast weights and the fast weights are reset to it.

The slow weights live in the optimiser state (``state[p]['slow_buffer']``), so ``state_dict()``
round-trips everything needed to resume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


class Ranger(torch.optim.RAdam):
    """RAdam + Lookahead (+ gradient centralisation).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (1e-4 for pSp/e4e/LSAP encoders).
        betas: RAdam's (beta1, beta2); Ranger uses (0.95, 0.999).
        eps: added to the denominator (Ranger: 1e-5).
        weight_decay: decoupled weight decay (0 = off).
        alpha: Lookahead step of the slow weights towards the fast ones.
        k: Lookahead synchronisation period in steps.
        gc: gradient centralisation on/off.
        gc_conv_only: centralise only gradients with > 3 dims (convs), not linear layers.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: Sequence[float] = (0.95, 0.999),
        eps: float = 1e-5,
        weight_decay: float = 0.0,
        *,
        alpha: float = 0.5,
        k: int = 6,
        gc: bool = True,
        gc_conv_only: bool = False,
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Lookahead alpha must be in [0, 1], got {alpha}")
        if k < 1:
            raise ValueError(f"Lookahead k must be >= 1, got {k}")
        super().__init__(
            params,
            lr=lr,
            betas=(float(betas[0]), float(betas[1])),
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=True,
        )
        extra = {
            "lookahead_alpha": float(alpha),
            "lookahead_k": int(k),
            "gc_min_dim": (3 if gc_conv_only else 1) if gc else None,  # None = no centralisation
        }
        self.defaults.update(extra)  # groups added later get them too
        for group in self.param_groups:
            for key, value in extra.items():
                group.setdefault(key, value)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        first_step = {}
        for group in self.param_groups:
            min_dim = group["gc_min_dim"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if min_dim is not None and p.grad.dim() > min_dim:
                    p.grad.sub_(p.grad.mean(dim=tuple(range(1, p.grad.dim())), keepdim=True))
                if "slow_buffer" not in self.state[p]:
                    first_step[id(p)] = p.detach().clone()  # slow weights start at the initial ones
        super().step()
        for group in self.param_groups:
            alpha, k = group["lookahead_alpha"], group["lookahead_k"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if id(p) in first_step:
                    state["slow_buffer"] = first_step[id(p)]
                if int(state["step"]) % k == 0:
                    slow = state["slow_buffer"]
                    slow.add_(p.detach() - slow, alpha=alpha)
                    p.copy_(slow)
        return loss
