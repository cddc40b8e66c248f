"""Renderer: the WEM-GAN generator drawing what a mask blanks, guided by landmarks and AUs.

The landmark editor says where lips, lids and brows go; a warp can only move pixels that are
there. The renderer draws what an expression reveals or hides inside a mask M: teeth and the
mouth's inside, lips closing over teeth, lid skin under a raised brow, folds. It is the paper's
Generator (Table 1: encoder-decoder, multi-AU fusion, Haar high-frequency skips) whose input is
the masked face, the mask and the target landmarks drawn as contours; the AUs enter at the
bottleneck as in the paper. It learns by masked reconstruction of real faces (nothing to fool):
    out = x (1 - M) + G([x (1 - M), M, contours(L)], u) M
so the pixels outside M are the input's own, and an empty mask is no change at all.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import RendererConfig
from .generator import Generator
from .landmark_guides import NUM_CONTOUR_CHANNELS, draw_contours


class Renderer(nn.Module):
    """Renderer(x, mask, landmarks, aus) -> x with the masked pixels drawn.

    Args:
        config: the generator's widths, skips and upsampling (wemgan.config.RendererConfig).
        num_aus: length of the AU vector (17 OpenFace AUs), the expression to draw.
        image_size: side of the square crops (paper: 128).
    """

    def __init__(self, config: RendererConfig | None = None, num_aus: int = 17, image_size: int = 128) -> None:
        super().__init__()
        config = (config or RendererConfig()).validate(image_size)
        self.image_size = image_size
        self.generator = Generator(
            num_aus, config.base_channels, config.max_channels, config.skip_levels, image_size=image_size,
            upsample=config.upsample, guide_channels=1 + NUM_CONTOUR_CHANNELS,
        )  # fmt: skip

    def forward(self, x: Tensor, mask: Tensor, landmarks: Tensor, aus: Tensor) -> Tensor:
        """x: B x 3 x S x S in [-1, 1]; mask: B x 1 x S x S in [0, 1]; landmarks: B x 68 x 2 pixels
        (where the face's parts should be); aus: B x 17 in [0, 1] (the expression to draw)."""
        if mask.shape != (x.shape[0], 1, *x.shape[-2:]):
            raise ValueError(f"Renderer expects a mask of shape {x.shape[0]} x 1 x {x.shape[-2]} x {x.shape[-1]}, "
                             f"got {tuple(mask.shape)}")  # fmt: skip
        if landmarks.shape != (x.shape[0], 68, 2):
            raise ValueError(f"Renderer expects landmarks of shape {x.shape[0]} x 68 x 2, got {tuple(landmarks.shape)}")
        mask = mask.to(x.dtype)
        kept = x * (1 - mask)
        guide = torch.cat([mask, draw_contours(landmarks, x.shape[-1]).to(x.dtype)], 1)
        drawn = self.generator(kept, aus, guide=guide)
        return kept + mask * drawn
