"""Shared fixtures: tiny configurations keep every test fast on a 2-core CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from wemgan import WEMGAN

TINY = dict(base_channels=8, max_channels=32, estimator_channels=8, estimator_max_channels=16)


@pytest.fixture
def tiny_model() -> WEMGAN:
    torch.manual_seed(0)
    return WEMGAN(**TINY)


@pytest.fixture
def face_crop() -> Image.Image:
    """A 128x128 RGB image with structure at every scale (smooth shading + fine texture)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:128, 0:128] / 127.0
    smooth = np.stack([x, y, 1 - x * y], axis=-1) * 200
    texture = rng.normal(0, 20, size=(128, 128, 3))
    return Image.fromarray(np.clip(smooth + texture + 20, 0, 255).astype(np.uint8))
