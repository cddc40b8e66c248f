"""The landmark-motion target of warp generators (wemgan/landmark_motion.py, --lambda_landmark_motion)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from wemgan.aus import AU_NAMES
from wemgan.generator import flow_stretch, warp
from wemgan.landmark_motion import (
    FLOW_RIDGE,
    MOTION_FILE,
    MOVED_BY,
    REGIONS,
    fit_motion,
    landmark_displacements,
    local_unfolding,
    motion_basis,
    motion_flow,
    mouth_cavity,
    mouth_region,
    parted_lips_flow,
    polygon_coverage,
    uncrossed,
    unfolding_scale,
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
    assert torch.allclose(at_target, -move[0] / (1 + FLOW_RIDGE))  # the corner lands where it should
    rows, cols = torch.nonzero(warp(image, flow)[0, 0] > 0.5, as_tuple=True)
    assert 80 - rows.float().mean() > 2.5 and cols.float().mean() - 70 > 1.5  # the square went up and right
    assert flow[..., :40, :40].abs().max() < 1e-4 and flow[..., 110:, :].abs().max() < 1e-4  # < 0.01 px elsewhere
    assert motion_flow(landmarks, torch.zeros_like(moves), SIZE, 32).abs().max() == 0  # no move, no flow


def test_motion_flow_meets_opposite_moves_of_close_landmarks():
    """Upper and lower eyelid 4 px apart closing toward each other: each lands (nearly) where it
    should, instead of the average of the two moves (none) that a blend would give."""
    landmarks = torch.full((1, 68, 2), 10.0) + torch.arange(68.0).view(1, 68, 1) * 0.01  # far, still
    landmarks[0, 37] = torch.tensor([60.0, 60.0])  # upper lid
    landmarks[0, 41] = torch.tensor([60.0, 64.0])  # lower lid, 4 px below
    moves = torch.zeros(1, 68, 2)
    moves[0, 37, 1], moves[0, 41, 1] = 1.5, -1.5  # toward each other: 1 px gap left
    flow = motion_flow(landmarks, moves, SIZE, SIZE) * (SIZE / 2)
    at_upper, at_lower = flow[0, 1, 61, 60], flow[0, 1, 63, 60]  # rows 61.5 and 62.5 are pixel centres 61 and 62
    assert -1.6 < at_upper < -1.0 and 1.0 < at_lower < 1.6  # the row above the gap shows the upper lid, etc.
    assert flow.norm(dim=1).max() <= 1.5 + 1e-4  # nothing moves further than the lids
    assert flow[..., 100:, :].abs().max() < 0.01  # far away nothing moves (< 0.01 px)


def test_a_flow_that_would_fold_is_weakened_until_it_does_not():
    size, r = 128, 32
    coords = (torch.arange(r) + 0.5) * (size / r) - 0.5
    flow = torch.zeros(2, 2, r, r)
    flow[0, 0] = -2 * (coords - 64).view(1, -1) / 64  # x reads 64 - (x - 64): mirrored, a fold everywhere
    flow[1, 0] = 0.5 * (coords - 64).view(1, -1) / 64  # squeezed 1.5x: no fold
    scale = unfolding_scale(flow, size)
    assert scale[0] == pytest.approx(0.45) and scale[1] == 1  # 1 - 2 s >= 0.05 first fails at s = 0.5
    mouth = torch.zeros(1, 68, 2)  # a closed mouth asked to close further: lips cross
    mouth[0, :, 0], mouth[0, :, 1] = torch.linspace(20, 108, 68), 64.0
    mouth[0, 62, 1], mouth[0, 66, 1] = 60.0, 64.0
    moves = torch.zeros(1, 68, 2)
    moves[0, 62, 1], moves[0, 66, 1] = 8.0, -8.0  # each passes the other by 12 px
    crossed = motion_flow(mouth, moves, size, r) * (size / 2)
    determinant = 1 - flow_stretch(crossed / (size / 2), size, floor=False)
    assert determinant.min() >= 0.05 - 1e-6  # weakened: nothing shown twice


def test_facing_landmarks_stop_short_of_passing_each_other():
    landmarks = torch.zeros(1, 68, 2)
    landmarks[0, 37] = torch.tensor([50.0, 60.0])  # upper lid
    landmarks[0, 41] = torch.tensor([50.0, 64.0])  # lower lid, a 4 px gap
    moves = torch.zeros(1, 68, 2)
    moves[0, 37] = torch.tensor([1.0, 6.0])  # a blink asked for 6 + 2 px of closing: 4 px too far
    moves[0, 41] = torch.tensor([0.0, -2.0])
    eye_line = torch.tensor([[30.0, 0.0]])  # upright face
    kept = uncrossed(landmarks, moves, eye_line)
    gap = (landmarks[0, 41, 1] + kept[0, 41, 1]) - (landmarks[0, 37, 1] + kept[0, 37, 1])
    assert gap == pytest.approx(0.5)  # MIN_GAP: closed, not crossed
    assert kept[0, 37, 0] == 1.0 and kept[0, 37, 1] / kept[0, 41, 1] == pytest.approx(-3)  # sideways kept, shares kept
    opening = moves.clone()
    opening[0, 37, 1], opening[0, 41, 1] = -2.0, 2.0
    assert torch.equal(uncrossed(landmarks, opening, eye_line), opening)  # opening is never limited


@pytest.mark.parametrize("r", [32, 64])
def test_local_unfolding_weakens_only_around_a_fold(r):
    size = 128
    coords = (torch.arange(r) + 0.5) * (size / r) - 0.5  # pixel positions of the flow samples
    flow = torch.zeros(1, 2, r, r)
    flow[0, 0] = torch.exp(-((coords - 32) ** 2) / 50).view(1, -1) * -12 / 64  # a steep bump: folds near x = 32
    assert (1 - flow_stretch(flow, size, floor=False)).min() < 0
    factors = local_unfolding(flow, size)[0, 0, 0]
    assert factors[(coords > 22) & (coords < 32)].max() < 0.9  # weakened at the fold
    assert torch.all(factors[coords > 80] == 1)  # untouched from x = 80 px on, however finely sampled
    assert (1 - flow_stretch(flow * factors, size, floor=False)).min() > 0  # no longer folded


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
    # the gain undoes the regression's dilution: the median AU's warp then moves as real faces differ
    fractions = np.array(list(record["warp_fraction_of_natural_effect_at_gain_1"].values()))
    assert 1 < record["gain"] < 2.5 and record["gain"] * np.median(fractions) == pytest.approx(1, abs=1e-3)
    # ... and no AU is pushed past its own natural effect (the jaw drop overshoots even at gain 1)
    shares = record["warp_fraction_of_natural_effect_at_gain_1"]
    for index, name in enumerate(AU_NAMES):
        gain = record["au_gain"].get(name, record["gain"])
        assert torch.allclose(basis[index], torch.tensor(record["basis"][index]) * gain)
        assert gain * shares.get(name, 0) <= 1 + 1e-3
    assert record["au_gain"]["AU26"] < 1 and record["au_gain"]["AU12"] == record["gain"]


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


def test_landmark_regressor_reads_pixel_positions_and_rejects_other_sizes():
    from wemgan.landmark_regressor import LandmarkRegressor

    regressor = LandmarkRegressor(SIZE, 8, 16)
    points = regressor(torch.zeros(2, 3, SIZE, SIZE))
    assert points.shape == (2, 68, 2) and torch.allclose(points, torch.full_like(points, SIZE / 2 - 0.5))
    with pytest.raises(ValueError, match="B x 3 x 128 x 128"):
        regressor(torch.zeros(1, 3, 64, 64))


def fixed_landmarks(generator, landmarks: torch.Tensor) -> None:
    """Make a motion-prior generator's regressor read `landmarks` (1 x 68 x 2) on every face."""
    generator.landmark_regressor.forward = lambda x: landmarks.expand(len(x), 68, 2)


