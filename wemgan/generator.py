"""The WEM-GAN generator (paper Table 1, Fig. 4).

U-Net encoder/decoder, a multi-AU fusion residual block at the 4x4 bottleneck, and
Detail Information Transmission (DIT): the decoder input at 16, 32 and 64 px is
concatenated with the Haar high-frequency part of the encoder feature of the same size.
The defaults are the paper's configuration; the arguments exist for the ablations
(Tables 6-7), for small CPU models and for the Renderer's extra input channels.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .config import GeneratorConfig
from .layers import Norm, SmallMapConv2d, conv_block
from .wavelets import HighFrequency

SkipKind = Literal["haar", "plain"]
AUFusion = Literal["multi", "single"]
Upsample = Literal["transposed", "resize"]

# Encoder depths (feature of resolution image_size / 2**depth) that send a skip connection
# to the decoder, by number of DIT levels (Table 7). At 128 px, 3 levels are the paper's
# "middle three" (64, 32, 16 px); 4 adds 8 px; 5 adds the full-size 128 px feature too.
SKIP_DEPTHS: dict[int, tuple[int, ...]] = {
    0: (),
    3: (1, 2, 3),
    4: (1, 2, 3, 4),
    5: (0, 1, 2, 3, 4),
}
NUM_DOWNSAMPLES = 5  # 128 -> 4: five stride-2 convolutions


def tile_aus(aus: Tensor, like: Tensor) -> Tensor:
    """B x A -> B x A x H x W, spatially constant, matching `like`'s size and dtype."""
    b, a = aus.shape
    return aus.to(like.dtype).view(b, a, 1, 1).expand(b, a, *like.shape[-2:])


class MultiAUFusion(nn.Module):
    """Bottleneck residual block that re-injects the relative AUs before every conv.

    h = ReLU(IN(conv([z, u])));  r = IN(conv([h, u]));  out = ReLU(IN(conv([z, u, r, u])))
    The third conv fuses the encoder code with the residual branch (Table 1: 2x(512+17) in).
    """

    def __init__(self, channels: int, num_aus: int, norm: Norm) -> None:
        super().__init__()
        c, a = channels, num_aus
        self.conv1 = conv_block(SmallMapConv2d(c + a, c, 3, 1, 1), c, norm, "relu")
        self.conv2 = conv_block(SmallMapConv2d(c + a, c, 3, 1, 1), c, norm, "none")
        self.fuse = conv_block(SmallMapConv2d(2 * (c + a), c, 3, 1, 1), c, norm, "relu")

    def forward(self, z: Tensor, aus: Tensor) -> Tensor:
        u = tile_aus(aus, z)
        h = self.conv1(torch.cat([z, u], 1))
        r = self.conv2(torch.cat([h, u], 1))
        return self.fuse(torch.cat([z, u, r, u], 1))


class SingleAUFusion(nn.Module):
    """Ablation "w/o Mul_AU": the AUs enter once, through one conv at the bottleneck."""

    def __init__(self, channels: int, num_aus: int, norm: Norm) -> None:
        super().__init__()
        self.conv = conv_block(SmallMapConv2d(channels + num_aus, channels, 3, 1, 1), channels, norm, "relu")

    def forward(self, z: Tensor, aus: Tensor) -> Tensor:
        return self.conv(torch.cat([z, tile_aus(aus, z)], 1))


def upsampling_conv(in_channels: int, out_channels: int, kind: Upsample) -> nn.Module:
    """x2 upsampling: the paper's 4x4/2 transposed conv, or nearest-neighbour resize + 3x3 conv.

    A stride-2 transposed conv builds even and odd output pixels from different kernel taps;
    wherever the learned taps do not balance, a 2-pixel grid ("checkerboard") texture appears:
    the grid across the mouth in the paper-recipe edits. Resize + conv builds every pixel the same
    way (Odena et al., "Deconvolution and Checkerboard Artifacts", Distill 2016)."""
    if kind == "transposed":
        return nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_channels, out_channels, 3, 1, 1))


