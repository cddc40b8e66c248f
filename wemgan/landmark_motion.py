"""How far each AU moves dlib's 68 landmarks, fit on real faces: the warp generator's motion target.

A frozen AU network rewards any change that raises its reading, and a warp generator found
one that is not an expression (noses pulled down, faces lengthened: docs/recipe-trials.md).
Landmark positions of real faces say what motion an AU is: fit on faces-au, the lip corners
go up and out by 0.23 IOD for AU12 at label 1, the lower lip down by 0.29 for AU25, the
brows up by 0.22 for AU02, and the nose tip does not move for any AU. `train_accelerate.py
--lambda_landmark_motion` asks the flow to be `motion_flow`: those moves around the input's own
landmarks, interpolated between them and fading to no motion elsewhere, so the nose stays put
(wemgan.losses.landmark_motion_loss).

The fit is a per-region linear regression of the landmarks, in an eye-aligned frame (origin
between the eye centres, eye line horizontal, IOD 1), on the labels of the AUs that FACS
lets move that region, with head pose as nuisance covariates. Both restrictions matter: in
photos AUs come with poses (eyes closed with the head tilted down, AU15 with a turned head),
and an unrestricted fit moves the jaw 18 px for AU15 and the nose 12 px for AU45. Written by

    python -m wemgan.landmark_motion fit --data ../shared/data/faces-au --out wemgan/landmark_motion.json
        # --cache-folder DIR: a decoded uint8 cache of the train split, faster

About 1 ms per face for the landmarks (dlib's predictor in the training crops' template box).
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .aus import AU_NAMES, NUM_AUS

MOTION_FILE = Path(__file__).with_name("landmark_motion.json")
REGIONS: dict[str, range] = {  # iBUG 68-point indices, 0-based
    "jaw": range(0, 17),
    "brows": range(17, 27),
    "nose": range(27, 36),
    "eyes": range(36, 48),
    "mouth": range(48, 68),
}
# Which AUs may move which region (FACS). The nose has none: AU09 wrinkles its skin, and in
# these labels it mostly comes with a raised head, so letting it move the nose moves the face.
MOVED_BY: dict[str, tuple[str, ...]] = {
    "jaw": ("AU26",),
    "brows": ("AU01", "AU02", "AU04"),
    "nose": (),
    "eyes": ("AU05", "AU06", "AU07", "AU45"),
    "mouth": ("AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26"),
}
RIDGE = 10.0  # on the AU coefficients only: rare AUs (AU45 has 7 faces at >= 0.6) shrink toward no motion
GAIN_FACES = 48  # train faces per AU on which the gain is measured
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
MOUTH_MARGIN = 3.0  # px at 128 px: how far beyond the lips mouth_region reaches (their rim, a shadow)
INNER_UPPER_LINE = [60, 61, 62, 63, 64]  # the inner lip lines, corner to corner
INNER_LOWER_LINE = [60, 67, 66, 65, 64]
CAVITY_SHADE = 0.3  # an opened mouth's inside: the lips' colour at 30% of its brightness (mouth_cavity)
TEETH_SHADE = 0.3  # teeth: the lips' colour with 30% of its distance to white left (mouth_cavity)
UPPER_TEETH = (0.16, 0.8)  # the upper teeth show at most 0.16 IOD (a crown, ~6 px at 128 px) and 80% of the opening
LOWER_TEETH = (0.1, 0.03)  # the lower teeth show at most 0.1 IOD, where 0.03 IOD of dark is left between the rows
CORNER_SHADOW = 0.3  # the teeth fade into the dark over this share of the mouth's half-width at each corner


def eye_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin N x 2, unit eye-line direction N x 2, IOD N) of N x 68 x 2 landmarks in pixels."""
    right_eye, left_eye = landmarks[:, 36:42].mean(1), landmarks[:, 42:48].mean(1)
    line = left_eye - right_eye
    iod = np.linalg.norm(line, axis=1)
    return (right_eye + left_eye) / 2, line / iod[:, None], iod


