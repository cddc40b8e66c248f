"""The independent AU judge: an AU regressor that no generator is ever trained against.

Edits are scored by it (ED in `python -m wemgan.evaluate`) because the built-in estimator and
D_I's AU head can be fooled: a generator optimised against a network learns colour blotches and
dot patterns that raise that network's reading without a change of expression. The judge differs
from both in architecture (a residual network with batch norm and 3x3 convolutions, not a stack of
4x4 strided convolutions with instance norm), in weights (trained on its own, with colour jitter,
noise, blur and small affine augmentation: `python -m wemgan.au_training --network judge`), and is
never used as a loss or for early stopping. Its reading still rises for speckles, like every AU
network's: report it next to the geometry, chroma and speckle measures, never alone.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import safetensors.torch
import torch
from torch import Tensor, nn

WEIGHTS = Path(__file__).with_name("au_judge.safetensors")
RECORD = Path(__file__).with_name("au_judge.json")  # how the shipped weights were trained


class ResidualBlock(nn.Module):
    """Two 3x3 convs with batch norm and a (strided 1x1) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class AUJudge(nn.Module):
    """x (B x 3 x S x S in [-1, 1]) -> AU intensities B x A in [0, 1].

    Args:
        num_aus: number of AUs predicted (17).
        widths: channels of the stem and of each residual stage; every stage halves the map.
        dropout: dropout before the linear head.
    """

    def __init__(self, num_aus: int = 17, widths: tuple[int, ...] = (32, 64, 128, 256), dropout: float = 0.2) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 5, 2, 2, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        self.stages = nn.Sequential(*[ResidualBlock(widths[i], widths[i + 1], 2) for i in range(len(widths) - 1)])
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(widths[-1], num_aus), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"AUJudge expects B x 3 x H x W images, got {tuple(x.shape)}")
        return self.head(self.stages(self.stem(x)))


def judge_unavailable() -> str | None:
    """Why the judge cannot score (its weights are not installed), or None."""
    if not WEIGHTS.is_file():
        return f"the AU judge's weights {WEIGHTS.name} are missing (python -m wemgan.au_training --network judge)"
    return None


@functools.cache
def load_judge(path: str | None = None) -> AUJudge:
    """The trained judge in eval mode (float32, CPU); `path` overrides the packaged weights."""
    weights = Path(path) if path else WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(judge_unavailable() or f"{weights} does not exist")
    record = json.loads(weights.with_suffix(".json").read_text()) if weights.with_suffix(".json").is_file() else {}
    judge = AUJudge(widths=tuple(record.get("widths", (32, 64, 128, 256))))
    judge.load_state_dict(safetensors.torch.load_file(str(weights)), strict=True)
    return judge.float().eval()


@torch.inference_mode()
def judge_aus(images: Tensor, batch_size: int = 64, path: str | None = None) -> Tensor:
    """AUs N x 17 the judge reads on crops N x 3 x 128 x 128 in [-1, 1]."""
    judge = load_judge(path)
    return torch.cat([judge(chunk.float()) for chunk in images.split(batch_size)])
