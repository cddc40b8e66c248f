"""How fast the data pipeline feeds a training loop: samples/s out of a torch DataLoader.

    python bench/data.py                        # shared/data/faces-au, batch 16, 0 and 2 workers, both formats
    python bench/data.py --workers 0 --seconds 1  # quicker
    python bench/data.py --no-synthfacs         # skip the on-the-fly renderer

Rows: (a) the parquet/JPEG source decoded per batch with PIL, (b) the decoded uint8 cache
(memory-mapped), (c) SynthFACS rendered on the fly; each as float32 [-1, 1] images and as
uint8 (converted on the accelerator: a quarter of the bytes through worker queues and to the
GPU). Targets on a 2-core CPU: JPEG >= 1,500 samples/s, uint8 cache >= 5,000 samples/s
(SynthFACS has none: build a cache for long runs).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local benchmark never needs the Hub

import torch
from torch.utils.data import DataLoader, Dataset

from wemgan.data.datasets import build_uint8_cache, load_training_data

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces-au"
TARGETS = {"parquet / JPEG": 1_500, "uint8 cache": 5_000}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(REAL_DATA), help="parquet / imagefolder / saved dataset")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N rows of the source")
    parser.add_argument("--cache", default=None, help="uint8 cache folder (default: a temporary one)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent per row (at least 5 batches)")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--image-formats", nargs="+", choices=["float", "uint8"], default=["float", "uint8"])
    parser.add_argument("--no-synthfacs", action="store_true", help="skip the SynthFACS row")
    return parser.parse_args()


def samples_per_second(dataset: Dataset, batch_size: int, workers: int, seconds: float) -> float:
    """Shuffled batches as a training loop draws them; worker start-up is not timed."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    stream = iter(loader)
    for _ in range(3):  # warm-up: start workers, fill the page cache
        next(stream)
    count, batches = 0, 0
    start = time.perf_counter()
    while batches < 5 or time.perf_counter() - start < seconds:
        batch = next(stream, None)
        if batch is None:
            stream = iter(loader)
            continue
        count, batches = count + len(batch["aus"]), batches + 1
    return count / (time.perf_counter() - start)


def main(args: argparse.Namespace) -> None:
    if not Path(args.source).exists():
        raise SystemExit(f"{args.source} not found: pass --source with a parquet, imagefolder or saved dataset")
    torch.set_num_threads(1)  # what a DataLoader worker gets; the model owns the other threads
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(args.cache or scratch) / args.split
        start = time.perf_counter()
        build_uint8_cache(args.source, cache, args.split, limit=args.limit)
        print(f"uint8 cache built in {time.perf_counter() - start:.1f} s ({cache})")
        sources = {"parquet / JPEG": args.source, "uint8 cache": cache}
        if not args.no_synthfacs:
            sources["SynthFACS on the fly"] = "synthfacs"

        print(f"\nbatch {args.batch_size}, {os.cpu_count()} CPUs")
        print(f"| {'source':<22} | format | workers | samples/s | target | ratio |")
        print(f"|{'-' * 24}|--------|--------:|----------:|-------:|------:|")
        for name, source in sources.items():
            for image_format in args.image_formats:
                options = {} if source in ("synthfacs", cache) else {"limit": args.limit}
                dataset = load_training_data(source, args.split, image_format=image_format, **options)
                for workers in args.workers:
                    rate = samples_per_second(dataset, args.batch_size, workers, args.seconds)
                    target = TARGETS.get(name)
                    ratio = f"{rate / target:.2f}" if target else "—"
                    print(
                        f"| {name:<22} | {image_format:<6} | {workers:>7} | {rate:>9,.0f} | {target or '—':>6} "
                        f"| {ratio:>5} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main(parse_args())
