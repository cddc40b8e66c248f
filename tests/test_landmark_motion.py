"""The landmark editor: its motion (wemgan/landmark_motion.py), drawn mouth, fits and regressor."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import safetensors.torch
import torch

from wemgan import WEMGAN
from wemgan.aus import AU_NAMES
from wemgan.editor import LandmarkEditor
from wemgan.flow import flow_stretch, polygon_coverage, warp
from wemgan.landmark_appearance import packaged_maps
from wemgan.landmark_fit import (
    JAW_DROP_AU,
    JAW_DROP_POINTS,
    JAW_DROP_QUANTILE,
    MAX_OVERSAMPLING,
    MOVED_BY,
    REGIONS,
    fit_motion,
    jittered,
    load_landmark_regressor,
    mirrored,
    mouth_openness,
    openness_weights,
    resting_lip_gap,
    train_regressor,
)
from wemgan.landmark_motion import (
    FLOW_RIDGE,
    MOTION_FILE,
    inner_lip_gap,
    jaw_reading,
    landmark_displacements,
    local_unfolding,
    motion_basis,
    motion_flow,
    parted_lips_flow,
    uncrossed,
    unfolding_scale,
    with_whole_brows,
)
from wemgan.landmark_regressor import LandmarkRegressor
from wemgan.mouth_cavity import mouth_cavity

SIZE = 128


def mean_face() -> torch.Tensor:
    """1 x 68 x 2 px: the packaged mean face's landmarks at 128 px."""
    return packaged_maps()[0].view(1, 68, 2).float()


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


@pytest.mark.parametrize("shift", [-10.0, 6.0])  # brows raised by 10 px, lowered by 6 (the lids stay)
def test_whole_brows_move_a_brow_without_stretching_or_squeezing_it(shift):
    """A 5-px dark brow under the brow points of the mean face: carried whole, it lands shifted and
    keeps its thickness (within 1 px); moved by the brow points alone, the skin-free brow itself is
    stretched (raised) or squeezed (lowered) by 2 px or more: a strong edit's smeared brows."""
    landmarks = mean_face()
    image = torch.ones(1, 1, SIZE, SIZE)
    for x, y in landmarks[0, 17:27].round().long().tolist():
        image[0, 0, y : y + 5, x - 4 : x + 5] = 0
    moves = torch.zeros(1, 68, 2)
    moves[0, 17:27, 1] = shift
    column = int(landmarks[0, 19, 0].round())  # through a brow's middle

    def dark_rows(points: torch.Tensor, point_moves: torch.Tensor) -> list[int]:
        moved = warp(image, parted_lips_flow(points, point_moves, SIZE, 32))
        return torch.nonzero(moved[0, 0, :, column] < 0.5).flatten().tolist()

    before = dark_rows(landmarks, torch.zeros_like(moves))
    whole = dark_rows(*with_whole_brows(landmarks, moves))
    alone = dark_rows(landmarks, moves)
    assert len(before) == 5 and abs(len(whole) - 5) <= 1
    assert abs(whole[0] - (before[0] + shift)) <= 1  # the brow went where its points went
    assert abs(len(alone) - 5) >= 2


def test_an_editor_with_whole_brows_changes_only_how_brows_move():
    """The option adds points that move with the brows: a brow move's flow changes by over 1 px, a mouth
    move's by less than 0.1 px (the points pinned near the still brows barely touch its field)."""
    editors = [LandmarkEditor(whole_brows=whole).eval() for whole in (False, True)]
    x = torch.zeros(1, 3, SIZE, SIZE)
    for moved, change in ((slice(17, 27), (1.0, None)), (slice(48, 68), (None, 0.1))):  # brows, mouth
        moves = torch.zeros(1, 68, 2)
        moves[0, moved, 1] = -4.0
        flows = [editor.move(x, mean_face(), moves)[1] * (SIZE / 2) for editor in editors]
        largest = (flows[0] - flows[1]).norm(dim=1).max()
        low, high = change
        assert (low is None or largest > low) and (high is None or largest < high)


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
    labelled = [index for index, name in enumerate(AU_NAMES) if name != JAW_DROP_AU]  # the jaw drop: below
    assert np.abs(basis[labelled] - truth[labelled]).max() < 0.02
    nose = list(REGIONS["nose"])
    assert np.abs(basis[:, nose]).max() == 0 and not MOVED_BY["nose"]


