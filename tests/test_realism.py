"""The realism two-sample test (wemgan/metrics/realism.py): a fresh classifier spots a visible
artifact, and cannot tell two sets of the same kind apart."""

from __future__ import annotations

import numpy as np
import pytest

from wemgan.metrics.realism import auc, mouth_crops, realism, two_sample_test


def faces(n: int, seed: int) -> np.ndarray:
    """n 32x32 'faces': a smooth skin-coloured gradient with noise, varying per face."""
    rng = np.random.default_rng(seed)
    base = np.linspace(90, 170, 32)[None, :, None, None] * rng.uniform(0.8, 1.1, (n, 1, 1, 1))
    skin = base * np.array([1.0, 0.8, 0.7]) + rng.normal(0, 6, (n, 32, 32, 3))
    return skin.clip(0, 255).astype(np.uint8)


def test_auc_ranks_positives_over_negatives():
    assert auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1])) == 0.5


def test_a_visible_blotch_is_spotted_and_the_same_kind_is_not():
    real, other = faces(80, 0), faces(80, 1)
    blotched = real.copy()
    blotched[:, 20:26, 10:22] = [200, 60, 160]  # a magenta patch where the mouth is
    assert two_sample_test(blotched, other, steps=60)["accuracy"] > 0.9
    same = two_sample_test(real, other, steps=60)
    assert 0.3 <= same["accuracy"] <= 0.7


def test_realism_reports_face_and_mouth_and_refuses_tiny_sets():
    report = realism(faces(24, 0), faces(24, 1), seeds=(0,), steps=10)
    assert set(report) == {"face", "mouth"} and set(report["face"]) == {"accuracy", "auc"}
    assert mouth_crops(faces(2, 0)).shape[1:3] == (13, 18)
    with pytest.raises(ValueError, match="at least 4"):
        two_sample_test(faces(3, 0), faces(10, 1))