def face_landmarks() -> torch.Tensor:
    """A plausible 68-point face on a 128 crop: the packaged basis's frame needs real eyes."""
    points = torch.full((1, 68, 2), 64.0)
    points[0, 36:42], points[0, 42:48] = torch.tensor([40.0, 50.0]), torch.tensor([88.0, 50.0])
    points[0, 48], points[0, 54] = torch.tensor([48.0, 92.0]), torch.tensor([80.0, 92.0])  # lip corners
    return points


def test_motion_prior_generator_starts_as_the_landmark_warp_and_holds_still_for_no_change():
    from wemgan.generator import Generator

    torch.manual_seed(0)
    generator = Generator(17, 8, 16, 5, output="warp", upsample="resize", motion_prior=True)
    landmarks = face_landmarks()
    fixed_landmarks(generator, landmarks)
    x = torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    happy = torch.zeros(2, 17)
    happy[:, AU_NAMES.index("AU12")] = 0.8
    _, parts = generator(x, happy, return_parts=True)
    moves = landmark_displacements(landmarks.expand(2, 68, 2), happy)
    expected = motion_flow(landmarks.expand(2, 68, 2), moves, SIZE, parts["flow"].shape[-1])
    assert torch.allclose(parts["flow"], expected, atol=1e-6)  # the learnt part starts at zero
    assert expected.abs().max() * SIZE / 2 > 3  # and the prior really moves the lip corners
    _, still = generator(x, torch.zeros(2, 17), return_parts=True)
    assert still["flow"].abs().max() == 0
    with pytest.raises(ValueError, match="motion_prior"):
        Generator(17, 8, 16, 5, output="mask", motion_prior=True)


