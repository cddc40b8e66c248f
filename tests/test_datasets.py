"""Data loading: every source kind gives the same canonical rows; bad rows are dropped and counted."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from wemgan.aus import AU_NAMES, NUM_AUS, OPENFACE_COLUMNS
from wemgan.data import datasets as data
from wemgan.data.datasets import (
    ArrayFaceDataset,
    build_uint8_cache,
    canonical_features,
    find_au_columns,
    load_hf_dataset,
    load_training_data,
    pair_targets,
    validate,
)

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces-au"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test talks to the Hub, whatever the environment says (the flags are read at import)."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def face(seed: int, size: tuple[int, int] = (128, 128)) -> Image.Image:
    """A random RGB picture of the given (width, height)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def encoded(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def random_aus(n: int, seed: int) -> np.ndarray:
    """(n, 17) intensities in [0, 1] with few decimals, so that CSV round trips are exact."""
    return np.round(np.random.default_rng(seed).uniform(0, 1, size=(n, NUM_AUS)), 3).astype(np.float32)


SPLIT_SIZES = {"train": 6, "test": 3}


def write_saved(root: Path) -> dict[str, np.ndarray]:
    splits, expected = {}, {}
    for offset, (split, n) in enumerate(SPLIT_SIZES.items()):
        expected[split] = random_aus(n, seed=offset)
        rows = {"image": [face(100 * offset + i) for i in range(n)], "aus": expected[split].tolist()}
        splits[split] = datasets.Dataset.from_dict(rows, features=canonical_features())
    datasets.DatasetDict(splits).save_to_disk(str(root))
    return expected


def write_parquet(root: Path) -> dict[str, np.ndarray]:
    """The layout of shared/data/faces-au: data/<split>-0000i-of-0000n.parquet, JPEG bytes."""
    expected = {}
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "aus": datasets.List(datasets.Value("float32"), length=NUM_AUS),
            "source": datasets.Value("string"),
            "file_name": datasets.Value("string"),
        }
    )
    for offset, (split, n) in enumerate(SPLIT_SIZES.items()):
        expected[split] = random_aus(n, seed=offset)
        rows = {
            "image": [{"bytes": encoded(face(100 * offset + i), "JPEG"), "path": None} for i in range(n)],
            "aus": expected[split].tolist(),
            "source": ["test"] * n,
            "file_name": [f"{split}{i}.jpg" for i in range(n)],
        }
        table = datasets.Dataset.from_dict(rows, features=features)
        shards = 2 if split == "train" else 1
        for shard in range(shards):
            path = root / "data" / f"{split}-{shard:05d}-of-{shards:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            table.shard(shards, shard, contiguous=True).to_parquet(str(path))
    return expected


