"""Training data: every supported source as one canonical HF dataset, and as torch samples.

Canonical schema (DESIGN.md "Data formats"): `image` (datasets.Image), `aus` (17 float32 in
[0, 1], OpenFace order), optional `expression` (ClassLabel) and `identity` (int64).

Sources, by what `source` names:
- "synthfacs": the procedural SynthFACS faces (wemgan.data.synthetic), rendered on the fly;
- a `save_to_disk` folder (a Dataset or a DatasetDict);
- a folder of parquet shards (`data/train-*.parquet`, `data/test-*.parquet`: the layout of
  shared/data/faces-au and of `python -m wemgan.data.prepare`), or one parquet file;
- an imagefolder with `metadata.csv` / `metadata.jsonl` (`file_name` + AU columns AU01..AU45
  in [0, 1] or OpenFace's raw AU01_r..AU45_r in 0-5), with `train/`, `test/` subfolders;
- a uint8 array cache folder made by `build_uint8_cache` (load_training_data only);
- a Hub dataset id.

Rows that would break training later (missing or corrupt image, NaN AUs, values out of range)
are dropped up front and reported: `datasets` decodes images lazily, so a bad file would
otherwise surface as an exception inside a DataLoader worker in the middle of an epoch.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import socket
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
import pyarrow as pa
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from ..aus import AU_NAMES, NUM_AUS, OPENFACE_MAX_INTENSITY
from . import synthetic

logger = logging.getLogger(__name__)

IMAGE_SIZE = 128
ImageFormat = Literal["float", "uint8"]

# AffectNet's expression codes 0-9, the ten categories the paper kept; code 10 (Non-Face) is dropped.
AFFECTNET_CATEGORIES: tuple[str, ...] = (
    "Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt", "None", "Uncertain",
)  # fmt: skip

# SynthFACS sizes when the caller gives none: enough variety to train on, small enough to test with.
SYNTHFACS_DEFAULTS: dict[str, tuple[int, int]] = {"train": (2000, 16), "test": (100, 8)}

CACHE_FORMAT = "wemgan-uint8-cache"
CACHE_VERSION = 1
AU_TOLERANCE = 1e-4  # float noise from OpenFace's 0-5 / 5 is clipped, anything beyond is an error
MAX_EXAMPLES = 5  # offending names shown per reason


# ----------------------------------------------------------------------------------------------
# Reporting what was dropped


@dataclass
class SkipReport:
    """How many rows were kept, and how many were dropped for each reason (with a few names)."""

    kept: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, name: str) -> None:
        self.counts[reason] += 1
        names = self.examples.setdefault(reason, [])
        if len(names) < MAX_EXAMPLES:
            names.append(name)

    @property
    def dropped(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """'kept 98, dropped 2: 1 unreadable image (a.jpg); 1 NaN AUs (b.jpg)'."""
        text = f"kept {self.kept}, dropped {self.dropped}"
        if not self.counts:
            return text
        parts = []
        for reason, count in self.counts.most_common():
            names = ", ".join(self.examples[reason])
            more = ", ..." if count > len(self.examples[reason]) else ""
            parts.append(f"{count} {reason} ({names}{more})")
        return f"{text}: " + "; ".join(parts)


# ----------------------------------------------------------------------------------------------
# Images


def to_model_size(image: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """RGB, centre-cropped to a square and resized to size x size (face crops are centred)."""
    image = image.convert("RGB")
    if image.size == (size, size):
        return image
    return ImageOps.fit(image, (size, size), method=Image.Resampling.LANCZOS)


def decode_face(data: bytes | None, path: str | None = None, size: int = IMAGE_SIZE) -> np.ndarray:
    """Encoded image bytes (or a file path when there are none) -> size x size x 3 uint8."""
    with Image.open(io.BytesIO(data) if data is not None else path) as image:
        # JPEG: let libjpeg decode large photos at 1/2, 1/4 or 1/8 scale (never below `size`).
        image.draft("RGB", (size, size))
        return np.asarray(to_model_size(image, size))


def image_problem(image: dict[str, Any] | None) -> str | None:
    """Why an undecoded image cell ({"bytes", "path"}) cannot be used, or None when it decodes."""
    data = image.get("bytes") if image else None
    path = image.get("path") if image else None
    if data is None and not path:
        return "no image"
    if data is None and not os.path.isfile(path):
        return "missing file"
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as decoded:
            decoded.load()  # a full decode: truncated files only fail here
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return "unreadable image"
    return None


# ----------------------------------------------------------------------------------------------
# Schema: where the AUs are and how to read them

_PLAIN_AU = re.compile(r"^AU0*(\d+)$", re.IGNORECASE)
_OPENFACE_AU = re.compile(r"^AU0*(\d+)_r$", re.IGNORECASE)


def find_au_columns(columns: Sequence[str]) -> tuple[list[str], float]:
    """The 17 AU columns in OpenFace order, and the divisor that maps their values to [0, 1].

    AU01..AU45 are taken as [0, 1] intensities, OpenFace's AU01_r..AU45_r as 0-5 (divided by 5);
    when a table has both, the [0, 1] columns win. Other AUs (AU28_c, AU44, ...) are ignored.
    """
    for pattern, scale in ((_PLAIN_AU, 1.0), (_OPENFACE_AU, OPENFACE_MAX_INTENSITY)):
        found = {}
        for column in columns:
            match = pattern.match(column.strip())
            if match:
                found[f"AU{int(match.group(1)):02d}"] = column
        if found:
            missing = [name for name in AU_NAMES if name not in found]
            if missing:
                suffix = "_r" if scale != 1.0 else ""
                raise ValueError(
                    f"AU columns missing: {', '.join(name + suffix for name in missing)}; "
                    f"wemgan needs all 17 ({', '.join(AU_NAMES)})"
                )
            return [found[name] for name in AU_NAMES], scale
    raise ValueError(
        "no AU columns found: expected an 'aus' column of 17 values, columns AU01..AU45 in [0, 1], "
        f"or OpenFace's AU01_r..AU45_r (0-5); the columns are {', '.join(columns)}"
    )


def canonical_features(expression_names: Sequence[str] | None = None, identity: bool = False) -> datasets.Features:
    """The canonical schema; `expression` and `identity` only when the data has them."""
    features = {"image": datasets.Image(), "aus": datasets.List(datasets.Value("float32"), length=NUM_AUS)}
    if expression_names is not None:
        features["expression"] = datasets.ClassLabel(names=list(expression_names))
    if identity:
        features["identity"] = datasets.Value("int64")
    return datasets.Features(features)


def check_aus(values: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, list[str | None]]:
    """(N, 17) AUs on a 0..scale scale -> (N, 17) float32 in [0, 1] and each row's problem, if any.

    NaN rows and values outside [0, scale] are problems (up to float noise, which is clipped).
    """
    aus = np.asarray(values, dtype=np.float64) / scale
    nan_rows = np.isnan(aus).any(axis=1)
    outside = ~nan_rows & ((aus < -AU_TOLERANCE) | (aus > 1 + AU_TOLERANCE)).any(axis=1)
    scale_text = "[0, 1]" if scale == 1.0 else f"[0, {scale:g}] (OpenFace scale)"
    problems: list[str | None] = [None] * len(aus)
    for i in np.flatnonzero(nan_rows):
        problems[i] = "NaN AUs"
    for i in np.flatnonzero(outside):
        problems[i] = f"AUs outside {scale_text}"
    return np.clip(aus, 0.0, 1.0).astype(np.float32), problems


def _aus_and_problems(
    batch: dict[str, list], au_columns: list[str] | None, scale: float
) -> tuple[np.ndarray, list[str | None]]:
    """(B, 17) float32 AUs in [0, 1] and each row's problem, if any."""
    if au_columns is not None:
        values = np.stack([np.asarray(batch[column], dtype=np.float64) for column in au_columns], axis=1)
        return check_aus(values, scale)
    values = np.full((len(batch["aus"]), NUM_AUS), np.nan)  # one list column "aus"
    wrong_length = []
    for i, row in enumerate(batch["aus"]):
        if row is None or len(row) != NUM_AUS:
            wrong_length.append(i)
        else:
            values[i] = np.asarray(row, dtype=np.float64)  # None inside -> NaN
    aus, problems = check_aus(values, scale)
    for i in wrong_length:
        problems[i] = "wrong number of AUs"
    return aus, problems