def drawn_face_landmarks() -> torch.Tensor:
    """68 points of a frontal face on a 128 crop, with open eyes and closed lips drawn as ellipses."""

    def ellipse(cx: float, cy: float, rx: float, ry: float, n: int, start: float = math.pi) -> list[list[float]]:
        angles = [start + 2 * math.pi * k / n for k in range(n)]  # clockwise on screen from the left
        return [[cx + rx * math.cos(a), cy + ry * math.sin(a)] for a in angles]

    jaw = [[24 + 5 * k, 60 + 40 * math.sin(math.pi * k / 16)] for k in range(17)]
    brows = [[30 + 7 * k, 40] for k in range(5)] + [[70 + 7 * k, 40] for k in range(5)]
    nose = [[64, 48 + 6 * k] for k in range(4)] + [[56 + 4 * k, 76] for k in range(5)]
    eyes = ellipse(44, 52, 7, 3, 6) + ellipse(84, 52, 7, 3, 6)
    lips = ellipse(64, 94, 16, 7, 12) + ellipse(64, 94, 10, 1, 8)
    return torch.tensor([jaw + brows + nose + eyes + lips], dtype=torch.float32)


def test_mouth_region_covers_the_lips_where_they_are_and_where_they_go_and_not_the_eyes():
    landmarks = drawn_face_landmarks()
    moves = torch.zeros_like(landmarks)
    moves[0, 48:68, 1] = 6.0  # the mouth moves 6 px down
    region = mouth_region(landmarks, moves, SIZE)[0, 0]
    for x, y in landmarks[0, 48:68].round().long().tolist() + (landmarks + moves)[0, 48:68].round().long().tolist():
        assert region[y, x] == 1
    assert region[44:60, 30:100].amax() == 0 and region[:60].amax() == 0  # eyes, brows, forehead
    assert 0 < region[94, 80 + 3] < 1 and region[94, 80 + 4] == 0  # faded out at its margin


