"""The demo app: starts offline, never shows an untrained model, and serves every endpoint over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

gradio = pytest.importorskip("gradio", reason="the app extra is not installed")
from conftest import TINY  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from wemgan import AU_NAMES, WEMGAN, InvalidImageError  # noqa: E402
from wemgan.demo import OWN_EXPRESSION, displayable, example_faces, frame_strip, readable, write_mp4  # noqa: E402

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
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.LAUNCH)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


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
    aus = client.predict(face, api_name="/estimate_aus")
    assert len(aus) == len(AU_NAMES) and all(0 <= value <= 1 for value in aus)
    edited = client.predict(face, *[min(1.0, value + 0.3) for value in aus], api_name="/edit_aus")
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
    aus = client.predict(photo, api_name="/estimate_aus")
    assert Image.open(client.predict(photo, *aus, api_name="/edit_aus")).size == size
    gif, _, strip, _ = client.predict(photo, "Sad", None, OWN_EXPRESSION, reference, 3, api_name="/interpolate")
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
        (_tiny, "Image is 1x1 pixels"),
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
    assert len(client.predict(handle_file(str(faces["face-201"])), api_name="/estimate_aus")) == len(AU_NAMES)


def test_transfer_errors_name_the_photo_they_are_about(client, faces, photo_dir):
    face, landscape = handle_file(str(faces["face-201"])), handle_file(str(photo_dir / "free-mountain-vector-01.jpg"))
    with pytest.raises(AppError, match="No face was found in the reference photo"):
        client.predict(face, landscape, 1.0, api_name="/transfer")
    with pytest.raises(AppError, match="No face was found in the photo to edit"):
        client.predict(landscape, face, 1.0, api_name="/transfer")


def test_missing_or_out_of_range_inputs_say_what_to_do(client, faces):
    face = handle_file(str(faces["face-201"]))
    with pytest.raises(AppError, match="Upload a reference photo first"):
        client.predict(face, None, 1.0, api_name="/transfer")
    with pytest.raises(AppError, match="greater than maximum value 16"):  # the slider's range holds for the API
        client.predict(face, "Sad", None, "Happy", None, 1000, api_name="/interpolate")
    with pytest.raises(AppError, match="Bored"):
        client.predict(face, "Bored", None, "Happy", None, 4, api_name="/interpolate")


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
    assert readable(ValueError("image is 1x1 pixels")) == "Image is 1x1 pixels."


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
