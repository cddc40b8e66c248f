"""What the renderer is told of a face's shape: its 68 landmarks drawn as contour images.

LaFIn (landmark-guided face inpainting) feeds the landmarks as an image beside the masked face;
here each part gets its own channel, so the network knows an outer lip line from an inner one
(the gap between them is where teeth or a dark mouth show) without having to infer it.
The landmarks are pixel positions (x, y) of dlib's 68-point layout, pixel centres at integers.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

JAW = list(range(0, 17))
RIGHT_BROW, LEFT_BROW = list(range(17, 22)), list(range(22, 27))
NOSE_BRIDGE, NOSE_BASE = list(range(27, 31)), list(range(31, 36))
RIGHT_EYE, LEFT_EYE = list(range(36, 42)), list(range(42, 48))
OUTER_LIPS, INNER_LIPS = list(range(48, 60)), list(range(60, 68))
UPPER_LID_RIGHT, UPPER_LID_LEFT = [36, 37, 38, 39], [42, 43, 44, 45]


def polyline(points: list[int], closed: bool = False) -> list[tuple[int, int]]:
    """The segments (i, j) joining consecutive landmarks, and the last to the first if closed."""
    segments = list(itertools.pairwise(points))
    return [*segments, (points[-1], points[0])] if closed else segments


# One channel per part: its segments. Outer and inner lips apart: between them lie teeth or the
# mouth's dark inside, what the renderer must draw when a mouth opens.
CONTOUR_CHANNELS: dict[str, list[tuple[int, int]]] = {
    "jaw_and_nose": polyline(JAW) + polyline(NOSE_BRIDGE) + polyline(NOSE_BASE) + [(30, 33)],
    "brows": polyline(RIGHT_BROW) + polyline(LEFT_BROW),
    "eyes": polyline(RIGHT_EYE, closed=True) + polyline(LEFT_EYE, closed=True),
    "outer_lips": polyline(OUTER_LIPS, closed=True),
    "inner_lips": polyline(INNER_LIPS, closed=True),
}
NUM_CONTOUR_CHANNELS = len(CONTOUR_CHANNELS)
LINE_WIDTH = 1.0  # px at 128 px: a line fades to 0 one pixel from its segment (anti-aliased)


POINTS_PER_PIXEL = 4  # samples per pixel of segment length when lines are splatted


def draw_lines(landmarks: Tensor, channels: list[list[tuple[int, int]]], image_size: int, width: float) -> Tensor:
    """B x C x S x S in [0, 1]: in channel c, 1 - distance / width to the nearest point of
    channels[c]'s segments (landmark index pairs), 0 beyond.

    Each channel's segments are sampled every 1/POINTS_PER_PIXEL px (of its longest segment) and
    each sample raises the pixels around it (a max-splat): the cost follows the lines' length, not
    the image's area. All channels are splatted at once, x and y kept apart (reductions over a
    dimension of 2 are slow)."""
    xs, ys, planes = [], [], []
    for channel, segments in enumerate(channels):
        index = torch.tensor(segments, device=landmarks.device)
        a, b = landmarks[:, index[:, 0]].float(), landmarks[:, index[:, 1]].float()  # B x E x 2
        samples = int((b - a).norm(dim=-1).max().item() * POINTS_PER_PIXEL) + 2
        t = torch.linspace(0, 1, samples, device=landmarks.device).view(1, 1, -1, 1)
        points = (a.unsqueeze(2) + t * (b - a).unsqueeze(2)).flatten(1, 2)  # B x N x 2
        xs.append(points[..., 0])
        ys.append(points[..., 1])
        planes.append(torch.full(points.shape[1:2], channel, device=landmarks.device))
    x, y, plane = torch.cat(xs, 1).unsqueeze(2), torch.cat(ys, 1).unsqueeze(2), torch.cat(planes).view(1, -1, 1)
    # A pixel f + o is within width of a sample at f + r (f its floor, 0 <= r < 1) only for o in (r - width, r + width).
    reach = math.ceil(width)
    offsets = torch.arange(1 - reach, reach + 1, device=landmarks.device, dtype=torch.float32)
    oy, ox = (o.flatten() for o in torch.meshgrid(offsets, offsets, indexing="ij"))
    px, py = x.floor() + ox, y.floor() + oy  # B x N x O: the pixels around each sample
    value = (1 - ((px - x).square() + (py - y).square()).sqrt() / width).clamp(0, 1)
    inside = (px >= 0) & (px <= image_size - 1) & (py >= 0) & (py <= image_size - 1)
    flat = ((plane * image_size + py) * image_size + px).long()
    area = len(channels) * image_size * image_size
    flat = flat.clamp(0, area - 1)  # a pixel outside the image adds 0 wherever it lands
    canvas = torch.zeros(len(landmarks), area, device=landmarks.device)
    canvas.scatter_reduce_(1, flat.flatten(1), (value * inside).flatten(1), "amax")
    return canvas.view(-1, len(channels), image_size, image_size)


def draw_contours(landmarks: Tensor, image_size: int, face_size: int | None = None) -> Tensor:
    """B x NUM_CONTOUR_CHANNELS x S x S in [0, 1]: each part's contour as an anti-aliased line.
    Landmarks are given in the image's pixels (B x 68 x 2). face_size: side of the face crop whose
    pixels these are (lines are LINE_WIDTH px at 128 px); default image_size, a window cut from a
    face at its resolution gives the face's."""
    width = LINE_WIDTH * (face_size or image_size) / 128
    return draw_lines(landmarks, list(CONTOUR_CHANNELS.values()), image_size, width)


# The same parts as CONTOUR_CHANNELS, as landmark points (LaFIn's alternative to lines).
HEATMAP_CHANNELS: dict[str, list[int]] = {
    "jaw_and_nose": JAW + NOSE_BRIDGE + NOSE_BASE,
    "brows": RIGHT_BROW + LEFT_BROW,
    "eyes": RIGHT_EYE + LEFT_EYE,
    "outer_lips": OUTER_LIPS,
    "inner_lips": INNER_LIPS,
}
HEATMAP_SIGMA = 1.5  # px at 128 px: each landmark a Gaussian of this width


def draw_heatmaps(landmarks: Tensor, image_size: int, face_size: int | None = None) -> Tensor:
    """B x NUM_CONTOUR_CHANNELS x S x S in [0, 1]: each part's landmarks as Gaussian peaks (the
    strongest where they overlap), in the channel order of draw_contours; arguments as there."""
    sigma = HEATMAP_SIGMA * (face_size or image_size) / 128
    pixels = torch.arange(image_size, device=landmarks.device, dtype=torch.float32)
    dx = pixels.view(1, 1, 1, -1) - landmarks[..., 0, None, None].float()  # B x 68 x 1 x S
    dy = pixels.view(1, 1, -1, 1) - landmarks[..., 1, None, None].float()  # B x 68 x S x 1
    peaks = torch.exp(-(dx**2 + dy**2) / (2 * sigma**2))  # B x 68 x S x S
    return torch.stack([peaks[:, points].amax(1) for points in HEATMAP_CHANNELS.values()], 1)


GUIDES = {"contours": draw_contours, "heatmaps": draw_heatmaps}  # RendererConfig.guide
