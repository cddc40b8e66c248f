"""Where does a model's Happy put the mouth, against where real smiles have it?

    python docs/research/smile_geometry.py editor=hub/default half=hub/default:strength=0.5 \\
        --data ../shared/data/faces-au

Real smiles: the mean dlib landmarks (template box) of faces-au train faces labelled with a
smile (AU12 >= 0.6 and AU06 >= 0.4; lips closed or slightly apart, AU25 <= 0.5, and open,
AU25 > 0.5) minus those of neutral train faces (AU12, AU25 < 0.05, AU26 < 0.1). Edits: the
model's Happy on neutral test faces, read by the same landmarks, minus the faces' own. Both in
the eye frame (origin between the eye centres, x along the eye line, y down, units of the
inter-ocular distance, IOD), per landmark group; y < 0 is up. Also the depth of the lower lip's U
(its middle below its corners). Landmarking the train split takes about a minute on one core.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from realism_probe import load  # NAME=FOLDER[:OPTION,...] (this script's folder is on sys.path)

from wemgan.aus import AU_NAMES
from wemgan.evaluate import load_test_data
from wemgan.landmark_fit import eye_frame_shapes, landmark_labels
from wemgan.metrics.geometry import load_train_faces
from wemgan.metrics.reconstruction import to_uint8

COLUMNS = {  # name: (landmarks averaged, coordinate: 0 = x outward from the face's middle, 1 = y)
    "corners y": ((48, 54), 1),
    "corners out": ((48, 54), 0),
    "upper lip y": ((51,), 1),
    "inner upper y": ((62,), 1),
    "inner lower y": ((66,), 1),
    "lower lip y": ((57,), 1),
    "chin y": ((8,), 1),
}


def summary(change: np.ndarray) -> dict[str, float]:
    """The COLUMNS and the lower lip's U depth of a mean 68 x 2 landmark change."""
    row = {}
    for name, (points, axis) in COLUMNS.items():
        if axis == 0:  # outward: the left corner's +x and the right corner's -x
            row[name] = float((change[54, 0] - change[48, 0]) / 2)
        else:
            row[name] = float(change[list(points), 1].mean())
    row["U deeper by"] = float(change[57, 1] - change[[48, 54], 1].mean())
    return row


def shapes_of(images: np.ndarray) -> np.ndarray:
    """dlib's landmarks of N uint8 crops in the eye frame (IODs)."""
    return eye_frame_shapes(landmark_labels(images).astype(np.float64))


def label(aus: np.ndarray, name: str) -> np.ndarray:
    return aus[:, AU_NAMES.index(name)]


def neutral(aus: np.ndarray) -> np.ndarray:
    return (label(aus, "AU12") < 0.05) & (label(aus, "AU25") < 0.05) & (label(aus, "AU26") < 0.1)


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    images, aus = load_train_faces(args.data, args.cache_folder)
    shapes = shapes_of(images)
    rest = shapes[neutral(aus)].mean(0)
    smiling = (label(aus, "AU12") >= 0.6) & (label(aus, "AU06") >= 0.4)
    rows = {}
    for name, chosen in (("closed", label(aus, "AU25") <= 0.5), ("open", label(aus, "AU25") > 0.5)):
        group = smiling & chosen
        rows[f"real smiles, {name} ({int(group.sum())})"] = summary(shapes[group].mean(0) - rest)
    test, test_aus, _ = load_test_data(args.data, "test", None, 128)
    sources = to_uint8(test[np.flatnonzero(neutral(test_aus))[: args.faces]])
    before = shapes_of(sources)
    for spec in args.models:
        name, model = load(spec)
        edited = np.stack(model.edit(list(sources), aus="Happy"))
        rows[f"{name} Happy ({len(sources)})"] = summary((shapes_of(edited) - before).mean(0))
    header = list(next(iter(rows.values())))
    print("| change, IOD | " + " | ".join(header) + " |")
    print("|---|" + "---:|" * len(header))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[column]:+.3f}" for column in header) + " |")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="NAME=FOLDER[:OPTION,...] as realism_probe.py")
    p.add_argument("--data", required=True, help="the faces-au parquet folder")
    p.add_argument("--cache-folder", help="a decoded uint8 cache of the train split (images.npy, aus.npy)")
    p.add_argument("--faces", type=int, default=96, help="neutral test faces to edit")
    return p.parse_args()


if __name__ == "__main__":
    main(parse_args())