def _check_batch(batch: dict[str, list], au_columns: list[str] | None, scale: float, check_images: bool) -> dict:
    """datasets.map function: canonical `aus` plus a `_problem` column ('' for usable rows)."""
    aus, problems = _aus_and_problems(batch, au_columns, scale)
    if check_images:
        for i, image in enumerate(batch["image"]):
            problems[i] = image_problem(image) or problems[i]  # a bad image outranks bad labels
    return {"aus": aus, "_problem": [p or "" for p in problems]}


def _row_name(dataset: datasets.Dataset, index: int) -> str:
    row = dataset[index]
    if row.get("file_name"):
        return str(row["file_name"])
    path = (row.get("image") or {}).get("path")
    return os.path.basename(path) if path else f"row {index}"


def _expression_feature(dataset: datasets.Dataset) -> datasets.Dataset:
    feature = dataset.features["expression"]
    if isinstance(feature, datasets.ClassLabel):
        return dataset
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        return dataset.class_encode_column("expression")
    raise ValueError(f"column 'expression' must hold class names (strings) or a ClassLabel, got {feature}")


def validate(
    dataset: datasets.Dataset, *, check_images: bool = True, num_proc: int | None = None
) -> tuple[datasets.Dataset, SkipReport]:
    """Any table with an image column and AUs -> (the canonical dataset of its usable rows, report).

    Raises ValueError when the image or AU columns are missing, or when no row is usable.
    The check is a `datasets.map`, so on Arrow-backed data it is cached and runs once.
    """
    if "image" not in dataset.column_names:
        raise ValueError(f"no 'image' column; the columns are {', '.join(dataset.column_names)}")
    if "aus" in dataset.column_names:
        au_columns, scale = None, 1.0
    else:
        au_columns, scale = find_au_columns(dataset.column_names)
    dataset = dataset.cast_column("image", datasets.Image(decode=False))
    if "expression" in dataset.column_names:
        dataset = _expression_feature(dataset)
    if "identity" in dataset.column_names:
        dataset = dataset.cast_column("identity", datasets.Value("int64"))

    removed = au_columns or ["aus"]
    features = datasets.Features({k: v for k, v in dataset.features.items() if k not in removed})
    features["aus"] = datasets.List(datasets.Value("float32"), length=NUM_AUS)
    features["_problem"] = datasets.Value("string")
    # datasets caches map results next to the data: in memory instead when that folder is read-only.
    writable = all(os.access(os.path.dirname(f["filename"]), os.W_OK) for f in dataset.cache_files)
    if num_proc is None and len(dataset) >= 20_000:
        num_proc = min(os.cpu_count() or 1, 8)
    checked = dataset.map(
        _check_batch,
        batched=True,
        batch_size=256,
        fn_kwargs=dict(au_columns=au_columns, scale=scale, check_images=check_images),
        remove_columns=removed,
        features=features,
        keep_in_memory=not writable,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        desc="Checking images and AUs" if check_images else "Checking AUs",
    )

    problems = checked.with_format("arrow")["_problem"].to_numpy(zero_copy_only=False)
    report = SkipReport(kept=int(np.sum(problems == "")))
    for index in np.flatnonzero(problems != ""):
        reason = problems[index]
        wanted = report.counts[reason] < MAX_EXAMPLES  # reading a row for its name only when it is shown
        report.add(reason, _row_name(checked, int(index)) if wanted else "")
    if report.kept == 0:
        raise ValueError(f"no usable rows ({report.summary()})")
    if report.dropped:
        checked = checked.select(np.flatnonzero(problems == ""))

    columns = ["image", "aus"] + [c for c in ("expression", "identity") if c in checked.column_names]
    canonical = checked.select_columns(columns).cast_column("image", datasets.Image())
    return canonical, report


