"""The smile's brightness patterns (wemgan.landmark_appearance): fitted from faces, brightness only,
on the skin only, carried by the landmarks, and exactly nothing for no change."""

from __future__ import annotations

import numpy as np
import torch
from test_landmark_motion import SIZE, drawn_face_landmarks, fixed_landmarks

from wemgan.aus import AU_NAMES
from wemgan.editor import LandmarkEditor
from wemgan.landmark_appearance import APPEARANCE_AUS, MAP_SIZE, appearance_shading, packaged_maps, with_appearance
from wemgan.landmark_fit import fit_maps, skin_mask
from wemgan.landmark_regressor import LandmarkRegressor

AU12 = AU_NAMES.index("AU12")


def smile(value: float = 0.8) -> torch.Tensor:
    u = torch.zeros(1, 17)
    u[0, AU12] = value
    return u


def test_fit_recovers_a_fold_that_darkens_with_the_au_and_leaves_other_aus_flat():
    """Faces whose cheek carries a dark line as deep as their AU12 label: the AU12 map has the line
    (negative there, flat beside it), AU06's map is flat, and nothing is kept off the skin."""
    rng = np.random.default_rng(0)
    n = 96
    labels = np.zeros((n, 17), dtype=np.float32)
    labels[:, AU12] = rng.uniform(0, 1, n)
    labels[:, AU_NAMES.index("AU06")] = rng.uniform(0, 1, n)  # independent of the line
    images = np.full((n, SIZE, SIZE, 3), 150.0)
    images[:, 70:90, 42:44] *= np.exp(-0.3 * labels[:, AU12]).reshape(-1, 1, 1, 1)  # a fold on the left cheek
    images += rng.normal(0, 2, images.shape)
    landmarks = drawn_face_landmarks().expand(n, -1, -1).numpy()
    mean, maps = fit_maps(images.clip(0, 255).astype(np.uint8), labels, landmarks)
    assert maps.shape == (len(APPEARANCE_AUS), MAP_SIZE, MAP_SIZE) and mean.shape == (68, 2)
    fold = maps[APPEARANCE_AUS.index("AU12")]
    assert fold[37:43, 21].mean() < -0.1  # the line, at half resolution
    assert fold[37:43, 28].abs().max() < 0.03  # 14 px beside it
    assert maps[APPEARANCE_AUS.index("AU06")].abs().max() < 0.05
    assert fold[26, 22].abs() < 1e-3  # the left eye (drawn at 44, 52) is not skin


def test_shading_is_nothing_for_no_change_and_stays_on_the_skin():
    mean, maps = packaged_maps()
    landmarks = drawn_face_landmarks()
    assert appearance_shading(landmarks, torch.zeros(1, 17), mean, maps, SIZE, 32).abs().max() == 0
    shading = appearance_shading(landmarks, smile(), mean, maps, SIZE, 32)
    strongest = shading.abs().max()
    assert strongest > 0.05  # the packaged fit changes a smiling face
    assert shading[0, 0, 51:54, 41:48].abs().max() < 0.1 * strongest  # the eye (drawn at 44, 52)
    assert shading[0, 0, 93:96, 58:70].abs().max() < 0.01 * strongest  # between the lips
    assert shading[0, 0, :, :10].abs().max() < 0.05 * strongest and shading[0, 0, :20].abs().max() < 0.01
    assert (skin_mask(landmarks, SIZE)[0, 0, 52, 44] == 0) and (skin_mask(landmarks, SIZE)[0, 0, 75, 40] > 0.9)


def test_with_appearance_scales_r_g_and_b_alike_and_returns_the_image_for_no_shading():
    image = torch.rand(1, 3, SIZE, SIZE) * 1.9 - 0.9  # brightness >= 0.05: the ratio below is defined
    assert torch.equal(with_appearance(image, torch.zeros(1, 1, SIZE, SIZE)), image)
    shading = torch.full((1, 1, SIZE, SIZE), -0.1)
    darker = with_appearance(image, shading)
    ratio = (darker + 1) / (image + 1)
    assert torch.allclose(ratio, torch.full_like(ratio, float(np.exp(-0.1))), atol=1e-4)  # no colour change


def test_an_editor_with_appearance_darkens_the_folds_of_a_smile_and_keeps_no_change_exact():
    torch.manual_seed(0)
    regressor = LandmarkRegressor(SIZE)
    editor, with_skin = (LandmarkEditor.from_fits(regressor, appearance=skin) for skin in (False, True))
    for e in (editor, with_skin):
        fixed_landmarks(e, drawn_face_landmarks())
    x = torch.full((1, 3, SIZE, SIZE), 0.2)
    with torch.no_grad():
        assert torch.equal(with_skin(x, torch.zeros(1, 17)).image, x)
        moved, shaded = editor(x, smile()).image, with_skin(x, smile()).image
    change = shaded - moved
    assert change.abs().max() > 0.01
    # A grey face changes grey: R, G and B alike.
    assert torch.allclose(change, change[:, :1].expand_as(change))
