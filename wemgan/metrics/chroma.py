"""Chroma ratio: how much of an edit's change is colour rather than light and shade.

A real expression change moves skin, folds and shadows: mostly brightness, with little change
of colour. A generator that fools an AU regressor with colour blotches changes colour far more
than brightness. Per pixel of the face region (`face_region.face_mask`):

    r = R / (R + G + B + 3),  g = G / (R + G + B + 3)   chromaticity: blind to shading
    L = (R + G + B) / 3                                  brightness, on 0-255 values

    chroma ratio = 1000 · mean(|Δr| + |Δg|) / mean |ΔL|        (Δ = edit − source)

The +3 keeps black pixels defined. Scaling all channels alike (a shadow, a darker photo)
leaves r and g nearly unchanged: the whole face darkened by 10% scores ≈ 0.15, a real change
of expression of one person (sad to laughing, filmed) 0.74-0.92 (see `reference.py`).
"""

from __future__ import annotations

import numpy as np

from .face_region import check_pairs, region_for

SCALE = 1000.0  # chromaticity differences are ~1e-3 of |ΔL| on 0-255: the ratio is reported in thousandths
_CHUNK = 256  # pairs per step: bounds the float64 temporaries to ~100 MB


def chroma_sums(
    sources: np.ndarray, edits: np.ndarray, region: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, Σ (|Δr| + |Δg|) and Σ |ΔL| over the region's pixels (the ratio's numerator and denominator)."""
    sources, edits = check_pairs(sources, edits)
    mask = region_for(sources.shape, region)
    chroma, light = [], []
    for start in range(0, len(sources), _CHUNK):
        a = sources[start : start + _CHUNK][:, mask].astype(np.float64)  # n x pixels x 3
        b = edits[start : start + _CHUNK][:, mask].astype(np.float64)
        sum_a, sum_b = a.sum(-1), b.sum(-1)
        rg_a = a[..., :2] / (sum_a + 3)[..., None]
        rg_b = b[..., :2] / (sum_b + 3)[..., None]
        chroma.append(np.abs(rg_b - rg_a).sum(axis=(1, 2)))
        light.append(np.abs(sum_b - sum_a).sum(axis=1) / 3)
    return np.concatenate(chroma), np.concatenate(light)


def _ratio(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray:
    """SCALE · numerator / denominator; 0 / 0 is nan (no change), x / 0 is inf (colour change at constant light)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return SCALE * np.asarray(numerator, dtype=np.float64) / np.asarray(denominator, dtype=np.float64)


def chroma_ratios(sources: np.ndarray, edits: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """Per pair chroma ratio (edit against source) over `region` (default: the face ellipse).

    A pair whose brightness does not change anywhere gives nan (nothing changed) or inf (only
    colour changed), and a pair that barely changes gives a ratio of rounding noise over
    almost nothing: averaging per-pair ratios over a set is unstable. Report
    `pooled_chroma_ratio` for a set; use these to find the pairs that drive it.
    """
    chroma, light = chroma_sums(sources, edits, region)
    return _ratio(chroma, light)


def pooled_chroma_ratio(sources: np.ndarray, edits: np.ndarray, region: np.ndarray | None = None) -> float:
    """The chroma ratio of a set of pairs: Σ chroma change / Σ brightness change over all pairs and pixels.

    Each pair weighs by how much it changes, so pairs that barely change (whose own ratios
    explode) cannot dominate, and unchanged pairs add nothing (no nan). nan only when no pair
    of the set changes at all; inf when the set changes colour but nowhere brightness.
    """
    chroma, light = chroma_sums(sources, edits, region)
    return float(_ratio(chroma.sum(), light.sum()))