# ----------------------------------------------------------------------------------------------
# Reading the sources


def _is_synthfacs(source: object) -> bool:
    return isinstance(source, str) and source.strip().lower() == "synthfacs"


def _is_cache(folder: Path) -> bool:
    meta = folder / "meta.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("format") == CACHE_FORMAT
    except (OSError, json.JSONDecodeError):
        return False


def _has_metadata(folder: Path) -> bool:
    names = ("metadata.csv", "metadata.jsonl")
    return any((folder / name).is_file() or any(folder.glob(f"*/{name}")) for name in names)


def _pick_split(splits: datasets.DatasetDict, split: str, where: object) -> datasets.Dataset:
    if split not in splits:
        raise ValueError(f"{where} has no split {split!r}; its splits are {', '.join(splits)}")
    return splits[split]


def _load_saved(folder: Path, split: str) -> datasets.Dataset:
    saved = datasets.load_from_disk(str(folder))
    if isinstance(saved, datasets.DatasetDict):
        return _pick_split(saved, split, folder)
    if saved.split is not None and str(saved.split) != split:
        raise ValueError(f"{folder} holds the {saved.split!r} split, not {split!r}; pass the folder of that split")
    return saved


def _load_parquet(path: Path, split: str, cache_dir: str | None) -> datasets.Dataset:
    if path.is_file():
        files = {split: [str(path)]}
    else:
        # datasets' own split inference (train-*.parquet, data/test-*, train/ folders, ...)
        patterns = datasets.data_files.get_data_patterns(str(path))
        resolved = datasets.data_files.DataFilesDict.from_patterns(patterns, base_path=str(path))
        files = {name: [f for f in found if f.endswith(".parquet")] for name, found in resolved.items()}
        files = {name: found for name, found in files.items() if found}
        if split not in files:
            raise ValueError(f"{path} has parquet files for the splits {', '.join(files) or 'none'}, not {split!r}")
        files = {split: files[split]}
    return datasets.load_dataset("parquet", data_files=files, split=split, cache_dir=cache_dir)


