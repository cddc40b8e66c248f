"""Pixel fidelity between two image batches: L1, PSNR and SSIM (Table 4; SynthFACS paired scores).

Images are float arrays N x H x W x 3 in [0, 1] (`to_unit` converts the networks' [-1, 1]
tensors), so L1 is in units of the full intensity range and PSNR/SSIM use data_range 1.
Every function returns one value per image; callers average.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# MSE 0 (identical images) gives an infinite PSNR, and one infinite image would make the mean
# infinite (and JSON cannot hold it): per-image PSNR is capped here, 10 * log10(1 / 1e-10).
PSNR_CAP = 100.0


def to_unit(images: Tensor) -> np.ndarray:
    """N x 3 x H x W tensors in [-1, 1] -> N x H x W x 3 float64 in [0, 1]."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).double().numpy()


def to_uint8(images: Tensor) -> np.ndarray:
    """N x 3 x H x W tensors in [-1, 1] -> N x H x W x 3 uint8 (what is written to PNG and fed to detectors)."""
    unit = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return unit.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _check(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"expected two N x H x W x C batches of the same shape, got {a.shape} and {b.shape}")
    return a, b


def l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference per image."""
    a, b = _check(a, b)
    return np.abs(a - b).mean(axis=(1, 2, 3))


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio per image in dB (peak 1), capped at PSNR_CAP."""
    a, b = _check(a, b)
    mse = np.square(a - b).mean(axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        values = 10 * np.log10(1.0 / mse)
    return np.minimum(values, PSNR_CAP)


def ssim_unavailable() -> str | None:
    """Why SSIM cannot be computed here, or None."""
    try:
        import skimage.metrics  # noqa: F401
    except ImportError as error:
        return f"SSIM needs scikit-image ({error}); pip install scikit-image"
    return None


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM per image, averaged over colour channels.

    scikit-image with the settings of Wang et al. (2004): 11 x 11 Gaussian window (sigma 1.5),
    population covariances, K1 = 0.01, K2 = 0.03; its default (7 x 7 box) gives other values.
    """
    from skimage.metrics import structural_similarity

    a, b = _check(a, b)
    options = dict(channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    return np.array([structural_similarity(x, y, **options) for x, y in zip(a, b, strict=True)])
