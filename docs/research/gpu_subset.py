"""A compact copy of faces-au's train split for a lent GPU machine (docs/research/gpu_session.sh).

    python docs/research/gpu_subset.py --data ../shared/data/faces-au --out .gpu/faces-au --megabytes 17

A device call carries the working tree and at most 64 MiB in all; the repository takes about 44
of them, so the faces travel as a random sample of train rows (seed 0), as they are (the JPEG
bytes, AU labels and the Hugging Face schema of the original parquet files), up to --megabytes.
`--out` must be a folder git ignores (`.gpu/` is listed in .git/info/exclude); faces-au's licence
allows research use only: the subset never enters the repository.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="faces-au folder (data/train-*.parquet)")
    parser.add_argument("--out", type=Path, required=True, help="folder for data/train-00000-of-00001.parquet")
    parser.add_argument("--megabytes", type=float, default=17.0, help="size budget of the faces' bytes")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    shards = sorted((args.data / "data").glob("train-*.parquet"))
    if not shards:
        raise SystemExit(f"no train-*.parquet under {args.data / 'data'}: give faces-au's folder with --data")
    table = pa.concat_tables([pq.read_table(shard) for shard in shards])
    order = np.random.default_rng(args.seed).permutation(table.num_rows)
    sizes = np.array([len(image["bytes"]) for image in table.column("image").to_pylist()])[order]
    count = int(np.searchsorted(np.cumsum(sizes), args.megabytes * 2**20))
    subset = table.take(np.sort(order[:count]))
    out = args.out / "data" / "train-00000-of-00001.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    pq.write_table(subset, partial)
    partial.replace(out)  # never a half-written file where the loader looks
    print(f"wrote {out}: {count} of {table.num_rows} train faces, {out.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main(parse_args())
