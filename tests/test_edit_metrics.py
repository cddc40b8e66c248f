"""Edit measures a generator cannot fool: chroma ratio, speckle share and landmark geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from wemgan import faces, metrics
from wemgan.aus import AU_NAMES
from wemgan.metrics import chroma, face_region, geometry, reference, speckle

needs_landmarks = pytest.mark.skipif(
    metrics.geometry_unavailable() is not None, reason=str(metrics.geometry_unavailable())
)


def _skin(n: int = 1, size: int = 128, seed: int = 0, noise: float = 4.0) -> np.ndarray:
    """N x size x size x 3 uint8: skin-coloured shading with mild texture, like a face crop."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    shade = 0.6 + 0.4 * np.exp(-((x - 0.5) ** 2 + (y - 0.45) ** 2) / 0.1)
    base = shade[..., None] * np.array([215.0, 160.0, 130.0])
    texture = rng.normal(0, noise, size=(n, size, size, 1))
    return np.clip(base + texture, 0, 255).round().astype(np.uint8)


def _blob(centre: tuple[float, float], size: int = 128, sigma: float = 10.0) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2))


# ------------------------------------------------------------------------------- face region
def test_face_mask_covers_the_template_face_and_not_the_corners():
    mask = metrics.face_mask(128)
    assert mask.shape == (128, 128) and mask.dtype == bool
    assert 0.4 < mask.mean() < 0.65
    for x, y in faces.template_pixels(faces.DEFAULT_TEMPLATE, 128):  # eye corners and nose
        assert mask[round(y), round(x)]
    assert mask[int(0.72 * 128), 64]  # the mouth (the template has no mouth point: 0.70 of the side on faces-au)
    for row, col in [(0, 0), (0, 127), (127, 0), (127, 127), (3, 64), (64, 2), (64, 125)]:
        assert not mask[row, col]
    assert not mask.flags.writeable  # cached: callers must not change it for everyone
    assert metrics.face_mask(64).shape == (64, 64)


# ------------------------------------------------------------------------------------ chroma
def test_chroma_ratio_is_small_for_brightness_and_large_for_a_hue_shift():
    source = _skin(2)
    darker = np.round(source * 0.8).astype(np.uint8)
    redder = np.clip(source.astype(int) + np.array([12, -4, -4]), 0, 255).astype(np.uint8)
    assert np.all(metrics.chroma_ratios(source, darker) < 0.3)
    assert np.all(metrics.chroma_ratios(source, redder) > 5)
    assert metrics.pooled_chroma_ratio(source, redder) > 20 * metrics.pooled_chroma_ratio(source, darker)


def test_chroma_ratio_hand_computed():
    """One of four pixels goes from grey 100 to (130, 100, 100): ΔL = 10 there, 0 elsewhere."""
    source = np.full((1, 2, 2, 3), 100, dtype=np.uint8)
    edit = source.copy()
    edit[0, 0, 0] = (130, 100, 100)
    delta_r = 130 / 333 - 100 / 303
    delta_g = 100 / 333 - 100 / 303
    expected = 1000 * ((abs(delta_r) + abs(delta_g)) / 4) / (10 / 4)
    region = np.ones((2, 2), dtype=bool)
    assert metrics.chroma_ratios(source, edit, region)[0] == pytest.approx(expected, rel=1e-12)
    assert metrics.pooled_chroma_ratio(source, edit, region) == pytest.approx(expected, rel=1e-12)
    # Only the region counts: outside it the change is invisible.
    outside = np.array([[False, True], [True, True]])
    assert np.isnan(metrics.chroma_ratios(source, edit, outside)[0])


def test_unchanged_pairs_give_no_nan_in_the_pooled_figures():
    source = _skin(3)
    edit = source.copy()
    edit[1] = np.clip(source[1].astype(int) + np.array([10, 0, -6]), 0, 255)  # only pair 1 changes
    assert np.isnan(metrics.chroma_ratios(source, edit)[[0, 2]]).all()
    assert np.isnan(metrics.speckle_shares(source, edit)[[0, 2]]).all()
    pooled = metrics.pooled_chroma_ratio(source, edit)
    assert np.isfinite(pooled) and pooled == pytest.approx(metrics.chroma_ratios(source[1:2], edit[1:2])[0])
    share = metrics.pooled_speckle_share(source, edit)
    assert np.isfinite(share) and share == pytest.approx(metrics.speckle_shares(source[1:2], edit[1:2])[0])
    # Pooling weighs pairs by their change, it does not average their ratios.
    moved = np.round(source * 0.7).astype(np.uint8)
    two = metrics.chroma_ratios(source[:2], np.stack([edit[1], moved[1]]))
    assert metrics.pooled_chroma_ratio(source[:2], np.stack([edit[1], moved[1]])) != pytest.approx(two.mean())
    # nan only when nothing in the whole set changes.
    assert np.isnan(metrics.pooled_chroma_ratio(source, source))
    assert np.isnan(metrics.pooled_speckle_share(source, source))


