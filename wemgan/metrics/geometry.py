"""Landmark geometry of an edit: did the mouth, brows and lids move as the AUs asked?

An AU regressor can be fooled by colour and texture; dlib's 68-point shape predictor (an
ensemble of regression trees on pixel-intensity differences, trained on iBUG 300-W, that no
generator here was trained against) measures where the lips, brows and lids are. Four
measures, each divided by the inter-ocular distance (IOD, between the eye centres = means
of points 36-41 and 42-47, 0-based iBUG indexing) and positive meaning "more of it":

    lip_corner_lift  mean y of inner-lip centres 62, 66 − mean y of corners 48, 54 (y grows
                     downwards: rising corners raise it); AU12 raises, AU15 lowers
    mouth_opening    |p62 − p66|, the inner lips' gap; AU25, AU26
    brow_height      mean y of the eye points 36-47 − mean y of the brow points 17-26;
                     AU01, AU02 raise, AU04 lowers
    eye_opening      mean over both eyes of the vertical lid distances |p37 − p41|,
                     |p38 − p40| (|p43 − p47|, |p44 − p46|); AU05 raises, AU06, AU07, AU45 lower

`following` scores a transfer: how much of the reference's difference from the source in each
measure the edit reproduces. `geometry_changes` measures source and edit in the same face box (the source's, found as
`acd.face_box` finds it), so the edit cannot move the frame. What size of change is a real
one: `natural_effects()`, the difference of each measure's mean between faces-au training
faces that show an AU (label >= 0.6) and faces that do not (label <= 0.1), written by

    python -m wemgan.metrics.geometry calibrate --data ../shared/data/faces-au \\
        --out wemgan/metrics/calibration.json    # --cache-folder DIR: a decoded uint8 cache, faster

About 9 ms per face on one CPU core (HOG box on the upsampled crop + 68 landmarks).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import faces
from ..aus import AU_NAMES
from ..data.datasets import load_training_data
from .acd import face_box

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
MEASURES = ("lip_corner_lift", "mouth_opening", "brow_height", "eye_opening")
AU_MEASURE: dict[str, str] = {
    "AU01": "brow_height",
    "AU02": "brow_height",
    "AU04": "brow_height",
    "AU05": "eye_opening",
    "AU06": "eye_opening",
    "AU07": "eye_opening",
    "AU45": "eye_opening",
    "AU12": "lip_corner_lift",
    "AU15": "lip_corner_lift",
    "AU25": "mouth_opening",
    "AU26": "mouth_opening",
}
# An AU whose labels in faces-au do not move its measure is judged by another AU's effect on it:
# the 62 faces OpenFace labels AU26 >= 0.6 open their lips 0.003 IOD wider than the rest (their
# jaws are not dropped), so a jaw drop is judged by how far real lips part (AU25: 0.18 IOD).
EFFECT_OF = {"AU26": "AU25"}
# A face shows an AU at a label of at least SHOWN and does not at most ABSENT ([0, 1] scale,
# OpenFace's 3 and 0.5 of 5): the gap keeps borderline labels out of both groups.
SHOWN, ABSENT = 0.6, 0.1


def geometry_unavailable() -> str | None:
    """Why landmarks cannot be measured (dlib or the 68-point model is missing), or None."""
    return faces.model_unavailable(LANDMARK_MODEL, "landmark geometry")


@functools.cache
def _predictor() -> Any:
    import dlib

    return dlib.shape_predictor(str(faces.model_file(LANDMARK_MODEL, "landmark geometry")))


def landmarks68(images: np.ndarray, boxes: Sequence[Any] | None = None) -> np.ndarray:
    """N x 68 x 2 (x, y) pixel positions of dlib's 68 landmarks on N x H x W x 3 uint8 images.

    boxes: one dlib.rectangle per image; default each image's own `acd.face_box` (the largest
    HOG detection on the crop upsampled once, else the template box of a training crop).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected N x H x W x 3 uint8 images, got {images.shape} {images.dtype}")
    if boxes is not None and len(boxes) != len(images):
        raise ValueError(f"got {len(boxes)} boxes for {len(images)} images")
    predictor = _predictor()
    points = np.empty((len(images), 68, 2))
    for index, image in enumerate(images):
        image = np.ascontiguousarray(image)  # dlib misreads strided arrays
        box = face_box(image) if boxes is None else boxes[index]
        points[index] = [(p.x, p.y) for p in predictor(image, box).parts()]
    return points


