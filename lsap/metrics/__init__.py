"""Evaluation metrics.

- ``image``: per-image MSE, PSNR, SSIM on uint8-quantised images (light; exported here).
- ``scorer``: per-image fidelity and editing scores (LPIPS, ID) from the configured networks.
- ``features`` / ``fid``: FID feature extractors and streamed FID of several sets vs the originals.
- ``streaming``: DDP-synced accumulators of one method; ``evaluation``: the loop ``lsap-eval`` runs;
  ``report``: Markdown tables and flat logger keys.

The modules beyond ``image`` import torchmetrics / lpips and are imported explicitly.
"""

from lsap.metrics.image import PSNR_CAP_DB, mse, psnr, ssim, to_unit

__all__ = ["PSNR_CAP_DB", "mse", "psnr", "ssim", "to_unit"]
