"""How an AU change moves a face, as real faces move: the LandmarkEditor's motion.

The basis (landmark_motion.json, fitted by `python -m wemgan.landmark_fit fit`) gives each AU's
displacement of dlib's 68 landmarks at label 1, in an eye-aligned frame in units of the
inter-ocular distance (IOD): fit on faces-au, the lip corners go up and out by 0.23 IOD for AU12,
the lower lip down by 0.29 for AU25, the brows up by 0.22 for AU02, and the nose tip does not
move for any AU. An edit turns the moves of a face's own landmarks into a smooth backward flow
(`motion_flow`, or `parted_lips_flow` where lips part), weakened only where it would fold.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from .aus import AU_NAMES, NUM_AUS
from .flow import flow_jacobian, line_rows, max_filter

MOTION_FILE = Path(__file__).with_name("landmark_motion.json")
JAW_DROP_AU = "AU26"  # its motion is real faces' jaw opening (landmark_fit.jaw_drop_motion), and it is read so
FLOW_SIGMA = 8.0  # px at 128 px: how far a landmark's move reaches (a lip corner drags the cheek beside it)
# (upper, lower) landmarks that must not pass each other: eyelids, the lips' inner edges, and
# each lip's outer edge against its inner edge
FACING_PAIRS = torch.tensor(
    [(37, 41), (38, 40), (43, 47), (44, 46), (61, 67), (62, 66), (63, 65), (50, 61), (51, 62), (52, 63),
     (65, 56), (66, 57), (67, 58)]
)  # fmt: skip
MIN_GAP = 0.5  # px at 128 px: how close a facing pair may come (a closed eye, closed lips)
FOLD_MARGIN = 0.05  # smallest Jacobian determinant of the warp allowed: 0 is a fold (content shown twice)
UNFOLD_REACH = 20.0  # px at 128 px: how far around a fold local_unfolding weakens the flow (5 points at 32 px)
FLOW_RIDGE = 0.01  # regularisation of the interpolation: how closely the flow meets landmarks a few px apart
BROWS = slice(17, 27)  # dlib's brow points, which lie along each brow's upper edge
# IODs above and below the brow points that move with them (with_whole_brows): the brow's body lies up to
# about 0.1 IOD below its points, and the brow-to-lid gap is 0.2-0.4 IOD, leaving the lid crease's skin
BROW_BODY = (0.04, 0.10)
INNER_UPPER_LINE = [60, 61, 62, 63, 64]  # the inner lip lines, corner to corner
INNER_LOWER_LINE = [60, 67, 66, 65, 64]


def motion_record() -> dict:
    """The packaged fit (landmark_motion.json): how it was made, its gains and its basis."""
    return json.loads(MOTION_FILE.read_text(encoding="utf-8"))


@functools.cache
def motion_basis() -> Tensor:
    """The packaged fit (landmark_motion.json) times each AU's gain, as a 17 x 68 x 2 float tensor."""
    fitted = motion_record()
    gains = torch.full((NUM_AUS, 1, 1), fitted.get("gain", 1.0))
    for name, gain in fitted.get("au_gain", {}).items():
        gains[AU_NAMES.index(name)] = gain
    return torch.tensor(fitted["basis"], dtype=torch.float32) * gains


@functools.cache
def jaw_reading() -> Tensor:
    """18 floats: the gap between the inner lips (IODs) that each AU's fitted motion makes at label 1,
    before any gain (as real faces' labels go with it), then the gap of a mouth at rest: what
    LandmarkEditor.jaw_drop inverts."""
    fitted = motion_record()
    basis = torch.tensor(fitted["basis"], dtype=torch.float32)
    gaps = inner_lip_gap(basis, eye_frame=False)
    return torch.cat([gaps, torch.tensor([fitted["resting_lip_gap"]], dtype=torch.float32)])


def eye_axes(landmarks: Tensor) -> tuple[Tensor, Tensor]:
    """(B x 2, B x 2): the face's eye line (right eye's centre to the left's) and its vertical
    (pointing down), both one IOD long, of B x 68 x 2 landmarks."""
    line = landmarks[:, 42:48].mean(1) - landmarks[:, 36:42].mean(1)
    return line, torch.stack([-line[:, 1], line[:, 0]], -1)


