"""StyleGAN2 training as a LightningModule with manual optimisation (wiring only).

One training step on a batch of N real images, in this order:

1. G: ``g_nonsaturating_loss(D(G(z)))`` (style mixing with ``style_mixing_prob``), Adam step on G;
   ``w_avg`` tracks the mapped batches (``w_avg <- lerp(mean w, w_avg, w_avg_beta)``);
2. D: ``d_logistic_loss(D(x), D(G(z)))`` on the same (detached) fakes, Adam step on D;
3. every ``r1_interval`` steps (lazy regularisation): ``r1_gamma / 2 * r1_interval * R1`` on the
   reals, another Adam step on D;
4. ``G_ema <- beta * G_ema + (1 - beta) * G`` with ``beta = ema_beta(N, ema_kimg, seen, rampup)``.

Lazy regularisation rescales Adam as StyleGAN2 does: with ``c = interval / (interval + 1)`` the
learning rate is ``lr * c`` and the betas ``beta ** c`` (G has no regulariser here, so c = 1 for G).
The maths lives in ``lsap.training``; the networks in ``lsap.nets``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from lsap.nets.stylegan2 import Generator, GeneratorConfig
from lsap.toy.discriminator import Discriminator, DiscriminatorConfig
from lsap.toy.ema import ema_beta, update_ema
from lsap.training.gan_losses import d_logistic_loss, g_nonsaturating_loss, r1_penalty


class GANSystem(pl.LightningModule):
    """Trains ``G`` and ``D`` adversarially and keeps ``G_ema``, the exported generator.

    Args:
        generator: GeneratorConfig fields (``conf/generator/*.yaml`` ``arch``).
        discriminator: DiscriminatorConfig fields; ``resolution`` defaults to the generator's.
        lr: Adam learning rate of G and D (before the lazy-regularisation correction).
        betas: Adam betas.
        r1_gamma: R1 weight gamma (the penalty is ``gamma / 2 * R1``); 0 = off.
        r1_interval: apply R1 every this many steps (lazy regularisation).
        style_mixing_prob: probability that a batch mixes two codes at a random layer.
        ema_kimg: half-life of ``G_ema`` in thousands of images.
        ema_rampup: cap the half-life at ``ema_rampup * seen images`` (None = no ramp-up).
        w_avg_beta: decay of the running ``w_avg``.
        max_images: stop after this many real images (``trainer.should_stop``); None = never.
        seed: initialises G and D (and their noise buffers) reproducibly.
    """

    def __init__(
        self,
        generator: Mapping[str, Any],
        discriminator: Mapping[str, Any] | None = None,
        *,
        lr: float = 0.0025,
        betas: Sequence[float] = (0.0, 0.99),
        r1_gamma: float = 0.05,
        r1_interval: int = 16,
        style_mixing_prob: float = 0.9,
        ema_kimg: float = 10.0,
        ema_rampup: float | None = 0.05,
        w_avg_beta: float = 0.995,
        max_images: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        g_cfg = GeneratorConfig.from_dict(dict(generator))
        d_kw = {"resolution": g_cfg.resolution, **dict(discriminator or {})}
        d_cfg = DiscriminatorConfig(**d_kw)
        if d_cfg.resolution != g_cfg.resolution:
            raise ValueError(f"D resolution {d_cfg.resolution} != G resolution {g_cfg.resolution}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.G = Generator(g_cfg)
            self.D = Discriminator(d_cfg)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.register_buffer("seen_images", torch.zeros((), dtype=torch.long))
        self.register_buffer("reg_steps", torch.zeros((), dtype=torch.long))

    # -- optimisers ----------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        b1, b2 = (float(b) for b in hp.betas)
        c = hp.r1_interval / (hp.r1_interval + 1) if hp.r1_gamma > 0 else 1.0
        opt_g = torch.optim.Adam(self.G.parameters(), lr=hp.lr, betas=(b1, b2), eps=1e-8)
        opt_d = torch.optim.Adam(self.D.parameters(), lr=hp.lr * c, betas=(b1**c, b2**c), eps=1e-8)
        return [opt_g, opt_d]

    # -- sampling ------------------------------------------------------------------------------
    def sample_w_plus(self, n: int, *, track_w_avg: bool = False) -> Tensor:
        """Fresh training codes w_plus [n, num_ws, w_dim], style-mixed with ``style_mixing_prob``."""
        G = self.G
        z = torch.randn(n, G.z_dim, device=self.device)
        w = G.mapping(z)  # [n, w_dim]
        if track_w_avg:
            with torch.no_grad():
                G.mapping.w_avg.copy_(
                    w.detach().mean(0).lerp(G.mapping.w_avg, self.hparams.w_avg_beta)
                )
        w_plus = w.unsqueeze(1).repeat(1, G.num_ws, 1)
        if self.hparams.style_mixing_prob > 0 and torch.rand(()) < self.hparams.style_mixing_prob:
            cutoff = int(torch.randint(1, G.num_ws, ()))
            w2 = G.mapping(torch.randn(n, G.z_dim, device=self.device))
            w_plus[:, cutoff:] = w2.unsqueeze(1)
        return w_plus

    # -- training ------------------------------------------------------------------------------
    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        hp = self.hparams
        real = batch["images"]  # [N, 3, R, R] in [-1, 1]
        N = real.shape[0]
        opt_g, opt_d = self.optimizers()

        # 1. generator
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        fake = self.G.synthesis(self.sample_w_plus(N, track_w_avg=True), noise_mode="random")
        fake_logits = self.D(fake)
        loss_g = g_nonsaturating_loss(fake_logits)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()

        # 2. discriminator, on the same fakes (from G before its update)
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        real_logits = self.D(real)
        fake_logits_d = self.D(fake.detach())
        loss_d = d_logistic_loss(real_logits, fake_logits_d)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()

        # 3. lazy R1 on the reals
        step = int(self.reg_steps)
        self.reg_steps += 1
        if hp.r1_gamma > 0 and step % hp.r1_interval == 0:
            real_ = real.detach().requires_grad_(True)
            r1 = r1_penalty(self.D(real_), real_)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(r1 * (hp.r1_gamma / 2) * hp.r1_interval)
            opt_d.step()
            self.log("train/loss/r1", r1.detach(), on_step=True, prog_bar=False)
        self.D.requires_grad_(False)

        # 4. weight average
        self.seen_images += N
        beta = ema_beta(N, hp.ema_kimg, int(self.seen_images), hp.ema_rampup)
        update_ema(self.G_ema, self.G, beta)

        self.log_dict(
            {
                "train/loss/g": loss_g.detach(),
                "train/loss/d": loss_d.detach(),
                "train/score/real": real_logits.detach().mean(),
                "train/score/fake": fake_logits_d.detach().mean(),
                "train/kimg": float(self.seen_images) / 1000.0,
            },
            on_step=True,
            prog_bar=True,
        )
        if hp.max_images is not None and int(self.seen_images) >= hp.max_images:
            self.trainer.should_stop = True

    @torch.no_grad()
    def sample(self, z: Tensor, *, ema: bool = True) -> Tensor:
        """Images [N, 3, R, R] ~[-1, 1] of ``G_ema`` (or ``G``) for z [N, z_dim], const noise."""
        G = self.G_ema if ema else self.G
        return G.synthesis(G.mapping(z), noise_mode="const")
