"""Raw faces + OpenFace output -> a training dataset (parquet shards, the layout of shared/data/faces-au).

    python -m wemgan.data.prepare --images AffectNet/Manually_Annotated_Images \\
        --openface-csv openface_out/ --labels AffectNet/training.csv --out data/affectnet-au

--openface-csv is either a folder of per-image CSVs named after their image (OpenFace
FaceLandmarkImg: img001.csv for img001.jpg, one row per detected face: the most confident is
used) or one CSV with a file-name column. Columns are read by header name; the AUs are the
17 intensity columns AU01_r..AU45_r (0-5, divided by 5) or AU01..AU45 already in [0, 1].
Rows OpenFace marked unsuccessful (success 0) or below --min-confidence are dropped.

Expression labels (an `expression` / `label` column in the CSV, or --labels FILE with a
file-name column) are AffectNet codes 0-10 or names: the ten categories the paper kept
(Neutral ... Uncertain) are stored as a ClassLabel and stratify the train/test split;
Non-face (10) is dropped.

Faces are centre-cropped and resized to 128 x 128 (inputs that are already face crops), or
detected and aligned with --align (wemgan.faces). The output folder appears only when complete.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing
import os
import shutil
import types
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Generic, TypeVar

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image, ImageOps

from .. import faces
from ..aus import NUM_AUS
from .datasets import AFFECTNET_CATEGORIES, IMAGE_SIZE, SkipReport, check_aus, find_au_columns, to_model_size

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
FILE_NAME_COLUMNS = ("file_name", "filename", "file", "image", "image_path", "path", "subdirectory_filepath", "name")
EXPRESSION_COLUMNS = ("expression", "label", "emotion", "category")
T = TypeVar("T")
NON_FACE = 10  # AffectNet's code for "Non-Face"
JPEG_QUALITY = 93  # as shared/data/faces-au; no chroma subsampling keeps lips and brows crisp


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="folder of face images (searched recursively)")
    parser.add_argument("--openface-csv", type=Path, required=True, help="folder of per-image CSVs, or one CSV")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must not exist, see --overwrite)")
    parser.add_argument("--labels", type=Path, help="CSV with a file-name and an expression column (AffectNet)")
    parser.add_argument("--test-fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    parser.add_argument("--align", action="store_true", help="detect and align faces (wemgan.faces)")
    parser.add_argument("--min-confidence", type=float, default=0.5, help="drop OpenFace rows below this")
    parser.add_argument("--shard-rows", type=int, default=5000, help="rows per parquet shard")
    parser.add_argument("--num-workers", type=int, default=os.cpu_count() or 1, help="image processes")
    parser.add_argument("--source-name", help="the `source` column (default: the images folder's name)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    args = parser.parse_args(argv)
    if not 0 <= args.test_fraction < 1:
        parser.error(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    if args.shard_rows < 1 or args.num_workers < 1:
        parser.error("--shard-rows and --num-workers must be at least 1")
    return args


# ----------------------------------------------------------------------------------------------
# Matching CSV rows to image files


def name_key(name: str) -> str:
    """'./689/abc.JPG' -> '689/abc': how CSV entries and image files are matched."""
    path = PurePosixPath(str(name).strip().replace("\\", "/"))
    parts = [part for part in path.with_suffix("").parts if part not in (".", "/")]
    return "/".join(parts)


class NameIndex(Generic[T]):
    """Values found by a file name: its relative path without suffix or, when unique, its stem.

    CSV entries name images in many ways ('689/abc.jpg', 'abc.jpg', 'abc' for per-image CSVs).
    """

    def __init__(self, items: Iterable[tuple[str, T]]):
        self.by_key: dict[str, T] = {}
        stems: dict[str, list[T]] = {}
        for name, value in items:
            key = name_key(name)
            self.by_key[key] = value
            stems.setdefault(PurePosixPath(key).name, []).append(value)
        self.by_stem = {stem: values[0] for stem, values in stems.items() if len(values) == 1}

    def find(self, name: str) -> T | None:
        key = name_key(name)
        found = self.by_key.get(key)
        return found if found is not None else self.by_stem.get(PurePosixPath(key).name)


def index_images(folder: Path) -> NameIndex[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return NameIndex((path.relative_to(folder).as_posix(), path) for path in files)


def _file_name_column(columns: Iterable[str], where: Path) -> str:
    by_lower = {column.strip().lower(): column for column in columns}
    for candidate in FILE_NAME_COLUMNS:
        if candidate in by_lower:
            return by_lower[candidate]
    raise ValueError(
        f"{where} has no file-name column (one of {', '.join(FILE_NAME_COLUMNS)}); its columns are "
        f"{', '.join(columns)}. A folder of per-image CSVs named after their images also works."
    )


def read_openface(path: Path) -> pd.DataFrame:
    """OpenFace output as one table with a `_name` column (the image it belongs to)."""
    if path.is_dir():
        files = sorted(path.rglob("*.csv"))
        if not files:
            raise ValueError(f"no .csv files in {path}")
        rows = []
        for file in files:
            with open(file, newline="") as f:
                # OpenFace separates header fields with ", ": skipinitialspace, then read by name.
                for row in csv.DictReader(f, skipinitialspace=True):
                    rows.append({**row, "_name": file.relative_to(path).with_suffix("").as_posix()})
        table = pd.DataFrame(rows)
    elif path.is_file():
        table = pd.read_csv(path, skipinitialspace=True)
        table["_name"] = table[_file_name_column(table.columns, path)].astype(str)
    else:
        raise FileNotFoundError(f"--openface-csv {path} does not exist")
    table.columns = [str(column).strip() for column in table.columns]
    if table.empty:
        raise ValueError(f"{path} holds no rows")
    return table


def _numeric(table: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(table[column], errors="coerce")


def best_face_per_image(table: pd.DataFrame) -> pd.DataFrame:
    """One row per image: OpenFace writes a row per detected face; keep the most confident."""
    if "confidence" not in table.columns:
        return table.drop_duplicates("_name", keep="first")
    order = _numeric(table, "confidence").fillna(-1).sort_values(ascending=False, kind="stable").index
    return table.loc[order].drop_duplicates("_name", keep="first").sort_index()


def parse_expression(value: object) -> tuple[int | None, str | None]:
    """An AffectNet code (0-10) or category name -> (class index, None) or (None, why it is dropped)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        return None, "no expression label"
    text = str(value).strip()
    try:
        code = int(float(text))
    except ValueError:
        names = {name.lower(): i for i, name in enumerate(AFFECTNET_CATEGORIES)}
        code = NON_FACE if text.lower().replace("-", "").replace(" ", "") == "nonface" else names.get(text.lower(), -1)
    if code == NON_FACE:
        return None, "Non-face"
    if not 0 <= code < len(AFFECTNET_CATEGORIES):
        return None, "unknown expression"
    return code, None


