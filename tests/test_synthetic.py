"""SynthFACS: determinism, AU locality and continuity, identity detail, datasets, errors."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from wemgan.aus import AU_NAMES, EXPRESSIONS
from wemgan.data import synthetic
from wemgan.data.synthetic import (
    au_sweep_sheet,
    build_dataset,
    dataset_features,
    expression_sheet,
    identity_seed,
    landmarks,
    make_sample,
    paired,
    render,
    sample_aus,
    sample_identity,
)

SEEDS = (3, 11, 42)

# Where each AU acts: (landmark, radius in face units) discs, from the identity's own geometry.
AU_REGIONS: dict[str, list[tuple[str, float]]] = {
    "AU01": [("brow_left", 0.45), ("brow_right", 0.45), ("glabella", 0.35), ("forehead", 0.55)],
    "AU02": [("brow_left", 0.45), ("brow_right", 0.45), ("forehead", 0.55)],
    "AU04": [("brow_left", 0.4), ("brow_right", 0.4), ("glabella", 0.3)],
    "AU05": [("eye_left", 0.3), ("eye_right", 0.3)],
    "AU06": [("eye_left", 0.45), ("eye_right", 0.45), ("cheek_left", 0.45), ("cheek_right", 0.45)],
    "AU07": [("eye_left", 0.3), ("eye_right", 0.3)],
    "AU09": [("nose_tip", 0.35), ("glabella", 0.35), ("eye_left", 0.3), ("eye_right", 0.3)],
    "AU10": [("mouth_centre", 0.45), ("cheek_left", 0.45), ("cheek_right", 0.45), ("nose_tip", 0.3)],
    "AU12": [("mouth_centre", 0.6), ("cheek_left", 0.45), ("cheek_right", 0.45)],
    "AU14": [("mouth_left", 0.3), ("mouth_right", 0.3)],
    "AU15": [("mouth_centre", 0.55)],
    "AU17": [("mouth_centre", 0.45), ("chin", 0.35)],
    "AU20": [("mouth_centre", 0.6)],
    "AU23": [("mouth_centre", 0.4)],
    "AU25": [("mouth_centre", 0.4)],
    "AU26": [("mouth_centre", 0.6), ("chin", 1.0)],
    "AU45": [("eye_left", 0.3), ("eye_right", 0.3)],
}
# AUs that must leave everything below the nose tip untouched, and AUs that must leave
# everything above the eyes untouched: the two halves of the face move independently.
UPPER_ONLY = ("AU01", "AU02", "AU04", "AU05", "AU07", "AU45")
LOWER_ONLY = ("AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26")


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


def region_mask(seed: int, regions: list[tuple[str, float]], size: int = 128) -> np.ndarray:
    points = landmarks(seed, size)
    scale = points["scale"][0]
    y, x = np.mgrid[0:size, 0:size] + 0.5
    mask = np.zeros((size, size), bool)
    for name, radius in regions:
        cx, cy = points[name]
        mask |= (x - cx) ** 2 + (y - cy) ** 2 < (radius * scale) ** 2
    return mask


def face_depth(seed: int, landmark: str, size: int = 128) -> np.ndarray:
    """Signed pixel distance of every pixel below `landmark` along the face's vertical axis."""
    points = landmarks(seed, size)
    top, bottom = np.array(points["forehead"]), np.array(points["chin"])
    axis = (bottom - top) / np.linalg.norm(bottom - top)
    y, x = np.mgrid[0:size, 0:size] + 0.5
    return (x - points[landmark][0]) * axis[0] + (y - points[landmark][1]) * axis[1]


def high_pass(image: np.ndarray) -> np.ndarray:
    """Image minus its 3x3 box blur: pores, freckles, stubble."""
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    blur = sum(padded[dy : dy + image.shape[0], dx : dx + image.shape[1]] for dy in range(3) for dx in range(3)) / 9
    return image - blur


# ---------------------------------------------------------------------------------------------
# Determinism and caching
# ---------------------------------------------------------------------------------------------


def test_render_is_deterministic_and_cache_independent():
    first = pixels(render(7, "Happy"))
    synthetic._static_layers.cache_clear()
    synthetic._sample_identity.cache_clear()
    assert np.array_equal(first, pixels(render(sample_identity(7), "Happy")))
    assert render(7, "Happy").size == (128, 128) and render(7, "Happy").mode == "RGB"


