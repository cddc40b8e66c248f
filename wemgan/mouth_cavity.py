"""The inside of a mouth that the landmark motion opens: teeth and a dark gap, drawn.

A warp parts the lips along a cut (`landmark_motion.parted_lips_flow`), and the gap would show
whatever lay on the cut, stretched. `mouth_cavity` paints what an opened mouth shows instead.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .flow import flow_stretch, line_rows, polygon_coverage, warp
from .landmark_guides import INNER_LIPS, OUTER_LIPS
from .landmark_motion import INNER_LOWER_LINE, INNER_UPPER_LINE, eye_axes

CAVITY_SHADE = 0.3  # an opened mouth's inside: the lips' colour at 30% of its brightness (mouth_cavity)
TEETH_SHADE = 0.3  # teeth: the lips' colour with 30% of its distance to white left (mouth_cavity)
UPPER_TEETH = (0.16, 0.8)  # the upper teeth show at most 0.16 IOD (a crown, ~6 px at 128 px) and 80% of the opening
LOWER_TEETH = (0.1, 0.03)  # the lower teeth show at most 0.1 IOD, where 0.03 IOD of dark is left between the rows
CORNER_SHADOW = 0.3  # the teeth fade into the dark over this share of the mouth's half-width at each corner


def mouth_cavity(x: Tensor, landmarks: Tensor, moves: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """(colour B x 3 x S x S, mask B x 1 x S x S) of the inside of a mouth that the flow opens.
    The flow (`parted_lips_flow`) parts the lips along a cut, and the gap shows whatever lay on the
    cut, stretched; an opened mouth shows its dark inside. The mask is inside the moved inner lip
    line, less what was already inside the mouth and is only moved (teeth, its dark inside: the
    flow moves those with their lips): only what the opening uncovers or smears is painted:
    upper teeth under the upper lip (UPPER_TEETH), lower teeth over the lower lip when the
    opening is wide enough (LOWER_TEETH), both of the lips' colour lightened (TEETH_SHADE) and
    fading into the cheeks' shadow at the corners (CORNER_SHADOW), and between them the lips'
    own colour at CAVITY_SHADE of its brightness."""
    size = x.shape[-1]
    inner, outer = INNER_LIPS, OUTER_LIPS
    before = polygon_coverage(landmarks[:, inner], size, supersample=2)
    after = polygon_coverage((landmarks + moves)[:, inner], size, supersample=2)
    # What was inside and is only moved stays; what is magnified past twice its size (lips a
    # pixel apart, pulled open) is a smear of the lips' edges and is painted too.
    smeared = (4 * (flow_stretch(flow.float(), size) - 0.5)).clamp(0, 1)
    smeared = nn.functional.interpolate(smeared, size=(size, size), mode="bilinear", align_corners=False)
    uncovered = (after - warp(before, flow) * (1 - smeared)).clamp(0, 1)
    uncovered = nn.functional.avg_pool2d(uncovered, 3, 1, 1)  # a lip's rim shades into the gap over a px
    lips = (polygon_coverage(landmarks[:, outer], size) - before).clamp(0, 1)
    lip_colour = (x.float() * lips).sum((2, 3), keepdim=True) / lips.sum((2, 3), keepdim=True).clamp_min(1)
    dark = (lip_colour + 1) * CAVITY_SHADE - 1  # [-1, 1] images: darkened toward black (-1)
    teeth = 1 - (1 - lip_colour) * TEETH_SHADE  # lightened toward white (1)
    # An opened mouth shows teeth, a smile mostly the upper ones (a dark crescent reads as a
    # drawing, and the independent judge reads less smile and lip raise from it): a band hangs
    # below the upper lip, and once the opening is wide a shorter one stands on the lower lip.
    moved = landmarks + moves
    upper, _ = line_rows(moved[:, INNER_UPPER_LINE], size)
    lower, _ = line_rows(moved[:, INNER_LOWER_LINE], size)
    iod = eye_axes(moved)[0].norm(dim=-1, keepdim=True)
    opening = (lower - upper).clamp_min(0)  # B x S
    upper_height = torch.minimum(UPPER_TEETH[0] * iod, UPPER_TEETH[1] * opening)
    lower_height = torch.minimum(LOWER_TEETH[0] * iod, (opening - upper_height - LOWER_TEETH[1] * iod).clamp_min(0))
    rows = torch.arange(size, device=x.device, dtype=torch.float32).view(1, -1, 1)

    def band(depth: Tensor, height: Tensor) -> Tensor:  # 1 from a lip's edge (depth 0) to `height` into the gap
        return torch.sigmoid(2 * depth + 1) * torch.sigmoid(2 * (height.unsqueeze(1) - depth))

    in_upper = band(rows - upper.unsqueeze(1), upper_height)
    in_lower = band(lower.unsqueeze(1) - rows, lower_height)
    columns = torch.arange(size, device=x.device, dtype=torch.float32).view(1, 1, -1)
    left, right = moved[:, 60, 0].view(-1, 1, 1), moved[:, 64, 0].view(-1, 1, 1)
    centred = 1 - (2 * (columns - left) / (right - left).clamp_min(1) - 1).abs()  # 1 mid-mouth, 0 at a corner
    in_teeth = ((in_upper + in_lower).clamp(max=1) * (centred / CORNER_SHADOW).clamp(0, 1)).unsqueeze(1)
    return dark + in_teeth * (teeth - dark), uncovered