def fit_motion(landmarks: np.ndarray, aus: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """17 x 68 x 2: each AU's displacement of each landmark at label 1, in the eye frame (IODs)."""
    landmarks, aus = np.asarray(landmarks, dtype=np.float64), np.asarray(aus, dtype=np.float64)
    origin, direction, iod = eye_frame(landmarks)
    cos, sin = direction[:, 0], direction[:, 1]
    rel = landmarks - origin[:, None]
    shapes = np.stack([cos[:, None] * rel[..., 0] + sin[:, None] * rel[..., 1],
                       -sin[:, None] * rel[..., 0] + cos[:, None] * rel[..., 1]], -1) / iod[:, None, None]  # fmt: skip
    yaw, pitch = shapes[:, 30, 0], shapes[:, 30, 1]  # the nose tip in the eye frame
    pose = np.stack([yaw, pitch, yaw**2, pitch**2, yaw * pitch], 1)
    pose = (pose - pose.mean(0)) / pose.std(0)
    basis = np.zeros((NUM_AUS, 68, 2))
    for region, points in REGIONS.items():
        columns = [AU_NAMES.index(name) for name in MOVED_BY[region]]
        if not columns:
            continue
        design = np.concatenate([np.ones((len(aus), 1)), pose, aus[:, columns]], 1)
        penalty = np.diag([0.0] * (1 + pose.shape[1]) + [ridge] * len(columns))
        targets = shapes[:, list(points)].reshape(len(aus), -1)
        coef = np.linalg.solve(design.T @ design + penalty, design.T @ targets)
        for row, column in enumerate(columns):
            basis[column, list(points)] = coef[1 + pose.shape[1] + row].reshape(len(points), 2)
    return basis


@functools.cache
def motion_basis() -> Tensor:
    """The packaged fit (landmark_motion.json) times each AU's gain, as a 17 x 68 x 2 float tensor."""
    fitted = json.loads(MOTION_FILE.read_text(encoding="utf-8"))
    gains = torch.full((NUM_AUS, 1, 1), fitted.get("gain", 1.0))
    for name, gain in fitted.get("au_gain", {}).items():
        gains[AU_NAMES.index(name)] = gain
    return torch.tensor(fitted["basis"], dtype=torch.float32) * gains


def warp_effects(images: np.ndarray, aus: np.ndarray, basis: Tensor, faces: int = GAIN_FACES, seed: int = 0) -> dict:
    """Per AU with a geometry measure (metrics.natural_effects): the change of that measure when
    `faces` train crops without the AU (label <= 0.1) are warped by the basis for u = the mean label
    of faces showing it minus that of faces without, as a fraction of the natural effect (1 = the
    warp moves a face as far as real faces with and without the AU differ, as dlib reads them)."""
    from .generator import warp
    from .metrics.geometry import geometry_changes, natural_effects
    from .metrics.reconstruction import to_uint8

    rng = np.random.default_rng(seed)
    fractions = {}
    for name, effect in natural_effects().items():
        column = AU_NAMES.index(name)
        shown, absent = aus[:, column] >= 0.6, aus[:, column] <= 0.1
        chosen = np.sort(rng.choice(np.flatnonzero(absent), min(faces, int(absent.sum())), replace=False))
        sources = np.ascontiguousarray(images[chosen])
        x = torch.from_numpy(sources).permute(0, 3, 1, 2).float() / 127.5 - 1
        landmarks = crop_landmarks(x)
        u_rel = torch.zeros(len(chosen), NUM_AUS)
        u_rel[:, column] = float(aus[shown, column].mean() - aus[absent, column].mean())
        moves = landmark_displacements(landmarks, u_rel, basis)
        size = x.shape[-1]
        changes = geometry_changes(sources, to_uint8(warp(x, motion_flow(landmarks, moves, size, size))))
        fractions[name] = float(changes[effect["measure"]].mean() / effect["effect"])
    return fractions


def template_box(height: int, width: int):
    """The dlib.rectangle of the face in an aligned training crop (acd.TEMPLATE_BOX scaled to it)."""
    import dlib

    from .metrics.acd import TEMPLATE_BOX

    left, top, right, bottom = TEMPLATE_BOX
    return dlib.rectangle(round(left * width), round(top * height), round(right * width), round(bottom * height))


def crop_landmarks(images: Tensor) -> Tensor:
    """B x 68 x 2 pixel positions of dlib's landmarks on B x 3 x H x W training crops in [-1, 1]
    (in the template box of an aligned crop: no detection, about 1 ms per face on one core)."""
    from .metrics.geometry import landmarks68

    pixels = ((images.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    box = template_box(*images.shape[-2:])
    points = landmarks68(pixels.permute(0, 2, 3, 1).numpy(), [box] * len(images))
    return torch.from_numpy(points).float().to(images.device)


def landmark_displacements(landmarks: Tensor, u_rel: Tensor, basis: Tensor | None = None) -> Tensor:
    """B x 68 x 2 pixel moves that the AU change u_rel (B x 17) makes to faces with these landmarks:
    the basis's eye-frame moves rotated into each face's eye line and scaled by its IOD."""
    basis = (motion_basis() if basis is None else basis).to(landmarks.device)
    moves = torch.einsum("ba,apc->bpc", u_rel.float(), basis)  # eye frame, IODs
    right_eye, left_eye = landmarks[:, 36:42].mean(1), landmarks[:, 42:48].mean(1)
    line = left_eye - right_eye  # IOD-long, along the eye line: rotation and scale in one
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


def polygon_coverage(points: Tensor, image_size: int, supersample: int = 1) -> Tensor:
    """B x 1 x S x S in [0, 1]: the share of each pixel inside the closed polygon through points
    (B x P x 2, pixels; even-odd rule), sampled at supersample² points per pixel."""
    n = image_size * supersample
    pixels = (torch.arange(n, device=points.device, dtype=torch.float32) + 0.5) / supersample - 0.5
    y, x = pixels.view(1, 1, -1, 1), pixels.view(1, 1, 1, -1)
    a = points.float().unsqueeze(-1).unsqueeze(-1)  # B x P x 2 x 1 x 1
    b = a.roll(-1, dims=1)  # each edge a -> b
    (ax, ay), (bx, by) = a.unbind(2), b.unbind(2)
    crosses = ((ay > y) != (by > y)) & (x < (bx - ax) * (y - ay) / (by - ay + 1e-9) + ax)
    inside = (crosses.sum(1, keepdim=True) % 2).float()
    return nn.functional.avg_pool2d(inside, supersample) if supersample > 1 else inside


def mouth_region(landmarks: Tensor, moves: Tensor, image_size: int) -> Tensor:
    """B x 1 x S x S in [0, 1]: inside the outer lip line, where it is and where it moves to, and
    up to MOUTH_MARGIN px beyond it, fading out over the outer 4 px. A warp cannot draw what an opening mouth
    shows (teeth, its dark inside), so the colour head may paint there (generator stretch_gate).
    Lids stretch too when an eye closes, but what shows there is the lid's own skin, which the
    warp moves; colour let in there became white lids and spots on irises (docs/recipe-trials.md)."""
    outer = list(range(48, 60))  # the outer lip line, a closed polygon
    inside = torch.maximum(
        polygon_coverage(landmarks[:, outer], image_size), polygon_coverage((landmarks + moves)[:, outer], image_size)
    )
    reach = round(MOUTH_MARGIN * image_size / 128)
    widened = nn.functional.max_pool2d(inside, 2 * reach + 1, 1, reach)
    fade = 2 * round(image_size / 128) + 1
    return nn.functional.avg_pool2d(widened, fade, 1, fade // 2, count_include_pad=False)


def mouth_cavity(x: Tensor, landmarks: Tensor, moves: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """(colour B x 3 x S x S, mask B x 1 x S x S) of the inside of a mouth that the flow opens.
    The flow (`parted_lips_flow`) parts the lips along a cut, and the gap shows whatever lay on the
    cut, stretched; an opened mouth shows its dark inside. The mask is inside the moved inner lip
    line, less what was already inside the mouth and is only moved (teeth, its dark inside: the
    flow moves those with their lips): only what the opening uncovers or smears is painted:
    upper teeth under the upper lip (UPPER_TEETH), lower teeth over the lower lip when the
    opening is wide enough (LOWER_TEETH), both of the lips' colour lightened (TEETH_SHADE) and
    fading into the cheeks' shadow at the corners (CORNER_SHADOW), and between them the lips'
    own colour at CAVITY_SHADE of its brightness."""
    from .generator import flow_stretch, warp

    size = x.shape[-1]
    inner, outer = list(range(60, 68)), list(range(48, 60))
    before = polygon_coverage(landmarks[:, inner], size, supersample=2)
    after = polygon_coverage((landmarks + moves)[:, inner], size, supersample=2)
    # What was inside and is only moved stays; what is magnified past twice its size (lips a
    # pixel apart, pulled open) is a smear of the lips' edges and is painted too.
    smeared = (4 * (flow_stretch(flow.float(), size) - 0.5)).clamp(0, 1)
    smeared = nn.functional.interpolate(smeared, size=(size, size), mode="bilinear", align_corners=False)
    uncovered = (after - warp(before, flow) * (1 - smeared)).clamp(0, 1)
    uncovered = nn.functional.avg_pool2d(uncovered, 3, 1, 1)  # a lip's rim shades into the gap over a px
    lips = (polygon_coverage(landmarks[:, outer], size) - before).clamp(0, 1)
    lip_colour = (x.float() * lips).sum((2, 3), keepdim=True) / lips.sum((2, 3), keepdim=True).clamp_min(1)
    dark = (lip_colour + 1) * CAVITY_SHADE - 1  # [-1, 1] images: darkened toward black (-1)
    teeth = 1 - (1 - lip_colour) * TEETH_SHADE  # lightened toward white (1)
    # An opened mouth shows teeth, a smile mostly the upper ones (a dark crescent reads as a
    # drawing, and the independent judge reads less smile and lip raise from it): a band hangs
    # below the upper lip, and once the opening is wide a shorter one stands on the lower lip.
    moved = landmarks + moves
    upper, _ = line_rows(moved[:, INNER_UPPER_LINE], size)
    lower, _ = line_rows(moved[:, INNER_LOWER_LINE], size)
    iod = (moved[:, 42:48].mean(1) - moved[:, 36:42].mean(1)).norm(dim=-1, keepdim=True)
    opening = (lower - upper).clamp_min(0)  # B x S
    upper_height = torch.minimum(UPPER_TEETH[0] * iod, UPPER_TEETH[1] * opening)
    lower_height = torch.minimum(LOWER_TEETH[0] * iod, (opening - upper_height - LOWER_TEETH[1] * iod).clamp_min(0))
    rows = torch.arange(size, device=x.device, dtype=torch.float32).view(1, -1, 1)

    def band(depth: Tensor, height: Tensor) -> Tensor:  # 1 from a lip's edge (depth 0) to `height` into the gap
        return torch.sigmoid(2 * depth + 1) * torch.sigmoid(2 * (height.unsqueeze(1) - depth))

    in_upper = band(rows - upper.unsqueeze(1), upper_height)
    in_lower = band(lower.unsqueeze(1) - rows, lower_height)
    columns = torch.arange(size, device=x.device, dtype=torch.float32).view(1, 1, -1)
    left, right = moved[:, 60, 0].view(-1, 1, 1), moved[:, 64, 0].view(-1, 1, 1)
    centred = 1 - (2 * (columns - left) / (right - left).clamp_min(1) - 1).abs()  # 1 mid-mouth, 0 at a corner
    in_teeth = ((in_upper + in_lower).clamp(max=1) * (centred / CORNER_SHADOW).clamp(0, 1)).unsqueeze(1)
    return dark + in_teeth * (teeth - dark), uncovered


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
    moved = (landmarks + moves).float()  # B x 68 x 2: where the landmarks land

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * FLOW_SIGMA**2))

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
    keep_upper = [i for i in range(68) if i not in LOWER_LIP]
    keep_lower = [i for i in range(68) if i not in UPPER_LIP]
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


def line_rows(points: Tensor, image_size: int) -> tuple[Tensor, Tensor]:
    """(B x S rows, B x S px beyond the ends) of the polyline through points (B x P x 2, pixels)
    at each column, held flat beyond its left- and rightmost points."""
    order = points[..., 0].argsort(-1)  # interpolation needs increasing x
    xs, ys = points[..., 0].gather(-1, order), points[..., 1].gather(-1, order)
    x = torch.arange(image_size, device=points.device, dtype=torch.float32).expand(len(points), -1).contiguous()
    index = torch.searchsorted(xs.contiguous(), x).clamp(1, xs.shape[-1] - 1)
    x0, x1, y0, y1 = xs.gather(-1, index - 1), xs.gather(-1, index), ys.gather(-1, index - 1), ys.gather(-1, index)
    t = ((x - x0) / (x1 - x0).clamp_min(1e-3)).clamp(0, 1)
    return y0 + t * (y1 - y0), (xs[:, :1] - x).clamp_min(0) + (x - xs[:, -1:]).clamp_min(0)


def fold_free_factors(flow: Tensor, image_size: int, steps: int = 20) -> Tensor:
    """B x 1 x r x r: per point, the largest factor in [0, 1] (in 1 / steps) by which the flow
    (B x 2 x r x r, warp's units) can be scaled while its Jacobian determinant there stays
    >= FOLD_MARGIN for every smaller factor too (a determinant is quadratic in the factor)."""
    from .generator import flow_stretch

    factors = torch.linspace(0, 1, steps + 1, device=flow.device)
    scaled = (flow.unsqueeze(1) * factors.view(1, -1, 1, 1, 1)).flatten(0, 1)  # (B * factors) x 2 x r x r
    determinant = (1 - flow_stretch(scaled, image_size, floor=False)).view(len(flow), steps + 1, *flow.shape[-2:])
    index = torch.arange(steps + 1, device=flow.device).view(1, -1, 1, 1)
    first_fold = torch.where(determinant >= FOLD_MARGIN, steps + 1, index).amin(1, keepdim=True)
    return factors[(first_fold - 1).clamp(min=0)]


def local_unfolding(flow: Tensor, image_size: int) -> Tensor:
    """B x 1 x r x r factors in [0, 1] that weaken a flow only around where it would fold: each
    point's fold-free factor, spread UNFOLD_REACH px around it (a minimum, then a mean over that
    window) so the weakening is smooth. The interpolation folds where close landmarks move apart
    fast (lips parting); weakening the whole edit there would also stop the brows and lids. The
    window is in pixels, not grid points, so a flow sampled finer is unfolded alike."""
    points = max(1, round(UNFOLD_REACH * flow.shape[-1] / 128)) // 2 * 2 + 1  # odd; the grid spans the image
    allowed = -nn.functional.max_pool2d(-fold_free_factors(flow, image_size), points, 1, points // 2)
    return nn.functional.avg_pool2d(allowed, points, 1, points // 2, count_include_pad=False)


def unfolding_scale(flow: Tensor, image_size: int) -> Tensor:
    """B: the largest factor in [0, 1] by which each flow (B x 2 x r x r, warp's units) can be
    scaled and fold nowhere (Jacobian determinant >= FOLD_MARGIN). Moves that the linear basis
    makes cross, such as lips asked to close by more than their gap when a laughing face is made
    sad, would otherwise show the mouth twice; such an edit is weakened as a whole instead."""
    return fold_free_factors(flow, image_size).flatten(1).amin(1)


def fit(data: str, cache_folder: str | None = None, ridge: float = RIDGE) -> dict:
    """Landmark the train faces and fit the basis; returns what landmark_motion.json holds."""
    from .metrics.geometry import load_train_faces

    images, aus = load_train_faces(data, cache_folder)
    height, width = images.shape[1:3]
    basis = fit_motion(landmark_labels(images), aus, ridge)
    # A regression on noisy labels (OpenFace's) is diluted toward no motion, and the warp realises
    # less than the landmark moves it is given: the gain sets the median AU's warp to its natural effect.
    fractions = warp_effects(images, aus, torch.from_numpy(basis).float())
    gain = 1 / float(np.median(list(fractions.values())))
    # No AU is pushed past its own natural effect: the jaw drop already opens the mouth 2.1 times
    # as far as real faces do at gain 1, and at 1.59 it pulled chins down into a stretched smear.
    au_gain = {name: min(gain, 1 / value) for name, value in fractions.items() if value > 0}
    return {
        "about": (
            "Displacement of dlib's 68 landmarks per AU at label 1, in an eye-aligned frame (origin between the "
            "eye centres, x along the eye line, units of the inter-ocular distance): per-region ridge regression "
            "on faces-au train crops of the AUs FACS lets move the region, head pose (nose-tip position and its "
            "squares) as nuisance covariates. motion_basis() multiplies it by gain: 1 / the median over AUs of how "
            "far the landmark warp moves train faces (dlib-read geometry, u = mean label with the AU minus without) "
            "as a fraction of the natural effect; an AU whose warp at that gain would pass its natural effect has "
            "au_gain = 1 / its fraction instead. Written by python -m wemgan.landmark_motion fit."
        ),
        "data": data if not Path(data).is_absolute() else Path(data).name,
        "split": "train",
        "faces": len(images),
        "image_size": [int(height), int(width)],
        "ridge": ridge,
        "moved_by": {region: list(names) for region, names in MOVED_BY.items()},
        "au_names": list(AU_NAMES),
        "gain": round(gain, 4),
        "au_gain": {name: round(value, 4) for name, value in au_gain.items()},
        "warp_fraction_of_natural_effect_at_gain_1": {name: round(value, 3) for name, value in fractions.items()},
        "basis": np.round(basis, 5).tolist(),
    }


def landmark_labels(images: np.ndarray) -> np.ndarray:
    """N x 68 x 2 dlib landmarks (template box) of N x H x W x 3 uint8 crops, 512 at a time."""
    from .metrics.geometry import landmarks68

    box = template_box(*images.shape[1:3])
    points = np.empty((len(images), 68, 2), dtype=np.float32)
    for start in range(0, len(images), 512):  # np.array: a contiguous copy of a memory-mapped slice
        chunk = np.array(images[start : start + 512])
        points[start : start + len(chunk)] = landmarks68(chunk, [box] * len(chunk))
    return points


def train_regressor(
    cache_folder: str, out: Path, steps: int, batch_size: int = 64, learning_rate: float = 2e-3, holdout: int = 1000
) -> dict:
    """Distil dlib's landmarks of the training crops into a LandmarkRegressor (Adam, L1 in pixels,
    cosine decay); writes out/model.safetensors and out/model.json, returns the record."""
    import safetensors.torch

    from .landmark_regressor import LandmarkRegressor
    from .metrics.geometry import load_train_faces

    images, _ = load_train_faces("", cache_folder)
    labels = torch.from_numpy(landmark_labels(images))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    held, train = order[:holdout], order[holdout:]
    net = LandmarkRegressor(images.shape[1])
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    sampler = torch.Generator().manual_seed(1)

    def error(rows: Tensor) -> Tensor:
        """Per-landmark (x, y) error in pixels on these rows, read in sorted order (memory-mapped reads)."""
        rows = rows.sort().values
        faces = torch.from_numpy(np.array(images[rows.numpy()])).permute(0, 3, 1, 2).float() / 127.5 - 1
        return net(faces) - labels[rows]

    for step in range(steps):
        loss = error(train[torch.randint(len(train), (batch_size,), generator=sampler)]).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 200 == 0:
            print(f"step {step}: L1 {loss.item():.2f} px", flush=True)
    net.eval()
    with torch.no_grad():
        errors = torch.cat([error(rows).norm(dim=-1) for rows in held.split(250)])
    record = {
        "about": "LandmarkRegressor distilled from dlib's 68-point predictor (template box) on faces-au train crops",
        "config": {"image_size": int(images.shape[1])},
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "held_out_faces": holdout,
        "held_out_mean_error_px": round(errors.mean().item(), 3),
        "held_out_error_px_p95": round(errors.flatten().quantile(0.95).item(), 3),
        "command": "python -m wemgan.landmark_motion train-regressor",
    }
    staging = out.with_name(out.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(net.state_dict(), staging / "model.safetensors")
    (staging / "model.json").write_text(json.dumps(record, indent=2) + "\n")
    if out.exists():
        import shutil

        shutil.rmtree(out)
    staging.rename(out)
    return record


def load_landmark_regressor(folder: str | Path) -> nn.Module:
    """The LandmarkRegressor that train-regressor wrote to folder (model.safetensors + model.json)."""
    import safetensors.torch

    from .landmark_regressor import LandmarkRegressor

    folder = Path(folder)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"no landmark regressor in {folder}: train one with python -m wemgan.landmark_motion train-regressor "
            f"--cache-folder DIR --out {folder}"
        )
    record = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    regressor = LandmarkRegressor(**record["config"])
    regressor.load_state_dict(safetensors.torch.load_file(folder / "model.safetensors"))
    return regressor


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wemgan.landmark_motion", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("fit", help="fit the AU -> landmark motion basis on real faces")
    command.add_argument(
        "--data", required=True, help="the faces-au parquet folder (recorded as given: keep it relative)"
    )
    command.add_argument("--cache-folder", help="a decoded uint8 cache of the train split (images.npy, aus.npy)")
    command.add_argument("--ridge", type=float, default=RIDGE)
    command.add_argument("--out", type=Path, default=MOTION_FILE)
    command = commands.add_parser("train-regressor", help="distil dlib's landmarks into a LandmarkRegressor")
    command.add_argument("--cache-folder", required=True, help="a decoded uint8 cache of the train split")
    command.add_argument("--out", type=Path, required=True, help="folder for model.safetensors and model.json")
    command.add_argument("--steps", type=int, default=3000)
    command.add_argument("--batch-size", type=int, default=64)
    command.add_argument("--learning-rate", type=float, default=2e-3)
    args = parser.parse_args(argv)
    from .metrics.geometry import write_packaged_json

    if args.command == "train-regressor":
        record = train_regressor(args.cache_folder, args.out, args.steps, args.batch_size, args.learning_rate)
        print(json.dumps(record, indent=2))
        return
    text = write_packaged_json(args.out, fit(args.data, args.cache_folder, args.ridge))
    print(f"wrote {args.out} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
