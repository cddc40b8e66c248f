"""Average Content Distance (Table 3): L2 between dlib's 128-D face-recognition embeddings of input and edit.

The embedding is dlib's ResNet (`dlib_face_recognition_resnet_model_v1.dat` from
face_recognition_models, the network behind the `face_recognition` package that GANimation
and FGGAN used). It needs the face's 5 landmarks, found inside a face box: dlib's HOG
detector on the 128 crop (upsampled once: its window is 80 px), else TEMPLATE_BOX. The input's
box is used for the edit too, so both embeddings see the same region. Same person ~0.06-0.16,
different people ~0.5-1.0. About 60 ms per face on one CPU core.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .. import faces

RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
# Where dlib's HOG detector puts the face box on a training crop, as fractions of the side:
# the median box on 60 faces-au test crops (128 x 128) was (8, 8, 115, 116), spread 3-7 px.
TEMPLATE_BOX = (0.0625, 0.0625, 0.9, 0.906)


def acd_unavailable() -> str | None:
    """Why ACD cannot be computed (the `faces` extra or its recognition model is missing), or None."""
    return faces.model_unavailable(RECOGNITION_MODEL, "ACD")


@functools.cache
def _recognizer() -> Any:
    import dlib

    return dlib.face_recognition_model_v1(str(faces.model_file(RECOGNITION_MODEL, "ACD")))


def face_box(image: np.ndarray) -> Any:
    """The largest HOG detection on an H x W x 3 uint8 crop, else the template box (a dlib.rectangle)."""
    import dlib

    found = list(faces.hog_detector()(np.ascontiguousarray(image), 1))
    if found:
        return max(found, key=lambda box: box.area())
    height, width = image.shape[:2]
    left, top, right, bottom = TEMPLATE_BOX
    return dlib.rectangle(round(left * width), round(top * height), round(right * width), round(bottom * height))


def embedding(image: np.ndarray, box: Any) -> np.ndarray:
    """dlib's 128-D face descriptor of the face in `box` of an H x W x 3 uint8 image."""
    image = np.ascontiguousarray(image)
    return np.array(_recognizer().compute_face_descriptor(image, faces.landmark_model()(image, box)))


def content_distances(sources: np.ndarray, edits: np.ndarray) -> np.ndarray:
    """Per pair ||f(source) - f(edit)||_2 of two N x H x W x 3 uint8 batches."""
    if sources.shape != edits.shape:
        raise ValueError(f"sources {sources.shape} and edits {edits.shape} differ in shape")
    distances = []
    for source, edit in zip(sources, edits, strict=True):
        box = face_box(source)
        distances.append(np.linalg.norm(embedding(source, box) - embedding(edit, box)))
    return np.array(distances)