def inner_lip_gap(landmarks: Tensor, eye_frame: bool = True) -> Tensor:
    """B: how far the inner lips are apart (mean of the lower lip's 65-67 less the upper lip's 61-63)
    along the face's vertical, in IODs, of B x 68 x 2 landmarks; about 0 for a closed mouth.
    eye_frame=False: the landmarks are already in the eye frame (y down, IODs), or are moves in it."""
    gap = landmarks[:, 65:68].mean(1) - landmarks[:, 61:64].mean(1)
    if not eye_frame:
        return gap[:, 1]
    line, down = eye_axes(landmarks)
    return (gap * down).sum(-1) / (line * line).sum(-1).clamp_min(1e-12)


def landmark_displacements(landmarks: Tensor, u_rel: Tensor, basis: Tensor | None = None) -> Tensor:
    """B x 68 x 2 pixel moves that the AU change u_rel (B x 17) makes to faces with these landmarks:
    the basis's eye-frame moves rotated into each face's eye line and scaled by its IOD."""
    basis = (motion_basis() if basis is None else basis).to(landmarks.device)
    moves = torch.einsum("ba,apc->bpc", u_rel.float(), basis)  # eye frame, IODs
    line, _ = eye_axes(landmarks)  # rotation and scale in one
    cos, sin = line[:, :1], line[:, 1:]
    moves = torch.stack([cos * moves[..., 0] - sin * moves[..., 1], sin * moves[..., 0] + cos * moves[..., 1]], -1)
    return uncrossed(landmarks, moves, line)


def uncrossed(landmarks: Tensor, moves: Tensor, eye_line: Tensor) -> Tensor:
    """The moves with each facing pair of FACING_PAIRS (upper, lower) kept from passing each
    other: where the pair would close by more than its gap less MIN_GAP px (along the face's
    vertical, perpendicular to the eye line), both closing moves are shortened alike. A linear
    basis asks a half-closed eye to blink past itself, or a laughing mouth made sad to close by
    more than it is open; crossed, the warp would fold and show the lid or the lip twice."""
    down = torch.stack([-eye_line[:, 1], eye_line[:, 0]], -1)
    down = (down / down.norm(dim=-1, keepdim=True).clamp_min(1e-6)).unsqueeze(1)  # B x 1 x 2
    upper, lower = list(FACING_PAIRS[:, 0]), list(FACING_PAIRS[:, 1])
    gap = ((landmarks[:, lower] - landmarks[:, upper]) * down).sum(-1)  # B x P, > 0 on a face
    closing = ((moves[:, upper] - moves[:, lower]) * down).sum(-1)  # how much the gap would shrink
    allowed = (gap - MIN_GAP).clamp_min(0)
    factor = torch.where(closing > allowed, allowed / closing.clamp_min(1e-6), torch.ones_like(closing))
    moves = moves.clone()
    for column in (upper, lower):  # a landmark of two pairs is shortened by both: conservative
        along = (moves[:, column] * down).sum(-1, keepdim=True) * down  # the vertical part of each move
        moves[:, column] = moves[:, column] - along + along * factor.unsqueeze(-1)
    return moves


def with_whole_brows(landmarks: Tensor, moves: Tensor) -> tuple[Tensor, Tensor]:
    """(B x 88 x 2 points, B x 88 x 2 moves): the 68 landmarks and their moves, then one point
    BROW_BODY[0] IODs above and one BROW_BODY[1] IODs below each brow point (along the face's
    vertical), moving as it moves. With them the flow carries each brow whole: a brow that rises or
    falls stretches or squeezes the skin around it (forehead, lid crease) instead of its own dark
    body, which a strong edit would otherwise smear over the lids."""
    down = eye_axes(landmarks)[1].unsqueeze(1)
    brows, carried = landmarks[:, BROWS], moves[:, BROWS]
    above, below = brows - BROW_BODY[0] * down, brows + BROW_BODY[1] * down
    return torch.cat([landmarks, above, below], 1), torch.cat([moves, carried, carried], 1)