def _hub_unreachable() -> str | None:
    """Why the Hub cannot be reached (a quick socket probe), or None.

    Without HF_HUB_OFFLINE=1, huggingface_hub retries an unreachable Hub for ~20 s before failing.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return None  # offline mode fails fast by itself; behind a proxy a direct probe proves nothing
    url = urllib.parse.urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=3).close()
    except OSError as error:
        return f"{url.hostname} is unreachable ({error})"
    return None


def _load_hub(repo_id: str, split: str, cache_dir: str | None) -> datasets.Dataset:
    hint = "set HF_HUB_OFFLINE=1 to use a cached copy, or pass a local folder"
    problem = _hub_unreachable()
    if problem:
        raise ConnectionError(f"{repo_id!r} is not a local folder and the Hub cannot be reached: {problem}; {hint}")
    try:
        return datasets.load_dataset(repo_id, split=split, cache_dir=cache_dir)
    except ConnectionError as error:
        raise ConnectionError(
            f"could not load {repo_id!r} from the Hub or the local cache ({error}); {hint}"
        ) from error


def _load_raw(source: str | os.PathLike, split: str, cache_dir: str | None, synthfacs: dict) -> datasets.Dataset:
    """The source's rows as they are stored (before validation)."""
    if _is_synthfacs(source):
        return synthetic.build_dataset(**_synthfacs_options(split, **synthfacs), split=split)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".parquet":
        return _load_parquet(path, split, cache_dir)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return _load_saved(path, split)
        if _is_cache(path):
            raise ValueError(f"{path} is a uint8 training cache; load it with load_training_data")
        if _has_metadata(path):
            splits = datasets.load_dataset("imagefolder", data_dir=str(path), cache_dir=cache_dir)
            return _pick_split(splits, split, path)
        if any(path.rglob("*.parquet")):
            return _load_parquet(path, split, cache_dir)
        raise ValueError(
            f"cannot tell what kind of dataset {path} is: expected a save_to_disk folder, parquet shards, "
            "or images with metadata.csv / metadata.jsonl"
        )
    if path.exists():
        raise ValueError(f"{path} is neither a folder nor a .parquet file")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(str(source))
    except HFValidationError:
        raise FileNotFoundError(f"no such dataset folder: {path}") from None
    return _load_hub(str(source), split, cache_dir)