def _expression_column(table: pd.DataFrame) -> str | None:
    by_lower = {column.lower(): column for column in table.columns}
    return next((by_lower[name] for name in EXPRESSION_COLUMNS if name in by_lower), None)


def read_labels(path: Path) -> NameIndex[object]:
    """--labels: the expression of each file name."""
    table = pd.read_csv(path, skipinitialspace=True)
    table.columns = [str(column).strip() for column in table.columns]
    name_column = _file_name_column(table.columns, path)
    expression_column = _expression_column(table)
    if expression_column is None:
        raise ValueError(f"{path} has no expression column (one of {', '.join(EXPRESSION_COLUMNS)})")
    return NameIndex(zip(table[name_column].astype(str), table[expression_column], strict=True))


@dataclass(frozen=True)
class Candidate:
    """A usable OpenFace row matched to its image, before the image is processed."""

    name: str  # relative path of the image, posix
    path: Path
    aus: np.ndarray  # float32[17] in [0, 1]
    expression: int | None


def select_rows(
    table: pd.DataFrame,
    images_folder: Path,
    min_confidence: float,
    labels: NameIndex[object] | None,
    report: SkipReport,
) -> list[Candidate]:
    """Rows that OpenFace measured well, matched to an image file, with sound AUs (and label)."""
    images = index_images(images_folder)
    au_columns, scale = find_au_columns(list(table.columns))
    table = best_face_per_image(table)
    values = np.stack([_numeric(table, column).to_numpy(np.float64) for column in au_columns], axis=1)
    aus, au_problems = check_aus(values, scale)
    success = _numeric(table, "success").to_numpy() if "success" in table.columns else np.ones(len(table))
    confidence = _numeric(table, "confidence").to_numpy() if "confidence" in table.columns else np.ones(len(table))
    expressions = table[_expression_column(table)].tolist() if _expression_column(table) else None

    candidates = []
    for i, name in enumerate(table["_name"]):
        path = images.find(name)
        relative = path.relative_to(images_folder).as_posix() if path else name
        expression, label_problem = None, None
        if labels is not None:
            expression, label_problem = parse_expression(labels.find(relative))
        elif expressions is not None:
            expression, label_problem = parse_expression(expressions[i])
        if path is None:
            problem = "no image file for the CSV row"
        elif success[i] == 0:
            problem = "OpenFace failed (success 0)"
        elif not confidence[i] >= min_confidence:  # NaN confidence counts as low
            problem = f"confidence below {min_confidence:g}"
        else:
            problem = au_problems[i] or label_problem
        if problem:
            report.add(problem, str(name))
        else:
            candidates.append(Candidate(relative, path, aus[i], expression))
    _report_images_without_rows(images, table["_name"], report)
    return candidates


