"""Where the renderer redraws a face: the parts an expression changes, as masks from landmarks.

Training (landmark-guided masked reconstruction) blanks random parts of real faces and asks the
renderer to draw them back from the face's landmarks and AUs: the mouth with its lips and a margin,
an eye with its lids, the band between a brow and its upper lid, soft blobs on the cheeks and jaw.
These are the regions an expression reveals or hides (teeth, the mouth's inside, lid skin, folds).
All masks are B x 1 x S x S, 1 where the renderer draws; landmarks are B x 68 x 2 pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .config import RendererConfig
from .flow import max_filter, polygon_coverage
from .landmark_guides import (
    INNER_LIPS,
    JAW,
    LEFT_BROW,
    LEFT_EYE,
    OUTER_LIPS,
    RIGHT_BROW,
    RIGHT_EYE,
    UPPER_LID_LEFT,
    UPPER_LID_RIGHT,
)
from .landmark_motion import eye_axes
from .part_windows import MOUTH_AND_EYES, part_shares, window_corners, window_interiors

MOUTH_MARGINS = (2, 7)  # px at 128 px: the lips' polygon is widened by a random margin in this range (training)
EYE_MARGIN = 3  # px at 128 px: beyond the eye's opening, the lids' skin
LID_HEIGHT = 2.2  # an eye's region is its opening stretched vertically by this factor about its centre: the lids
BLOB_RADII = (5.0, 12.0)  # px at 128 px: cheek and jaw blobs (folds, dimples, a raised cheek)
# Each upper lid (right, left) in the order that closes a polygon with its brow.
BROW_SIDE_LIDS = (UPPER_LID_RIGHT[::-1], UPPER_LID_LEFT[::-1])
# How often each part is blanked in a training sample (independently; at least one part per sample).
PART_RATES = {"mouth": 0.6, "eyes": 0.3, "brows": 0.3, "blob": 0.3}


def dilate(mask: Tensor, radius: int | Tensor) -> Tensor:
    """The masks (B x 1 x S x S) grown by radius px (a square structuring element); radius an int or
    one per mask (B integers)."""
    if isinstance(radius, int):
        return max_filter(mask, radius) if radius > 0 else mask
    # Per-mask radii: 3 x 3 max filters compose into the larger squares, and each mask keeps its own.
    radii, grown, out = radius.view(-1, 1, 1, 1).to(mask.device), mask, mask
    for r in range(1, int(radius.max()) + 1):
        grown = max_filter(grown, 1)
        out = torch.where(radii == r, grown, out)
    return out


def mouth_mask(landmarks: Tensor, image_size: int, margin: float | Tensor) -> Tensor:
    """The outer lip polygon widened by margin px (at 128 px; a number, or one per face: B)."""
    scale = image_size / 128
    radius = round(margin * scale) if isinstance(margin, float | int) else (margin * scale).round().long()
    return dilate(polygon_coverage(landmarks[:, OUTER_LIPS], image_size), radius)


def eye_masks(landmarks: Tensor, image_size: int) -> tuple[Tensor, Tensor]:
    """Each eye's opening stretched to cover its lids (LID_HEIGHT) and widened by EYE_MARGIN px."""
    masks = []
    for eye in (RIGHT_EYE, LEFT_EYE):
        points = landmarks[:, eye]
        centre = points.mean(1, keepdim=True)
        stretched = centre + (points - centre) * torch.tensor([1.15, LID_HEIGHT], device=points.device)
        masks.append(dilate(polygon_coverage(stretched, image_size), round(EYE_MARGIN * image_size / 128)))
    return masks[0], masks[1]


