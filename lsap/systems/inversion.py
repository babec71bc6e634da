"""The inversion LightningModule: ``predict_step`` makes stage-one codes for its batch and, with
``refinement: pti``, refines them by pivotal tuning.

Wiring only: a batch is inverted by :func:`lsap.inversion.pipeline.invert_batch` (codes from a
:class:`lsap.inversion.sources.CodeSource` and/or latent optimisation, objective
``lsap.losses.build_objective``, settings ``lsap.inversion.settings.InversionSettings``);
refinement is :func:`lsap.refinement.pivotal_tuning`; the per-image metrics of both stages are
:class:`ReconstructionMetrics` (the one scorer's definition). Writing the code records is the job
of :class:`lsap.systems.writer.InversionWriter`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from lsap.alignment.anchors import anchors_from_config
from lsap.core.plain import settings_dict
from lsap.inversion.memory import lsap_o_probe
from lsap.inversion.pipeline import invert_batch
from lsap.inversion.report import ReconstructionMetrics
from lsap.inversion.settings import InversionSettings
from lsap.inversion.sources import CodeSource
from lsap.losses.objective import build_objective
from lsap.nets.stylegan2 import Generator
from lsap.refinement import build_pti_terms, pivotal_tuning
from lsap.refinement.locality import Locality
from lsap.refinement.settings import RefinementSettings

PTI_PREFIX = "pti_"  # metric keys after refinement: pti_mse, pti_psnr, ...
_METRICS = "conf/metrics/default.yaml"


class InversionSystem(pl.LightningModule):
    """Inversion of a data set as Lightning prediction: stage-one codes (an encoder, a codes file,
    per-image latent optimisation (LSAP_O / projector), or an encoder then optimisation), then
    optionally pivotal tuning (PTI) around them.

    Args:
        generator: the StyleGAN2 generator (frozen; its weights are never changed).
        loss: the ``loss`` config (weights and ``options``; see ``conf/loss/lsap_o.yaml``).
        inversion: the ``inversion`` group, typed.
        alignment: the ``alignment`` config (anchors: num_samples, seed, batch_size, cache_dir).
        metrics: the ``metrics`` group (``conf/metrics/``): ``fidelity`` (which of lpips and id are
            computed) and the ``lpips`` and ``id`` option dicts (None = not computed).
        seed: run seed; image i's random numbers come from ``image_seed(seed, name_i)``.
        code_source: where the codes come from (``lsap.inversion.sources.build_code_source``).
        refinement: the ``refinement`` group, typed (``none``, or ``pti`` with its settings).

    ``predict_step`` returns, on the CPU: ``name``, ``path``, ``skipped``, ``photo_crop`` (per
    image its :class:`lsap.data.paste.PhotoCrop` when face-aligned, else None; from the batch),
    ``seed`` [N] image seeds, ``w_plus`` [N, num_ws, w_dim], ``images`` and ``targets``
    [N, 3, R, R] in [-1, 1], ``noise`` (list of [N, 1, R, R] or None), ``metrics`` {name: [N]},
    ``history`` {term: [steps, N]} (no steps without optimisation), ``code_files`` (per image,
    the file a code was read from, or None) and ``records`` (the images' code records, without
    the run's provenance). With PTI also ``refined``: ``images`` [N, 3, R, R]
    (through each image's tuned generator), ``metrics`` {pti_<name>: [N]} (SNCD left out: the
    codes are unchanged), ``steps`` [N] PTI steps run, ``settings``, and ``result`` (the
    :class:`lsap.refinement.PTIResult` with the tuned generators, on the device; only when they
    are to be saved).
    """

    def __init__(
        self,
        generator: Generator,
        *,
        loss: Mapping[str, Any],
        inversion: InversionSettings,
        alignment: Mapping[str, Any],
        metrics: Mapping[str, Any],
        seed: int,
        code_source: CodeSource,
        refinement: RefinementSettings,
    ) -> None:
        super().__init__()
        self.generator = generator.eval().requires_grad_(False)
        self.loss_cfg = dict(loss)
        self.settings = inversion
        self.alignment_cfg = dict(alignment)
        self.metrics_cfg = settings_dict(
            metrics, ("fidelity", "lpips", "id"), what="metrics", see=_METRICS, exact=False
        )
        self.seed = int(seed)
        self.source = code_source
        self.steps = self.settings.steps if self.source.optimize else 0
        self.objective = None
        self.metrics = None
        self.w_std = 0.0
        self.refinement = refinement.name
        self.pti_kwargs = refinement.pti  # checked when the settings were made: before any work
        self.pti_steps = refinement.steps
        self.save_tuned = refinement.save_deltas
        self.pti_terms = None

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
        anchors = anchors_from_config(self.generator, self.alignment_cfg)
        if self.trainer.is_global_zero:
            strategy.barrier("anchors")
        datamodule = getattr(self.trainer, "datamodule", None)
        plan = getattr(datamodule, "plan", None)
        if plan is not None:  # every process raises the same error: the plan is broadcast
            self.source.check_names([n for _, n in plan.todo])
        self.source.to(device)
        if self.source.optimize:
            self.w_std = self.settings.w_std(self.generator)
            self.objective = build_objective(
                self.loss_cfg,
                generator=self.generator,
                anchors=anchors,
                cache_dir=self.alignment_cfg["cache_dir"],
            )
            self.objective.to(device)
        self.metrics = ReconstructionMetrics(
            self.generator,
            anchors,
            lpips=self._metric_net("lpips", "lpips"),
            face=self._metric_net("id", "id"),
        )
        self.metrics.to(device)
        if self.refinement == "pti":
            k = self.pti_kwargs
            loc = Locality.from_any(k["locality"])
            terms = build_pti_terms(k["weights"], loc, k["loss_options"])
            self.pti_terms = {n: t.to(device) for n, t in terms.items()}

    def memory_probe(self) -> Callable[[int], None] | None:
        """One step of this run's latent optimisation at a given batch size, without side effects
        (``lsap.inversion.memory.lsap_o_probe``), for ``data.batch_size=auto``; None when the codes
        are not optimised. Call after ``setup`` (the objective lives on the run's device)."""
        if self.objective is None:
            return None
        self.on_predict_start()  # the same refusal of inference mode, before the probe's step
        kwargs = self.settings.optimize_kwargs(self.generator, self.w_std)
        return lsap_o_probe(self.generator, self.objective, kwargs)

    def on_predict_start(self) -> None:
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "lsap-invert optimises inside predict_step: set trainer.inference_mode=false"
            )

    def _metric_net(self, metric: str, term: str) -> torch.nn.Module | None:
        """The metric's network, shared with the loss term when their settings are equal."""
        options = self.metrics_cfg[metric]
        if options is None or metric not in self.metrics_cfg["fidelity"]:
            return None
        options = dict(options)
        same = options == dict((self.loss_cfg.get("options") or {}).get(term) or {})
        if same and self.objective is not None and term in self.objective.terms:
            t = self.objective.terms[term]
            return t if metric == "lpips" else t.embedder
        from lsap.core.errors import WeightsUnavailableError

        try:
            if metric == "lpips":
                from lsap.losses.perceptual import LPIPSLoss

                return LPIPSLoss(**options)
            from lsap.losses.identity import FaceEmbedder

            return FaceEmbedder(**options)
        except WeightsUnavailableError as e:
            raise e.under("metrics") from e.__cause__

    # -- the step --------------------------------------------------------------------------------
    def predict_step(self, batch: Mapping[str, Any], batch_idx: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": list(batch["name"]),
            "path": list(batch["path"]),
            "skipped": list(batch["skipped"]),
        }
        # aligned photos: where each image lies in its photo (paste-back); None = not aligned
        out["photo_crop"] = list(batch.get("photo_crop") or [None] * len(out["name"]))
        targets = batch["images"]
        if targets is None:  # every image of the batch was unreadable
            return out
        res = invert_batch(
            self.generator,
            targets,
            out["name"],
            self.source,
            self.objective,
            self.settings,
            self.metrics,
            seed=self.seed,
            w_std=self.w_std,
            image_paths=out["path"],
            callback=self._on_step,
        )
        out.update(
            seed=res.seeds,
            w_plus=res.w_plus.cpu(),
            images=res.images.cpu(),
            targets=targets.detach().cpu(),
            noise=[n.cpu() for n in res.noise] if res.noise is not None else None,
            metrics={k: v.cpu() for k, v in res.metrics.items()},
            history=res.history,
            code_files=res.code_files,
            records=res.records,
        )
        if self.refinement == "pti":
            out["refined"] = self._refine(targets, res.w_plus, res.noise)
        return out

    def _refine(self, targets: Tensor, w_plus: Tensor, noise: list[Tensor] | None) -> dict:
        """Pivotal tuning of the batch around its codes (one generator per image, or per batch)."""
        with torch.enable_grad():
            res = pivotal_tuning(
                self.generator,
                targets,
                w_plus,
                noise=noise,
                terms=self.pti_terms,
                pivot_sha256=self.generator.sha256,
                on_step=self._on_pti_step,
                **self.pti_kwargs,
            )
        metrics = self.metrics(res.images, targets, w_plus)
        metrics.pop("sncd")  # the codes (pivots) are unchanged: their SNCD is stage one's
        steps = torch.zeros(targets.shape[0], dtype=torch.long)
        for n, idx in zip(res.steps_run, res.image_index, strict=True):
            steps[idx] = n
        out = {
            "images": res.images.cpu(),
            "metrics": {PTI_PREFIX + k: v.cpu() for k, v in metrics.items()},
            "steps": steps,
            "settings": res.settings,
            "result": None,
        }
        if self.save_tuned:
            out["result"] = res  # the writer stores the tuned generators as deltas
        return out

    def _on_step(self, step: int, values: dict[str, Tensor]) -> None:
        """Forward optimisation progress to callbacks that define ``on_inversion_step``."""
        for cb in self.trainer.callbacks:
            hook = getattr(cb, "on_inversion_step", None)
            if hook is not None:
                hook(self.trainer, self, step, self.steps, values)

    def _on_pti_step(self, generator: int, step: int, values: dict[str, float]) -> None:
        """Forward PTI progress to callbacks that define ``on_refinement_step``."""
        for cb in self.trainer.callbacks:
            hook = getattr(cb, "on_refinement_step", None)
            if hook is not None:
                hook(self.trainer, self, generator, step, self.pti_steps, values)
