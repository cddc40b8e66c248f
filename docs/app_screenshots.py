"""Retake the README's screenshots of the demo app, with the model that ships, in a headless chromium.

    python docs/app_screenshots.py                  # hub/default -> docs/app-*.jpg
    python docs/app_screenshots.py --model DIR_OR_HUB_ID --out DIR

Starts app.py's page on 127.0.0.1 (nothing leaves the machine) and drives it with Playwright
and the system chromium (`apt-get install chromium`; `playwright install` is not needed):

- app-live-editor.jpg: Grace Hopper in the Edit tab, the result following AU12 (lip corner
  puller) while the mouse button is still down on its slider;
- app-group-photo.jpg: the two-portrait example, face 2 picked and set to Happy;
- app-phone.jpg: a 390 px wide phone, the result held in view above the lower-face sliders
  while AU12 (lip corner puller), far down the page, is dragged.

JPEG quality 80 (lower, if needed, to stay within --max-kb).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).absolute().parents[1]
sys.path.insert(0, str(ROOT))  # app.py lives at the repository's root
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PIL import Image  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
DOCS_WIDTH = 960  # the desktop shots are shrunk to this width for the README


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "hub" / "default"), help="model folder or Hub id")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the app-*.jpg files")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the chromium executable")
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality")
    parser.add_argument("--max-kb", type=int, default=250, help="largest file size (kB)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> list[Path]:
    import app  # after the environment above: gradio reads it on import

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("needs the playwright package (pip install playwright) and chromium") from None
    model, status = app.load_model(args.model)
    if model is None:
        raise SystemExit(status)
    demo = app.build_demo(model, status, args.model)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.launch_options())
    url = f"http://127.0.0.1:{port}/"
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            for shot in (live_editor, group_photo, phone):
                page = browser.new_page(viewport=PHONE if shot is phone else DESKTOP)
                try:
                    open_edit_tab(page, url)
                    png, name = shot(page)
                finally:
                    page.mouse.up()
                    page.close()
                written.append(save_jpeg(png, args.out / name, args.quality, args.max_kb))
            browser.close()
    finally:
        demo.close()
    for path in written:
        with Image.open(path) as image:
            print(f"{path}: {image.width}x{image.height}, {path.stat().st_size // 1024} kB")
    return written


def open_edit_tab(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#transfer-run", timeout=60_000)
    page.get_by_role("tab", name="Edit AUs").click()


def open_example(page: Any, index: int) -> None:
    """Click the index-th example of the Edit tab and wait until the sliders hold the photo's own AUs."""
    before = sliders(page)
    page.locator("#edit-examples").get_by_role("button").nth(index).click()
    page.wait_for_function(f"v => ({SLIDERS})() !== v", arg=before, timeout=60_000)


SLIDERS = """() => Array.from(document.querySelectorAll('input[aria-label^="number input for AU"]'))
    .map(el => el.value).join()"""


def sliders(page: Any) -> str:
    return page.evaluate(SLIDERS)


def drag(page: Any, label: str, to: float) -> None:
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
        page.wait_for_timeout(40)


def wait_for_result(page: Any) -> None:
    page.wait_for_selector("#edit-result img", state="visible", timeout=60_000)
    result = page.locator("#edit-result img").first
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=result.element_handle())
    time.sleep(0.5)  # the last move's image


def live_editor(page: Any) -> tuple[bytes, str]:
    open_example(page, 0)  # Grace Hopper
    drag(page, "AU12: lip corner puller", 0.95)
    wait_for_result(page)  # while the mouse button is still down
    page.evaluate("window.scrollTo(0, 0)")
    return page.screenshot(), "app-live-editor.jpg"


def group_photo(page: Any) -> tuple[bytes, str]:
    page.set_viewport_size({"width": DESKTOP["width"], "height": 1100})
    open_example(page, 1)  # the two portraits
    page.get_by_text("2 faces found").wait_for(timeout=60_000)
    page.wait_for_selector("#edit-faces img", state="visible")
    largest = sliders(page)
    page.locator("#edit-face input").click()
    page.get_by_role("option", name="Face 2").click()
    page.wait_for_function(f"v => ({SLIDERS})() !== v", arg=largest, timeout=60_000)  # face 2's own AUs
    page.locator("button:text-is('Happy')").click()
    wait_for_result(page)
    page.evaluate("window.scrollTo(0, 0)")
    return page.screenshot(), "app-group-photo.jpg"


def phone(page: Any) -> tuple[bytes, str]:
    open_example(page, 0)
    drag(page, "AU12: lip corner puller", 0.95)  # ~1000 px below the photo: the result stays in view above it
    wait_for_result(page)
    return page.screenshot(), "app-phone.jpg"


def save_jpeg(png: bytes, path: Path, quality: int, max_kb: int) -> Path:
    """The screenshot as a JPEG: desktop shots shrunk to DOCS_WIDTH, quality lowered until it fits max_kb."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > DOCS_WIDTH:
        image = image.resize((DOCS_WIDTH, round(image.height * DOCS_WIDTH / image.width)), Image.LANCZOS)
    for attempt in range(quality, 0, -5):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=attempt, optimize=True, progressive=True)
        if buffer.tell() <= max_kb * 1024:
            break
    path.write_bytes(buffer.getvalue())
    return path


if __name__ == "__main__":
    main(parse_args())
