"""SynthFACS: procedural faces with 17 controllable Action Units and exact paired ground truth.

A user who clones the project has no face dataset. SynthFACS renders one on the fly, so
training, evaluation, the app and the tests all run on a fresh machine, and an edit can be
scored against the *true* target: the same identity rendered with the target AUs.
It is a stand-in for real faces, not a substitute: a model trained on it edits SynthFACS faces.

    identity = sample_identity(7)
    image = render(identity, {"AU12": 0.8, "AU06": 0.6})          # 128x128 RGB PIL image
    source, target = paired(identity, "Neutral", "Happy")          # ground truth for an edit
    sample = make_sample("train", identity_index=3, sample_index=10)

How a face is drawn. Everything lives in *face units*: the origin is the head centre, the
head is about 2 units wide, v grows downwards (eyes at v ~ -0.1, mouth ~ 0.66, chin ~ 1.17).
An identity fixes the pose (roll, yaw, position, scale), the shape of every feature, colours,
light, hair, glasses, facial hair and a high-frequency skin texture (pores, freckles, moles,
stubble) that is the same in every expression: exactly what the generator's wavelet skips and
the high-frequency critic are meant to preserve. The AUs then

- move parametric features drawn with analytic anti-aliasing (brows, lids, lips, nostrils),
- add wrinkles and folds as shading (glabella lines, crow's feet, forehead lines, nasolabial
  folds, nose wrinkles, dimples, chin texture),
- and, for the jaw (AU26) and chin (AU17), warp the skin of the lower face.

Each effect is scaled by its AU and has compact support, so an AU at 0 adds exactly nothing
and pixels away from an AU's region never change when it moves. Everything that does not
depend on the AUs is rendered once per (identity, size) and cached; a render then redraws only
small windows around the features, which is what makes it fast (see bench/synthetic.py).

Identity seeds: `identity_seed(split, index, seed)` maps train and test identities to
disjoint ranges (train: seed * 2_000_000 + index, test: seed * 2_000_000 + 1_000_000 + index).

CLI: python -m wemgan.data.synthetic --out DIR --identities N --per-identity K
        [--test-identities M] [--seed S] [--size 128] [--contact-sheet PNG] [--au-sheet PNG]
        [--sheet-identities I ...] [--overwrite]
writes a `save_to_disk` DatasetDict (train/test), atomically, and optional contact sheets.
The sheets in docs/ were made with
    python -m wemgan.data.synthetic --contact-sheet docs/synthfacs.png --au-sheet synthfacs_aus.png \
        --sheet-identities 212 201 203 211 215 226
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from wemgan.aus import AU_DESCRIPTIONS, AU_NAMES, EXPRESSIONS, NUM_AUS, au_vector

if TYPE_CHECKING:
    import datasets

AUSpec = Mapping[str, float] | Sequence[float] | np.ndarray | str
RGB = tuple[float, float, float]

MIN_SIZE = 64
IDENTITIES_PER_SPLIT = 1_000_000  # identity_index must stay below this: keeps the splits disjoint
SPLITS = ("train", "test")
CACHE_IDENTITIES = 128  # static layers kept per process (~0.5 MB each at 128 px, ~65 MB in all)

# Streams of np.random.SeedSequence([seed, stream]): independent, and adding a new kind of
# random draw never changes the ones that exist.
_STREAM_IDENTITY, _STREAM_TEXTURE, _STREAM_SAMPLE = 1, 2, 3


# --------------------------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------------------------

HAIR_STYLES = ("shaved", "short", "side-swept", "long", "bob", "curly", "bun", "bald")
FACIAL_HAIR = ("none", "stubble", "moustache", "goatee", "beard")
GLASSES = ("none", "round", "rectangular")
BACKGROUNDS = ("gradient", "radial", "bokeh", "wall")


@dataclass(frozen=True)
class Identity:
    """Everything that makes one synthetic person; face units unless stated (see module doc)."""

    seed: int
    # framing: pose jitter, because alignment of real crops is never perfect
    roll: float  # degrees, clockwise on screen
    yaw: float  # degrees, positive turns the face towards image right
    scale: float  # pixels per face unit, as a fraction of the image size
    shift: tuple[float, float]  # head centre offset from the default, fraction of the image
    # head
    head_width: float
    jaw_width: float
    chin_length: float
    skin: RGB
    lip_color: RGB
    blush: float
    # light
    light: tuple[float, float, float]  # unit vector towards the light
    ambient: float
    background: int  # index into BACKGROUNDS
    background_colors: tuple[RGB, RGB, RGB]
    clothing: RGB
    # hair
    hair_style: int  # index into HAIR_STYLES
    hair_color: RGB
    hairline: float  # v of the hairline at the centre
    hair_volume: float
    part_side: int  # -1 or 1
    # eyes
    eye_x: float  # half the distance between the eye centres
    eye_y: float
    eye_width: float  # half width of the eye opening
    eye_open: float  # upper lid height above the eye axis
    lower_lid: float  # lower lid depth below the eye axis
    eye_tilt: float  # outer corner higher when positive
    iris_color: RGB
    iris_radius: float
    crease: float  # eyelid crease height above the lid; small means a monolid
    # brows
    brow_gap: float  # brow centre above the eye axis
    brow_thickness: float
    brow_arch: float
    brow_inner: float  # x of the inner end
    brow_outer: float  # x of the outer end
    brow_color: RGB
    # nose
    nose_y: float  # v of the nose tip
    nose_width: float  # half width of the alae
    # mouth
    mouth_y: float
    mouth_width: float  # half width
    upper_lip: float
    lower_lip: float
    # detail and accessories
    pores: float  # strength of the per-pixel skin grain
    freckles: int
    moles: int
    age: float  # 0..1, depth of the resting folds
    glasses: int  # index into GLASSES
    glasses_color: RGB
    facial_hair: int  # index into FACIAL_HAIR
    dimple_side: int  # the side where AU14 acts most (contempt is unilateral)


_SKIN_TONES = np.array(
    [
        (0.98, 0.86, 0.78),
        (0.94, 0.77, 0.66),
        (0.87, 0.67, 0.53),
        (0.78, 0.61, 0.45),
        (0.66, 0.47, 0.33),
        (0.52, 0.35, 0.24),
        (0.42, 0.28, 0.19),
        (0.32, 0.21, 0.15),
    ]
)
_HAIR_COLORS = {
    "black": (0.05, 0.045, 0.045),
    "dark brown": (0.16, 0.10, 0.07),
    "brown": (0.33, 0.21, 0.12),
    "light brown": (0.52, 0.37, 0.22),
    "blonde": (0.80, 0.66, 0.42),
    "platinum": (0.90, 0.86, 0.74),
    "auburn": (0.52, 0.20, 0.09),
    "grey": (0.56, 0.55, 0.54),
    "white": (0.86, 0.86, 0.85),
}
_GLASSES_COLORS = ((0.05, 0.05, 0.06), (0.35, 0.2, 0.1), (0.7, 0.6, 0.35), (0.55, 0.57, 0.6), (0.5, 0.1, 0.12))
_IRIS_COLORS = (
    (0.20, 0.11, 0.05),
    (0.34, 0.19, 0.08),
    (0.42, 0.35, 0.16),
    (0.28, 0.44, 0.27),
    (0.28, 0.45, 0.68),
    (0.44, 0.50, 0.56),
)


def _pick(rng: np.random.Generator, options: Sequence[Any], weights: Sequence[float]) -> Any:
    probabilities = np.asarray(weights, dtype=np.float64)
    return options[int(rng.choice(len(options), p=probabilities / probabilities.sum()))]


def _rgb(values: Sequence[float]) -> RGB:
    r, g, b = (float(min(1.0, max(0.0, c))) for c in values)
    return (r, g, b)


def sample_identity(seed: int) -> Identity:
    """A random identity, fully determined by a non-negative integer seed."""
    return _sample_identity(_check_seed(seed))


@functools.lru_cache(maxsize=4096)  # training draws the same identities again and again
def _sample_identity(seed: int) -> Identity:
    rng = np.random.default_rng([seed, _STREAM_IDENTITY])
    uniform = lambda low, high: float(rng.uniform(low, high))  # noqa: E731
    masculine = uniform(0, 1)  # correlates jaw, brows, hair length and facial hair, as in people

    tone = uniform(0, len(_SKIN_TONES) - 1)
    low = int(tone)
    skin = _SKIN_TONES[low] + (tone - low) * (_SKIN_TONES[min(low + 1, len(_SKIN_TONES) - 1)] - _SKIN_TONES[low])
    skin = skin * rng.uniform(0.96, 1.04, 3)  # olive / ruddy variation
    darkness = tone / (len(_SKIN_TONES) - 1)
    lip = skin * np.array([0.80, 0.55, 0.56]) + np.array([0.10, 0.01, 0.03]) * (1 - 0.5 * darkness)
    if rng.uniform() < 0.12 * (1 - masculine):  # lipstick
        lip = np.array(_pick(rng, [(0.70, 0.10, 0.15), (0.80, 0.35, 0.42), (0.45, 0.08, 0.16)], [1, 1, 1]))

    hair_names = list(_HAIR_COLORS)
    light_hair = max(0.0, 1.0 - 1.6 * darkness)  # blonde and red are rare with dark skin
    hair_weights = [3, 3, 2.5, 1.5 * light_hair, 1.5 * light_hair, 0.4 * light_hair, 0.6 * light_hair, 0.7, 0.3]
    hair_name = _pick(rng, hair_names, hair_weights)
    hair = np.array(_HAIR_COLORS[hair_name]) * rng.uniform(0.9, 1.1)
    brow = hair * 0.7 if hair_name not in ("grey", "white", "platinum") else hair * 0.55
    feminine = 1 - masculine
    # weights in HAIR_STYLES order: shaved, short, side-swept, long, bob, curly, bun, bald
    style_weights = [
        0.6 * masculine,
        2 * masculine + 0.3,
        1.2,
        2.4 * feminine,
        1.2 * feminine,
        1,
        0.9 * feminine,
        0.7 * masculine,
    ]
    hair_style = _pick(rng, range(len(HAIR_STYLES)), style_weights)
    if hair_name in ("grey", "white") and rng.uniform() < 0.5 * masculine:
        hair_style = HAIR_STYLES.index("bald")

    facial_hair = 0
    if rng.uniform() < 0.75 * masculine**2:
        facial_hair = _pick(rng, range(1, len(FACIAL_HAIR)), [3, 1, 1.2, 2])
    glasses = _pick(rng, range(len(GLASSES)), [7, 1.2, 1.5])

    direction = np.array([uniform(-0.75, 0.75), uniform(-0.65, 0.05), uniform(0.7, 1.0)])
    direction /= np.linalg.norm(direction)
    background = _pick(rng, range(len(BACKGROUNDS)), [1, 1, 0.8, 0.8])
    background_colors = tuple(_rgb(_background_color(rng)) for _ in range(3))

    eye_width = uniform(0.18, 0.215)
    iris_weights = [6 * darkness + 2, 3, 2 * light_hair + 0.3, 1.2 * light_hair, 2 * light_hair, light_hair]
    return Identity(
        seed=seed,
        roll=float(np.clip(rng.normal(0, 2.5), -6, 6)),
        yaw=float(np.clip(rng.normal(0, 3.0), -7, 7)),
        scale=uniform(0.29, 0.32),
        shift=(uniform(-0.02, 0.02), uniform(-0.02, 0.02)),
        head_width=uniform(0.9, 0.97) + 0.05 * masculine,
        jaw_width=uniform(0.64, 0.74) + 0.1 * masculine,
        chin_length=uniform(0.68, 0.76),
        skin=_rgb(skin),
        lip_color=_rgb(lip),
        blush=uniform(0.0, 0.08) * (1 - masculine),
        light=(float(direction[0]), float(direction[1]), float(direction[2])),
        ambient=uniform(0.42, 0.6),
        background=background,
        background_colors=background_colors,  # type: ignore[arg-type]
        clothing=_rgb(rng.uniform(0.08, 0.85, 3)),
        hair_style=hair_style,
        hair_color=_rgb(hair),
        hairline=uniform(-0.98, -0.78),
        hair_volume=uniform(0.06, 0.2),
        part_side=int(rng.choice([-1, 1])),
        eye_x=uniform(0.36, 0.41),
        eye_y=uniform(-0.13, -0.07),
        eye_width=eye_width,
        eye_open=uniform(0.085, 0.11),
        lower_lid=uniform(0.05, 0.065),
        eye_tilt=uniform(-0.01, 0.035),
        iris_color=_rgb(_pick(rng, _IRIS_COLORS, iris_weights)),
        iris_radius=eye_width * uniform(0.43, 0.48),
        crease=uniform(0.0, 0.055),
        brow_gap=uniform(0.22, 0.29),
        brow_thickness=uniform(0.05, 0.065) + 0.025 * masculine,
        brow_arch=uniform(0.01, 0.05),
        brow_inner=uniform(0.11, 0.16),
        brow_outer=uniform(0.6, 0.67),
        brow_color=_rgb(brow),
        nose_y=uniform(0.3, 0.36),
        nose_width=uniform(0.13, 0.16) + 0.02 * masculine,
        mouth_y=uniform(0.63, 0.69),
        mouth_width=uniform(0.26, 0.32),
        upper_lip=uniform(0.06, 0.085),
        lower_lip=uniform(0.08, 0.115),
        pores=uniform(0.008, 0.025),
        freckles=int(rng.integers(15, 90)) if rng.uniform() < 0.3 * light_hair + 0.05 else 0,
        moles=int(rng.integers(0, 4)),
        age=uniform(0, 1),
        glasses=glasses,
        glasses_color=_rgb(_pick(rng, _GLASSES_COLORS, [4, 2, 1, 1.5, 0.6])),
        facial_hair=facial_hair,
        dimple_side=int(rng.choice([-1, 1])),
    )


def _background_color(rng: np.random.Generator) -> np.ndarray:
    """Mostly muted studio colours, sometimes saturated, never face-coloured noise."""
    hue = rng.uniform(0, 1)
    saturation = rng.uniform(0.05, 0.55)
    value = rng.uniform(0.25, 0.95)
    rgb = np.array([_hue_channel(hue, shift) for shift in (0.0, 2 / 3, 1 / 3)])
    return value * (1 - saturation + saturation * rgb)


def _hue_channel(hue: float, shift: float) -> float:
    return float(np.clip(abs(((hue + shift) % 1.0) * 6 - 3) - 1, 0, 1))


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"identity seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise ValueError(f"size must be an integer number of pixels, got {size!r}")
    if size < MIN_SIZE or size % 4:
        raise ValueError(f"size must be a multiple of 4 and at least {MIN_SIZE} (e.g. 128), got {size}")
    return int(size)


# --------------------------------------------------------------------------------------------
# Small vectorised drawing helpers (face units; `px` = one pixel in face units)
# --------------------------------------------------------------------------------------------


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) * (1.0 / (edge1 - edge0)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _fill(distance: np.ndarray, px: float) -> np.ndarray:
    """Coverage of a shape from its signed distance (negative inside): a one-pixel box filter."""
    return np.clip(0.5 - distance * (1.0 / px), 0.0, 1.0)


def _band(y: np.ndarray, top: np.ndarray | float, bottom: np.ndarray | float, px: float) -> np.ndarray:
    """Coverage of the band top < y < bottom; exact for thin and empty bands (bottom <= top)."""
    inv = 1.0 / px
    cover = np.clip(0.5 + (y - top) * inv, 0.0, 1.0)
    cover += np.clip(0.5 + (bottom - y) * inv, 0.0, 1.0)
    cover -= 1.0
    return np.maximum(cover, 0.0, out=cover)


def _line(distance: np.ndarray, half_width: float, px: float) -> np.ndarray:
    """A soft line profile (1 on the line, 0 beyond half_width), at least a pixel wide."""
    width = max(half_width, px)
    return np.clip(1.0 - np.abs(distance) * (1.0 / width), 0.0, 1.0)


def _ellipse(u: np.ndarray, v: np.ndarray, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (Quilez), exact on its boundary."""
    x = (u - centre[0]) * (1.0 / radii[0])
    y = (v - centre[1]) * (1.0 / radii[1])
    k0 = np.sqrt(x * x + y * y)
    k1 = np.sqrt((x * (1.0 / radii[0])) ** 2 + (y * (1.0 / radii[1])) ** 2) + 1e-6
    return k0 * (k0 - 1.0) / k1


