"""wemgan demo (Hugging Face Space): edit facial expressions by Action Units.

    python app.py                       # embedded default model in hub/default, offline
    python app.py --model DIR_OR_HUB_ID --port 7860 [--host 0.0.0.0] [--share]

Layout only; every event calls wemgan.demo.Demo. Until a trained model is shipped in
hub/default, the app says so plainly instead of showing edits of a random network.
The Space doubles as an API (gradio_client): /transfer, /interpolate, /estimate_aus and
/edit_aus are public; the events that only drive the page (sliders, presets, examples) are not.
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home, before importing gradio

import gradio as gr
from starlette.middleware import Middleware

from wemgan import AU_DESCRIPTIONS, AU_NAMES, EXPRESSIONS, MAX_STRENGTH, WEMGAN
from wemgan.aus import LOWER_FACE_AUS, UPPER_FACE_AUS
from wemgan.demo import (
    ERROR_NOTE,
    EXAMPLE_FOLDER,
    MAX_APP_FRAMES,
    MODEL_CARD_ID,
    OWN_EXPRESSION,
    REFERENCE_PHOTO,
    Demo,
    ExampleFileRestorer,
    FaceChoice,
    Photo,
    describe_api,
    example_photos,
    licence_line,
    load_model,
    model_card,
    preset_values,
    private_gradio_folder,
    warn_instead,
)

DEFAULT_MODEL = Path(__file__).resolve().parent / "hub" / "default"
QUEUE = {"max_size": 32, "default_concurrency_limit": 2}  # 2 edits at once; more would only share the CPU
CSS = f"""
.block.{ERROR_NOTE} {{ background: var(--error-background-fill) !important; padding: 6px 12px !important;
  border: 1px solid var(--error-border-color) !important; border-radius: var(--radius-md); }}
.block.{ERROR_NOTE} .prose {{ color: var(--error-text-color); }}
/* The result stays in view while the sliders under it move; `clip` (not gradio's `hidden`) lets it stick. */
.gradio-container {{ overflow: clip !important; }}
#edit-result {{ position: sticky; top: 0; z-index: 100; background: var(--block-background-fill); }}
"""
OPEN_CARD = f"""() => {{  // the licence line's link to #{MODEL_CARD_ID} opens the card, not only scrolls to it
  const open = () => {{
    const card = document.getElementById("{MODEL_CARD_ID}");
    const toggle = card?.querySelector(".label-wrap");
    if (location.hash !== "#{MODEL_CARD_ID}" || !toggle) return;
    if (!toggle.classList.contains("open")) toggle.click();
    const follow = new ResizeObserver(() => card.scrollIntoView({{ block: "start" }}));  // as the card renders
    follow.observe(card);
    setTimeout(() => follow.disconnect(), 3000);
  }};
  window.addEventListener("hashchange", open);
  open();
}}"""


def launch_options() -> dict[str, Any]:
    """demo.launch's options (a new dict each time: gradio adds to its app_kwargs). The middleware writes
    an example's file again when a page asks for it after a temp cleaner removed it."""
    return {"max_file_size": "10mb", "css": CSS, "js": OPEN_CARD,
            "app_kwargs": {"middleware": [Middleware(ExampleFileRestorer)]}}  # fmt: skip


CACHE = (300, 1800)  # gradio's copies of uploads and results: swept every 5 min, deleted after 30 min
PRIVATE = {"api_visibility": "private"}  # events that only drive the page: not part of the API
RAW = {"preprocess": False}  # photos reach wemgan.demo as gradio's FileData; it explains files it cannot read
PHOTO_HEIGHT = 300
INTRO = """# wemgan — facial expression editing by Action Units
An open implementation of [WEM-GAN](https://arxiv.org/abs/2412.02530): a face's expression is changed through
17 Action Units (AUs), while a Haar-wavelet path keeps its identity detail.
"""
EXAMPLES = {  # the portraits are public domain (US Navy, NASA); see wemgan/data/photos/NOTICE.md
    "transfer": "Examples: Grace Hopper with Eileen Collins' smile; Eileen Collins with a synthetic face's surprise",
    "edit": "Examples: Grace Hopper; both; Eileen Collins (astronaut); a synthetic SynthFACS face",
    "interpolate": "Examples: Grace Hopper, own expression to Happy; Eileen Collins, Sad to Surprise",
}

