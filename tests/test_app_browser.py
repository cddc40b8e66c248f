"""The demo in a real browser: Debian chromium driven by Playwright uploads a photo and gets a result.

Skipped when chromium (apt) or the playwright package is missing; `playwright install` is never
needed, the system chromium is used.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the app extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
from conftest import TINY  # noqa: E402

import app  # noqa: E402
from wemgan import WEMGAN  # noqa: E402
from wemgan.demo import example_faces  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]  # fmt: skip
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="chromium is not installed (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("model")
    WEMGAN(**TINY, provenance={"dataset": "unit-test weights", "steps": 1}).save_pretrained(folder)
    demo = app.build_demo(*app.load_model(str(folder)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.LAUNCH)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(url)
        page.wait_for_selector("#transfer-run", timeout=30_000)
        try:
            yield page
        finally:
            browser.close()


def _click_and_wait(page, button: str, result: str) -> float:
    started = time.perf_counter()
    page.click(button)
    page.wait_for_selector(f"{result} img", state="visible", timeout=60_000)
    return time.perf_counter() - started


def test_transfer_in_the_browser(page, tmp_path):
    faces = example_faces(tmp_path / "faces")
    page.set_input_files("#transfer-source input[type=file]", str(faces["face-203"]))
    page.set_input_files("#transfer-reference input[type=file]", str(faces["happy-201"]))
    page.wait_for_selector("#transfer-reference img", state="visible")
    seconds = _click_and_wait(page, "#transfer-run", "#transfer-result")
    page.screenshot(path=str(tmp_path / "transfer.png"), full_page=True)
    print(f"transfer: {seconds:.2f} s from click to result")
    assert page.locator(".toast-body.error").count() == 0
    assert (tmp_path / "transfer.png").stat().st_size > 10_000


def test_interpolation_in_the_browser(page, tmp_path):
    faces = example_faces(tmp_path / "faces")
    page.get_by_role("tab", name="Interpolate").click()
    page.set_input_files("#interpolate-source input[type=file]", str(faces["face-211"]))
    page.wait_for_selector("#interpolate-source img", state="visible")
    seconds = _click_and_wait(page, "#interpolate-run", "#interpolate-gif")
    page.screenshot(path=str(tmp_path / "interpolate.png"), full_page=True)
    print(f"interpolation, 8 frames: {seconds:.2f} s from click to result")
    assert page.locator(".toast-body.error").count() == 0


def test_sliders_start_at_the_photo_and_presets_edit(page, tmp_path):
    faces = example_faces(tmp_path / "faces")
    page.get_by_role("tab", name="Edit Action Units").click()
    page.set_input_files("#edit-source input[type=file]", str(faces["face-201"]))
    smile = page.get_by_label("number input for AU12: lip corner puller")
    page.wait_for_function("el => el.value !== '0'", arg=smile.element_handle(), timeout=30_000)  # estimated AUs
    seconds = _click_and_wait(page, "button:text-is('Happy')", "#edit-result")
    assert smile.input_value() == "0.8"  # the Happy preset's AU12
    page.screenshot(path=str(tmp_path / "edit.png"), full_page=True)
    print(f"edit to the Happy preset: {seconds:.2f} s from click to result")


def test_a_photo_without_a_face_shows_a_message(page, tmp_path, photo_dir):
    page.get_by_role("tab", name="Expression transfer").click()
    page.set_input_files("#transfer-source input[type=file]", str(photo_dir / "free-mountain-vector-01.jpg"))
    page.wait_for_selector("#transfer-source img", state="visible")
    page.click("#transfer-run")
    page.get_by_text("No face was found").first.wait_for(timeout=60_000)
    page.screenshot(path=str(tmp_path / "no-face.png"), full_page=True)
