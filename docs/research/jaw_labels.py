"""Does AU26 (jaw drop) in faces-au's labels, or in a model's AU reading, say how far a jaw is open?

    python docs/research/jaw_labels.py --data ../shared/data/faces-au --model hub/default

Prints, for the train faces, the gap between the inner lips (dlib, in inter-ocular distances)
and the chin's height in the eye frame by AU26 label band, with the lips' AU25 label low or high;
the percentiles of the gap; and, on the test faces, how the model's AU25 and AU26 readings
correlate with the gap (the readings that a transfer's or a preset's jaw motion follows).
"""

from __future__ import annotations

import argparse

import numpy as np

from wemgan import WEMGAN
from wemgan.aus import AU_NAMES
from wemgan.evaluate import load_test_data
from wemgan.landmark_fit import eye_frame_shapes, landmark_labels, mouth_openness
from wemgan.metrics.geometry import load_train_faces
from wemgan.metrics.reconstruction import to_uint8

BANDS = [(0.0, 0.1), (0.1, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 1.01)]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True, help="a model folder whose AU reader is checked")
    return p.parse_args()


def main(args: argparse.Namespace) -> None:
    images, aus = load_train_faces(args.data, None)
    points = landmark_labels(images)
    gap, chin = mouth_openness(points), eye_frame_shapes(points.astype(np.float64))[:, 8, 1]
    au25, au26 = aus[:, AU_NAMES.index("AU25")], aus[:, AU_NAMES.index("AU26")]
    print("| AU26 label | AU25 | faces | inner-lip gap (IOD) | share with gap > 0.15 | chin y (IOD) |")
    print("|---|---|---:|---:|---:|---:|")
    for low, high in BANDS:
        for lips, (a, b) in (("≤ 0.1", (0.0, 0.1)), ("≥ 0.5", (0.5, 1.01))):
            rows = (au26 >= low) & (au26 < high) & (au25 >= a) & (au25 < b)
            if rows.sum() >= 5:
                print(f"| {low:.1f}–{min(high, 1):.1f} | {lips} | {rows.sum()} | {gap[rows].mean():.3f} "
                      f"| {np.mean(gap[rows] > 0.15):.2f} | {chin[rows].mean():.3f} |")  # fmt: skip
    print("gap percentiles 50/90/99/99.5:", np.percentile(gap, [50, 90, 99, 99.5]).round(3))

    test_images, _, _ = load_test_data(args.data, "test", None, 128)
    crops = to_uint8(test_images)
    model = WEMGAN.from_pretrained(args.model).eval()
    readings = []
    for start in range(0, len(crops), 128):
        readings += model.estimate_aus(list(crops[start : start + 128]), align=False)
    test_gap = mouth_openness(landmark_labels(crops))
    for name in ("AU25", "AU26"):
        values = np.array([reading[name] for reading in readings])
        r = np.corrcoef(values, test_gap)[0, 1]
        print(f"{args.model} reads {name} on {len(crops)} test faces: mean {values.mean():.3f}, "
              f"sd {values.std():.3f}, r with the gap {r:.2f}")  # fmt: skip


if __name__ == "__main__":
    main(parse_args())
