"""Compare trained Renderers (train_accelerate.py --objective render) on held-out faces-au faces.

    python docs/research/renderer_trials.py NAME=RUN_DIR ... --data ../shared/data/faces-au --out DIR

For each run's newest renderer (RUN/renderer, or its newest checkpoint's renderer/):
- masked reconstruction: the mouth (own landmarks, 4 px margin) blanked and redrawn; masked L1;
- realism of those redrawn mouths against real faces of other people (metrics/realism.py, mouth crop);
- the same for both eyes with their brow bands (realism of the whole face);
- the shipped editor with this renderer composed (hub/export.py --editor --renderer): Happy and
  Surprise, realism (face and mouth) against real faces of other people, and the editor alone beside;
- a 2x sheet: source | blanked | redrawn | eyes redrawn | editor Happy | editor+renderer Happy |
  editor Surprise | editor+renderer Surprise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wemgan import WEMGAN
from wemgan.evaluate import load_test_data
from wemgan.export import newest_part
from wemgan.metrics.realism import realism
from wemgan.metrics.reconstruction import to_uint8
from wemgan.render_masks import brow_band_masks, eye_masks, mouth_mask

ROOT = Path(__file__).resolve().parents[2]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    p.add_argument("--data", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--faces", type=int, default=192, help="faces a side for realism (2x this are read)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    return p.parse_args()


def composed(folder: Path, out: Path) -> WEMGAN:
    """hub/default's editor and estimator with this renderer, through hub/export.py."""
    command = [sys.executable, str(ROOT / "hub/export.py"), "--editor", "--regressor", str(ROOT / "hub/default"),
               "--estimator", str(ROOT / "hub/default"), "--motion-strength", "0.75", "--renderer", str(folder),
               "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return WEMGAN.from_pretrained(out)


def main(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    images, _, _ = load_test_data(args.data, "test", None, 128)
    order = np.random.default_rng(0).permutation(len(images))[: 2 * args.faces]
    first, second = images[order[: args.faces]], images[order[args.faces :]]
    real_other = to_uint8(second)
    sources = to_uint8(first)
    shipped = WEMGAN.from_pretrained(ROOT / "hub/default")
    editor_only = {name: np.stack(shipped.edit(list(sources), aus=name)) for name in ("Happy", "Surprise")}
    rows, sheets = {}, []
    rows["editor alone"] = {f"{name} {region}": realism(editor_only[name], real_other, tuple(args.seeds))[region]
                            ["accuracy"] for name in editor_only for region in ("face", "mouth")}  # fmt: skip
    for spec in args.runs:
        name, _, run = spec.partition("=")
        folder = newest_part(run, "renderer")
        model = composed(folder, args.out / f"model-{name}")
        with torch.no_grad():
            landmarks = model.editor.landmark_regressor(first).float()
            mask = mouth_mask(landmarks, 128, 4.0)
            own_aus = model.au_estimator(first).float()
            redrawn = model.renderer(first, mask, landmarks, own_aus)
            eyes = torch.stack([*eye_masks(landmarks, 128), *brow_band_masks(landmarks, 128)]).amax(0)
            eyes_redrawn = to_uint8(model.renderer(first, eyes, landmarks, own_aus))
        l1 = float(((redrawn - first).abs() * mask).sum() / (mask.sum() * 3))
        redrawn_u8 = to_uint8(redrawn)
        edits = {n: np.stack(model.edit(list(sources), aus=n)) for n in ("Happy", "Surprise")}
        row = {"masked L1": l1, "steps": json.loads((folder / "config.json").read_text()).get("steps")}
        row["redrawn mouth"] = realism(redrawn_u8, real_other, tuple(args.seeds))["mouth"]["accuracy"]
        row["redrawn eyes"] = realism(eyes_redrawn, real_other, tuple(args.seeds))["face"]["accuracy"]
        for n, edited in edits.items():
            scores = realism(edited, real_other, tuple(args.seeds))
            row |= {f"{n} face": scores["face"]["accuracy"], f"{n} mouth": scores["mouth"]["accuracy"]}
        rows[name] = row
        blanked = to_uint8(first * (1 - mask))
        columns = [sources, blanked, redrawn_u8, eyes_redrawn, editor_only["Happy"], edits["Happy"],
                   editor_only["Surprise"], edits["Surprise"]]  # fmt: skip
        sheet = np.concatenate([np.concatenate([c[i] for c in columns], 1) for i in range(8)], 0)
        sheets.append((name, Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.NEAREST)))
    for name, sheet in sheets:
        sheet.save(args.out / f"sheet-{name}.jpg", quality=85)
    keys = sorted({k for row in rows.values() for k in row})
    lines = ["| run | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, row in rows.items():
        cells = [f"{row[k]:.3f}" if isinstance(row.get(k), float) else str(row.get(k, "")) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(parse_args())
