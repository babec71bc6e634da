"""Training maths of e4e's latent-code discriminator (``lsap.nets.LatentDiscriminator``).

- :class:`LatentPool`: a history of past codes (the image pool of Shrivastava et al. 2017, as e4e
  uses it with 50 codes): each queried code is, with probability 1/2 once the pool is full,
  swapped for a random stored one, so the discriminator also sees codes of earlier steps.
- :func:`encoder_adversarial_loss`: the encoder's term, per sample: mean over the given w+
  indices of ``softplus(-D(w_i))`` (non-saturating), gradients into the codes only.
- :class:`LatentDiscriminatorTrainer`: D with its optimiser, pools and step count, one object
  (``state_dict``, ``step``) that the encoder job holds.
- :func:`discriminator_step`: one Adam step of D on mapped codes (real) against the encoder's
  (fake), with the lazy R1 penalty on the reals every ``r1_interval`` steps. Under
  ``torch.distributed`` the gradients are averaged over ranks, so every rank keeps the same D.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lsap.nets.latent_discriminator import LatentDiscriminator
from lsap.training.gan_losses import d_logistic_loss, r1_penalty


class LatentPool:
    """A pool of up to ``size`` past codes [w_dim] (0 = no pool: queries come back unchanged).

    Args:
        size: codes kept.
        seed: seeds the pool's own generator (the global random state is not touched).
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = int(size)
        self.codes: list[Tensor] = []
        self._gen = torch.Generator().manual_seed(seed)

    def query(self, w: Tensor) -> Tensor:
        """w [N, w_dim] -> [N, w_dim]: new codes, some swapped for stored ones (detached)."""
        w = w.detach()
        if self.size <= 0:
            return w
        out = []
        for code in w:
            if len(self.codes) < self.size:
                self.codes.append(code.clone())
                out.append(code)
            elif torch.rand((), generator=self._gen) < 0.5:
                i = int(torch.randint(len(self.codes), (), generator=self._gen))
                out.append(self.codes[i].to(code.device))
                self.codes[i] = code.clone()
            else:
                out.append(code)
        return torch.stack(out)


def layer_codes(w_plus: Tensor, layers: Sequence[int] | None) -> Tensor:
    """w_plus [N, num_ws, w_dim] -> the codes of ``layers`` (all when None) [N, k, w_dim]."""
    if w_plus.ndim != 3:
        raise ValueError(f"w_plus must be [N, num_ws, w_dim], got {tuple(w_plus.shape)}")
    return w_plus if layers is None else w_plus[:, list(layers)]


def encoder_adversarial_loss(
    discriminator: torch.nn.Module, w_plus: Tensor, layers: Sequence[int] | None = None
) -> Tensor:
    """Per-sample ``mean_i softplus(-D(w_plus[:, i]))`` over ``layers`` -> [N].

    D is used as it is (the caller freezes its parameters); the value is log 2 at logit 0 and
    falls as D takes the codes for mapped ones.
    """
    codes = layer_codes(w_plus, layers)
    n, k, d = codes.shape
    logits = discriminator(codes.reshape(n * k, d).float()).reshape(n, k)
    return torch.nn.functional.softplus(-logits).mean(1)


def _average_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= dist.get_world_size()


