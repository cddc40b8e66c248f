"""AUEstimator: the built-in Action Unit regressor that makes wemgan independent of OpenFace.

It reads the 17 AU intensities of an aligned face crop, so that expression transfer from a
reference photo and "keep the other AUs" edits work with no external tool. Trained on the
same AU labels as the GAN (a compact CNN: far cheaper than the 45 M parameter D_I).
"""

from __future__ import annotations

from torch import Tensor, nn

from .discriminators import downsampling_trunk


class AUEstimator(nn.Module):
    """x (B x 3 x S x S in [-1, 1]) -> AU intensities B x A in [0, 1].

    Args:
        num_aus: number of AUs predicted (17).
        base_channels: width of the first conv; doubles over six 4x4/2 convs.
        max_channels: cap on the width.
    """

    def __init__(self, num_aus: int = 17, base_channels: int = 32, max_channels: int = 256) -> None:
        super().__init__()
        self.trunk, width = downsampling_trunk(base_channels, max_channels, "instance")
        # Global pooling makes the head independent of the input size.
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_aus), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"AUEstimator expects B x 3 x H x W images, got {tuple(x.shape)}")
        return self.head(self.trunk(x))
