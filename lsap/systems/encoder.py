"""LSAP_E: encoder training as a LightningModule (e4e / pSp encoders, SNCD alignment).

Per step: ``w_plus = encoder(images)``, ``recon = G.synthesis(w_plus)`` resized to the input size
(pSp's face pool), loss = the shared named terms of ``lsap.losses`` (``l2``, ``lpips``, ``id``,
``delta_norm``, ``w_norm``, ``sncd``), with ``delta_norm`` and ``sncd`` restricted to the w+
indices of the current progressive stage. The stage follows the e4e schedule from the encoder
config (``progressive_start``, ``progressive_step_every``).

Optional (``loss.w_discriminator`` > 0, e4e's latent-code discriminator): the loss gains
``w_discriminator * mean_i softplus(-D(w_i))`` over the active w+ indices, and after every
optimiser step of the encoder, D takes one Adam step (plus the lazy R1) on codes of the mapping
network against the encoder's codes of that step (``lsap.training.latent_discriminator``).

What is trained and saved: the encoder (its weights, BatchNorm statistics, ``latent_avg``) in
``state_dict()``; the latent discriminator, when on, beside it in the checkpoint (its weights,
optimiser state and step count under ``'w_discriminator'``), outside DDP: its gradients are
averaged over ranks explicitly.
The generator, the loss networks (LPIPS, face recognition) and the S^N anchors are frozen and
kept out of the module tree: they follow the system's device but are not in ``state_dict()``,
the checkpoints, the optimiser or DDP. A checkpoint records the generator's sha256; loading it
with a config that builds another generator is an error. The progressive stage is stored too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from lsap.alignment import sncd
from lsap.alignment.anchors import anchors_from_config
from lsap.core.errors import CheckpointError
from lsap.core.precision import autocast_dtype
from lsap.core.rng import rng_states, set_rng_states
from lsap.inversion.encode import encoder_objective
from lsap.io import generator_from_config
from lsap.io.encoders import FORMAT_VERSION, LIGHTNING_KEY, LSAP_ENCODER_FORMAT, init_backbone
from lsap.losses import build_objective
from lsap.metrics.scorer import Scorer
from lsap.nets.encoder import PyramidEncoder, progressive_stage
from lsap.nets.latent_discriminator import LatentDiscriminator
from lsap.systems.encoder_settings import EncoderTrainingSettings
from lsap.training.latent_discriminator import LatentDiscriminatorTrainer, layer_codes

log = logging.getLogger(__name__)


class EncoderSystem(pl.LightningModule):
    """Train an image encoder into a frozen generator's W+ (LSAP_E; e4e / pSp with ``sncd: 0``).

    Its parts come from one typed object (``lsap.systems.encoder_settings``), whose plain form is
    saved as the hyper-parameters, so ``EncoderSystem.load_from_checkpoint(path)`` rebuilds the
    system; the generator is rebuilt from ``settings.generator`` and checked against the sha256
    in the checkpoint.

    Args:
        settings: the encoder, generator, loss, alignment, optimiser and noise settings
            (:class:`EncoderTrainingSettings`), or their plain form
            (:meth:`EncoderTrainingSettings.to_dict`, as a checkpoint stores it).
    """

    def __init__(self, settings: EncoderTrainingSettings | Mapping[str, Any]) -> None:
        super().__init__()
        from hydra.utils import instantiate

        if not isinstance(settings, EncoderTrainingSettings):
            settings = EncoderTrainingSettings.from_config(settings)
        self.settings = settings
        self.save_hyperparameters({"settings": settings.to_dict()})
        enc = settings.encoder
        G = generator_from_config(settings.generator, "cpu").eval().requires_grad_(False)
        net = instantiate(enc.net)(num_ws=G.num_ws, w_dim=G.w_dim)
        if not isinstance(net, PyramidEncoder):
            raise TypeError(f"encoder.net must build a PyramidEncoder, got {type(net).__name__}")
        if enc.backbone_weights:
            n = init_backbone(net, enc.backbone_weights)
            log.info("initialised %d backbone tensors from %s", n, enc.backbone_weights)
        with torch.no_grad():
            net.set_latent_avg(G.w_avg)  # codes start from the average latent
        self.encoder = net
        self.progressive_start = enc.progressive_start if net.progressive else None
        self.progressive_step_every = enc.progressive_step_every
        net.set_progressive_stage(self._stage_at(0))

        anchors = anchors_from_config(G, settings.alignment)
        objective = build_objective(
            settings.loss,
            generator=G,
            anchors=anchors,
            cache_dir=settings.alignment["cache_dir"],
        )
        lpips = objective.terms["lpips"] if "lpips" in objective.terms else None  # noqa: SIM401
        if lpips is None:  # the val/metric/lpips column exists whatever the loss weights
            from lsap.core.errors import WeightsUnavailableError
            from lsap.losses.perceptual import LPIPSLoss

            try:
                lpips = LPIPSLoss(**settings.lpips_options)
            except WeightsUnavailableError as e:
                raise e.under("loss.options") from e.__cause__
        # Frozen parts: outside the module tree (see the module docstring), moved by _apply.
        face = objective.terms["id"].embedder if "id" in objective.terms else None
        scorer = Scorer(
            ("mse", "lpips", "id")
            if face is not None
            else ("mse", "lpips"),  # id: cosine, higher = better
            lpips=lpips.eval(),
            face=face,
            crop=G.crop,  # the generator's valid region is what is scored
        )
        self._frozen = {"G": G, "objective": objective.eval(), "scorer": scorer}
        self._anchors = [t.clone() for t in anchors]
        self.noise_mode, self.val_noise_mode = settings.noise_mode, settings.val_noise_mode
        autocast_dtype(settings.autocast)  # a bad name fails at construction
        self.autocast, self.tf32 = settings.autocast, settings.tf32

        from torchmetrics import MeanMetric

        from lsap.alignment import SNCDMetric

        self.val_metrics = nn.ModuleDict({k: MeanMetric() for k in ("mse", "lpips", "id")})
        self.val_sncd = SNCDMetric(G.num_ws)
        self._reported_skips: set[str] = set()
        self._resume_rng: Any = None  # RNG states of a loaded checkpoint, until training resumes
        self._step_codes: Tensor | None = None  # the training step's detached codes, for D
        # e4e's latent discriminator, when loss.w_discriminator > 0
        self.w_discriminator_weight = settings.w_discriminator
        self._wd: LatentDiscriminatorTrainer | None = None
        if settings.w_discriminator_options is not None:
            self._wd = LatentDiscriminatorTrainer(G.w_dim, **settings.w_discriminator_options)

    # -- latent discriminator (e4e) ---------------------------------------------------------------
    @property
    def w_discriminator(self) -> LatentDiscriminator | None:
        """The latent-code discriminator, or None when ``loss.w_discriminator`` is 0."""
        return self._wd.D if self._wd is not None else None

    def on_fit_start(self) -> None:
        if self._wd is not None:
            self._wd.broadcast_from_rank0()

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        # the discriminator's step belongs to the same training step: taken here, it is in a
        # checkpoint saved at this batch's end (callbacks' on_train_batch_end runs before the
        # module's), so a resumed run does not skip it
        codes, self._step_codes = self._step_codes, None
        if self._wd is not None and codes is not None:
            self._discriminator_step(codes)

    def _discriminator_step(self, w_plus: Tensor) -> None:
        """One latent-discriminator step on the detached codes [N, num_ws, w_dim] just made."""
        fake = layer_codes(w_plus, self.loss_layers).reshape(-1, w_plus.shape[-1])
        with torch.no_grad():
            z = torch.randn(w_plus.shape[0], self.G.z_dim, device=w_plus.device)
            real = self.G.mapping(z)
        stats = self._wd.step(real, fake)
        self.log_dict(
            {f"train/w_discriminator/{k}": v for k, v in stats.items()},
            on_step=True,
            on_epoch=False,
            batch_size=w_plus.shape[0],
        )

    # -- frozen parts -----------------------------------------------------------------------------
    @property
    def G(self):
        return self._frozen["G"]

    @property
    def objective(self):
        return self._frozen["objective"]

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for m in self._frozen.values():
            m._apply(fn, *args, **kwargs)
        if self._wd is not None:  # moved in place: its optimiser keeps its parameters
            self._wd.apply_(fn, *args, **kwargs)
        self._anchors = [fn(a) for a in self._anchors]
        return self

    # -- progressive schedule ---------------------------------------------------------------------
    def _stage_at(self, step: int) -> int:
        return progressive_stage(
            step, self.encoder.num_ws, self.progressive_start, self.progressive_step_every
        )

    @property
    def loss_layers(self) -> list[int] | None:
        """w+ indices for delta_norm and sncd: the active stage (progressive e4e), else all."""
        return self.encoder.active_layers if self.encoder.progressive else None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._resume_rng is not None:  # first step after a resume: continue the RNG streams
            self._restore_rng(self._resume_rng)
            self._resume_rng = None
        self.encoder.set_progressive_stage(self._stage_at(self.global_step))

    # -- steps ------------------------------------------------------------------------------------
    def forward(self, images: Tensor) -> Tensor:
        """images [N, 3, S, S] in [-1, 1] -> w_plus [N, num_ws, w_dim]."""
        return self.encoder(images)

    def _shared_step(self, batch: Mapping[str, Any], stage: str) -> dict[str, Tensor] | None:
        self._report_skipped(batch)
        images = batch["images"]
        if images is None:  # every file of this batch was unreadable
            return None
        loss, values, w_plus, recon = encoder_objective(
            self.encoder,
            self.G,
            self.objective,
            images,
            noise_mode=self.noise_mode if stage == "train" else self.val_noise_mode,
            layers=self.loss_layers,
            crop=self.G.crop,
            autocast=self.autocast,
            tf32=self.tf32,
        )
        if self._wd is not None:  # e4e's adversarial term, D frozen here
            adv = self._wd.adversarial_loss(w_plus, self.loss_layers)
            values = {**values, "w_discriminator": adv}
            loss = loss + self.w_discriminator_weight * adv.mean()
        train = stage == "train"
        kw = {"batch_size": images.shape[0], "on_step": train, "on_epoch": not train}
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=not train, **kw)
        for name, v in values.items():
            self.log(f"{stage}/loss/{name}", v.mean(), sync_dist=not train, **kw)
        return {"loss": loss, "w_plus": w_plus.detach(), "reconstructions": recon.detach()}

    def training_step(self, batch: Mapping[str, Any], batch_idx: int):
        out = self._shared_step(batch, "train")
        self._step_codes = out["w_plus"] if isinstance(out, Mapping) else None  # for D's step
        self.log("train/progressive_stage", float(self.encoder.progressive_stage), on_step=True)
        return out

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int):
        out = self._shared_step(batch, "val")
        if out is None:
            return None
        # the one per-image definition (lsap.metrics.scorer): images scored as their PNGs
        values = self._frozen["scorer"].fidelity(batch["images"], out["reconstructions"])
        for name, v in values.items():
            metric = self.val_metrics[name]
            metric.update(v)
            # Lightning computes (synced over ranks) and resets the metric at epoch end
            self.log(f"val/metric/{name}", metric, on_step=False, on_epoch=True)
        _, per_layer = sncd(self.G, out["w_plus"], self._anchors)
        self.val_sncd.update(per_layer)
        return out

    def on_validation_epoch_end(self) -> None:
        if self.val_sncd.update_called:
            s = self.val_sncd.compute()  # synced over ranks: identical everywhere
            self.log("val/metric/sncd", s["total"], sync_dist=True)  # sum over the num_ws layers
            self.log("val/metric/sncd_layer_mean", s["mean"], sync_dist=True)
        self.val_sncd.reset()

    def configure_optimizers(self):
        from hydra.utils import instantiate

        return instantiate(self.settings.optimizer)(self.encoder.parameters())

    def _report_skipped(self, batch: Mapping[str, Any]) -> None:
        for _, path, reason in batch.get("skipped") or ():
            if path not in self._reported_skips:
                self._reported_skips.add(path)
                log.warning("skipping %s: %s", path, reason)

    # -- checkpoints ------------------------------------------------------------------------------
    def _gather_rng(self) -> list[dict[str, Any]]:
        """Every rank's RNG states, by rank (checkpoints are dumped on every rank)."""
        import torch.distributed as dist

        states = rng_states()
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return [states]
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, states)
        return parts

    def _restore_rng(self, saved: Any) -> None:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        if not isinstance(saved, list) or len(saved) != world:
            log.warning(
                "the checkpoint's RNG states are for %s processes, this run has %d: random "
                "numbers (generator noise) will differ from an uninterrupted run",
                len(saved) if isinstance(saved, list) else "unknown",
                world,
            )
            return
        set_rng_states(saved[rank])

    # -- checkpoints (header) ---------------------------------------------------------------------
    def encoder_header(self) -> dict[str, Any]:
        """What lsap.load_encoder needs besides the weights (stored under 'lsap_encoder')."""
        from lsap.core.version import __version__

        return {
            "format": LSAP_ENCODER_FORMAT,
            "format_version": FORMAT_VERSION,
            "config": self.encoder.config(),
            "generator_sha256": self.G.sha256,
            "crop": self.G.crop.box if self.G.crop is not None else None,  # its valid region
            "progressive_stage": self.encoder.progressive_stage,
            "lsap_version": __version__,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[LIGHTNING_KEY] = self.encoder_header()
        checkpoint["rng_states"] = self._gather_rng()
        if self._wd is not None:
            checkpoint["w_discriminator"] = self._wd.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        head = checkpoint.get(LIGHTNING_KEY)
        if not isinstance(head, Mapping):
            raise CheckpointError(
                "<checkpoint>", f"not an lsap-train checkpoint (no '{LIGHTNING_KEY}')"
            )
        if head.get("generator_sha256") != self.G.sha256:
            raise CheckpointError(
                "<checkpoint>",
                f"trained with generator sha256 {head.get('generator_sha256')}, but the generator "
                f"config builds {self.G.sha256}",
            )
        self.encoder.set_progressive_stage(int(head["progressive_stage"]))
        # restored when training resumes (on_train_batch_start), not now: loading the loaders
        # in between draws random numbers that the uninterrupted run drew before the save
        self._resume_rng = checkpoint.get("rng_states")
        saved = checkpoint.get("w_discriminator")
        if self._wd is not None and saved is not None:
            self._wd.load_state_dict(saved)
        elif self._wd is not None:
            log.warning("the checkpoint has no latent discriminator: it starts untrained")