def test_inputs_are_checked():
    source = _skin(1)
    with pytest.raises(ValueError, match="uint8"):
        metrics.chroma_ratios(source, source.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        metrics.speckle_shares(source, source[:, :64])
    with pytest.raises(ValueError, match="region"):
        metrics.pooled_chroma_ratio(source, source, np.zeros((128, 128), dtype=bool))


# ----------------------------------------------------------------------------------- speckle
needs_opencv = pytest.mark.skipif(
    metrics.motion_compensation_unavailable() is not None, reason=str(metrics.motion_compensation_unavailable())
)


@needs_opencv
def test_moved_measures_forgive_motion_and_keep_painted_colour_and_smudges():
    """A red lip moved 3 px over skin changes colour at its edges like a blotch does (plain
    chroma ratio); once the source is moved onto the edit, only the painted blotch is left, and
    a grey patch, which the chroma ratio cannot see, is a smudge.
    (Smooth skin: resampling along a sub-pixel flow blurs pixel noise, which the moved speckle
    share counts; real crops keep ~0.05 of a warp's energy there, docs/research/measures.md.)"""
    skin = _skin(2, noise=0).astype(np.float64)
    lip = np.array([180.0, 60.0, 70.0])

    def with_lip(centre_y: float) -> np.ndarray:
        weight = _blob((64, centre_y), sigma=6)[None, ..., None]
        return np.clip(skin * (1 - weight) + lip * weight, 0, 255).round().astype(np.uint8)

    source, moved_lip = with_lip(80), with_lip(83)
    blotch = source.astype(np.float64) + 40 * _blob((40, 50), sigma=6)[None, ..., None] * np.array([1, -1, 1])
    blotch = np.clip(blotch, 0, 255).round().astype(np.uint8)
    motion = metrics.pooled_moved_measures(source, moved_lip)
    painted = metrics.pooled_moved_measures(source, blotch)
    assert metrics.pooled_chroma_ratio(source, moved_lip) > 5  # the plain ratio cannot tell
    assert motion["moved_chroma_ratio"] < 0.35 * metrics.pooled_chroma_ratio(source, moved_lip)
    assert painted["moved_chroma_ratio"] > 0.8 * metrics.pooled_chroma_ratio(source, blotch)
    assert motion["moved_speckle_share"] < metrics.pooled_speckle_share(source, moved_lip)
    assert painted["moved_speckle_share"] < 0.05  # a smooth blotch is no speckle, moved or not
    assert np.isnan(metrics.pooled_moved_measures(source, source)["moved_chroma_ratio"])  # no change at all
    # A soft patch is a smudge whether it changes colour or only light; moving the lip is not.
    greyed = np.clip(source.astype(np.float64) - 40 * _blob((40, 50), sigma=6)[None, ..., None], 0, 255)
    shaded = metrics.pooled_moved_measures(source, greyed.round().astype(np.uint8))
    assert painted["moved_smudge_share"] > 0.6 and motion["moved_smudge_share"] < 0.15
    # Optical flow explains part of a grey patch on textureless skin as motion; it stays 3x the lip's.
    assert shaded["moved_smudge_share"] > 3 * motion["moved_smudge_share"]
    assert shaded["moved_chroma_ratio"] < 0.5 * painted["moved_chroma_ratio"]  # what the chroma ratio misses


def test_speckle_share_is_small_for_a_smooth_change_and_large_for_dots():
    source = _skin(1, seed=1)
    base = source.astype(np.float64)
    before, after = _blob((60, 60)), _blob((63, 58))  # a soft shadow that moves by a few px
    moved = np.clip(base - 60 * after[None, ..., None] + 60 * before[None, ..., None], 0, 255).round()
    smooth = metrics.speckle_shares(source, moved.astype(np.uint8))[0]
    assert smooth < 0.05
    rng = np.random.default_rng(2)
    dots = source.copy()
    where = rng.random((128, 128)) < 0.05
    dots[0, where] = np.where(rng.random(where.sum()) < 0.5, 0, 255)[:, None]
    assert metrics.speckle_shares(source, dots)[0] > 0.5
    assert metrics.pooled_speckle_share(source, dots) > 10 * smooth


def test_speckle_of_a_uniform_change_is_zero():
    """A constant change survives the blur exactly (mirrored borders, normalised kernel): hf = 0."""
    source = _skin(1)
    brighter = (source.astype(int) + 9).clip(0, 255).astype(np.uint8)
    assert (brighter.astype(int) - source == 9).all()
    assert metrics.speckle_shares(source, brighter)[0] == pytest.approx(0, abs=1e-20)


def test_blur_kernel_and_scipy_agreement():
    kernel = speckle.gaussian_kernel(1.5)
    assert len(kernel) == 13 and kernel.sum() == pytest.approx(1) and kernel.argmax() == 6
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(0).normal(size=(2, 20, 17))
    expected = ndimage.gaussian_filter(x, (0, 1.5, 1.5), mode="reflect", truncate=4.0)
    np.testing.assert_allclose(speckle.gaussian_blur(x), expected, atol=1e-12)


# ---------------------------------------------------------------------------------- geometry
def _layout() -> np.ndarray:
    """A hand-made 68-point face: eye centres (40, 50) and (88, 50), so IOD 48; lids 6 px apart,
    brows 12 px above the eyes, mouth corners at y 96, inner lips at 94 and 100."""
    points = np.zeros((68, 2))
    right_eye = [(32, 50), (37, 47), (43, 47), (48, 50), (43, 53), (37, 53)]  # 36-41, subject's right
    points[36:42] = right_eye
    points[42:48] = [(128 - x, y) for x, y in [(48, 50), (43, 47), (37, 47), (32, 50), (37, 53), (43, 53)]]
    points[17:27] = [(28 + 8 * i, 38) for i in range(10)]
    points[48], points[54] = (48, 96), (80, 96)
    points[62], points[66] = (64, 94), (64, 100)
    return points


def test_geometry_measures_of_a_hand_made_layout():
    points = _layout()
    measures = metrics.geometry_measures(points)
    assert measures["lip_corner_lift"][0] == pytest.approx(1 / 48)
    assert measures["mouth_opening"][0] == pytest.approx(6 / 48)
    assert measures["brow_height"][0] == pytest.approx(12 / 48)
    assert measures["eye_opening"][0] == pytest.approx(6 / 48)
    smile = points.copy()
    smile[[48, 54], 1] -= 4.8  # corners up by a tenth of the IOD
    raised = metrics.geometry_measures(smile)
    assert raised["lip_corner_lift"][0] - measures["lip_corner_lift"][0] == pytest.approx(0.1)
    assert raised["mouth_opening"][0] == pytest.approx(measures["mouth_opening"][0])
    # Normalised by the IOD: the same face twice as large and elsewhere measures the same.
    moved = metrics.geometry_measures(np.stack([points, 2 * points + [5, -3]]))
    for name in geometry.MEASURES:
        assert moved[name][1] == pytest.approx(moved[name][0])
    with pytest.raises(ValueError, match="68"):
        metrics.geometry_measures(np.zeros((2, 5, 2)))


def test_packaged_calibration_and_reference_points():
    effects = metrics.natural_effects()
    assert set(effects) == set(metrics.AU_MEASURE) and set(metrics.AU_MEASURE) <= set(AU_NAMES)
    for name, entry in effects.items():
        assert entry["measure"] == metrics.AU_MEASURE[name]
        assert entry["effect"] == pytest.approx(entry["mean_shown"] - entry["mean_absent"], abs=2e-5)
        assert entry["n_shown"] > 0 and entry["n_absent"] > 1000
    assert effects["AU12"]["effect"] > 0.05  # lip corners rise in a smile (0.14 IOD)
    assert effects["AU25"]["effect"] > 0.05  # the lips part (0.18)
    assert effects["AU04"]["effect"] < 0  # the brows come down
    raising = ["AU01", "AU02", "AU05", "AU26"]
    assert all(effects[name]["effect"] > 0 for name in raising)
    # AU26's labels in faces-au are mostly closed mouths: a jaw drop is judged by how far real lips part
    calibration = geometry.CALIBRATION_FILE.read_text(encoding="utf-8")
    measured = json.loads(calibration)["effects"]
    assert measured["AU26"]["effect"] < 0.01 and geometry.EFFECT_OF == {"AU26": "AU25"}
    assert effects["AU26"] == measured["AU25"] and effects["AU25"] == measured["AU25"]
    assert all(effects[name]["effect"] < 0 for name in ["AU04", "AU06", "AU07", "AU15", "AU45"])
    assert '"../shared/data/faces-au"' in calibration and '"/' not in calibration  # no absolute path anywhere

    points = metrics.reference_points()
    video, darkening = points["video"], points["darkening"]
    assert 0.5 < video["chroma_ratio"] < 1.5 and 0.02 < video["speckle_share"] < 0.15
    assert darkening["chroma_ratio"] < 0.3 * video["chroma_ratio"]
    assert 0.2 < video["moved_chroma_ratio"] < video["chroma_ratio"]  # teeth and shading are not motion
    assert 0.05 < video["moved_smudge_share"] < 0.2 < 0.9 < darkening["moved_smudge_share"]  # light alone: all smudge
    assert video["geometry_change"]["lip_corner_lift"]["max"] > 0.1  # she laughs
    assert video["geometry_change"]["mouth_opening"]["mean"] > 0.1
    for name in geometry.MEASURES:
        assert abs(darkening["geometry_change"][name]["mean"]) < 0.05  # light alone moves no landmark


@needs_landmarks
def test_landmarks_on_real_expression_photos(photo_dir):
    names = ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg"]  # surprise, happy, anger
    crops = []
    for name in names:
        with Image.open(photo_dir / name) as image:
            crops.append(reference.aligned_crop(np.asarray(image.convert("RGB"))))
    crops = np.stack(crops)
    points = metrics.landmarks68(crops)
    inner = points[:, 17:]  # brows, eyes, nose, mouth (the jaw line may run past the crop's bottom)
    assert points.shape == (3, 68, 2) and (inner > 0).all() and (inner < 128).all()
    surprise, happy, anger = ({k: v[i] for k, v in metrics.geometry_measures(points).items()} for i in range(3))
    assert happy["lip_corner_lift"] > surprise["lip_corner_lift"] + 0.1  # measured 0.12 against -0.05
    assert surprise["eye_opening"] > happy["eye_opening"] + 0.03  # 0.15 against 0.08
    assert surprise["brow_height"] > anger["brow_height"] + 0.08  # 0.38 against 0.25
    # An unchanged edit changes nothing (same box, deterministic predictor); a darker one barely.
    for change in metrics.geometry_changes(crops[:1], crops[:1]).values():
        assert change[0] == 0
    darker = np.round(crops[:1] * 0.9).astype(np.uint8)
    assert all(abs(c[0]) < 0.05 for c in metrics.geometry_changes(crops[:1], darker).values())


@needs_landmarks
def test_following_is_one_for_a_transfer_that_becomes_the_reference_and_zero_for_no_change(photo_dir):
    crops = []
    for name in ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"]:
        with Image.open(photo_dir / name) as image:
            crops.append(reference.aligned_crop(np.asarray(image.convert("RGB"))))
    sources = np.stack(crops)
    references = np.roll(sources, 1, axis=0)
    assert all(value == 0 for value in metrics.following(sources, references, sources).values())
    became = metrics.following(sources, references, references)  # the reference itself, in the source's box
    assert all(value == pytest.approx(1, abs=0.15) for value in became.values()), became
    mirrored = metrics.following(sources, references, references[:, :, ::-1])  # the same geometry, mirrored
    assert mirrored["mouth_opening"] == pytest.approx(became["mouth_opening"], abs=0.15)


def test_face_region_helpers_reject_non_square_crops_without_a_region():
    with pytest.raises(ValueError, match="square"):
        face_region.region_for((1, 64, 96, 3), None)
    with pytest.raises(ValueError, match="square"):
        chroma.chroma_ratios(_skin(1)[:, :64], _skin(1)[:, :64])
    small = _skin(1, size=64)
    assert np.isnan(chroma.chroma_ratios(small, small)).all()  # a 64 crop gets its own face ellipse
