"""Which AUs keep a transfer far from its reference in the independent judge's reading?

    python docs/research/judge_parts.py --model hub/default --data ../shared/data/faces-au

On the evaluation's pairs (`--limit 500`, first 128 faces, seed 0): the judge's transfer ratio at
three strengths, and per AU the judge's mean squared distance to the reference before and after
the transfer, its share of what is left, and how far the judge's reading moved toward the
reference (slope of moved on wanted; 1 = all the way).
"""

from __future__ import annotations

import argparse

import numpy as np

from wemgan import WEMGAN
from wemgan.aus import AU_NAMES
from wemgan.edit_evaluation import judge_readings
from wemgan.evaluate import load_test_data, make_pairs
from wemgan.metrics import to_uint8


def main(args: argparse.Namespace) -> None:
    images, _, _ = load_test_data(args.data, "test", 500, 128)
    targets = make_pairs(len(images), 0)
    crops = to_uint8(images)
    sources, references = crops[:128], crops[np.asarray(targets[:128])]
    model = WEMGAN.from_pretrained(args.model)
    judged_source, judged_reference = judge_readings(sources), judge_readings(references)
    unedited = np.linalg.norm(judged_source - judged_reference, axis=1).mean()
    readings = {}
    for strength in (0.75, 1.0, 1.5):
        edits = model.edit(list(sources), reference=list(references), strength=strength)
        readings[strength] = judge_readings(np.stack([np.asarray(edit) for edit in edits]))
        ratio = np.linalg.norm(readings[strength] - judged_reference, axis=1).mean() / unedited
        print(f"strength {strength}: judge transfer ratio {ratio:.3f}")
    judged_edit = readings[1.0]
    left = np.mean((judged_edit - judged_reference) ** 2, 0)
    print("| AU | unedited sq. distance | edit sq. distance | share of what is left | moved / wanted |")
    print("|---|---:|---:|---:|---:|")
    for j, name in enumerate(AU_NAMES):
        wanted, moved = judged_reference[:, j] - judged_source[:, j], judged_edit[:, j] - judged_source[:, j]
        before = np.mean((judged_source[:, j] - judged_reference[:, j]) ** 2)
        share, followed = left[j] / left.sum(), wanted @ moved / (wanted @ wanted)
        print(f"| {name} | {before:.4f} | {left[j]:.4f} | {share:.2f} | {followed:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    main(parser.parse_args())
