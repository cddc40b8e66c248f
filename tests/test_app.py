"""The demo app: starts offline, never shows an untrained model, and serves every endpoint over HTTP."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio = pytest.importorskip("gradio", reason="the app extra is not installed")
from conftest import TINY  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
import wemgan.demo  # noqa: E402
from wemgan import AU_NAMES, MAX_STRENGTH, WEMGAN, InvalidImageError  # noqa: E402
from wemgan.demo import (  # noqa: E402
    ERROR_NOTE,
    OWN_EXPRESSION,
    PHOTOS,
    REFERENCE_PHOTO,
    Demo,
    PreparedPhotos,
    displayable,
    example_faces,
    example_photos,
    frame_strip,
    licence_line,
    model_card,
    private_gradio_folder,
    readable,
    write_gif,
    write_mp4,
)
from wemgan.images import ImageTooSmallError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict[str, Path]:
    return example_faces(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Client:
    """The app on a trained tiny model, served on 127.0.0.1 as `python app.py` serves it."""
    folder = tmp_path_factory.mktemp("model")
    WEMGAN(**TINY, provenance={"dataset": "unit-test weights", "steps": 1}).save_pretrained(folder)
    model, status = app.load_model(str(folder))
    assert model is not None and "unit-test weights" in status
    demo = app.build_demo(model, status)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.launch_options())
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def tiny_model_trained() -> WEMGAN:
    return WEMGAN(**TINY, provenance={"dataset": "unit-test weights", "steps": 1})


def test_untrained_or_missing_models_are_never_shown(tmp_path):
    model, status = app.load_model(str(tmp_path))
    assert model is None and "No trained model" in status
    model, status = app.load_model(str(tmp_path / "not-there"))  # hub/default before shipping
    assert model is None and "No trained model" in status
    WEMGAN(**TINY).save_pretrained(tmp_path)
    model, status = app.load_model(str(tmp_path))
    assert model is None and "never trained" in status
    demo = app.build_demo(model, status)
    public = [fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"]
    assert public == []  # no control, and no API endpoint, that would run the random network


def test_every_endpoint_on_a_synthfacs_face(client, faces):
    face, happy = handle_file(str(faces["face-203"])), handle_file(str(faces["happy-201"]))
    size = Image.open(faces["face-203"]).size
    result, chart = client.predict(face, happy, 1.0, api_name="/transfer")
    assert Image.open(result).size == size
    assert Image.open(chart).width > 400  # the AU bar chart
    aus = client.predict(photo=face, api_name="/estimate_aus")
    assert tuple(aus) == tuple(AU_NAMES) and all(0 <= value <= 1 for value in aus.values())
    raised = {name: min(1.0, value + 0.3) for name, value in aus.items()}
    edited = client.predict(photo=face, aus=raised, api_name="/edit_aus")
    assert Image.open(edited).size == size
    gif, mp4, strip, note = client.predict(face, OWN_EXPRESSION, None, "Happy", None, 8, api_name="/interpolate")
    with Image.open(gif) as animation:
        assert animation.size == size and animation.n_frames == 2 * 8 - 2  # forth and back
    assert Image.open(strip).size == (8 * 160, 160)
    if mp4 is None:
        assert "install PyAV" in note
    else:
        assert Path(mp4["video"] if isinstance(mp4, dict) else mp4).stat().st_size > 1000


def test_every_endpoint_on_real_photos(client, photo_dir):
    photo, reference = handle_file(str(photo_dir / "single_face.jpg")), handle_file(str(photo_dir / "0-f15-hao-ph.jpg"))
    size = Image.open(photo_dir / "single_face.jpg").size
    result, _ = client.predict(photo, reference, 1.5, api_name="/transfer")
    assert Image.open(result).size == size
    aus = client.predict(photo=photo, api_name="/estimate_aus")
    assert Image.open(client.predict(photo=photo, aus=aus, api_name="/edit_aus")).size == size
    gif, _, strip, _ = client.predict(photo, "Sad", None, REFERENCE_PHOTO, reference, 3, api_name="/interpolate")
    with Image.open(gif) as animation:
        assert animation.size == (512, 503) and animation.n_frames == 4  # 572x562 shrunk: long side 512
    assert Image.open(strip).height == 160


def _not_an_image(folder: Path) -> Path:
    path = folder / "notes.jpg"
    path.write_text("this is text, not a photo")
    return path


def _tiny(folder: Path) -> Path:
    Image.new("RGB", (1, 1), "white").save(folder / "dot.png")
    return folder / "dot.png"


def _huge(folder: Path) -> Path:
    Image.new("1", (7000, 6000)).save(folder / "huge.png")  # 42 MP, a few kB on disk
    return folder / "huge.png"


def _bomb(folder: Path) -> Path:
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # 400 MP: PIL refuses to open it at all
    return folder / "bomb.png"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_not_an_image, "is not an image file that can be read"),
        (lambda _: None, "No face was found"),
        (_tiny, "is only 1x1 pixels; a face needs at least 32x32"),
        (_huge, "too large: at most 40 megapixels"),
        (_bomb, "too large: at most 40 megapixels"),
    ],
    ids=["not-an-image", "no-face", "1x1", "42MP", "decompression-bomb"],
)
def test_bad_inputs_are_readable_errors_and_the_server_goes_on(client, faces, photo_dir, tmp_path, make, message):
    path = make(tmp_path) or photo_dir / "free-mountain-vector-01.jpg"
    for endpoint, extra in (("/estimate_aus", ()), ("/transfer", (handle_file(str(faces["happy-201"])), 1.0))):
        with pytest.raises(AppError, match=message) as caught:
            client.predict(handle_file(str(path)), *extra, api_name=endpoint)
        assert "Traceback" not in str(caught.value)
    assert len(client.predict(photo=handle_file(str(faces["face-201"])), api_name="/estimate_aus")) == len(AU_NAMES)


def test_a_visitor_error_takes_one_line_of_the_server_log(client, photo_dir, capfd, caplog):
    capfd.readouterr()
    with pytest.raises(AppError, match="No face was found"):
        client.predict(photo=handle_file(str(photo_dir / "free-mountain-vector-01.jpg")), api_name="/estimate_aus")
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    logged = [record.getMessage() for record in caplog.records if record.name == "wemgan.demo"]
    assert len(logged) == 1 and logged[0].startswith("visitor error: No face was found in the photo.")


def test_transfer_errors_name_the_photo_they_are_about(client, faces, photo_dir, tmp_path):
    face, landscape = handle_file(str(faces["face-201"])), handle_file(str(photo_dir / "free-mountain-vector-01.jpg"))
    with pytest.raises(AppError, match="No face was found in the reference photo"):
        client.predict(face, landscape, 1.0, api_name="/transfer")
    with pytest.raises(AppError, match="No face was found in the photo to edit"):
        client.predict(landscape, face, 1.0, api_name="/transfer")
    dot = handle_file(str(_tiny(tmp_path)))
    with pytest.raises(AppError, match="The reference photo is only 1x1 pixels"):
        client.predict(face, dot, 1.0, api_name="/transfer")
    with pytest.raises(AppError, match="The photo to edit is only 1x1 pixels"):
        client.predict(dot, face, 1.0, api_name="/transfer")


def test_missing_or_out_of_range_inputs_say_what_to_do(client, faces):
    face = handle_file(str(faces["face-201"]))
    with pytest.raises(AppError, match="Upload a reference photo first"):
        client.predict(face, None, 1.0, api_name="/transfer")
    with pytest.raises(AppError, match="Frames must be a whole number from 2 to 16, got 1000"):  # the slider's range
        client.predict(face, "Sad", None, "Happy", None, 1000, api_name="/interpolate")
    with pytest.raises(AppError, match="Bored"):
        client.predict(face, "Bored", None, "Happy", None, 4, api_name="/interpolate")


def test_the_api_names_and_describes_its_parameters(client, faces):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert sorted(endpoints) == ["/edit_aus", "/estimate_aus", "/interpolate", "/transfer"]
    edit = {p["parameter_name"]: p["parameter_has_default"] for p in endpoints["/edit_aus"]["parameters"]}
    assert edit == {"photo": False, "aus": False, "face": True, "strength": True}
    interpolate = {p["parameter_name"]: p["parameter_has_default"] for p in endpoints["/interpolate"]["parameters"]}
    assert interpolate["photo"] is False
    assert interpolate["start_reference"] is interpolate["end_reference"] is True  # optional, and listed so
    described = {
        (name, p["parameter_name"]): p["python_type"] for name, e in endpoints.items() for p in e["parameters"]
    }
    for endpoint in ("/transfer", "/interpolate", "/edit_aus"):  # not Literal['1'] (the first photo's one face)
        face = described[endpoint, "face"]
        assert face["type"] == "str" and '"1"' in face["description"] and '"all"' in face["description"], endpoint
    assert "not named keep the face's own value" in described["/edit_aus", "aus"]["description"]
    assert all(name in described["/edit_aus", "aus"]["description"] for name in AU_NAMES)
    with pytest.raises(TypeError, match="No value provided for required argument: aus"):
        client.predict(photo=handle_file(str(faces["face-201"])), api_name="/edit_aus")


def test_edit_aus_sets_the_aus_it_names_and_keeps_the_others(client, faces):
    face = handle_file(str(faces["face-201"]))
    own = client.predict(photo=face, api_name="/estimate_aus")
    partial = np.asarray(Image.open(client.predict(photo=face, aus={"AU12": 0.9}, api_name="/edit_aus")), float)
    full = np.asarray(Image.open(client.predict(photo=face, aus={**own, "AU12": 0.9}, api_name="/edit_aus")), float)
    original = np.asarray(Image.open(faces["face-201"]).convert("RGB"), float)
    assert np.abs(partial - original).max() > 5  # AU12 was set ...
    assert np.abs(partial - full).mean() < 0.5  # ... and the 16 others kept the face's own (rounded to 4 places)
    lower_case = np.asarray(Image.open(client.predict(photo=face, aus={"au12": 0.9}, api_name="/edit_aus")), float)
    assert np.array_equal(lower_case, partial)  # the library's spellings are accepted


@pytest.mark.parametrize(
    ("aus", "message"),
    [
        ({"AU12": 0.9, "AU99": 1.0, "smile": 1.0}, "Unknown AU names in aus: 'AU99', 'smile'. The 17 valid names are "),
        ({"AU12": 1.5}, r"aus\['AU12'\] must be a number from 0 to 1, got 1.5"),
        ({"AU12": "high"}, r"aus\['AU12'\] must be a number from 0 to 1, got 'high'"),
    ],
    ids=["unknown-names", "out-of-range", "not-a-number"],
)
def test_edit_aus_refuses_what_it_cannot_do(client, faces, aus, message):
    face = handle_file(str(faces["face-201"]))
    with pytest.raises(AppError, match=message) as caught:
        client.predict(photo=face, aus=aus, api_name="/edit_aus")
    if "Unknown" in message:
        assert str(caught.value).rstrip().endswith(", ".join(AU_NAMES) + ".")  # all 17, in order


def test_edit_aus_checks_the_photo_before_the_aus(client, faces, tmp_path):
    face = handle_file(str(faces["face-201"]))
    for photo, message in ((_not_an_image(tmp_path), "is not an image file"), (_tiny(tmp_path), "only 1x1 pixels")):
        with pytest.raises(AppError, match=message):
            client.predict(photo=handle_file(str(photo)), aus={"AU99": 1.0}, api_name="/edit_aus")
    with pytest.raises(AppError, match=f"Strength must be a number from 0 to {MAX_STRENGTH:g}"):
        client.predict(photo=face, aus={"AU12": 0.5}, strength=2.5, api_name="/edit_aus")
    with pytest.raises(AppError, match="Face 3 does not exist: 1 face was found"):
        client.predict(photo=face, aus={"AU99": 1.0}, face="3", api_name="/edit_aus")


def test_a_preset_and_a_reference_photo_never_both_stand_for_one_end(client, faces):
    face = handle_file(str(faces["face-201"]))
    with pytest.raises(AppError, match="A reference photo was given for the end, but 'Happy' was chosen"):
        client.predict(face, OWN_EXPRESSION, None, "Happy", face, 3, api_name="/interpolate")
    with pytest.raises(AppError, match="Upload the reference photo for the start first"):
        client.predict(face, REFERENCE_PHOTO, None, "Happy", None, 3, api_name="/interpolate")


def test_the_second_face_of_a_group_photo_is_edited_alone(client):
    photo = example_photos()["two_portraits"]
    aus = client.predict(photo=handle_file(str(photo)), face="2", api_name="/estimate_aus")
    first = client.predict(photo=handle_file(str(photo)), face="1", api_name="/estimate_aus")
    assert aus != first
    raised = {name: min(1.0, value + 0.5) for name, value in aus.items()}
    edited = np.asarray(
        Image.open(client.predict(photo=handle_file(str(photo)), aus=raised, face="2", api_name="/edit_aus"))
    )
    changed = np.abs(edited.astype(int) - np.asarray(Image.open(photo).convert("RGB")).astype(int)).max(2) > 0
    # two_portraits.jpg: the astronaut (smaller face) on the left, Grace Hopper (larger) on the right
    assert changed[:, : changed.shape[1] // 3].any() and not changed[:, changed.shape[1] // 2 :].any()


def test_live_edits_read_each_photo_once(tiny_model_trained, monkeypatch):
    demo = Demo(tiny_model_trained)
    calls = []
    prepare = tiny_model_trained.prepare
    monkeypatch.setattr(tiny_model_trained, "prepare", lambda *a, **k: calls.append(1) or prepare(*a, **k))
    photo = example_photos()["grace_hopper"]
    values = demo.read_aus(str(photo))
    first = np.asarray(Image.open(demo.edit_live(str(photo), "1", *[min(1.0, v + 0.4) for v in values])), float)
    second = np.asarray(Image.open(demo.edit_live(str(photo), "1", *values)), float)
    assert len(calls) == 1  # detection, alignment and AU reading ran once for three events
    original = np.asarray(Image.open(photo).convert("RGB"), float)
    assert first.shape == second.shape == original.shape
    assert np.abs(second - original).mean() < 1.5  # own AUs: unchanged, up to the JPEG's rounding
    assert np.abs(first - second).max() > 20  # raised AUs: the face changed


def test_the_photo_cache_is_bounded(tiny_model_trained, tmp_path):
    cache = PreparedPhotos(tiny_model_trained, photos=2, pixels=10**9)
    paths = []
    for index in range(3):
        paths.append(tmp_path / f"{index}.png")
        Image.new("RGB", (128, 128), (index * 50, 90, 90)).save(paths[-1])
        cache.get(paths[-1])
    assert list(cache._cache) == [str(paths[1]), str(paths[2])]
    paths[2].unlink()  # gradio's cache sweep deleted the upload: the prepared photo still serves
    assert cache.get(paths[2]).size == (128, 128)
    paths[0].unlink()  # ... and this one had left the cache already
    with pytest.raises(FileNotFoundError, match=r"0\.png is no longer on the server .*: upload it again"):
        cache.get(paths[0])
    by_pixels = PreparedPhotos(tiny_model_trained, photos=10, pixels=128 * 128 * 2)
    for path in paths:
        Image.new("RGB", (128, 128), "grey").save(path)
        by_pixels.get(path)
    assert len(by_pixels._cache) == 2


def test_a_small_image_without_a_face_is_said_to_be_taken_as_a_crop(tiny_model_trained, tmp_path):
    path = tmp_path / "flat.png"
    Image.new("RGB", (200, 180), (120, 100, 90)).save(path)
    overview, choices, note = Demo(tiny_model_trained).find_faces(str(path))
    assert overview is None and len(choices) == 1
    assert note == "No face was found, so the whole image is taken to be a face crop."


def test_a_photo_without_a_face_is_said_under_it_and_searched_once(tiny_model_trained, photo_dir, monkeypatch):
    demo, calls = Demo(tiny_model_trained), []
    prepare = tiny_model_trained.prepare
    monkeypatch.setattr(tiny_model_trained, "prepare", lambda *a, **k: calls.append(1) or prepare(*a, **k))
    group = demo.open_for_edit({"path": str(photo_dir / "multi_face.jpg")})
    assert "faces found" in group[2]["value"] and group[1]["visible"] and group[0]["visible"]
    landscape = {"path": str(photo_dir / "free-mountain-vector-01.jpg")}
    overview, face, note, *sliders, result = demo.open_for_edit(landscape)  # no exception: no "Error" badges
    assert note["value"].startswith("No face was found in the photo.") and note["elem_classes"] == [ERROR_NOTE]
    assert overview == {"__type__": "update", "value": None, "visible": False}  # the group photo's notes are gone
    assert face["visible"] is False and face["choices"] == [("The face", "1")] and result is None
    assert all(slider == gradio.skip() for slider in sliders)  # the sliders keep their values and stay usable
    with pytest.raises(gradio.Error, match="No face was found"):  # a slider moved anyway: said again ...
        demo.edit_live(landscape, "1", *[0.5] * len(AU_NAMES))
    assert len(calls) == 2  # ... without searching the photo again


def test_a_gif_keeps_skin_tones_smooth(tmp_path):
    """One palette for the animation, dithered: no flat patches of the nearest colours on skin."""
    photo = Image.open(example_photos()["astronaut"]).convert("RGB")
    left, top, right, bottom = 112, 83, 199, 171  # her face (dlib's box)
    middle = (top + bottom) // 2

    def jaw_drop(step: int) -> Image.Image:  # the lower face stretched down: a photo's own colours, moving
        frame, lower = photo.copy(), photo.crop((left, middle, right, bottom + 10))
        frame.paste(lower.resize((right - left, bottom + 10 - middle + 2 * step), Image.BICUBIC), (left, middle))
        return frame

    frames = [jaw_drop(step) for step in range(8)]
    per_frame = tmp_path / "per-frame-palettes.gif"
    frames[0].save(per_frame, save_all=True, append_images=frames[1:], duration=150, loop=0)  # PIL's default
    with Image.open(write_gif(frames, tmp_path / "shared.gif")) as animation:
        assert animation.n_frames == 2 * len(frames) - 2  # forth and back
    assert _skin_error(tmp_path / "shared.gif", frames, (left, top, right, bottom)) < 5
    assert _skin_error(per_frame, frames, (left, top, right, bottom)) > 8  # the test sees banding where it is


def _skin_error(gif: Path, frames: list[Image.Image], box: tuple[int, int, int, int]) -> float:
    """The largest local error on skin in the face box over all frames: the 99th percentile of the 7x7 mean of
    |GIF - raw frame| (dithering's fine noise averages out in it; flat patches of a wrong colour do not)."""
    worst = 0.0
    with Image.open(gif) as animation:
        for index, raw in enumerate(frames):
            animation.seek(index)
            error = np.asarray(animation.convert("RGB"), float) - np.asarray(raw, float)
            _, cb, cr = np.moveaxis(np.asarray(raw.convert("YCbCr"), float), -1, 0)
            skin = (cb > 77) & (cb < 127) & (cr > 133) & (cr < 173)  # a common YCbCr skin rule
            inside = np.zeros_like(skin)
            inside[box[1] : box[3], box[0] : box[2]] = True
            local = np.abs(_box_mean(error, 3)).max(axis=2)[skin & inside]
            worst = max(worst, float(np.percentile(local, 99)))
    return worst


def _box_mean(values: np.ndarray, radius: int) -> np.ndarray:
    side = 2 * radius + 1
    total = np.pad(values, ((radius + 1, radius), (radius + 1, radius), (0, 0)), mode="edge").cumsum(0).cumsum(1)
    return (total[side:, side:] - total[:-side, side:] - total[side:, :-side] + total[:-side, :-side]) / side**2


def test_removed_example_copies_are_written_again(tiny_model_trained, tmp_path):
    examples = example_photos(tmp_path / "examples")
    demo = Demo(tiny_model_trained, examples)
    assert all(path.parent == (tmp_path / "examples").resolve() for path in examples.values())
    shutil.rmtree(tmp_path / "examples")  # a temp cleaner, or another server sharing the folder
    assert demo.read_aus({"path": str(examples["grace_hopper"])})  # written again, then read
    assert Image.open(examples["grace_hopper"]).size == Image.open(PHOTOS / "grace_hopper.jpg").size
    assert all(path.is_file() for path in examples.values())  # all of them: their thumbnails show again
    shutil.rmtree(tmp_path / "examples")
    assert demo.example_row(["face-201", "Happy", None]) == [str(examples["face-201"]), "Happy", None]
    assert np.array_equal(
        np.asarray(Image.open(examples["face-201"])), np.asarray(Image.open(example_faces()["face-201"]))
    )
    upload = tmp_path / "upload" / "photo.png"  # a visitor's upload that is gone: said so, with what to do
    with pytest.raises(gradio.Error, match=r"The photo is no longer on the server .*: upload it again, or reload"):
        demo.read_aus({"path": str(upload)})


def test_a_page_asking_for_removed_examples_gets_them_written_again(client):
    """A page loaded after a temp cleaner asks for every thumbnail before any event of its own runs."""
    folder = wemgan.demo.private_gradio_folder() / wemgan.demo.EXAMPLE_FOLDER
    shutil.rmtree(folder)
    with urllib.request.urlopen(f"{client.src.rstrip('/')}/gradio_api/file={folder / 'face-201.png'}") as reply:
        assert reply.status == 200 and Image.open(reply).size == (256, 256)
    assert (folder / "grace_hopper.jpg").is_file()  # all of them, for the other thumbnails of the page


def test_each_server_has_a_gradio_folder_of_its_own(tmp_path, monkeypatch):
    own = private_gradio_folder()
    assert os.environ["GRADIO_TEMP_DIR"] == str(own) and own.is_dir() and own.name.startswith("wemgan-gradio-")
    assert private_gradio_folder() == own  # one per process: the components already made use it
    monkeypatch.setattr(wemgan.demo, "_GRADIO_FOLDER", [])  # a fresh process, whose operator chose a folder
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "operator"))
    assert private_gradio_folder().parent == (tmp_path / "operator").resolve()