def test_render_is_identical_in_a_fresh_process():
    aus = np.linspace(0, 1, 17).round(3).tolist()
    here = hashlib.sha256(render(12345, aus).tobytes()).hexdigest()
    code = (
        "import hashlib; from wemgan.data.synthetic import render; "
        f"print(hashlib.sha256(render(12345, {aus}).tobytes()).hexdigest())"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert here == there


def test_make_sample_is_deterministic():
    a, b = make_sample("train", 3, 9, seed=1), make_sample("train", 3, 9, seed=1)
    assert np.array_equal(pixels(a.image), pixels(b.image))
    assert np.array_equal(a.aus, b.aus) and a.identity == b.identity and a.expression == b.expression
    assert a.aus.dtype == np.float32 and a.aus.shape == (17,)
    assert a.identity == identity_seed("train", 3, 1)
    others = [make_sample("train", 3, k, seed=1).aus for k in range(10)]
    assert len({aus.tobytes() for aus in others}) > 5  # sample_index draws new expressions


def test_identities_differ():
    neutral = [pixels(render(seed, "Neutral")) for seed in range(6)]
    for i in range(len(neutral)):
        for j in range(i + 1, len(neutral)):
            assert np.abs(neutral[i] - neutral[j]).mean() > 10.0
    assert len({sample_identity(seed) for seed in range(50)}) == 50


def test_paired_renders_both_sides():
    identity = sample_identity(5)
    source, target = paired(identity, "Neutral", {"AU12": 0.8, "AU06": 0.6})
    assert np.array_equal(pixels(source), pixels(render(identity, EXPRESSIONS["Neutral"])))
    assert np.array_equal(pixels(target), pixels(render(identity, {"AU06": 0.6, "AU12": 0.8})))
    assert np.abs(pixels(source) - pixels(target)).mean() > 0.2


def test_other_sizes_render_the_same_face():
    small, large = pixels(render(9, "Surprise", size=64)), pixels(render(9, "Surprise", size=256))
    assert small.shape == (64, 64, 3) and large.shape == (256, 256, 3)
    reduced = large.reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))
    assert np.abs(reduced - small).mean() < 12.0


# ---------------------------------------------------------------------------------------------
# Action Units
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_zero_aus_are_exactly_neutral(seed):
    neutral = pixels(render(seed, np.zeros(17)))
    for spec in ("Neutral", {}, {"AU12": 0.0, "AU45": 0.0}, [0.0] * 17):
        assert np.array_equal(pixels(render(seed, spec)), neutral)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("au", AU_NAMES)
def test_each_au_moves_its_region_only(seed, au):
    neutral, moved = pixels(render(seed, {})), pixels(render(seed, {au: 1.0}))
    change = np.abs(moved - neutral).mean(axis=-1)
    inside = region_mask(seed, AU_REGIONS[au])
    assert change[inside].mean() > 0.5, f"{au} barely changes its region"
    assert change[~inside].mean() < change[inside].mean() / 8, f"{au} changes too much outside its region"
    if au in UPPER_ONLY:
        assert not change[face_depth(seed, "nose_tip") > 0].any(), f"{au} changed the lower face"
    if au in LOWER_ONLY:
        assert not change[face_depth(seed, "eye_left") < 0].any(), f"{au} changed the upper face"


@pytest.mark.parametrize("au", AU_NAMES)
def test_aus_act_continuously(au):
    seed = 11
    zero, tiny = pixels(render(seed, {})), pixels(render(seed, {au: 1e-4}))
    assert np.abs(tiny - zero).max() <= 1.0  # rounding only
    half, nudged, full = (pixels(render(seed, {au: value})) for value in (0.5, 0.52, 1.0))
    assert np.abs(nudged - half).mean() < 0.15 * np.abs(full - zero).mean()


def test_aus_combine():
    seed = 3
    brows, mouth = {"AU01": 0.8, "AU02": 0.8}, {"AU12": 0.8, "AU25": 0.6}
    both = pixels(render(seed, {**brows, **mouth}))
    only_brows, only_mouth, neutral = (pixels(render(seed, spec)) for spec in (brows, mouth, {}))
    upper = face_depth(seed, "eye_left") < 0
    lower = face_depth(seed, "nose_tip") > 0
    assert np.array_equal(both[upper], only_brows[upper])
    assert np.array_equal(both[lower], only_mouth[lower])
    assert np.abs(both - neutral)[upper].mean() > 0.2 and np.abs(both - neutral)[lower].mean() > 0.2


def test_presets_are_told_apart():
    seed = 4
    face = region_mask(seed, [(name, 0.5) for name in ("brow_left", "brow_right", "nose_tip", "mouth_centre", "chin")])
    faces = {name: pixels(render(seed, name))[face] for name in EXPRESSIONS}
    names = list(faces)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert np.abs(faces[first] - faces[second]).mean() > 0.5, (first, second)


def test_identity_detail_is_fixed_across_expressions():
    seed = 42
    happy = pixels(render(seed, {"AU12": 0.9, "AU25": 0.6, "AU26": 0.3}))
    sad = pixels(render(seed, {"AU15": 0.8, "AU17": 0.6, "AU20": 0.4}))
    forehead = region_mask(seed, [("forehead", 0.25)])
    detail_happy, detail_sad = high_pass(happy)[forehead], high_pass(sad)[forehead]
    assert detail_happy.std() > 0.5  # there is skin texture to keep
    assert np.array_equal(detail_happy, detail_sad)
    other = high_pass(pixels(render(43, {"AU12": 0.9})))[forehead]
    assert not np.array_equal(detail_happy, other)  # and it belongs to this identity


