"""The landmark editor's offline fits, from real faces (faces-au), and their command line.

    python -m wemgan.landmark_fit fit --data ../shared/data/faces-au --out wemgan/landmark_motion.json
    python -m wemgan.landmark_fit train-regressor --cache-folder DIR --out DIR
    python -m wemgan.landmark_fit appearance --data ../shared/data/faces-au --cache-folder DIR

- fit: the AU -> landmark motion basis (wemgan.landmark_motion). A per-region linear regression of
  dlib's 68 landmarks, in an eye-aligned frame (origin between the eye centres, eye line
  horizontal, IOD 1), on the labels of the AUs that FACS lets move that region, with head pose as
  nuisance covariates. Both restrictions matter: in photos AUs come with poses (eyes closed with
  the head tilted down, AU15 with a turned head), and an unrestricted fit moves the jaw 18 px for
  AU15 and the nose 12 px for AU45. AU26's row is not fitted on its labels, which in faces-au do
  not read a dropped jaw: it is real faces' jaw opening (jaw_drop_motion). About 1 ms per face for
  the landmarks (dlib's predictor in the training crops' template box).
- train-regressor: dlib's landmarks distilled into the LandmarkRegressor the editor runs.
- appearance: the smile's brightness patterns (wemgan.landmark_appearance): every train crop warped
  onto the mean landmarks, its log-brightness high-passed (APPEARANCE_HIGH_PASS px), each pixel
  regressed on the 17 labels (ridge), the APPEARANCE_AUS' coefficients masked to the skin.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from torch import Tensor, nn

from .aus import AU_NAMES, NUM_AUS
from .flow import max_filter, polygon_coverage, warp
from .landmark_appearance import APPEARANCE_AUS, APPEARANCE_FILE, MAP_SIZE
from .landmark_motion import JAW_DROP_AU, MOTION_FILE, inner_lip_gap, landmark_displacements, motion_flow
from .landmark_regressor import LandmarkRegressor
from .metrics.acd import TEMPLATE_BOX
from .metrics.geometry import geometry_changes, landmarks68, load_train_faces, natural_effects, write_packaged_json
from .metrics.reconstruction import to_uint8
from .model import WEMGAN

REGIONS: dict[str, range] = {  # iBUG 68-point indices, 0-based
    "jaw": range(0, 17),
    "brows": range(17, 27),
    "nose": range(27, 36),
    "eyes": range(36, 48),
    "mouth": range(48, 68),
}
# Which AUs may move which region (FACS). The nose has none: AU09 wrinkles its skin, and in
# these labels it mostly comes with a raised head, so letting it move the nose moves the face.
MOVED_BY: dict[str, tuple[str, ...]] = {
    "jaw": ("AU26",),
    "brows": ("AU01", "AU02", "AU04"),
    "nose": (),
    "eyes": ("AU05", "AU06", "AU07", "AU45"),
    "mouth": ("AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26"),
}
# OpenFace's AU26 labels in faces-au do not read a dropped jaw (metrics.geometry.EFFECT_OF): regressed on
# them, AU26 moved the chin 0.07 IOD and parted no lips, and the slider changed nothing a person could
# see. Its motion is the jaw opening of real faces instead: the landmarks' regression on the measured gap
# between the inner lips (pose and the other AUs held fixed), kept on the points the lowered jaw
# carries (FACS: AU26 lowers the mandible; the upper lip, the nose and the eyes stay). Label 1 opens the
# lips as far as the widest common real opening: JAW_DROP_QUANTILE of the train faces' gaps (0.31 IOD).
# Not the gain rule's: a smooth warp measured by dlib stretches lips rather than parting them.
JAW_DROP_QUANTILE = 0.99
JAW_DROP_POINTS = (*range(0, 17), 48, 54, 55, 56, 57, 58, 59, 60, 64, 65, 66, 67)  # jaw, lower lip, corners
RIDGE = 10.0  # on the AU coefficients only: rare AUs (AU45 has 7 faces at >= 0.6) shrink toward no motion
GAIN_FACES = 48  # train faces per AU on which the gain is measured
APPEARANCE_HIGH_PASS = 8.0  # px at 128 px: the Gaussian taken off the log-brightness (lighting and skin tone)
APPEARANCE_RIDGE = 0.01  # ridge penalty per face (x the number of faces) on the AU coefficients
SKIN_MARGIN = 2  # px at 128 px: how far beyond the eyes, brows and lips the maps are left out
FIT_BATCH = 64
# Point i of a mirrored face is point MIRRORED_LANDMARKS[i] of the face (iBUG 68, 0-based).
MIRRORED_LANDMARKS = (
    *range(16, -1, -1), *range(26, 21, -1), *range(21, 16, -1), 27, 28, 29, 30, *range(35, 30, -1),  # jaw, brows, nose
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,  # eyes
    *range(54, 47, -1), 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,  # lips
)  # fmt: skip
# Bin edges of mouth openness (inner-lip gap / IOD). In faces-au's train crops the bins hold 30%, 29%,
# 28%, 11% and 0.5% of the faces: a regressor trained on them as they come closes wide-open mouths
# (it puts the inner lips on the teeth), so training draws the rarer bins more often, up to MAX_OVERSAMPLING x.
OPENNESS_EDGES = (0.02, 0.1, 0.2, 0.35)
MAX_OVERSAMPLING = 8.0
# Jitter of the regressor's training crops. Aligned crops of photos sit a few pixels and degrees off
# faces-au's own alignment, with other contrast; without jitter the regressor leans on where a part
# usually is and reads toothy laughs on photos as closed mouths.
JITTER_SCALE = 0.08  # crops zoomed by a factor in [1 - s, 1 + s]
JITTER_SHIFT = 0.05  # and moved by up to this fraction of their side
JITTER_DEGREES = 8.0  # and turned by up to this angle
JITTER_CONTRAST = 0.2  # contrast and brightness multiplied / shifted by up to this much
ABOUT = (
    "Per-AU change of log-brightness of faces-au train crops warped onto the mean landmarks (high-passed"
    " at APPEARANCE_HIGH_PASS px; ridge regression of each pixel on the 17 AU labels), kept for APPEARANCE_AUS,"
    " masked to the skin (eyes, brows, lips and the skin between nose and upper lip left out), at MAP_SIZE px."
    " Written by python -m wemgan.landmark_fit appearance."
)


def eye_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin N x 2, unit eye-line direction N x 2, IOD N) of N x 68 x 2 landmarks in pixels."""
    right_eye, left_eye = landmarks[:, 36:42].mean(1), landmarks[:, 42:48].mean(1)
    line = left_eye - right_eye
    iod = np.linalg.norm(line, axis=1)
    return (right_eye + left_eye) / 2, line / iod[:, None], iod