def _report_images_without_rows(images: NameIndex[Path], names: Iterable[str], report: SkipReport) -> None:
    matched = {images.find(name) for name in names}
    for key, path in images.by_key.items():
        if path not in matched:
            report.add("no OpenFace row for the image", key)


# ----------------------------------------------------------------------------------------------
# Images


_faces = None  # wemgan.faces, imported in each worker only under --align


def _start_worker(align: bool) -> None:
    global _faces
    if align:
        _faces = import_faces()


def import_faces() -> types.ModuleType:
    """wemgan.faces, checked to have its optional extra (dlib) for --align."""
    if not faces.available():
        raise ImportError(f"--align needs dlib and face_recognition_models: {faces.FACES_EXTRA}")
    return faces


def process_image(path: Path, size: int = IMAGE_SIZE) -> tuple[bytes | None, str | None]:
    """A face image file -> (JPEG bytes of the size x size face, None) or (None, why it was dropped)."""
    try:
        with Image.open(path) as image:
            rgb = ImageOps.exif_transpose(image).convert("RGB")  # as OpenCV (and so OpenFace) reads it
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None, "unreadable image"
    face = to_model_size(rgb, size) if _faces is None else _aligned(rgb, size)
    if face is None:
        return None, "no face detected"
    buffer = io.BytesIO()
    face.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buffer.getvalue(), None


def _aligned(image: Image.Image, size: int) -> Image.Image | None:
    """The largest face, 5-point aligned onto the training template, or None when none is found."""
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)
    try:
        face = _faces.locate(pixels, size, align_faces=True)[0]
    except _faces.FaceNotFoundError:
        return None
    crop = _faces.crop(pixels, face)[0].clamp(0, 1).mul(255).round().to(torch.uint8)
    return Image.fromarray(crop.permute(1, 2, 0).numpy())


def _process(candidate: Candidate) -> tuple[bytes | None, str | None]:
    return process_image(candidate.path)


def processed(candidates: list[Candidate], num_workers: int, align: bool) -> Iterator[tuple[bytes | None, str | None]]:
    """process_image over the candidates, in order, on num_workers processes."""
    if num_workers == 1:
        _start_worker(align)
        yield from map(_process, candidates)
        return
    with multiprocessing.get_context().Pool(num_workers, initializer=_start_worker, initargs=(align,)) as pool:
        yield from pool.imap(_process, candidates, chunksize=16)


# ----------------------------------------------------------------------------------------------
# Split and output


def choose_test_rows(expressions: list[int | None], test_fraction: float, seed: int) -> np.ndarray:
    """Which rows go to test: the same fraction of every expression class (or of all rows)."""
    rng = np.random.default_rng(seed)
    groups = np.array([-1 if e is None else e for e in expressions])
    mask = np.zeros(len(groups), bool)
    for group in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == group))
        mask[members[: round(len(members) * test_fraction)]] = True
    return mask


def output_features(with_expression: bool) -> datasets.Features:
    features = {
        "image": datasets.Image(),
        "aus": datasets.List(datasets.Value("float32"), length=NUM_AUS),
        "source": datasets.Value("string"),
        "file_name": datasets.Value("string"),
    }
    if with_expression:
        features["expression"] = datasets.ClassLabel(names=list(AFFECTNET_CATEGORIES))
    return datasets.Features(features)


