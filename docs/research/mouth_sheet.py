"""Models' mouths side by side on held-out faces-au test faces, at 3x, for a person to judge.

    python docs/research/mouth_sheet.py editor=hub/default candidate=hub/renderer-candidate-composed ... \\
        --data ../shared/data/faces-au --out mouths.png

Rows: each test face (the first --faces of the realism split's edited half, as the evaluation
cuts it), one row per model. Columns: the face; Happy; Surprise; transfer from the test face that
laughs most (most_showing Happy) at strength 1.5. Each tile is the realism test's mouth crop
(metrics/realism.MOUTH_BOX), so the sheet shows what that test's mouth score judges.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from wemgan import WEMGAN
from wemgan.aus import EXPRESSIONS
from wemgan.edit_evaluation import realism_split
from wemgan.evaluate import load_test_data
from wemgan.metrics.realism import most_showing, mouth_crops
from wemgan.metrics.reconstruction import to_uint8

ZOOM = 3
LABEL = 14  # px above each row for its model's name


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", metavar="NAME=FOLDER")
    p.add_argument("--data", required=True)
    p.add_argument("--faces", type=int, default=8)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args()


def edits(model: WEMGAN, faces: list[np.ndarray], laughing: np.ndarray) -> list[np.ndarray]:
    """The columns for one model: N x H x W x 3 each."""
    return [
        np.stack(faces),
        np.stack(model.edit(faces, aus="Happy")),
        np.stack(model.edit(faces, aus="Surprise")),
        np.stack(model.edit(faces, reference=[laughing] * len(faces), strength=1.5)),
    ]


def main(args: argparse.Namespace) -> None:
    images, aus, _ = load_test_data(args.data, "test", None, 128)
    first, _, pool = realism_split(len(images), 192)
    faces = list(to_uint8(images[first[: args.faces]]))
    laughing = to_uint8(images[pool[most_showing(aus[pool], EXPRESSIONS["Happy"], 1)]])[0]
    columns = {}
    for spec in args.models:
        name, _, folder = spec.partition("=")
        columns[name] = [mouth_crops(c) for c in edits(WEMGAN.from_pretrained(folder).eval(), faces, laughing)]
    rows = []
    for face in range(args.faces):
        for name, model_columns in columns.items():
            strip = np.concatenate([c[face] for c in model_columns], 1)
            tile = Image.fromarray(strip).resize((strip.shape[1] * ZOOM, strip.shape[0] * ZOOM), Image.LANCZOS)
            row = Image.new("RGB", (tile.width, tile.height + LABEL), "white")
            row.paste(tile, (0, LABEL))
            ImageDraw.Draw(row).text((2, 1), f"face {face}: {name}", fill="black")
            rows.append(np.asarray(row))
    Image.fromarray(np.concatenate(rows, 0)).save(args.out)
    print(f"wrote {args.out}: columns face, Happy, Surprise, transfer from a laughing face at 1.5")


if __name__ == "__main__":
    main(parse_args())
