"""Speckle share: how much of an edit's change is fine-grained dots rather than smooth movement.

Expressions move skin in smooth patches (a raised cheek, a fold, an opened mouth): the change
an edit makes to a face is mostly low-frequency. A generator that fools an AU regressor with
high-frequency dot patterns puts its change into single pixels. Per pair, over the face
region (`face_region.face_mask`):

    d  = grey(edit) − grey(source)          grey = (R + G + B) / 3 on 0-255, float
    hf = d − gaussian_blur(d, σ = 1.5 px)   what a blur of 1.5 px removes from the change
    speckle share = Σ hf² / Σ d²            the share of the change's energy in it

The blur runs over the whole crop (so the region's edge sees real neighbours), with a kernel
of radius 4σ and mirrored borders (the edge pixel repeated, as scipy.ndimage's "reflect").
White noise keeps ~3/4 of its energy above the blur, isolated dots more; a real expression
change of one person (sad to laughing, filmed) keeps 0.05-0.09 (see `reference.py`).
"""

from __future__ import annotations

import math

import numpy as np

from .face_region import check_pairs, region_for

SIGMA = 1.5  # px on the 128 crop: finer than any skin movement, coarser than a generator's dots
_CHUNK = 256  # pairs per step


def gaussian_kernel(sigma: float = SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian of radius ceil(4σ) (taps sum to 1)."""
    radius = math.ceil(4 * sigma)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return taps / taps.sum()


def gaussian_blur(images: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """Separable Gaussian blur of the last two axes (H, W) of a float array, mirrored borders.

    numpy only, so the measure needs no scipy; the same as
    scipy.ndimage.gaussian_filter(x, (0, sigma, sigma), mode="reflect", truncate=4.0).
    """
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    out = np.asarray(images, dtype=np.float64)
    for axis in (-2, -1):
        if out.shape[axis] <= radius:
            raise ValueError(f"images of {out.shape[-2]} x {out.shape[-1]} px are too small for a blur of σ {sigma}")
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")  # numpy's "symmetric" is scipy's "reflect": edge repeated
        length = out.shape[axis]
        out = sum(
            weight * np.take(padded, np.arange(offset, offset + length), axis=axis)
            for offset, weight in enumerate(kernel)
        )
    return out


def speckle_sums(
    sources: np.ndarray, edits: np.ndarray, region: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, Σ hf² and Σ d² over the region's pixels (the share's numerator and denominator)."""
    sources, edits = check_pairs(sources, edits)
    mask = region_for(sources.shape, region)
    high, total = [], []
    for start in range(0, len(sources), _CHUNK):
        grey_a = sources[start : start + _CHUNK].astype(np.float64).mean(-1)
        grey_b = edits[start : start + _CHUNK].astype(np.float64).mean(-1)
        change = grey_b - grey_a
        detail = change - gaussian_blur(change)
        high.append((detail[:, mask] ** 2).sum(1))
        total.append((change[:, mask] ** 2).sum(1))
    return np.concatenate(high), np.concatenate(total)


def speckle_shares(sources: np.ndarray, edits: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """Per pair speckle share (edit against source) over `region` (default: the face ellipse).

    nan for a pair whose grey levels do not change in the region. A pair that barely changes
    is dominated by uint8 rounding, which is white noise (share ~0.75): for a set, report
    `pooled_speckle_share` and use these to find the pairs that drive it.
    """
    high, total = speckle_sums(sources, edits, region)
    with np.errstate(divide="ignore", invalid="ignore"):
        return high / total


def pooled_speckle_share(sources: np.ndarray, edits: np.ndarray, region: np.ndarray | None = None) -> float:
    """The speckle share of a set of pairs: Σ hf² / Σ d² over all pairs and pixels.

    Each pair weighs by its change's energy, so pairs that barely change (rounding noise)
    cannot dominate, and unchanged pairs add nothing (no nan). nan only when no pair of the
    set changes at all.
    """
    high, total = speckle_sums(sources, edits, region)
    total_sum = total.sum()
    return float(high.sum() / total_sum) if total_sum > 0 else float("nan")
