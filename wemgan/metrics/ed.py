"""Expression Distance (Table 3): L2 between the target AUs and the AUs measured on the edit.

AUs are on the [0, 1] scale of the datasets (OpenFace's 0-5 divided by 5; multiply by 5 for
OpenFace units). The measurer is the model's built-in AU estimator, or OpenFace 2.0 run on
the written edits (`--openface-csv`, as the paper does), read with the parser of
wemgan.data.prepare.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..aus import AU_NAMES
from ..data.datasets import check_aus, find_au_columns
from ..data.prepare import best_face_per_image, read_openface


def expression_distances(measured: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per sample ||measured - target||_2 of two N x 17 arrays."""
    measured, target = np.asarray(measured, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if measured.shape != target.shape or measured.ndim != 2:
        raise ValueError(f"expected two N x 17 arrays of one shape, got {measured.shape} and {target.shape}")
    return np.linalg.norm(measured - target, axis=1)


def estimator_errors(measured: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """How well a measurer (the built-in AU estimator) reads AUs: ED is only as good as it.

    au_mae: mean |measured - label| over samples and AUs ([0, 1] scale);
    au_pcc: Pearson correlation per AU over the samples, averaged over the AUs whose labels
    vary (the usual AU-intensity score; a constant AU has no correlation).
    """
    measured, labels = np.asarray(measured, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if measured.shape != labels.shape or measured.ndim != 2 or len(measured) < 2:
        raise ValueError(f"expected two N x 17 arrays of one shape, N >= 2, got {measured.shape} and {labels.shape}")
    varying = (labels.std(0) > 0) & (measured.std(0) > 0)
    pcc = [np.corrcoef(measured[:, j], labels[:, j])[0, 1] for j in np.flatnonzero(varying)]
    return {"au_mae": float(np.abs(measured - labels).mean()), "au_pcc": float(np.mean(pcc)) if pcc else float("nan")}


def read_openface_aus(path: str | Path, names: Sequence[str]) -> np.ndarray:
    """N x 17 AUs in [0, 1] that OpenFace measured on the images named `names` (file stems, e.g. "00012").

    path: OpenFace output for the edit folder (a folder of per-image CSVs or one CSV with a
    file-name column). Where OpenFace found several faces in an image, the most confident wins.
    """

    table = best_face_per_image(read_openface(Path(path)))
    table["_key"] = [Path(str(name)).stem for name in table["_name"]]
    table = table.drop_duplicates("_key").set_index("_key")
    missing = [name for name in names if name not in table.index]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{path} has no AUs for {len(missing)} of {len(names)} edits ({shown})")
    columns, scale = find_au_columns([str(column) for column in table.columns])
    values = table.loc[list(names), columns].apply(lambda column: column.astype(float)).to_numpy()
    aus, problems = check_aus(values, scale)
    bad = [name for name, problem in zip(names, problems, strict=True) if problem]
    if bad:
        raise ValueError(f"{path}: unusable AUs (NaN or out of range) for {', '.join(bad[:5])}")
    return aus


STRONG_AUS = ("AU04", "AU06", "AU12", "AU25", "AU26")


def strong_expression_ratios(
    measured: np.ndarray, labels: np.ndarray, aus: Sequence[str] = STRONG_AUS, share: float = 0.1
) -> dict[str, float]:
    """Does a measurer read strong expressions as strong? Per AU: on the `share` of faces with the
    strongest label, the mean measured value ÷ the mean label (1 = exact, 0.5 = reads half).

    A squared-error regressor shrinks towards the mean; transfer from a reference with a broad
    smile then asks for half a smile. N x 17 arrays in OpenFace order."""

    measured, labels = np.asarray(measured, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    ratios = {}
    for name in aus:
        j = AU_NAMES.index(name)
        top = np.argsort(labels[:, j])[-max(1, round(share * len(labels))) :]
        ratios[name] = float(measured[top, j].mean() / max(labels[top, j].mean(), 1e-9))
    return ratios