def write_imagefolder_csv(root: Path, image_size: tuple[int, int] = (128, 128)) -> dict[str, np.ndarray]:
    """train/ and test/ with metadata.csv: file_name + AU01..AU45 in [0, 1] (+ AU28, not one of ours)."""
    expected = {}
    for offset, (split, n) in enumerate(SPLIT_SIZES.items()):
        folder = root / split
        folder.mkdir(parents=True)
        expected[split] = random_aus(n, seed=offset)
        lines = ["file_name," + ",".join(AU_NAMES) + ",AU28"]
        for i in range(n):
            face(100 * offset + i, image_size).save(folder / f"img{i}.png")
            lines.append(f"img{i}.png," + ",".join(f"{v:.3f}" for v in expected[split][i]) + ",0.5")
        (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return expected


def write_imagefolder_jsonl(root: Path) -> dict[str, np.ndarray]:
    """train/ and test/ with metadata.jsonl: OpenFace's raw AUxx_r (0-5) plus AUxx_c presence."""
    expected = {}
    for offset, (split, n) in enumerate(SPLIT_SIZES.items()):
        folder = root / split
        folder.mkdir(parents=True)
        expected[split] = random_aus(n, seed=offset)
        with open(folder / "metadata.jsonl", "w") as f:
            for i in range(n):
                face(100 * offset + i).save(folder / f"img{i}.jpg", quality=95)
                row = {"file_name": f"img{i}.jpg", "AU28_c": 1.0}
                row.update({col: float(v) * 5 for col, v in zip(OPENFACE_COLUMNS, expected[split][i], strict=True)})
                row.update({f"{name}_c": 1.0 for name in AU_NAMES})
                f.write(json.dumps(row) + "\n")
    return expected


WRITERS = {
    "save_to_disk": write_saved,
    "parquet": write_parquet,
    "imagefolder_csv": write_imagefolder_csv,
    "imagefolder_jsonl_openface": write_imagefolder_jsonl,
}


@pytest.mark.parametrize("kind", list(WRITERS))
@pytest.mark.parametrize("split", ["train", "test"])
def test_every_source_gives_the_canonical_schema(tmp_path: Path, kind: str, split: str) -> None:
    expected = WRITERS[kind](tmp_path / "source")
    dataset = load_hf_dataset(tmp_path / "source", split, cache_dir=tmp_path / "hf")
    assert dataset.features == canonical_features()
    assert len(dataset) == SPLIT_SIZES[split]
    np.testing.assert_allclose(np.asarray(dataset["aus"]), expected[split], atol=1e-6)
    first = dataset[0]["image"]
    assert isinstance(first, Image.Image) and first.size == (128, 128)


@pytest.mark.parametrize("kind", list(WRITERS))
def test_training_samples_are_normalised(tmp_path: Path, kind: str) -> None:
    expected = WRITERS[kind](tmp_path / "source")
    floats = load_training_data(tmp_path / "source", "test", cache_dir=tmp_path / "hf")
    uint8 = load_training_data(tmp_path / "source", "test", image_format="uint8", cache_dir=tmp_path / "hf")
    assert len(floats) == len(uint8) == SPLIT_SIZES["test"]
    for index in range(len(floats)):
        sample, raw = floats[index], uint8[index]
        assert sample["image"].shape == raw["image"].shape == (3, 128, 128)
        assert sample["image"].dtype == torch.float32 and raw["image"].dtype == torch.uint8
        assert sample["aus"].dtype == torch.float32 and sample["aus"].shape == (NUM_AUS,)
        torch.testing.assert_close(sample["image"], raw["image"].float() / 127.5 - 1, atol=1e-6, rtol=0)
        torch.testing.assert_close(sample["aus"].numpy(), expected["test"][index], atol=1e-6, rtol=0)
    assert floats[0]["image"].min() >= -1 and floats[0]["image"].max() <= 1


def test_uint8_samples_are_the_decoded_pixels(tmp_path: Path) -> None:
    write_saved(tmp_path / "source")  # PNG: lossless, so the pixels are known exactly
    samples = load_training_data(tmp_path / "source", "test", image_format="uint8")
    original = np.asarray(face(100))  # test split, row 0
    np.testing.assert_array_equal(samples[0]["image"].permute(1, 2, 0).numpy(), original)


def test_non_square_images_are_centre_cropped_and_resized(tmp_path: Path) -> None:
    folder = tmp_path / "source" / "train"
    folder.mkdir(parents=True)
    wide = np.zeros((200, 400, 3), np.uint8)
    wide[:, :100] = wide[:, 300:] = (255, 0, 0)  # red outside the centred 200 x 200 square
    wide[:, 100:300] = (0, 200, 0)
    Image.fromarray(wide).save(folder / "wide.png")
    (folder / "metadata.csv").write_text("file_name," + ",".join(AU_NAMES) + "\nwide.png" + ",0.5" * 17 + "\n")
    sample = load_training_data(tmp_path / "source", image_format="uint8", cache_dir=tmp_path / "hf")[0]["image"]
    assert sample.shape == (3, 128, 128)
    # Only the green centre is left (Lanczos rings a little at the crop edge: no red stripes).
    assert sample[0].max() < 16 and sample[1].min() > 190


def test_openface_intensities_are_divided_by_five(tmp_path: Path) -> None:
    folder = tmp_path / "source" / "train"
    folder.mkdir(parents=True)
    face(0).save(folder / "a.png")
    row = {"file_name": "a.png", **{column: 0.0 for column in OPENFACE_COLUMNS}, "AU12_r": 4.0, "AU45_r": 5.0}
    (folder / "metadata.jsonl").write_text(json.dumps(row) + "\n")
    aus = load_hf_dataset(tmp_path / "source", cache_dir=tmp_path / "hf")[0]["aus"]
    assert aus[AU_NAMES.index("AU12")] == pytest.approx(0.8)
    assert aus[AU_NAMES.index("AU45")] == pytest.approx(1.0)
    assert sum(aus) == pytest.approx(1.8)


def test_expression_and_identity_columns_are_kept(tmp_path: Path) -> None:
    rows = {
        "image": [face(i) for i in range(4)],
        "aus": random_aus(4, 0).tolist(),
        "expression": ["Happy", "Sad", "Happy", "Neutral"],
        "identity": [0, 0, 1, 1],
        "comment": ["dropped"] * 4,
    }
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "saved"))
    dataset = load_hf_dataset(tmp_path / "saved")
    assert dataset.column_names == ["image", "aus", "expression", "identity"]
    assert isinstance(dataset.features["expression"], datasets.ClassLabel)
    names = dataset.features["expression"].int2str(dataset["expression"])
    assert names == rows["expression"]
    assert dataset.features["identity"] == datasets.Value("int64")


