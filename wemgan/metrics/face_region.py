"""Where "the face" is on an aligned crop: an ellipse placed from the crop's 5-landmark template.

`check_pairs` and `region_for` are the input checks that chroma and speckle share.

Edit measures that average over the whole crop let background, hair and clothes dilute (or
fake) a change; measures that need a face detector on every edit can be fooled by the edit
itself. Every aligned crop puts the eyes and nose where `wemgan.faces.DEFAULT_TEMPLATE` says,
so one fixed ellipse derived from it covers the face of every crop without looking at pixels.

Template order (dlib's 5 points): subject's left eye outer and inner corner, right eye outer
and inner corner, base of the nose. The ellipse's axes follow the eye line; its size and
centre are in units of the inter-ocular distance (IOD, between the two eye centres). The
factors were fitted to dlib's 68 landmarks on 300 faces-au training crops (mean positions:
brows at 0.16-0.22 of the side, chin at 0.99, jaw at 0.06 and 0.93 at eye height): the
ellipse runs from the forehead above the brows (0.10, below most hairlines and fringes) to
just above the chin (0.94), and from cheek to cheek (0.09-0.89) inside the jaw outline, so
background corners, hair and neck stay out (so do the outer brow tails, a price of the
ellipse shape; 45 of the 68 mean landmarks lie inside, all but the jaw line and brow ends).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from .. import faces

CENTRE_DROP = 0.57  # IODs from the eyes' midpoint down to the ellipse's centre
HALF_WIDTH = 1.04  # IODs, along the eye line
HALF_HEIGHT = 1.10  # IODs, across it


def face_mask(size: int = 128, template: Sequence[Sequence[float]] = faces.DEFAULT_TEMPLATE) -> np.ndarray:
    """A size x size boolean mask (True = face) for crops aligned onto `template` (read-only array)."""
    return _face_mask(int(size), faces.check_template(template))


@functools.cache
def _face_mask(size: int, template: tuple[tuple[float, float], ...]) -> np.ndarray:
    points = faces.template_pixels(template, size)
    left_eye, right_eye = points[0:2].mean(0), points[2:4].mean(0)  # subject's left eye is on the image's right
    across = left_eye - right_eye
    iod = float(np.linalg.norm(across))
    across /= iod
    down = np.array([-across[1], across[0]])  # the eye line turned by +90 degrees: points towards the chin
    if np.dot(points[4] - (left_eye + right_eye) / 2, down) < 0:
        down = -down
    centre = (left_eye + right_eye) / 2 + CENTRE_DROP * iod * down
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    offset = np.stack([x - centre[0], y - centre[1]], axis=-1)
    u = offset @ across / (HALF_WIDTH * iod)
    v = offset @ down / (HALF_HEIGHT * iod)
    mask = u * u + v * v <= 1
    mask.flags.writeable = False
    return mask


def check_pairs(sources: np.ndarray, edits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two N x H x W x 3 uint8 batches of one shape (a ValueError says what is wrong)."""
    sources, edits = np.asarray(sources), np.asarray(edits)
    if sources.shape != edits.shape or sources.ndim != 4 or sources.shape[-1] != 3:
        raise ValueError(f"expected two N x H x W x 3 batches of one shape, got {sources.shape} and {edits.shape}")
    if sources.dtype != np.uint8 or edits.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (0-255), got {sources.dtype} and {edits.dtype}")
    return sources, edits


def region_for(shape: tuple[int, ...], region: np.ndarray | None) -> np.ndarray:
    """The H x W boolean region to measure: the given one, else the face ellipse of a square crop."""
    height, width = shape[1:3]
    if region is None:
        if height != width:
            raise ValueError(
                f"the face region is defined for square aligned crops, got {height} x {width}: pass region"
            )
        return face_mask(height)
    region = np.asarray(region, dtype=bool)
    if region.shape != (height, width) or not region.any():
        raise ValueError(f"region must be a non-empty {height} x {width} boolean mask, got shape {region.shape}")
    return region
