"""The realism two-sample test (wemgan/metrics/realism.py): a fresh classifier spots a visible
artifact, and cannot tell two sets of the same kind apart."""

from __future__ import annotations

import numpy as np
import pytest

from wemgan import edit_evaluation
from wemgan.edit_evaluation import SINGLE_AUS, realism_markdown
from wemgan.metrics.realism import auc, most_showing, mouth_crops, realism, two_sample_test


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


def test_most_showing_ranks_faces_by_how_much_they_show_the_expression():
    aus = np.zeros((5, 17))
    aus[:, 8] = [0.1, 0.7, 0.0, 0.6, 0.3]  # AU12
    aus[:, 4] = [0.8, 0.0, 0.0, 0.6, 0.0]  # AU06
    assert most_showing(aus, np.eye(17)[8], 3).tolist() == [1, 3, 4]  # one AU: its intensity
    smile = np.zeros(17)
    smile[[4, 8]] = 0.8
    assert most_showing(aus, smile, 2).tolist() == [3, 0]  # both AUs count
    with pytest.raises(ValueError, match="at least one AU"):
        most_showing(aus, np.zeros(17), 2)


def test_the_realism_table_shows_matched_and_natural_scores_where_measured():
    def score(accuracy: float) -> dict:
        return {region: {"accuracy": accuracy, "auc": accuracy} for region in ("face", "mouth")}

    names = ("real_vs_real", "darkened", "transfer", "Happy", "Surprise", *SINGLE_AUS)
    scores = {"faces_per_side": 8, "seeds": [0]} | {name: score(0.6) for name in names}
    scores["Happy"] |= {"matched": score(0.7), "natural": score(0.8)}
    table = "\n".join(realism_markdown(scores))
    assert "| Happy | 0.600 | 0.600 | 0.600 | 0.600 | 0.700 | 0.700 | 0.800 | 0.800 |" in table
    assert "| transfer | 0.600 | 0.600 | 0.600 | 0.600 | | | | |" in table


def test_realism_scores_tells_edits_from_other_people_and_from_the_pool_showing_the_expression(monkeypatch):
    """Three disjoint parts of the shuffled faces: edited, real, and the pool the matched sets come from."""
    n = 30
    crops = np.zeros((n, 4, 4, 3), np.uint8)
    crops[:, 0, 0, 0] = np.arange(n)  # each face carries its index
    labels = np.random.default_rng(0).uniform(0, 1, (n, 17))

    class Unchanged:
        def edit(self, images, aus=None, reference=None):
            return list(images)

    calls = []
    monkeypatch.setattr(edit_evaluation, "realism", lambda a, b, seeds: calls.append((a, b)) or {})
    monkeypatch.setattr(edit_evaluation, "realism_controls", lambda a, b, seeds: {})
    edit_evaluation.realism_scores(Unchanged(), crops, labels, list(range(n))[::-1], faces=10, seeds=(0,))
    ids = [(set(a[:, 0, 0, 0].tolist()), set(b[:, 0, 0, 0].tolist())) for a, b in calls]
    edited, real = ids[0]
    pool = set(range(n)) - edited - real
    assert len(edited) == len(real) == 10 and not edited & real
    matched = [b for a, b in ids if a == edited and b != real]
    assert len(matched) >= 3 and all(b <= pool for b in matched)  # Happy, Surprise, single AUs, transfer
    au12 = np.eye(17)[8]
    expected = {sorted(pool)[i] for i in most_showing(labels[sorted(pool)], au12, 10)}
    assert expected in matched  # AU12's matched faces: the pool's 10 strongest AU12
