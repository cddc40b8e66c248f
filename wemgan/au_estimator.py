"""AUEstimator: the built-in Action Unit regressor that makes wemgan independent of OpenFace.

It reads the 17 AU intensities of an aligned face crop, so that expression transfer from a
reference photo and "keep the other AUs" edits work with no external tool. Trained on its own
(`python -m wemgan.au_training --network estimator`), or alongside the GAN by
train_accelerate.py (same labels, its own optimizer; it never touches the GAN).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import downsampling_trunk


class QuantileCalibration(nn.Module):
    """A monotone piecewise-linear map per AU, fitted so that the estimates' distribution matches
    the labels' (quantile mapping).

    A regressor trained with a squared error pulls strong expressions towards the mean (a face
    whose AU12 is 0.9 reads 0.6): transfer then moves a face only part of the way. Mapping the
    q-th quantile of the estimates onto the q-th quantile of the labels undoes that shrinkage
    without changing the order of the estimates. Knots start as the identity.

    Args:
        num_aus: number of AUs (rows of knots).
        knots: knots per AU (>= 2).
    """

    def __init__(self, num_aus: int, knots: int) -> None:
        super().__init__()
        if knots < 2:
            raise ValueError(f"a calibration needs at least 2 knots, got {knots}")
        identity = torch.linspace(0, 1, knots).expand(num_aus, knots).clone()
        self.register_buffer("inputs", identity.clone())  # increasing per row
        self.register_buffer("outputs", identity)  # non-decreasing per row

    @torch.no_grad()
    def fit(self, estimates: Tensor, labels: Tensor) -> None:
        """Knots at the estimates' quantiles, mapped onto the labels' quantiles (N x A each)."""
        q = torch.linspace(0, 1, self.inputs.shape[1], dtype=torch.float64)
        x = torch.quantile(estimates.double(), q, dim=0).t()
        y = torch.quantile(labels.double(), q, dim=0).t()
        # Strictly increasing inputs (ties would divide by zero), outputs clamped to the label range.
        x = torch.maximum(x, torch.cummax(x, 1).values)
        x = x + torch.arange(x.shape[1], dtype=x.dtype) * 1e-6
        self.inputs.copy_(x.float())
        self.outputs.copy_(y.clamp(0, 1).float())

    def forward(self, values: Tensor) -> Tensor:
        x, y = self.inputs.to(values.dtype), self.outputs.to(values.dtype)
        v = values.t().contiguous()  # A x N
        right = torch.searchsorted(x, v).clamp(1, x.shape[1] - 1)
        x0, x1 = x.gather(1, right - 1), x.gather(1, right)
        y0, y1 = y.gather(1, right - 1), y.gather(1, right)
        t = ((v - x0) / (x1 - x0)).clamp(0, 1)  # flat beyond the end knots
        return (y0 + t * (y1 - y0)).t()


class AUEstimator(nn.Module):
    """x (B x 3 x S x S in [-1, 1]) -> AU intensities B x A in [0, 1].

    Args:
        num_aus: number of AUs predicted (17).
        base_channels: width of the first conv; doubles over six 4x4/2 convs.
        max_channels: cap on the width.
        calibration_knots: 0 = raw sigmoid outputs; > 0 = a QuantileCalibration with this many
            knots per AU after the sigmoid (fitted after training, see wemgan.au_training).
    """

    def __init__(
        self, num_aus: int = 17, base_channels: int = 32, max_channels: int = 256, calibration_knots: int = 0
    ) -> None:
        super().__init__()
        self.trunk, width = downsampling_trunk(base_channels, max_channels, "instance")
        # Global pooling makes the head independent of the input size.
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_aus), nn.Sigmoid())
        self.calibration = QuantileCalibration(num_aus, calibration_knots) if calibration_knots else None

    @property
    def calibration_knots(self) -> int:
        """The constructor's calibration_knots (0: no calibration)."""
        return 0 if self.calibration is None else self.calibration.inputs.shape[1]

    def forward(self, x: Tensor, calibrated: bool = True) -> Tensor:
        """calibrated=False gives the raw sigmoid outputs (what training regresses)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"AUEstimator expects B x 3 x H x W images, got {tuple(x.shape)}")
        raw = self.head(self.trunk(x))
        return self.calibration(raw) if calibrated and self.calibration is not None else raw
