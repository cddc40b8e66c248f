"""The preparation CLI end to end: raw images + OpenFace CSVs -> parquet shards that load for training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets
import huggingface_hub.constants
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from wemgan.aus import AU_NAMES, OPENFACE_COLUMNS
from wemgan.data import prepare
from wemgan.data.datasets import AFFECTNET_CATEGORIES, load_hf_dataset

AU12 = AU_NAMES.index("AU12")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def save_face(path: Path, seed: int, size: tuple[int, int] = (160, 160)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def openface_row(au12: float = 2.0, **fields: object) -> dict[str, object]:
    """One row as OpenFace writes it: AUxx_r (0-5), then AUxx_c presence including AU28_c."""
    row: dict[str, object] = {"face": 0, "success": 1, "confidence": 0.98, "gaze_0_x": 0.1}
    row.update({column: 1.0 for column in OPENFACE_COLUMNS})
    row["AU12_r"] = au12
    row.update({f"{name}_c": 1 for name in (*AU_NAMES[:13], "AU28", *AU_NAMES[13:])})
    row.update(fields)
    return row


def write_openface_csv(path: Path, rows: list[dict[str, object]]) -> None:
    """OpenFace's CSV style: fields separated by ', '."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [", ".join(rows[0])] + [", ".join(str(value) for value in row.values()) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def per_image_fixture(root: Path) -> tuple[Path, Path]:
    """8 usable faces (one with two detected faces) and one of every reason to drop a row."""
    images, csvs = root / "images", root / "openface"
    good = ["a0", "a1", "a6", "a7"]
    for i, name in enumerate(good):
        save_face(images / f"{name}.png", i)
        write_openface_csv(csvs / f"{name}.csv", [openface_row()])
    for i in range(4):
        save_face(images / "sub" / f"b{i}.png", 10 + i)
        write_openface_csv(csvs / f"b{i}.csv", [openface_row()])
    write_openface_csv(  # two faces: the confident one (AU12 4.0) is used
        csvs / "a1.csv", [openface_row(au12=1.0, confidence=0.6), openface_row(au12=4.0, face=1, confidence=0.95)]
    )
    for i, (name, row) in enumerate(
        {
            "a2": openface_row(success=0),
            "a3": openface_row(confidence=0.2),
            "a4": openface_row(AU04_r=6.5),
            "a5": openface_row(AU01_r=""),
        }.items()
    ):
        save_face(images / f"{name}.png", 20 + i)
        write_openface_csv(csvs / f"{name}.csv", [row])
    write_openface_csv(csvs / "ghost.csv", [openface_row()])
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    write_openface_csv(csvs / "corrupt.csv", [openface_row()])
    save_face(images / "orphan.png", 30)
    return images, csvs


def run(*argv: object) -> dict[str, int]:
    return prepare.prepare(prepare.parse_args([str(a) for a in argv]))


def test_per_image_csvs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images, csvs = per_image_fixture(tmp_path)
    out = tmp_path / "out"
    kept = run("--images", images, "--openface-csv", csvs, "--out", out, "--test-fraction", 0.25, "--num-workers", 1)
    # The split is drawn before decoding (2 of the 9 matched rows); corrupt.jpg may have been one of them.
    assert kept["train"] + kept["test"] == 8 and 1 <= kept["test"] <= 2
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
    ]
    expected_drops = {
        "OpenFace failed (success 0)": ["a2"],
        "confidence below 0.5": ["a3"],
        "AUs outside [0, 5] (OpenFace scale)": ["a4"],
        "NaN AUs": ["a5"],
        "no image file for the CSV row": ["ghost"],
        "unreadable image": ["corrupt.jpg"],
        "no OpenFace row for the image": ["orphan"],
    }
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["kept"] == kept
    assert summary["dropped"] == {reason: 1 for reason in expected_drops}
    assert summary["examples"] == expected_drops
    printed = capsys.readouterr().out
    assert "kept 8, dropped 7" in printed and "ghost" in printed

    train = load_hf_dataset(out, "train", cache_dir=tmp_path / "hf")
    test = load_hf_dataset(out, "test", cache_dir=tmp_path / "hf")
    rows = pq.read_table(out / "data" / "train-00000-of-00001.parquet").to_pylist()
    rows += pq.read_table(out / "data" / "test-00000-of-00001.parquet").to_pylist()
    by_name = {row["file_name"]: row for row in rows}
    assert sorted(by_name) == ["a0.png", "a1.png", "a6.png", "a7.png"] + [f"sub/b{i}.png" for i in range(4)]
    assert by_name["a1.png"]["aus"][AU12] == pytest.approx(0.8)  # 4.0 / 5 from the confident face
    assert by_name["a0.png"]["aus"][0] == pytest.approx(0.2)
    assert (len(train), len(test)) == (kept["train"], kept["test"])
    assert train[0]["image"].size == (128, 128) and train[0]["image"].format == "JPEG"