def _synthfacs_options(
    split: str, n_identities: int | None = None, per_identity: int | None = None, seed: int = 0
) -> dict[str, int]:
    default_identities, default_per_identity = SYNTHFACS_DEFAULTS.get(split, SYNTHFACS_DEFAULTS["test"])
    options = dict(
        n_identities=default_identities if n_identities is None else n_identities,
        per_identity=default_per_identity if per_identity is None else per_identity,
        seed=seed,
    )
    for name in ("n_identities", "per_identity"):
        if options[name] < 1:
            raise ValueError(f"SynthFACS {name} must be at least 1, got {options[name]}")
    return options


def load_hf_dataset(
    source: str | os.PathLike,
    split: str = "train",
    *,
    check_images: bool = True,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    n_identities: int | None = None,
    per_identity: int | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """The usable rows of one split of `source`, as a HF dataset in the canonical schema.

    Images keep their stored size (use `to_model_size` for 128 x 128). Dropped rows are logged.
    limit: keep only the first `limit` rows (before checking them): quick looks and tests.
    cache_dir: the HF datasets cache (default: ~/.cache/huggingface/datasets).
    n_identities, per_identity, seed: the "synthfacs" source's size and seed.
    """
    synthfacs = dict(n_identities=n_identities, per_identity=per_identity, seed=seed)
    raw = _load_raw(source, split, None if cache_dir is None else str(cache_dir), synthfacs)
    if limit is not None:
        raw = raw.select(range(min(limit, len(raw))))
    # SynthFACS images come straight from the renderer: no need to decode every one to check it.
    dataset, report = validate(raw, check_images=check_images and not _is_synthfacs(source))
    if report.dropped:
        logger.warning("%s [%s]: %s", source, split, report.summary())
    return dataset


# ----------------------------------------------------------------------------------------------
# Torch datasets


def _check_image_format(image_format: str) -> None:
    if image_format not in ("float", "uint8"):
        raise ValueError(f"image_format must be 'float' ([-1, 1] float32) or 'uint8', got {image_format!r}")


def _samples(pixels: np.ndarray, aus: np.ndarray, image_format: ImageFormat) -> list[dict[str, Tensor]]:
    """(B, H, W, 3) uint8 + (B, 17) -> per-sample {"image": 3 x H x W, "aus": float32[17]}."""
    # np.require copies only read-only or strided arrays (PIL and Arrow hand out read-only views).
    images = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"])).permute(0, 3, 1, 2).contiguous()
    if image_format == "float":
        images = images.float().div_(127.5).sub_(1.0)
    aus_tensor = torch.from_numpy(np.require(aus, np.float32, ["C", "W"]))
    return [{"image": image, "aus": au} for image, au in zip(images.unbind(0), aus_tensor.unbind(0), strict=True)]


class HFFaceDataset(TorchDataset):
    """A canonical HF dataset as training samples.

    The DataLoader asks for whole batches (`__getitems__`): one Arrow take per batch, then PIL
    decodes straight from the stored bytes — no per-sample `datasets` formatting.
    """

    def __init__(self, dataset: datasets.Dataset, image_format: ImageFormat = "float", size: int = IMAGE_SIZE):
        _check_image_format(image_format)
        self.rows = (
            dataset.select_columns(["image", "aus"])
            .cast_column("image", datasets.Image(decode=False))
            .with_format("arrow")
        )
        self.image_format = image_format
        self.size = size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Tensor]]:
        table: pa.Table = self.rows[list(indices)]
        images = table.column("image").combine_chunks()
        data, paths = images.field("bytes").to_pylist(), images.field("path").to_pylist()
        pixels = np.stack([decode_face(d, p, self.size) for d, p in zip(data, paths, strict=True)])
        aus = table.column("aus").combine_chunks().flatten().to_numpy().reshape(-1, NUM_AUS)
        return _samples(pixels, aus, self.image_format)