def test_jaw_drop_is_the_jaw_opening_of_real_faces_not_its_labels():
    """AU26's motion: how faces move as their lips part (with the chin), whatever AU26's labels say;
    only on the points the jaw carries, and label 1 opens as far as the widest common gap."""
    rng = np.random.default_rng(0)
    n = 4000
    mean = rng.uniform(-1, 1, (68, 2))
    mean[36:42], mean[42:48] = [-0.5, 0.0], [0.5, 0.0]  # IOD 1
    mean[61:64, 1], mean[65:68, 1] = 1.0, 1.0  # inner lips together
    aus = rng.uniform(0, 1, (n, 17)) * (rng.uniform(size=(n, 17)) < 0.3)  # AU26's labels unrelated to the jaw
    opening = rng.uniform(0, 0.4, n) * (rng.uniform(size=n) < 0.5)
    jaw = np.zeros((68, 2))
    jaw[[55, 56, 57, 58, 59, 65, 66, 67], 1] = 1.0  # the lower lip goes down with the gap ...
    jaw[8, 1], jaw[[6, 10], 1] = 0.3, 0.25  # ... the chin a third as far
    jaw[33, 1] = 0.1  # a nose that drifts with open mouths (a pose confound) must not move
    shapes = mean + opening[:, None, None] * jaw + rng.normal(0, 0.002, (n, 68, 2))
    basis = fit_motion(50 * shapes + 64, aus)
    drop = basis[AU_NAMES.index(JAW_DROP_AU)]
    scale = np.quantile(opening, JAW_DROP_QUANTILE)
    assert drop[66, 1] == pytest.approx(scale, rel=0.05) and drop[8, 1] == pytest.approx(0.3 * scale, rel=0.1)
    assert np.abs(drop[[33, 51, 62]]).max() == 0  # nose and upper lip stay
    assert set(np.flatnonzero(np.abs(drop).sum(1))) <= set(JAW_DROP_POINTS)


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
    shares = record["warp_fraction_of_natural_effect_at_gain_1"]
    fractions = [value for name, value in shares.items() if name != JAW_DROP_AU]  # sized by its fit
    median = np.quantile(fractions, 0.5, method="higher")
    assert 1 < record["gain"] < 2.5 and record["gain"] * median == pytest.approx(1, abs=1e-3)
    # ... and no AU is pushed past its own natural effect
    for index, name in enumerate(AU_NAMES):
        gain = record["au_gain"].get(name, record["gain"])
        assert torch.allclose(basis[index], torch.tensor(record["basis"][index]) * gain)
        assert gain * shares.get(name, 0) <= 1 + 1e-3
    assert record["au_gain"][JAW_DROP_AU] == 1 and record["au_gain"]["AU12"] == record["gain"]
    jaw_drop = basis[AU_NAMES.index(JAW_DROP_AU)]  # a visible jaw drop: the lips part, the chin goes down
    assert jaw_drop[66, 1] - jaw_drop[62, 1] > 0.2 and jaw_drop[8, 1] > 0.05 and jaw_drop[[51, 62]].abs().max() == 0


def face_with_parted_lips(gap: float, turn: float = 0.0, iod: float = 40.0) -> torch.Tensor:
    """1 x 68 x 2 px: a face whose inner lips are `gap` IODs apart along its vertical, turned by `turn` rad."""
    shape = np.random.default_rng(0).uniform(-1, 1, (68, 2))
    shape[36:42], shape[42:48] = [-0.5, 0.0], [0.5, 0.0]  # eye frame: IOD 1
    shape[61:64, 1], shape[65:68, 1] = 0.9, 0.9 + gap
    rotation = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    return torch.tensor(iod * shape @ rotation.T + 64, dtype=torch.float32)[None]


def test_inner_lip_gap_is_measured_along_the_faces_vertical_in_iods():
    for turn, iod in ((0.0, 40.0), (0.5, 55.0), (-1.2, 30.0)):
        assert inner_lip_gap(face_with_parted_lips(0.2, turn, iod)).item() == pytest.approx(0.2, abs=1e-5)
    assert mouth_openness(face_with_parted_lips(0.1, 0.4).numpy())[0] == pytest.approx(0.1, abs=1e-5)