class ShardWriter:
    """Rows of one split -> <split>-0000i.parquet parts of shard_rows rows; renamed -of-N by finish()."""

    def __init__(self, folder: Path, split: str, features: datasets.Features, shard_rows: int):
        self.folder, self.split, self.features, self.shard_rows = folder, split, features, shard_rows
        self.rows: list[dict] = []
        self.parts: list[Path] = []
        self.count = 0

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) == self.shard_rows:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        columns = {name: [row[name] for row in self.rows] for name in self.features}
        table = pa.Table.from_pydict(self.features.encode_batch(columns), schema=self.features.arrow_schema)
        part = self.folder / f"{self.split}-{len(self.parts):05d}.parquet"
        pq.write_table(table, part)  # the schema carries the HF features: load_dataset reads them back
        self.parts.append(part)
        self.rows = []

    def finish(self) -> list[Path]:
        self._flush()
        total = len(self.parts)
        return [
            part.rename(part.with_name(f"{self.split}-{i:05d}-of-{total:05d}.parquet"))
            for i, part in enumerate(self.parts)
        ]


def write_dataset(
    candidates: list[Candidate],
    results: Iterable[tuple[bytes | None, str | None]],
    is_test: np.ndarray,
    staging: Path,
    source_name: str,
    shard_rows: int,
    report: SkipReport,
) -> dict[str, int]:
    """Stream processed faces into train/test shards under staging/data; rows kept per split."""
    features = output_features(with_expression=any(c.expression is not None for c in candidates))
    (staging / "data").mkdir(parents=True)
    writers = {split: ShardWriter(staging / "data", split, features, shard_rows) for split in ("train", "test")}
    for candidate, test, (jpeg, problem) in zip(candidates, is_test, results, strict=True):
        if problem:
            report.add(problem, candidate.name)
            continue
        row = {
            "image": {"bytes": jpeg, "path": None},
            "aus": candidate.aus.tolist(),
            "source": source_name,
            "file_name": candidate.name,
            "expression": candidate.expression,
        }
        writers["test" if test else "train"].add(row)
    for writer in writers.values():
        writer.finish()
    report.kept = sum(writer.count for writer in writers.values())
    return {split: writer.count for split, writer in writers.items()}


def prepare(args: argparse.Namespace) -> dict[str, int]:
    """The whole preparation; returns the rows kept per split."""
    if not args.images.is_dir():
        raise FileNotFoundError(f"--images {args.images} is not a folder")
    if args.out.exists() and not args.overwrite:
        raise ValueError(f"--out {args.out} exists; choose a new folder or pass --overwrite")
    if args.align:
        import_faces()  # fail now, not in a worker after the CSVs were read

    from tqdm.auto import tqdm

    report = SkipReport()
    table = read_openface(args.openface_csv)
    labels = read_labels(args.labels) if args.labels else None
    candidates = sorted(select_rows(table, args.images, args.min_confidence, labels, report), key=lambda c: c.name)
    if not candidates:
        raise ValueError(f"no usable rows: {report.summary()}")
    is_test = choose_test_rows([c.expression for c in candidates], args.test_fraction, args.seed)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    staging = args.out.parent / f".{args.out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        results = tqdm(processed(candidates, args.num_workers, args.align), total=len(candidates), desc="Faces")
        source_name = args.source_name or args.images.resolve().name
        kept = write_dataset(candidates, results, is_test, staging, source_name, args.shard_rows, report)
        if report.kept == 0:
            raise ValueError(f"no usable faces: {report.summary()}")
        summary = {"kept": kept, "dropped": dict(report.counts), "examples": report.examples, "args": _jsonable(args)}
        (staging / "prepare_summary.json").write_text(json.dumps(summary, indent=2))
        _replace(staging, args.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {args.out}: train {kept['train']}, test {kept['test']}")
    for split, count in kept.items():
        if count == 0:
            print(f"note: the {split} split is empty, so it has no shards (see --test-fraction)")
    print(report.summary())
    return kept


def _replace(staging: Path, out: Path) -> None:
    """Move the finished folder into place; an old one (--overwrite) is moved aside first."""
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _jsonable(args: argparse.Namespace) -> dict[str, object]:
    return {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}


def main(argv: list[str] | None = None) -> None:
    try:
        prepare(parse_args(argv))
    except (ValueError, FileNotFoundError, ImportError) as error:
        raise SystemExit(f"error: {error}") from error


if __name__ == "__main__":
    main()