def brow_to_lid_masks(
    landmarks: Tensor, image_size: int, below_brow: float = 0.0, above_lid: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Each side's polygon from its brow, moved below_brow px down, to its upper lid, moved
    above_lid px up (px at 128 px)."""
    down = torch.tensor([0.0, image_size / 128], device=landmarks.device)
    right, left = (
        polygon_coverage(
            torch.cat([landmarks[:, brow] + below_brow * down, landmarks[:, lid] - above_lid * down], 1), image_size
        )
        for brow, lid in zip((RIGHT_BROW, LEFT_BROW), BROW_SIDE_LIDS, strict=True)
    )
    return right, left


def brow_band_masks(landmarks: Tensor, image_size: int) -> tuple[Tensor, Tensor]:
    """Each brow with the skin between it and the upper lid (what a raised brow uncovers)."""
    margin = round(2 * image_size / 128)
    right, left = brow_to_lid_masks(landmarks, image_size)
    return dilate(right, margin), dilate(left, margin)


def blob_mask(centres: Tensor, radii: Tensor, image_size: int) -> Tensor:
    """Disks (B x 2 centres, B radii, pixels) with a 1-px soft rim."""
    pixels = torch.arange(image_size, device=centres.device, dtype=torch.float32)
    y, x = pixels.view(1, -1, 1), pixels.view(1, 1, -1)
    distance = ((x - centres[:, 0, None, None]) ** 2 + (y - centres[:, 1, None, None]) ** 2).sqrt()
    return (radii.view(-1, 1, 1) + 0.5 - distance).clamp(0, 1).unsqueeze(1)


def cheek_points(landmarks: Tensor, weights: Tensor) -> Tensor:
    """Points between a jaw landmark (2..14) and the nose tip (30): cheeks, folds and jaw.
    weights: B x 2 in [0, 1), which jaw landmark and how far towards the nose."""
    jaw = landmarks[:, JAW[2:15]]
    index = (weights[:, 0] * jaw.shape[1]).long().clamp(max=jaw.shape[1] - 1)
    edge = jaw[torch.arange(len(jaw)), index]
    return edge + (landmarks[:, 30] - edge) * (0.15 + 0.6 * weights[:, 1:2])


def training_masks(landmarks: Tensor, image_size: int, generator: torch.Generator) -> Tensor:
    """A random mask per face for masked reconstruction: each part of PART_RATES blanked
    independently (at least one per face), the mouth with a random margin in MOUTH_MARGINS."""
    b, device = landmarks.shape[0], landmarks.device

    def uniform(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, device=generator.device).to(device)

    chosen = {part: uniform(b) < rate for part, rate in PART_RATES.items()}
    nothing = ~torch.stack(list(chosen.values())).any(0)
    chosen["mouth"] = chosen["mouth"] | nothing
    low, high = MOUTH_MARGINS
    margins = (low + uniform(b) * (high - low + 1)).floor().clamp(max=high)
    mouth = mouth_mask(landmarks, image_size, margins)
    side = uniform(b, 2) < 0.5  # eyes and brows: one side or both
    both = uniform(b) < 0.5
    right_eye, left_eye = eye_masks(landmarks, image_size)
    right_brow, left_brow = brow_band_masks(landmarks, image_size)

    def one_or_both(first: Tensor, second: Tensor, pick: Tensor) -> Tensor:
        pick_first = (pick | both).view(-1, 1, 1, 1)
        pick_second = (~pick | both).view(-1, 1, 1, 1)
        return torch.maximum(first * pick_first, second * pick_second)

    eyes = one_or_both(right_eye, left_eye, side[:, 0])
    brows = one_or_both(right_brow, left_brow, side[:, 1])
    scale = image_size / 128
    radii = (BLOB_RADII[0] + uniform(b) * (BLOB_RADII[1] - BLOB_RADII[0])) * scale
    blob = blob_mask(cheek_points(landmarks.float(), uniform(b, 2)), radii, image_size)
    parts = {"mouth": mouth, "eyes": eyes, "brows": brows, "blob": blob}
    mask = torch.zeros(b, 1, image_size, image_size, device=device)
    for part, region in parts.items():
        mask = torch.maximum(mask, region * chosen[part].view(-1, 1, 1, 1))
    return mask


# How often each part's window is trained (relative rates over the parts a PartRenderer has).
WINDOW_PART_RATES = {"mouth": 0.5, "right_eye": 0.25, "left_eye": 0.25, "right_cheek": 0.25, "left_cheek": 0.25}


def part_rates(parts: tuple[str, ...], device: torch.device | None = None) -> Tensor:
    """P: WINDOW_PART_RATES of `parts` (part_windows.PARTS names), summing to 1."""
    rates = torch.tensor([WINDOW_PART_RATES[part] for part in parts], device=device)
    return rates / rates.sum()


def window_training_masks(
    landmarks: Tensor, image_size: int, window: int, generator: torch.Generator, parts: tuple[str, ...] = MOUTH_AND_EYES
) -> tuple[Tensor, Tensor]:
    """A random mask per face for a windowed renderer (renderer.PartRenderer) with these parts: one
    part per face, chosen by WINDOW_PART_RATES; the mouth with a random margin in MOUTH_MARGINS, an
    eye with its lids, its brow band, or both; a cheek's fold band (smile_skin_bands). Returns the
    masks (cut to the part's window) and each face's part index (B), so that the critics can judge
    that window."""
    b, device = landmarks.shape[0], landmarks.device

    def uniform(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, device=generator.device).to(device)

    bounds = part_rates(parts, device).cumsum(0)[:-1]
    chosen = (uniform(b, 1) >= bounds).sum(1)  # B part indices drawn with WINDOW_PART_RATES
    low, high = MOUTH_MARGINS
    margins = (low + uniform(b) * (high - low + 1)).floor().clamp(max=high)
    mouth = mouth_mask(landmarks, image_size, margins)
    which = (uniform(b) * 3).floor().view(-1, 1, 1, 1)  # 0: the eye, 1: its brow band, 2: both
    eyes, brows = eye_masks(landmarks, image_size), brow_band_masks(landmarks, image_size)
    sides = [torch.maximum(eye * (which != 1), brow * (which != 0)) for eye, brow in zip(eyes, brows, strict=True)]
    regions = {"mouth": mouth, "right_eye": sides[0], "left_eye": sides[1]}
    if "right_cheek" in parts:
        regions["right_cheek"], regions["left_cheek"], _ = smile_skin_bands(landmarks, image_size)
    candidates = torch.stack([regions[part] for part in parts], 1)  # B x P x 1 x S x S
    mask = candidates[torch.arange(b, device=device), chosen]
    corners = window_corners(landmarks, window, image_size, parts)
    inside = window_interiors(corners, window, image_size, margin=0)
    return mask * inside[torch.arange(b, device=device), chosen, None], chosen


def window_masks_of(
    masks: Tensor, landmarks: Tensor, generator: torch.Generator, fallback: Tensor, fallback_parts: Tensor,
    parts: tuple[str, ...] = MOUTH_AND_EYES,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Each face's mask (B x 1 x S x S, e.g. an edit_mask of a real edit) cut to one part's share:
    a part whose share of the mask is not empty, drawn with WINDOW_PART_RATES among those; faces
    whose mask is empty everywhere take `fallback` (masks and part indices, window_training_masks).
    A share is kept whole, as an edit gives it: one wider than a window trains the PartRenderer's
    zoomed-out window, as strong edits and wide masks use it."""
    shares = part_shares(masks, landmarks, parts)  # B x P x S x S
    b = masks.shape[0]
    weights = (shares.flatten(2).amax(2) > 0).float() * part_rates(parts, masks.device)
    empty = weights.sum(1) == 0
    picks = torch.multinomial(weights + empty[:, None].float(), 1, generator=generator).squeeze(1)
    picked = torch.where(empty, fallback_parts, picks.to(fallback_parts.device))  # B part indices
    share = shares[torch.arange(b, device=masks.device), picked.to(masks.device), None]
    return torch.where(empty.view(-1, 1, 1, 1), fallback, share), picked


MOVED = 1.5  # px at 128 px: lips that move less than this, or a brow that rises less, keep what the warp made of them
INNER_MARGIN = 2  # px at 128 px: the inner mouth widened by this takes in the lips' inner edge, where lips meet teeth
BROW_HAIR = 4.0  # px at 128 px: how far below its landmarks a brow's hair reaches; bare skin starts there
LID_CLEARANCE = 1.0  # px at 128 px: the brow's skin band stops this far above the upper lid (lashes and crease stay)


def inner_mouth_mask(landmarks: Tensor, image_size: int) -> Tensor:
    """The inner lip polygon: teeth, tongue and the mouth's dark inside (nothing for closed lips)."""
    return polygon_coverage(landmarks[:, INNER_LIPS], image_size)


def brow_skin_masks(landmarks: Tensor, image_size: int) -> tuple[Tensor, Tensor]:
    """Each brow's band of bare skin: from BROW_HAIR px below the brow to LID_CLEARANCE px above its upper lid."""
    return brow_to_lid_masks(landmarks, image_size, BROW_HAIR, LID_CLEARANCE)


FOLD_START = (0.05, -0.05)  # x IOD (outward, down) from the nose wing (31, 35): where a nasolabial fold starts
FOLD_WIDTH = (0.10, 0.14)  # x IOD: the fold band's width outward at the nose wing and at the mouth corner
FOLD_DROP = 0.12  # x IOD: how far below the mouth corner the band reaches (the fold's lower end, the cheek's bulge)
CHIN_DROP = 0.15  # x IOD: the band under the lower lip (its shadow, the chin's top) that a smile stretches


def smile_skin_masks(landmarks: Tensor, image_size: int) -> Tensor:
    """The skin a smile shapes around the mouth, all of smile_skin_bands in one mask."""
    return torch.stack(smile_skin_bands(landmarks, image_size)).amax(0)


def smile_skin_bands(landmarks: Tensor, image_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """(right fold, left fold, chin): the skin a smile shapes around the mouth: each nasolabial fold with
    the cheek beside it (a band from the nose wing to below the mouth corner, widening outward) and the
    skin under the lower lip, in units of the inter-ocular distance along the eyes' axis, so they follow
    the face's size and roll."""
    points = landmarks.float()
    line, down = eye_axes(points)
    iod = line.norm(dim=-1, keepdim=True).clamp_min(1.0)
    across, down = line / iod, down / iod  # unit vectors towards the face's left (image right) and down
    masks = []
    for nose_wing, corner, outward in ((31, 48, -across), (35, 54, across)):
        start = points[:, nose_wing] + iod * (FOLD_START[0] * outward + FOLD_START[1] * down)
        corner_point = points[:, corner]
        band = [
            start,
            start + iod * FOLD_WIDTH[0] * outward,
            corner_point + iod * FOLD_WIDTH[1] * outward,
            corner_point + iod * (FOLD_WIDTH[1] * outward + FOLD_DROP * down),
            corner_point + iod * FOLD_DROP * down,
            corner_point,
        ]
        masks.append(polygon_coverage(torch.stack(band, 1), image_size))
    lower_lip = points[:, [54, 55, 56, 57, 58, 59, 48]]
    chin = torch.cat([lower_lip, (lower_lip + iod[:, None] * CHIN_DROP * down[:, None]).flip(1)], 1)
    masks.append(polygon_coverage(chin, image_size))
    return masks[0], masks[1], masks[2]


def edit_mask(landmarks: Tensor, moves: Tensor, image_size: int, options: RendererConfig | None = None) -> Tensor:
    """Where the Renderer redraws an edit: what the edit reveals, which a warp cannot draw.

    The warp moves lips, lids and brows well and keeps their colours (a renderer that redraws a
    whole part must guess them: grey lips, tinted irises, erased brows; docs/research/renderer.md,
    2026-12-06). What it cannot draw is what was hidden:
    - the inside of the mouth when the lips part (teeth, tongue, the dark cavity) and the lips
      that close over teeth: the inner mouth where it was and where it goes, INNER_MARGIN px wider,
      when the lips move by more than MOVED px;
    - the skin a rising brow uncovers (options.brow_skin): the band between the brow (where it goes)
      and its upper lid, when the brow rises by more than MOVED px. A brow that falls only squeezes
      skin, which the warp does well.
    options are the renderer's config (wemgan.config.RendererConfig; default: its defaults).
    With options.keep_inner_mouth, the inner mouth the face shows both before and after the edit (its own
    teeth, moved by the warp) is kept: only where one of the two has it is drawn, INNER_MARGIN px wider.
    With options.mouth_surroundings > 0 (px at 128 px), lips that move are redrawn whole, with that much skin
    around them where they were and where they go: a smile drawn into a face that does not otherwise
    smile is what the realism test spots (docs/research/measures.md, 2026-12-06 late night), and the
    folds and chin around a mouth belong to its expression.
    With options.smile_skin, lips that move also have the skin a smile shapes redrawn (smile_skin_masks:
    the nasolabial folds with the cheek beside them, the skin under the lower lip), where it was and
    where it goes; the lips themselves stay the warp's.
    With options.brow_skin False, rising brows' skin is left to the warp too: only the mouth is redrawn
    (the bands' drawing adds colour where brows rise; docs/research/renderer.md, 2026-12-07 fifth session).
    An edit that moves nothing gives an empty mask, so the Renderer changes nothing.
    landmarks, moves: B x 68 x 2 px."""
    options = options or RendererConfig()
    target = landmarks + moves
    scale = image_size / 128
    lips_move = (moves[:, OUTER_LIPS + INNER_LIPS].norm(dim=-1).amax(1) / scale > MOVED).float().view(-1, 1, 1, 1)
    before, after = inner_mouth_mask(landmarks, image_size), inner_mouth_mask(target, image_size)
    inner = (before - after).abs() if options.keep_inner_mouth else torch.maximum(before, after)
    mask = lips_move * dilate(inner, round(INNER_MARGIN * scale))
    if options.mouth_surroundings:
        width = options.mouth_surroundings
        around = torch.maximum(*(mouth_mask(points, image_size, width) for points in (landmarks, target)))
        mask = torch.maximum(mask, lips_move * around)
    if options.smile_skin:
        shaped = torch.maximum(*(smile_skin_masks(points, image_size) for points in (landmarks, target)))
        mask = torch.maximum(mask, lips_move * dilate(shaped, round(scale)))
    if not options.brow_skin:
        return mask
    for brow, skin in zip((RIGHT_BROW, LEFT_BROW), brow_skin_masks(target, image_size), strict=True):
        rises = ((-moves[:, brow, 1]).amax(1) / scale > MOVED).float().view(-1, 1, 1, 1)  # image y points down
        mask = torch.maximum(mask, rises * skin)
    return mask