# ---------------------------------------------------------------------------------------------
# Sampling and datasets
# ---------------------------------------------------------------------------------------------


def test_sample_aus_prior():
    rng = np.random.default_rng(0)
    draws = [sample_aus(rng) for _ in range(2000)]
    names = [name for _, name in draws]
    assert all(aus.dtype == np.float32 and aus.shape == (17,) for aus, _ in draws)
    assert all(aus.min() >= 0 and aus.max() <= 1 for aus, _ in draws)
    assert 0.1 < names.count("Neutral") / len(names) < 0.2
    assert 0.2 < names.count(None) / len(names) < 0.4
    assert set(names) - {None} == set(EXPRESSIONS)
    assert all(not aus.any() for aus, name in draws if name == "Neutral")
    happy = np.mean([aus for aus, name in draws if name == "Happy"], axis=0)
    assert happy[AU_NAMES.index("AU12")] > 0.5 and happy[AU_NAMES.index("AU04")] < 0.1


def test_splits_use_disjoint_identities():
    train = {identity_seed("train", index, seed) for seed in range(3) for index in (0, 1, 999_999)}
    test = {identity_seed("test", index, seed) for seed in range(3) for index in (0, 1, 999_999)}
    assert len(train) == len(test) == 9 and not train & test
    with pytest.raises(ValueError, match="identity_index"):
        identity_seed("train", 1_000_000)
    with pytest.raises(ValueError, match="split"):
        identity_seed("validation", 0)


def test_build_dataset_schema():
    pytest.importorskip("datasets")  # the "train" extra
    train = build_dataset(2, 3, seed=0, split="train")
    test = build_dataset(2, 3, seed=0, split="test")
    assert train.features == dataset_features()
    assert len(train) == 6
    row = train[0]
    assert row["image"].size == (128, 128) and row["image"].mode == "RGB"
    assert len(row["aus"]) == 17 and all(0 <= value <= 1 for value in row["aus"])
    assert all(-1 <= label < len(EXPRESSIONS) for label in train["expression"])
    assert not set(train["identity"]) & set(test["identity"])
    first = make_sample("train", 0, 0)
    assert np.array_equal(pixels(row["image"]), pixels(first.image))
    assert np.allclose(row["aus"], first.aus)
    expected = -1 if first.expression is None else list(EXPRESSIONS).index(first.expression)
    assert row["expression"] == expected and row["identity"] == first.identity


def test_cli_writes_dataset_and_sheets(tmp_path):
    datasets = pytest.importorskip("datasets")  # the "train" extra

    out = tmp_path / "synthfacs"
    sheet, au_sheet = tmp_path / "sheet.png", tmp_path / "aus.png"
    sizes = ["--identities", "2", "--per-identity", "2", "--test-identities", "1", "--size", "64"]
    sheets = ["--contact-sheet", str(sheet), "--au-sheet", str(au_sheet)]
    args = synthetic.parse_args(["--out", str(out), *sizes, *sheets])
    synthetic.main(args)
    loaded = datasets.load_from_disk(str(out))
    assert {split: len(loaded[split]) for split in loaded} == {"train": 4, "test": 2}
    assert loaded["train"][0]["image"].size == (64, 64)
    assert sheet.stat().st_size > 0 and au_sheet.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aus.png", "sheet.png", "synthfacs"]  # no leftovers
    with pytest.raises(SystemExit):
        synthetic.parse_args(["--out", str(out)])  # exists, no --overwrite


def test_sheets_have_one_cell_per_face():
    sheet = expression_sheet([1, 2], cell=64)
    assert sheet.height == 64 * 2 + 64 // 6 and sheet.width > 64 * 8
    sweep = au_sweep_sheet(1, intensities=(0.0, 1.0), zoom=1)
    cell = round(2.4 * landmarks(1)["scale"][0])  # a face crop per cell
    assert sweep.height == cell * 17 + cell // 6 and sweep.width > cell * 2


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aus", "message"),
    [
        ({"AU12": 1.5}, "outside"),
        ({"AU12": -0.1}, "outside"),
        ([0.5] * 16, "17 values"),
        ({"AU99": 0.5}, "unknown Action Unit"),
        ({"AU12": float("nan")}, "finite"),
        ("Bored", "unknown expression"),
    ],
)
def test_bad_aus_are_rejected(aus, message):
    with pytest.raises(ValueError, match=message):
        render(1, aus)


@pytest.mark.parametrize(("size", "message"), [(130, "multiple of 4"), (60, "at least 64"), (128.0, "integer")])
def test_bad_sizes_are_rejected(size, message):
    with pytest.raises(ValueError, match=message):
        render(1, {}, size=size)


def test_bad_identities_and_indices_are_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        sample_identity(-1)
    with pytest.raises(ValueError, match="Identity"):
        render("alice", {})
    with pytest.raises(ValueError, match="sample_index"):
        make_sample("train", 0, -3)
    with pytest.raises(ValueError, match="at least one row"):
        build_dataset(0, 5)
