"""The inversion LightningModule: ``predict_step`` runs ``optimize_latents`` on its batch.

Wiring only: the optimisation is :func:`lsap.inversion.optimize_latents`, the objective
``lsap.losses.build_objective``, the per-image metrics :class:`ReconstructionMetrics`. Writing the
results is the job of :class:`lsap.systems.writer.InversionWriter`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from lsap.alignment.anchors import compute_anchors
from lsap.inversion.optimize import latent_std, optimize_latents
from lsap.inversion.report import ReconstructionMetrics
from lsap.inversion.schedules import Schedule
from lsap.io.codes import load_codes
from lsap.io.errors import LsapFileError
from lsap.io.inversions import CODES_DIR
from lsap.losses.objective import build_objective
from lsap.nets.stylegan2 import Generator


def image_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one image, from the run seed and the image's output name."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class InversionSystem(pl.LightningModule):
    """Per-image latent optimisation of a data set (LSAP_O / projector) as Lightning prediction.

    Args:
        generator: the StyleGAN2 generator (frozen; its weights are never changed).
        loss: the ``loss`` config (weights and ``options``; see ``conf/loss/lsap_o.yaml``).
        inversion: the ``inversion`` config (space, steps, lr, schedule, optimize_noise,
            w_std_samples, w_std_seed, init).
        alignment: the ``alignment`` config (anchors: num_samples, seed, batch_size, cache_dir).
        metrics: networks of the reported metrics: ``lpips`` and ``id`` option dicts, or None.
        seed: run seed; image i's random numbers come from ``image_seed(seed, name_i)``.

    ``predict_step`` returns, on the CPU: ``name``, ``path``, ``skipped`` (from the batch),
    ``seed`` [N] image seeds, ``w_plus`` [N, num_ws, w_dim], ``images`` and ``targets``
    [N, 3, R, R] in [-1, 1], ``noise`` (list of [N, 1, R, R] or None), ``metrics`` {name: [N]} and
    ``history`` {term: [steps, N]}.
    """

    def __init__(
        self,
        generator: Generator,
        *,
        loss: Mapping[str, Any],
        inversion: Mapping[str, Any],
        alignment: Mapping[str, Any],
        metrics: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.generator = generator.eval().requires_grad_(False)
        self.loss_cfg = _plain(loss)
        self.inversion_cfg = _plain(inversion)
        self.alignment_cfg = _plain(alignment)
        self.metrics_cfg = _plain(metrics or {})
        self.seed = int(seed)
        inv = self.inversion_cfg
        self.schedule = Schedule(**dict(inv["schedule"]))
        self.steps = int(inv["steps"])
        self.objective = None
        self.metrics = None
        self.w_std = 0.0

    # -- setup: anchors, objective, metric networks ------------------------------------------------
    def setup(self, stage: str) -> None:
        """Build the objective and metrics on the run's device (every process runs this hook, so its
        barriers are safe; rank 0 computes the anchors first, the others read its cache)."""
        if self.objective is not None:
            return
        strategy = self.trainer.strategy
        device = strategy.root_device
        self.generator.to(device)
        if not self.trainer.is_global_zero:
            strategy.barrier("anchors")  # wait until rank 0 has written the anchor cache
        a = self.alignment_cfg
        anchors = compute_anchors(
            self.generator,
            int(a["num_samples"]),
            int(a["seed"]),
            batch_size=int(a["batch_size"]),
            cache_dir=a.get("cache_dir"),
        )
        if self.trainer.is_global_zero:
            strategy.barrier("anchors")
        inv = self.inversion_cfg
        if self.schedule.noise_factor > 0:
            self.w_std = latent_std(
                self.generator,
                int(inv["w_std_samples"]),
                int(inv["w_std_seed"]),
            )
        self.objective = build_objective(self.loss_cfg, generator=self.generator, anchors=anchors)
        self.metrics = ReconstructionMetrics(
            self.generator,
            anchors,
            lpips=self._metric_net("lpips", "lpips"),
            face=self._metric_net("id", "id"),
        )
        self.objective.to(device)
        self.metrics.to(device)

    def on_predict_start(self) -> None:
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "lsap-invert optimises inside predict_step: set trainer.inference_mode=false"
            )

    def _metric_net(self, metric: str, term: str) -> torch.nn.Module | None:
        """The metric's network, shared with the loss term when their settings are equal."""
        options = self.metrics_cfg.get(metric)
        if options is None:
            return None
        options = dict(options)
        same = options == dict((self.loss_cfg.get("options") or {}).get(term) or {})
        if same and term in self.objective.terms:
            t = self.objective.terms[term]
            return t if metric == "lpips" else t.embedder
        if metric == "lpips":
            from lsap.losses.perceptual import LPIPSLoss

            return LPIPSLoss(**options)
        from lsap.losses.identity import FaceEmbedder

        return FaceEmbedder(**options)

    # -- the step --------------------------------------------------------------------------------
    def predict_step(self, batch: Mapping[str, Any], batch_idx: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": list(batch["name"]),
            "path": list(batch["path"]),
            "skipped": list(batch["skipped"]),
        }
        targets = batch["images"]
        if targets is None:  # every image of the batch was unreadable
            return out
        inv = self.inversion_cfg
        seeds = [image_seed(self.seed, n) for n in out["name"]]
        init = self._init_codes(out["name"])
        with torch.enable_grad():  # Lightning's prediction loop runs under no_grad
            result = optimize_latents(
                self.generator,
                targets,
                self.objective,
                space=str(inv["space"]),
                steps=self.steps,
                lr=float(inv["lr"]),
                schedule=self.schedule,
                init=init.to(targets) if init is not None else None,
                optimize_noise=bool(inv["optimize_noise"]),
                w_std=self.w_std,
                seeds=seeds,
                callback=self._on_step,
            )
        metrics = self.metrics(result.images, targets, result.w_plus)
        hist = result.history["loss"]
        metrics["loss"] = (
            hist[-1].to(targets) if len(hist) else torch.full_like(metrics["mse"], float("nan"))
        )
        out.update(
            seed=seeds,
            w_plus=result.w_plus.cpu(),
            images=result.images.cpu(),
            targets=targets.detach().cpu(),
            noise=[n.cpu() for n in result.noise] if result.noise is not None else None,
            metrics={k: v.cpu() for k, v in metrics.items()},
            history=result.history,
        )
        return out

    def _on_step(self, step: int, values: dict[str, Tensor]) -> None:
        """Forward optimisation progress to callbacks that define ``on_inversion_step``."""
        for cb in self.trainer.callbacks:
            hook = getattr(cb, "on_inversion_step", None)
            if hook is not None:
                hook(self.trainer, self, step, self.steps, values)

    def _init_codes(self, names: Sequence[str]) -> Tensor | None:
        """Start codes [N, num_ws, w_dim] from ``inversion.init`` (a folder of codes), or None."""
        folder = self.inversion_cfg.get("init")
        if not folder:
            return None
        folder, G = Path(folder), self.generator
        codes = []
        for n in names:
            candidates = [folder / CODES_DIR / f"{n}.pt", folder / f"{n}.pt"]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                raise LsapFileError(
                    candidates[0], f"no start code for image '{n}' (inversion.init)"
                )
            codes.append(load_codes(path, G.num_ws, G.w_dim)[:1])
        return torch.cat(codes)


def _plain(cfg: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, DictConfig | ListConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, Mapping):
        return {k: _plain(v) for k, v in cfg.items()}
    return cfg
