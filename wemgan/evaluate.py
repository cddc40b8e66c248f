"""Score a model on the paper's protocol (§4.2, §4.4): Tables 3-5 as JSON and Markdown.

    python -m wemgan.evaluate --model hub/default --data ../shared/data/faces-au --out eval/faces-au
    python -m wemgan.evaluate --model runs/wemgan/hub --data synthfacs --limit 200 --out eval/synth

Each test image x (AUs u_x) is paired with another random test image as the target expression
(AUs u_y); the pairing is fixed by --seed and written to OUT/pairs.json, and --pairs FILE reuses
one so that every model is scored on identical pairs. The edit is the generator's raw output
G(x, u_y - u_x) (AUs from the dataset labels), without the residual paste-back of WEMGAN.edit.

Scores (see wemgan/metrics):
- ACD: dlib embedding distance between x and the edit (needs the faces extra);
- ED: ||AUs measured on the edit - u_y||, by the built-in estimator or by OpenFace on the
  edits (--write-edits DIR, run OpenFace on DIR, then --openface-csv); ED of the unedited x
  against the same targets is the reference point (estimator: measured on x; OpenFace: the
  dataset labels u_x, which are OpenFace output);
- L1 / SSIM / PSNR of the self-reconstruction G(x, 0) against x;
- IS of the edits and FID between the edits and the test images (needs --inception);
- the built-in AU estimator against the test labels: MAE and mean per-AU Pearson correlation;
- for --data synthfacs: L1 / PSNR / SSIM of the edit against the exact target render, and
  of the unedited source (the gain).
The edits users get (WEMGAN.edit: estimator-read AUs, change pasted back) are scored beside the
raw output on --edit-faces faces by measures a generator cannot fool: the independent AU judge,
landmark geometry, chroma ratio, speckle share, ACD (wemgan/edit_evaluation.py); OUT/sheet.png
shows 8 faces x (source, reference, transfer, Happy, Surprise, Sad, Anger) at 2x for a person to judge.
Writes OUT/results.json, OUT/results.md, OUT/pairs.json, OUT/sheet.png and appends a line to
OUT/metrics.jsonl.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import metrics
from .data.datasets import load_hf_dataset, to_model_size
from .edit_evaluation import markdown as edit_markdown
from .edit_evaluation import realism_markdown, realism_scores, score_edits
from .metrics import fid_is
from .model import WEMGAN

logger = logging.getLogger(__name__)
SYNTHFACS_PER_IDENTITY = 8  # faces per identity when --limit sizes a SynthFACS test split

# Columns of the Markdown tables: (key, header), in the layout of the paper's Tables 3-5.
TABLES = {
    "Identity and expression (Table 3)": [("acd", "ACD ↓"), ("ed", "ED ↓"), ("ed_source", "ED unedited")],
    "Self-reconstruction G(x, 0) vs x (Table 4)": [("l1", "L1 ↓"), ("ssim", "SSIM ↑"), ("psnr", "PSNR ↑")],
    "Image quality (Table 5)": [("is", "IS ↑"), ("is_std", "IS std"), ("fid", "FID ↓")],
    "Built-in AU estimator on the test images vs their labels": [("au_mae", "MAE ↓"), ("au_pcc", "mean PCC ↑")],
}
PAIRED = [("l1", "L1 ↓"), ("psnr", "PSNR ↑"), ("ssim", "SSIM ↑")]  # SynthFACS: edit vs exact target render


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a wemgan model folder (config.json + model.safetensors) or Hub id")
    p.add_argument("--data", required=True, help="synthfacs, a save_to_disk / parquet / imagefolder path or Hub id")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="score only the first N test images")
    p.add_argument("--seed", type=int, default=0, help="seed of the random pairing")
    p.add_argument(
        "--out", type=Path, default=Path("eval"), help="folder for results.json/.md, pairs.json, metrics.jsonl"
    )
    p.add_argument("--pairs", type=Path, default=None, help="reuse the pairs.json of an earlier run")
    p.add_argument("--write-edits", type=Path, default=None, metavar="DIR", help="keep the edits as DIR/NNNNN.png")
    p.add_argument("--openface-csv", type=Path, default=None, help="OpenFace output for the --write-edits folder")
    p.add_argument("--inception", type=Path, default=None, help="TorchScript Inception (see wemgan/metrics/fid_is.py)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--edit-faces", type=int, default=128, help="faces for the user-edit measures and sheet; 0 = skip")
    p.add_argument(
        "--realism", type=int, default=0, metavar="N",
        help="the realism two-sample test with N faces a side (e.g. 256; at most a third of the faces; "
        "against real faces and against real faces showing the expression; about an hour of CPU); 0 = skip",
    )  # fmt: skip
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------- pairs
def make_pairs(n: int, seed: int) -> list[int]:
    """For each image i, the index of a different random image whose AUs are its target."""
    if n < 2:
        raise ValueError(f"pairing needs at least 2 test images, got {n}")
    rng = np.random.default_rng(seed)
    return ((np.arange(n) + rng.integers(1, n, size=n)) % n).tolist()  # offset 1..n-1: never itself


def load_pairs(path: Path, n: int) -> tuple[list[int], int | None]:
    """The targets and seed of a pairs.json; they must fit the n test images of this run."""
    stored = json.loads(path.read_text())
    targets = stored["targets"]
    if len(targets) != n or not all(isinstance(t, int) and 0 <= t < n and t != i for i, t in enumerate(targets)):
        raise ValueError(f"{path} does not pair the {n} test images of this data (it holds {len(targets)} targets)")
    return targets, stored.get("seed")


# -------------------------------------------------------------------------------------------- data
def load_test_data(
    source: str, split: str, limit: int | None, size: int = 128
) -> tuple[torch.Tensor, np.ndarray, np.ndarray | None]:
    """Images N x 3 x size x size in [-1, 1], AUs N x 17, and SynthFACS identity seeds (or None)."""
    options: dict[str, Any] = {}
    if source.strip().lower() == "synthfacs" and limit is not None:
        options = dict(n_identities=math.ceil(limit / SYNTHFACS_PER_IDENTITY), per_identity=SYNTHFACS_PER_IDENTITY)
    dataset = load_hf_dataset(source, split, limit=limit, **options)
    pixels = np.stack([np.asarray(to_model_size(row["image"].convert("RGB"), size)) for row in dataset])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    aus = np.asarray(dataset["aus"], dtype=np.float32)
    identities = np.asarray(dataset["identity"]) if "identity" in dataset.column_names else None
    return images, aus, identities


@torch.inference_mode()
def run_model(model: WEMGAN, images: torch.Tensor, aus: np.ndarray, targets: list[int], batch_size: int) -> dict:
    """Edits G(x, u_y - u_x), reconstructions G(x, 0) and estimator AUs of edits and sources."""
    relative = torch.from_numpy(aus[targets] - aus)
    out: dict[str, list[torch.Tensor]] = {"edits": [], "reconstructions": [], "edit_aus": [], "source_aus": []}
    for x, u in zip(images.split(batch_size), relative.split(batch_size), strict=True):
        edit = model.edit_crops(x, u).clamp(-1, 1)
        out["edits"].append(edit)
        out["reconstructions"].append(model.edit_crops(x, torch.zeros_like(u)).clamp(-1, 1))
        out["edit_aus"].append(model.au_estimator(edit))
        out["source_aus"].append(model.au_estimator(x))
    return {name: torch.cat(parts) for name, parts in out.items()}


# ----------------------------------------------------------------------------------------- scoring
def write_edits(folder: Path, names: Sequence[str], edits: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, pixels in zip(names, edits, strict=True):
        Image.fromarray(pixels).save(folder / f"{name}.png")


def expression_scores(
    args: argparse.Namespace, outputs: dict, aus: np.ndarray, targets: list[int], names: Sequence[str]
) -> dict:
    """ED of the edits and of the unedited sources against the target AUs (see the module docstring)."""
    target_aus = aus[targets]
    if args.openface_csv:
        edit_aus, source_aus = metrics.read_openface_aus(args.openface_csv, names), aus
    else:
        edit_aus, source_aus = outputs["edit_aus"].numpy(), outputs["source_aus"].numpy()
    return {
        "ed": float(metrics.expression_distances(edit_aus, target_aus).mean()),
        "ed_source": float(metrics.expression_distances(source_aus, target_aus).mean()),
    }


def score(
    args: argparse.Namespace,
    model: WEMGAN,
    images: torch.Tensor,
    aus: np.ndarray,
    identities: np.ndarray | None,
    targets: list[int],
) -> tuple[dict[str, float | None], dict[str, str]]:
    """(metrics, unavailable reasons): every metric key is present, None where unavailable."""
    outputs = run_model(model, images, aus, targets, args.batch_size)
    sources, edits = metrics.to_unit(images), metrics.to_unit(outputs["edits"])
    sources_u8, edits_u8 = metrics.to_uint8(images), metrics.to_uint8(outputs["edits"])
    names = [f"{i:05d}" for i in range(len(images))]
    if args.write_edits:
        write_edits(args.write_edits, names, edits_u8)
    values: dict[str, float | None] = expression_scores(args, outputs, aus, targets, names)
    values |= metrics.estimator_errors(outputs["source_aus"].numpy(), aus)
    unavailable: dict[str, str] = {}

    def missing(keys: Sequence[str], reason: str) -> None:
        values.update(dict.fromkeys(keys))
        unavailable.update(dict.fromkeys(keys, reason))

    if reason := metrics.acd_unavailable():
        missing(["acd"], reason)
    else:
        values["acd"] = float(metrics.content_distances(sources_u8, edits_u8).mean())

    reconstructions = metrics.to_unit(outputs["reconstructions"])
    values["l1"] = float(metrics.l1(reconstructions, sources).mean())
    values["psnr"] = float(metrics.psnr(reconstructions, sources).mean())
    if ssim_reason := metrics.ssim_unavailable():
        missing(["ssim"], ssim_reason)
    else:
        values["ssim"] = float(metrics.ssim(reconstructions, sources).mean())

    if reason := metrics.inception_unavailable(args.inception):
        missing(["is", "is_std", "fid"], reason)
    else:
        values |= inception_scores(args.inception, sources_u8, edits_u8, args.batch_size)

    if identities is not None:  # SynthFACS: the exact target render exists
        truths = metrics.ground_truth(identities.tolist(), aus[targets], images.shape[-1]).astype(np.float64) / 255
        values |= metrics.paired_scores(edits, sources, truths, with_ssim=ssim_reason is None)
        if ssim_reason:
            missing(["paired_ssim", "paired_ssim_source", "paired_ssim_gain"], ssim_reason)
    return values, unavailable


def inception_scores(path: Path, reals: np.ndarray, fakes: np.ndarray, batch_size: int) -> dict[str, float]:

    net = fid_is.load_inception(path)
    real_features, _ = fid_is.inception_outputs(net, reals, batch_size)
    fake_features, fake_logits = fid_is.inception_outputs(net, fakes, batch_size)
    mean, std = fid_is.inception_score(fake_logits)
    fid = fid_is.frechet_distance(*fid_is.feature_statistics(real_features), *fid_is.feature_statistics(fake_features))
    return {"is": mean, "is_std": std, "fid": fid}


# ------------------------------------------------------------------------------------------ output
def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def markdown(results: dict) -> str:
    """The Markdown report of one run: a header with model, data, pairs and seed, then Tables 3-5."""
    lines = [
        "# WEM-GAN evaluation",
        "",
        f"- model: `{results['model']}` ({'trained' if results['trained'] else 'UNTRAINED: random weights'})",
        f"- data: `{results['data']}` split `{results['split']}`, {results['pairs']} pairs, seed {results['seed']}",
        f"- ED measured by: {results['ed_by']}; AUs on the [0, 1] scale (×5 for OpenFace units)",
        "",
    ]
    for title, columns in TABLES.items():
        present = [(key, header) for key, header in columns if key in results["metrics"]]
        if not present:
            continue
        lines += [f"## {title}", "", "| " + " | ".join(h for _, h in present) + " |"]
        lines += [
            "|" + "---:|" * len(present),
            "| " + " | ".join(_cell(results["metrics"][k]) for k, _ in present) + " |",
            "",
        ]
    if "paired_l1" in results["metrics"]:
        lines += paired_table(results["metrics"])
    if results.get("edits"):
        lines += edit_markdown(results["edits"], metrics.reference_points())
    if results.get("realism"):
        lines += realism_markdown(results["realism"])
    if results["unavailable"]:
        by_reason: dict[str, list[str]] = {}
        for key, reason in results["unavailable"].items():
            by_reason.setdefault(reason, []).append(key)
        lines += ["## Unavailable", "", *(f"- {', '.join(keys)}: {reason}" for reason, keys in by_reason.items()), ""]
    return "\n".join(lines)


def paired_table(values: dict[str, float | None]) -> list[str]:
    """SynthFACS rows: the edit and the unedited source against the exact target render, and the gain."""
    rows = [("edit", ""), ("unedited source", "_source"), ("gain (> 0: edit closer)", "_gain")]
    lines = ["## SynthFACS: against the exact target render", "", "| | " + " | ".join(h for _, h in PAIRED) + " |"]
    lines.append("|---|" + "---:|" * len(PAIRED))
    for label, suffix in rows:
        lines.append(f"| {label} | " + " | ".join(_cell(values.get(f"paired_{k}{suffix}")) for k, _ in PAIRED) + " |")
    return [*lines, ""]


def write_results(out: Path, results: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    with open(out / "metrics.jsonl", "a") as f:  # one line per run, as stylegan3's metric logs
        f.write(json.dumps(results) + "\n")


# -------------------------------------------------------------------------------------------- main
def evaluate(args: argparse.Namespace) -> dict:
    """Run the protocol and write the outputs; returns the results dict."""
    model = WEMGAN.from_pretrained(str(args.model)).float().eval()
    if not model.is_trained:
        logger.warning("%s has no training provenance: a randomly initialised model's scores mean nothing", args.model)
    images, aus, identities = load_test_data(args.data, args.split, args.limit, model.image_size)
    targets, seed = (
        load_pairs(args.pairs, len(images)) if args.pairs else (make_pairs(len(images), args.seed), args.seed)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = {"data": str(args.data), "split": args.split, "seed": seed, "targets": targets}
    (args.out / "pairs.json").write_text(json.dumps(pairs) + "\n")
    values, unavailable = score(args, model, images, aus, identities, targets)
    edit_scores = None
    if args.edit_faces:
        edit_scores, sheet, edit_unavailable = score_edits(
            model, metrics.to_uint8(images), aus, targets, args.edit_faces
        )
        sheet.save(args.out / "sheet.png")
        unavailable |= {f"edits/{key}": reason for key, reason in edit_unavailable.items()}
    realism = realism_scores(model, metrics.to_uint8(images), aus, targets, args.realism) if args.realism else None
    results = {
        "model": str(args.model),
        "trained": model.is_trained,
        "provenance": model.provenance,
        "data": str(args.data),
        "split": args.split,
        "pairs": len(targets),
        "seed": seed,
        "pairs_from": str(args.pairs) if args.pairs else "drawn with the seed",
        "ed_by": f"OpenFace CSV {args.openface_csv}" if args.openface_csv else "the model's built-in AU estimator",
        "psnr_cap_db": metrics.PSNR_CAP,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "metrics": values,
        "edits": edit_scores,
        "realism": realism,
        "unavailable": unavailable,
    }
    write_results(args.out, results)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    results = evaluate(args)
    print(markdown(results))
    print(f"wrote {args.out / 'results.json'}, {args.out / 'results.md'}, appended {args.out / 'metrics.jsonl'}")


if __name__ == "__main__":
    main()
