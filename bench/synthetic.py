"""SynthFACS rendering speed on one core: warm (cached identity) and cold (new identity).

    taskset -c 0 python bench/synthetic.py              # 128 px, all rows
    taskset -c 0 python bench/synthetic.py --size 256 --images 200

Rows:
- warm, prior AUs: one identity (its static layers cached), a new expression from the
  training prior (sample_aus) each image: the on-the-fly training case.
- warm, all 17 AUs: the same with every AU drawn uniformly in [0, 1] (the slowest expressions).
- make_sample, 64 identities: the data pipeline's call, cycling through 64 identities
  (all fit in the cache: identity sampling + render).
- cold: a new identity every image (identity sampling + static layers + render).
Target: >= 300 images/s warm on one core at 128x128. Each row reports the median and the
best of --repeats runs (the CPU is shared, so the best run is the closest to the machine).
numpy is limited to one thread through the usual environment variables (the renderer uses
no BLAS, so this only guards against surprises); pin the process with taskset for one core.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from wemgan.data import synthetic  # noqa: E402

TARGET_WARM = 300.0  # images/s, one core, 128 px


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=400, help="images per timed run (warm rows)")
    parser.add_argument("--cold-images", type=int, default=60, help="images per timed run (cold row)")
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args()


def images_per_second(render_batch: Callable[[int], None], count: int, repeats: int) -> tuple[float, float]:
    """(median, best) images/s over `repeats` runs of render_batch(run_index)."""
    render_batch(-1)  # warm-up: imports, caches, first-call allocations
    rates = []
    for run in range(repeats):
        start = time.perf_counter()
        render_batch(run)
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates), max(rates)


def main(args: argparse.Namespace) -> None:
    size, count = args.size, args.images
    identity = synthetic.sample_identity(2024)
    rng = np.random.default_rng(0)
    prior = [synthetic.sample_aus(rng)[0] for _ in range(count)]
    dense = [rng.uniform(0, 1, 17).astype(np.float32) for _ in range(count)]

    def warm(aus: list[np.ndarray]) -> Callable[[int], None]:
        return lambda run: [synthetic.render(identity, a, size) for a in aus]

    def pipeline(run: int) -> None:
        for k in range(count):
            synthetic.make_sample("train", k % 64, (run + 1) * count + k, size=size)

    def cold(run: int) -> None:
        first = 10_000_000 + (run + 1) * args.cold_images  # seeds never rendered before
        for seed in range(first, first + args.cold_images):
            synthetic.render(seed, prior[seed % count], size)

    rows = {
        "warm, prior AUs": (warm(prior), count),
        "warm, all 17 AUs": (warm(dense), count),
        "make_sample, 64 identities": (pipeline, count),
        "cold, new identity each image": (cold, args.cold_images),
    }
    print(f"SynthFACS {size}x{size}, one process, numpy threads 1, pid {os.getpid()}")
    print(f"| case | images/run | median img/s | best img/s | ms/img (median) | x target ({TARGET_WARM:.0f} img/s) |")
    print("|---|---|---|---|---|---|")
    for name, (fn, n) in rows.items():
        median, best = images_per_second(fn, n, args.repeats)
        print(f"| {name} | {n} | {median:.0f} | {best:.0f} | {1e3 / median:.2f} | {median / TARGET_WARM:.2f} |")


if __name__ == "__main__":
    main(parse_args())
