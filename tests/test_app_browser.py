"""The demo in a real browser: Debian chromium driven by Playwright uploads a photo and gets a result.

Skipped when chromium (apt) or the playwright package is missing; `playwright install` is never
needed, the system chromium is used.
"""

from __future__ import annotations

import os
import re
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
from wemgan.demo import ERROR_NOTE, example_faces, example_photos  # noqa: E402

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
    """The app on a tiny model said to be trained on UTKFace (so its licence line is the shipped model's)."""
    folder = tmp_path_factory.mktemp("model")
    WEMGAN(**TINY, provenance={"dataset": "faces-au", "steps": 1}).save_pretrained(folder)
    demo = app.build_demo(*app.load_model(str(folder)), str(folder))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.launch_options())
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


def _visible_errors(page) -> list[str]:
    """Every error the visitor can see: error toasts, gradio's "Error" badges on components, our notes."""
    shown = [*page.locator(".toast-body.error").all(), *page.get_by_text("Error", exact=True).all()]
    shown += page.locator(f".block.{ERROR_NOTE}").all()
    return [element.inner_text().strip() for element in shown if element.is_visible()]


@pytest.mark.parametrize("tab", ["Edit AUs", "Transfer", "Animate"])
def test_a_photo_without_a_face_after_a_group_photo_shows_one_error(page, tmp_path, photo_dir, tab):
    prefix = {"Edit AUs": "edit", "Transfer": "transfer", "Animate": "interpolate"}[tab]
    page.get_by_role("tab", name=tab).click()
    page.set_input_files(f"#{prefix}-source input[type=file]", str(photo_dir / "multi_face.jpg"))
    page.get_by_text(re.compile(r"\d faces found")).wait_for(timeout=60_000)  # 4 or 5: the man in sunglasses
    page.wait_for_selector(f"#{prefix}-faces img", state="visible")
    page.set_input_files(f"#{prefix}-source input[type=file]", str(photo_dir / "free-mountain-vector-01.jpg"))
    page.locator(f"#{prefix}-faces-note").get_by_text("No face was found in the photo.").wait_for(timeout=60_000)
    page.wait_for_timeout(1000)  # anything else that would show up
    page.screenshot(path=str(tmp_path / "no-face.png"), full_page=True)
    errors = _visible_errors(page)
    assert len(errors) == 1 and errors[0].startswith("No face was found in the photo."), errors
    assert not page.get_by_text("faces found").is_visible()  # the group photo's note is gone ...
    assert not page.locator(f"#{prefix}-faces").is_visible() and not page.locator(f"#{prefix}-face").is_visible()
    if tab == "Edit AUs":  # ... and the controls stay usable
        smile = page.get_by_label("range slider for AU12: lip corner puller")
        assert smile.is_enabled() and smile.input_value() != "0"  # they keep the last photo's values
        box = smile.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)  # moved anyway:
        page.locator(".toast-body.warning").get_by_text("No face was found").wait_for(timeout=30_000)  # a warning
        assert len(_visible_errors(page)) == 1  # and no "Error" on the result


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
    _example(page, "transfer", 1).click()  # the astronaut, with a synthetic face's surprise
    page.wait_for_selector("#transfer-result img", state="detached", timeout=30_000)
    page.screenshot(path=str(tmp_path / "example-clears-result.png"), full_page=True)

    page.get_by_role("tab", name="Edit AUs").click()
    before = page.evaluate(SLIDER_VALUES)
    page.set_input_files("#edit-source input[type=file]", str(example_photos()["astronaut"]))
    page.wait_for_function(f"v => ({SLIDER_VALUES})() !== v", arg=before, timeout=30_000)  # its own AUs
    _click_and_wait(page, "button:text-is('Sad')", "#edit-result")
    _example(page, "edit", 0).click()  # Grace Hopper
    page.wait_for_selector("#edit-result img", state="detached", timeout=30_000)

    page.get_by_role("tab", name="Animate").click()
    page.set_input_files("#interpolate-end-reference input[type=file]", str(example_photos()["astronaut"]))
    end = page.locator("#interpolate-end input")
    page.wait_for_function("el => el.value.startsWith('The reference photo')", arg=end.element_handle(), timeout=30_000)
    end.click()
    page.get_by_role("option", name="Surprise").click()  # a preset replaces the reference photo
    page.wait_for_selector("#interpolate-end-reference img", state="detached", timeout=30_000)
    assert page.locator(".toast-body.error").all_inner_texts() == []


