"""Generator inference speed against the machine's FLOP floor, measured in the same run.

    python bench/inference.py                   # paper + small config, batch 1 and 8
    python bench/inference.py --no-compile      # eager rows only (saves ~2 min of compiling)

The floor is the time the generator's FLOPs would take at the speed of a large matmul
(fp32 and bf16) on this machine right now; "x floor" = measured / floor, so 1.0 means the
network runs as fast as dense matrix multiplication. Targets (2-core CPU, paper config):
fp32 within 1.3x of the fp32 floor; a bf16 path within 2x of the bf16 floor whose output
stays within PSNR >= 40 dB of fp32.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from wemgan.generator import Generator

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


def main(args: argparse.Namespace) -> None:
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


if __name__ == "__main__":
    main(parse_args())
