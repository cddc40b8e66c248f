"""Training checkpoint -> Hub folder (config.json, model.safetensors, README.md model card).

    python hub/export.py runs/wemgan --out hub/default --dtype float16 \
        --card-section "Evaluation=results/results.md"

RUN is a training output directory (its newest complete checkpoint is used), one checkpoint
folder, or a Hub folder. Every checkpoint written by train_accelerate.py holds the inference
model (generator, EMA generator when enabled, and AU estimator) under inference/.

--estimator DIR replaces the model's built-in AU estimator by one trained on its own
(python -m wemgan.au_training --network estimator --out DIR); the generator is untouched. Both
estimators regress the same labels, so the generator's relative-AU conditions keep their meaning;
the better reading makes transfer targets and slider start values closer to the photo's.

    python hub/export.py hub/default --estimator ../runs/estimator-v2 --out ../runs/default-est2

--prior-only leaves a motion-prior generator's encoder-decoder out: its edits are then the
landmark motion of real faces alone (wemgan.landmark_motion), which no trained part has yet
beaten (docs/recipe-trials.md). --mouth-cavity draws the inside of the mouths that the motion
opens, --appearance adds the smile's brightness patterns of real faces
(wemgan.landmark_appearance), and --motion-strength scales the motion and those patterns.

    python hub/export.py ../runs/long-prior --prior-only --mouth-cavity --appearance --motion-strength 0.75 --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from wemgan import WEMGAN
from wemgan.au_training import load_trained_estimator
from wemgan.export import list_checkpoints, model_card, model_config, write_hub_folder

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="training output dir or checkpoint folder")
    parser.add_argument("--out", type=Path, required=True, help="Hub folder to write (replaced atomically)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="storage dtype of the weights")
    parser.add_argument(
        "--card-section", action="append", default=[], metavar="TITLE=FILE",
        help="add a Markdown section to the model card from FILE (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--estimator", type=Path, default=None, metavar="DIR",
        help="replace the AU estimator by this stand-alone one (python -m wemgan.au_training)",
    )  # fmt: skip
    parser.add_argument(
        "--prior-only", action="store_true",
        help="motion-prior generators: switch the learnt flow and colour off (the landmark motion alone)",
    )  # fmt: skip
    parser.add_argument(
        "--mouth-cavity", action="store_true", help="motion-prior generators: draw the inside of mouths they open"
    )
    parser.add_argument(
        "--appearance", action="store_true",
        help="motion-prior generators: the smile's AUs also brighten and darken the skin as on real faces",
    )  # fmt: skip
    parser.add_argument(
        "--motion-strength", type=float, default=None, metavar="S",
        help="motion-prior generators: scale the landmark motion (and appearance) by S (0 < S <= 2)",
    )  # fmt: skip
    return parser.parse_args()


def find_inference_folder(run: Path) -> Path:
    """run/checkpoints/checkpoint-N/inference (newest N), checkpoint/inference, or a Hub folder."""
    if (run / "config.json").is_file() and (run / "model.safetensors").is_file():
        return run
    if (run / "inference").is_dir():
        return run / "inference"
    found = list_checkpoints(run)
    if not found:
        raise FileNotFoundError(f"{run} holds no complete checkpoint (expected {run}/checkpoints/checkpoint-N)")
    return found[-1] / "inference"


def with_estimator(model: WEMGAN, folder: Path) -> WEMGAN:
    """A copy of `model` whose AU estimator is the stand-alone one in `folder`; the provenance
    records where it came from."""
    estimator, record = load_trained_estimator(folder)
    config = model_config(model)
    config |= {
        "estimator_channels": record["estimator_channels"],
        "estimator_max_channels": record["estimator_max_channels"],
        "estimator_calibration_knots": record["estimator_calibration_knots"],
    }
    provenance = dict(model.provenance)
    provenance["estimator"] = {"folder": str(folder), **record}  # how it was trained: data, widths, steps, ...
    replaced = WEMGAN(**config, provenance=provenance)
    replaced.generator.load_state_dict(model.generator.state_dict())
    replaced.au_estimator.load_state_dict(estimator.state_dict())
    return replaced.eval()


def parts_records(model: WEMGAN, prior_only: bool, added_appearance: bool) -> dict:
    """How the parts a prior-only model keeps were made: the landmark regressor's record (from the
    folder the run loaded it from, when it is here) and the appearance fit's."""
    records = {}
    folder = model.provenance.get("config", {}).get("motion_prior")
    if prior_only and folder and (Path(folder) / "model.json").is_file():
        records["landmark_regressor"] = {"folder": folder, **json.loads((Path(folder) / "model.json").read_text())}
    if added_appearance:
        from wemgan.landmark_appearance import packaged_record

        records["appearance"] = packaged_record()
    return records


def with_prior_changes(
    model: WEMGAN, prior_only: bool, mouth_cavity: bool, motion_strength: float | None, appearance: bool = False
) -> WEMGAN:
    """A copy of a motion-prior `model` without its encoder-decoder (prior_only), with its mouth
    cavity and appearance on, and its landmark motion (and appearance) scaled; the provenance
    records each change."""
    if not model.generator.motion_prior:
        raise SystemExit("--prior-only, --mouth-cavity, --appearance and --motion-strength need a motion-prior model")
    if motion_strength is not None and not 0 < motion_strength <= 2:
        raise SystemExit(f"--motion-strength must be in (0, 2], got {motion_strength}")
    config = model_config(model)
    changes = dict(model.provenance.get("prior_changes", {}))
    if mouth_cavity:  # the cavity replaces the colour head, which the stretch gate limited
        config["mouth_cavity"] = changes["mouth_cavity"] = True
        config["stretch_gate"] = False
    if prior_only:  # the encoder-decoder is left out: the regressor, the basis and the estimator stay
        config["prior_only"] = changes["prior_only"] = True
        config["stretch_gate"] = config["shading"] = config["zero_gate"] = False
    added_appearance = appearance and not config.get("appearance")
    if appearance:
        config["appearance"] = changes["appearance"] = True
    strength = 1.0 if motion_strength is None else motion_strength
    changes["motion_strength"] = round(changes.get("motion_strength", 1.0) * strength, 6)
    provenance = {**model.provenance, "prior_changes": changes, **parts_records(model, prior_only, added_appearance)}
    changed = WEMGAN(**config, provenance=provenance)
    own = changed.state_dict()
    kept = {name: value for name, value in model.state_dict().items() if name in own}
    missing = changed.load_state_dict(kept, strict=False).missing_keys  # the new appearance patterns at most
    if any(not name.startswith("generator.appearance_") for name in missing):
        raise SystemExit(f"the changed model lacks weights the source should hold: {missing}")
    with torch.no_grad():
        changed.generator.motion_basis *= strength
        if changed.generator.appearance:  # new patterns take the motion's whole strength, kept ones the factor
            changed.generator.appearance_maps *= changes["motion_strength"] if added_appearance else strength
    return changed.eval()


def main(args: argparse.Namespace) -> None:
    source = find_inference_folder(args.run)
    model = WEMGAN.from_pretrained(source)
    if args.estimator is not None:
        model = with_estimator(model, args.estimator)
    if args.prior_only or args.mouth_cavity or args.appearance or args.motion_strength is not None:
        model = with_prior_changes(model, args.prior_only, args.mouth_cavity, args.motion_strength, args.appearance)
    sections = {}
    for item in args.card_section:
        title, sep, file = item.partition("=")
        if not sep:
            raise SystemExit(f"--card-section takes TITLE=FILE, got {item!r}")
        sections[title] = Path(file).read_text()
    out = write_hub_folder(model, args.out, model_card(model, sections), DTYPES[args.dtype])
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"wrote {out} from {source} ({size:.1f} MiB)")


if __name__ == "__main__":
    main(parse_args())
