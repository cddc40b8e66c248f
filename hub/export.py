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

--editor builds the landmark editor's model from its fits instead of a run (no GAN checkpoint): the
packaged motion basis and appearance maps (python -m wemgan.landmark_fit), the LandmarkRegressor of
--regressor (a regressor folder, or a model folder such as hub/default that holds one), the AU
estimator of --estimator, and with --renderer the Renderer a `train_accelerate.py --objective render`
run wrote (RUN/renderer or a checkpoint's renderer/ folder).

    python hub/export.py --editor --regressor hub/default --estimator hub/default \
        --renderer ../runs/render/renderer --dtype float16 --out DIR

--motion-strength defaults to the strength hub/default ships at (0.75: the fitted motion at full
strength overshoots in rendering, docs/research/landmark-editor.md "How strong?"), so that a
composed model is compared with the shipped editor at equal motion.

--renderer alone (no RUN, no --editor) writes the trained Renderer by itself, with a card: the
folder a later run goes on from (train_accelerate.py --init_renderer DIR), and that --editor
--renderer composes.

    python hub/export.py --renderer ../runs/render/renderer --dtype float16 --out hub/renderer-candidate

An existing Hub folder given as RUN is written again in today's format (a folder of before
2026-12-06 is converted on loading, wemgan.legacy): its edits do not change.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

import safetensors.torch
import torch

from wemgan import WEMGAN
from wemgan.au_training import load_trained_estimator
from wemgan.config import EditorConfig
from wemgan.editor import LandmarkEditor
from wemgan.export import (
    data_licence,
    model_card,
    model_config,
    newest_part,
    read_renderer_folder,
    renderer_note,
    renderer_time,
    staged_folder,
    write_hub_folder,
)
from wemgan.landmark_appearance import packaged_record
from wemgan.landmark_fit import load_landmark_regressor
from wemgan.landmark_motion import motion_record

