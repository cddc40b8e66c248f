"""What does the realism classifier (wemgan/metrics/realism.py) spot in a model's edits, and where?

    python docs/research/realism_probe.py editor=hub/default warp=hub/default:warp \\
        --data ../shared/data/faces-au --aus Happy Surprise --out realism-cam.png

For each model (NAME=FOLDER, optionally :OPTION,OPTION to change its LandmarkEditor: warp = the
warp alone, no_cavity, no_appearance, whole_brows, strength=0.1) and edit (a preset, or a single
AU set to 0.8), prints the fresh classifier's held-out accuracy (face, mouth; seeds 0 and 1)
against random real faces of other people and against real faces of other people that show the
expression (`most_showing`), and draws where a classifier finds its evidence: the class
activation map of its last features, edits minus real faces, averaged over held-out edits and
three seeds, laid over their mean.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from wemgan import WEMGAN
from wemgan.aus import AU_NAMES, EXPRESSIONS
from wemgan.edit_evaluation import SINGLE_AU_TO, realism_split
from wemgan.evaluate import load_test_data
from wemgan.metrics import realism as R
from wemgan.metrics.reconstruction import to_uint8

EDITOR_OPTIONS = {
    "warp": {"mouth_cavity": False, "appearance": False},
    "no_cavity": {"mouth_cavity": False},
    "no_appearance": {"appearance": False},
    "whole_brows": {"whole_brows": True},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="NAME=FOLDER[:OPTION,...]")
    p.add_argument("--data", required=True)
    p.add_argument(
        "--aus", nargs="+", default=["Happy", "Surprise"], help=f"presets, or single AUs (set to {SINGLE_AU_TO})"
    )
    p.add_argument("--faces", type=int, default=192, help="faces a side")
    p.add_argument("--strength", type=float, default=1.0, help="edit strength (model.edit's strength)")
    p.add_argument(
        "--split-seed", type=int, default=0, help="how the test faces are cut (0: as the evaluation cuts them)"
    )
    p.add_argument(
        "--against",
        nargs="+",
        choices=["real", "showing"],
        default=["real", "showing"],
        help="real faces of other people, and real faces of other people that show the expression",
    )
    p.add_argument("--out", type=Path, help="the activation-map sheet (PNG or JPEG); without it, scores only")
    return p.parse_args()


def load(spec: str) -> tuple[str, WEMGAN]:
    name, _, rest = spec.partition("=")
    folder, _, options = rest.partition(":")
    model = WEMGAN.from_pretrained(folder).eval()
    for option in filter(None, options.split(",")):
        key, _, value = option.partition("=")
        if key == "strength":
            model.editor.motion_strength = float(value)
        elif key in EDITOR_OPTIONS:
            for attribute, setting in EDITOR_OPTIONS[key].items():
                setattr(model.editor, attribute, setting)
        else:
            known = ", ".join(EDITOR_OPTIONS)
            raise SystemExit(f"unknown editor option {key!r} in {spec!r}: use {known} or strength=X")
    return name, model


def edit_spec(name: str) -> tuple[str | dict[str, float], np.ndarray]:
    """What `--aus NAME` asks of model.edit, and the AU vector real faces showing it are ranked by."""
    if name in AU_NAMES:  # a single AU, as the evaluation sets it
        return {name: SINGLE_AU_TO}, np.eye(len(AU_NAMES))[AU_NAMES.index(name)]
    if name in EXPRESSIONS:
        return name, EXPRESSIONS[name]
    raise SystemExit(f"--aus {name}: give an expression ({', '.join(EXPRESSIONS)}) or an AU ({', '.join(AU_NAMES)})")


def classifier_for(edited: np.ndarray, real: np.ndarray, seed: int) -> nn.Module:
    """The realism test's classifier, trained as two_sample_test trains it, on all of both sets."""
    x = torch.cat([R._tensor(edited), R._tensor(real)])
    y = torch.cat([torch.ones(len(edited)), torch.zeros(len(real))])
    torch.manual_seed(seed)
    return R.trained_classifier(x, y, torch.Generator().manual_seed(seed))


@torch.no_grad()
def activation_map(net: nn.Module, images: np.ndarray) -> np.ndarray:
    """H x W: the logit's share from each place (last features x the linear layer's weights), mean over images."""
    features = net[:-3](R._tensor(images))  # before pooling, flattening and the linear layer
    logit_map = (features * net[-1].weight.view(1, -1, 1, 1)).sum(1, keepdim=True)
    size = images.shape[1:3]
    return nn.functional.interpolate(logit_map, size=size, mode="bilinear").squeeze(1).mean(0).numpy()


def overlay(images: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The heat (positive part, scaled to its maximum) in red over the images' mean."""
    heat = np.clip(heat / max(1e-6, float(np.abs(heat).max())), 0, 1)
    colour = np.stack([heat * 255, np.zeros_like(heat), (1 - heat) * 80], -1)
    return (0.5 * images.mean(0) + 0.5 * colour).astype(np.uint8)


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    images, aus, _ = load_test_data(args.data, "test", None, 128)
    first, second, pool = realism_split(len(images), args.faces, args.split_seed)
    sources, real = to_uint8(images[first]), to_uint8(images[second])
    specs = {name: edit_spec(name) for name in args.aus}
    showing = {
        name: to_uint8(images[pool[R.most_showing(aus[pool], vector, len(first))]])
        for name, (_, vector) in specs.items()
    }
    cut = round(R.TRAIN_SHARE * len(first))
    rows = []
    for spec in args.models:
        name, model = load(spec)
        for expression in args.aus:
            edited = np.stack(model.edit(list(sources), aus=specs[expression][0], strength=args.strength))
            line = []
            tests = {"real": real, "showing": showing[expression]}
            for against in args.against:
                others = tests[against]
                score = R.realism(edited, others)
                face, mouth = (score[region]["accuracy"] for region in ("face", "mouth"))
                line.append(f"vs {against}: face {face:.3f} mouth {mouth:.3f}")
            print(f"{name} {expression}: " + " | ".join(line), flush=True)
            if args.out is None:
                continue
            heat = np.mean(
                [
                    activation_map(net, edited[cut:]) - activation_map(net, real[cut:])
                    for net in (classifier_for(edited[:cut], real[:cut], seed) for seed in (0, 1, 2))
                ],
                axis=0,
            )
            rows.append(np.concatenate([edited[cut], edited[cut + 1], overlay(edited[cut:], heat)], 1))
    if args.out is None:
        return
    sheet = Image.fromarray(np.concatenate(rows, 0))
    sheet.resize((sheet.width * 2, sheet.height * 2), Image.NEAREST).save(args.out)


if __name__ == "__main__":
    main(parse_args())