def _example(page, tab: str, index: int):
    """The index-th example of a tab: a row of the table, or a thumbnail of the gallery (one photo)."""
    examples = page.locator(f"#{tab}-examples")
    rows = examples.get_by_role("row")
    return rows.nth(index + 1) if rows.count() else examples.get_by_role("button").nth(index)


def _loaded(image) -> bool:
    return image.evaluate("img => img.complete && img.naturalWidth > 0")


def test_the_first_screen_shows_example_faces_and_a_one_line_licence(browser, url, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(url)
        page.wait_for_selector("#transfer-run", timeout=30_000)
        thumbnails = page.locator("#transfer-examples img")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#transfer-examples img')].every(i => i.naturalWidth)"
        )
        page.screenshot(path=str(tmp_path / "first-screen.png"))
        assert thumbnails.count() == 4
        for thumbnail in thumbnails.all():  # the example faces, loaded and above the fold
            box = thumbnail.bounding_box()
            assert _loaded(thumbnail) and box["y"] >= 0 and box["y"] + box["height"] <= 900, box
        button = page.locator("#transfer-run").bounding_box()
        assert button["y"] + button["height"] <= 900  # and what to do with them
        licence = page.locator("p", has=page.get_by_role("link", name="model card"))
        assert "non-commercial research use only" in licence.inner_text()
        lines = licence.evaluate("p => p.getBoundingClientRect().height / parseFloat(getComputedStyle(p).lineHeight)")
        assert lines < 1.5, licence.inner_text()  # one line
        page.get_by_role("link", name="model card").click()  # opens the card below, and scrolls to it
        card = page.locator("#model-card")
        terms = card.get_by_text("non-commercial research purposes only").first  # the full terms, then the card
        terms.wait_for(timeout=10_000)
        assert card.get_by_text("PytorchModelHubMixin").is_visible()  # (the one save_pretrained wrote)
        page.wait_for_timeout(500)
        box = terms.bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= 900, box  # in view
        page.screenshot(path=str(tmp_path / "model-card.png"))
    finally:
        page.close()


def test_the_result_stays_in_view_while_a_lower_face_slider_moves_on_a_phone(browser, url, tmp_path):
    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        phone.goto(url)
        phone.wait_for_selector("#transfer-run", timeout=30_000)
        phone.get_by_role("tab", name="Edit AUs").click()
        _example(phone, "edit", 0).click()  # Grace Hopper
        smile = phone.get_by_label("number input for AU12: lip corner puller")
        phone.wait_for_function("el => el.value !== '0'", arg=smile.element_handle(), timeout=30_000)
        _drag(phone, "AU26: jaw drop", 0.9)  # the last slider, far below the photo on a phone
        phone.wait_for_selector("#edit-result img", state="visible", timeout=30_000)
        phone.wait_for_timeout(500)
        phone.screenshot(path=str(tmp_path / "phone-live.png"))
        print(f"phone screenshot: {tmp_path / 'phone-live.png'}")
        result = phone.locator("#edit-result img").bounding_box()
        slider = phone.get_by_label("range slider for AU26: jaw drop").bounding_box()
        phone.mouse.up()
        assert result["y"] >= 0 and result["y"] + result["height"] <= 844, result  # the face is in view ...
        assert result["y"] + result["height"] <= slider["y"] <= 844, slider  # ... above the slider, not over it
        assert result["height"] >= 200  # and large enough to see the edit
    finally:
        phone.close()


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


def test_examples_work_after_the_temporary_folder_is_removed(page, tmp_path):
    """A temp cleaner (or, before each server had its own, another server) removes gradio's folder."""
    folder = Path(os.environ["GRADIO_TEMP_DIR"])
    assert folder.name.startswith("wemgan-gradio-")  # this server's own folder
    page.get_by_role("tab", name="Edit AUs").click()
    shutil.rmtree(folder)
    _example(page, "edit", 0).click()  # Grace Hopper, whose copy is gone
    smile = page.get_by_label("number input for AU12: lip corner puller")
    page.wait_for_function("el => el.value !== '0'", arg=smile.element_handle(), timeout=30_000)
    photo = page.locator("#edit-source img").first
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=photo.element_handle(), timeout=10_000)
    _click_and_wait(page, "button:text-is('Happy')", "#edit-result")
    page.screenshot(path=str(tmp_path / "examples-after-cleanup.png"), full_page=True)
    assert _visible_errors(page) == []
    shutil.rmtree(folder)
    page.reload()  # a new visitor: the thumbnails are written again when the page loads
    page.get_by_role("tab", name="Edit AUs").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#edit-examples img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )
