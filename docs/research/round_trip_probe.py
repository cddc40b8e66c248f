"""Is the editor's warp spotted for the shape it gives a face, or for what resampling does to texture?

    python docs/research/round_trip_probe.py --model hub/default --data ../shared/data/faces-au --aus Happy Surprise

The realism test (wemgan/metrics/realism.py) on the editor's warp alone (no drawn mouth, no skin
shading), against real faces of other people, two ways: "there", the faces moved to the preset;
"round trip", moved there and back (LandmarkEditor.round_trip: the source's own shape, with the
blur and squeeze of both legs' resampling kept). A round trip spotted as often as the edit would
mean the texture gives the warp away; one at chance, that the shape does. Splits as
realism_probe.py's (--faces a side, --split-seed); source AUs are the labels; one thread.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from wemgan import WEMGAN
from wemgan.aus import EXPRESSIONS
from wemgan.edit_evaluation import realism_split
from wemgan.evaluate import load_test_data
from wemgan.metrics import realism as R
from wemgan.metrics.reconstruction import to_uint8


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hub/default", help="a model folder with a landmark editor")
    p.add_argument("--data", required=True, help="faces-au folder")
    p.add_argument("--aus", nargs="+", default=["Happy", "Surprise"], choices=list(EXPRESSIONS), help="presets")
    p.add_argument("--faces", type=int, default=384, help="faces a side")
    p.add_argument("--split-seed", type=int, default=1, help="how the test faces are cut (0: as the evaluation)")
    return p.parse_args()


def accuracies(edited: torch.Tensor | np.ndarray, real: np.ndarray) -> str:
    images = edited if isinstance(edited, np.ndarray) else to_uint8(edited)
    score = R.realism(images, real)
    return f"face {score['face']['accuracy']:.3f} mouth {score['mouth']['accuracy']:.3f}"


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    editor = WEMGAN.from_pretrained(args.model).eval().editor
    if editor is None:
        raise SystemExit(f"{args.model} has no landmark editor: give a folder like hub/default")
    editor.mouth_cavity, editor.appearance = False, False  # the warp alone
    images, aus, _ = load_test_data(args.data, "test", None, 128)
    first, second, pool = realism_split(len(images), args.faces, args.split_seed)
    faces, real = images[first], to_uint8(images[second])
    print(f"control, real faces against real faces: {accuracies(to_uint8(images[pool[: len(first)]]), real)}")
    source = torch.as_tensor(np.array(aus[first]), dtype=torch.float32)
    with torch.no_grad():
        landmarks = editor.landmark_regressor(faces).float()
    for name in args.aus:
        target = torch.tensor(EXPRESSIONS[name], dtype=torch.float32).expand_as(source)
        with torch.no_grad():  # the edits; the classifiers below train
            moves = editor.landmark_moves(landmarks, target - source)
            there, _ = editor.move(faces, landmarks, moves)
            back = editor.round_trip(faces, landmarks, moves)
        print(f"{name}, warp there: {accuracies(there, real)}", flush=True)
        print(f"{name}, round trip: {accuracies(back, real)}", flush=True)


if __name__ == "__main__":
    main(parse_args())
