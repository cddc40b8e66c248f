"""Train and score the ablation variants of Tables 6-7 on SynthFACS; one combined Markdown table.

    python -m wemgan.ablations --out runs/ablations --steps 300 --eval-limit 200
    python -m wemgan.ablations --out ../runs/ablations --steps 2 --eval-limit 8 --variants backbone,full \\
        --base_channels 8 --max_channels 16     # unknown options go to train_accelerate.py

Every variant is trained by train_accelerate.py (--preset cpu, --max_train_steps STEPS, SynthFACS)
into OUT/<variant>/ and scored by wemgan.evaluate on the same SynthFACS test pairs
(OUT/pairs.json). A variant whose OUT/<variant>/hub already holds a model is not trained again,
so an interrupted run resumes where it stopped. Writes OUT/ablations.md and OUT/ablations.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from . import evaluate

logger = logging.getLogger(__name__)
TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "train_accelerate.py"

# name -> (row label, train_accelerate.py options). Table 6 adds the modules one at a time to
# the U-Net backbone; Table 7 moves the DIT skips to 3 (= full), 4 or 5 levels; plain_skips
# swaps the Haar high-frequency skips for plain U-Net skips.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "backbone": ("U-Net backbone", ["--skip_levels", "0", "--au_fusion", "single", "--no_high_frequency_critic"]),
    "multi_au": ("+ Mul_AU", ["--skip_levels", "0", "--no_high_frequency_critic"]),
    "dit": ("+ Mul_AU + DIT", ["--no_high_frequency_critic"]),
    "full": ("+ Mul_AU + DIT + D_H (full, DIT 3 levels)", []),
    "dit4": ("full, DIT 4 levels", ["--skip_levels", "4"]),
    "dit5": ("full, DIT 5 levels", ["--skip_levels", "5"]),
    "plain_skips": ("full, plain skips instead of Haar", ["--skip_kind", "plain"]),
}
COLUMNS = [
    ("acd", "ACD ↓"),
    ("ed", "ED ↓"),
    ("fid", "FID ↓"),
    ("l1", "rec L1 ↓"),
    ("ssim", "rec SSIM ↑"),
    ("psnr", "rec PSNR ↑"),
    ("paired_psnr", "paired PSNR ↑"),
    ("paired_psnr_gain", "PSNR gain"),
    ("paired_ssim", "paired SSIM ↑"),
]


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=300, help="critic steps per variant (--max_train_steps)")
    p.add_argument("--eval-limit", type=int, default=200, help="SynthFACS test images scored per variant")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}")
    p.add_argument("--seed", type=int, default=0, help="training seed and pairing seed")
    p.add_argument("--inception", type=Path, default=None, help="for FID/IS, see wemgan/metrics/fid_is.py")
    args, train_args = p.parse_known_args(argv)
    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return args, train_args


def train(name: str, folder: Path, steps: int, seed: int, extra: list[str]) -> Path:
    """Train one variant (unless its Hub folder exists) and return the Hub folder."""
    hub = folder / "hub"
    if (hub / "model.safetensors").is_file():
        logger.info("%s: reusing the trained model in %s", name, hub)
        return hub
    if not TRAIN_SCRIPT.is_file():
        raise FileNotFoundError(f"{TRAIN_SCRIPT} not found: run the ablations from a checkout of the repository")
    command = [
        sys.executable, str(TRAIN_SCRIPT), "--dataset", "synthfacs", "--preset", "cpu", "--max_train_steps", str(steps),
        "--seed", str(seed), "--output_dir", str(folder), *VARIANTS[name][1], *extra,
    ]  # fmt: skip
    logger.info("%s: %s", name, " ".join(command))
    subprocess.run(command, check=True)
    return hub


def table(rows: dict[str, dict]) -> str:
    """One Markdown row per variant with the columns of Tables 6-7 plus reconstruction and SynthFACS scores."""
    lines = ["| variant | " + " | ".join(header for _, header in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, results in rows.items():
        cells = [evaluate._cell(results["metrics"].get(key)) for key, _ in COLUMNS]
        lines.append(f"| {VARIANTS[name][0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace, train_args: list[str]) -> dict[str, dict]:
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = args.out / "pairs.json"
    rows: dict[str, dict] = {}
    for name in args.variants:
        hub = train(name, args.out / name, args.steps, args.seed, train_args)
        eval_args = evaluate.parse_args(
            ["--model", str(hub), "--data", "synthfacs", "--limit", str(args.eval_limit), "--seed", str(args.seed)]
            + ["--out", str(args.out / name / "eval")]
            + (["--pairs", str(pairs)] if pairs.is_file() else [])
            + (["--inception", str(args.inception)] if args.inception else [])
        )
        rows[name] = evaluate.evaluate(eval_args)
        if not pairs.is_file():  # the first variant's pairing is every later variant's
            pairs.write_text((args.out / name / "eval" / "pairs.json").read_text())
    first = next(iter(rows.values()))
    extra = " ".join(train_args) or "none"
    header = [
        "# WEM-GAN ablations (Tables 6-7) on SynthFACS",
        "",
        f"- {args.steps} training steps per variant (--preset cpu); extra train options: {extra}",
        f"- scored on {first['pairs']} SynthFACS test pairs, seed {first['seed']}; ED by the built-in AU estimator",
        "",
    ]
    unavailable = {key: reason for results in rows.values() for key, reason in results["unavailable"].items()}
    notes = [f"- {key}: {reason}" for key, reason in unavailable.items() if key in dict(COLUMNS)]
    text = "\n".join([*header, table(rows), "", *(["Unavailable:", "", *notes, ""] if notes else [])])
    (args.out / "ablations.md").write_text(text)
    (args.out / "ablations.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args, train_args = parse_args(argv)
    run(args, train_args)
    print((args.out / "ablations.md").read_text())


if __name__ == "__main__":
    main()