def write_bad_rows(root: Path) -> None:
    """8 rows: 4 good, then one corrupt file, one missing file, one NaN AU, one AU above 1."""
    folder = root / "train"
    folder.mkdir(parents=True)
    lines = ["file_name," + ",".join(AU_NAMES)]
    values = ",".join(["0.2"] * NUM_AUS)
    for i in range(4):
        face(i).save(folder / f"good{i}.png")
        lines.append(f"good{i}.png,{values}")
    (folder / "corrupt.jpg").write_bytes(encoded(face(9), "JPEG")[:300])  # truncated
    lines.append(f"corrupt.jpg,{values}")
    lines.append(f"missing.png,{values}")
    face(10).save(folder / "nan.png")
    lines.append("nan.png," + ",".join(["0.2"] * 16 + [""]))
    face(11).save(folder / "high.png")
    lines.append("high.png," + ",".join(["1.5"] + ["0.2"] * 16))
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")


def test_bad_rows_are_dropped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_bad_rows(tmp_path / "source")
    raw = datasets.load_dataset(
        "imagefolder", data_dir=str(tmp_path / "source"), split="train", cache_dir=str(tmp_path / "hf")
    )
    dataset, report = validate(raw)
    assert len(dataset) == report.kept == 4
    assert dict(report.counts) == {
        "unreadable image": 1,
        "missing file": 1,
        "NaN AUs": 1,
        "AUs outside [0, 1]": 1,
    }
    assert report.examples["unreadable image"] == ["corrupt.jpg"]
    assert report.examples["AUs outside [0, 1]"] == ["high.png"]

    with caplog.at_level(logging.WARNING):
        samples = load_training_data(tmp_path / "source", cache_dir=tmp_path / "hf")
    assert "kept 4, dropped 4" in caplog.text and "missing.png" in caplog.text
    batches = list(DataLoader(samples, batch_size=3))  # every remaining row decodes
    assert sum(len(b["aus"]) for b in batches) == 4


def test_missing_au_columns_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "source" / "train"
    folder.mkdir(parents=True)
    face(0).save(folder / "a.png")
    kept = [name for name in AU_NAMES if name not in ("AU26", "AU45")]
    (folder / "metadata.csv").write_text("file_name," + ",".join(kept) + "\na.png" + ",0.1" * 15 + "\n")
    with pytest.raises(ValueError, match="AU columns missing: AU26, AU45"):
        load_hf_dataset(tmp_path / "source", cache_dir=tmp_path / "hf")


def test_no_au_columns_at_all_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no AU columns"):
        find_au_columns(["file_name", "valence"])


def test_a_source_without_usable_rows_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "source" / "train"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"not an image")
    (folder / "metadata.csv").write_text("file_name," + ",".join(AU_NAMES) + "\na.jpg" + ",0.1" * 17 + "\n")
    with pytest.raises(ValueError, match=r"no usable rows \(kept 0, dropped 1: 1 unreadable image \(a.jpg\)\)"):
        load_hf_dataset(tmp_path / "source", cache_dir=tmp_path / "hf")


