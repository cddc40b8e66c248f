"""Print the trial tables of the research notebook (docs/research/) from evaluation folders.

    python docs/research/trial_table.py NAME=EVAL_DIR [NAME=EVAL_DIR ...] [--mode user|raw]

Each EVAL_DIR is the --out folder of `python -m wemgan.evaluate` for one trial's model (same
--pairs for all). One row per trial: the measures of the issue's bars, for the edits users get
(--mode user, default) or the raw generator output (--mode raw).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PRESETS = ("Happy", "Surprise", "Sad", "Anger")
SINGLE = ("AU01", "AU02", "AU04", "AU06", "AU12", "AU25", "AU26", "AU45")
COLUMNS = [
    "trial", "steps", "judge ED ratio ↓", "Happy lip lift", "Surprise brows", "Surprise mouth",
    "single AUs ≥ 0.4 (of 8)", "chroma max ↓", "speckle max ↓", "moved chroma max ↓", "moved speckle max ↓",
    "moved smudge max ↓", "ACD transfer ↓", "ACD presets max ↓", "rec PSNR ↑",
]  # fmt: skip


def row(name: str, results: dict, mode: str) -> list[str]:
    edits = results["edits"][mode]
    kinds = ("transfer", *PRESETS)
    single = [edits[f"single_{au}"]["fraction"] for au in SINGLE if f"single_{au}" in edits]
    return [
        name,
        str(results["provenance"].get("steps", "?")),
        f"{edits['transfer'].get('judge_ed_ratio', float('nan')):.3f}",
        f"{edits['Happy'].get('lip_corner_lift_fraction', float('nan')):.2f}",
        f"{edits['Surprise'].get('brow_height_fraction', float('nan')):.2f}",
        f"{edits['Surprise'].get('mouth_opening_fraction', float('nan')):.2f}",
        f"{sum(f >= 0.4 for f in single)}",
        f"{max(edits[k]['chroma_ratio'] for k in kinds):.2f}",
        f"{max(edits[k]['speckle_share'] for k in kinds):.3f}",
        moved_max(edits, kinds, "moved_chroma_ratio", ".2f"),
        moved_max(edits, kinds, "moved_speckle_share", ".3f"),
        moved_max(edits, kinds, "moved_smudge_share", ".3f"),
        f"{edits['transfer'].get('acd', float('nan')):.3f}",
        f"{max(edits[k].get('acd', float('nan')) for k in PRESETS):.3f}",
        f"{results['metrics']['psnr']:.2f}",
    ]


def moved_max(edits: dict, kinds: tuple[str, ...], key: str, spec: str) -> str:
    """The largest of a moved measure over kinds; '–' for evaluations made before it existed."""
    values = [edits[k][key] for k in kinds if key in edits[k]]
    return format(max(values), spec) if len(values) == len(kinds) else "–"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trials", nargs="+", help="NAME=EVAL_DIR")
    p.add_argument("--mode", choices=["user", "raw"], default="user")
    args = p.parse_args()
    print("| " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---:|" * (len(COLUMNS) - 1))
    for spec in args.trials:
        name, _, folder = spec.partition("=")
        results = json.loads((Path(folder) / "results.json").read_text())
        print("| " + " | ".join(row(name, results, args.mode)) + " |")


if __name__ == "__main__":
    main()
