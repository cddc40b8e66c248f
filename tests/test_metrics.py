"""Each metric against cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wemgan import metrics
from wemgan.aus import EXPRESSIONS
from wemgan.data import synthetic
from wemgan.metrics import acd, ed, fid_is, paired

# SSIM comes from scikit-image (the `eval` extra); without it SSIM is reported unavailable.
needs_skimage = pytest.mark.skipif(metrics.ssim_unavailable() is not None, reason="scikit-image not installed")


def _images(seed: int = 0, n: int = 2, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(n, size, size, 3))


# ------------------------------------------------------------------------------ reconstruction
@needs_skimage
def test_identical_images_score_perfectly():
    a = _images()
    assert np.all(metrics.l1(a, a) == 0)
    assert np.all(metrics.psnr(a, a) == metrics.PSNR_CAP)
    assert np.allclose(metrics.ssim(a, a), 1.0)


@needs_skimage
def test_constant_shift_has_known_l1_and_psnr():
    a = _images() * 0.8
    b = a + 0.1  # MSE 0.01 -> PSNR 20 dB
    assert np.allclose(metrics.l1(a, b), 0.1)
    assert np.allclose(metrics.psnr(a, b), 20.0)
    # SSIM ignores a uniform brightness shift only in its structure term: below 1, above noise.
    assert np.all((metrics.ssim(a, b) < 1) & (metrics.ssim(a, b) > 0.5))


@needs_skimage
def test_ssim_matches_a_direct_computation_for_constant_images():
    """For constant images the SSIM formula reduces to the luminance term (2 m1 m2 + C1) / (m1² + m2² + C1)."""
    a, b = np.full((1, 16, 16, 3), 0.2), np.full((1, 16, 16, 3), 0.6)
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
    assert metrics.ssim(a, b)[0] == pytest.approx(expected, rel=1e-6)


@needs_skimage
def test_noise_lowers_ssim_and_psnr_monotonically():
    a = _images()
    noise = np.random.default_rng(1).normal(size=a.shape)
    weak, strong = np.clip(a + 0.02 * noise, 0, 1), np.clip(a + 0.2 * noise, 0, 1)
    assert np.all(metrics.ssim(a, weak) > metrics.ssim(a, strong))
    assert np.all(metrics.psnr(a, weak) > metrics.psnr(a, strong))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        metrics.l1(_images(size=32), _images(size=16))


def test_tensor_conversion_maps_the_model_range_to_unit_and_uint8():
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert np.allclose(metrics.to_unit(x)[0, 0, 0], [0, 0.5, 1])
    assert metrics.to_uint8(x)[0, 0, 0].tolist() == [0, 128, 255]


# ------------------------------------------------------------------------------------ FID / IS
def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    """Diagonal covariances: ||mu1 - mu2||² + sum_i (sqrt(s1_i) - sqrt(s2_i))²."""
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_a_full_covariance_with_itself_is_zero():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    mu, sigma = metrics.feature_statistics(features)
    assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    assert metrics.frechet_distance(mu, sigma, mu + 2.0, sigma) == pytest.approx(4.0 * 8, rel=1e-6)


def test_frechet_distance_matches_scipy_sqrtm_on_full_rank_covariances():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + np.eye(6), b @ b.T + np.eye(6)
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy_linalg.sqrtm(s1 @ s2).real)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)


def test_frechet_distance_with_fewer_samples_than_dimensions_is_finite():
    """Singular covariances (the usual case for small evaluations) still give a finite, real distance."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 32)), rng.normal(size=(5, 32)) + 1.0
    distance = metrics.frechet_distance(*metrics.feature_statistics(a), *metrics.feature_statistics(b))
    assert math.isfinite(distance) and distance > 32 * 0.5


