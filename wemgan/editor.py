"""LandmarkEditor: an AU change made as real faces make it, by moving the face's own pixels.

It reads the face's 68 landmarks (LandmarkRegressor), moves them by the per-AU motion fitted on
real faces (wemgan.landmark_motion, scaled by motion_strength at run time), warps the face along
a smooth flow through those moves, draws the inside of a mouth the motion opens
(wemgan.mouth_cavity) and shades the skin as a smile does (wemgan.landmark_appearance).
Nothing in it was trained against an AU network, so there is nothing for it to fool; what it
cannot do is draw what an expression reveals (the Renderer's job). No change is exactly no change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .aus import AU_NAMES, NUM_AUS
from .config import EditorConfig
from .flow import warp
from .landmark_appearance import appearance_shading, packaged_maps, with_appearance
from .landmark_motion import (
    JAW_DROP_AU,
    inner_lip_gap,
    jaw_reading,
    landmark_displacements,
    motion_basis,
    motion_flow,
    parted_lips_flow,
    with_whole_brows,
)
from .landmark_regressor import NUM_LANDMARKS, LandmarkRegressor
from .mouth_cavity import mouth_cavity

FIT_BUFFERS = ("motion_basis", "jaw_reading", "appearance_mean", "appearance_maps")
JAW = AU_NAMES.index(JAW_DROP_AU)


@dataclass
class EditorOutput:
    """What an edit made: the image, and the geometry the Renderer and the paste-back need."""

    image: Tensor  # B x 3 x S x S in [-1, 1]
    flow: Tensor  # B x 2 x s x s backward flow (flow.warp's units) the face was moved by
    landmarks: Tensor  # B x 68 x 2 pixels, read on the input
    moves: Tensor  # B x 68 x 2 pixels: where the edit moves them (landmarks + moves = target)


class LandmarkEditor(nn.Module):
    """LandmarkEditor(x, u_rel) -> EditorOutput (x: B x 3 x S x S in [-1, 1], u_rel: B x 17).

    Args:
        motion_strength: the fitted motion (and skin shading) is scaled by this, in (0, 2].
        mouth_cavity: lips part along a cut and the gap shows teeth and the mouth's dark inside
            instead of stretched lip.
        appearance: the smile's AUs (AU06, AU12) brighten and darken the skin as on real faces.
        flow_resolution: side of the grid the motion's flow is interpolated on (at 128 px: 32).
        whole_brows: the flow carries each brow whole (points along its body move with it), so a
            strong brow move stretches the forehead and the lid crease instead of smearing the brow.
        image_size: side of the square crops (128).
    """

    def __init__(
        self,
        motion_strength: float = 1.0,
        mouth_cavity: bool = True,
        appearance: bool = True,
        flow_resolution: int = 32,
        whole_brows: bool = False,
        image_size: int = 128,
    ) -> None:
        super().__init__()
        EditorConfig(motion_strength, mouth_cavity, appearance, flow_resolution, whole_brows).validate(image_size)
        self.motion_strength = motion_strength
        self.mouth_cavity = mouth_cavity
        self.appearance = appearance
        self.flow_resolution = flow_resolution
        self.whole_brows = whole_brows
        self.image_size = image_size
        self.landmark_regressor = LandmarkRegressor(image_size).requires_grad_(False)
        # The fits are buffers: a model file carries the ones it was made with.
        self.register_buffer("motion_basis", torch.zeros(NUM_AUS, NUM_LANDMARKS, 2))  # per AU at label 1, IODs
        # inner-lip gap per AU at label 1 (IODs, before gains), then a resting mouth's: see jaw_drop
        self.register_buffer("jaw_reading", torch.zeros(NUM_AUS + 1))
        if appearance:
            mean, maps = packaged_maps()
            self.register_buffer("appearance_mean", torch.zeros_like(mean))  # 68 x 2 px, the mean face
            self.register_buffer("appearance_maps", torch.zeros_like(maps))  # K x s x s log-brightness at label 1

    def _apply(self, fn, recurse=True):
        """.half(), .to(dtype) and the like cast the network; the fits stay float32 (they are tiny,
        and a model folder's edits must not depend on the dtype its weights are stored in)."""
        fits = {name: getattr(self, name) for name in FIT_BUFFERS if hasattr(self, name)}
        super()._apply(fn, recurse)
        for name, value in fits.items():  # the device follows, the values are kept exactly
            setattr(self, name, value.float().to(getattr(self, name).device))
        return self

    @classmethod
    def from_fits(cls, regressor: LandmarkRegressor, **config: float | bool | int) -> LandmarkEditor:
        """An editor holding the packaged fits (wemgan/landmark_motion.json and
        landmark_appearance.safetensors) and a copy of the trained regressor's weights."""
        editor = cls(**config)
        editor.landmark_regressor.load_state_dict(regressor.state_dict())
        with torch.no_grad():
            editor.motion_basis.copy_(motion_basis())
            editor.jaw_reading.copy_(jaw_reading())
            if editor.appearance:
                mean, maps = packaged_maps()
                editor.appearance_mean.copy_(mean)
                editor.appearance_maps.copy_(maps)
        return editor

    @torch.no_grad()
    def landmark_moves(self, landmarks: Tensor, u_rel: Tensor) -> Tensor:
        """B x 68 x 2 px: where each landmark of faces with these landmarks (B x 68 x 2 px) goes for
        relative AUs u_rel (B x 17), without the warp (what the Renderer's masks need)."""
        basis = self.motion_basis.float() * self.motion_strength
        return landmark_displacements(landmarks.float(), u_rel.float(), basis)

    @torch.no_grad()
    def read_jaw_drop(self, x: Tensor, aus: Tensor) -> Tensor:
        """B: AU26 of faces x (B x 3 x S x S in [-1, 1]) whose other AUs read `aus` (B x 17), read off
        their landmarks (jaw_drop)."""
        if self.jaw_reading[JAW] <= 0:  # no fits: no landmarks to read
            return aus[:, JAW]
        return self.jaw_drop(self.landmark_regressor(x), aus)

    @torch.no_grad()
    def jaw_drop(self, landmarks: Tensor, aus: Tensor) -> Tensor:
        """B: AU26 of faces with these landmarks (B x 68 x 2 px) as this editor's motion means it, a jaw
        drop (label 1 = the gap its row opens): the part of the inner lips' gap that a resting mouth and
        the other AUs' readings `aus` (B x 17) do not make, in [0, 1]. An AU reader trained on faces-au's
        AU26 labels does not see jaws (they mark closed lips as often as open ones), so with its reading
        a transfer would not drop the jaw a reference drops. An editor without fits keeps aus' AU26."""
        per_label, resting = self.jaw_reading[:NUM_AUS], self.jaw_reading[NUM_AUS]
        if per_label[JAW] <= 0:
            return aus[:, JAW]
        others = per_label.clone()
        others[JAW] = 0
        gap = inner_lip_gap(landmarks.float())
        return ((gap - resting - aus.float() @ others) / per_label[JAW]).clamp(0, 1).to(aus.dtype)

    @torch.no_grad()
    def move(self, x: Tensor, landmarks: Tensor, moves: Tensor) -> tuple[Tensor, Tensor]:
        """(image B x 3 x S x S, flow B x 2 x s x s): faces x with these landmarks (B x 68 x 2 px)
        warped so that each landmark moves by moves (B x 68 x 2 px), with the inside of a mouth the
        warp opens drawn (mouth_cavity); no skin shading (the AUs' part, in forward)."""
        points, point_moves = landmarks.float(), moves.float()
        if self.whole_brows:  # points along each brow's body move with it
            points, point_moves = with_whole_brows(points, point_moves)
        flow = (parted_lips_flow if self.mouth_cavity else motion_flow)(
            points, point_moves, self.image_size, self.flow_resolution
        ).to(x.dtype)
        moved = warp(x, flow)
        if self.mouth_cavity:
            cavity, opened = mouth_cavity(x, landmarks.float(), moves.float(), flow.float())
            moved = moved + opened.to(moved.dtype) * (cavity.to(moved.dtype) - moved)
        return moved, flow

    @torch.no_grad()
    def round_trip(self, x: Tensor, landmarks: Tensor, moves: Tensor) -> Tensor:
        """B x 3 x S x S: faces x (landmarks B x 68 x 2 px) moved by moves and back, each leg as an
        edit moves a face: the squeeze, the stretch and the drawn mouth an edit leaves, on a face whose
        true pixels are known (what a Renderer with warped_input learns to correct)."""
        there, _ = self.move(x, landmarks, moves)
        back, _ = self.move(there, landmarks + moves, -moves)
        return back

    def forward(self, x: Tensor, u_rel: Tensor) -> EditorOutput:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.image_size,) * 2:
            side = self.image_size
            raise ValueError(f"LandmarkEditor expects images of shape B x 3 x {side} x {side}, got {tuple(x.shape)}")
        if u_rel.shape != (x.shape[0], NUM_AUS):
            raise ValueError(f"LandmarkEditor expects AUs of shape {x.shape[0]} x {NUM_AUS}, got {tuple(u_rel.shape)}")
        with torch.no_grad():
            landmarks = self.landmark_regressor(x).float()
            moves = self.landmark_moves(landmarks, u_rel)
            edited, flow = self.apply(x, landmarks, moves, u_rel)
        return EditorOutput(edited, flow, landmarks, moves)

    @torch.no_grad()
    def apply(self, x: Tensor, landmarks: Tensor, moves: Tensor, u_rel: Tensor) -> tuple[Tensor, Tensor]:
        """(image, flow) as forward gives them, for faces x whose landmarks (B x 68 x 2 px) are known and
        move by moves (landmark_moves of u_rel, B x 17): the warp, the drawn mouth and the AUs' skin shading."""
        edited, flow = self.move(x, landmarks, moves)
        if self.appearance:
            maps = self.appearance_maps * self.motion_strength
            shading = appearance_shading(
                landmarks + moves, u_rel, self.appearance_mean, maps, self.image_size, self.flow_resolution
            )
            edited = with_appearance(edited, shading)
        return edited, flow
