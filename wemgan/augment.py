"""Random image transformations: training augmentation for the AU regressors, and the views an
AU network judges a generator's edit through (an expectation over transformations).

Both exist for one reason: an AU network should read geometry, not colour, sharpness or exact
pixel positions. A network trained on augmented faces is harder to fool with blotches; an edit
judged through blurred, downscaled, shifted and noised copies gains nothing from painting
high-frequency dots, which those copies wash out, and only by changing the face's shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """uint8 B x 3 x H x W -> float in [-1, 1], randomly mirrored, moved, recoloured, blurred, noised."""
    b = images.shape[0]
    x = images.float() / 255

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return low + (high - low) * torch.rand(b, *shape, generator=generator)

    # Mirror: the 17 labels are bilateral, so a mirrored face has the same AUs.
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
    # Small similarity transform: rotation ±8°, scale ±7%, shift ±4 px (alignment is never exact).
    angle, scale = uniform(-8, 8) * math.pi / 180, uniform(0.93, 1.07)
    shift = uniform(-4, 4, 2) * 2 / x.shape[-1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Colour: brightness, contrast, saturation and per-channel gains (white balance).
    grey = x.mean(1, keepdim=True)
    x = grey + (x - grey) * uniform(0.5, 1.5, 1, 1, 1)
    x = x * uniform(0.9, 1.1, 3, 1, 1)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + (x - mean) * uniform(0.7, 1.3, 1, 1, 1)
    x = x * uniform(0.7, 1.3, 1, 1, 1)
    # Blur (σ up to 1.5 px) on half the batch, then sensor-like noise.
    sigma = torch.where(torch.rand(b, generator=generator) < 0.5, uniform(0.3, 1.5), torch.zeros(b))
    x = gaussian_blur(x, sigma)
    x = x + torch.randn(x.shape, generator=generator) * uniform(0, 0.04, 1, 1, 1)
    return x.clamp(0, 1) * 2 - 1


def gaussian_blur(x: Tensor, sigma: Tensor, radius: int = 3) -> Tensor:
    """Per-sample separable Gaussian blur (sigma B; 0 = unchanged) of B x C x H x W."""
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma.clamp_min(1e-3).view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # B x K; sigma -> 0 gives a delta
    b, c, h, w = x.shape
    y = x.reshape(1, b * c, h, w)
    k = kernel.repeat_interleave(c, 0)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


def translate(x: Tensor, shift: Tensor) -> Tensor:
    """Shift each image by shift (B x 2, pixels, x then y), bilinear, edge pixels repeated."""
    b, _, h, w = x.shape
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = -2 * shift[:, 0] / w, -2 * shift[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def judging_views(x: Tensor, generator: torch.Generator, low_resolution: int = 64) -> Tensor:
    """A differentiable random low-passed copy of images in [-1, 1]: Gaussian blur (σ 0.5-1.5 px),
    down to `low_resolution` px and back, shifted by up to 3 px, plus noise (σ 0.02).
    What a robust expression loss shows the AU network instead of the edit itself."""
    # In float32 and outside autocast: antialiased resizing has no bfloat16 kernel (and autocast
    # would cast the blur's convolutions back to bfloat16); the views are cheap at any precision.
    with torch.autocast(x.device.type, enabled=False):
        b, _, h, w = x.shape
        x = x.float()
        sigma = 0.5 + torch.rand(b, generator=generator)
        x = gaussian_blur(x, sigma)
        x = F.interpolate(
            x, size=(low_resolution, low_resolution), mode="bilinear", antialias=True, align_corners=False
        )
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        x = translate(x, torch.rand(b, 2, generator=generator) * 6 - 3)
        return x + 0.02 * torch.randn(x.shape, generator=generator)