class SynthFACSDataset(TorchDataset):
    """SynthFACS faces rendered on the fly: index -> (identity, sample) = divmod(index, per_identity)."""

    def __init__(
        self,
        split: str = "train",
        n_identities: int | None = None,
        per_identity: int | None = None,
        seed: int = 0,
        image_format: ImageFormat = "float",
    ):

        _check_image_format(image_format)
        options = _synthfacs_options(split, n_identities, per_identity, seed)
        self.make_sample = synthetic.make_sample
        self.split, self.seed, self.image_format = split, options["seed"], image_format
        self.n_identities, self.per_identity = options["n_identities"], options["per_identity"]

    def __len__(self) -> int:
        return self.n_identities * self.per_identity

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} SynthFACS samples")
        identity, sample_index = divmod(index % len(self), self.per_identity)
        sample = self.make_sample(self.split, identity, sample_index, seed=self.seed)
        pixels = np.asarray(to_model_size(sample.image))[None]
        return _samples(pixels, np.asarray(sample.aus)[None], self.image_format)[0]


class ArrayFaceDataset(TorchDataset):
    """A uint8 cache folder (see build_uint8_cache), memory-mapped: no decoding while training."""

    def __init__(self, folder: str | os.PathLike, image_format: ImageFormat = "float"):
        _check_image_format(image_format)
        self.folder = Path(folder)
        self.meta = read_cache_meta(self.folder)
        self.image_format = image_format
        self.aus = np.load(self.folder / "aus.npy")
        self._images: np.ndarray | None = None  # opened lazily, once per DataLoader worker

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.folder / "images.npy", mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict:
        # Pickling a memmap copies the whole array into the pickle; workers reopen the file instead.
        return {**self.__dict__, "_images": None}

    def __len__(self) -> int:
        return len(self.aus)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Tensor]]:
        indices = np.asarray(indices)
        return _samples(self.images[indices], self.aus[indices], self.image_format)


# ----------------------------------------------------------------------------------------------
# The uint8 cache


def read_cache_meta(folder: str | os.PathLike) -> dict:
    """The cache's meta.json, checked; ValueError when the folder is not a complete cache."""
    folder = Path(folder)
    if not _is_cache(folder):
        raise ValueError(f"{folder} is not a wemgan uint8 cache (no meta.json with format {CACHE_FORMAT!r})")
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("version") != CACHE_VERSION or meta.get("au_names") != list(AU_NAMES):
        raise ValueError(f"{folder} was built by another wemgan version; delete it and build it again")
    return meta


def _describe_source(source: str | os.PathLike, options: dict) -> str:
    """What a cache was built from, to notice a cache folder reused for other data."""
    if _is_synthfacs(source):
        return "synthfacs:" + json.dumps(options, sort_keys=True)
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else str(source)