def motion_flow(landmarks: Tensor, moves: Tensor, image_size: int, resolution: int) -> Tensor:
    """B x 2 x r x r backward flow ([-1, 1] units, `generator.warp`'s convention) that makes the
    landmark moves: the output at q shows the input at q + flow(q), so at each moved landmark p + d
    the flow is -d. It is a Gaussian radial-basis interpolation (FLOW_SIGMA) of those values,
    solved so that it meets them (up to FLOW_RIDGE) rather than averaging neighbours: an upper and
    a lower eyelid 4 px apart that move toward each other close the eye instead of cancelling
    (a normalised Gaussian average reached 11% of a blink's natural effect, this 56%), and no
    pixel moves further than the furthest-moving landmark. Far from every landmark, on the nose
    bridge, the hair and the background, it fades to no motion.
    Evaluated at the centres of an r x r grid over the image_size px image."""
    centres = (torch.arange(resolution, device=moves.device, dtype=torch.float32) + 0.5) * (
        image_size / resolution
    ) - 0.5
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    grid = torch.stack([xs, ys], -1).view(1, -1, 2).expand(len(moves), -1, -1)  # B x r² x 2 pixel positions
    moved = (landmarks + moves).float()  # B x P x 2: where the landmarks (and any added points) land

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        # Exponents held above -80: the weights of far points would otherwise underflow to
        # subnormal floats, on which exp is several times slower (below 2e-35 either way).
        return torch.exp((-torch.cdist(a, b).pow(2) / (2 * FLOW_SIGMA**2)).clamp_min(-80))

    ridge = FLOW_RIDGE * torch.eye(moved.shape[1], device=moves.device)
    weights = torch.linalg.solve(kernel(moved, moved) + ridge, -moves.float())  # B x 68 x 2
    flow = kernel(grid, moved) @ weights  # B x r² x 2 pixels
    # Two close landmarks moving apart need large opposite weights, whose field overshoots a few px
    # beyond them; nothing should move further than the face's largest landmark move.
    longest = moves.float().norm(dim=-1).amax(-1).view(-1, 1, 1)
    flow = flow * (longest / flow.norm(dim=-1, keepdim=True).clamp_min(1e-6)).clamp(max=1)
    flow = (flow / (image_size / 2)).view(-1, resolution, resolution, 2).permute(0, 3, 1, 2)
    flow = flow * local_unfolding(flow, image_size)
    return flow * unfolding_scale(flow, image_size).view(-1, 1, 1, 1)  # what the local pass left folded


# Lips that part are one line of the input and two of the output: a smooth flow through both
# lines overshoots and folds, the unfolding then weakens it, and the lips stretch instead of
# parting (the lower lip pulled into a tall band that reads as a tongue). parted_lips_flow
# interpolates the face above the mouth without the lower lip and the face below without the
# upper lip, and cuts between them along the mouth's middle line.
UPPER_LIP = [49, 50, 51, 52, 53, 61, 62, 63]  # the corners (48, 54, 60, 64) belong to both halves
LOWER_LIP = [55, 56, 57, 58, 59, 65, 66, 67]
CUT_SOFTNESS = 0.5  # px: how sharply the cut switches between the halves across the mouth


def parted_lips_flow(landmarks: Tensor, moves: Tensor, image_size: int, resolution: int) -> Tensor:
    """B x 2 x S x S (S = image_size, for a sharp cut): motion_flow's flow with the lips free to
    part: above the middle line of the moved mouth it is the flow of every landmark but the lower
    lip's, below it that of every landmark but the upper lip's. Each half is smooth and is
    computed on the r x r grid (resolution) as motion_flow's, then resized; only the cut is
    drawn at full size. Beyond the corners, where the two flows nearly agree, the cut fades into
    their mean."""
    points = range(landmarks.shape[1])  # the 68 landmarks and any points added after them
    keep_upper = [i for i in points if i not in LOWER_LIP]
    keep_lower = [i for i in points if i not in UPPER_LIP]
    halves = torch.cat(
        [
            motion_flow(landmarks[:, keep_upper], moves[:, keep_upper], image_size, resolution),
            motion_flow(landmarks[:, keep_lower], moves[:, keep_lower], image_size, resolution),
        ],
        1,
    )
    if resolution != image_size:
        halves = nn.functional.interpolate(halves, size=(image_size, image_size), mode="bilinear", align_corners=False)
    upper, lower = halves.split(2, 1)
    return upper + below_mouth_line(landmarks + moves, image_size) * (lower - upper)


