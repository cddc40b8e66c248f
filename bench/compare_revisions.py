"""The model's networks on one crop: this working tree against a git revision, interleaved.

    python bench/compare_revisions.py --base HEAD~3          # hub/default, 16 faces-au test faces
    python bench/compare_revisions.py --base main --model DIR --faces 32 --threads 1

On a shared 2-core host the time of one edit drifts by 30% or more from minute to minute (other
processes, the neighbour's load on a shared core), so two runs of bench/live_edit.py a minute
apart cannot tell a 10% change. Here both versions of the package are loaded into one process
(the base's `wemgan` is extracted by `git archive` and imported as `wemgan_base`), and each crop
is edited by both, in alternating order: both see the same drift. (The few base modules that
import `wemgan` by name, such as the demo and the exporter, would get this tree's; an edit uses
none.) Rows: median, 25th percentile and minimum ms per crop (WEMGAN.edit_crops, the row
"model's networks, one crop" of bench/live_edit.py) and the median of the per-pair ratios; the
first round is warm-up. Both versions load the same model folder, and their outputs are compared
(largest difference).
"""

from __future__ import annotations

import argparse
import importlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wemgan.evaluate import load_test_data

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="git revision to compare with (e.g. HEAD~1, a commit)")
    parser.add_argument("--model", default=str(ROOT / "hub" / "default"), help="model folder both versions load")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "faces-au",
                        help="faces-au folder (its test split gives the crops)")  # fmt: skip
    parser.add_argument("--faces", type=int, default=16, help="test faces, each edited by both in every round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the faces (the first is warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    return parser.parse_args()


def base_package(revision: str, folder: Path) -> None:
    """Extract the revision's wemgan/ into folder/wemgan_base (its modules import each other relatively)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "wemgan"], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    shutil.move(folder / "wemgan", folder / "wemgan_base")


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="wemgan-base-"))
    try:
        base_package(args.base, folder)
        sys.path.insert(0, str(folder))
        packages = {"base": importlib.import_module("wemgan_base"), "this tree": importlib.import_module("wemgan")}
        models = {name: package.WEMGAN.from_pretrained(args.model).eval() for name, package in packages.items()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the modules are loaded
    expressions = packages["this tree"].EXPRESSIONS
    names = ["Happy", "Surprise", "Sad", "Fear"]
    crops = load_test_data(str(args.data), "test", args.faces)[0]  # N x 3 x 128 x 128 in [-1, 1]
    times: dict[str, list[float]] = {name: [] for name in models}
    largest_difference = 0.0
    with torch.inference_mode():
        for round_ in range(args.rounds):
            for i, crop in enumerate(crops):
                aus = torch.tensor(expressions[names[i % len(names)]], dtype=torch.float32).view(1, -1)
                order = list(models) if (round_ + i) % 2 else list(models)[::-1]
                outputs = {}
                for name in order:
                    started = time.perf_counter()
                    outputs[name] = models[name].edit_crops(crop[None], 0.8 * aus, torch.zeros_like(aus))
                    if round_:
                        times[name].append(time.perf_counter() - started)
                difference = (outputs["base"] - outputs["this tree"]).abs().max().item()
                largest_difference = max(largest_difference, difference)
    rounds = args.rounds - 1
    print(f"{args.model}, {len(crops)} faces x {rounds} timed rounds, {args.threads} threads, base {args.base}")
    print("| version | median ms | 25th pct | min |")
    print("|---|---|---|---|")
    for name, values in times.items():
        ms = np.array(values) * 1e3
        print(f"| {name} | {np.median(ms):.1f} | {np.percentile(ms, 25):.1f} | {ms.min():.1f} |")
    ratio = np.median(np.array(times["this tree"]) / np.array(times["base"]))
    print(
        f"this tree / base, median of per-crop ratios: {ratio:.3f}; largest output difference {largest_difference:.1e}"
    )


if __name__ == "__main__":
    main(parse_args())