def test_the_jaw_reading_is_the_gap_that_a_resting_mouth_and_the_other_aus_do_not_make():
    editor = LandmarkEditor.from_fits(LandmarkRegressor(SIZE))
    per_label, resting = jaw_reading()[:17], float(jaw_reading()[17])
    jaw, lips = AU_NAMES.index(JAW_DROP_AU), AU_NAMES.index("AU25")
    assert per_label[jaw] > 0.2 and per_label[lips] > 0.2  # each opens the lips by about a quarter IOD
    aus = torch.zeros(1, 17)
    aus[0, jaw] = 0.9  # what the AU estimator said: ignored
    closed = editor.jaw_drop(face_with_parted_lips(resting), aus)
    assert closed.item() == pytest.approx(0, abs=1e-5)
    dropped = face_with_parted_lips(resting + 0.4 * float(per_label[jaw]), turn=0.3)
    assert editor.jaw_drop(dropped, aus).item() == pytest.approx(0.4, abs=1e-4)
    aus[0, lips] = 0.5  # lips parted by AU25 alone: no jaw drop
    parted = resting + 0.5 * float(per_label[lips])
    assert editor.jaw_drop(face_with_parted_lips(parted), aus).item() == pytest.approx(0, abs=1e-4)
    both = face_with_parted_lips(parted + 0.3 * float(per_label[jaw]))
    assert editor.jaw_drop(both, aus).item() == pytest.approx(0.3, abs=1e-4)
    assert editor.jaw_drop(face_with_parted_lips(2.0), aus).item() == 1  # clamped to the label range
    unfitted = LandmarkEditor()  # no fits: the reader's own AU26 stays
    assert unfitted.jaw_drop(dropped, aus).item() == pytest.approx(0.9)


def test_the_resting_gap_is_what_most_faces_show_beyond_their_other_aus():
    rng = np.random.default_rng(0)
    n, jaw, lips = 2000, AU_NAMES.index(JAW_DROP_AU), AU_NAMES.index("AU25")
    basis = np.zeros((17, 68, 2))
    basis[lips, 65:68, 1], basis[jaw, 65:68, 1] = 0.25, 0.3
    aus = np.zeros((n, 17))
    aus[:, lips] = rng.uniform(0, 1, n) * (rng.uniform(size=n) < 0.4)
    aus[:, jaw] = rng.uniform(0, 1, n)  # labels that do not follow jaws: they must not count
    dropped = rng.uniform(size=n) < 0.2  # a fifth of the faces drop the jaw
    shapes = np.zeros((n, 68, 2))
    shapes[:, 36:42], shapes[:, 42:48] = [-0.5, 0.0], [0.5, 0.0]
    shapes[:, 65:68, 1] = (0.03 + 0.25 * aus[:, lips] + dropped * rng.uniform(0.05, 0.3, n))[:, None]
    assert resting_lip_gap(shapes, aus, basis) == pytest.approx(0.03, abs=1e-6)


def test_landmark_regressor_reads_pixel_positions_and_rejects_other_sizes():
    from wemgan.landmark_regressor import LandmarkRegressor

    regressor = LandmarkRegressor(SIZE, 8, 16)
    points = regressor(torch.zeros(2, 3, SIZE, SIZE))
    assert points.shape == (2, 68, 2) and torch.allclose(points, torch.full_like(points, SIZE / 2 - 0.5))
    with pytest.raises(ValueError, match="B x 3 x 128 x 128"):
        regressor(torch.zeros(1, 3, 64, 64))


def fixed_landmarks(editor, landmarks: torch.Tensor) -> None:
    """Make an editor's regressor read `landmarks` (1 x 68 x 2) on every face."""
    editor.landmark_regressor.forward = lambda x: landmarks.expand(len(x), 68, 2)


def face_landmarks() -> torch.Tensor:
    """A plausible 68-point face on a 128 crop: the packaged basis's frame needs real eyes."""
    points = torch.full((1, 68, 2), 64.0)
    points[0, 36:42], points[0, 42:48] = torch.tensor([40.0, 50.0]), torch.tensor([88.0, 50.0])
    points[0, 48], points[0, 54] = torch.tensor([48.0, 92.0]), torch.tensor([80.0, 92.0])  # lip corners
    return points


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