def below_mouth_line(landmarks: Tensor, image_size: int) -> Tensor:
    """B x 1 x S x S in [0, 1]: 1 below the middle line of the mouth (between the inner lip
    lines, corner to corner), 0 above; the switch widens with the distance beyond the corners."""
    top, bottom = landmarks[:, INNER_UPPER_LINE], landmarks[:, INNER_LOWER_LINE]
    line, beyond = line_rows((top + bottom) / 2, image_size)
    rows = torch.arange(image_size, device=landmarks.device, dtype=torch.float32).view(1, -1, 1)
    return torch.sigmoid((rows - line.unsqueeze(1)) / (CUT_SOFTNESS + beyond).unsqueeze(1)).unsqueeze(1)


def fold_free_factors(flow: Tensor, image_size: int, steps: int = 20) -> Tensor:
    """B x 1 x r x r: per point, the largest factor in [0, 1] (in 1 / steps) by which the flow
    (B x 2 x r x r, warp's units) can be scaled while its Jacobian determinant there stays
    >= FOLD_MARGIN for every smaller factor too. The determinant of the flow scaled by s is
    1 + s trace(J) + s² det(J) (J the flow's own Jacobian): one Jacobian serves every factor."""
    dx_dx, dx_dy, dy_dx, dy_dy = (d.unsqueeze(1) for d in flow_jacobian(flow, image_size))
    factors = torch.linspace(0, 1, steps + 1, device=flow.device).view(1, -1, 1, 1)
    determinant = 1 + factors * (dx_dx + dy_dy) + factors.square() * (dx_dx * dy_dy - dx_dy * dy_dx)
    index = torch.arange(steps + 1, device=flow.device, dtype=flow.dtype).view(1, -1, 1, 1)
    # each factor's index where it folds, steps + 1 where it does not (arithmetic: where() is 3x slower here)
    first_fold = (index + (determinant >= FOLD_MARGIN) * (steps + 1 - index)).amin(1, keepdim=True).long()
    return factors.flatten()[(first_fold - 1).clamp(min=0)]


def local_unfolding(flow: Tensor, image_size: int) -> Tensor:
    """B x 1 x r x r factors in [0, 1] that weaken a flow only around where it would fold: each
    point's fold-free factor, spread UNFOLD_REACH px around it (a minimum, then a mean over that
    window) so the weakening is smooth. The interpolation folds where close landmarks move apart
    fast (lips parting); weakening the whole edit there would also stop the brows and lids. The
    window is in pixels, not grid points, so a flow sampled finer is unfolded alike."""
    points = max(1, round(UNFOLD_REACH * flow.shape[-1] / 128)) // 2 * 2 + 1  # odd; the grid spans the image
    allowed = -max_filter(-fold_free_factors(flow, image_size), points // 2)
    return nn.functional.avg_pool2d(allowed, points, 1, points // 2, count_include_pad=False)


def unfolding_scale(flow: Tensor, image_size: int) -> Tensor:
    """B: the largest factor in [0, 1] by which each flow (B x 2 x r x r, warp's units) can be
    scaled and fold nowhere (Jacobian determinant >= FOLD_MARGIN). Moves that the linear basis
    makes cross, such as lips asked to close by more than their gap when a laughing face is made
    sad, would otherwise show the mouth twice; such an edit is weakened as a whole instead."""
    return fold_free_factors(flow, image_size).flatten(1).amin(1)
