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
from wemgan.demo import example_faces, example_photos  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]  # fmt: skip
SLIDER_VALUES = """() => Array.from(document.querySelectorAll('input[aria-label^="number input for AU"]'))
    .map(el => el.value).join()"""  # the 17 AU sliders' values
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
def browser(url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, url):
    """A fresh page (a new gradio session) per test: no toast or state of another test lingers."""
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.goto(url)
    page.wait_for_selector("#transfer-run", timeout=30_000)
    try:
        yield page
    finally:
        page.close()


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
    page.get_by_role("tab", name="Animate").click()
    page.set_input_files("#interpolate-source input[type=file]", str(faces["face-211"]))
    page.wait_for_selector("#interpolate-source img", state="visible")
    seconds = _click_and_wait(page, "#interpolate-run", "#interpolate-gif")
    page.screenshot(path=str(tmp_path / "interpolate.png"), full_page=True)
    print(f"interpolation, 8 frames: {seconds:.2f} s from click to result")
    assert page.locator(".toast-body.error").count() == 0


def test_sliders_start_at_the_photo_and_presets_edit(page, tmp_path):
    faces = example_faces(tmp_path / "faces")
    page.get_by_role("tab", name="Edit AUs").click()
    page.set_input_files("#edit-source input[type=file]", str(faces["face-201"]))
    smile = page.get_by_label("number input for AU12: lip corner puller")
    page.wait_for_function("el => el.value !== '0'", arg=smile.element_handle(), timeout=30_000)  # estimated AUs
    seconds = _click_and_wait(page, "button:text-is('Happy')", "#edit-result")
    assert smile.input_value() == "0.8"  # the Happy preset's AU12
    page.screenshot(path=str(tmp_path / "edit.png"), full_page=True)
    print(f"edit to the Happy preset: {seconds:.2f} s from click to result")


def test_a_photo_without_a_face_shows_a_message(page, tmp_path, photo_dir):
    page.get_by_role("tab", name="Transfer").click()
    page.set_input_files("#transfer-source input[type=file]", str(photo_dir / "free-mountain-vector-01.jpg"))
    page.wait_for_selector("#transfer-source img", state="visible")
    page.click("#transfer-run")
    page.get_by_text("No face was found").first.wait_for(timeout=60_000)
    page.screenshot(path=str(tmp_path / "no-face.png"), full_page=True)


def _result_source(page, result: str) -> str | None:
    """The src of the image shown in a result component, or None when it shows none."""
    images = page.locator(f"{result} img")
    return images.first.get_attribute("src") if images.count() else None


def _drag(page, label: str, to: float):
    """Press the mouse on an AU slider's thumb and move it to value `to` (0-1), without releasing it."""
    track = page.get_by_label(f"range slider for {label}")
    track.scroll_into_view_if_needed()
    box = track.bounding_box()
    value = float(track.input_value())
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * value, y)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(box["x"] + box["width"] * (value + (to - value) * step / 10), y)
        page.wait_for_timeout(30)


def test_a_slider_edits_a_real_photo_while_it_moves(page, tmp_path):
    page.get_by_role("tab", name="Edit AUs").click()
    page.set_input_files("#edit-source input[type=file]", str(example_photos()["grace_hopper"]))
    smile = page.get_by_label("number input for AU12: lip corner puller")
    page.wait_for_function("el => el.value !== '0'", arg=smile.element_handle(), timeout=30_000)  # estimated AUs
    started = time.perf_counter()
    _drag(page, "AU12: lip corner puller", 0.95)
    # The result appears while the mouse button is still down: the slider is live, not on release.
    page.wait_for_selector("#edit-result img", state="visible", timeout=30_000)
    print(f"first live result {time.perf_counter() - started:.2f} s after the drag began")
    first = _result_source(page, "#edit-result")
    page.screenshot(path=str(tmp_path / "live-slider.png"), full_page=True)
    page.mouse.up()
    _drag(page, "AU26: jaw drop", 0.9)
    page.wait_for_function(
        "src => { const img = document.querySelector('#edit-result img'); return img && img.src !== src; }",
        arg=first, timeout=30_000,
    )  # fmt: skip
    page.mouse.up()
    assert page.locator(".toast-body.error").count() == 0


def test_the_second_face_of_a_group_photo_can_be_picked(page, tmp_path):
    page.get_by_role("tab", name="Edit AUs").click()
    page.set_input_files("#edit-source input[type=file]", str(example_photos()["two_portraits"]))
    page.wait_for_selector("#edit-faces img", state="visible", timeout=30_000)  # the numbered faces
    page.get_by_text("2 faces found").wait_for(timeout=30_000)
    smile = page.get_by_label("number input for AU12: lip corner puller")
    page.wait_for_function("el => el.value !== '0'", arg=smile.element_handle(), timeout=30_000)
    largest = page.evaluate(SLIDER_VALUES)
    page.locator("#edit-face input").click()
    page.get_by_role("option", name="Face 2").click()
    page.wait_for_function(f"v => ({SLIDER_VALUES})() !== v", arg=largest, timeout=30_000)  # face 2's own AUs
    seconds = _click_and_wait(page, "button:text-is('Happy')", "#edit-result")
    page.screenshot(path=str(tmp_path / "second-face.png"), full_page=True)
    print(f"Happy on face 2: {seconds:.2f} s from click to result")
    assert page.locator(".toast-body.error").count() == 0


def test_an_example_after_a_result_leaves_no_stale_output(page, tmp_path):
    page.get_by_role("tab", name="Transfer").click()
    page.set_input_files("#transfer-source input[type=file]", str(example_photos()["grace_hopper"]))
    page.set_input_files("#transfer-reference input[type=file]", str(example_photos()["astronaut"]))
    page.wait_for_selector("#transfer-reference img", state="visible")
    _click_and_wait(page, "#transfer-run", "#transfer-result")
    page.get_by_text("Astronaut, with a synthetic face's surprise").click()
    page.wait_for_selector("#transfer-result img", state="detached", timeout=30_000)
    page.screenshot(path=str(tmp_path / "example-clears-result.png"), full_page=True)

    page.get_by_role("tab", name="Edit AUs").click()
    before = page.evaluate(SLIDER_VALUES)
    page.set_input_files("#edit-source input[type=file]", str(example_photos()["astronaut"]))
    page.wait_for_function(f"v => ({SLIDER_VALUES})() !== v", arg=before, timeout=30_000)  # its own AUs
    _click_and_wait(page, "button:text-is('Sad')", "#edit-result")
    page.get_by_text("Grace Hopper", exact=True).click()
    page.wait_for_selector("#edit-result img", state="detached", timeout=30_000)

    page.get_by_role("tab", name="Animate").click()
    page.set_input_files("#interpolate-end-reference input[type=file]", str(example_photos()["astronaut"]))
    end = page.locator("#interpolate-end input")
    page.wait_for_function("el => el.value.startsWith('The reference photo')", arg=end.element_handle(), timeout=30_000)
    end.click()
    page.get_by_role("option", name="Surprise").click()  # a preset replaces the reference photo
    page.wait_for_selector("#interpolate-end-reference img", state="detached", timeout=30_000)
    assert page.locator(".toast-body.error").all_inner_texts() == []


def test_every_tab_is_reachable_on_a_phone(browser, url, tmp_path):
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    try:
        phone.goto(url)
        phone.wait_for_selector("#transfer-run", timeout=30_000)
        for name in ("Transfer", "Edit AUs", "Animate"):
            assert phone.get_by_role("tab", name=name).is_visible(), name
        phone.screenshot(path=str(tmp_path / "phone.png"))
    finally:
        phone.close()
