"""What a WEMGAN model is made of, one dataclass per part, each with the one validate() that the
networks, train_accelerate.py's parse_args and hub/export.py all call.

Two kinds of model (docs: README "Models"):
- the paper's: a Generator (Table 1) edits the face by relative AUs;
- the landmark editor's: a LandmarkEditor moves the face as real faces move, and an optional
  Renderer (the paper's Generator with a mask and landmark contours as inputs) draws what the
  motion reveals.
Both hold the AU estimator that reads a photo's AUs. config.json holds the parts a model has.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

SKIP_LEVELS = (0, 3, 4, 5)  # DIT skips (paper Table 7); which depths each sends: generator.SKIP_DEPTHS
SIZE_MULTIPLE = 32  # five stride-2 downsamples to the 4x4 bottleneck (at 128 px)
MAX_MOTION_STRENGTH = 2.0
MAX_MOUTH_SURROUNDINGS = 16  # px at 128 px: beyond this a mouth's margin reaches the eyes and the jaw line
# RendererConfig options that choose where a renderer redraws and what it is shown there, not its weights.
REDRAW_OPTIONS = (
    "keep_inner_mouth", "mouth_surroundings", "smile_skin", "brow_skin", "warped_input", "blank_inner_mouth",
    "white_balance", "cheek_windows",
)  # fmt: skip


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _widths(base_channels: int, max_channels: int) -> None:
    if not 0 < base_channels <= max_channels:
        raise ValueError(
            f"channels must satisfy 0 < base_channels <= max_channels, got {base_channels}, {max_channels}"
        )


@dataclass
class GeneratorConfig:
    """The paper's generator (Table 1); the defaults are the paper's."""

    base_channels: int = 64  # width of the first encoder conv; doubles per downsample
    max_channels: int = 512  # cap on the width
    skip_levels: int = 3  # DIT skip connections: 0, 3 (paper: 64, 32, 16 px), 4 or 5
    skip_kind: str = "haar"  # "haar": the skips carry the Haar high-frequency part (DIT); "plain": U-Net
    au_fusion: str = "multi"  # "multi": the paper's multi-AU fusion block; "single": AUs enter once
    norm: str = "instance"  # "instance" (paper) or "none"
    upsample: str = "transposed"  # "transposed" 4x4/2 convs (paper) or "resize" (nearest x2 + 3x3 conv)

    def validate(self, image_size: int = 128) -> GeneratorConfig:
        _widths(self.base_channels, self.max_channels)
        _choice("skip_levels", self.skip_levels, SKIP_LEVELS)
        _choice("skip_kind", self.skip_kind, ("haar", "plain"))
        _choice("au_fusion", self.au_fusion, ("multi", "single"))
        _choice("norm", self.norm, ("instance", "none"))
        _choice("upsample", self.upsample, ("transposed", "resize"))
        if image_size <= 0 or image_size % SIZE_MULTIPLE:
            raise ValueError(f"image_size must be a positive multiple of {SIZE_MULTIPLE}, got {image_size}")
        return self


@dataclass
class RendererConfig:
    """The Renderer: the paper's generator with a mask and landmark contours as extra inputs."""

    base_channels: int = 16  # width of the generator's first conv (paper: 64)
    max_channels: int = 128  # cap on the generator's width (paper: 512)
    skip_levels: int = 3  # DIT skips, as the paper's generator
    upsample: str = "resize"  # "resize" (no checkerboard) or the paper's "transposed"
    window: int = 0  # 0: draws on the whole face; else the side (px) of its windows around the mouth and eyes
    guide: str = "contours"  # how it is told the landmarks: "contours" (a line per part) or "heatmaps" (points)
    centre_colour: bool = False  # draws relative to the mean colour of what it sees, with no more chroma than it shows
    keep_inner_mouth: bool = False  # an edit keeps the inner mouth shown before and after it (own teeth)
    mouth_surroundings: int = 0  # px at 128 px: an edit that moves the lips redraws them and this much skin around
    smile_skin: bool = False  # an edit that moves the lips redraws the folds, cheeks and chin skin a smile shapes
    brow_skin: bool = True  # an edit that raises a brow redraws the skin it uncovers (False: the warp's, as the editor)
    warped_input: bool = False  # it sees the edit's warped pixels inside the mask (not a blank) and corrects them
    blank_inner_mouth: bool = False  # with warped_input: the inner mouth is still blanked and drawn afresh
    white_balance: bool = False  # it draws on the window white-balanced to its training faces' mean tint, then undone
    cheek_windows: bool = False  # windowed: each cheek (fold and cheek beside the mouth) has a window of its own

    def weights_config(self) -> RendererConfig:
        """This config with the options that choose where the renderer redraws and what it sees there
        (REDRAW_OPTIONS) at their defaults: renderers with equal weights_config() have the same weights."""
        return replace(self, **{name: getattr(RendererConfig, name) for name in REDRAW_OPTIONS})

    def validate(self, image_size: int = 128) -> RendererConfig:
        _choice("guide", self.guide, ("contours", "heatmaps"))
        if self.cheek_windows and not self.window:
            raise ValueError("cheek_windows gives a windowed renderer windows around the cheeks: give window > 0 too")
        if self.blank_inner_mouth and not self.warped_input:
            raise ValueError("blank_inner_mouth blanks the inner mouth of what a warped_input renderer sees: give "
                             "warped_input=True too (a blanking renderer blanks its whole mask already)")  # fmt: skip
        if not 0 <= self.mouth_surroundings <= MAX_MOUTH_SURROUNDINGS:
            raise ValueError(f"mouth_surroundings must be 0 (only what an edit reveals) to {MAX_MOUTH_SURROUNDINGS} "
                             f"px, got {self.mouth_surroundings}")  # fmt: skip
        if self.window and not (self.window < image_size and self.window % SIZE_MULTIPLE == 0):
            raise ValueError(f"window must be 0 (the whole face) or a multiple of {SIZE_MULTIPLE} below the image "
                             f"size {image_size}, got {self.window}")  # fmt: skip
        GeneratorConfig(self.base_channels, self.max_channels, self.skip_levels, upsample=self.upsample).validate(
            self.window or image_size
        )
        return self


