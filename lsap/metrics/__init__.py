"""Evaluation metrics: per-image fidelity (MSE, PSNR, SSIM) on uint8-quantised images."""

from lsap.metrics.image import PSNR_CAP_DB, mse, psnr, ssim, to_unit

__all__ = ["PSNR_CAP_DB", "mse", "psnr", "ssim", "to_unit"]