def test_a_mirrored_face_keeps_its_parts_in_place_and_mirroring_twice_is_no_change():
    landmarks = drawn_face_landmarks()
    faces = torch.rand(1, 3, SIZE, SIZE)
    flipped_faces, flipped = mirrored(faces, landmarks)
    assert torch.equal(flipped_faces[..., 0], faces[..., -1])
    assert flipped[0, 36, 0] < flipped[0, 45, 0] and flipped[0, 48, 0] < flipped[0, 54, 0]  # outer corners
    assert flipped[0, 0, 0] < flipped[0, 16, 0] and flipped[0, 17, 0] < flipped[0, 26, 0]  # jaw, brows
    assert torch.allclose(flipped[0, 62], torch.stack([SIZE - 1 - landmarks[0, 62, 0], landmarks[0, 62, 1]]))
    again_faces, again = mirrored(flipped_faces, flipped)
    assert torch.equal(again_faces, faces) and torch.allclose(again, landmarks)


def test_jittered_landmarks_stay_on_the_pixels_they_mark():
    points = torch.tensor([[30.0, 40.0], [90.0, 50.0], [64.0, 100.0]])
    landmarks = drawn_face_landmarks().expand(4, -1, -1).clone()
    landmarks[:, :3] = points
    faces = -torch.ones(4, 3, SIZE, SIZE)
    for x, y in points.long().tolist():
        faces[:, :, y - 1 : y + 2, x - 1 : x + 2] = 1  # a bright 3 x 3 dot centred on each marked pixel
    moved, moved_landmarks = jittered(faces, landmarks, torch.Generator().manual_seed(0))
    assert moved.shape == faces.shape and not torch.allclose(moved_landmarks, landmarks, atol=0.5)
    for face, marks in zip(moved, moved_landmarks, strict=True):
        for x, y in marks[:3].round().long().tolist():
            window = face[0, y - 3 : y + 4, x - 3 : x + 4]
            peak = divmod(window.argmax().item(), 7)
            assert abs(peak[0] - 3) <= 1 and abs(peak[1] - 3) <= 1  # the dot's brightest pixel is the landmark's


def test_open_mouths_are_drawn_as_often_as_closed_ones_up_to_the_cap():
    landmarks = drawn_face_landmarks().numpy().repeat(1000, 0)
    open_ones = np.arange(1000) < 50  # 5% of the faces part their inner lips by 0.25 IOD
    iod = np.linalg.norm(landmarks[0, 36:42].mean(0) - landmarks[0, 42:48].mean(0))
    landmarks[open_ones, 65:68, 1] = landmarks[open_ones, 61:64, 1].mean(1, keepdims=True) + 0.25 * iod
    landmarks[~open_ones, 65:68, 1] = landmarks[~open_ones, 61:64, 1].mean(1, keepdims=True)
    openness = mouth_openness(landmarks)
    assert np.allclose(openness[open_ones], 0.25, atol=1e-4) and np.allclose(openness[~open_ones], 0, atol=1e-4)
    weights = openness_weights(openness)
    share = weights[open_ones].sum() / weights.sum()
    assert torch.isclose(share, torch.tensor(50 * MAX_OVERSAMPLING / (950 + 50 * MAX_OVERSAMPLING), dtype=share.dtype))