@dataclass
class EditorConfig:
    """The LandmarkEditor: landmark motion of real faces, a drawn mouth, the smile's skin shading."""

    motion_strength: float = 1.0  # scales the fitted motion (and shading), at run time; (0, 2]
    mouth_cavity: bool = True  # lips part along a cut and the gap shows teeth and the mouth's inside
    appearance: bool = True  # the smile's AUs brighten and darken the skin as on real faces
    flow_resolution: int = 32  # side of the grid the motion's flow is interpolated on (at 128 px)
    whole_brows: bool = False  # the flow carries each brow whole, so a brow move stretches the skin around it

    def validate(self, image_size: int = 128) -> EditorConfig:
        if not 0 < self.motion_strength <= MAX_MOTION_STRENGTH:
            raise ValueError(f"motion_strength must be in (0, {MAX_MOTION_STRENGTH:g}], got {self.motion_strength}")
        allowed = tuple(image_size // 2**depth for depth in range(1, 5))
        _choice(f"flow_resolution (at {image_size} px)", self.flow_resolution, allowed)
        return self


@dataclass
class EstimatorConfig:
    """The built-in AU estimator that reads a photo's AUs."""

    channels: int = 32  # width of its first conv
    max_channels: int = 256  # cap on its width
    calibration_knots: int = 0  # knots of its quantile calibration (0: none)

    def validate(self, image_size: int = 128) -> EstimatorConfig:
        _widths(self.channels, self.max_channels)
        if self.calibration_knots < 0 or self.calibration_knots == 1:
            raise ValueError(f"calibration_knots must be 0 or at least 2, got {self.calibration_knots}")
        return self


@dataclass
class ModelConfig:
    """A whole model: the paper's (generator) or the landmark editor's (editor [+ renderer])."""

    image_size: int = 128  # side of the square face crop the networks work on (paper: 128)
    generator: GeneratorConfig | None = None
    editor: EditorConfig | None = None
    renderer: RendererConfig | None = None
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)

    def validate(self) -> ModelConfig:
        if (self.generator is None) == (self.editor is None):
            raise ValueError("a model holds either the paper's generator or the landmark editor (exactly one)")
        if self.renderer is not None and self.editor is None:
            raise ValueError("the renderer draws what the landmark editor's motion reveals: it needs the editor")
        for part in (self.generator, self.editor, self.renderer, self.estimator):
            if part is not None:
                part.validate(self.image_size)
        return self

    @property
    def kind(self) -> str:
        """ "paper", "editor" or "editor+renderer"."""
        if self.generator is not None:
            return "paper"
        return "editor+renderer" if self.renderer is not None else "editor"

    def to_dict(self) -> dict[str, Any]:
        """The parts this model has (config.json's model fields)."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        kinds = {"generator": GeneratorConfig, "editor": EditorConfig, "renderer": RendererConfig,
                 "estimator": EstimatorConfig}  # fmt: skip
        parts = {key: kinds[key](**value) for key, value in values.items() if key in kinds and value is not None}
        return cls(image_size=values.get("image_size", 128), **parts).validate()