def build_uint8_cache(
    source: str | os.PathLike,
    folder: str | os.PathLike,
    split: str = "train",
    *,
    overwrite: bool = False,
    batch_size: int = 256,
    num_workers: int = 0,
    **load_options: Any,
) -> Path:
    """Decode every image of `source` once into `folder` (images.npy N x 128 x 128 x 3 uint8, aus.npy).

    Written to a temporary folder and renamed into place, so a cache is complete or absent.
    An existing cache for the same source is kept (unless overwrite); one built from another
    source is an error. load_options go to the source (check_images, limit, n_identities, ...).
    """
    folder = Path(folder)
    described = _describe_source(source, {k: load_options.get(k) for k in ("n_identities", "per_identity", "seed")})
    if _is_cache(folder) and not overwrite:
        meta = read_cache_meta(folder)
        if (meta["source"], meta["split"]) != (described, split):
            raise ValueError(
                f"cache {folder} was built from {meta['source']} [{meta['split']}], not {described} [{split}]; "
                "choose another folder or pass overwrite=True"
            )
        return folder
    if folder.exists() and not overwrite and any(folder.iterdir()):
        raise ValueError(f"{folder} exists and is not a uint8 cache; choose an empty or new folder")

    samples = _load_uncached(source, split, "uint8", **load_options)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        _write_cache(samples, staging, batch_size, num_workers)
        meta = dict(
            format=CACHE_FORMAT,
            version=CACHE_VERSION,
            source=described,
            split=split,
            num_rows=len(samples),
            size=IMAGE_SIZE,
            au_names=list(AU_NAMES),
        )
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        _move_into_place(staging, folder, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _write_cache(samples: TorchDataset, folder: Path, batch_size: int, num_workers: int) -> None:
    from tqdm.auto import tqdm

    shape = (len(samples), IMAGE_SIZE, IMAGE_SIZE, 3)
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=shape)
    aus = np.zeros((len(samples), NUM_AUS), np.float32)
    loader = DataLoader(samples, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    start = 0
    for batch in tqdm(loader, desc="Building uint8 cache", unit="batch"):
        stop = start + len(batch["aus"])
        images[start:stop] = batch["image"].permute(0, 2, 3, 1).numpy()
        aus[start:stop] = batch["aus"].numpy()
        start = stop
    images.flush()
    del images
    np.save(folder / "aus.npy", aus)


def _move_into_place(staging: Path, folder: Path, overwrite: bool) -> None:
    """Rename the finished cache into place; a concurrent builder that won the race is fine."""
    if overwrite and folder.exists():
        trash = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
        folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        staging.rename(folder)  # replaces an empty folder, fails on a non-empty one
    except OSError:
        if not _is_cache(folder):
            raise


# ----------------------------------------------------------------------------------------------
# The entry point


def _load_uncached(source: str | os.PathLike, split: str, image_format: ImageFormat, **options: Any) -> TorchDataset:
    if _is_synthfacs(source):
        unknown = set(options) - {"n_identities", "per_identity", "seed"}
        if unknown:
            raise TypeError(f"options {sorted(unknown)} do not apply to SynthFACS")
        return SynthFACSDataset(split, image_format=image_format, **options)
    if _is_cache(Path(source).expanduser()):
        return ArrayFaceDataset(Path(source).expanduser(), image_format)
    return HFFaceDataset(load_hf_dataset(source, split, **options), image_format)


def load_training_data(
    source: str | os.PathLike,
    split: str = "train",
    *,
    image_format: ImageFormat = "float",
    cache: str | os.PathLike | None = None,
    check_images: bool = True,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    n_identities: int | None = None,
    per_identity: int | None = None,
    seed: int = 0,
) -> TorchDataset:
    """One split of any supported source as a torch Dataset of {"image", "aus"} samples.

    image: 3 x 128 x 128, float32 in [-1, 1] (image_format="float") or uint8 ("uint8");
    aus: float32[17] in [0, 1], OpenFace order.
    cache: a folder for a decoded uint8 copy (`cache/<split>`, built on first use, then
    memory-mapped: the fast path when a GPU would otherwise wait for JPEG decoding).
    check_images, limit, cache_dir: see load_hf_dataset (ignored by SynthFACS).
    n_identities, per_identity, seed: SynthFACS size (default 2000 x 16 train, 100 x 8 test).
    """
    _check_image_format(image_format)
    if _is_synthfacs(source):
        options: dict[str, Any] = dict(n_identities=n_identities, per_identity=per_identity, seed=seed)
    else:
        options = dict(check_images=check_images, limit=limit, cache_dir=cache_dir)
    if cache is None:
        return _load_uncached(source, split, image_format, **options)
    folder = build_uint8_cache(source, Path(cache) / split, split, **options)
    return ArrayFaceDataset(folder, image_format)


def pair_targets(
    aus: Tensor, generator: torch.Generator, noise_std: float = 0.0, return_donors: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """GANimation-style target AUs: each sample gets the AUs of another sample of the batch.

    The permutation has no fixed points when the batch holds more than one sample (a random
    order, each sample taking its successor's AUs), so every target is a real expression
    that differs from the source. Optional Gaussian noise, then clipped to [0, 1].
    Reproducible: the same generator state gives the same targets.
    return_donors: also return, per sample, the index of the sample whose AUs it takes.
    """
    if aus.ndim != 2 or aus.shape[1] != NUM_AUS:
        raise ValueError(f"aus must be a batch of shape (B, {NUM_AUS}), got {tuple(aus.shape)}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    batch = aus.shape[0]
    order = torch.randperm(batch, generator=generator, device=generator.device).to(aus.device)
    donor = torch.empty_like(order)
    donor[order] = order.roll(-1)  # sample order[i] takes the AUs of order[i + 1]
    targets = aus[donor]
    if noise_std > 0:
        noise = torch.randn(aus.shape, generator=generator, device=generator.device, dtype=aus.dtype)
        targets = targets + noise_std * noise.to(aus.device)
    targets = targets.clamp(0.0, 1.0)
    return (targets, donor) if return_donors else targets