def eye_frame_shapes(landmarks: np.ndarray) -> np.ndarray:
    """N x 68 x 2 landmarks (pixels) in their eye frame: origin between the eye centres, x along the
    eye line, y down, in units of the IOD."""
    origin, direction, iod = eye_frame(landmarks)
    cos, sin = direction[:, 0], direction[:, 1]
    rel = landmarks - origin[:, None]
    return np.stack([cos[:, None] * rel[..., 0] + sin[:, None] * rel[..., 1],
                     -sin[:, None] * rel[..., 0] + cos[:, None] * rel[..., 1]], -1) / iod[:, None, None]  # fmt: skip


def fit_motion(landmarks: np.ndarray, aus: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """17 x 68 x 2: each AU's displacement of each landmark at label 1, in the eye frame (IODs);
    JAW_DROP_AU's is real faces' jaw opening (jaw_drop_motion)."""
    landmarks, aus = np.asarray(landmarks, dtype=np.float64), np.asarray(aus, dtype=np.float64)
    shapes = eye_frame_shapes(landmarks)
    yaw, pitch = shapes[:, 30, 0], shapes[:, 30, 1]  # the nose tip in the eye frame
    pose = np.stack([yaw, pitch, yaw**2, pitch**2, yaw * pitch], 1)
    pose = (pose - pose.mean(0)) / pose.std(0)
    basis = np.zeros((NUM_AUS, 68, 2))
    for region, points in REGIONS.items():
        columns = [AU_NAMES.index(name) for name in MOVED_BY[region]]
        if not columns:
            continue
        design = np.concatenate([np.ones((len(aus), 1)), pose, aus[:, columns]], 1)
        penalty = np.diag([0.0] * (1 + pose.shape[1]) + [ridge] * len(columns))
        targets = shapes[:, list(points)].reshape(len(aus), -1)
        coef = np.linalg.solve(design.T @ design + penalty, design.T @ targets)
        for row, column in enumerate(columns):
            basis[column, list(points)] = coef[1 + pose.shape[1] + row].reshape(len(points), 2)
    # AU26's labels stay a covariate above, so the other AUs' rows are fitted as before (those labels
    # go with lower chins and closed lips: docs/research/jaw_labels.py); its own row is replaced.
    basis[AU_NAMES.index(JAW_DROP_AU)] = jaw_drop_motion(shapes, aus, pose)
    return basis


def jaw_drop_motion(shapes: np.ndarray, aus: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """68 x 2: how real faces' landmarks move (eye frame, IODs) as the gap between the inner lips grows
    by its JAW_DROP_QUANTILE, on JAW_DROP_POINTS: least squares of the shapes on the gap, the pose and
    every label but AU25's and AU26's (which the gap stands for)."""
    gap = mouth_openness(shapes)  # shapes are in IODs, so this is the gap in IODs
    others = [AU_NAMES.index(name) for name in AU_NAMES if name not in ("AU25", JAW_DROP_AU)]
    design = np.concatenate([np.ones((len(shapes), 1)), pose, aus[:, others], gap[:, None]], 1)
    coef = np.linalg.lstsq(design, shapes.reshape(len(shapes), -1), rcond=None)[0][-1].reshape(68, 2)
    motion = np.zeros((68, 2))
    motion[list(JAW_DROP_POINTS)] = coef[list(JAW_DROP_POINTS)]
    return motion * np.quantile(gap, JAW_DROP_QUANTILE)


def resting_lip_gap(shapes: np.ndarray, aus: np.ndarray, basis: np.ndarray) -> float:
    """IODs: the inner-lip gap of a face whose jaw is not dropped, given its labels: the median over the
    faces (N x 68 x 2 eye-frame shapes, N x 17 labels) of their gap less what the basis's other AUs' rows
    make of their labels (most faces do not drop the jaw; an AU reader's AU26 starts above it)."""
    per_label = inner_lip_gap(torch.from_numpy(basis), eye_frame=False).numpy()
    per_label[AU_NAMES.index(JAW_DROP_AU)] = 0
    return float(np.median(mouth_openness(shapes) - aus @ per_label))


def warp_effects(images: np.ndarray, aus: np.ndarray, basis: Tensor, faces: int = GAIN_FACES, seed: int = 0) -> dict:
    """Per AU with a geometry measure (metrics.natural_effects): the change of that measure when
    `faces` train crops without the AU (label <= 0.1) are warped by the basis for u = the mean label
    of faces showing it minus that of faces without, as a fraction of the natural effect (1 = the
    warp moves a face as far as real faces with and without the AU differ, as dlib reads them)."""

    rng = np.random.default_rng(seed)
    fractions = {}
    for name, effect in natural_effects().items():
        column = AU_NAMES.index(name)
        shown, absent = aus[:, column] >= 0.6, aus[:, column] <= 0.1
        chosen = np.sort(rng.choice(np.flatnonzero(absent), min(faces, int(absent.sum())), replace=False))
        sources = np.ascontiguousarray(images[chosen])
        x = torch.from_numpy(sources).permute(0, 3, 1, 2).float() / 127.5 - 1
        landmarks = crop_landmarks(x)
        u_rel = torch.zeros(len(chosen), NUM_AUS)
        u_rel[:, column] = float(aus[shown, column].mean() - aus[absent, column].mean())
        moves = landmark_displacements(landmarks, u_rel, basis)
        size = x.shape[-1]
        changes = geometry_changes(sources, to_uint8(warp(x, motion_flow(landmarks, moves, size, size))))
        fractions[name] = float(changes[effect["measure"]].mean() / effect["effect"])
    return fractions


def template_box(height: int, width: int):
    """The dlib.rectangle of the face in an aligned training crop (acd.TEMPLATE_BOX scaled to it)."""
    import dlib  # the faces extra: loaded only by the fits that need it

    left, top, right, bottom = TEMPLATE_BOX
    return dlib.rectangle(round(left * width), round(top * height), round(right * width), round(bottom * height))


def crop_landmarks(images: Tensor) -> Tensor:
    """B x 68 x 2 pixel positions of dlib's landmarks on B x 3 x H x W training crops in [-1, 1]
    (in the template box of an aligned crop: no detection, about 1 ms per face on one core)."""

    pixels = ((images.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    box = template_box(*images.shape[-2:])
    points = landmarks68(pixels.permute(0, 2, 3, 1).numpy(), [box] * len(images))
    return torch.from_numpy(points).float().to(images.device)


def fit(data: str, cache_folder: str | None = None, ridge: float = RIDGE) -> dict:
    """Landmark the train faces and fit the basis; returns what landmark_motion.json holds."""

    images, aus = load_train_faces(data, cache_folder)
    height, width = images.shape[1:3]
    landmarks = landmark_labels(images)
    basis = fit_motion(landmarks, aus, ridge)
    # A regression on noisy labels (OpenFace's) is diluted toward no motion, and the warp realises
    # less than the landmark moves it is given: the gain sets the median AU's warp to its natural effect.
    fractions = warp_effects(images, aus, torch.from_numpy(basis).float())
    # The median AU's own fraction (of an even count, the higher one rather than an average of two).
    gain = 1 / float(np.quantile([v for name, v in fractions.items() if name != JAW_DROP_AU], 0.5, method="higher"))
    # No AU is pushed past its own natural effect (at 1.59 the old AU26 fit pulled chins down into a
    # stretched smear). The jaw drop's size is set in the fit (JAW_DROP_QUANTILE), not here.
    au_gain = {name: min(gain, 1 / value) for name, value in fractions.items() if value > 0}
    au_gain[JAW_DROP_AU] = 1.0
    return {
        "about": (
            "Displacement of dlib's 68 landmarks per AU at label 1, in an eye-aligned frame (origin between the "
            "eye centres, x along the eye line, units of the inter-ocular distance): per-region ridge regression "
            "on faces-au train crops of the AUs FACS lets move the region, head pose (nose-tip position and its "
            "squares) as nuisance covariates; AU26's (whose labels here do not read a dropped jaw) is the jaw opening "
            "of real faces, the regression of the jaw's and lower lip's landmarks on the measured gap between the "
            "inner lips, label 1 opening them by the 99th percentile of train faces' gaps (au_gain 1). "
            "motion_basis() multiplies it by gain: 1 / the median over AUs of how "
            "far the landmark warp moves train faces (dlib-read geometry, u = mean label with the AU minus without) "
            "as a fraction of the natural effect; an AU whose warp at that gain would pass its natural effect has "
            "au_gain = 1 / its fraction instead. resting_lip_gap: the median train face's inner-lip gap (IODs) less "
            "what the other AUs' rows make of its labels, from which an AU reader's AU26 (jaw drop) is read off the "
            "landmarks. "
            "Written by python -m wemgan.landmark_fit fit."
        ),
        "data": data if not Path(data).is_absolute() else Path(data).name,
        "split": "train",
        "faces": len(images),
        "image_size": [int(height), int(width)],
        "ridge": ridge,
        "moved_by": {region: list(names) for region, names in MOVED_BY.items()},
        "au_names": list(AU_NAMES),
        "gain": round(gain, 4),
        "au_gain": {name: round(value, 4) for name, value in au_gain.items()},
        "warp_fraction_of_natural_effect_at_gain_1": {name: round(value, 3) for name, value in fractions.items()},
        "resting_lip_gap": round(resting_lip_gap(eye_frame_shapes(landmarks.astype(np.float64)), aus, basis), 5),
        "basis": np.round(basis, 5).tolist(),
    }


def landmark_labels(images: np.ndarray) -> np.ndarray:
    """N x 68 x 2 dlib landmarks (template box) of N x H x W x 3 uint8 crops, 512 at a time."""

    box = template_box(*images.shape[1:3])
    points = np.empty((len(images), 68, 2), dtype=np.float32)
    for start in range(0, len(images), 512):  # np.array: a contiguous copy of a memory-mapped slice
        chunk = np.array(images[start : start + 512])
        points[start : start + len(chunk)] = landmarks68(chunk, [box] * len(chunk))
    return points


def mouth_openness(landmarks: np.ndarray) -> np.ndarray:
    """N: the gap between the inner lips (landmark_motion.inner_lip_gap) of N x 68 x 2 landmarks, in IODs."""
    return inner_lip_gap(torch.from_numpy(np.asarray(landmarks, dtype=np.float64))).numpy()


def openness_weights(openness: np.ndarray) -> Tensor:
    """N sampling weights that draw each openness bin (OPENNESS_EDGES) as often as the most common one,
    or MAX_OVERSAMPLING x its share, whichever is less."""
    bins = np.digitize(openness, OPENNESS_EDGES)
    counts = np.bincount(bins, minlength=len(OPENNESS_EDGES) + 1)
    per_bin = np.minimum(counts.max() / np.maximum(counts, 1), MAX_OVERSAMPLING)
    return torch.from_numpy(per_bin[bins])


def mirrored(faces: Tensor, landmarks: Tensor) -> tuple[Tensor, Tensor]:
    """The faces (B x 3 x S x S) flipped left-right and their landmarks (B x 68 x 2 pixels) to match."""
    points = landmarks[:, MIRRORED_LANDMARKS]
    return faces.flip(-1), torch.stack([faces.shape[-1] - 1 - points[..., 0], points[..., 1]], -1)


def jittered(faces: Tensor, landmarks: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The faces (B x 3 x S x S in [-1, 1]) zoomed, moved, turned and re-lit at random (JITTER_*), and
    their landmarks (B x 68 x 2 pixels) moved with them."""
    b, side = faces.shape[0], faces.shape[-1]

    def uniform(limit: float) -> Tensor:
        return (torch.rand(b, generator=generator) * 2 - 1) * limit

    angle, scale = uniform(JITTER_DEGREES).deg2rad(), 1 + uniform(JITTER_SCALE)
    cos, sin = angle.cos() / scale, angle.sin() / scale
    # output -> input map in grid_sample's [-1, 1] coordinates: rotate and zoom about the centre, shift
    matrix = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], 1)  # B x 2 x 2
    shift = torch.stack([uniform(2 * JITTER_SHIFT), uniform(2 * JITTER_SHIFT)], -1)  # B x 2
    grid = nn.functional.affine_grid(torch.cat([matrix, shift[..., None]], -1), list(faces.shape), align_corners=False)
    moved = nn.functional.grid_sample(faces, grid, padding_mode="border", align_corners=False)
    normalised = (2 * landmarks + 1) / side - 1
    inside = torch.linalg.solve(matrix, (normalised - shift[:, None]).transpose(1, 2)).transpose(1, 2)
    contrast, brightness = 1 + uniform(JITTER_CONTRAST), uniform(JITTER_CONTRAST)
    relit = (moved * contrast.view(-1, 1, 1, 1) + brightness.view(-1, 1, 1, 1)).clamp(-1, 1)
    return relit, ((inside + 1) * side - 1) / 2


def train_regressor(
    cache_folder: str, out: Path, steps: int, batch_size: int = 64, learning_rate: float = 2e-3, holdout: int = 1000
) -> dict:
    """Distil dlib's landmarks of the training crops into a LandmarkRegressor (Adam, L1 in pixels,
    cosine decay; half the faces mirrored, all jittered, open mouths drawn more often:
    openness_weights); writes out/model.safetensors and out/model.json, returns the record."""

    images, _ = load_train_faces("", cache_folder)
    labels = torch.from_numpy(landmark_labels(images))
    openness = mouth_openness(labels.numpy())
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    held, train = order[:holdout], order[holdout:]
    weights = openness_weights(openness[train.numpy()])
    net = LandmarkRegressor(images.shape[1])
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    sampler = torch.Generator().manual_seed(1)

    def faces_and_labels(rows: Tensor) -> tuple[Tensor, Tensor]:
        """These rows' crops in [-1, 1] and dlib's landmarks, read in sorted order (memory-mapped reads)."""
        rows = rows.sort().values
        faces = torch.from_numpy(np.array(images[rows.numpy()])).permute(0, 3, 1, 2).float() / 127.5 - 1
        return faces, labels[rows]

    def error(rows: Tensor) -> Tensor:
        """Per-landmark (x, y) error in pixels on these rows."""
        faces, target = faces_and_labels(rows)
        return net(faces) - target

    for step in range(steps):
        faces, target = faces_and_labels(train[torch.multinomial(weights, batch_size, True, generator=sampler)])
        flip = torch.rand(batch_size, generator=sampler) < 0.5
        flipped_faces, flipped_target = mirrored(faces, target)
        faces = torch.where(flip.view(-1, 1, 1, 1), flipped_faces, faces)
        target = torch.where(flip.view(-1, 1, 1), flipped_target, target)
        faces, target = jittered(faces, target, sampler)
        loss = (net(faces) - target).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 200 == 0:
            print(f"step {step}: L1 {loss.item():.2f} px", flush=True)
    net.eval()
    with torch.no_grad():
        held = held.sort().values  # the order error() reads them in
        errors = torch.cat([error(rows).norm(dim=-1) for rows in held.split(250)])
    open_mouths = torch.from_numpy(openness[held.numpy()] >= OPENNESS_EDGES[2])
    record = {
        "about": "LandmarkRegressor distilled from dlib's 68-point predictor (template box) on faces-au train crops",
        "config": {"image_size": int(images.shape[1])},
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "held_out_faces": holdout,
        "held_out_mean_error_px": round(errors.mean().item(), 3),
        "held_out_error_px_p95": round(errors.flatten().quantile(0.95).item(), 3),
        "held_out_open_mouths": int(open_mouths.sum()),
        "held_out_open_mouth_inner_lip_error_px": (
            round(errors[open_mouths][:, 60:68].mean().item(), 3) if open_mouths.any() else None
        ),
        "sampling": f"half mirrored; openness bins {list(OPENNESS_EDGES)} (inner-lip gap / IOD) drawn evenly, "
        f"at most {MAX_OVERSAMPLING:g} x; jitter: zoom {JITTER_SCALE:g}, shift {JITTER_SHIFT:g}, "
        f"{JITTER_DEGREES:g} degrees, contrast and brightness {JITTER_CONTRAST:g}",
        "command": "python -m wemgan.landmark_fit train-regressor",
    }
    staging = out.with_name(out.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(net.state_dict(), staging / "model.safetensors")
    (staging / "model.json").write_text(json.dumps(record, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return record


def load_landmark_regressor(folder: str | Path) -> tuple[LandmarkRegressor, dict]:
    """(the LandmarkRegressor, in float32 eval mode, frozen; how it was trained) of a folder that
    train-regressor wrote (model.safetensors + model.json), or of a model folder whose landmark
    editor holds one (such as hub/default)."""
    folder = Path(folder)
    if (folder / "config.json").is_file() and not (folder / "model.json").is_file():
        model = WEMGAN.from_pretrained(folder)
        if model.editor is None:
            raise ValueError(f"the model in {folder} has no landmark editor, so no landmark regressor")
        record = {**model.provenance.get("landmark_regressor", {}), "folder": str(folder)}
        return model.editor.landmark_regressor.float().eval().requires_grad_(False), record
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"no landmark regressor in {folder}: train one with python -m wemgan.landmark_fit train-regressor "
            f"--cache-folder DIR --out {folder}, or name a model folder that holds one (hub/default)"
        )
    record = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    regressor = LandmarkRegressor(**record["config"])
    regressor.load_state_dict(safetensors.torch.load_file(folder / "model.safetensors"))
    return regressor.eval().requires_grad_(False), {**record, "folder": str(folder)}


def blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of B x C x H x W (edges repeated)."""
    radius = max(1, int(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(x.dtype)
    channels = x.shape[1]
    x = nn.functional.pad(x, (radius, radius, 0, 0), mode="replicate")
    x = nn.functional.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    x = nn.functional.pad(x, (0, 0, radius, radius), mode="replicate")
    return nn.functional.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def skin_mask(landmarks: Tensor, image_size: int) -> Tensor:
    """B x 1 x S x S: the face inside its outline (jaw and brows), less the eyes, the brows, the lips
    and the skin between nose and upper lip, grown by SKIN_MARGIN px, softened over 1.5 px."""

    outline = polygon_coverage(landmarks[:, list(range(17)) + list(range(26, 16, -1))], image_size)
    holes = [polygon_coverage(landmarks[:, list(points)], image_size) for points in (range(36, 42), range(42, 48))]
    holes.append(polygon_coverage(landmarks[:, 48:60], image_size))
    # The skin between the nose and the upper lip: its pattern darkens it like a moustache's shadow.
    holes.append(polygon_coverage(landmarks[:, [31, 32, 33, 34, 35, 54, 53, 52, 51, 50, 49, 48]], image_size))
    for first, last in ((17, 22), (22, 27)):  # a brow is a line: a band 3 px above and below it
        brow = landmarks[:, first:last]
        shift = torch.tensor([0.0, 3.0], device=landmarks.device)
        holes.append(polygon_coverage(torch.cat([brow - shift, (brow + shift).flip(1)], 1), image_size))
    holes = torch.stack(holes).sum(0).clamp(0, 1)
    holes = max_filter(holes, SKIN_MARGIN)
    return blur((outline - holes).clamp(0, 1), 1.5)


def fit_maps(images: np.ndarray, aus: np.ndarray, landmarks: np.ndarray) -> tuple[Tensor, Tensor]:
    """(mean landmarks 68 x 2, maps K x MAP_SIZE x MAP_SIZE) for APPEARANCE_AUS from N uint8 crops
    (N x S x S x 3), their labels (N x 17) and dlib landmarks (N x 68 x 2, pixels)."""

    size = images.shape[1]
    landmarks = torch.as_tensor(landmarks, dtype=torch.float32)
    mean = landmarks.mean(0, keepdim=True)
    patterns = []
    with torch.no_grad():
        for start in range(0, len(images), FIT_BATCH):
            x = torch.from_numpy(np.array(images[start : start + FIT_BATCH])).permute(0, 3, 1, 2)
            x = x.float() / 127.5 - 1
            points = landmarks[start : start + FIT_BATCH]
            # The output at the mean landmarks shows the face at its own: the face in the mean's frame.
            on_mean = warp(x, motion_flow(points, mean.expand_as(points) - points, size, size // 4))
            brightness = torch.log((on_mean + 1).mean(1, keepdim=True) / 2 + 0.05)
            detail = brightness - blur(brightness, APPEARANCE_HIGH_PASS)
            patterns.append(nn.functional.avg_pool2d(detail, size // MAP_SIZE))
    values = torch.cat(patterns).flatten(1).double()  # N x MAP_SIZE²
    design = torch.cat([torch.ones(len(aus), 1, dtype=torch.float64), torch.as_tensor(aus, dtype=torch.float64)], 1)
    ridge = [0.0] + [APPEARANCE_RIDGE * len(aus)] * (design.shape[1] - 1)
    penalty = torch.diag(torch.tensor(ridge, dtype=torch.float64))
    coefficients = torch.linalg.solve(design.T @ design + penalty, design.T @ values)[1:]  # 17 x MAP_SIZE²
    kept = coefficients[[AU_NAMES.index(name) for name in APPEARANCE_AUS]].float()
    kept = kept.view(-1, 1, MAP_SIZE, MAP_SIZE)
    skin = nn.functional.avg_pool2d(skin_mask(mean, size), size // MAP_SIZE)
    return mean[0], blur(kept * skin, 0.5)[:, 0]


def write_maps(path: Path, mean: Tensor, maps: Tensor, record: dict) -> None:
    """Write the fit to path atomically (safetensors, float16 maps; the record as metadata)."""

    path = Path(path)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        tensors = {"mean_landmarks": mean.float().contiguous(), "maps": maps.half().contiguous()}
        safetensors.torch.save_file(tensors, staging, metadata={"record": json.dumps(record)})
        os.chmod(staging, 0o644)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)


def fit_appearance(data: str, cache_folder: str | None, out: Path) -> dict:
    """Fit the appearance maps on the train split and write them to out; returns the record."""
    images, aus = load_train_faces(data, cache_folder)
    mean, maps = fit_maps(images, aus, landmark_labels(images))
    record = {
        "about": ABOUT,
        "data": data if not Path(data).is_absolute() else Path(data).name,
        "split": "train",
        "faces": len(images),
        "aus": list(APPEARANCE_AUS),
        "high_pass_px": APPEARANCE_HIGH_PASS,
        "ridge": APPEARANCE_RIDGE,
        "map_size": MAP_SIZE,
        "command": "python -m wemgan.landmark_fit appearance --data " + str(data),
    }
    write_maps(out, mean, maps, record)
    return record


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m wemgan.landmark_fit", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("fit", help="fit the AU -> landmark motion basis on real faces")
    command.add_argument("--data", required=True, help="the faces-au parquet folder (recorded as given: relative)")
    command.add_argument("--cache-folder", help="a decoded uint8 cache of the train split (images.npy, aus.npy)")
    command.add_argument("--ridge", type=float, default=RIDGE)
    command.add_argument("--out", type=Path, default=MOTION_FILE)
    command = commands.add_parser("train-regressor", help="distil dlib's landmarks into a LandmarkRegressor")
    command.add_argument("--cache-folder", required=True, help="a decoded uint8 cache of the train split")
    command.add_argument("--out", type=Path, required=True, help="folder for model.safetensors and model.json")
    command.add_argument("--steps", type=int, default=12000)
    command.add_argument("--batch-size", type=int, default=64)
    command.add_argument("--learning-rate", type=float, default=2e-3)
    command = commands.add_parser("appearance", help="fit the smile's brightness patterns on real faces")
    command.add_argument("--data", required=True, help="the faces-au parquet folder (recorded as given: relative)")
    command.add_argument("--cache-folder", help="a decoded uint8 cache of the train split (images.npy, aus.npy)")
    command.add_argument("--out", type=Path, default=APPEARANCE_FILE)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    if args.command == "train-regressor":
        record = train_regressor(args.cache_folder, args.out, args.steps, args.batch_size, args.learning_rate)
        print(json.dumps(record, indent=2))
    elif args.command == "appearance":
        record = fit_appearance(args.data, args.cache_folder, args.out)
        print(f"wrote {args.out}: {record['faces']} faces, maps of {', '.join(APPEARANCE_AUS)}")
    else:
        text = write_packaged_json(args.out, fit(args.data, args.cache_folder, args.ridge))
        print(f"wrote {args.out} ({len(text)} bytes)")


if __name__ == "__main__":
    main(parse_args())
