"""LandmarkRegressor: dlib's 68 landmarks of an aligned face crop, read by a small CNN.

The LandmarkEditor moves the landmarks of the face it edits, and the Renderer is trained on the
landmarks of real faces; reading them with a network keeps the model self-contained (no dlib at
inference), batched and as fast on a GPU as the rest. It is distilled from dlib's predictor on
the training crops (`python -m wemgan.landmark_fit train-regressor`) and frozen afterwards.
"""

from __future__ import annotations

from torch import Tensor, nn

from .layers import TRUNK_LAYERS, downsampling_trunk

NUM_LANDMARKS = 68


class LandmarkRegressor(nn.Module):
    """x (B x 3 x S x S in [-1, 1]) -> B x 68 x 2 pixel positions (x, y) of dlib's 68 landmarks.

    Args:
        image_size: side of the crops it reads (its last feature map is image_size / 64 wide).
        base_channels: width of the first conv; doubles over six 4x4/2 convs.
        max_channels: cap on the width.
    """

    def __init__(self, image_size: int = 128, base_channels: int = 16, max_channels: int = 128) -> None:
        super().__init__()
        side = image_size // 2**TRUNK_LAYERS
        if side < 1 or image_size % 2**TRUNK_LAYERS:
            raise ValueError(f"image_size must be a multiple of {2**TRUNK_LAYERS}, got {image_size}")
        self.image_size = image_size
        self.trunk, width = downsampling_trunk(base_channels, max_channels, "instance")
        # Flattened, not pooled: where a feature is says where the landmark is.
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * side * side, NUM_LANDMARKS * 2))
        nn.init.zeros_(self.head[1].weight)  # starts at the bias: one mean shape, fitted first
        nn.init.constant_(self.head[1].bias, 0.5)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.image_size, self.image_size):
            side = self.image_size
            raise ValueError(f"LandmarkRegressor expects B x 3 x {side} x {side} images, got {tuple(x.shape)}")
        fractions = self.head(self.trunk(x)).view(-1, NUM_LANDMARKS, 2)
        return fractions * self.image_size - 0.5  # pixel indices, as dlib gives them
