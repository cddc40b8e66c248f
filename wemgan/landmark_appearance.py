"""What a smile changes besides motion: the brightness of the skin, as real faces show it.

A warp moves the face's own pixels, so it cannot raise a cheek's highlight or deepen the fold
from the nose to the mouth corner; those change the light on the skin, not the landmarks, and
they are what the independent judge missed in every warp (docs/research/landmark-editor.md, "The
smile's skin"). This module fits, per AU, the mean change of log-brightness of real faces in
the mean face's frame (an Active Appearance Model's appearance part, brightness only):

1. every faces-au train crop is warped onto the mean landmarks (dlib's 68 points),
2. its log-brightness is high-passed (a Gaussian of HIGH_PASS px taken off: lighting and skin
   tone out, folds and cheeks in),
3. each pixel is regressed on the 17 AU labels (ridge), and the coefficients of the AUs kept
   (APPEARANCE_AUS) are masked to the skin (eyes, brows and lips left out: motion and the mouth
   cavity draw those) and stored at MAP_SIZE px.

An edit multiplies R, G and B alike by exp(sum_k u_k map_k), the maps carried from the mean
face onto the moved face by its landmarks: no colour can change, and the patterns are smooth.
Only the Duchenne smile's AUs are kept (AU06 cheek raiser, AU12 lip corner puller, whose FACS
appearance changes are the raised cheeks and the deepened nasolabial fold): other AUs'
patterns carry the labels' confounds (a moustache in AU14's and AU17's, spectacle frames in
AU09's), which would paint them.

    python -m wemgan.landmark_fit appearance --data ../shared/data/faces-au --cache-folder CACHE
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import safetensors.torch
import torch
from safetensors import safe_open
from torch import Tensor, nn

from .aus import AU_NAMES
from .flow import warp
from .landmark_motion import motion_flow

APPEARANCE_FILE = Path(__file__).with_name("landmark_appearance.safetensors")
APPEARANCE_AUS = ("AU06", "AU12")  # the Duchenne smile: raised cheeks, deepened nasolabial folds
MAP_SIZE = 64  # px: the stored maps' side (they are smooth; resized to the crop at use)
MAX_SHADING = 0.15  # the log-brightness change is clamped to +-0.15 (x 0.86 .. 1.16)


@functools.cache
def packaged_maps() -> tuple[Tensor, Tensor]:
    """(mean landmarks 68 x 2, maps K x MAP_SIZE x MAP_SIZE) of the packaged fit."""
    tensors = safetensors.torch.load_file(APPEARANCE_FILE)
    return tensors["mean_landmarks"].float(), tensors["maps"].float()


def packaged_record() -> dict:
    """How the packaged fit was made (the record `main` wrote into its metadata)."""
    with safe_open(APPEARANCE_FILE, "pt") as fitted:
        return json.loads(fitted.metadata()["record"])


def appearance_shading(
    moved: Tensor, u_rel: Tensor, mean: Tensor, maps: Tensor, image_size: int, resolution: int
) -> Tensor:
    """B x 1 x S x S log-brightness change for the AU change u_rel (B x 17) on faces whose landmarks
    land at `moved` (B x 68 x 2 px): sum_k u_k map_k in the mean face's frame, carried onto each face
    by a landmark flow computed on an r x r grid (resolution), clamped to +-MAX_SHADING."""
    columns = [AU_NAMES.index(name) for name in APPEARANCE_AUS]
    shading = torch.einsum("bk,khw->bhw", u_rel[:, columns].float(), maps.float()).unsqueeze(1)
    shading = nn.functional.interpolate(shading, size=(image_size, image_size), mode="bilinear", align_corners=False)
    mean = mean.float().expand(len(moved), -1, -1)
    # The output at a face's landmarks shows the map at the mean's.
    flow = motion_flow(mean, moved.float() - mean, image_size, resolution)
    return warp(shading, flow).clamp(-MAX_SHADING, MAX_SHADING)


def with_appearance(image: Tensor, shading: Tensor) -> Tensor:
    """image (B x 3 x S x S in [-1, 1]) with R, G and B (brightness (image + 1) / 2) multiplied by
    exp(shading); where the shading is 0 the image is returned exactly."""
    change = (image.float() + 1) * torch.expm1(shading.float())
    return (image + change.to(image.dtype)).clamp(-1, 1)
