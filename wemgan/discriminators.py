"""The two WEM-GAN critics (paper §3.2, Table 2).

ImageDiscriminator (D_I): six 4x4 stride-2 convs, then an adversarial head (is the image
real?) and an AU regression head (which AUs does it show?).
HighFrequencyDiscriminator (D_H): the same depth with instance norm, applied to the Haar
high-frequency part of an image, so that G is judged on the detail it keeps.
Both are WGAN-GP critics: their adversarial outputs are unbounded scores, not probabilities.
"""

from __future__ import annotations

from torch import Tensor, nn

from .layers import TRUNK_LAYERS, Norm, SmallMapConv2d, downsampling_trunk


def _check_image(x: Tensor, image_size: int, who: str) -> None:
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2:] != (image_size, image_size):
        raise ValueError(f"{who} expects B x 3 x {image_size} x {image_size} images, got {tuple(x.shape)}")


class ImageDiscriminator(nn.Module):
    """D_I(x) -> (critic score map B x 1 x s x s, AU estimate B x A).

    Args:
        num_aus: number of AUs the regression head predicts (17).
        base_channels: width of the first conv (paper: 64).
        max_channels: cap on the width (paper: 2048 after six doublings).
        image_size: input side (paper: 128); the score map is image_size / 64 wide.
    """

    def __init__(
        self, num_aus: int = 17, base_channels: int = 64, max_channels: int = 2048, image_size: int = 128
    ) -> None:
        super().__init__()
        self.image_size = image_size
        # No normalisation: the gradient penalty is defined per sample (WGAN-GP, GANimation).
        self.trunk, width = downsampling_trunk(base_channels, max_channels, "none")
        final = image_size // 2**TRUNK_LAYERS
        self.adversarial = SmallMapConv2d(width, 1, 3, 1, 1, bias=False)
        # Regression head: one conv spanning the whole final map -> one value per AU.
        self.au_regression = SmallMapConv2d(width, num_aus, final, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _check_image(x, self.image_size, "ImageDiscriminator")
        h = self.trunk(x)
        return self.adversarial(h), self.au_regression(h).flatten(1)


class HighFrequencyDiscriminator(nn.Module):
    """D_H(x_h) -> critic score map B x 1 x s x s, where x_h = high_frequency(image) (Table 2).

    The caller applies the Haar high-frequency transform (see losses.py), so that the
    gradient penalty is taken with respect to the high-frequency input, as in eq. (3).

    Args:
        base_channels: width of the first conv (paper: 64).
        max_channels: cap on the width (paper: 2048).
        norm: "instance" (Table 2) or "none".
        image_size: input side (paper: 128).
    """

    def __init__(
        self, base_channels: int = 64, max_channels: int = 2048, norm: Norm = "instance", image_size: int = 128
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.trunk, width = downsampling_trunk(base_channels, max_channels, norm)
        self.adversarial = SmallMapConv2d(width, 1, 3, 1, 1, bias=False)

    def forward(self, x_high: Tensor) -> Tensor:
        _check_image(x_high, self.image_size, "HighFrequencyDiscriminator")
        return self.adversarial(self.trunk(x_high))