class Generator(nn.Module):
    """G(x, u) -> x': the image x (B x 3 x S x S in [-1, 1]) drawn anew for the AUs u (B x A).

    In the paper u is the relative AU change u_rel and x' the edited face; the Renderer feeds it
    a masked face with guide channels (mask, landmark contours) and the target AUs.

    Args:
        num_aus: length of the AU condition vector (17 OpenFace AUs).
        base_channels: width of the first encoder conv (paper: 64); doubles per downsample.
        max_channels: cap on the width (paper: 512).
        skip_levels: number of DIT skip connections, 0 / 3 / 4 / 5 (paper: 3, see SKIP_DEPTHS).
        skip_kind: "haar" sends the Haar high-frequency part of the encoder feature (DIT);
            "plain" sends the feature itself (an ordinary U-Net skip).
        au_fusion: "multi" = the paper's multi-AU fusion block, "single" = AUs enter once.
        norm: "instance" (paper) or "none".
        image_size: side of the square input (paper: 128); must be divisible by 32.
        upsample: "transposed" 4x4/2 convs (paper) or "resize" (nearest x2 + 3x3 conv).
        guide_channels: extra input channels concatenated to the image (the Renderer's); 0 = paper.
    """

    def __init__(
        self,
        num_aus: int = 17,
        base_channels: int = 64,
        max_channels: int = 512,
        skip_levels: int = 3,
        skip_kind: SkipKind = "haar",
        au_fusion: AUFusion = "multi",
        norm: Norm = "instance",
        image_size: int = 128,
        upsample: Upsample = "transposed",
        guide_channels: int = 0,
    ) -> None:
        super().__init__()
        GeneratorConfig(base_channels, max_channels, skip_levels, skip_kind, au_fusion, norm, upsample).validate(
            image_size
        )
        self.num_aus = num_aus
        self.image_size = image_size
        self.skip_kind = skip_kind
        self.skip_depths = SKIP_DEPTHS[skip_levels]
        # widths[i] = channels of the encoder feature at depth i (resolution image_size / 2**i).
        widths = [min(base_channels * 2**i, max_channels) for i in range(NUM_DOWNSAMPLES + 1)]
        self.widths = widths
        self.encoder = nn.ModuleList(
            [conv_block(nn.Conv2d(3 + guide_channels, widths[0], 7, 1, 3), widths[0], norm, "leaky")]
            + [
                conv_block(nn.Conv2d(widths[i - 1], widths[i], 4, 2, 1), widths[i], norm, "leaky")
                for i in range(1, NUM_DOWNSAMPLES + 1)
            ]
        )
        fusion = MultiAUFusion if au_fusion == "multi" else SingleAUFusion
        self.fusion = fusion(widths[-1], num_aus, norm)
        # Decoder step d upsamples from depth d+1 to depth d; its input is concatenated with
        # the (high-frequency) encoder feature of depth d+1 when that depth has a skip.
        self.decoder = nn.ModuleList()
        for depth in reversed(range(NUM_DOWNSAMPLES)):
            in_ch = widths[depth + 1] * (2 if depth + 1 in self.skip_depths else 1)
            self.decoder.append(
                conv_block(upsampling_conv(in_ch, widths[depth], upsample), widths[depth], norm, "relu")
            )
        out_in = widths[0] * (2 if 0 in self.skip_depths else 1)
        self.to_rgb = nn.Sequential(nn.Conv2d(out_in, 3, 7, 1, 3), nn.Tanh())
        self.high_frequency = HighFrequency()

    def forward(self, x: Tensor, aus: Tensor, guide: Tensor | None = None) -> Tensor:
        """x: B x 3 x S x S; aus: B x num_aus; guide: B x guide_channels x S x S (or None)."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.image_size,) * 2:
            raise ValueError(
                f"Generator expects images of shape B x 3 x {self.image_size} x {self.image_size}, got {tuple(x.shape)}"
            )
        if aus.shape != (x.shape[0], self.num_aus):
            raise ValueError(f"Generator expects AUs of shape {x.shape[0]} x {self.num_aus}, got {tuple(aus.shape)}")
        skips: dict[int, Tensor] = {}
        h = x if guide is None else torch.cat([x, guide.to(x.dtype)], 1)
        for depth, layer in enumerate(self.encoder):
            h = layer(h)
            if depth in self.skip_depths:
                skips[depth] = self.high_frequency(h) if self.skip_kind == "haar" else h
        h = self.fusion(h, aus)
        for depth, layer in zip(reversed(range(NUM_DOWNSAMPLES)), self.decoder, strict=True):
            if depth + 1 in skips:
                h = torch.cat([h, skips[depth + 1]], 1)
            h = layer(h)
        if 0 in skips:
            h = torch.cat([h, skips[0]], 1)
        return self.to_rgb(h)