def test_unknown_split_and_unknown_folders_are_clear_errors(tmp_path: Path) -> None:
    write_parquet(tmp_path / "parquet")
    with pytest.raises(ValueError, match="splits train, test, not 'validation'"):
        load_hf_dataset(tmp_path / "parquet", "validation", cache_dir=tmp_path / "hf")
    write_saved(tmp_path / "saved")
    with pytest.raises(ValueError, match="has no split 'validation'"):
        load_hf_dataset(tmp_path / "saved", "validation")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot tell what kind of dataset"):
        load_hf_dataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        load_hf_dataset(tmp_path / "nowhere" / "at" / "all")
    with pytest.raises(ValueError, match="image_format"):
        load_training_data(tmp_path / "saved", image_format="float16")


def test_hub_id_offline_fails_fast_with_a_hint() -> None:
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE=1"):
        load_hf_dataset("nobody-here/no-such-dataset", "train")
    assert time.perf_counter() - start < 10


def test_unreachable_hub_is_detected_without_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://127.0.0.1:9")  # discard port: refused
    for proxy in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="not a local folder and the Hub cannot be reached"):
        load_hf_dataset("nobody-here/no-such-dataset", "train")
    assert time.perf_counter() - start < 10


def test_data_loader_workers_decode_batches(tmp_path: Path) -> None:
    write_parquet(tmp_path / "source")
    samples = load_training_data(tmp_path / "source", cache_dir=tmp_path / "hf")
    loader = DataLoader(samples, batch_size=4, num_workers=2, shuffle=True, generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert [len(b["aus"]) for b in batches] == [4, 2]
    assert batches[0]["image"].shape == (4, 3, 128, 128)


# ----------------------------------------------------------------------------------------------
# uint8 cache


def test_uint8_cache_matches_the_decoded_source(tmp_path: Path) -> None:
    write_parquet(tmp_path / "source")
    direct = load_training_data(tmp_path / "source", image_format="uint8", cache_dir=tmp_path / "hf")
    cached = load_training_data(
        tmp_path / "source", image_format="uint8", cache=tmp_path / "cache", cache_dir=tmp_path / "hf"
    )
    assert isinstance(cached, ArrayFaceDataset) and len(cached) == len(direct) == 6
    for index in range(len(direct)):
        torch.testing.assert_close(cached[index]["image"], direct[index]["image"], atol=0, rtol=0)
        torch.testing.assert_close(cached[index]["aus"], direct[index]["aus"], atol=0, rtol=0)
    floats = load_training_data(tmp_path / "cache" / "train")  # the cache folder is a source too
    torch.testing.assert_close(floats[2]["image"], direct[2]["image"].float() / 127.5 - 1, atol=1e-6, rtol=0)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["train"]  # no temporary folder left


def test_uint8_cache_is_built_once_and_tied_to_its_source(tmp_path: Path) -> None:
    write_parquet(tmp_path / "source")
    write_saved(tmp_path / "other")
    folder = build_uint8_cache(tmp_path / "source", tmp_path / "cache", cache_dir=tmp_path / "hf")
    stamp = (folder / "images.npy").stat().st_mtime_ns
    assert build_uint8_cache(tmp_path / "source", tmp_path / "cache") == folder
    assert (folder / "images.npy").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="was built from"):
        build_uint8_cache(tmp_path / "other", tmp_path / "cache")
    build_uint8_cache(tmp_path / "other", tmp_path / "cache", overwrite=True)
    assert len(ArrayFaceDataset(folder)) == SPLIT_SIZES["train"]


def test_failed_cache_build_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_saved(tmp_path / "source")

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "_write_cache", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_uint8_cache(tmp_path / "source", tmp_path / "cache" / "train")
    assert list((tmp_path / "cache").iterdir()) == []


def test_uint8_cache_pickles_without_its_pixels(tmp_path: Path) -> None:
    write_saved(tmp_path / "source")
    cached = load_training_data(tmp_path / "source", cache=tmp_path / "cache")
    cached[0]  # opens the memory map
    import pickle

    assert len(pickle.dumps(cached)) < 10_000  # the workers reopen the file
    assert torch.equal(pickle.loads(pickle.dumps(cached))[1]["image"], cached[1]["image"])


