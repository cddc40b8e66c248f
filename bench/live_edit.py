"""The app's live sliders: time from a slider event to the image, on a 1000 px photo.

    python bench/live_edit.py                        # hub/default, the example portrait at 1000 px
    python bench/live_edit.py --model DIR --photo PATH --side 1000

A slider move in the Edit tab calls Demo.edit_live: the photo was searched, aligned and read
once when it was opened (WEMGAN.prepare, cached per photo), so a move runs the generator on
the chosen face's crop and pastes the change back into the photo; gradio then encodes the
result as PNG for the browser. Rows, medians of --repeats calls after warm-up:

- reference: WEMGAN.edit(photo), the whole pipeline a move would cost without the cache
  (decode, detect, align, AU estimate, generate, paste back), measured in the same run;
- generator: one 128x128 crop through G (and G(x, 0) is cached, not run);
- live edit: Demo.edit_live (generator + paste-back + conversion);
- slider event -> PNG: Demo.edit_live + gradio's PNG postprocessing of the result, i.e. what
  the server spends per move (the browser's download and decode of a ~1 MB PNG on the same
  machine add a few ms).

Target on a 2-core CPU: slider event -> PNG <= 150 ms, generator <= 40 ms per crop.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import torch
from PIL import Image

from wemgan import AU_NAMES, EXPRESSIONS, WEMGAN
from wemgan.demo import PHOTOS, Demo

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "hub" / "default"), help="model folder or Hub id")
    parser.add_argument("--photo", type=Path, default=PHOTOS / "grace_hopper.jpg", help="a one-face photo")
    parser.add_argument("--side", type=int, default=1000, help="the photo is resized to this long side (px)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per row (median is reported)")
    return parser.parse_args()


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main(args: argparse.Namespace) -> None:
    model = WEMGAN.from_pretrained(args.model)
    with Image.open(args.photo) as image:
        scale = args.side / max(image.size)
        photo = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    folder = Path(tempfile.mkdtemp(prefix="wemgan-bench-"))
    path = folder / "photo.png"
    photo.save(path)
    demo = Demo(model)
    own = demo.read_aus(str(path))  # opens the photo: detection, alignment and AU reading, once
    happy = [float(value) for value in EXPRESSIONS["Happy"]]
    moves = iter(range(10**9))

    def move() -> str:  # alternate between two slider positions so every call really edits
        return demo.edit_live(str(path), "1", *(happy if next(moves) % 2 else own))

    output = gr.Image(type="filepath")  # the Edit tab's result component
    png = gr.Image(type="pil", format="png")
    prepared = demo.photos.get(path)
    crop, aus = prepared.crops[:1], prepared.aus[:1]
    with torch.inference_mode():
        rows = {
            "reference: WEMGAN.edit(photo), no cache": median_ms(lambda: model.edit(photo, aus="Happy"), args.repeats),
            "model's networks, one crop": median_ms(lambda: model.edit_crops(crop, -aus, aus), args.repeats),
            "live edit + JPEG: Demo.edit_live": median_ms(move, args.repeats),
            "slider event -> image (edit_live + gradio postprocess)": median_ms(
                lambda: output.postprocess(move()), args.repeats
            ),
            "for comparison: the same as gradio's PNG": median_ms(
                lambda: png.postprocess(demo._edit(str(path), "1", dict(zip(AU_NAMES, happy, strict=True)))),
                args.repeats,
            ),
        }
    reference = next(iter(rows.values()))
    print(f"{args.photo.name} at {photo.width}x{photo.height}, model {Path(args.model).name}, "
          f"{torch.get_num_threads()} threads, {len(AU_NAMES)} AU sliders")  # fmt: skip
    print("| step | ms (median) | x reference |")
    print("|---|---|---|")
    for name, ms in rows.items():
        print(f"| {name} | {ms:.1f} | {ms / reference:.2f} |")


if __name__ == "__main__":
    main(parse_args())
