"""Square windows around the mouth and each eye (and with cheek windows, each cheek), where a
windowed renderer draws.

An expression redraws the mouth, the eyes and the brows; the rest of the face only moves. A
renderer that sees a window around one part at the face's own resolution spends all its capacity
there and costs a quarter of a whole-face pass at 64 px of 128 (docs/research/renderer.md).
Windows are cut at whole-pixel offsets, so nothing is resampled: cropping and pasting back are
exact. A part whose share of the mask is wider than a window can draw (strong edits: a mouth
opened at strength 1.5 spans 64-84 px of 128) gets a zoomed-out window instead: a square of
`window x scale` px resampled to the window, drawn there, and resampled back inside its share
only (zoomed_window_scales). Landmarks are B x 68 x 2 pixels (x, y); images B x C x S x S.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from .landmark_guides import LEFT_BROW, LEFT_EYE, RIGHT_BROW, RIGHT_EYE

# Each part's window is centred on the mean of these landmarks: the lips; an eye with its brow
# (what a raised brow uncovers lies between them); a cheek beside the mouth, between the nose wing,
# the mouth corner and the jaw (the nasolabial fold and the cheek a smile raises).
PARTS: dict[str, list[int]] = {
    "mouth": list(range(48, 68)),
    "right_eye": RIGHT_EYE + RIGHT_BROW,
    "left_eye": LEFT_EYE + LEFT_BROW,
    "right_cheek": [31, 48, 3],
    "left_cheek": [35, 54, 13],
}
MOUTH_AND_EYES = ("mouth", "right_eye", "left_eye")  # the windows a PartRenderer draws in
WITH_CHEEKS = (*MOUTH_AND_EYES, "right_cheek", "left_cheek")  # ... and with cheek windows (RendererConfig)


def window_parts(cheek_windows: bool) -> tuple[str, ...]:
    """The parts (names of PARTS, in window order) of a PartRenderer with or without cheek windows."""
    return WITH_CHEEKS if cheek_windows else MOUTH_AND_EYES


def part_centres(landmarks: Tensor, parts: tuple[str, ...] = MOUTH_AND_EYES) -> Tensor:
    """B x P x 2: the centre of each of `parts` (names of PARTS), in pixels."""
    return torch.stack([landmarks[:, PARTS[part]].float().mean(1) for part in parts], 1)


def window_corners(landmarks: Tensor, window: int, image_size: int, parts: tuple[str, ...] = MOUTH_AND_EYES) -> Tensor:
    """B x P x 2 (x, y) integer top-left corners of each part's window, kept inside the image."""
    return _corners_around(part_centres(landmarks, parts), window, image_size)


def _corners_around(centres: Tensor, window: int, image_size: int) -> Tensor:
    """Integer top-left corners of windows centred on centres (... x 2 px), kept inside the image."""
    if not 0 < window <= image_size:
        raise ValueError(f"window must be in (0, {image_size}], got {window}")
    return (centres - window / 2).round().clamp(0, image_size - window).long()


def nearest_part(landmarks: Tensor, image_size: int, parts: tuple[str, ...] = MOUTH_AND_EYES) -> Tensor:
    """B x P x S x S: 1 where a pixel is nearer that part's centre than any other's. Windows of
    neighbouring parts overlap; each pixel is drawn by one of them only."""
    centres = part_centres(landmarks, parts)
    pixels = torch.arange(image_size, device=landmarks.device, dtype=torch.float32)
    dx = pixels.view(1, 1, 1, -1) - centres[..., 0, None, None]
    dy = pixels.view(1, 1, -1, 1) - centres[..., 1, None, None]
    distance = dx**2 + dy**2
    return (distance == distance.amin(1, keepdim=True)).float()


WINDOW_MARGIN = 4  # px: a window draws nothing this close to its border (the network sees no context beyond it)


def part_shares(mask: Tensor, landmarks: Tensor, parts: tuple[str, ...] = MOUTH_AND_EYES) -> Tensor:
    """B x P x S x S: each part's share of a mask (B x 1 x S x S), the pixels nearest that part."""
    return mask * nearest_part(landmarks, mask.shape[-1], parts).to(mask.dtype)