def test_inception_score_of_uniform_and_one_hot_predictions():
    classes = 10
    assert metrics.inception_score(np.zeros((40, classes)))[0] == pytest.approx(1.0)
    one_hot = np.eye(classes)[np.arange(40) % classes] * 100.0  # confident and evenly spread: IS = #classes
    mean, std = metrics.inception_score(one_hot, splits=1)
    assert mean == pytest.approx(classes, rel=1e-6) and std == 0
    collapsed = np.tile(np.eye(classes)[0] * 100.0, (40, 1))  # confident but one class: IS = 1
    assert metrics.inception_score(collapsed)[0] == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_inception_network_interface_is_checked(tmp_path):
    class Net(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pooled = images.float().mean(dim=(2, 3))
            return pooled.repeat(1, 4), pooled[:, :2]

    path = tmp_path / "inception.pt"
    torch.jit.script(Net()).save(str(path))
    assert metrics.inception_unavailable(path) is None
    features, logits = fid_is.inception_outputs(fid_is.load_inception(path), (_images(n=5) * 255).astype(np.uint8), 2)
    assert features.shape == (5, 12) and logits.shape == (5, 2)
    assert "--inception" in metrics.inception_unavailable(None)
    assert "does not exist" in metrics.inception_unavailable(tmp_path / "missing.pt")


# ------------------------------------------------------------------------------------------- ED
def test_expression_distance_is_the_l2_norm():
    target = np.zeros((2, 17))
    measured = np.zeros((2, 17))
    measured[0, :4] = 0.5  # sqrt(4 * 0.25) = 1
    assert metrics.expression_distances(measured, target).tolist() == [1.0, 0.0]


def test_estimator_errors_are_mae_and_mean_per_au_correlation():
    labels = np.array([[0.0, 0.2, 0.5], [0.5, 0.4, 0.5], [1.0, 0.6, 0.5]])
    measured = np.array([[0.1, 0.6, 0.4], [0.5, 0.4, 0.5], [0.9, 0.2, 0.6]])  # AU 2 anti-correlated
    scores = metrics.estimator_errors(measured, labels)
    assert scores["au_mae"] == pytest.approx(np.abs(measured - labels).mean())
    assert scores["au_pcc"] == pytest.approx((1.0 + -1.0) / 2)  # the constant third AU is left out
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.estimator_errors(measured[:1], labels[:1])


def test_openface_aus_are_read_by_name_and_scaled(tmp_path):
    from wemgan.aus import AU_NAMES

    header = ["frame", "face_id", "confidence", *(f"{name}_r" for name in AU_NAMES), "AU28_c"]
    for name, value, confidence in (("00000", 5.0, 0.9), ("00001", 2.5, 0.9)):
        rows = [header, ["1", "0", str(confidence), *[str(value)] * 17, "1"]]
        rows.append(["1", "1", "0.1", *["0"] * 17, "0"])  # a less confident second face is ignored
        (tmp_path / f"{name}.csv").write_text("\n".join(", ".join(row) for row in rows) + "\n")
    aus = ed.read_openface_aus(tmp_path, ["00001", "00000"])
    assert np.allclose(aus[0], 0.5) and np.allclose(aus[1], 1.0)
    with pytest.raises(ValueError, match="no AUs for 1 of 3"):
        ed.read_openface_aus(tmp_path, ["00000", "00001", "00002"])


# ------------------------------------------------------------------------------------------ ACD
@pytest.mark.skipif(acd.acd_unavailable() is not None, reason="faces extra not installed")
def test_acd_is_zero_for_the_same_image_and_larger_for_another_identity():
    first = np.asarray(synthetic.render(synthetic.identity_seed("test", 0), "Neutral"))
    same = np.asarray(synthetic.render(synthetic.identity_seed("test", 0), "Happy"))
    other = np.asarray(synthetic.render(synthetic.identity_seed("test", 1), "Neutral"))
    distances = acd.content_distances(np.stack([first, first, first]), np.stack([first, same, other]))
    assert distances[0] == pytest.approx(0.0, abs=1e-6)
    assert distances[1] < distances[2]


def test_acd_reports_a_missing_faces_extra(monkeypatch):
    monkeypatch.setattr(acd.faces, "available", lambda: False)
    assert "not installed" in acd.acd_unavailable()


# --------------------------------------------------------------------------------------- paired
@needs_skimage
def test_paired_scores_reward_an_edit_that_reaches_the_truth():
    seeds = [synthetic.identity_seed("test", i) for i in range(2)]
    source_aus = np.zeros((2, 17), np.float32)
    target_aus = np.stack([EXPRESSIONS["Happy"], EXPRESSIONS["Surprise"]]).astype(np.float32)
    sources = paired.ground_truth(seeds, source_aus).astype(np.float64) / 255
    truths = paired.ground_truth(seeds, target_aus).astype(np.float64) / 255
    perfect = paired.paired_scores(truths, sources, truths)
    assert perfect["paired_l1"] == 0 and perfect["paired_l1_gain"] > 0
    assert perfect["paired_psnr"] == metrics.PSNR_CAP and perfect["paired_ssim_gain"] > 0
    unchanged = paired.paired_scores(sources, sources, truths)
    assert unchanged["paired_l1_gain"] == 0 and unchanged["paired_psnr_gain"] == 0