def test_command_line(tmp_path: Path) -> None:
    images, table = single_csv_fixture(tmp_path)
    command = [sys.executable, "-m", "wemgan.data.prepare", "--images", str(images), "--openface-csv", str(table)]
    done = subprocess.run([*command, "--out", str(tmp_path / "out")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "train 28, test 0" in done.stdout and "2 Non-face (img28.jpg, img29.jpg)" in done.stdout
    failed = subprocess.run([*command, "--out", str(tmp_path / "out")], capture_output=True, text=True, check=False)
    assert failed.returncode == 1 and "error: --out" in failed.stderr and "Traceback" not in failed.stderr


def test_workers_and_reruns_give_the_same_dataset(tmp_path: Path) -> None:
    images, csvs = per_image_fixture(tmp_path)
    for out, workers in (("one", 1), ("two", 2)):
        options = ("--num-workers", workers, "--seed", 3, "--test-fraction", 0.25)
        run("--images", images, "--openface-csv", csvs, "--out", tmp_path / out, *options)
    for split in ("train", "test"):
        one = pq.read_table(tmp_path / "one" / "data" / f"{split}-00000-of-00001.parquet")
        two = pq.read_table(tmp_path / "two" / "data" / f"{split}-00000-of-00001.parquet")
        assert one.equals(two)


def single_csv_fixture(root: Path, with_expression: bool = True) -> tuple[Path, Path]:
    """30 non-square JPEGs in one CSV: 10 Happy (code 1), 10 Sad (name), 8 Neutral (0), 2 Non-face (10)."""
    images = root / "images"
    labels = ["1"] * 10 + ["Sad"] * 10 + ["0"] * 8 + ["10"] * 2
    rows = []
    for i, label in enumerate(labels):
        save_face(images / f"img{i:02d}.jpg", i, size=(100, 120))
        row = {"file_name": f"img{i:02d}.jpg", **openface_row(au12=i / 10)}
        if with_expression:
            row["expression"] = label
        rows.append(row)
    write_openface_csv(root / "openface.csv", rows)
    return images, root / "openface.csv"


def test_single_csv_with_expressions_is_stratified_and_sharded(tmp_path: Path) -> None:
    images, table = single_csv_fixture(tmp_path)
    out = tmp_path / "out"
    run("--images", images, "--openface-csv", table, "--out", out, "--test-fraction", 0.2, "--shard-rows", 5)
    assert sorted(p.name for p in (out / "data").glob("train-*")) == [
        f"train-0000{i}-of-00005.parquet" for i in range(5)
    ]
    assert sorted(p.name for p in (out / "data").glob("test-*")) == [f"test-0000{i}-of-00002.parquet" for i in range(2)]
    test = load_hf_dataset(out, "test", cache_dir=tmp_path / "hf")
    train = load_hf_dataset(out, "train", cache_dir=tmp_path / "hf")
    assert train.features["expression"].names == list(AFFECTNET_CATEGORIES)
    test_names = test.features["expression"].int2str(test["expression"])
    assert sorted(test_names) == ["Happy", "Happy", "Neutral", "Neutral", "Sad", "Sad"]  # 20% of each class
    assert len(train) == 22  # 28 faces, Non-face dropped
    assert json.loads((out / "prepare_summary.json").read_text())["dropped"] == {"Non-face": 2}


def test_labels_file_joins_on_the_relative_path(tmp_path: Path) -> None:
    images, table = single_csv_fixture(tmp_path, with_expression=False)
    labels = tmp_path / "training.csv"  # AffectNet's layout
    lines = ["subDirectory_filePath,face_x,expression"] + [f"img{i:02d}.jpg,0,{i % 3}" for i in range(29)]
    labels.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    kept = run("--images", images, "--openface-csv", table, "--labels", labels, "--out", out, "--num-workers", 1)
    assert kept["train"] + kept["test"] == 29
    assert json.loads((out / "prepare_summary.json").read_text())["dropped"] == {"no expression label": 1}
    train = load_hf_dataset(out, "train", cache_dir=tmp_path / "hf")
    assert set(train.features["expression"].int2str(train["expression"])) == {"Neutral", "Happy", "Sad"}


def test_labels_of_nested_images_join_with_per_image_csvs(tmp_path: Path) -> None:
    """AffectNet's case: labels name '689/abc.jpg', OpenFace wrote abc.csv."""
    images, csvs = per_image_fixture(tmp_path)
    lines = ["subDirectory_filePath,expression"] + [f"sub/b{i}.png,{i}" for i in range(4)] + ["a0.png,Happy"]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    run(
        "--images",
        images,
        "--openface-csv",
        csvs,
        "--labels",
        tmp_path / "labels.csv",
        "--out",
        out,
        "--test-fraction",
        0,
    )
    train = pq.read_table(out / "data" / "train-00000-of-00001.parquet").to_pydict()
    assert dict(zip(train["file_name"], train["expression"], strict=True)) == {
        "a0.png": 1,
        **{f"sub/b{i}.png": i for i in range(4)},
    }


def test_parse_expression() -> None:
    assert prepare.parse_expression("3") == (3, None)
    assert prepare.parse_expression(7.0) == (7, None)
    assert prepare.parse_expression("surprise") == (3, None)
    assert prepare.parse_expression("Non-Face") == (None, "Non-face")
    assert prepare.parse_expression(10) == (None, "Non-face")
    assert prepare.parse_expression("bored") == (None, "unknown expression")
    assert prepare.parse_expression(float("nan")) == (None, "no expression label")


def test_split_is_reproducible_and_stratified() -> None:
    groups = [0] * 50 + [1] * 30 + [None] * 20
    first = prepare.choose_test_rows(groups, 0.1, seed=1)
    assert np.array_equal(first, prepare.choose_test_rows(groups, 0.1, seed=1))
    assert not np.array_equal(first, prepare.choose_test_rows(groups, 0.1, seed=2))
    assert (first[:50].sum(), first[50:80].sum(), first[80:].sum()) == (5, 3, 2)


def test_missing_columns_and_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    images, table = single_csv_fixture(tmp_path)
    text = table.read_text().replace(", AU45_r", ", AU45_x")
    (tmp_path / "no45.csv").write_text(text)
    with pytest.raises(SystemExit, match="AU columns missing: AU45_r"):
        prepare.main(
            ["--images", str(images), "--openface-csv", str(tmp_path / "no45.csv"), "--out", str(tmp_path / "o")]
        )
    (tmp_path / "noname.csv").write_text(table.read_text().replace("file_name, ", "picture, ", 1))
    with pytest.raises(SystemExit, match="no file-name column"):
        prepare.main(
            ["--images", str(images), "--openface-csv", str(tmp_path / "noname.csv"), "--out", str(tmp_path / "o")]
        )
    (tmp_path / "exists").mkdir()
    with pytest.raises(SystemExit, match="exists; choose a new folder or pass --overwrite"):
        prepare.main(["--images", str(images), "--openface-csv", str(table), "--out", str(tmp_path / "exists")])
    with pytest.raises(SystemExit):
        prepare.parse_args(["--images", "i", "--openface-csv", "c", "--out", "o", "--test-fraction", "1.5"])
    assert not (tmp_path / "o").exists()


def test_an_interrupted_run_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, table = single_csv_fixture(tmp_path)
    calls = []

    def failing(path: Path, size: int = 128) -> tuple[bytes | None, str | None]:
        calls.append(path)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return b"", None

    monkeypatch.setattr(prepare, "process_image", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        run("--images", images, "--openface-csv", table, "--out", tmp_path / "out" / "set", "--num-workers", 1)
    assert list((tmp_path / "out").iterdir()) == []


def test_align_without_the_faces_extra_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, table = single_csv_fixture(tmp_path)
    monkeypatch.setattr(prepare.faces, "available", lambda: False)  # as if dlib were not installed
    with pytest.raises(SystemExit, match=r"--align needs dlib"):
        prepare.main(["--images", str(images), "--openface-csv", str(table), "--out", str(tmp_path / "o"), "--align"])


def test_align_uses_the_detected_face(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in detector: faces in the even images only; the crop is a flat grey square."""
    images, table = single_csv_fixture(tmp_path)

    class FaceNotFoundError(ValueError):
        pass

    def locate(pixels: torch.Tensor, size: int, align_faces: bool) -> list[object]:
        assert align_faces and pixels.shape == (3, 120, 100) and pixels.max() <= 1
        if pixels[0, 0, 0] < 0.5:  # stands in for "no face"
            raise FaceNotFoundError("none")
        return ["face"]

    stub = types.SimpleNamespace(
        available=lambda: True,
        FaceNotFoundError=FaceNotFoundError,
        locate=locate,
        crop=lambda pixels, face: torch.full((1, 3, 128, 128), 0.5),
    )
    monkeypatch.setattr(prepare, "faces", stub)
    out = tmp_path / "out"
    kept = run("--images", images, "--openface-csv", table, "--out", out, "--align", "--num-workers", 1)
    dropped = json.loads((out / "prepare_summary.json").read_text())["dropped"]
    assert kept["train"] + kept["test"] + dropped["no face detected"] == 28 and dropped["no face detected"] > 0
    pixels = np.asarray(load_hf_dataset(out, "train", cache_dir=tmp_path / "hf")[0]["image"])
    assert pixels.shape == (128, 128, 3) and np.abs(pixels.astype(int) - 128).max() <= 1