def discriminator_step(
    discriminator: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    real_w: Tensor,
    fake_w: Tensor,
    *,
    step: int,
    r1_gamma: float = 10.0,
    r1_interval: int = 16,
) -> dict[str, float]:
    """One update of D: ``d_logistic_loss(D(real), D(fake))``, then every ``r1_interval`` steps
    (``step % r1_interval == 0``) ``r1_gamma / 2 * r1_interval * R1(real)`` with another step.

    Args:
        real_w: [M, w_dim] codes of the mapping network (detached).
        fake_w: [K, w_dim] the encoder's codes (detached).
        step: the caller's step counter (decides the lazy R1).

    Returns:
        ``{loss, real, fake}`` (D's loss and mean logits before the step) and ``r1`` when applied.
    """
    params = [p for p in discriminator.parameters() if p.requires_grad]
    real_w, fake_w = real_w.detach().float(), fake_w.detach().float()
    real_logits, fake_logits = discriminator(real_w), discriminator(fake_w)
    loss = d_logistic_loss(real_logits, fake_logits)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _average_gradients(params)
    optimizer.step()
    stats = {
        "loss": float(loss.detach()),
        "real": float(real_logits.detach().mean()),
        "fake": float(fake_logits.detach().mean()),
    }
    if r1_gamma > 0 and r1_interval > 0 and step % r1_interval == 0:
        real = real_w.clone().requires_grad_(True)
        r1 = r1_penalty(discriminator(real), real)
        optimizer.zero_grad(set_to_none=True)
        (r1 * (r1_gamma / 2) * r1_interval).backward()
        _average_gradients(params)
        optimizer.step()
        stats["r1"] = float(r1)
    optimizer.zero_grad(set_to_none=True)
    return stats


class LatentDiscriminatorTrainer:
    """e4e's latent-code discriminator and its own training, as one object an encoder job holds:
    D (``lsap.nets.LatentDiscriminator``), its Adam, the real and fake code pools, and the step
    count that schedules the lazy R1.

    D's parameters are frozen (``requires_grad=False``) except inside :meth:`step`, so the
    encoder's adversarial term (:meth:`adversarial_loss`) sends gradients into the codes only.

    Args:
        w_dim: code size.
        num_layers, lr, betas, r1_gamma, r1_interval, pool_size: the settings of
            ``loss.options.w_discriminator`` (``conf/loss/lsap_e.yaml``).
    """

    def __init__(
        self,
        w_dim: int,
        *,
        num_layers: int,
        lr: float,
        betas: Sequence[float],
        r1_gamma: float,
        r1_interval: int,
        pool_size: int,
    ) -> None:
        self.D = LatentDiscriminator(w_dim, int(num_layers))
        self.optimizer = torch.optim.Adam(
            self.D.parameters(), lr=float(lr), betas=tuple(float(b) for b in betas)
        )
        self.real_pool = LatentPool(int(pool_size), seed=1)
        self.fake_pool = LatentPool(int(pool_size), seed=2)
        self.r1_gamma, self.r1_interval = float(r1_gamma), int(r1_interval)
        self.steps = 0
        self.D.requires_grad_(False)  # trained only in step()

    # the keyword settings (loss.options.w_discriminator; checked by lsap.systems.encoder_settings)
    OPTIONS = ("num_layers", "lr", "betas", "r1_gamma", "r1_interval", "pool_size")

    def adversarial_loss(self, w_plus: Tensor, layers: Sequence[int] | None = None) -> Tensor:
        """The encoder's term per sample [N] (:func:`encoder_adversarial_loss`)."""
        return encoder_adversarial_loss(self.D, w_plus, layers)

    def step(self, real_w: Tensor, fake_w: Tensor) -> dict[str, float]:
        """One update of D on mapped codes ``real_w`` [M, w_dim] against the encoder's ``fake_w``
        [K, w_dim], each mixed with its pool (:func:`discriminator_step`); counts the step."""
        self.D.requires_grad_(True)
        try:
            stats = discriminator_step(
                self.D,
                self.optimizer,
                self.real_pool.query(real_w),
                self.fake_pool.query(fake_w),
                step=self.steps,
                r1_gamma=self.r1_gamma,
                r1_interval=self.r1_interval,
            )
        finally:
            self.D.requires_grad_(False)
        self.steps += 1
        return stats

    def broadcast_from_rank0(self) -> None:
        """Under ``torch.distributed``: every rank starts from rank 0's D."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for p in self.D.parameters():
                dist.broadcast(p.data, src=0)

    def state_dict(self) -> dict[str, Any]:
        """``{state_dict, optimizer, steps}`` (what an encoder checkpoint stores)."""
        return {
            "state_dict": self.D.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.D.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])

    def apply_(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Apply a ``Module._apply`` function to D in place (moves it with the encoder's system;
        the optimiser keeps pointing at the same parameters)."""
        self.D._apply(fn, *args, **kwargs)