ROOT = Path(__file__).resolve().parents[1]
# hub/default's editor.motion_strength: --editor's default, so that a composed model is compared at equal motion
SHIPPED_MOTION_STRENGTH = json.loads((ROOT / "hub/default/config.json").read_text(encoding="utf-8"))["editor"][
    "motion_strength"
]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="?", help="training output dir, checkpoint folder or Hub folder")
    parser.add_argument("--out", type=Path, required=True, help="Hub folder to write (replaced atomically)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="storage dtype of the weights")
    parser.add_argument(
        "--card-section", action="append", default=[], metavar="TITLE=FILE",
        help="add a Markdown section to the model card from FILE (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--estimator", type=Path, default=None, metavar="DIR",
        help="the AU estimator: a stand-alone one (python -m wemgan.au_training) or a model folder's",
    )  # fmt: skip
    parser.add_argument("--editor", action="store_true", help="build the landmark editor's model from its fits")
    parser.add_argument("--regressor", type=Path, default=None, metavar="DIR", help="--editor: the landmark regressor")
    parser.add_argument("--renderer", type=Path, default=None, metavar="DIR",
                        help="a trained Renderer: composed with --editor, or written alone")  # fmt: skip
    parser.add_argument("--motion-strength", type=float, default=SHIPPED_MOTION_STRENGTH, metavar="S",
                        help="--editor: the fitted motion scaled by S, in (0, 2] (default: hub/default's)")  # fmt: skip
    parser.add_argument("--no-mouth-cavity", action="store_true", help="--editor: no drawn mouth")
    parser.add_argument("--no-appearance", action="store_true", help="--editor: no skin shading")
    parser.add_argument("--whole-brows", action="store_true",
                        help="--editor: the flow carries each brow whole, so a strong brow move stretches the skin "
                        "around it, not the brow (EditorConfig.whole_brows)")  # fmt: skip
    parser.add_argument("--no-brow-skin", action="store_true",
                        help="--editor --renderer: the renderer redraws mouths only and leaves the skin a rising brow "
                        "uncovers to the warp (RendererConfig.brow_skin; the same weights)")  # fmt: skip
    parser.add_argument("--white-balance", action="store_true",
                        help="--editor --renderer: the renderer draws each window white-balanced to its training "
                        "faces' mean tint, then undoes it (RendererConfig.white_balance; same weights)")  # fmt: skip
    args = parser.parse_args()
    renderer_alone = args.renderer is not None and not args.editor and args.run is None
    if args.editor == (args.run is not None) and not renderer_alone:
        parser.error("give either RUN (a run or model folder to export), --editor (a model from the fits) or "
                     "--renderer alone (a trained renderer by itself)")  # fmt: skip
    if args.editor and (args.regressor is None or args.estimator is None):
        parser.error("--editor needs --regressor and --estimator (e.g. hub/default for both)")
    if args.renderer is not None and args.run is not None:
        parser.error("--renderer composes with the landmark editor (--editor) or is written alone: no RUN")
    if (args.no_brow_skin or args.white_balance) and not (args.editor and args.renderer is not None):
        parser.error("--no-brow-skin and --white-balance set how a composed renderer draws: they need --editor "
                     "and --renderer")  # fmt: skip
    if args.editor:
        try:
            editor_config(args).validate()
        except ValueError as error:
            parser.error(str(error))
    return args


def find_inference_folder(run: Path) -> Path:
    """run/checkpoints/checkpoint-N/inference (newest N), checkpoint/inference, or a Hub folder."""
    if (run / "config.json").is_file() and (run / "model.safetensors").is_file():
        return run
    return newest_part(run, "inference")


def with_estimator(model: WEMGAN, folder: Path) -> WEMGAN:
    """A copy of `model` whose AU estimator is the one in `folder` (stand-alone or a model's); the
    provenance records where it came from."""
    estimator, record = load_trained_estimator(folder)
    config = model_config(model)
    config["estimator"] = {
        "channels": record["estimator_channels"],
        "max_channels": record["estimator_max_channels"],
        "calibration_knots": record["estimator_calibration_knots"],
    }
    provenance = dict(model.provenance)
    provenance["estimator"] = {"folder": str(folder), **record}  # how it was trained: data, widths, steps, ...
    replaced = WEMGAN(**config, provenance=provenance)
    state = {name: value for name, value in model.state_dict().items() if not name.startswith("au_estimator.")}
    state |= {f"au_estimator.{name}": value for name, value in estimator.state_dict().items()}
    replaced.load_state_dict(state)
    return replaced.eval()


def editor_config(args: argparse.Namespace) -> EditorConfig:
    """The editor --editor composes, from the command line."""
    return EditorConfig(
        args.motion_strength, not args.no_mouth_cavity, not args.no_appearance, whole_brows=args.whole_brows
    )


def editor_model(args: argparse.Namespace) -> WEMGAN:
    """The landmark editor's model built from the fits, the regressor, the estimator (and a renderer)."""
    regressor, regressor_record = load_landmark_regressor(args.regressor)
    estimator, estimator_record = load_trained_estimator(args.estimator)
    editor = LandmarkEditor.from_fits(regressor, **asdict(editor_config(args)))
    provenance = {"dataset": "faces-au", "landmark_regressor": regressor_record, "estimator": estimator_record,
                  "landmark_motion": {k: v for k, v in motion_record().items() if k != "basis"}}  # fmt: skip
    if editor.appearance:
        provenance["appearance"] = packaged_record()
    renderer_config, renderer_state = None, {}
    if args.renderer is not None:
        renderer_config, renderer_state, provenance["renderer"] = load_renderer(args.renderer)
        if args.no_brow_skin:  # else as it trained
            renderer_config["brow_skin"] = False
        if args.white_balance:
            renderer_config["white_balance"] = True
    model = WEMGAN(
        editor=asdict(editor_config(args)),
        renderer=renderer_config,
        estimator={"channels": estimator_record["estimator_channels"],
                   "max_channels": estimator_record["estimator_max_channels"],
                   "calibration_knots": estimator_record["estimator_calibration_knots"]},
        provenance=provenance,
    )  # fmt: skip
    state = {f"editor.{name}": value for name, value in editor.state_dict().items()}
    state |= {f"au_estimator.{name}": value for name, value in estimator.state_dict().items()}
    state |= {f"renderer.{name}": value for name, value in renderer_state.items()}
    model.load_state_dict(state)  # strict: every weight is accounted for
    return model.eval()


def load_renderer(folder: Path) -> tuple[dict, dict, dict]:
    """(RendererConfig fields, state dict, training record) of a Renderer written by
    train_accelerate.py --objective render (model.safetensors + config.json)."""
    try:
        record, weights = read_renderer_folder(folder)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None
    return dict(record["config"]), weights, record  # RendererConfig fields; WEMGAN validates them


def renderer_card(record: dict) -> str:
    """The card of a Renderer written alone: what it is, how long it trained, how to use it."""
    licence, data_text = data_licence(str(record.get("dataset", "unknown")))
    return "\n".join([
        "# WEM-GAN renderer (trained, not composed)", "",
        renderer_note(), "", renderer_time(record), "",
        "It is not a model by itself: `python hub/export.py --editor --regressor hub/default --estimator hub/default "
        "--renderer THIS_FOLDER --out DIR` composes it with the landmark editor at the shipped model's motion "
        f"strength ({SHIPPED_MOTION_STRENGTH:g}; compare it with that model at the same strength), and "
        "`train_accelerate.py --objective render --init_renderer THIS_FOLDER` (with the flags of its command) "
        "trains it on.", "",
        "## Training data", "", data_text, "", f"Licence: {licence}.", "",
        "## Training record", "", "```json", json.dumps(record, indent=2, sort_keys=True), "```", "",
    ])  # fmt: skip


def without_machine_paths(text: str) -> str:
    """text with each absolute path made relative to the repository (a shared folder keeps its
    meaning beside any checkout; a machine's own paths never enter a folder meant for others)."""
    return " ".join(os.path.relpath(word, ROOT) if os.path.isabs(word) else word for word in text.split(" "))


def write_renderer_folder(source: Path, out: Path, dtype: torch.dtype) -> Path:
    """source's renderer (config.json record + weights in dtype) and its card, written atomically to out."""
    _, state, record = load_renderer(source)
    record = {k: without_machine_paths(v) if isinstance(v, str) else v for k, v in record.items()}
    with staged_folder(out) as staging:
        weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        safetensors.torch.save_file(weights, str(staging / "model.safetensors"))
        (staging / "config.json").write_text(json.dumps(record, indent=2) + "\n")
        (staging / "README.md").write_text(renderer_card(record))
    return out


def main(args: argparse.Namespace) -> None:
    if not args.editor and args.run is None:  # --renderer alone
        out = write_renderer_folder(args.renderer, args.out, DTYPES[args.dtype])
        print(f"wrote {out} from {args.renderer}")
        return
    if args.editor:
        model, source = editor_model(args), "the landmark fits"
    else:
        source = find_inference_folder(args.run)
        model = WEMGAN.from_pretrained(source)
        if args.estimator is not None:
            model = with_estimator(model, args.estimator)
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
