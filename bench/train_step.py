"""Training throughput: samples/s and model FLOP utilisation of the WEM-GAN training step.

    python bench/train_step.py                         # paper + cpu preset, fp32 + bf16, batch 16, this CPU
    python bench/train_step.py --presets paper --cycles 20   # on a GPU

One cycle = n_critic critic steps (D_I + D_H with gradient penalties, AU estimator) and
one generator step, exactly as train_accelerate.py runs them (same functions). FLOPs per
sample are counted with torch's per-op FLOP formulas over one cycle (forward, backward and the
gradient penalty's double backward) and divided by the samples the critics see.
MFU = achieved FLOP/s ÷ the peak of a large matmul measured in the same run.
Each (preset, precision) runs in a fresh process: Accelerate's state is per process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["paper", "cpu"], choices=["paper", "cpu"])
    parser.add_argument("--precisions", nargs="+", default=["no", "bf16"], choices=["no", "bf16", "fp16"])
    parser.add_argument("--batch", type=int, default=16, help="per step (the paper's 16; bf16 gains less at 4)")
    parser.add_argument("--cycles", type=int, default=2, help="timed cycles (after one warm-up cycle)")
    parser.add_argument("--one", nargs=2, metavar=("PRESET", "PRECISION"), help=argparse.SUPPRESS)
    return parser.parse_args()


class FlopCount(TorchDispatchMode):
    """Sums FLOPs with torch's own per-op formulas (flop_registry). FlopCounterMode itself
    cannot be used here: its module tracker breaks autograd.grad, which the gradient penalty needs."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.flops += count(*args, **kwargs, out_val=out)
        return out


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int = 4096) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    start, reps = time.perf_counter(), 5 if device.type == "cpu" else 50
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_one(preset: str, precision: str, batch: int, cycles: int) -> dict:
    from accelerate import Accelerator

    import train_accelerate as ta
    from wemgan.losses import LossWeights

    args = ta.parse_args(["--preset", preset])
    accelerator = Accelerator(mixed_precision=precision)
    nets = ta.build_networks(args)
    optimizers = {name: torch.optim.Adam(net.parameters(), 1e-4, betas=(0.5, 0.999)) for name, net in nets.items()}
    prepared = accelerator.prepare(*nets.values(), *optimizers.values())
    nets = dict(zip(nets, prepared[: len(nets)], strict=True))
    optimizers = dict(zip(optimizers, prepared[len(nets) :], strict=True))
    device, weights = accelerator.device, LossWeights()
    x = torch.rand(batch, 3, 128, 128, device=device) * 2 - 1
    u_x = torch.rand(batch, 17, device=device)
    u_y = u_x.roll(1, 0)
    rng = torch.Generator(device=device).manual_seed(0)

    def cycle() -> None:
        for _ in range(args.n_critic):
            ta.critic_step(accelerator, nets, optimizers, x, u_x, u_y - u_x, weights, rng)
        ta.generator_step(accelerator, nets, optimizers, x, u_y - u_x, u_y, weights)

    with FlopCount() as counter:
        cycle()  # also the warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(cycles):
        cycle()
    _sync(device)
    seconds = (time.perf_counter() - start) / cycles
    samples = args.n_critic * batch
    dtype = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    peak = matmul_tflops(device, dtype)
    flops = counter.flops / samples
    return {
        "preset": preset, "precision": precision, "batch": batch, "device": str(device),
        "samples_per_s": samples / seconds, "gflop_per_sample": flops / 1e9,
        "peak_tflops": peak, "mfu": flops * samples / seconds / (peak * 1e12),
    }  # fmt: skip


def main(args: argparse.Namespace) -> None:
    if args.one:
        preset, precision = args.one
        print(json.dumps(run_one(preset, precision, args.batch, args.cycles)))
        return
    rows = []
    for preset in args.presets:
        for precision in args.precisions:
            cmd = [sys.executable, __file__, "--one", preset, precision, "--cycles", str(args.cycles)]
            cmd += ["--batch", str(args.batch)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"device: {rows[0]['device']}, threads {torch.get_num_threads()}")
    print("| preset | precision | batch | samples/s | GFLOP/sample | peak TFLOP/s | MFU | speed-up vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        base = next((r for r in rows if r["preset"] == row["preset"] and r["precision"] == "no"), None)
        speed_up = f"{row['samples_per_s'] / base['samples_per_s']:.2f}x" if base else "- (no fp32 row)"
        print(
            f"| {row['preset']} | {row['precision']} | {row['batch']} | {row['samples_per_s']:.2f} "
            f"| {row['gflop_per_sample']:.1f} | {row['peak_tflops']:.2f} | {row['mfu']:.1%} | {speed_up} |"
        )
    if torch.cuda.is_available():
        paper = [r for r in rows if r["preset"] == "paper"]
        if paper:
            best = max(r["samples_per_s"] for r in paper)
            print(f"paper schedule (10 M samples through D) at {best:.0f} samples/s: {1e7 / best / 3600:.2f} h")


if __name__ == "__main__":
    main(parse_args())