__all__ = ["build_demo", "load_model", "main", "parse_args"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="wemgan expression-editing demo")
    parser.add_argument(
        "--model",
        default=os.environ.get("WEMGAN_MODEL", str(DEFAULT_MODEL)),
        help="model folder or Hub id (env WEMGAN_MODEL); default: hub/default",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    return parser.parse_args()


def build_demo(model: WEMGAN | None, status: str, source: str | None = None) -> gr.Blocks:
    """The page; source (the model folder or Hub id that load_model read) links the model card."""
    folder = private_gradio_folder()  # before the first component: gradio reads its folder then
    card = model_card(source) if source and model is not None else None
    with gr.Blocks(title="wemgan: facial expression editing", analytics_enabled=False, delete_cache=CACHE) as demo:
        gr.Markdown(INTRO + "\n" + (licence_line(status, card) if model is not None else status))
        if model is not None:  # never offer controls that would run an untrained network
            logic = Demo(model, example_photos(folder / EXAMPLE_FOLDER))
            with gr.Tab("Transfer"):
                transfer_tab(logic)
            with gr.Tab("Edit AUs"):
                edit_tab(logic)
            with gr.Tab("Animate"):
                interpolate_tab(logic)
            describe_api(demo, gr.api(logic.estimate_aus_api, api_name="estimate_aus"))
            describe_api(demo, gr.api(logic.edit_aus_api, api_name="edit_aus"))
        with gr.Accordion("The 17 Action Units", open=model is None):
            gr.Markdown(
                "| AU | meaning |\n|---|---|\n"
                + "\n".join(f"| {name} | {AU_DESCRIPTIONS[name]} |" for name in AU_NAMES)
            )
        if card is not None and card.text:
            with gr.Accordion("Model card", open=False, elem_id=MODEL_CARD_ID):
                gr.Markdown(status + "\n\n" + card.text)
    demo.queue(**QUEUE)
    return demo


def face_picker(prefix: str) -> tuple[gr.Image, gr.Dropdown, gr.Markdown]:
    """Under a photo: a note, the numbered faces of a group photo, and the choice of face (hidden for one face)."""
    note = gr.Markdown(elem_id=f"{prefix}-faces-note")
    overview = gr.Image(
        type="pil", format="jpeg", label="Faces found", interactive=False, visible=False, elem_id=f"{prefix}-faces"
    )
    face = FaceChoice(label="Face to edit", visible=False, elem_id=f"{prefix}-face")
    return overview, face, note


def example_picker(
    logic: Demo, name: str, inputs: list[gr.Component], rows: list[list[Any]], shown: list[int] | None = None
) -> gr.Dataset:
    """Example thumbnails; a click fills `inputs` with a row (photos by example name, other values as they are).

    shown: which inputs the thumbnails show (all by default). Not gr.Examples: this click
    writes a removed copy of an example again before the page asks for it.
    """
    shown = list(range(len(inputs))) if shown is None else shown
    dataset = gr.Dataset(
        components=[inputs[i] for i in shown], samples=[[logic.example_row(row)[i] for i in shown] for row in rows],
        headers=[inputs[i].label for i in shown] if len(shown) > 1 else None, type="index", label=EXAMPLES[name],
        elem_id=f"{name}-examples",
    )  # fmt: skip

    def fill(index: int) -> Any:
        values = logic.example_row(rows[index])
        return values if len(values) > 1 else values[0]

    dataset.click(fill, dataset, inputs, api_name=f"{name}_example", **PRIVATE)
    return dataset


def transfer_tab(logic: Demo) -> None:
    with gr.Row():
        with gr.Column():
            source = Photo("Photo to edit", elem_id="transfer-source", height=PHOTO_HEIGHT)
            overview, face, note = face_picker("transfer")
        reference = Photo("Reference: whose expression to copy", elem_id="transfer-reference", height=PHOTO_HEIGHT)
        result = gr.Image(
            type="pil", format="png", label="Result", interactive=False, elem_id="transfer-result", height=PHOTO_HEIGHT
        )
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            pairs = [["grace_hopper", "astronaut"], ["astronaut", "surprise-211"]]
            example_picker(logic, "transfer", [source, reference], pairs)
        with gr.Column(scale=1):
            strength = gr.Slider(
                0, MAX_STRENGTH, value=1.0, step=0.05, label="Strength (1 = the reference's expression)"
            )
            run = gr.Button("Transfer the expression", variant="primary", elem_id="transfer-run")
    chart = gr.Image(type="pil", format="png", label="Action Units read from each face", interactive=False)
    # A new photo or reference (an upload or an example) makes the previous result wrong: clear it.
    source.change(
        lambda photo: (*logic.face_picker(photo), None, None), source, [overview, face, note, result, chart],
        api_name="transfer_source_changed", **PRIVATE, **RAW,
    )  # fmt: skip
    reference.change(lambda _: (None, None), reference, [result, chart], api_name="reference_changed", **PRIVATE, **RAW)
    face.input(lambda _: (None, None), face, [result, chart], api_name="transfer_face_changed", **PRIVATE)
    run.click(logic.transfer, [source, reference, strength, face], [result, chart], api_name="transfer", **RAW)


def edit_tab(logic: Demo) -> None:
    # Two columns (stacked on a phone): the photo, then the result with the sliders under it.
    # The result is sticky (see CSS): it stays in view while a slider far down the page moves.
    with gr.Row(equal_height=False):
        with gr.Column():
            photo = Photo("Photo (the sliders start at its own AUs)", elem_id="edit-source", height=PHOTO_HEIGHT)
            overview, face, note = face_picker("edit")
            example_picker(logic, "edit", [photo], [["grace_hopper"], ["two_portraits"], ["astronaut"], ["face-201"]])
        with gr.Column():
            result = gr.Image(
                type="filepath", label="Result (follows the sliders)", elem_id="edit-result", height=PHOTO_HEIGHT
            )
            with gr.Row():
                presets = {name: gr.Button(name, size="sm", min_width=60) for name in EXPRESSIONS}
                reset = gr.Button("Reset", size="sm", variant="secondary", min_width=60)
            sliders = {}
            with gr.Row():
                for title, names in (("Upper face", UPPER_FACE_AUS), ("Lower face", LOWER_FACE_AUS)):
                    with gr.Column(min_width=200):
                        gr.Markdown(f"**{title}**")
                        for name in names:
                            sliders[name] = gr.Slider(
                                0, 1, value=0, step=0.01, label=f"{name}: {AU_DESCRIPTIONS[name]}"
                            )
    ordered = [sliders[name] for name in AU_NAMES]  # the order Demo.read_aus and edit_live use
    # Detection, alignment and AU reading run once per photo; a slider move only runs the generator.
    photo.change(
        logic.open_for_edit, photo, [overview, face, note, *ordered, result], api_name="open", **PRIVATE, **RAW
    )
    own_aus = warn_instead(logic.read_aus, len(AU_NAMES))  # no "Error" on 17 sliders: a warning
    edit = warn_instead(logic.edit_live)
    face.input(own_aus, [photo, face], ordered, api_name="pick_face", **PRIVATE, **RAW).then(
        lambda: None, None, result, api_name="clear_on_pick", **PRIVATE
    )
    # While one move renders, further moves collapse to the last one; no spinner flickers over the image.
    live = {"trigger_mode": "always_last", "show_progress": "hidden", "api_name": "live", **PRIVATE, **RAW}
    gr.on([s.input for s in ordered], edit, [photo, face, *ordered], result, **live)
    for name, button in presets.items():
        button.click(
            functools.partial(preset_values, name), None, ordered, api_name=f"preset_{name.lower()}", **PRIVATE
        ).then(edit, [photo, face, *ordered], result, api_name=f"edit_preset_{name.lower()}", **PRIVATE, **RAW)
    reset.click(own_aus, [photo, face], ordered, api_name="reset", **PRIVATE, **RAW).then(
        lambda: None, None, result, api_name="clear_result", **PRIVATE
    )


def interpolate_tab(logic: Demo) -> None:
    choices = [OWN_EXPRESSION, *EXPRESSIONS, REFERENCE_PHOTO]
    with gr.Row():
        with gr.Column():
            photo = Photo("Photo", elem_id="interpolate-source", height=PHOTO_HEIGHT)
            overview, face, note = face_picker("interpolate")
        with gr.Column():
            start = gr.Dropdown(choices, value=OWN_EXPRESSION, label="From", elem_id="interpolate-start")
            start_reference = Photo("Reference photo for 'From' (optional)", elem_id="interpolate-start-reference")
        with gr.Column():
            end = gr.Dropdown(choices, value="Happy", label="To", elem_id="interpolate-end")
            end_reference = Photo("Reference photo for 'To' (optional)", elem_id="interpolate-end-reference")
    inputs = [photo, start, start_reference, end, end_reference]
    example_picker(
        logic, "interpolate", inputs,
        [["grace_hopper", OWN_EXPRESSION, None, "Happy", None], ["astronaut", "Sad", None, "Surprise", None]],
        shown=[0, 1, 3],
    )  # fmt: skip
    with gr.Row(equal_height=True):
        steps = gr.Slider(2, MAX_APP_FRAMES, value=8, step=1, label="Frames", scale=3)
        run = gr.Button("Interpolate", variant="primary", elem_id="interpolate-run", scale=1)
    with gr.Row():
        gif = gr.Image(type="filepath", label="Animated GIF", interactive=False, height=320, elem_id="interpolate-gif")
        video = gr.Video(label="MP4 (H.264)", interactive=False, height=320)
    strip = gr.Image(type="pil", format="png", label="Frames", interactive=False)
    status = gr.Markdown()
    outputs = [gif, video, strip, status]
    photo.change(
        lambda image: (*logic.face_picker(image), None, None, None, ""), photo, [overview, face, note, *outputs],
        api_name="interpolate_photo_changed", **PRIVATE, **RAW,
    )  # fmt: skip
    # A reference photo and a preset never both stand for one end: each choice replaces the other.
    for preset, reference, side in ((start, start_reference, "start"), (end, end_reference, "end")):
        reference.upload(
            lambda _: REFERENCE_PHOTO, reference, preset, api_name=f"{side}_reference_chosen", **PRIVATE, **RAW
        )
        preset.input(
            lambda choice, photo: photo if choice == REFERENCE_PHOTO else None, [preset, reference], reference,
            api_name=f"{side}_preset_chosen", postprocess=False, **PRIVATE, **RAW,
        )  # fmt: skip
    run.click(logic.interpolate, [*inputs, steps, face], outputs, api_name="interpolate", **RAW)


def main(args: argparse.Namespace) -> None:
    model, status = load_model(args.model)
    demo = build_demo(model, status, args.model)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options())


if __name__ == "__main__":
    main(parse_args())