def test_the_licence_takes_one_short_line_with_a_link_to_the_card(tmp_path):
    WEMGAN(**TINY, provenance={"dataset": "faces-au", "steps": 1}).save_pretrained(tmp_path)
    _, status = app.load_model(str(tmp_path))
    card = model_card(str(tmp_path))
    line = licence_line(status, card)
    assert "non-commercial research use only" in line and line.endswith("[model card](#model-card)")
    assert "\n" not in line and len(line) < len(status) and len(line) < 120
    assert card.text and not card.text.startswith("---")  # the card without its Hub metadata
    assert model_card("someone/wemgan-model").link == "https://huggingface.co/someone/wemgan-model"
    synthetic = licence_line("Model: `x`, 5 steps. Trained on SynthFACS, ...: no real person is depicted.", None)
    assert synthetic == "Model `x` · trained on synthetic faces only"


def test_two_concurrent_requests_both_complete(client, faces):
    face = handle_file(str(faces["face-211"]))
    with ThreadPoolExecutor(2) as pool:
        transfer = pool.submit(client.predict, face, handle_file(str(faces["anger-212"])), 1.0, api_name="/transfer")
        frames = pool.submit(client.predict, face, "Neutral", None, "Surprise", None, 4, api_name="/interpolate")
        assert Image.open(transfer.result(timeout=120)[0]).size == (256, 256)
        assert Image.open(frames.result(timeout=120)[0]).n_frames == 6


