"""Callbacks of the inversion job (lsap-invert): a progress bar over images and steps (optimisation
and PTI), and logging (per-step loss terms of a few images, final metrics of both stages, a
target | reconstruction (| refined) grid) through the loggers' public API, at rank zero."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from pytorch_lightning.callbacks import Callback, ProgressBar

from lsap.core.atomic import atomic_write
from lsap.data.images import tensor_to_uint8
from lsap.io.inversion_layout import METRIC_NAMES, REFINED_METRIC_NAMES
from lsap.nets.crop import crop_valid
from lsap.systems.callbacks import input_reconstruction_grid

GRID_FILE = "grid.png"


class InversionProgressBar(ProgressBar):
    """Rich progress bars on rank 0: images of this process's shard, optimisation steps of the
    batch, and with refinement the PTI steps of the generator being tuned."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._progress = None
        self._images = self._steps = self._pti = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_predict_start(self, trainer, pl_module) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        total = getattr(trainer.datamodule, "shard_size", None)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        )
        self._progress.start()
        where = f" (rank 0 of {trainer.world_size})" if trainer.world_size > 1 else ""
        self._images = self._progress.add_task(f"images{where}", total=total, info="")
        self._steps = self._progress.add_task("steps", total=pl_module.steps, info="")
        if getattr(pl_module, "refinement", "none") == "pti":
            self._pti = self._progress.add_task("PTI steps", total=pl_module.pti_steps, info="")

    def on_inversion_step(self, trainer, pl_module, step: int, steps: int, values) -> None:
        if self._progress is None:
            return
        if step == 0:
            self._progress.reset(self._steps, total=steps)
        info = ""
        if step == steps - 1 or step % max(1, steps // 20) == 0:  # a host sync now and then only
            info = f"loss {float(values['loss'].mean()):.4g}"
        self._progress.update(self._steps, advance=1, **({"info": info} if info else {}))

    def on_refinement_step(self, trainer, pl_module, generator: int, step: int, steps: int, values):
        if self._progress is None or self._pti is None:
            return
        if step == 0:
            self._progress.reset(self._pti, total=steps)
        info = (
            f"loss {values['loss']:.4g}"
            if step == steps - 1 or step % max(1, steps // 20) == 0
            else ""
        )
        self._progress.update(self._pti, advance=1, **({"info": info} if info else {}))

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self._progress is not None:
            done = len(outputs["name"]) + len(outputs["skipped"])
            self._progress.update(self._images, advance=done)

    def on_predict_end(self, trainer, pl_module) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class InversionLogging(Callback):
    """At rank zero, as images finish (a killed run keeps what it logged; a resumed run's part
    follows it): the loss terms per step of the first ``curves`` images, every finished image's
    metrics with the running means, and the grid of the first ``grid`` targets | reconstructions
    (| refined images, with refinement); at the end, the final metrics (means over the whole
    results table).

    Keys: ``invert/loss/<term>/<name>`` at steps 0..steps-1; per finished image
    ``invert/image/<metric>`` and ``invert/progress/<metric>`` (mean over the images this run has
    finished so far) at step = images finished in the folder (earlier runs included);
    ``invert/metric/<metric>`` (mean over the table) at step ``steps`` at the end
    (``invert/metric/pti_<metric>`` after refinement). The grid is saved as
    ``<output_dir>/grid.png`` and logged as an image to loggers that take images (W&B) whenever it
    grows. Every logger is flushed after each batch. Put it after the writer in the callback
    list: at teardown it reads the table the writer has just merged.
    """

    def __init__(self, output_dir: str | Path, curves: int, grid: int) -> None:
        self.output_dir = Path(output_dir)
        self.curves, self.grid = curves, grid
        self._num_curves = 0
        self._pairs: list[tuple[torch.Tensor, ...]] = []
        self._finished = 0  # images finished in the folder, earlier runs included
        self._sums: dict[str, list[float]] = {}  # metric -> [sum, count] over this run's images

    def on_predict_start(self, trainer, pl_module) -> None:
        plan = getattr(getattr(trainer, "datamodule", None), "plan", None)
        self._finished = int(getattr(plan, "num_done", 0) or 0)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.is_global_zero or "w_plus" not in outputs:
            return
        names = list(outputs["name"])
        self._log_curves(trainer, names, outputs["history"])
        self._log_image_metrics(trainer, names, outputs)
        if len(self._pairs) < self.grid:
            for i in range(min(len(names), self.grid - len(self._pairs))):
                cells = (outputs["targets"][i], outputs["images"][i])
                if "refined" in outputs:
                    cells += (outputs["refined"]["images"][i],)
                crop = getattr(getattr(pl_module, "generator", None), "crop", None)  # valid region
                self._pairs.append(tuple(crop_valid(c, crop) for c in cells))
            self._log_grid(trainer)
        for logger in trainer.loggers:
            logger.save()

    def _log_curves(self, trainer, names: list[str], history: dict[str, torch.Tensor]) -> None:
        chosen = list(range(min(len(names), self.curves - self._num_curves)))
        if not chosen:
            return
        self._num_curves += len(chosen)
        steps = next(iter(history.values())).shape[0] if history else 0
        for s in range(steps):
            _log_metrics(
                trainer,
                {
                    f"invert/loss/{term}/{names[i]}": float(h[s, i])
                    for i in chosen
                    for term, h in history.items()
                },
                s,
            )

    def _log_image_metrics(self, trainer, names: list[str], outputs: dict[str, Any]) -> None:
        metrics = dict(outputs.get("metrics") or {})
        if "refined" in outputs:
            metrics.update(outputs["refined"]["metrics"])
        for i in range(len(names)):
            self._finished += 1
            values = {}
            for m, v in metrics.items():
                x = float(v[i])
                values[f"invert/image/{m}"] = x
                if x == x:  # NaN (a metric not computed) stays out of the mean
                    acc = self._sums.setdefault(m, [0.0, 0])
                    acc[0] += x
                    acc[1] += 1
            values.update({f"invert/progress/{m}": a[0] / a[1] for m, a in self._sums.items()})
            _log_metrics(trainer, values, self._finished)

    def _log_grid(self, trainer) -> None:
        path = self.output_dir / GRID_FILE
        _save_grid(self._pairs, path)
        for logger in trainer.loggers:
            log_image = getattr(logger, "log_image", None)  # WandbLogger's public method
            if callable(log_image):
                caption = "target | reconstruction" + (
                    " | refined" if len(self._pairs[0]) > 2 else ""
                )
                log_image(key="invert/grid", images=[str(path)], caption=[caption])

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        rows = _writer_rows(trainer)
        if rows:
            means = {}
            names = (*METRIC_NAMES, "ssim", *(m for m in REFINED_METRIC_NAMES if m in rows[0]))
            for m in names:
                vals = torch.tensor([float(r[m]) for r in rows])
                means[f"invert/metric/{m}"] = (
                    float(vals.nanmean()) if (~vals.isnan()).any() else float("nan")
                )
            means["invert/num_images"] = float(len(rows))
            _log_metrics(trainer, means, pl_module.steps)
        for logger in trainer.loggers:
            logger.save()


def _writer_rows(trainer) -> list[dict[str, Any]]:
    for cb in trainer.callbacks:
        summary = getattr(cb, "summary", None)
        if isinstance(summary, dict) and "rows" in summary:
            return summary["rows"]
    return []


def _log_metrics(trainer, metrics: dict[str, float], step: int) -> None:
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=step)


def _save_grid(pairs, path: Path) -> None:
    """Rows of ``target | reconstruction`` (``| refined``) ([3, h, w] in [-1, 1] each: the
    valid region of R x R frames) as one PNG."""
    columns = [torch.stack([p[k] for p in pairs]) for k in range(len(pairs[0]))]
    if len(columns) == 2:
        grid = input_reconstruction_grid(*columns, len(pairs))  # uint8 [3, n R, 2R]
    else:
        rows = torch.cat(columns, dim=3)  # [n, 3, R, 3R]
        grid = tensor_to_uint8(torch.cat(list(rows), dim=1))  # [3, n R, 3R]
    buf = io.BytesIO()
    Image.fromarray(grid.permute(1, 2, 0).numpy(), "RGB").save(buf, format="PNG")
    atomic_write(path, lambda f: f.write(buf.getvalue()))
