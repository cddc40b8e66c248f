"""SynthFACS ground-truth scores: the edit against the same identity rendered with the target AUs.

Real data has no picture of a face with the target expression; SynthFACS does (the renderer is
deterministic), so an edit can be scored directly. The unedited source against the same truth
is the reference point; gain > 0 means the edit moved towards the truth (lower L1, higher PSNR
and SSIM).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.synthetic import render
from . import reconstruction

HIGHER_IS_BETTER = {"l1": False, "psnr": True, "ssim": True}


def ground_truth(identities: Sequence[int], target_aus: np.ndarray, size: int = 128) -> np.ndarray:
    """N x size x size x 3 uint8 renders of each identity seed with its target AUs."""

    return np.stack([np.asarray(render(int(i), aus, size)) for i, aus in zip(identities, target_aus, strict=True)])


def paired_scores(
    edits: np.ndarray, sources: np.ndarray, truths: np.ndarray, with_ssim: bool = True
) -> dict[str, float]:
    """Mean L1/PSNR/SSIM of edits and of sources against the truths, and the gain; images N x H x W x 3 in [0, 1]."""
    metrics = {"l1": reconstruction.l1, "psnr": reconstruction.psnr}
    if with_ssim:
        metrics["ssim"] = reconstruction.ssim
    scores = {}
    for name, metric in metrics.items():
        edit, source = float(metric(edits, truths).mean()), float(metric(sources, truths).mean())
        sign = 1 if HIGHER_IS_BETTER[name] else -1
        scores |= {
            f"paired_{name}": edit,
            f"paired_{name}_source": source,
            f"paired_{name}_gain": sign * (edit - source),
        }
    return scores