def test_with_a_motion_prior_the_stretch_gate_paints_only_around_the_mouth():
    """Closing the eyes (AU45) stretches the lids as opening the mouth (AU25, AU26) stretches the
    lips; colour is let in only at the mouth, where a warp cannot draw what shows."""
    from wemgan.generator import Generator

    torch.manual_seed(0)
    generator = Generator(17, 8, 16, 5, output="warp", upsample="resize", motion_prior=True, stretch_gate=True)
    torch.nn.init.zeros_(generator.to_mask.weight), torch.nn.init.constant_(generator.to_mask.bias, 4.0)  # paint
    landmarks = drawn_face_landmarks()
    fixed_landmarks(generator, landmarks)
    u = torch.zeros(1, 17)
    u[0, [AU_NAMES.index(name) for name in ("AU45", "AU25", "AU26")]] = 1.0
    with torch.no_grad():
        _, parts = generator(torch.rand(1, 3, SIZE, SIZE) * 2 - 1, u, return_parts=True)
        moves = landmark_displacements(landmarks, u, generator.motion_basis)
    region = mouth_region(landmarks, moves, SIZE)
    assert parts["mask"][region == 0].amax() == 0 and parts["mask"].amax() > 0.5  # the opened mouth is painted
    assert parts["mask"][0, 0, 40:60].amax() == 0  # the closing lids are not


def opened_mouth_moves(landmarks: torch.Tensor, opening: float = 6.0) -> torch.Tensor:
    """Moves that part the drawn face's closed lips: the lower lip, its inner line and the chin go down."""
    moves = torch.zeros_like(landmarks)
    moves[0, [6, 7, 8, 9, 10, 55, 56, 57, 58, 59, 65, 66, 67], 1] = opening
    return moves


def test_parted_lips_flow_opens_pressed_lips_and_leaves_the_upper_lip_where_it_is():
    """Pressed lips, which dlib reads half a pixel crossed, are one line of the input and two of
    the output: above the cut the flow is the face's without the lower lip, below it without the
    upper one, so the lower lip goes the whole way down and the upper lip is not dragged along."""
    landmarks = drawn_face_landmarks()
    landmarks[0, 61:64, 1], landmarks[0, 65:68, 1] = 94.25, 93.75
    moves = opened_mouth_moves(landmarks)
    lower_inner = (landmarks + moves)[0, 66].round().long()  # where the lower lip's middle should go
    cut = parted_lips_flow(landmarks, moves, SIZE, 32) * (SIZE / 2)
    assert cut[0, 1, lower_inner[1], lower_inner[0]] < -0.9 * 6  # it shows the lip from 6 px up
    assert cut[0, :, 86:93, 56:73].abs().max() < 1  # the upper lip stays (within a px of 6)
    assert cut[0, :, :60].abs().max() < 0.1  # eyes and brows do not move
    assert parted_lips_flow(landmarks, torch.zeros_like(moves), SIZE, 32).abs().max() == 0