def _smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _segment(u: np.ndarray, v: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Distance to the segment a-b."""
    bx, by = b[0] - a[0], b[1] - a[1]
    pu, pv = u - a[0], v - a[1]
    h = np.clip((pu * bx + pv * by) * (1.0 / (bx * bx + by * by)), 0.0, 1.0)
    return np.hypot(pu - h * bx, pv - h * by)


def _blend(dst: np.ndarray, color: np.ndarray | Sequence[float], alpha: np.ndarray) -> None:
    """dst <- dst + alpha * (color - dst), in place; alpha 0 leaves dst bit-identical."""
    dst += alpha[..., None] * (np.asarray(color, dtype=np.float32) - dst)


def _shade(dst: np.ndarray, factor: np.ndarray) -> None:
    """Multiply in place by a per-pixel factor (1 leaves dst bit-identical)."""
    dst *= factor[..., None]


def _value_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth noise in [0, 1] with features about `cell` pixels across (bilinear random grid)."""
    height, width = shape
    grid = rng.uniform(0, 1, (int(height / cell) + 2, int(width / cell) + 2)).astype(np.float32)
    y = (np.arange(height, dtype=np.float32) + 0.5) / cell
    x = (np.arange(width, dtype=np.float32) + 0.5) / cell
    y0, x0 = y.astype(np.int64), x.astype(np.int64)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _splat(image: np.ndarray, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> None:
    """Add point weights at sub-pixel positions (pixel units), split bilinearly over 4 pixels."""
    height, width = image.shape
    x, y = x - 0.5, y - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            keep = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            np.add.at(image, (yi[keep], xi[keep]), (weight * wx * wy)[keep])


# --------------------------------------------------------------------------------------------
# Geometry shared by the static layers and the AU-driven features
# --------------------------------------------------------------------------------------------


class _Frame(NamedTuple):
    """Similarity transform face units -> pixels: x = cx + s (u cos - v sin), y = cy + s (u sin + v cos)."""

    cx: float
    cy: float
    s: float
    cos: float
    sin: float

    def to_pixels(self, u: float, v: float) -> tuple[float, float]:
        return (self.cx + self.s * (u * self.cos - v * self.sin), self.cy + self.s * (u * self.sin + v * self.cos))


def _frame(identity: Identity, size: int) -> _Frame:
    angle = math.radians(identity.roll)
    return _Frame(
        cx=size * (0.5 + identity.shift[0]),
        cy=size * (0.47 + identity.shift[1]),
        s=size * identity.scale,
        cos=math.cos(angle),
        sin=math.sin(angle),
    )


def _face_grid(frame: _Frame, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Face coordinates (u, v) of every pixel centre."""
    x = (np.arange(size, dtype=np.float32) + 0.5 - frame.cx)[None, :]
    y = (np.arange(size, dtype=np.float32) + 0.5 - frame.cy)[:, None]
    u = (x * frame.cos + y * frame.sin) * (1.0 / frame.s)
    v = (y * frame.cos - x * frame.sin) * (1.0 / frame.s)
    return u.astype(np.float32), v.astype(np.float32)


def _depth(identity: Identity, u: np.ndarray | float, v: np.ndarray | float) -> np.ndarray | float:
    """Depth of the face surface (0 at the silhouette): how far yaw shifts a feature sideways."""
    inside = 1.0 - (u / identity.head_width) ** 2 - ((v - 0.1) / 1.5) ** 2
    return 0.8 * np.sqrt(np.clip(inside, 0.0, 1.0))


def _yaw_shift(identity: Identity) -> float:
    return math.sin(math.radians(identity.yaw))


def _chin_y(identity: Identity) -> float:
    return 0.45 + identity.chin_length


def _brow_y(identity: Identity) -> float:
    return identity.eye_y - identity.brow_gap


class _Window(NamedTuple):
    """A rectangle of the dynamic region with its face coordinates (views into the cached grids)."""

    rows: slice  # relative to the dynamic region
    cols: slice
    u: np.ndarray
    v: np.ndarray
    uf: np.ndarray  # u with the yaw shift removed: where features are laid out


# Face-space boxes (u0, u1, v0, v1) of the AU-driven windows, large enough for every AU at 1.
def _window_boxes(identity: Identity) -> dict[str, tuple[float, float, float, float]]:
    i = identity
    brow_y, chin_y = _brow_y(i), _chin_y(i)
    eye_reach = i.eye_x + i.eye_width + 0.07
    mouth_reach = i.mouth_width * 1.5 + 0.08
    boxes = {
        "forehead": (-0.85, 0.85, brow_y - 0.5, brow_y + 0.02),
        "glabella": (-0.2, 0.2, brow_y - 0.12, i.nose_y - 0.1),
        "nose": (-(i.nose_width + 0.1), i.nose_width + 0.1, i.nose_y - 0.14, i.nose_y + 0.16),
        "mouth": (-mouth_reach, mouth_reach, i.mouth_y - 0.2, i.mouth_y + 0.45),
        "chin": (-0.4, 0.4, i.mouth_y + 0.05, chin_y + 0.34),
        "jaw": (-1.12, 1.12, i.mouth_y - 0.42, chin_y + 0.98),
    }
    for side, name in ((-1, "left"), (1, "right")):
        boxes[f"brow_{name}"] = _side_box(side, i.brow_inner - 0.12, i.brow_outer + 0.06, brow_y - 0.26, brow_y + 0.16)
        boxes[f"eye_{name}"] = _side_box(
            side, i.eye_x - i.eye_width - 0.05, i.eye_x + i.eye_width + 0.05, i.eye_y - 0.19, i.eye_y + 0.15
        )
        boxes[f"crow_{name}"] = _side_box(side, eye_reach - 0.08, eye_reach + 0.2, i.eye_y - 0.17, i.eye_y + 0.17)
        boxes[f"cheek_{name}"] = _side_box(side, 0.1, 0.8, i.eye_y + 0.04, i.mouth_y + 0.32)
    return boxes


def _side_box(side: int, inner: float, outer: float, top: float, bottom: float) -> tuple[float, float, float, float]:
    return (inner, outer, top, bottom) if side > 0 else (-outer, -inner, top, bottom)


def _pixel_box(
    identity: Identity, frame: _Frame, box: tuple[float, float, float, float], size: int
) -> tuple[int, int, int, int]:
    """Pixel bounding box (y0, y1, x0, x1) of a face-space box, including the yaw shift."""
    u0, u1, v0, v1 = box
    shift = _yaw_shift(identity) * float(_depth(identity, 0.5 * (u0 + u1), 0.5 * (v0 + v1)))
    margin = 0.04 + abs(_yaw_shift(identity)) * 0.3
    corners = [frame.to_pixels(u + shift, v) for u in (u0 - margin, u1 + margin) for v in (v0, v1)]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    x0, x1 = max(0, math.floor(min(xs)) - 1), min(size, math.ceil(max(xs)) + 1)
    y0, y1 = max(0, math.floor(min(ys)) - 1), min(size, math.ceil(max(ys)) + 1)
    return y0, y1, x0, x1


# --------------------------------------------------------------------------------------------
# Static layers: everything that does not depend on the AUs, rendered once per identity
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Static:
    size: int
    frame: _Frame
    px: float  # one pixel in face units
    canvas: np.ndarray  # uint8 H x W x 3: the face without AU-driven features, overlay applied
    rows: slice  # the dynamic region: union of all feature windows
    cols: slice
    base: np.ndarray  # float32 h x w x 3, dynamic region, below the features
    overlay: np.ndarray  # float32 h x w x 3, premultiplied colour above the features (hair, glasses)
    overlay_alpha: np.ndarray  # float32 h x w x 1
    grain: np.ndarray  # float32 h x w, per-identity noise in [0, 1] for textured features
    windows: dict[str, _Window]
    light: dict[str, float]  # diffuse light on each feature, so eyes and lips match the skin


@functools.lru_cache(maxsize=CACHE_IDENTITIES)
def _static_layers(identity: Identity, size: int) -> _Static:
    frame = _frame(identity, size)
    px = 1.0 / frame.s
    u, v = _face_grid(frame, size)
    uf = (u - _yaw_shift(identity) * _depth(identity, u, v)).astype(np.float32)
    rng = np.random.default_rng([identity.seed, _STREAM_TEXTURE, size])

    head = _head_distance(identity, u, v)
    base = _background(identity, u, v, rng)
    _draw_hair_back(base, identity, u, v, px, rng)
    _draw_body(base, identity, u, v, head, px)
    _draw_ears(base, identity, u, v, px)
    _draw_skin(base, identity, u, v, uf, head, px, rng)
    overlay = np.zeros_like(base)
    overlay_alpha = np.zeros((size, size, 1), np.float32)
    _draw_hair_front(overlay, overlay_alpha, identity, u, v, head, px, rng)
    _draw_glasses(overlay, overlay_alpha, identity, u, v, uf, px)
    grain = rng.uniform(0, 1, (size, size)).astype(np.float32)

    boxes = {name: _pixel_box(identity, frame, box, size) for name, box in _window_boxes(identity).items()}
    y0, y1 = min(b[0] for b in boxes.values()), max(b[1] for b in boxes.values())
    x0, x1 = min(b[2] for b in boxes.values()), max(b[3] for b in boxes.values())
    rows, cols = slice(y0, y1), slice(x0, x1)
    region = (rows, cols)
    u_r, v_r, uf_r = (np.ascontiguousarray(grid[region]) for grid in (u, v, uf))
    for grid in (u_r, v_r, uf_r):
        grid.flags.writeable = False  # the window views below inherit this
    windows = {}
    for name, (b0, b1, b2, b3) in boxes.items():
        local = (slice(b0 - y0, b1 - y0), slice(b2 - x0, b3 - x0))
        windows[name] = _Window(local[0], local[1], u_r[local], v_r[local], uf_r[local])
    canvas = _to_uint8(base * (1.0 - overlay_alpha) + overlay)
    cached = [canvas, *(np.ascontiguousarray(layer[region]) for layer in (base, overlay, overlay_alpha, grain))]
    for array in cached:
        array.flags.writeable = False  # shared by every render of this identity
    return _Static(
        size=size,
        frame=frame,
        px=px,
        canvas=cached[0],
        rows=rows,
        cols=cols,
        base=cached[1],
        overlay=cached[2],
        overlay_alpha=cached[3],
        grain=cached[4],
        windows=windows,
        light=_feature_light(identity),
    )


def _feature_light(identity: Identity) -> dict[str, float]:
    i = identity
    points = {"mouth": (0.0, i.mouth_y), "nose": (0.0, i.nose_y)}
    for side, name in ((-1, "left"), (1, "right")):
        points[f"eye_{name}"] = (side * i.eye_x, i.eye_y)
        points[f"brow_{name}"] = (side * 0.4, _brow_y(i))
    return {name: _light_at(i, u, v) for name, (u, v) in points.items()}


def _light_at(identity: Identity, u: float, v: float) -> float:
    nx, ny = u / (identity.head_width * 1.05), (v - 0.1) / 1.45
    nz = math.sqrt(max(0.03, 1.0 - nx * nx - ny * ny))
    return float(_lambert(identity, np.float32(nx), np.float32(ny), np.float32(nz)))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)


def _head_distance(identity: Identity, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance to the head outline: a cranium ellipse smoothly joined to a jaw ellipse."""
    cranium = _ellipse(u, v, (0.0, -0.22), (identity.head_width, 1.13))
    jaw = _ellipse(u, v, (0.0, 0.45), (identity.jaw_width, identity.chin_length))
    return _smooth_min(cranium, jaw, 0.25)


def _background(identity: Identity, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = u.shape[0]
    c0, c1, c2 = (np.array(c, np.float32) for c in identity.background_colors)
    y = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, size, dtype=np.float32)[None, :, None]
    style = BACKGROUNDS[identity.background]
    if style == "gradient":
        image = c0 + (c1 - c0) * y + 0 * x
    elif style == "radial":
        r = np.sqrt((x - 0.5) ** 2 + (y - 0.45) ** 2) / 0.75
        image = c0 + (c1 - c0) * np.clip(r, 0, 1)
    elif style == "bokeh":
        image = c0 + (c1 - c0) * y * 0.5 + 0 * x
        for _ in range(int(rng.integers(4, 9))):
            cx, cy, radius = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.16)
            disc = np.clip(1.0 - np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / radius, 0, 1) ** 0.5
            image = image + (c2 - image) * disc * rng.uniform(0.3, 0.7)
    else:  # wall: soft large-scale blotches
        blotch = _value_noise(rng, (size, size), size / 5)[..., None]
        image = c0 + (c1 - c0) * (0.35 * blotch + 0.3 * x)
    image = image * (1.0 - 0.25 * np.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2))  # lens vignette
    image = image + rng.normal(0, 0.006, (size, size, 1))  # sensor noise, fixed per identity
    return image.astype(np.float32)


def _lambert(identity: Identity, nx: np.ndarray, ny: np.ndarray, nz: np.ndarray) -> np.ndarray:
    lx, ly, lz = identity.light
    norm = np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-6
    diffuse = np.clip((nx * lx + ny * ly + nz * lz) / norm, 0.0, 1.0)
    return identity.ambient + (1.0 - identity.ambient) * diffuse


def _hair_texture(identity: Identity, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hair colour x strand texture x volume shading, everywhere (callers mask it)."""
    size = u.shape[0]
    style = HAIR_STYLES[identity.hair_style]
    if style == "curly":
        texture = 0.55 + 0.6 * _value_noise(rng, (size, size), max(1.5, size / 60))
    else:
        # Strands fan out from the crown: each strand gets its own brightness, slightly wavy.
        wobble = _value_noise(rng, (size, size), size / 12) - 0.5
        angle = np.arctan2(u - 0.25 * identity.part_side, v + 1.7) + 0.06 * wobble + math.pi
        strand = angle * (0.2 * size)  # about two pixels per strand where the hair is
        first = np.floor(strand).astype(np.int64)
        brightness = rng.uniform(0.55, 1.15, first.max() + 2).astype(np.float32)
        fraction = strand - first
        texture = brightness[first] * (1 - fraction) + brightness[first + 1] * fraction
        texture = texture + 0.06 * rng.uniform(-1, 1, (size, size))
    volume = identity.head_width + identity.hair_volume
    nx, ny = u / (volume + 0.3), (v + 0.35) / 1.6
    nz = np.sqrt(np.clip(1.0 - nx * nx - ny * ny, 0.05, 1.0))
    shade = _lambert(identity, nx, ny, nz)
    sheen = 0.35 * np.exp(-(((ny - 0.5 * identity.light[1] + 0.45) / 0.12) ** 2)) * np.clip(nz, 0, 1)
    color = np.array(identity.hair_color, np.float32)
    return (color * (shade * texture)[..., None] + (sheen * (0.3 + 0.7 * color.mean()))[..., None]).astype(np.float32)


def _hair_outline(identity: Identity, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance to the outside of the hair mass (top and sides of the head)."""
    style = HAIR_STYLES[identity.hair_style]
    volume = identity.hair_volume
    if style in ("shaved", "bald"):
        volume = 0.012
    if style == "curly":
        radius = identity.head_width + 0.3 + volume
        angle = np.arctan2(v + 0.45, u)
        bumps = 0.045 * np.sin(angle * 13.0) + 0.03 * np.sin(angle * 29.0 + 1.0)
        return np.sqrt(u * u + (v + 0.45) ** 2) - radius - bumps
    outline = _ellipse(u, v, (0.0, -0.24), (identity.head_width + 0.6 * volume, 1.13 + volume))
    if style == "bun":
        outline = np.minimum(outline, _ellipse(u, v, (0.0, -1.42), (0.36, 0.3)))
    return outline


def _hair_curtain(identity: Identity, u: np.ndarray, v: np.ndarray, bottom: float) -> np.ndarray:
    """Signed distance to hair hanging from the widest part of the head down to `bottom`, flaring out."""
    top = -0.24  # the centre of the cranium ellipse in _hair_outline: no step where they meet
    half_width = identity.head_width + 0.6 * identity.hair_volume + 0.12 * np.clip(v - top, 0, None)
    return np.maximum(np.abs(u) - half_width, np.maximum(top - v, v - bottom))


def _draw_hair_back(
    base: np.ndarray, identity: Identity, u: np.ndarray, v: np.ndarray, px: float, rng: np.random.Generator
) -> None:
    """Hair behind the head and neck: long and bob styles fall to the shoulders or the jaw."""
    style = HAIR_STYLES[identity.hair_style]
    if style not in ("long", "bob", "curly"):
        return
    outline = _hair_outline(identity, u, v)
    if style != "curly":
        bottom = 2.6 if style == "long" else 0.95
        outline = np.minimum(outline, _hair_curtain(identity, u, v, bottom))
    texture = _hair_texture(identity, u, v, rng) * 0.6  # in the shadow of the head
    _blend(base, texture, _fill(outline, 1.5 * px))


def _draw_body(base: np.ndarray, identity: Identity, u: np.ndarray, v: np.ndarray, head: np.ndarray, px: float) -> None:
    """Neck (shaded under the jaw) and shoulders with a round collar."""
    skin = np.array(identity.skin, np.float32)
    half_width = 0.4 + 0.1 * _smoothstep(1.1, 1.8, v)
    neck = np.maximum(np.abs(u) - half_width, 0.3 - v)
    under_jaw = 0.55 + 0.45 * _smoothstep(0.0, 0.4, head)  # the head shades the neck below the jaw
    side = 0.85 + 0.15 * np.clip(1.0 - (u / 0.45) ** 2, 0, 1)
    _blend(base, skin * (under_jaw * side)[..., None] * 0.9, _fill(neck, px))
    shoulders = _ellipse(u, v, (0.0, 2.3), (1.75, 0.95))
    collar = _ellipse(u, v, (0.0, 1.45), (0.42, 0.22))
    clothing = np.maximum(shoulders, -collar)
    shade = 0.75 + 0.25 * np.clip(1.0 - np.abs(u) / 1.7, 0, 1)
    _blend(base, np.array(identity.clothing, np.float32) * shade[..., None], _fill(clothing, px))


def _draw_ears(base: np.ndarray, identity: Identity, u: np.ndarray, v: np.ndarray, px: float) -> None:
    """Ears half hidden behind the head outline (drawn first, the head covers them)."""
    skin = np.array(identity.skin, np.float32)
    for side in (-1, 1):
        centre = (side * (identity.head_width - 0.04), 0.02)
        ear = _ellipse(u, v, centre, (0.13, 0.23))
        inner = _ellipse(u, v, (centre[0] + side * 0.02, 0.04), (0.07, 0.15))
        shade = 0.78 - 0.18 * _fill(inner, 2 * px)
        _blend(base, skin * shade[..., None], _fill(ear, px))


def _draw_skin(
    base: np.ndarray,
    identity: Identity,
    u: np.ndarray,
    v: np.ndarray,
    uf: np.ndarray,
    head: np.ndarray,
    px: float,
    rng: np.random.Generator,
) -> None:
    """Head skin: volume shading, face modelling, then the per-identity high-frequency detail."""
    i = identity
    size = u.shape[0]
    # Volume: Lambert shading of an ellipsoid; the face's relief is painted on as soft blobs below.
    nx = uf / (i.head_width * 1.05)
    ny = (v - 0.1) / 1.45
    nz = np.sqrt(np.clip(1.0 - nx * nx - ny * ny, 0.03, 1.0))
    shade = _lambert(i, nx, ny, nz)
    skin = np.array(i.skin, np.float32)
    color = skin * shade[..., None]
    # Warmer where light fades into shadow (subsurface scattering in real skin).
    color += np.array([0.05, 0.0, -0.02], np.float32) * (shade * (1 - shade))[..., None]

    def blob(cu: float, cv: float, ru: float, rv: float) -> np.ndarray:
        return np.exp(-(((uf - cu) / ru) ** 2) - ((v - cv) / rv) ** 2)

    darken = np.zeros_like(u)
    for side in (-1, 1):
        darken += 0.16 * blob(side * i.eye_x, i.eye_y - 0.02, 0.24, 0.13)  # eye sockets
        darken -= 0.07 * blob(side * 0.45, i.eye_y + 0.27, 0.16, 0.1)  # cheekbone highlight
    bridge_v, bridge_half = 0.5 * (i.eye_y + 0.05 + i.nose_y), 0.5 * (i.nose_y - i.eye_y - 0.05)
    for side in (-1, 1):  # side walls of the nose: the one turned from the light is darker
        wall = 0.07 + 0.16 * max(0.0, -side * i.light[0])
        darken += wall * blob(side * 0.085, bridge_v, 0.04, bridge_half)
        darken += 0.5 * wall * blob(side * (i.nose_width - 0.02), i.nose_y, 0.05, 0.05)
    tip = i.nose_y - 0.05
    darken -= 0.12 * blob(_yaw_shift(i) * 0.15, tip, 0.05, 0.06)  # nose tip highlight
    darken += 0.12 * blob(0.0, i.nose_y + 0.09, 0.1, 0.035)  # under the nose
    darken += 0.05 * blob(0.0, 0.5 * (i.nose_y + i.mouth_y), 0.025, 0.08)  # philtrum groove
    darken -= 0.07 * blob(0.0, _chin_y(i) - 0.16, 0.15, 0.08)  # chin highlight
    color *= (1.0 - darken)[..., None]
    blush = sum(blob(side * 0.48, 0.28, 0.2, 0.14) for side in (-1, 1)) * i.blush
    color += np.array([0.6, -0.1, -0.05], np.float32) * blush[..., None]

    # High-frequency identity detail: pores (per pixel), blotches, freckles, moles.
    detail = 1.0 + i.pores * rng.normal(0, 1, (size, size)) + 0.03 * (_value_noise(rng, (size, size), 5) - 0.5)
    spots = np.zeros((size, size), np.float32)
    frame = _frame(i, size)
    if i.freckles:
        side = rng.choice([-1, 1], i.freckles)
        fu = side * np.abs(rng.normal(0.3, 0.17, i.freckles))
        fv = rng.normal(0.16, 0.12, i.freckles)
        x, y = frame.to_pixels(fu, fv)
        _splat(spots, np.asarray(x), np.asarray(y), rng.uniform(0.08, 0.25, i.freckles))
    detail -= np.clip(spots, 0, 0.5)
    color *= detail[..., None]
    for _ in range(i.moles):
        mu, mv, radius = rng.uniform(-0.75, 0.75), rng.uniform(-0.6, 1.0), rng.uniform(0.018, 0.032)
        _blend(color, skin * 0.45, _fill(np.hypot(u - mu, v - mv) - radius, px) * 0.85)
    _draw_facial_hair(color, i, u, v, uf, px, rng)
    _blend(base, color, _fill(head, px))


def _draw_facial_hair(
    color: np.ndarray,
    identity: Identity,
    u: np.ndarray,
    v: np.ndarray,
    uf: np.ndarray,
    px: float,
    rng: np.random.Generator,
) -> None:
    """Stubble, goatee and beard live on the skin (they move with the jaw); the moustache is drawn with the lips."""
    kind = FACIAL_HAIR[identity.facial_hair]
    if kind == "none":
        return
    i = identity
    size = u.shape[0]
    side_up = _smoothstep(0.5, 0.9, np.abs(uf))
    line = (i.mouth_y - 0.12) + (0.0 - (i.mouth_y - 0.12)) * side_up  # cheek line up to the sideburns
    area = _smoothstep(line - 0.02, line + 0.07, v)
    if kind == "goatee":  # the chin only (the moustache is drawn with the lips)
        area = area * _fill(_ellipse(uf, v, (0.0, _chin_y(i) - 0.2), (0.2, 0.24)), 3 * px)
    hair = np.array(i.hair_color, np.float32)
    if kind in ("stubble", "moustache"):
        # Shadow of shaved hair plus dark dots: fixed per identity, like pores.
        dots = (rng.uniform(0, 1, (size, size)) < 0.35).astype(np.float32)
        strength = area * (0.2 + 0.15 * dots) if kind == "stubble" else area * 0.12 * (0.5 + dots)
        _blend(color, hair * 0.6 + 0.1, strength)
        return
    density = 0.75 + 0.25 * _value_noise(rng, (size, size), 2.0)
    texture = hair * (0.6 + 0.5 * rng.uniform(0, 1, (size, size)))[..., None]
    _blend(color, texture, area * density * 0.92)


def _draw_hair_front(
    overlay: np.ndarray,
    alpha: np.ndarray,
    identity: Identity,
    u: np.ndarray,
    v: np.ndarray,
    head: np.ndarray,
    px: float,
    rng: np.random.Generator,
) -> None:
    """The hair mass over the head, minus the face opening under the hairline (or fringe)."""
    style = HAIR_STYLES[identity.hair_style]
    i = identity
    outline = _hair_outline(i, u, v)
    hairline = i.hairline + 0.4 * u * u
    fringe_weight = 1.0 - _smoothstep(0.55, 0.85, np.abs(u))
    if style == "side-swept":
        sweep = -0.5 - 0.3 * (i.part_side * u + 0.45)
        hairline = hairline + (np.maximum(hairline, sweep) - hairline) * fringe_weight
    elif style == "bob":
        fringe = -0.56 + 0.012 * np.sin(u * 45.0)
        hairline = hairline + (np.maximum(hairline, fringe) - hairline) * fringe_weight
    elif style == "bald":
        hairline = np.full_like(u, 0.2)  # only a fringe of hair above the ears remains
    opening_width = i.head_width * 0.87
    if style in ("long", "bob"):
        opening_width = opening_width + 0.25 * _smoothstep(0.0, 1.3, v)  # the hair falls outwards
        bottom = 2.6 if style == "long" else 0.95
        outline = np.minimum(outline, _hair_curtain(i, u, v, bottom))
    else:
        outline = np.maximum(outline, v + 0.02 + 0.8 * (np.abs(u) - 0.8).clip(0))  # sides stop above the ears
    opening = -_smooth_min(v - hairline, opening_width - np.abs(u), 0.12)  # rounded temples
    if style in ("long", "bob"):
        # Below the cheekbones the hair hangs beside the jaw and behind the neck, not over the face.
        margin = 0.02 + 0.1 * (1.0 - _smoothstep(-0.1, 0.5, v))
        lower_face = np.maximum(head + margin, -0.2 - v)
        neck = np.maximum(np.abs(u) - 0.44, 0.3 - v)
        opening = np.minimum(opening, np.minimum(lower_face, neck))
    if style == "bald":
        opening = np.minimum(opening, np.maximum(np.abs(u) - 0.78, -0.45 - v))
    coverage = _fill(np.maximum(outline, -opening), 1.3 * px)
    if style in ("shaved", "bald"):
        coverage *= 0.55 + 0.25 * rng.uniform(0, 1, u.shape).astype(np.float32)
    texture = _hair_texture(i, u, v, rng)
    overlay += texture * coverage[..., None]
    alpha += coverage[..., None]


def _draw_glasses(
    overlay: np.ndarray, alpha: np.ndarray, identity: Identity, u: np.ndarray, v: np.ndarray, uf: np.ndarray, px: float
) -> None:
    """Frames (rims, bridge, temples), faintly tinted lenses and a reflection streak, above the eyes."""
    kind = GLASSES[identity.glasses]
    if kind == "none":
        return
    i = identity
    frame_color = np.array(i.glasses_color, np.float32)
    half = (0.22, 0.19) if kind == "round" else (0.23, 0.15)
    corner = 0.18 if kind == "round" else 0.05
    rim, lens = np.full_like(u, 1e3), np.full_like(u, 1e3)
    for side in (-1, 1):
        du, dv = np.abs(uf - side * i.eye_x) - half[0] + corner, np.abs(v - i.eye_y - 0.01) - half[1] + corner
        box = np.hypot(np.maximum(du, 0), np.maximum(dv, 0)) + np.minimum(np.maximum(du, dv), 0) - corner
        lens = np.minimum(lens, box)
        rim = np.minimum(rim, np.abs(box) - 0.018)
        temple = _segment(uf, v, (side * (i.eye_x + half[0]), i.eye_y - 0.06), (side * i.head_width, i.eye_y - 0.04))
        rim = np.minimum(rim, temple - 0.014)
    inner = i.eye_x - half[0]
    bridge = _segment(uf, v, (-inner, i.eye_y - 0.07), (inner, i.eye_y - 0.07)) - 0.014
    rim = np.minimum(rim, bridge)
    glass = _fill(lens, px) * 0.12
    streak = _line(uf + 0.7 * (v - i.eye_y) - 0.05 * np.sign(uf) - np.sign(uf) * i.eye_x, 0.03, px)
    glass_color = np.array([0.85, 0.9, 0.95], np.float32)
    cover = np.maximum(_fill(rim, px), glass + 0.18 * streak * _fill(lens, px))
    color = np.where((_fill(rim, px) > 0)[..., None], frame_color, glass_color)
    overlay *= (1.0 - cover)[..., None]
    overlay += color * cover[..., None]
    alpha *= (1.0 - cover)[..., None]
    alpha += cover[..., None]


# --------------------------------------------------------------------------------------------
# AU-driven features: drawn every render, each inside its own small window
# --------------------------------------------------------------------------------------------

_AUs = NamedTuple("_AUs", [(name.lower(), float) for name in AU_NAMES])  # a.au12, ...


class _MouthShape(NamedTuple):
    """Where the AUs put the lips, in face units relative to the neutral mouth line."""

    half_width: tuple[float, float]  # (image-left corner, image-right corner)
    corner_dy: tuple[float, float]  # corner height change, negative = up
    centre_dy: float
    open_up: float  # how far the upper lip lifts off the mouth line (centre)
    open_down: float  # how far the lower lip drops (centre), jaw included
    jaw: float  # how far the jaw (lower teeth, chin) drops
    flat: float  # 0: oval opening, 1: stretched rectangular opening (AU20)
    upper_thickness: float  # multipliers of the identity's lip thickness
    lower_thickness: float


def _dimple_weight(identity: Identity, a: _AUs, side: int) -> float:
    """AU14 acts fully on the identity's dimple side and weakly on the other (contempt is unilateral)."""
    return a.au14 * (1.0 if side == identity.dimple_side else 0.2)


def _mouth_shape(identity: Identity, a: _AUs) -> _MouthShape:
    width = identity.mouth_width * (
        1 + 0.2 * a.au12 + 0.26 * a.au20 - 0.12 * a.au23 - 0.12 * a.au26 * (1 - a.au20) - 0.05 * a.au17
    )
    widths, corners = [], []
    for side in (-1, 1):
        dimple = _dimple_weight(identity, a, side)
        widths.append(width * (1 - 0.06 * dimple))  # the dimpler pulls the corner in and up
        corners.append(-0.12 * a.au12 + 0.09 * a.au15 + 0.025 * a.au20 - 0.08 * dimple + 0.02 * a.au26 - 0.01 * a.au10)
    jaw = 0.24 * a.au26
    # A smile (AU12) stretches the parted lips: more teeth show for the same AU25.
    part = a.au25 * (1 + 1.2 * a.au12 + 0.5 * a.au20)
    return _MouthShape(
        half_width=(widths[0], widths[1]),
        corner_dy=(corners[0], corners[1]),
        centre_dy=-0.05 * a.au17 - 0.012 * a.au10,
        open_up=0.04 * part + 0.03 * a.au26 + 0.05 * a.au10,
        open_down=0.055 * part + jaw,
        jaw=jaw,
        flat=min(1.0, 0.9 * a.au20 + 0.5 * a.au10 + 0.4 * a.au12),
        upper_thickness=1 - 0.5 * a.au23 - 0.25 * a.au20 - 0.25 * a.au12 + 0.1 * a.au17,
        lower_thickness=1 - 0.45 * a.au23 - 0.25 * a.au20 - 0.15 * a.au12 + 0.25 * a.au17 + 0.1 * a.au15,
    )


def _warp_jaw(work: np.ndarray, static: _Static, win: _Window, identity: Identity, a: _AUs) -> None:
    """AU26 drops the jaw: move the lower-face skin down (a backward warp of the base)."""
    drop = 0.24 * a.au26
    lateral = _smoothstep(0.25, 0.8, np.abs(win.u))
    top = identity.mouth_y - 0.02 - 0.35 * lateral
    ramp = _smoothstep(0.0, 1.0, (win.v - top) / (0.12 + 0.3 * lateral))
    chin = _chin_y(identity) + drop
    fade = 1.0 - _smoothstep(chin + 0.02, chin + 0.75, win.v)
    sides = 1.0 - _smoothstep(0.7, 1.05, np.abs(win.u))
    shift = (drop * static.frame.s) * ramp * fade * sides  # pixels along the face's down axis
    rows = np.arange(win.rows.start, win.rows.stop, dtype=np.float32)[:, None]
    cols = np.arange(win.cols.start, win.cols.stop, dtype=np.float32)[None, :]
    source_y = rows - shift * static.frame.cos
    source_x = cols + shift * static.frame.sin
    work[win.rows, win.cols] = _bilinear(static.base, source_y, source_x)


def _bilinear(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sample image (h x w x 3) at fractional indices; integer positions return exact pixels."""
    height, width = image.shape[:2]
    y0 = np.clip(np.floor(y).astype(np.int64), 0, height - 2)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, width - 2)
    fy = np.clip(y - y0.astype(np.float32), 0.0, 1.0)[..., None]
    fx = np.clip(x - x0.astype(np.float32), 0.0, 1.0)[..., None]
    flat = image.reshape(-1, 3)
    index = y0 * width + x0  # flat gathers are several times faster than 2-D fancy indexing
    top = flat.take(index, axis=0) * (1.0 - fx) + flat.take(index + 1, axis=0) * fx
    bottom = flat.take(index + width, axis=0) * (1.0 - fx) + flat.take(index + width + 1, axis=0) * fx
    return top * (1.0 - fy) + bottom * fy


def _forehead_lines(work: np.ndarray, win: _Window, identity: Identity, a: _AUs, px: float) -> None:
    """AU01 creases the middle of the forehead, AU02 its sides; the lines ride up with the brows."""
    if a.au01 == 0 and a.au02 == 0:
        return
    x, y = win.uf, win.v
    ax = np.abs(x)
    centre = a.au01 * np.clip(1.0 - ax / 0.45, 0, 1)
    sides = a.au02 * np.clip((ax - 0.12) / 0.25, 0, 1) * np.clip((0.8 - ax) / 0.2, 0, 1)
    weight = centre + sides
    lift = 0.06 * a.au01 * np.clip(1.0 - ax / 0.6, 0, 1) + 0.05 * a.au02
    shade = np.ones_like(x)
    for k in range(3):
        line_y = _brow_y(identity) - 0.17 - 0.1 * k + 0.14 * ax * ax - lift + 0.008 * np.sin(x * 9.0 + k)
        shade -= 0.2 * weight * _line(y - line_y, 0.02, px)
        shade += 0.07 * weight * _line(y - line_y - 0.035, 0.02, px)
    _shade(work[win.rows, win.cols], shade)


def _glabella(work: np.ndarray, win: _Window, identity: Identity, a: _AUs, px: float) -> None:
    """AU04: vertical lines between the brows; AU09: creases across the root and sides of the nose."""
    if a.au04 == 0 and a.au09 == 0:
        return
    x, y = win.uf, win.v
    shade = np.ones_like(x)
    brow_y, eye_y = _brow_y(identity), identity.eye_y
    if a.au04:
        for side in (-1, 1):
            d = _segment(x, y, (side * 0.045, brow_y - 0.03), (side * 0.06, brow_y + 0.15))
            shade -= 0.28 * a.au04 * _line(d, 0.016, px)
            shade += 0.03 * a.au04 * _line(d - 0.03, 0.02, px)
    if a.au09:
        for k in range(2):  # short arcs across the root of the nose
            line_y = eye_y + 0.01 + 0.045 * k - 1.5 * x * x
            shade -= 0.25 * a.au09 * _line(y - line_y, 0.014, px) * np.clip(1.0 - np.abs(x) / 0.08, 0, 1)
        for side in (-1, 1):  # "bunny lines" down the sides of the nose
            for k in range(2):
                offset = 0.04 * k
                start, end = (0.06 + offset, eye_y + 0.06 + offset), (0.13 + offset, eye_y + 0.16 + offset)
                d = _segment(x * side, y, start, end)
                shade -= 0.25 * a.au09 * _line(d, 0.013, px)
    _shade(work[win.rows, win.cols], shade)


def _crows_feet(work: np.ndarray, win: _Window, side: int, identity: Identity, a: _AUs, px: float) -> None:
    """AU06 fans wrinkles out from the outer eye corner."""
    if a.au06 == 0:
        return
    x = (win.uf - side * identity.eye_x) * side
    y = win.v - identity.eye_y
    start = identity.eye_width + 0.06
    shade = np.ones_like(x)
    for angle in (-0.5, -0.1, 0.3, 0.65):
        end = (start + 0.13 * math.cos(angle), 0.01 + 0.13 * math.sin(angle))
        shade -= 0.2 * a.au06 * _line(_segment(x, y, (start, 0.01), end), 0.014, px)
    _shade(work[win.rows, win.cols], shade)


def _cheek(
    work: np.ndarray, win: _Window, side: int, identity: Identity, a: _AUs, mouth: _MouthShape, px: float
) -> None:
    """Cheek raise (AU06, AU12), nasolabial fold (deepened by AU09/10/12), dimple (AU14), AU15/AU20 creases."""
    i = identity
    x, y = win.uf * side, win.v  # x grows outwards on both sides
    shade = np.ones_like(x)
    raise_ = a.au06 + 0.5 * a.au12
    if raise_:
        lid = i.eye_y + i.lower_lid + 0.07
        d = y - (lid + 1.8 * (x - i.eye_x) ** 2 - 0.03 * raise_)
        shade -= 0.16 * raise_ * _line(d, 0.025, px) * np.clip(1.0 - np.abs(x - i.eye_x) / 0.24, 0, 1)
        bulge = np.clip(1.0 - ((x - 0.43) / 0.2) ** 2 - ((y - i.eye_y - 0.27 + 0.05 * raise_) / 0.13) ** 2, 0, 1)
        shade += 0.05 * raise_ * bulge
    corner_index = 0 if side < 0 else 1
    corner_x = mouth.half_width[corner_index]
    corner_y = i.mouth_y + mouth.corner_dy[corner_index]
    fold = 0.05 + 0.12 * i.age + 0.55 * a.au12 + 0.4 * a.au10 + 0.35 * a.au09 + 0.15 * a.au06 + 0.15 * a.au20
    top_x, top_y = i.nose_width + 0.04, i.nose_y - 0.03
    end_x, end_y = corner_x + 0.05, corner_y + 0.07
    along = np.clip((y - top_y) / (end_y - top_y), 0.0, 1.0)
    fold_x = top_x + (end_x - top_x) * along + 0.05 * np.sin(np.pi * along)
    ends = np.clip(along * 5.0, 0, 1) * np.clip((1.0 - along) * 3.0, 0, 1) * (y <= end_y + 0.02)
    shade -= fold * 0.32 * _line(x - fold_x, 0.022, px) * ends
    shade += fold * 0.1 * _line(x - fold_x - 0.05, 0.04, px) * ends
    dimple = _dimple_weight(i, a, side)
    if dimple:
        d = _segment(x, y, (corner_x + 0.03, corner_y - 0.06), (corner_x + 0.05, corner_y + 0.03))
        shade -= 0.45 * dimple * _line(d, 0.018, px)
        shade += 0.08 * dimple * _line(d - 0.045, 0.035, px)  # the skin bunches beside the crease
    if a.au15:
        d = _segment(x, y, (corner_x + 0.01, corner_y + 0.03), (corner_x + 0.05, corner_y + 0.17))
        shade -= 0.25 * a.au15 * _line(d, 0.018, px)
    if a.au20:
        d = _segment(x, y, (corner_x + 0.04, corner_y - 0.04), (corner_x + 0.045, corner_y + 0.05))
        shade -= 0.2 * a.au20 * _line(d, 0.018, px)
    _shade(work[win.rows, win.cols], shade)


def _eye(work: np.ndarray, win: _Window, side: int, identity: Identity, a: _AUs, light: float, px: float) -> None:
    """Eyeball, lids and lashes. AU05 lifts the upper lid, AU07/AU06 raise the lower, AU45 closes."""
    i = identity
    x = (win.uf - side * i.eye_x) * side  # grows towards the outer corner
    y = win.v - i.eye_y
    t = x * (1.0 / i.eye_width)
    inside = np.clip(1.0 - t * t, 0.0, 1.0)
    axis = -i.eye_tilt * t
    upper_height = i.eye_open * (1 + 0.6 * a.au05 - 0.32 * a.au07 - 0.2 * a.au06 - 0.12 * a.au04 - 0.1 * a.au09)
    lower_height = i.lower_lid * (1 - 0.55 * a.au07 - 0.5 * a.au06 - 0.2 * a.au09 + 0.1 * a.au05)
    open_upper = axis - upper_height * inside**0.7 * (1.0 - 0.12 * t)
    lower = axis + lower_height * inside**0.8 * (1.0 + 0.1 * t)
    upper = open_upper + a.au45 * (lower - open_upper)

    # Eyeball colours, then the lid opening cuts them out.
    radius = i.iris_radius
    r = np.hypot(x + 0.012, y + 0.008)
    color = np.empty((*x.shape, 3), np.float32)
    color[:] = np.array([0.93, 0.91, 0.88], np.float32) * light
    color *= (1.0 - 0.3 * (1.0 - inside))[..., None]
    iris = np.array(i.iris_color, np.float32) * light
    ring = 0.55 + 0.65 * np.clip(r / radius, 0, 1) - 0.6 * _smoothstep(0.78 * radius, radius, r)
    _blend(color, iris * ring[..., None], _fill(r - radius, px))
    _blend(color, (0.02, 0.02, 0.025), _fill(r - 0.4 * radius, px))
    hx, hy = -0.35 * radius * i.light[0], -0.35 * radius
    _blend(color, (1.0, 1.0, 1.0), 0.9 * _fill(np.hypot(x * side - hx, y - hy) - 0.24 * radius, px))
    color *= (0.55 + 0.45 * np.clip((y - upper) * (1.0 / 0.05), 0, 1))[..., None]  # shadow of the upper lid
    corners = _fill(np.abs(x) - i.eye_width, px)
    view = work[win.rows, win.cols]
    _blend(view, color, _band(y, upper, lower, px) * corners)

    crease_y = axis - (i.eye_open * (1 + 0.25 * a.au05) + i.crease + 0.015) * inside**0.6
    crease = (0.05 + 2.0 * i.crease) * (1 - 0.7 * a.au45) * (1 - 0.5 * a.au05)
    _shade(view, 1.0 - crease * _line(y - crease_y, 0.012, px) * np.clip(inside * 3, 0, 1))
    lash = 0.016 + 0.014 * np.clip(t + 0.5, 0, 1.5)
    reach = _fill(np.abs(x) - i.eye_width * 1.08, px)
    lash_color = np.array(i.brow_color, np.float32) * 0.25
    _blend(view, lash_color, 0.92 * _band(y, upper - lash, upper + 0.3 * px, px) * reach)
    _blend(view, lash_color, 0.3 * (1 - a.au45) * _band(y, lower, lower + 0.012, px) * corners)


def _brow(
    work: np.ndarray,
    win: _Window,
    side: int,
    identity: Identity,
    a: _AUs,
    grain: np.ndarray,
    light: float,
    px: float,
) -> None:
    """AU01 raises the inner end, AU02 the outer end, AU04 lowers and pulls the brows together."""
    i = identity
    x, y = win.uf * side, win.v
    inner = i.brow_inner - 0.045 * a.au04
    outer = i.brow_outer - 0.015 * a.au04
    t = (x - inner) * (1.0 / (outer - inner))
    along = np.clip(t, 0.0, 1.0)
    y_inner = _brow_y(i) + 0.015 - 0.13 * a.au01 + 0.11 * a.au04 + 0.035 * a.au09
    y_outer = _brow_y(i) + 0.02 - 0.1 * a.au02 + 0.045 * a.au04 - 0.02 * a.au01
    arch = i.brow_arch + 0.035 * a.au02 - 0.02 * a.au01 - 0.012 * a.au04
    peak = along**0.8
    centre = y_inner + (y_outer - y_inner) * along - 4.0 * arch * peak * (1.0 - peak)
    half = 0.5 * i.brow_thickness * (1.15 - 0.5 * along) * np.sqrt(np.clip((1.0 - t) * 6.0, 0.0, 1.0))
    start = np.clip(0.5 + (x - inner) * (0.5 / px), 0.0, 1.0)  # soft inner end, two pixels wide
    coverage = _band(y, centre - half, centre + half, px) * start
    density = 0.55 + 0.45 * grain[win.rows, win.cols]
    _blend(work[win.rows, win.cols], np.array(i.brow_color, np.float32) * light, coverage * density)


def _nose(work: np.ndarray, win: _Window, identity: Identity, a: _AUs, light: float, px: float) -> None:
    """Alae and nostrils; AU09 (and a little AU10) lifts and flares them."""
    i = identity
    x = win.uf - 0.2 * _yaw_shift(i)  # the nose tip sticks out: yaw moves it further
    y = win.v
    lift = -0.03 * a.au09 - 0.012 * a.au10
    flare = 1.0 + 0.12 * a.au09 + 0.05 * a.au10
    base_y = i.nose_y + lift
    view = work[win.rows, win.cols]
    shade = np.ones_like(x)
    nostril = np.full_like(x, 1e3)
    for side in (-1, 1):
        centre = (side * (i.nose_width * flare - 0.04), base_y + 0.015)
        ala = _ellipse(x, y, centre, (0.05 * flare, 0.055))
        outer_top = np.clip(0.5 + (side * (x - centre[0]) + centre[1] - y) * (1.0 / 0.04), 0, 1)
        shade -= 0.28 * _line(ala, 0.012, px) * outer_top  # the crease around the nostril wing
        shade -= 0.06 * _fill(ala, px)
        nostril = np.minimum(nostril, _ellipse(x, y, (side * 0.052 * flare, base_y + 0.048), (0.032 * flare, 0.015)))
    _shade(view, shade)
    _blend(view, np.array(i.skin, np.float32) * 0.25 * light, 0.9 * _fill(nostril, px))


def _chin(work: np.ndarray, win: _Window, identity: Identity, a: _AUs, grain: np.ndarray, px: float) -> None:
    """AU17 pushes the chin boss up: a pitted 'orange peel' texture and a deeper crease under the lip."""
    if a.au17 == 0:
        return
    i = identity
    x, y = win.uf, win.v
    centre = _chin_y(i) - 0.2 - 0.035 * a.au17
    boss = np.clip(1.0 - (x / 0.22) ** 2 - ((y - centre) / 0.13) ** 2, 0, 1)
    pits = np.clip(grain[win.rows, win.cols] - 0.55, 0, None)
    shade = 1.0 - 0.5 * a.au17 * boss * pits + 0.1 * a.au17 * boss
    crease_y = i.mouth_y + i.lower_lip + 0.09 - 0.04 * a.au17 + 0.3 * x * x
    shade -= 0.3 * a.au17 * _line(y - crease_y, 0.03, px) * np.clip(1.0 - np.abs(x) / 0.25, 0, 1)
    _shade(work[win.rows, win.cols], shade)


def _mouth(
    work: np.ndarray,
    win: _Window,
    identity: Identity,
    mouth: _MouthShape,
    grain: np.ndarray,
    light: float,
    px: float,
) -> None:
    """Lips, the dark mouth interior, teeth and tongue, then the moustache."""
    i = identity
    x, y = win.uf, win.v - i.mouth_y
    right = x >= 0
    half_width = np.where(right, mouth.half_width[1], mouth.half_width[0])
    t = x / half_width
    tt = np.minimum(t * t, 1.0)
    inside = 1.0 - tt
    line = np.where(right, mouth.corner_dy[1], mouth.corner_dy[0]) * tt + mouth.centre_dy * inside
    oval = np.sqrt(inside)
    profile = oval + mouth.flat * (np.sqrt(1.0 - tt * tt) - oval)
    top = line - mouth.open_up * profile  # bottom edge of the upper lip
    bottom = line + mouth.open_down * profile  # top edge of the lower lip
    at = np.abs(t)
    bow = 1.0 - 0.3 * np.clip(1.0 - at / 0.13, 0, 1) + 0.15 * np.clip(1.0 - np.abs(at - 0.25) / 0.2, 0, 1)
    upper_top = top - i.upper_lip * mouth.upper_thickness * inside**0.6 * bow  # Cupid's bow
    lower_bottom = bottom + i.lower_lip * mouth.lower_thickness * inside**0.5
    corners = _fill(np.abs(x) - half_width, px)
    view = work[win.rows, win.cols]

    # Shadow cast by the lower lip on the chin.
    _shade(view, 1.0 - 0.22 * _line(y - lower_bottom - 0.045, 0.035, px) * oval)

    # Interior: dark cavity, tongue, lower teeth (on the jaw), upper teeth (on the skull).
    skin_light = np.float32(light)
    interior = np.empty((*x.shape, 3), np.float32)
    interior[:] = np.array([0.2, 0.06, 0.06], np.float32) * skin_light
    tongue = _ellipse(x, y, (0.0, mouth.jaw + 0.085), (0.17, 0.07))
    _blend(interior, np.array([0.62, 0.27, 0.27], np.float32) * skin_light, _fill(tongue, px))
    teeth_shade = np.clip(1.0 - 0.6 * (x / 0.26) ** 2, 0.2, 1.0)
    gaps = np.abs(x / 0.056 - np.round(x / 0.056)) * 0.056
    teeth_color = np.array([0.93, 0.9, 0.83], np.float32) * skin_light
    lower_teeth = _band(y, 0.7 * mouth.jaw + 0.035 - 0.06 * (x / 0.22) ** 2, mouth.jaw + 0.15, px)
    _blend(interior, teeth_color * (0.75 * teeth_shade)[..., None], lower_teeth * _fill(np.abs(x) - 0.2, px))
    upper_teeth = _band(y, -0.08, 0.055 - 0.07 * (x / 0.24) ** 2, px) * _fill(np.abs(x) - 0.24, px)
    tooth = teeth_color * (teeth_shade * (1.0 - 0.35 * _line(gaps, 0.006, px)))[..., None]
    _blend(interior, tooth, upper_teeth)
    interior *= (0.55 + 0.45 * np.clip((y - top) * (1.0 / 0.04), 0, 1))[..., None]  # shade under the lip
    closed_line = 0.55 + 0.45 * np.clip(mouth.open_up + mouth.open_down, 0, 0.02) / 0.02
    _blend(view, interior, _band(y, top - 0.45 * px, bottom + 0.45 * px, px) * corners * closed_line)

    lip = np.array(i.lip_color, np.float32) * skin_light
    _blend(view, lip * 0.8, _band(y, upper_top, top, px) * corners)
    gloss = _line(y - bottom - 0.35 * i.lower_lip * mouth.lower_thickness, 0.03, px) * inside
    lower_color = lip * (1.0 + 0.25 * gloss)[..., None]
    _blend(view, lower_color, _band(y, bottom, lower_bottom, px) * corners)

    if FACIAL_HAIR[i.facial_hair] in ("moustache", "goatee", "beard"):
        wide = x / (half_width + 0.05)
        reach = _fill(np.abs(wide) - 1.0, px)
        thickness = 0.085 * (1.0 - 0.5 * np.minimum(wide * wide, 1.0))
        hair = _band(y, upper_top - thickness, upper_top + 0.01, px) * reach
        density = 0.6 + 0.4 * grain[win.rows, win.cols]
        _blend(view, np.array(i.hair_color, np.float32) * 0.85 * light, hair * density)


def _draw_expression(work: np.ndarray, static: _Static, identity: Identity, a: _AUs) -> None:
    """Draw every AU-driven feature into the dynamic region `work` (a copy of the static base)."""
    windows, px, light = static.windows, static.px, static.light
    mouth = _mouth_shape(identity, a)
    if a.au26:
        _warp_jaw(work, static, windows["jaw"], identity, a)
    _forehead_lines(work, windows["forehead"], identity, a, px)
    _glabella(work, windows["glabella"], identity, a, px)
    _chin(work, windows["chin"], identity, a, static.grain, px)
    for side, name in ((-1, "left"), (1, "right")):
        _cheek(work, windows[f"cheek_{name}"], side, identity, a, mouth, px)
        _crows_feet(work, windows[f"crow_{name}"], side, identity, a, px)
        _eye(work, windows[f"eye_{name}"], side, identity, a, light[f"eye_{name}"], px)
        _brow(work, windows[f"brow_{name}"], side, identity, a, static.grain, light[f"brow_{name}"], px)
    _nose(work, windows["nose"], identity, a, light["nose"], px)
    _mouth(work, windows["mouth"], identity, mouth, static.grain, light["mouth"], px)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def render(identity: Identity | int, aus: AUSpec, size: int = 128) -> Image.Image:
    """Render `identity` (or an identity seed) with the given AUs as a size x size RGB image.

    aus: 17 intensities in [0, 1] in OpenFace order (wemgan.aus.AU_NAMES), a dict such as
    {"AU12": 0.8} (unnamed AUs are 0) or a preset name ("Happy"). Deterministic: the same
    inputs give identical pixels in every run and process.
    """
    identity = _as_identity(identity)
    vector = au_vector(aus)
    static = _static_layers(identity, _check_size(size))
    work = static.base.copy()
    _draw_expression(work, static, identity, _AUs(*vector.tolist()))
    pixels = static.canvas.copy()
    pixels[static.rows, static.cols] = _to_uint8(work * (1.0 - static.overlay_alpha) + static.overlay)
    return Image.fromarray(pixels, "RGB")


def paired(
    identity: Identity | int, source_aus: AUSpec, target_aus: AUSpec, size: int = 128
) -> tuple[Image.Image, Image.Image]:
    """The same identity with the source and with the target AUs: an edit and its exact ground truth."""
    return render(identity, source_aus, size), render(identity, target_aus, size)


def _as_identity(identity: Identity | int) -> Identity:
    if isinstance(identity, Identity):
        return identity
    if isinstance(identity, int | np.integer) and not isinstance(identity, bool):
        return sample_identity(int(identity))
    raise ValueError(f"identity must be an Identity (see sample_identity) or an integer seed, got {identity!r}")


def landmarks(identity: Identity | int, size: int = 128) -> dict[str, tuple[float, float]]:
    """Pixel positions (x, y) of the neutral face's key points, for region masks and crops.

    Keys: eye_left, eye_right (image left/right), brow_left, brow_right, glabella, nose_tip,
    mouth_left, mouth_right, mouth_centre, chin, forehead, cheek_left, cheek_right;
    plus "scale": (pixels per face unit, 0), the size of one face unit (about half the head width).
    """
    i = _as_identity(identity)
    frame = _frame(i, _check_size(size))
    shift = _yaw_shift(i)

    def point(u: float, v: float) -> tuple[float, float]:
        return frame.to_pixels(u + shift * float(_depth(i, u, v)), v)

    points = {
        "glabella": point(0.0, _brow_y(i) + 0.05),
        "nose_tip": point(0.0, i.nose_y),
        "mouth_centre": point(0.0, i.mouth_y),
        "chin": point(0.0, _chin_y(i) - 0.1),
        "forehead": point(0.0, _brow_y(i) - 0.3),
    }
    for side, name in ((-1, "left"), (1, "right")):
        points[f"eye_{name}"] = point(side * i.eye_x, i.eye_y)
        points[f"brow_{name}"] = point(side * 0.5 * (i.brow_inner + i.brow_outer), _brow_y(i))
        points[f"mouth_{name}"] = point(side * i.mouth_width, i.mouth_y)
        points[f"cheek_{name}"] = point(side * 0.45, 0.5 * (i.eye_y + i.mouth_y))
    points["scale"] = (frame.s, 0.0)
    return points


# --------------------------------------------------------------------------------------------
# Contact sheets
# --------------------------------------------------------------------------------------------


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _grid(
    cells: list[list[Image.Image]], column_labels: Sequence[str], row_labels: Sequence[str], cell: int
) -> Image.Image:
    """Images in a grid with a header row and a label column, white background."""
    font = _font(max(10, cell // 9))
    label_width = max(int(font.getlength(label)) for label in row_labels) + 12 if row_labels else 0
    header = cell // 6
    sheet = Image.new("RGB", (label_width + cell * len(column_labels), header + cell * len(cells)), "white")
    draw = ImageDraw.Draw(sheet)
    for column, label in enumerate(column_labels):  # header: one label centred over each column
        x = label_width + column * cell + (cell - font.getlength(label)) / 2
        draw.text((x, header * 0.15), label, fill="black", font=font)
    for row, (images, label) in enumerate(zip(cells, row_labels, strict=True)):
        y = header + row * cell
        draw.text((6, y + (cell - getattr(font, "size", 11)) / 2), label, fill="black", font=font)
        for column, image in enumerate(images):
            sheet.paste(image.resize((cell, cell), Image.NEAREST), (label_width + column * cell, y))
    return sheet


def expression_sheet(identities: Sequence[Identity | int], size: int = 128, cell: int = 128) -> Image.Image:
    """Identities (rows) x the eight expression presets (columns), labelled."""
    rows = [[render(identity, preset, size) for preset in EXPRESSIONS] for identity in identities]
    labels = [f"#{_as_identity(identity).seed}" for identity in identities]
    return _grid(rows, list(EXPRESSIONS), labels, cell)


def au_sweep_sheet(
    identity: Identity | int,
    intensities: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    size: int = 128,
    zoom: int = 2,
) -> Image.Image:
    """Each AU alone swept over `intensities` (rows: AUs, columns: intensity), labelled.

    Cells are the face (brows to chin) cropped from the size x size render and enlarged
    `zoom` times with nearest neighbours, so every pixel of the render stays visible.
    """

    identity = _as_identity(identity)
    frame = _frame(identity, _check_size(size))
    side = round(2.4 * frame.s)
    cx, cy = frame.to_pixels(0.0, 0.36)
    left = min(max(0, round(cx - side / 2)), size - side)
    top = min(max(0, round(cy - side / 2)), size - side)
    box = (left, top, left + side, top + side)
    rows = [[render(identity, {name: value}, size).crop(box) for value in intensities] for name in AU_NAMES]
    labels = [f"{name} {AU_DESCRIPTIONS[name]}" for name in AU_NAMES]
    return _grid(rows, [f"{value:g}" for value in intensities], labels, side * zoom)


# --------------------------------------------------------------------------------------------
# Samples and datasets
# --------------------------------------------------------------------------------------------

EXPRESSION_NAMES: tuple[str, ...] = tuple(EXPRESSIONS)  # the ClassLabel names, in order
_EMOTIONS = tuple(name for name in EXPRESSIONS if name != "Neutral")
# Prior over faces: neutral, a preset with noisy intensities, or a few random AUs.
P_NEUTRAL, P_PRESET = 0.15, 0.55


class SynthSample(NamedTuple):
    image: Image.Image
    aus: np.ndarray  # float32[17] in [0, 1], OpenFace order
    identity: int  # the identity seed
    expression: str | None  # preset name, or None for random AUs


def sample_aus(rng: np.random.Generator) -> tuple[np.ndarray, str | None]:
    """Draw AUs from the SynthFACS prior; returns (float32[17], preset name or None).

    15% neutral ("Neutral"), 55% an expression preset of wemgan.aus.EXPRESSIONS at a random
    overall strength with per-AU noise (sometimes plus a weak stray AU, as in real faces),
    30% one to four random AUs at random intensities (None).
    """
    draw = rng.uniform()
    if draw < P_NEUTRAL:
        return np.zeros(NUM_AUS, np.float32), "Neutral"
    if draw < P_NEUTRAL + P_PRESET:
        name = _EMOTIONS[int(rng.integers(len(_EMOTIONS)))]
        preset = EXPRESSIONS[name]
        aus = preset * rng.uniform(0.5, 1.3) + rng.normal(0, 0.08, NUM_AUS) * (preset > 0)
        if rng.uniform() < 0.3:
            aus[int(rng.integers(NUM_AUS))] += rng.uniform(0.0, 0.3)
        return np.clip(aus, 0.0, 1.0).astype(np.float32), name
    aus = np.zeros(NUM_AUS, np.float32)
    count = int(rng.integers(1, 5))
    aus[rng.choice(NUM_AUS, count, replace=False)] = rng.uniform(0.1, 1.0, count)
    return aus, None


def identity_seed(split: str, identity_index: int, seed: int = 0) -> int:
    """The identity seed of the `identity_index`-th identity of a split.

    train: seed * 2_000_000 + identity_index; test: seed * 2_000_000 + 1_000_000 + identity_index.
    The ranges never overlap, so no test identity is ever seen in training (for any seed).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    index = _check_index(identity_index, "identity_index")
    if index >= IDENTITIES_PER_SPLIT:
        raise ValueError(f"identity_index must be below {IDENTITIES_PER_SPLIT} (keeps splits disjoint), got {index}")
    return (
        _check_index(seed, "seed") * len(SPLITS) * IDENTITIES_PER_SPLIT
        + SPLITS.index(split) * IDENTITIES_PER_SPLIT
        + index
    )


def _check_index(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def make_sample(split: str, identity_index: int, sample_index: int, seed: int = 0, *, size: int = 128) -> SynthSample:
    """The `sample_index`-th face of the `identity_index`-th identity of a split; deterministic."""
    identity = identity_seed(split, identity_index, seed)
    rng = np.random.default_rng([identity, _STREAM_SAMPLE, _check_index(sample_index, "sample_index")])
    aus, expression = sample_aus(rng)
    return SynthSample(render(sample_identity(identity), aus, size), aus, identity, expression)


def dataset_features() -> datasets.Features:
    """The dataset schema shared with the real-data loader."""
    import datasets

    return datasets.Features(
        {
            "image": datasets.Image(),
            "aus": datasets.Sequence(datasets.Value("float32"), length=NUM_AUS),
            "identity": datasets.Value("int64"),
            "expression": datasets.ClassLabel(names=list(EXPRESSION_NAMES)),
        }
    )


def build_dataset(
    n_identities: int,
    per_identity: int,
    seed: int = 0,
    split: str = "train",
    *,
    size: int = 128,
    progress: bool | Callable[[int], None] = False,
) -> datasets.Dataset:
    """n_identities x per_identity SynthFACS samples as a datasets.Dataset (see dataset_features).

    expression is the preset's class index, or -1 for faces drawn with random AUs.
    progress: True for a tqdm bar, or a callable told how many rows were added.
    """
    import datasets

    n_identities = _check_index(n_identities, "n_identities")
    per_identity = _check_index(per_identity, "per_identity")
    if n_identities * per_identity == 0:
        raise ValueError(
            f"a dataset needs at least one row: got {n_identities} identities x {per_identity} per identity"
        )
    _check_size(size)
    update, close = _progress(progress, n_identities * per_identity, split)
    features = dataset_features()
    chunks, rows = [], _empty_rows()
    try:
        for identity_index in range(n_identities):
            for sample_index in range(per_identity):
                sample = make_sample(split, identity_index, sample_index, seed, size=size)
                rows["image"].append(sample.image)
                rows["aus"].append(sample.aus.tolist())
                rows["identity"].append(sample.identity)
                rows["expression"].append(
                    -1 if sample.expression is None else EXPRESSION_NAMES.index(sample.expression)
                )
                update(1)
                if len(rows["image"]) == 512:  # encode as we go: decoded images would fill memory
                    chunks.append(datasets.Dataset.from_dict(rows, features=features))
                    rows = _empty_rows()
    finally:
        close()
    if rows["image"]:
        chunks.append(datasets.Dataset.from_dict(rows, features=features))
    dataset = chunks[0] if len(chunks) == 1 else datasets.concatenate_datasets(chunks)
    return dataset


def _empty_rows() -> dict[str, list]:
    return {"image": [], "aus": [], "identity": [], "expression": []}


def _progress(
    progress: bool | Callable[[int], None], total: int, label: str
) -> tuple[Callable[[int], object], Callable[[], object]]:
    """(update, close) for a tqdm bar, a caller's callback, or nothing."""
    if callable(progress):
        return progress, lambda: None
    if not progress:
        return (lambda n: None), (lambda: None)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"SynthFACS {label}", unit="img")
    return bar.update, bar.close


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m wemgan.data.synthetic",
        description="Render a SynthFACS dataset (train/test DatasetDict, save_to_disk) and contact sheets.",
    )
    parser.add_argument("--out", help="dataset folder to write (must not exist unless --overwrite)")
    parser.add_argument("--identities", type=int, default=100, help="train identities")
    parser.add_argument("--per-identity", type=int, default=10, help="faces per identity")
    parser.add_argument("--test-identities", type=int, default=None, help="test identities (default: 10%%, >= 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (multiple of 4, >= 64)")
    parser.add_argument("--contact-sheet", help="PNG: train identities x the eight expression presets")
    parser.add_argument("--au-sheet", help="PNG: each AU swept from 0 to 1 on the first sheet identity")
    parser.add_argument(
        "--sheet-identities", type=int, nargs="+", default=list(range(6)), help="train identity indices for the sheets"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    args = parser.parse_args(argv)
    if not (args.out or args.contact_sheet or args.au_sheet):
        parser.error("nothing to do: give --out and/or --contact-sheet / --au-sheet")
    if args.out and os.path.exists(args.out) and not args.overwrite:
        parser.error(f"--out {args.out} exists; pass --overwrite to replace it")
    for name in ("identities", "per_identity", "test_identities", "seed"):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    if args.test_identities is None:
        args.test_identities = max(1, round(args.identities * 0.1))
    if args.out and (args.per_identity < 1 or args.identities + args.test_identities < 1):
        parser.error("--out needs --per-identity >= 1 and at least one train or test identity")
    try:
        _check_size(args.size)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(args: argparse.Namespace) -> None:
    if args.out:
        import datasets

        splits = {"train": args.identities, "test": args.test_identities}
        built = {
            split: build_dataset(count, args.per_identity, args.seed, split, size=args.size, progress=True)
            for split, count in splits.items()
            if count
        }
        _save_atomically(datasets.DatasetDict(built), args.out, args.overwrite)
        print(f"wrote {args.out}: " + ", ".join(f"{split} {len(ds)} rows" for split, ds in built.items()))
    shown = [identity_seed("train", index, args.seed) for index in args.sheet_identities]
    if args.contact_sheet:
        _save_image(expression_sheet(shown, args.size), args.contact_sheet)
        print(f"wrote {args.contact_sheet}")
    if args.au_sheet:
        _save_image(au_sweep_sheet(shown[0], size=args.size), args.au_sheet)
        print(f"wrote {args.au_sheet}")


def _save_atomically(dataset: datasets.DatasetDict, out: str, overwrite: bool) -> None:
    """save_to_disk into a temporary sibling folder, then rename: never a half-written dataset."""
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".synthfacs-", dir=parent)
    try:
        dataset.save_to_disk(staging)
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; a dataset is not
        if os.path.exists(out):
            if not overwrite:
                raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
            old = tempfile.mkdtemp(prefix=".synthfacs-old-", dir=parent)
            os.replace(out, os.path.join(old, "dataset"))
            os.replace(staging, out)
            shutil.rmtree(old)
        else:
            os.replace(staging, out)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)


def _save_image(image: Image.Image, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, staging = tempfile.mkstemp(suffix=".png", dir=directory)
    os.close(handle)
    try:
        image.save(staging, format="PNG", optimize=True)
        os.chmod(staging, 0o666 & ~_umask())  # mkstemp makes it private
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


if __name__ == "__main__":
    main(parse_args())
