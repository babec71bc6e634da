"""Plumbing shared by lsap-edit and lsap-eval: torchrun ranks, loggers (W&B)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lsap.cli._common import finish_wandb, resolve_device


def init_distributed(device_name: str) -> tuple[int, int, torch.device, bool]:
    """Join the process group torchrun set up (``WORLD_SIZE`` > 1), if any.

    Returns:
        ``(rank, world_size, device, created)``; on CUDA each rank takes ``cuda:LOCAL_RANK``;
        backend nccl on CUDA, gloo on the CPU; ``created``: this call started the group (and
        :func:`close_distributed` should end it). Without torchrun: ``(0, 1, device, False)``.
    """
    import torch.distributed as dist

    device = resolve_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    created = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        created = True
    if not dist.is_initialized():
        return 0, 1, device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device, created


def close_distributed(created: bool) -> None:
    """End the process group if :func:`init_distributed` started it."""
    import torch.distributed as dist

    if created and dist.is_available() and dist.is_initialized():
        dist.barrier()  # no rank tears the group down while another still talks to it
        dist.destroy_process_group()


def build_loggers(cfg: Mapping[str, Any] | None) -> list[Any]:
    """Lightning loggers of the ``logger`` group (csv, wandb, none)."""
    from lsap.systems.instantiate import instantiate_group

    return instantiate_group(cfg)


def log_to(
    loggers: list[Any],
    *,
    metrics: Mapping[str, float] | None = None,
    images: Mapping[str, np.ndarray] | None = None,
    text: Mapping[str, str] | None = None,
) -> None:
    """Send numbers to every logger, and images / Markdown to those that take them (W&B)."""
    for lg in loggers:
        if metrics:
            lg.log_metrics(dict(metrics))
        if images and hasattr(lg, "log_image"):
            for key, arr in images.items():
                lg.log_image(key=key, images=[arr])
        if text and hasattr(lg, "log_text"):
            for key, t in text.items():
                lg.log_text(key=key, columns=["markdown"], data=[[t]])


def finish_loggers(loggers: list[Any]) -> None:
    """Flush loggers and always end the W&B run (so a sweep's next job starts a new one)."""
    for lg in loggers:
        lg.finalize("success")
    finish_wandb()