def test_mouth_cavity_paints_what_parting_uncovers_teeth_over_a_dark_inside():
    landmarks = drawn_face_landmarks()
    lips = torch.tensor([0.6, -0.2, -0.2]).view(1, 3, 1, 1)  # red lips on grey skin, [-1, 1]
    outer = polygon_coverage(landmarks[:, 48:60], SIZE)
    x = outer * lips + (1 - outer) * 0.3

    def cavity(opening: float):
        moves = opened_mouth_moves(landmarks, opening)
        colour, mask = mouth_cavity(x, landmarks, moves, parted_lips_flow(landmarks, moves, SIZE, 32))
        top, bottom = (landmarks + moves)[0, [62, 66], 1].tolist()  # the gap's rows mid-mouth
        return colour[0].mean(0), mask[0, 0], round(top), round(bottom)

    light, dark = lips.mean() + 0.3, lips.mean() - 0.3
    colour, mask, top, bottom = cavity(6.0)  # a smile's opening: the upper teeth fill most of it
    assert mask[(top + bottom) // 2, 64] > 0.9
    assert mask[:70].amax() == 0 and mask[110:].amax() == 0  # nowhere but the mouth
    assert colour[top + 1, 64] > light and colour[top + 1, 54] < dark  # light teeth; a dark corner
    colour, mask, top, bottom = cavity(16.0)  # wide open: both rows of teeth, the dark inside between
    assert colour[top + 2, 64] > light and colour[bottom - 2, 64] > light
    assert colour[(top + bottom) // 2 + 1, 64] < dark
    # A mouth already open as wide keeps its own inside: the flow moves it, nothing is painted.
    opened = landmarks + opened_mouth_moves(landmarks)
    _, kept = mouth_cavity(x, opened, torch.zeros_like(opened), torch.zeros(1, 2, SIZE, SIZE))
    assert kept.amax() == 0


def test_mouth_cavity_generator_opens_the_mouth_dark_and_keeps_no_change_exact():
    from wemgan.generator import Generator

    torch.manual_seed(0)
    generator = Generator(17, 8, 16, 5, output="warp", upsample="resize", motion_prior=True, mouth_cavity=True)
    torch.nn.init.constant_(generator.to_mask.bias, -30.0)  # no colour head: the prior and the cavity alone
    landmarks = drawn_face_landmarks()
    fixed_landmarks(generator, landmarks)
    x = torch.full((1, 3, SIZE, SIZE), 0.5)
    u = torch.zeros(1, 17)
    u[0, [AU_NAMES.index("AU25"), AU_NAMES.index("AU26")]] = 1.0
    with torch.no_grad():
        edited, parts = generator(x, u, return_parts=True)
        still = generator(x, torch.zeros(1, 17))
    assert parts["flow"].shape[-1] == SIZE  # the cut flow is full size
    assert parts["cavity"].amax() > 0.9 and edited.amin() < -0.5  # an opened, dark mouth on a plain face
    assert torch.equal(still, x)
    with pytest.raises(ValueError, match="mouth_cavity needs motion_prior"):
        Generator(17, 8, 16, 5, output="warp", mouth_cavity=True)
    with pytest.raises(ValueError, match="mouth_cavity replaces"):
        Generator(17, 8, 16, 5, output="warp", motion_prior=True, mouth_cavity=True, stretch_gate=True)
    with pytest.raises(ValueError, match="prior_only needs motion_prior"):
        Generator(17, 8, 16, 5, output="warp", prior_only=True)
    with pytest.raises(ValueError, match="prior_only builds no network"):
        Generator(17, 8, 16, 5, output="warp", motion_prior=True, prior_only=True, shading=True)
    torch.nn.init.constant_(generator.to_mask.bias, 30.0)  # a colour head that would paint everything
    with torch.no_grad():
        assert torch.equal(generator(x, u), edited) and "mask" not in generator(x, u, return_parts=True)[1]


def test_shading_changes_brightness_smoothly_and_never_colour():
    from wemgan.generator import MAX_SHADING, Generator
    from wemgan.losses import LossWeights, edit_regularisation

    torch.manual_seed(0)
    generator = Generator(17, 8, 16, 5, output="warp", upsample="resize", shading=True)
    torch.nn.init.constant_(generator.to_mask.bias, -30.0)  # no colour head
    x = torch.rand(1, 3, SIZE, SIZE) * 1.2 - 0.9  # [-0.9, 0.3]: no pixel darkened or brightened out of range
    with torch.no_grad():
        assert torch.equal(generator(x, torch.zeros(1, 17)), x)  # an untrained head shades nothing
        generator.to_shading.weight.normal_(0, 1.0)  # a shading that varies over the face
        shaded, parts = generator(x, torch.zeros(1, 17), return_parts=True)
    gain = (shaded + 1) / (x + 1)  # per pixel and channel: what the brightness was multiplied by
    assert torch.allclose(gain, gain[:, :1].expand_as(gain), atol=1e-4)  # R, G and B alike: no colour change
    assert gain.std() > 0.02 and (gain - 1).abs().max() <= MAX_SHADING + 1e-4
    rough = (gain[..., 1:, :] - gain[..., :-1, :]).abs().max()
    assert rough <= 2 * MAX_SHADING / 4 + 1e-4  # neighbours differ by at most a quarter of the range: no dots
    terms = edit_regularisation(parts, LossWeights())
    assert terms["shading"] > 0
    with pytest.raises(ValueError, match="shading needs output 'warp'"):
        Generator(17, 8, 16, 5, output="mask", shading=True)


def test_motion_prior_model_round_trips_with_its_regressor_and_basis(tmp_path):
    from wemgan import WEMGAN

    torch.manual_seed(0)
    model = WEMGAN(base_channels=8, max_channels=16, generator_output="warp", upsample="resize", motion_prior=True)
    with torch.no_grad():
        model.generator.landmark_regressor.head[1].weight.normal_(0, 0.01)
    model.save_pretrained(tmp_path / "model")
    loaded = WEMGAN.from_pretrained(tmp_path / "model")
    assert loaded.generator.motion_prior
    for key, value in model.generator.state_dict().items():
        assert torch.equal(value, loaded.generator.state_dict()[key]), key
    assert torch.equal(loaded.generator.motion_basis, motion_basis())


def test_train_regressor_writes_a_loadable_model_and_a_missing_one_says_how_to_train(tmp_path):
    pytest.importorskip("datasets")
    from wemgan.data.datasets import build_uint8_cache
    from wemgan.landmark_motion import load_landmark_regressor, train_regressor
    from wemgan.metrics.geometry import geometry_unavailable

    if reason := geometry_unavailable():
        pytest.skip(reason)
    build_uint8_cache("synthfacs", tmp_path / "train", "train", n_identities=4, per_identity=4)
    record = train_regressor(str(tmp_path / "train"), tmp_path / "regressor", steps=2, batch_size=4, holdout=4)
    assert record["held_out_mean_error_px"] > 0 and record["steps"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regressor", "train"]  # no .partial left
    regressor = load_landmark_regressor(tmp_path / "regressor")
    assert regressor(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 68, 2)
    with pytest.raises(FileNotFoundError, match="train-regressor"):
        load_landmark_regressor(tmp_path / "nothing")


def test_train_with_a_motion_prior_exports_it(tmp_path):
    pytest.importorskip("datasets")
    import safetensors.torch

    from tests.test_train import train  # the tiny-network launcher
    from wemgan import WEMGAN
    from wemgan.data.datasets import build_uint8_cache
    from wemgan.landmark_motion import train_regressor
    from wemgan.metrics.geometry import geometry_unavailable

    if reason := geometry_unavailable():
        pytest.skip(reason)
    build_uint8_cache("synthfacs", tmp_path / "train", "train", n_identities=4, per_identity=4)
    train_regressor(str(tmp_path / "train"), tmp_path / "regressor", steps=2, batch_size=4, holdout=4)
    train(tmp_path / "run", "--dataset", str(tmp_path / "train"), "--max_train_steps", "2", "--n_critic", "1",
          "--generator_output", "warp", "--upsample", "resize", "--motion_prior", str(tmp_path / "regressor"),
          "--lambda_landmark_motion", "50", "--mouth_cavity", "--shading", "--lambda_g_cond", "30",
          "--log_steps", "1")  # fmt: skip
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    held = [record["g/landmark_motion"] for record in logged if "g/landmark_motion" in record]
    assert held and all(math.isfinite(v) for v in held)  # the trial's recipe: prior, landmark term, cavity, shading
    model = WEMGAN.from_pretrained(tmp_path / "run" / "hub")
    assert model.generator.mouth_cavity and model.generator.shading and not model.generator.stretch_gate
    assert any("g/shading" in record for record in logged)
    trained = safetensors.torch.load_file(tmp_path / "regressor" / "model.safetensors")
    exported = model.generator.landmark_regressor.state_dict()
    assert model.generator.motion_prior and all(torch.equal(v, exported[k].float()) for k, v in trained.items())
