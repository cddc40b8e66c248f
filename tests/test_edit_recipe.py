"""The recipe options that are not the paper's: warp/mask generator heads, resize upsampling, the
robust expression loss, the stand-alone AU training (estimator, judge) and its calibration."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

from wemgan.au_estimator import AUEstimator, QuantileCalibration
from wemgan.au_training import sampling_weights
from wemgan.augment import augment, judging_views
from wemgan.aus import AU_NAMES
from wemgan.generator import MAX_FLOW, Generator, warp
from wemgan.losses import LossWeights, edit_regularisation, flow_folding, robust_expression_loss
from wemgan.metrics.au_judge import AUJudge

SMALL = dict(base_channels=8, max_channels=32, skip_levels=5)


def test_warp_of_zero_flow_is_the_identity_and_a_flow_moves_pixels():
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(warp(x, torch.zeros(2, 2, 16, 16)), x)
    flow = torch.zeros(2, 2, 16, 16)
    flow[:, 0] = 2 / 64  # one pixel to the right, in [-1, 1] units
    assert torch.allclose(warp(x, flow)[..., :-1], x[..., 1:], atol=1e-6)


@pytest.mark.parametrize("output", ["mask", "warp"])
def test_untrained_mask_and_warp_heads_start_as_copies_of_the_input(output):
    torch.manual_seed(0)
    g = Generator(**SMALL, output=output)
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    edited, parts = g(x, torch.rand(2, 17), return_parts=True)
    assert (edited - x).abs().mean() < 0.03  # mask ≈ 0.02 everywhere, flow exactly 0
    assert parts["mask"].shape == (2, 1, 128, 128)
    if output == "warp":
        assert parts["flow"].shape == (2, 2, 32, 32) and parts["flow"].abs().max() == 0


def test_flow_resolution_sets_the_flow_grid_and_survives_save_and_load(tmp_path):
    from wemgan import WEMGAN

    torch.manual_seed(0)
    model = WEMGAN(base_channels=8, max_channels=32, generator_output="warp", flow_resolution=16)
    with torch.no_grad():
        model.generator.to_flow.bias.fill_(0.5)
    _, parts = model.generator(torch.zeros(1, 3, 128, 128), torch.zeros(1, 17), return_parts=True)
    assert parts["flow"].shape == (1, 2, 16, 16)
    model.save_pretrained(tmp_path)
    loaded = WEMGAN.from_pretrained(tmp_path)
    assert loaded.generator.flow_depth == model.generator.flow_depth == 3
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    assert torch.equal(loaded.generator(x, torch.ones(1, 17)), model.generator(x, torch.ones(1, 17)))


def test_warp_output_blends_flowed_input_and_colour_by_the_mask():
    g = Generator(**SMALL, output="warp")
    with torch.no_grad():
        g.to_flow.bias.fill_(10.0)  # saturates: flow = MAX_FLOW everywhere
        g.to_mask.bias.fill_(-50.0)  # mask 0: the output is the warped input only
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    edited, parts = g(x, torch.zeros(1, 17), return_parts=True)
    assert torch.allclose(parts["flow"], torch.full_like(parts["flow"], MAX_FLOW), atol=1e-6)
    assert torch.allclose(edited, warp(x, parts["flow"]), atol=1e-5)
    with torch.no_grad():
        g.to_mask.bias.fill_(50.0)  # mask 1: the colour head's image
    painted, _ = g(x, torch.zeros(1, 17), return_parts=True)
    assert not torch.allclose(painted, warp(x, parts["flow"]), atol=1e-2)
    assert painted.abs().max() <= 1  # the tanh colour image


def test_resize_upsampling_replaces_every_transposed_conv():
    paper = Generator(**SMALL)
    resize = Generator(**SMALL, upsample="resize")
    assert any(isinstance(m, nn.ConvTranspose2d) for m in paper.modules())
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in resize.modules())
    assert resize(torch.zeros(1, 3, 128, 128), torch.zeros(1, 17)).shape == (1, 3, 128, 128)


def test_paper_generator_is_unchanged_by_the_new_options():
    g = Generator(**SMALL)
    assert g.output == "image" and not hasattr(g, "to_mask") and not hasattr(g, "to_flow")
    x = torch.rand(1, 3, 128, 128)
    out, parts = g(x, torch.zeros(1, 17), return_parts=True)
    assert parts == {} and torch.equal(out, g(x, torch.zeros(1, 17)))
    assert edit_regularisation(parts, LossWeights()) == {}


@pytest.mark.parametrize("kwargs", [dict(output="paint"), dict(upsample="bicubic"), dict(flow_resolution=20)])
def test_bad_options_are_rejected(kwargs):
    with pytest.raises(ValueError, match="must be"):
        Generator(**SMALL, **kwargs)


def test_edit_regularisation_penalises_mask_area_mask_edges_and_rough_flow():
    weights = LossWeights()
    smooth = {"mask": torch.zeros(1, 1, 8, 8), "flow": torch.ones(1, 2, 4, 4)}
    terms = edit_regularisation(smooth, weights)
    assert set(terms) == {"mask", "mask_tv", "flow"} and all(v == 0 for v in terms.values())
    dots = torch.zeros(1, 1, 8, 8)
    dots[..., ::2, ::2] = 1
    rough = {"mask": dots, "flow": torch.randn(1, 2, 4, 4)}
    terms = edit_regularisation(rough, weights)
    assert terms["mask"] == pytest.approx(weights.lambda_mask * 0.25)
    assert terms["mask_tv"] > 0 and terms["flow"] > 0


def test_the_fold_penalty_sees_folds_and_squeezes_but_not_smooth_motion():
    size = 32
    xs = torch.linspace(-1 + 1 / size, 1 - 1 / size, size)
    shift = torch.zeros(1, 2, size, size)
    shift[:, 0] = 0.15  # the whole face moves right: nothing folds
    assert flow_folding(shift) == 0
    mirror = torch.zeros(1, 2, size, size)
    mirror[:, 0] = -2 * xs.view(1, size)  # p + f(p) = -p: the image folded over itself, det = -1
    assert flow_folding(mirror) == pytest.approx((0.5 + 1) ** 2, rel=1e-3)
    squeeze = torch.zeros(1, 2, size, size)
    squeeze[:, 1] = -0.8 * xs.view(size, 1)  # everything pressed to a fifth of its height, det = 0.2
    assert flow_folding(squeeze) == pytest.approx(0.3**2, rel=1e-3)
    weights = LossWeights(lambda_fold=10.0)
    assert edit_regularisation({"flow": mirror}, weights)["fold"] == pytest.approx(10 * 1.5**2, rel=1e-3)
    assert "fold" not in edit_regularisation({"flow": mirror}, LossWeights())  # off by default: the D recipe


def test_the_flow_magnitude_penalty_is_the_mean_absolute_motion_and_off_by_default():
    flow = torch.zeros(1, 2, 16, 16)
    flow[..., :4, :4] = 0.1  # a sixteenth of the grid moves: mean |flow| = 0.1 / 16
    assert "flow_magnitude" not in edit_regularisation({"flow": flow}, LossWeights())
    terms = edit_regularisation({"flow": flow}, LossWeights(lambda_flow_magnitude=100.0))
    assert terms["flow_magnitude"] == pytest.approx(100 * 0.1 / 16)


def test_judging_views_wash_out_pixel_speckles_but_keep_shapes():
    rng = torch.Generator().manual_seed(0)
    speckles = torch.zeros(1, 3, 128, 128)
    speckles[..., ::2, ::2] = 1.0  # a dot pattern of amplitude 1
    shape = torch.zeros(1, 3, 128, 128)
    shape[..., 40:90, 40:90] = 1.0  # a large blob of the same amplitude
    seen_speckles = judging_views(speckles, rng) - judging_views(torch.zeros_like(speckles), rng)
    seen_shape = judging_views(shape, rng) - judging_views(torch.zeros_like(shape), rng)
    assert seen_speckles.std() < 0.15 * speckles.std()  # dots become a flat grey
    assert seen_shape[..., 55:75, 55:75].mean() > 0.8  # the blob survives


def test_judging_views_run_under_bfloat16_autocast():
    x = torch.rand(2, 3, 128, 128).bfloat16()
    with torch.autocast("cpu", torch.bfloat16):
        assert judging_views(x, torch.Generator().manual_seed(0)).isfinite().all()


def test_robust_expression_loss_reaches_the_generator_output():
    estimator = AUEstimator(17, 8, 16)
    fake = (torch.rand(2, 3, 128, 128) * 2 - 1).requires_grad_(True)
    loss = robust_expression_loss(estimator, fake, torch.full((2, 17), 0.5), torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.ndim == 0 and fake.grad.abs().sum() > 0


def test_quantile_calibration_undoes_shrinkage_and_keeps_order():
    calibration = QuantileCalibration(2, 33)
    values = torch.rand(5, 2)
    assert torch.allclose(calibration(values), values, atol=1e-6)  # identity before fitting
    labels = torch.rand(4000, 2)
    shrunk = 0.3 + 0.4 * labels  # a squared-error regressor's pull towards the mean
    calibration.fit(shrunk, labels)
    assert torch.allclose(calibration(shrunk), labels, atol=0.03)
    ordered = calibration(torch.linspace(0, 1, 50).unsqueeze(1).expand(50, 2))
    assert (ordered.diff(dim=0) >= 0).all() and ordered.min() >= 0 and ordered.max() <= 1


def test_estimator_without_calibration_keeps_the_old_state_dict():
    assert set(AUEstimator(17, 8, 16).state_dict()) == {
        k for k in AUEstimator(17, 8, 16, calibration_knots=5).state_dict() if not k.startswith("calibration")
    }
    calibrated = AUEstimator(17, 8, 16, calibration_knots=5)
    assert calibrated.calibration_knots == 5 and AUEstimator(17, 8, 16).calibration_knots == 0
    x = torch.rand(2, 3, 128, 128)
    assert torch.equal(calibrated(x), calibrated(x, calibrated=False))  # identity knots


def test_sampling_weights_favour_faces_with_rare_aus():
    aus = torch.zeros(100, 17)
    aus[:50, 8] = 0.5  # AU12 common
    aus[50:52, 15] = 0.5  # AU26 rare
    weights = sampling_weights(aus, max_oversample=6.0)
    assert weights[50] > weights[0] > 0 and weights[50] / weights[0] == pytest.approx(6.0)
    assert weights.mean() == pytest.approx(1.0)


def test_augment_is_seeded_and_in_range():
    images = (torch.rand(4, 3, 128, 128) * 255).byte()
    a = augment(images, torch.Generator().manual_seed(3))
    b = augment(images, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.min() >= -1 and a.max() <= 1 and a.shape == (4, 3, 128, 128)


def test_judge_architecture_differs_from_the_estimator():
    judge, estimator = AUJudge(), AUEstimator()
    assert any(isinstance(m, nn.BatchNorm2d) for m in judge.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in estimator.modules())
    assert judge.eval()(torch.rand(2, 3, 128, 128)).shape == (2, 17)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    pytest.importorskip("datasets")
    from wemgan.data.datasets import build_uint8_cache

    root = tmp_path_factory.mktemp("synth")
    for split in ("train", "test"):
        build_uint8_cache("synthfacs", root / split, split, n_identities=6, per_identity=8)
    return root


def run_au_training(tiny_cache, out, network, *extra):
    from wemgan import au_training

    args = au_training.parse_args([
        "--network", network, "--data", str(tiny_cache / "train"), "--test_data", str(tiny_cache / "test"),
        "--out", str(out), "--steps", "4", "--batch_size", "8", "--holdout", "16", "--checkpoint_steps", "2",
        "--base_channels", "8", "--max_channels", "16", "--widths", "8", "16", "--calibration_knots", "9", *extra,
    ])  # fmt: skip
    au_training.main(args)
    return json.loads((out / "report.json").read_text())


def test_au_training_writes_model_record_and_report(tiny_cache, tmp_path):
    report = run_au_training(tiny_cache, tmp_path / "estimator", "estimator")
    assert {"au_mae", "au_pcc", "pcc_common", "strong_decile_ratio"} <= set(report["test"])
    record = json.loads((tmp_path / "estimator" / "model.json").read_text())
    assert record["estimator_calibration_knots"] == 9 and record["steps"] == 4
    estimator = AUEstimator(17, 8, 16, calibration_knots=9)
    estimator.load_state_dict(safetensors.torch.load_file(tmp_path / "estimator" / "model.safetensors"))
    assert not torch.allclose(estimator.calibration.inputs[0], torch.linspace(0, 1, 9))  # fitted
    judge_report = run_au_training(tiny_cache, tmp_path / "judge", "judge")
    assert "test_uncalibrated" not in judge_report
    assert not any(p.name.startswith(".") for p in (tmp_path / "judge").iterdir())  # no half-written files


def test_train_with_warp_head_and_frozen_robust_estimator(tiny_cache, tmp_path):
    from tests.test_train import train  # the tiny-network launcher
    from wemgan import WEMGAN

    run_au_training(tiny_cache, tmp_path / "estimator", "estimator")
    out = tmp_path / "run"
    train(out, "--dataset", str(tiny_cache / "train"), "--max_train_steps", "4", "--n_critic", "2",
          "--generator_output", "warp", "--upsample", "resize", "--skip_levels", "5",
          "--expression_loss", "estimator", "--estimator_path", str(tmp_path / "estimator"))  # fmt: skip
    model = WEMGAN.from_pretrained(out / "hub")
    assert model.generator.output == "warp" and model.au_estimator.calibration is not None
    frozen = safetensors.torch.load_file(tmp_path / "estimator" / "model.safetensors")
    exported = {k: v for k, v in model.au_estimator.state_dict().items()}
    assert all(torch.equal(frozen[k], exported[k].float()) for k in frozen)  # shipped as trained, untouched
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"g/mask", "g/mask_tv", "g/flow", "g/cond"} <= set(logged[0]) and "estimator/loss" not in logged[0]
    face = np.zeros((128, 128, 3), np.uint8)
    assert np.array_equal(model.edit(face, delta=np.zeros(17)), face)  # zero edits stay exact


def test_export_swaps_in_a_stand_alone_estimator_and_keeps_the_generator(tiny_cache, tmp_path):
    import subprocess

    from wemgan import WEMGAN

    run_au_training(tiny_cache, tmp_path / "estimator", "estimator")
    torch.manual_seed(0)
    WEMGAN(base_channels=8, max_channels=16, provenance={"steps": 3}).save_pretrained(tmp_path / "model")
    subprocess.run(
        [sys.executable, "hub/export.py", str(tmp_path / "model"), "--estimator", str(tmp_path / "estimator"),
         "--out", str(tmp_path / "swapped")],
        check=True, capture_output=True,
    )  # fmt: skip
    before, after = WEMGAN.from_pretrained(tmp_path / "model"), WEMGAN.from_pretrained(tmp_path / "swapped")
    assert all(torch.equal(v, after.generator.state_dict()[k]) for k, v in before.generator.state_dict().items())
    trained = safetensors.torch.load_file(tmp_path / "estimator" / "model.safetensors")
    assert all(torch.equal(v, after.au_estimator.state_dict()[k]) for k, v in trained.items())
    assert after.provenance["steps"] == 3 and after.provenance["estimator"]["steps"] == 4
    from wemgan.au_training import load_trained_estimator  # a Hub folder lends its estimator to a new run

    lent, record = load_trained_estimator(tmp_path / "swapped")
    assert all(torch.equal(v, lent.state_dict()[k]) for k, v in trained.items())
    assert record["steps"] == 4 and record["estimator_calibration_knots"] == 9 and record["network"] == "estimator"
    missing = subprocess.run(
        [sys.executable, "hub/export.py", str(tmp_path / "model"), "--estimator", str(tmp_path / "nothing"),
         "--out", str(tmp_path / "never")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode != 0 and "python -m wemgan.au_training" in missing.stderr
    assert not (tmp_path / "never").exists()


def test_export_switches_a_motion_prior_generator_to_its_prior_with_a_mouth_cavity(tmp_path):
    import subprocess

    from wemgan import WEMGAN

    torch.manual_seed(0)
    kwargs = dict(base_channels=8, max_channels=16, generator_output="warp", upsample="resize", motion_prior=True)
    model = WEMGAN(**kwargs, provenance={"steps": 3})
    with torch.no_grad():
        model.generator.to_flow.weight.normal_(0, 0.1)  # a learnt flow and colour, as training leaves them
    model.save_pretrained(tmp_path / "model")
    subprocess.run(
        [sys.executable, "hub/export.py", str(tmp_path / "model"), "--prior-only", "--mouth-cavity",
         "--appearance", "--motion-strength", "0.5", "--out", str(tmp_path / "prior")],
        check=True, capture_output=True,
    )  # fmt: skip
    prior = WEMGAN.from_pretrained(tmp_path / "prior")
    assert prior.generator.mouth_cavity and prior.provenance["steps"] == 3
    changes = {"mouth_cavity": True, "prior_only": True, "appearance": True, "motion_strength": 0.5}
    assert prior.provenance["prior_changes"] == changes
    from wemgan.landmark_appearance import packaged_maps

    assert torch.equal(prior.generator.appearance_maps, packaged_maps()[1] * 0.5)  # scaled with the motion
    assert torch.equal(prior.generator.motion_basis, model.generator.motion_basis * 0.5)
    assert prior.generator.prior_only and not hasattr(prior.generator, "encoder")  # no network is kept
    assert "No part trained adversarially" in (tmp_path / "prior" / "README.md").read_text()  # the card says so
    for name, value in prior.generator.landmark_regressor.state_dict().items():
        assert torch.equal(value, model.generator.landmark_regressor.state_dict()[name])
    # The same edit as the full generator with its learnt flow and colour switched off.
    switched_off = WEMGAN(**kwargs, mouth_cavity=True, appearance=True)
    switched_off.load_state_dict(model.state_dict(), strict=False)  # its appearance maps are its own
    with torch.no_grad():
        switched_off.generator.to_flow.weight.zero_(), switched_off.generator.to_mask.bias.fill_(-30.0)
        switched_off.generator.motion_basis *= 0.5
        switched_off.generator.appearance_maps *= 0.5
    from test_landmark_motion import drawn_face_landmarks, fixed_landmarks

    for generator in (prior.generator, switched_off.generator):
        fixed_landmarks(generator, drawn_face_landmarks())
    face, u = torch.rand(1, 3, 128, 128) * 2 - 1, torch.zeros(1, 17)
    u[0, [AU_NAMES.index("AU12"), AU_NAMES.index("AU26")]] = 0.8
    with torch.no_grad():
        assert torch.equal(prior.generator(face, torch.zeros(1, 17)), face)  # the prior alone: no change is exact
        edited = prior.generator(face, u)
        assert (edited - face).abs().max() > 0.1
        torch.testing.assert_close(edited, switched_off.generator(face, u), atol=1e-5, rtol=0)
    refused = subprocess.run(
        [sys.executable, "hub/export.py", str(tmp_path / "model"), "--motion-strength", "3", "--out",
         str(tmp_path / "never")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode != 0 and "(0, 2]" in refused.stderr and not (tmp_path / "never").exists()


def test_robust_expression_loss_needs_an_estimator():
    import train_accelerate as ta

    with pytest.raises(SystemExit):
        ta.parse_args(["--expression_loss", "estimator"])
    assert sys.modules["train_accelerate"].parse_args([]).generator_output == "image"  # paper default


def test_zero_gate_makes_no_requested_change_exactly_no_change():
    torch.manual_seed(0)
    g = Generator(**SMALL, output="warp", zero_gate=True)
    with torch.no_grad():
        g.to_flow.bias.fill_(1.0)  # a flow that is large whatever the condition
        g.to_mask.bias.fill_(2.0)
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    assert torch.equal(g(x, torch.zeros(2, 17)), x)
    small, big = torch.zeros(2, 17), torch.zeros(2, 17)
    small[:, 8], big[:, 8] = 0.05, 0.8
    _, small_parts = g(x, small, return_parts=True)
    _, big_parts = g(x, big, return_parts=True)
    assert 0 < small_parts["flow"].abs().max() < 0.5 * big_parts["flow"].abs().max()
    with pytest.raises(ValueError, match="zero_gate"):
        Generator(**SMALL, zero_gate=True)