def test_results_of_any_mode_can_be_shown():
    assert displayable(Image.new("CMYK", (40, 30))).mode == "RGB"
    wide = displayable(Image.new("I;16", (40, 30), 65535))
    assert wide.mode == "L" and wide.getpixel((0, 0)) == 255
    palette = Image.new("P", (40, 30))
    palette.info["transparency"] = 0
    assert displayable(palette).mode == "RGBA"


def test_messages_for_visitors_name_no_api_arguments():
    assert "not an image" in readable(InvalidImageError("x.jpg is not an image file that PIL can read"))
    assert readable(ValueError("strength must be a number from 0 to 2")) == "Strength must be a number from 0 to 2."
    assert readable(ImageTooSmallError(1, 1), "the reference photo").startswith("The reference photo is only 1x1")


def test_strip_and_mp4_keep_odd_sized_frames(tmp_path):
    frames = [Image.new("RGB", (75, 101), (40 * i, 0, 0)) for i in range(3)]
    assert frame_strip(frames, height=50).size == (3 * 37, 50)
    av = pytest.importorskip("av", reason="PyAV (app extra) is not installed")
    path = write_mp4(frames, tmp_path / "clip.mp4")
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == 4 and (decoded[0].width, decoded[0].height) == (76, 102)  # forth and back, padded even


def test_space_card_and_requirements():
    huggingface_hub = pytest.importorskip("huggingface_hub")
    card = huggingface_hub.SpaceCard.load(ROOT / "hub" / "space" / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.sdk_version == gradio.__version__ == "6.31.0"
    assert card.data.python_version == "3.11" and card.data.license == "apache-2.0"
    assert 0 < len(card.data.short_description) <= 60  # the Hub rejects longer ones
    requirements = set((ROOT / "hub" / "space" / "requirements.txt").read_text().splitlines())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    needed = [*project["dependencies"], *extras["faces"], *extras["app"]]
    # gradio itself comes from the Space's sdk_version; everything else must match pyproject exactly
    assert sorted(pin for pin in needed if not pin.startswith("gradio") and pin not in requirements) == []


@pytest.mark.slow
def test_python_app_py_starts_offline(tmp_path):
    port = free_port()
    env = {**os.environ, "WEMGAN_MODEL": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as response:
                    config = response.read().decode()
                break
            except OSError:
                assert process.poll() is None, process.stdout.read()
                time.sleep(0.5)
        else:
            pytest.fail("app.py did not answer within 60 s")
        assert "No trained model" in config
    finally:
        process.terminate()
        process.wait(timeout=10)