def test_train_regressor_writes_a_loadable_model_and_a_missing_one_says_how_to_train(tmp_path):
    pytest.importorskip("datasets")
    from wemgan.data.datasets import build_uint8_cache
    from wemgan.metrics.geometry import geometry_unavailable

    if reason := geometry_unavailable():
        pytest.skip(reason)
    build_uint8_cache("synthfacs", tmp_path / "train", "train", n_identities=4, per_identity=4)
    record = train_regressor(str(tmp_path / "train"), tmp_path / "regressor", steps=2, batch_size=4, holdout=4)
    assert record["held_out_mean_error_px"] > 0 and record["steps"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regressor", "train"]  # no .partial left
    regressor, _ = load_landmark_regressor(tmp_path / "regressor")
    assert regressor(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 68, 2)
    with pytest.raises(FileNotFoundError, match="train-regressor"):
        load_landmark_regressor(tmp_path / "nothing")


def test_editor_opens_the_mouth_dark_and_keeps_no_change_exact():
    """The editor's motion parts the lips and the gap is drawn dark (the mouth's inside) with
    light teeth under the upper lip; no AU change is exactly no change."""
    editor = LandmarkEditor.from_fits(LandmarkRegressor(SIZE), appearance=False)
    landmarks = drawn_face_landmarks()
    fixed_landmarks(editor, landmarks)
    x = torch.full((1, 3, SIZE, SIZE), 0.4)  # a plain light face
    x = x - 0.8 * polygon_coverage(landmarks[:, 48:60], SIZE)  # dark-ish lips
    assert torch.equal(editor(x, torch.zeros(1, 17)).image, warp(x, torch.zeros(1, 2, SIZE, SIZE)))
    u = torch.zeros(1, 17)
    u[0, AU_NAMES.index("AU25")], u[0, AU_NAMES.index("AU26")] = 1.0, 1.0
    out = editor(x, u)
    moved = landmarks + out.moves
    gap = polygon_coverage(moved[:, 60:68], SIZE)[0, 0] > 0.5
    assert gap.sum() > 20  # the mouth opened
    assert out.image[0, :, gap].mean() < x[0, :, gap].mean()  # and shows something darker than skin inside
    with pytest.raises(ValueError, match="motion_strength"):
        LandmarkEditor(motion_strength=3.0)


def test_motion_strength_scales_the_moves_at_run_time():
    regressor = LandmarkRegressor(SIZE)
    full, half = (LandmarkEditor.from_fits(regressor, motion_strength=s, appearance=False) for s in (1.0, 0.5))
    for editor in (full, half):
        fixed_landmarks(editor, face_landmarks())
    assert torch.equal(full.motion_basis, half.motion_basis)  # the fit is stored as fitted
    u = torch.zeros(1, 17)
    u[0, AU_NAMES.index("AU12")] = 1.0
    x = torch.zeros(1, 3, SIZE, SIZE)
    assert torch.allclose(half(x, u).moves, 0.5 * full(x, u).moves, atol=1e-5)


def test_editor_model_round_trips_and_its_fits_stay_float32_in_a_half_file(tmp_path):
    model = WEMGAN(editor={"motion_strength": 0.75}, estimator={"channels": 8, "max_channels": 16})
    with torch.no_grad():
        model.editor.motion_basis.copy_(motion_basis() / 3)  # a value float16 would round
    model.half().save_pretrained(tmp_path)
    loaded = WEMGAN.from_pretrained(tmp_path)
    assert loaded.editor.motion_strength == 0.75 and loaded.generator is None
    assert torch.equal(loaded.editor.motion_basis, motion_basis() / 3)
    assert "generator" not in json.loads((tmp_path / "config.json").read_text())  # only the parts it has


def test_a_model_with_an_editor_reads_au26_off_the_landmarks_and_an_older_folder_with_its_estimator(
    tmp_path, face_crop
):
    torch.manual_seed(0)
    model = WEMGAN(editor={}, estimator={"channels": 8, "max_channels": 16})
    x = torch.from_numpy(np.asarray(face_crop)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        model.editor.landmark_regressor.load_state_dict(load_landmark_regressor("hub/default")[0].state_dict())
        estimated = model.au_estimator(x)
        gap = inner_lip_gap(model.editor.landmark_regressor(x)).item()
    fits, jaw = jaw_reading().clone(), AU_NAMES.index("AU26")
    others = estimated[0] @ torch.cat([fits[:jaw], torch.zeros(1), fits[jaw + 1 : 17]])
    wanted = 0.2 if estimated[0, jaw] > 0.5 else 0.8  # a reading the estimator's AU26 is far from
    fits[17] = gap - others - wanted * fits[jaw]  # the resting gap at which this crop's jaw reads so
    model.editor.jaw_reading.copy_(fits)
    assert model.estimate_aus(face_crop, align=False)["AU26"] == pytest.approx(wanted, abs=1e-4)
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = safetensors.torch.load_file(weights)
    del state["editor.jaw_reading"]  # as written before 2026-12-07
    safetensors.torch.save_file(state, weights)
    older = WEMGAN.from_pretrained(tmp_path)
    reading = older.estimate_aus(face_crop, align=False)["AU26"]
    assert reading == pytest.approx(estimated[0, jaw].item(), abs=1e-5)


def test_load_landmark_regressor_takes_a_model_folder_and_says_how_to_train_one(tmp_path):
    regressor, record = load_landmark_regressor("hub/default")
    assert isinstance(regressor, LandmarkRegressor) and record["steps"] == 12000
    with pytest.raises(FileNotFoundError, match="landmark_fit train-regressor"):
        load_landmark_regressor(tmp_path)