# ----------------------------------------------------------------------------------------------
# Training pairs


def test_pair_targets_take_another_samples_aus() -> None:
    aus = torch.rand(16, NUM_AUS, generator=torch.Generator().manual_seed(0))
    targets = pair_targets(aus, torch.Generator().manual_seed(1))
    donors = [int(torch.nonzero((aus == row).all(dim=1))[0]) for row in targets]
    assert sorted(donors) == list(range(16))  # a permutation of the batch
    assert all(donor != index for index, donor in enumerate(donors))  # without fixed points


def test_pair_targets_are_reproducible_and_clipped() -> None:
    aus = torch.rand(8, NUM_AUS, generator=torch.Generator().manual_seed(0))
    first = pair_targets(aus, torch.Generator().manual_seed(3), noise_std=0.2)
    again = pair_targets(aus, torch.Generator().manual_seed(3), noise_std=0.2)
    other = pair_targets(aus, torch.Generator().manual_seed(4), noise_std=0.2)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 1
    assert (first == 0).any() or (first == 1).any()  # noise of 0.2 pushes some values past the ends


def test_pair_targets_with_one_sample_and_bad_input() -> None:
    aus = torch.full((1, NUM_AUS), 0.5)
    assert torch.equal(pair_targets(aus, torch.Generator().manual_seed(0)), aus)
    with pytest.raises(ValueError, match="shape"):
        pair_targets(torch.zeros(4, 16), torch.Generator())
    with pytest.raises(ValueError, match="noise_std"):
        pair_targets(aus, torch.Generator(), noise_std=-1)


# ----------------------------------------------------------------------------------------------
# SynthFACS and the real data


def test_synthfacs_source_renders_on_the_fly(tmp_path: Path) -> None:
    synthetic = pytest.importorskip("wemgan.data.synthetic")
    samples = load_training_data("synthfacs", "train", n_identities=3, per_identity=2, seed=5)
    assert len(samples) == 6
    expected = synthetic.make_sample("train", 2, 1, seed=5)  # index 5 = identity 2, sample 1
    sample = samples[5]
    assert sample["image"].shape == (3, 128, 128) and sample["image"].dtype == torch.float32
    np.testing.assert_allclose(sample["aus"].numpy(), expected.aus, atol=1e-6)
    pixels = torch.from_numpy(np.array(expected.image.convert("RGB"))).permute(2, 0, 1)
    torch.testing.assert_close(sample["image"], pixels.float() / 127.5 - 1, atol=1e-6, rtol=0)
    assert len(load_training_data("synthfacs", "test")) == 100 * 8  # the defaults
    cached = load_training_data("synthfacs", n_identities=3, per_identity=2, seed=5, cache=tmp_path / "cache")
    torch.testing.assert_close(cached[5]["image"], sample["image"], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="was built from synthfacs"):  # another seed is another source
        load_training_data("synthfacs", n_identities=3, per_identity=2, seed=6, cache=tmp_path / "cache")

    dataset = load_hf_dataset("synthfacs", "test", n_identities=2, per_identity=2)
    assert dataset.column_names == ["image", "aus", "expression", "identity"] and len(dataset) == 4
    assert dataset.features["aus"] == canonical_features()["aus"]


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="shared/data/faces-au is not next to the repository")
def test_real_faces_load_through_the_same_entry_point(tmp_path: Path) -> None:
    dataset = load_hf_dataset(REAL_DATA, "test", limit=64, cache_dir=tmp_path / "hf")
    assert dataset.features == canonical_features() and len(dataset) == 64
    samples = load_training_data(REAL_DATA, "test", limit=64, cache_dir=tmp_path / "hf")
    batch = next(iter(DataLoader(samples, batch_size=16)))
    assert batch["image"].shape == (16, 3, 128, 128)
    assert -1 <= batch["image"].min() < batch["image"].max() <= 1
    assert batch["aus"].min() >= 0 and batch["aus"].max() <= 1 and batch["aus"].sum() > 0
