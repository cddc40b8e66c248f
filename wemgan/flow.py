"""Image geometry on tensors: backward warps, how much a flow stretches, polygons and polylines
drawn from landmark positions (pixels, centres at integers)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def warp(x: Tensor, flow: Tensor) -> Tensor:
    """x (B x C x H x W) sampled at each pixel's position + flow (B x 2 x h x w, [-1, 1] units, x then y),
    the flow bilinearly resized to H x W first. Borders repeat the edge pixel."""
    height, width = x.shape[-2:]
    flow = nn.functional.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=x.device, dtype=flow.dtype)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=x.device, dtype=flow.dtype)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # H x W x 2, (x, y)
    grid = base.unsqueeze(0) + flow.permute(0, 2, 3, 1)
    return nn.functional.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def flow_stretch(flow: Tensor, image_size: int, floor: bool = True) -> Tensor:
    """B x 1 x s x s: how much a backward flow (B x 2 x s x s, `warp`'s units) magnifies the input,
    as 1 - det(Jacobian of q -> q + flow(q)), floored at 0: 0 where pixels only move (or are
    squeezed), 0.5 where an output area is made from half as much input. An opening mouth or a
    lid drawn over an eye is stretched; a brow that only moves is not. floor=False keeps the
    negative values of squeezed regions (1 - determinant everywhere)."""
    pixels = flow * (image_size / 2)
    spacing = image_size / flow.shape[-1]
    (dx_dx, dx_dy), (dy_dx, dy_dy) = (
        (
            torch.gradient(pixels[:, c], spacing=spacing, dim=-1)[0],
            torch.gradient(pixels[:, c], spacing=spacing, dim=-2)[0],
        )
        for c in (0, 1)
    )
    stretch = (1 - ((1 + dx_dx) * (1 + dy_dy) - dx_dy * dy_dx)).unsqueeze(1)
    return stretch.clamp_min(0) if floor else stretch


def polygon_coverage(points: Tensor, image_size: int, supersample: int = 1) -> Tensor:
    """B x 1 x S x S in [0, 1]: the share of each pixel inside the closed polygon through points
    (B x P x 2, pixels; even-odd rule), sampled at supersample² points per pixel."""
    n = image_size * supersample
    pixels = (torch.arange(n, device=points.device, dtype=torch.float32) + 0.5) / supersample - 0.5
    y, x = pixels.view(1, -1, 1), pixels.view(1, 1, -1)
    a = points.float().view(*points.shape, 1, 1)  # B x P x 2 x 1 x 1
    b = a.roll(-1, dims=1)  # each edge a -> b
    inside = torch.zeros(len(points), n, n, dtype=torch.bool, device=points.device)
    # One edge at a time, the parity by xor: 3.7x faster than counting every edge's crossings at once.
    for start, end in zip(a.unbind(1), b.unbind(1), strict=True):
        (ax, ay), (bx, by) = start.unbind(1), end.unbind(1)
        inside ^= ((ay > y) != (by > y)) & (x < (bx - ax) * (y - ay) / (by - ay + 1e-9) + ax)
    inside = inside.unsqueeze(1).float()
    return nn.functional.avg_pool2d(inside, supersample) if supersample > 1 else inside


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