def _share_boxes(shares: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(first B x P x 2, last B x P x 2, filled B x P): each share's bounding box (x, y) in pixels."""
    size = shares.shape[-1]
    rows, cols = shares.amax(-1) > 0, shares.amax(-2) > 0  # B x P x S each
    filled = torch.stack([cols, rows], -2).float()  # B x P x 2 x S
    first = filled.argmax(-1)
    last = size - 1 - filled.flip(-1).argmax(-1)
    return first, last, rows.any(-1)


def share_centres(shares: Tensor, landmarks: Tensor, parts: tuple[str, ...] = MOUTH_AND_EYES) -> Tensor:
    """B x P x 2 (x, y) px: the middle of each share's bounding box (of the part's landmarks where its
    share is empty), where a window around it is centred."""
    first, last, filled = _share_boxes(shares)
    return torch.where(filled[..., None], (first + last).float() / 2, part_centres(landmarks, parts)) + 0.5


def share_window_corners(
    shares: Tensor, landmarks: Tensor, window: int, parts: tuple[str, ...] = MOUTH_AND_EYES
) -> Tensor:
    """B x P x 2 (x, y) top-left corners of windows centred on each share (share_centres), kept
    inside the image."""
    return _corners_around(share_centres(shares, landmarks, parts), window, shares.shape[-1])


def zoomed_window_scales(shares: Tensor, window: int, margin: int = WINDOW_MARGIN) -> Tensor:
    """B x P: how far each part's window must zoom out (>= 1) for its whole share to lie inside it,
    `margin` px from its border; 1 where the share fits a window at the face's own resolution."""
    first, last, filled = _share_boxes(shares)
    extent = torch.where(filled, (last - first + 1).amax(-1), 0).float()  # the bounding box's longer side
    return (extent / (window - 2 * margin)).clamp(min=1)


def zoomed_square(centre: Tensor, scale: float, window: int, size: int) -> tuple[int, int, int]:
    """(x, y, side): the square of the image (side <= size) a window zoomed out by `scale` covers,
    centred on centre (x, y px) and kept inside the image."""
    side = min(size, math.ceil(window * scale))
    x, y = ((centre - side / 2).round().clamp(0, size - side)).long().tolist()
    return x, y, side


def resample(images: Tensor, side: int) -> Tensor:
    """N x C x side x side: images resized with antialiasing (bilinear)."""
    return F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


def window_interiors(corners: Tensor, window: int, size: int, margin: int = WINDOW_MARGIN) -> Tensor:
    """B x P x S x S: 1 inside each window (corners B x P x 2), `margin` px from its border."""
    pixels = torch.arange(size, device=corners.device)
    low, high = corners + margin, corners + window - margin  # B x P x 2
    inside_x = (pixels >= low[..., 0, None]) & (pixels < high[..., 0, None])  # B x P x S
    inside_y = (pixels >= low[..., 1, None]) & (pixels < high[..., 1, None])
    return (inside_y[..., :, None] & inside_x[..., None, :]).float()


def _window_index(corners: Tensor, window: int) -> tuple[Tensor, Tensor]:
    offsets = torch.arange(window, device=corners.device)
    rows = corners[:, 1, None] + offsets  # N x w
    cols = corners[:, 0, None] + offsets
    return rows[:, :, None], cols[:, None, :]


def crop(images: Tensor, samples: Tensor, corners: Tensor, window: int) -> Tensor:
    """N x C x w x w windows of images[samples] (N indices) at corners (N x 2, x y). Slices, stacked:
    8x faster on this CPU than one gather by index tensors."""
    windows = [
        images[sample, :, y : y + window, x : x + window]
        for sample, (x, y) in zip(samples.tolist(), corners.tolist(), strict=True)
    ]
    return torch.stack(windows) if windows else images.new_zeros(0, images.shape[1], window, window)


def paste_add(images: Tensor, changes: Tensor, samples: Tensor, corners: Tensor) -> Tensor:
    """images with each window's change (N x C x w x w) added at its corner; windows of one image
    may overlap (their changes add up). Differentiable in changes."""
    rows, cols = _window_index(corners, changes.shape[-1])
    index = (samples[:, None, None].expand_as(rows * cols), rows.expand_as(rows * cols), cols.expand_as(rows * cols))
    flat = images.permute(0, 2, 3, 1)  # B x S x S x C: index_put addresses the leading dims
    return flat.index_put(index, changes.permute(0, 2, 3, 1).to(images.dtype), accumulate=True).permute(0, 3, 1, 2)
