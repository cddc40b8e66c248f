"""The landmark-motion target of warp generators (wemgan/landmark_motion.py, --lambda_landmark_motion)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from wemgan.aus import AU_NAMES
from wemgan.generator import warp
from wemgan.landmark_motion import (
    MOTION_FILE,
    MOVED_BY,
    REGIONS,
    STILL_WEIGHT,
    fit_motion,
    landmark_displacements,
    motion_basis,
    motion_flow,
)
from wemgan.losses import LossWeights, edit_regularisation, landmark_motion_loss

SIZE = 128


def test_motion_flow_moves_a_landmark_by_its_move_and_holds_the_rest():
    move = torch.tensor([[3.0, -5.0]])
    landmarks = torch.full((1, 68, 2), 20.0)  # 67 landmarks far away at (20, 20), not moving
    landmarks[0, 48] = torch.tensor([70.0, 80.0])  # a lip corner at column 70, row 80 moves by (3, -5)
    moves = torch.zeros(1, 68, 2)
    moves[0, 48] = move
    flow = motion_flow(landmarks, moves, SIZE, SIZE)
    image = torch.zeros(1, 1, SIZE, SIZE)
    image[0, 0, 75:86, 65:76] = 1  # an 11 px square centred on the corner
    at_target = flow[0, :, 75, 73] * (SIZE / 2)  # pixels, where the corner should land
    assert torch.allclose(at_target, -move[0] / (1 + STILL_WEIGHT))  # one landmark alone pulls 1 / 1.3 of its move
    rows, cols = torch.nonzero(warp(image, flow)[0, 0] > 0.5, as_tuple=True)
    assert 80 - rows.float().mean() > 2.5 and cols.float().mean() - 70 > 1.5  # the square went up and right
    assert flow[..., :40, :40].abs().max() < 1e-6 and flow[..., 110:, :].abs().max() < 1e-6  # nothing else moves
    assert motion_flow(landmarks, torch.zeros_like(moves), SIZE, 32).abs().max() == 0  # no move, no flow


def test_landmark_motion_loss_is_the_mean_pixel_distance_and_reaches_the_flow():
    target = torch.zeros(2, 2, 16, 16)
    target[:, 0] = 3 / (SIZE / 2)  # 3 px everywhere along x
    flow = torch.zeros(2, 2, 16, 16, requires_grad=True)
    loss = landmark_motion_loss(flow, target, SIZE)
    assert loss.item() == pytest.approx(1.5)  # |3| in x, 0 in y
    loss.backward()
    assert flow.grad[:, 0].lt(0).all() and flow.grad[:, 1].eq(0).all()
    assert landmark_motion_loss(target, target, SIZE).item() == 0


def test_displacements_turn_and_scale_with_the_face():
    basis = torch.zeros(17, 68, 2)
    basis[AU_NAMES.index("AU12"), 48] = torch.tensor([-0.1, -0.2])  # right lip corner: out and up
    upright = torch.zeros(1, 68, 2)
    upright[0, 36:42] = torch.tensor([40.0, 50.0])
    upright[0, 42:48] = torch.tensor([90.0, 50.0])  # IOD 50, eye line horizontal
    u = torch.zeros(1, 17)
    u[0, AU_NAMES.index("AU12")] = 1.0
    move = landmark_displacements(upright, u, basis)[0]
    assert torch.allclose(move[48], torch.tensor([-5.0, -10.0])) and move[:48].abs().max() == 0
    turned = upright.clone()  # the same face turned 90 degrees clockwise (eye line pointing down) at twice the size
    turned[0, 36:42] = torch.tensor([50.0, 20.0])
    turned[0, 42:48] = torch.tensor([50.0, 120.0])
    assert torch.allclose(landmark_displacements(turned, u, basis)[0, 48], torch.tensor([20.0, -10.0]))
    assert landmark_displacements(upright, -u, basis)[0, 48].tolist() == [5.0, 10.0]  # the opposite edit undoes it


def test_fit_recovers_region_restricted_motion_despite_pose():
    rng = np.random.default_rng(0)
    mean = rng.uniform(-1, 1, (68, 2))
    mean[36:42], mean[42:48] = [-0.5, 0.0], [0.5, 0.0]  # eye centres at -0.5 and 0.5: IOD 1
    truth = np.zeros((17, 68, 2))
    truth[AU_NAMES.index("AU12"), 48] = [-0.2, -0.25]
    truth[AU_NAMES.index("AU02"), 17:27, 1] = -0.2
    aus = rng.uniform(0, 1, (4000, 17)) * (rng.uniform(size=(4000, 17)) < 0.3)
    yaw = rng.normal(0, 0.1, 4000)  # a head turn that moves every point, correlated with AU12
    aus[:, AU_NAMES.index("AU12")] = np.clip(aus[:, AU_NAMES.index("AU12")] + yaw, 0, 1)
    shapes = mean + np.einsum("na,apc->npc", aus, truth) + rng.normal(0, 0.005, (4000, 68, 2))
    shapes[..., 0] += yaw[:, None] * (0.3 + 0.1 * shapes[..., 1])  # not a pure shift: the nose tip sees it too
    shapes[:, 30, 0] += yaw
    landmarks = 50 * shapes + 64  # pixels: IOD 50
    basis = fit_motion(landmarks, aus)
    assert np.abs(basis - truth).max() < 0.02
    nose = list(REGIONS["nose"])
    assert np.abs(basis[:, nose]).max() == 0 and not MOVED_BY["nose"]


def test_packaged_basis_moves_what_each_au_moves():
    basis = motion_basis()
    happy, open_mouth, brows_up = (basis[AU_NAMES.index(n)] for n in ("AU12", "AU25", "AU02"))
    assert happy[48, 1] < -0.1 and happy[54, 1] < -0.1  # lip corners up (y grows downwards) ...
    assert happy[48, 0] < 0 < happy[54, 0]  # ... and out
    assert open_mouth[57, 1] > 0.15  # lower lip down
    assert (brows_up[17:27, 1] < -0.1).all()  # brows up
    assert basis[:, list(REGIONS["nose"])].abs().max() == 0  # no AU moves the nose
    record = json.loads(MOTION_FILE.read_text())
    assert record["au_names"] == list(AU_NAMES) and not record["data"].startswith("/")  # no machine paths


def test_landmark_motion_term_is_weighted_and_off_by_default():
    assert LossWeights().lambda_landmark_motion == 0.0  # the paper has no such term
    parts = {"flow": torch.zeros(1, 2, 16, 16)}
    target = torch.full((1, 2, 16, 16), 2 / (SIZE / 2))

    def motion(flow):
        return landmark_motion_loss(flow, target, SIZE)

    terms = edit_regularisation(parts, LossWeights(lambda_landmark_motion=3.0), motion)
    assert terms["landmark_motion"].item() == pytest.approx(6.0)
    assert "landmark_motion" not in edit_regularisation(parts, LossWeights())


def test_landmark_motion_flag_needs_a_warp_generator():
    import train_accelerate as ta

    with pytest.raises(SystemExit):
        ta.parse_args(["--lambda_landmark_motion", "5"])
    assert ta.parse_args(["--lambda_landmark_motion", "5", "--generator_output", "warp"]).lambda_landmark_motion == 5


def test_train_a_warp_generator_toward_real_landmark_motion(tmp_path):
    from wemgan.metrics.geometry import geometry_unavailable

    if reason := geometry_unavailable():
        pytest.skip(reason)
    from tests.test_train import train  # the tiny-network launcher

    out = tmp_path / "run"
    train(out, "--max_train_steps", "6", "--n_critic", "2", "--generator_output", "warp", "--upsample", "resize",
          "--lambda_landmark_motion", "5", "--reconstruction_warmup_steps", "2", "--log_steps", "1")  # fmt: skip
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for key in ("g/warmup_landmark_motion", "g/landmark_motion"):  # learnt in the warm-up, kept in the GAN phase
        values = [record[key] for record in logged if key in record]
        assert values and all(math.isfinite(v) and v > 0 for v in values), key