def geometry_measures(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """The four measures (see the module docstring) of N x 68 x 2 landmarks, each an N array in IODs."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim == 2:
        points = points[None]
    if points.shape[1:] != (68, 2):
        raise ValueError(f"expected N x 68 x 2 landmarks, got shape {np.shape(landmarks)}")
    y = points[..., 1]
    right_eye, left_eye = points[:, 36:42].mean(1), points[:, 42:48].mean(1)
    iod = np.linalg.norm(left_eye - right_eye, axis=1)

    def lid_gap(upper: int, lower: int) -> np.ndarray:
        return np.linalg.norm(points[:, upper] - points[:, lower], axis=1)

    eye_gap = (lid_gap(37, 41) + lid_gap(38, 40) + lid_gap(43, 47) + lid_gap(44, 46)) / 4
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "lip_corner_lift": ((y[:, 62] + y[:, 66]) / 2 - (y[:, 48] + y[:, 54]) / 2) / iod,
            "mouth_opening": lid_gap(62, 66) / iod,
            "brow_height": (y[:, 36:48].mean(1) - y[:, 17:27].mean(1)) / iod,
            "eye_opening": eye_gap / iod,
        }


def geometry_changes(sources: np.ndarray, edits: np.ndarray) -> dict[str, np.ndarray]:
    """Per pair edit − source of each measure (N arrays, in IODs), both measured in the source's face box."""
    sources, edits = np.asarray(sources), np.asarray(edits)
    if sources.shape != edits.shape:
        raise ValueError(f"sources {sources.shape} and edits {edits.shape} differ in shape")
    boxes = [face_box(np.ascontiguousarray(source)) for source in sources]
    before = geometry_measures(landmarks68(sources, boxes))
    after = geometry_measures(landmarks68(edits, boxes))
    return {name: after[name] - before[name] for name in MEASURES}


def following(sources: np.ndarray, references: np.ndarray, edits: np.ndarray) -> dict[str, float]:
    """How much of each measure's difference between reference and source a transfer reproduces: the
    least-squares slope, over the pairs, of the edit's change (geometry_changes) on reference − source
    (each face in its own face box): 1 = all of it, 0 = none; NaN without two finite pairs."""
    changes = geometry_changes(sources, edits)
    before, reference = (geometry_measures(landmarks68(np.asarray(faces))) for faces in (sources, references))
    slopes = {}
    for name in MEASURES:
        wanted, got = reference[name] - before[name], changes[name]
        usable = np.isfinite(wanted) & np.isfinite(got)
        wanted, got = wanted[usable], got[usable]
        slopes[name] = float(wanted @ got / (wanted @ wanted)) if usable.sum() >= 2 and wanted.any() else float("nan")
    return slopes


def natural_effects() -> dict[str, dict]:
    """Per AU of AU_MEASURE, the packaged calibration on real faces (calibration.json).

    Each entry: measure, effect (mean with the AU shown − mean without, in IODs, signed),
    mean_shown, mean_absent, n_shown, n_absent, sd_shown, sd_absent. An edit's geometry
    change divided by its AU's effect says how much of a real AU's movement it made.

    An effect is only as good as faces-au's labels (OpenFace run on the photos) and its
    count: the 62 faces labelled AU26 >= 0.6 mostly have closed mouths, so AU26's entry is
    AU25's (EFFECT_OF; its own stays in the file), and AU45 (7 faces), AU15 (18) and AU02 (32)
    rest on few faces.
    """
    measured = json.loads(CALIBRATION_FILE.read_text(encoding="utf-8"))["effects"]
    return {name: {**measured[EFFECT_OF.get(name, name)], "measure": measured[name]["measure"]} for name in measured}


# ------------------------------------------------------------------------------ calibration
def load_train_faces(data: str, cache_folder: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(N x 128 x 128 x 3 uint8 images, memory-mapped where possible; N x 17 AUs) of the train split."""
    if cache_folder:
        folder = Path(cache_folder)
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if tuple(meta.get("au_names", AU_NAMES)) != AU_NAMES:
            raise ValueError(f"{folder} holds AUs in another order: {meta['au_names']}")
        return np.load(folder / "images.npy", mmap_mode="r"), np.load(folder / "aus.npy")

    dataset = load_training_data(data, "train", image_format="uint8")
    samples = [dataset[index] for index in range(len(dataset))]
    images = np.stack([np.asarray(sample["image"]).transpose(1, 2, 0) for sample in samples])
    return images, np.stack([np.asarray(sample["aus"]) for sample in samples])


def _choose(aus: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Rows to measure: all, or `limit` random ones (fixed seed) plus every face showing a calibrated AU."""
    if limit is None or limit >= len(aus):
        return np.arange(len(aus))
    columns = [AU_NAMES.index(name) for name in AU_MEASURE]
    shown = np.flatnonzero((aus[:, columns] >= SHOWN).any(1))
    drawn = np.random.default_rng(seed).choice(len(aus), size=limit, replace=False)
    return np.union1d(drawn, shown)


def calibrate(data: str, cache_folder: str | None = None, limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Measure the train faces and return the calibration (what calibration.json holds)."""
    images, aus = load_train_faces(data, cache_folder)
    rows = _choose(aus, limit, seed)
    started = time.perf_counter()
    points, fallbacks = np.empty((len(rows), 68, 2)), 0
    for count, row in enumerate(rows):
        image = np.ascontiguousarray(images[row])
        found = list(faces.hog_detector()(image, 1))  # what face_box does, counting its fallbacks
        box = max(found, key=lambda rect: rect.area()) if found else face_box(image)
        fallbacks += not found
        points[count] = landmarks68(image[None], [box])[0]
        if count % 2000 == 0:
            print(f"{count}/{len(rows)} faces, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    seconds = time.perf_counter() - started
    measures = geometry_measures(points)
    labels = aus[rows]
    effects = {}
    for name, measure in AU_MEASURE.items():
        column, values = labels[:, AU_NAMES.index(name)], measures[measure]
        shown, absent = values[column >= SHOWN], values[column <= ABSENT]
        effects[name] = {
            "measure": measure,
            "effect": _round(shown.mean() - absent.mean()),
            "mean_shown": _round(shown.mean()),
            "mean_absent": _round(absent.mean()),
            "n_shown": len(shown),
            "n_absent": len(absent),
            "sd_shown": _round(shown.std()),
            "sd_absent": _round(absent.std()),
        }
    subset = (
        "all train faces"
        if len(rows) == len(aus)
        else (
            f"{limit} random train faces (numpy default_rng({seed})) plus every face with a label >= {SHOWN} "
            "for an AU of AU_MEASURE"
        )
    )
    return {
        "about": (
            f"Natural effect of an AU on its landmark measure (in inter-ocular distances): mean on faces with "
            f"the AU's label >= {SHOWN} minus mean on faces with label <= {ABSENT}; dlib 68 landmarks in the "
            "acd.face_box of each 128 crop. Written by python -m wemgan.metrics.geometry calibrate."
        ),
        "data": data if not Path(data).is_absolute() else Path(data).name,
        "split": "train",
        "faces": len(rows),
        "of": len(aus),
        "subset": subset,
        "no_face_found_template_box_used": int(fallbacks),
        "seconds": round(seconds),
        "effects": effects,
    }


def _round(value: float) -> float:
    return round(float(value), 5)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wemgan.metrics.geometry", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("calibrate", help="natural effect of each AU on its measure, from real faces")
    command.add_argument(
        "--data", required=True, help="the faces-au parquet folder (recorded as given: keep it relative)"
    )
    command.add_argument("--cache-folder", help="a decoded uint8 cache of the train split (images.npy, aus.npy)")
    command.add_argument("--limit", type=int, help="measure this many random faces plus every face showing an AU")
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    print(write_packaged_json(args.out, calibrate(args.data, args.cache_folder, args.limit, args.seed)))


def write_packaged_json(path: Path, data: Any) -> str:
    """Write `data` as indented JSON to a file shipped in the package: under a temporary name, then
    renamed (never half-written), readable by all (NamedTemporaryFile makes it private). Returns the text."""
    text = json.dumps(data, indent=2) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)
    return text


if __name__ == "__main__":
    main()
