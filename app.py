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

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home, before importing gradio

import gradio as gr

from wemgan import AU_DESCRIPTIONS, AU_NAMES, EXPRESSIONS, MAX_STRENGTH, WEMGAN
from wemgan.aus import LOWER_FACE_AUS, UPPER_FACE_AUS
from wemgan.demo import (
    MAX_APP_FRAMES,
    OWN_EXPRESSION,
    REFERENCE_PHOTO,
    Demo,
    Photo,
    example_photos,
    face_choices,
    load_model,
    preset_values,
)

DEFAULT_MODEL = Path(__file__).resolve().parent / "hub" / "default"
QUEUE = {"max_size": 32, "default_concurrency_limit": 2}  # 2 edits at once; more would only share the CPU
LAUNCH = {"max_file_size": "10mb"}
CACHE = (300, 1800)  # gradio's copies of uploads and results: swept every 5 min, deleted after 30 min
PRIVATE = {"api_visibility": "private"}  # events that only drive the page: not part of the API
INTRO = """# wemgan — facial expression editing by Action Units
An open implementation of [WEM-GAN](https://arxiv.org/abs/2412.02530): a face's expression is
changed through 17 Action Units (AUs), while a Haar-wavelet path keeps its identity detail.
"""

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


def build_demo(model: WEMGAN | None, status: str) -> gr.Blocks:
    with gr.Blocks(title="wemgan: facial expression editing", analytics_enabled=False, delete_cache=CACHE) as demo:
        gr.Markdown(INTRO + "\n" + status)
        if model is not None:  # never offer controls that would run an untrained network
            logic, examples = Demo(model), example_photos()
            with gr.Tab("Transfer"):
                transfer_tab(logic, examples)
            with gr.Tab("Edit AUs"):
                edit_tab(logic, examples)
            with gr.Tab("Animate"):
                interpolate_tab(logic, examples)
            gr.api(logic.estimate_aus_api, api_name="estimate_aus")
            gr.api(logic.edit_aus_api, api_name="edit_aus")
        with gr.Accordion("The 17 Action Units", open=model is None):
            gr.Markdown(
                "| AU | meaning |\n|---|---|\n"
                + "\n".join(f"| {name} | {AU_DESCRIPTIONS[name]} |" for name in AU_NAMES)
            )
    demo.queue(**QUEUE)
    return demo


def face_picker(prefix: str) -> tuple[gr.Image, gr.Dropdown, gr.Markdown]:
    """Under a photo: a note, the numbered faces of a group photo, and the choice of face (hidden for one face)."""
    note = gr.Markdown(elem_id=f"{prefix}-faces-note")
    overview = gr.Image(
        type="pil", format="jpeg", label="Faces found", interactive=False, visible=False, elem_id=f"{prefix}-faces"
    )
    face = gr.Dropdown(
        face_choices(1), value="1", label="Face to edit", allow_custom_value=True, visible=False,
        elem_id=f"{prefix}-face",
    )  # fmt: skip
    return overview, face, note


def transfer_tab(logic: Demo, examples: dict[str, Path]) -> None:
    with gr.Row():
        with gr.Column():
            source = Photo("Photo to edit", elem_id="transfer-source")
            overview, face, note = face_picker("transfer")
        reference = Photo("Reference: whose expression to copy", elem_id="transfer-reference")
        result = gr.Image(type="pil", format="png", label="Result", interactive=False, elem_id="transfer-result")
    strength = gr.Slider(0, MAX_STRENGTH, value=1.0, step=0.05, label="Strength (1 = the reference's expression)")
    run = gr.Button("Transfer the expression", variant="primary", elem_id="transfer-run")
    chart = gr.Image(type="pil", format="png", label="Action Units read from each face", interactive=False)
    gr.Examples(
        [[examples["grace_hopper"], examples["astronaut"]], [examples["astronaut"], examples["surprise-211"]]],
        [source, reference],
        example_labels=["Grace Hopper, with the astronaut's smile", "Astronaut, with a synthetic face's surprise"],
        api_name="transfer_example",
        **PRIVATE,
    )
    # A new photo or reference (an upload or an example) makes the previous result wrong: clear it.
    source.change(
        lambda photo: (*logic.face_picker(photo), None, None), source, [overview, face, note, result, chart],
        api_name="transfer_source_changed", **PRIVATE,
    )  # fmt: skip
    reference.change(lambda _: (None, None), reference, [result, chart], api_name="reference_changed", **PRIVATE)
    face.input(lambda _: (None, None), face, [result, chart], api_name="transfer_face_changed", **PRIVATE)
    run.click(logic.transfer, [source, reference, strength, face], [result, chart], api_name="transfer")


def edit_tab(logic: Demo, examples: dict[str, Path]) -> None:
    with gr.Row():
        with gr.Column():
            photo = Photo("Photo (the sliders start at its own AUs)", elem_id="edit-source")
            overview, face, note = face_picker("edit")
        result = gr.Image(type="filepath", label="Result (follows the sliders)", elem_id="edit-result")
    with gr.Row():
        presets = {name: gr.Button(name, size="sm", min_width=60) for name in EXPRESSIONS}
        reset = gr.Button("Reset", size="sm", variant="secondary", min_width=60)
    sliders = {}
    with gr.Row():
        for title, names in (("Upper face", UPPER_FACE_AUS), ("Lower face", LOWER_FACE_AUS)):
            with gr.Column():
                gr.Markdown(f"**{title}**")
                for name in names:
                    sliders[name] = gr.Slider(0, 1, value=0, step=0.01, label=f"{name}: {AU_DESCRIPTIONS[name]}")
    ordered = [sliders[name] for name in AU_NAMES]  # the order Demo.read_aus and edit_live use
    gr.Examples(
        [[examples[name]] for name in ("grace_hopper", "two_portraits", "astronaut", "face-201")],
        photo,
        example_labels=["Grace Hopper", "Two faces", "Astronaut", "Synthetic face (SynthFACS)"],
        api_name="edit_example",
        **PRIVATE,
    )
    # Detection, alignment and AU reading run once per photo; a slider move only runs the generator.
    photo.change(logic.open_for_edit, photo, [overview, face, note, *ordered, result], api_name="open", **PRIVATE)
    face.input(logic.read_aus, [photo, face], ordered, api_name="pick_face", **PRIVATE).then(
        lambda: None, None, result, api_name="clear_on_pick", **PRIVATE
    )
    # While one move renders, further moves collapse to the last one; no spinner flickers over the image.
    live = {"trigger_mode": "always_last", "show_progress": "hidden", "api_name": "live", **PRIVATE}
    gr.on([s.input for s in ordered], logic.edit_live, [photo, face, *ordered], result, **live)
    for name, button in presets.items():
        button.click(
            functools.partial(preset_values, name), None, ordered, api_name=f"preset_{name.lower()}", **PRIVATE
        ).then(logic.edit_live, [photo, face, *ordered], result, api_name=f"edit_preset_{name.lower()}", **PRIVATE)
    reset.click(logic.read_aus, [photo, face], ordered, api_name="reset", **PRIVATE).then(
        lambda: None, None, result, api_name="clear_result", **PRIVATE
    )


def interpolate_tab(logic: Demo, examples: dict[str, Path]) -> None:
    choices = [OWN_EXPRESSION, *EXPRESSIONS, REFERENCE_PHOTO]
    with gr.Row():
        with gr.Column():
            photo = Photo("Photo", elem_id="interpolate-source")
            overview, face, note = face_picker("interpolate")
        with gr.Column():
            start = gr.Dropdown(choices, value=OWN_EXPRESSION, label="From", elem_id="interpolate-start")
            start_reference = Photo("Reference photo for 'From' (optional)", elem_id="interpolate-start-reference")
        with gr.Column():
            end = gr.Dropdown(choices, value="Happy", label="To", elem_id="interpolate-end")
            end_reference = Photo("Reference photo for 'To' (optional)", elem_id="interpolate-end-reference")
    steps = gr.Slider(2, MAX_APP_FRAMES, value=8, step=1, label="Frames")
    run = gr.Button("Interpolate", variant="primary", elem_id="interpolate-run")
    with gr.Row():
        gif = gr.Image(type="filepath", label="Animated GIF", interactive=False, height=320, elem_id="interpolate-gif")
        video = gr.Video(label="MP4 (H.264)", interactive=False, height=320)
    strip = gr.Image(type="pil", format="png", label="Frames", interactive=False)
    status = gr.Markdown()
    outputs = [gif, video, strip, status]
    gr.Examples(
        [[examples["grace_hopper"], OWN_EXPRESSION, None, "Happy", None],
         [examples["astronaut"], "Sad", None, "Surprise", None]],
        [photo, start, start_reference, end, end_reference],
        example_labels=["Grace Hopper: own expression to Happy", "Astronaut: Sad to Surprise"],
        api_name="interpolate_example",
        **PRIVATE,
    )  # fmt: skip
    photo.change(
        lambda image: (*logic.face_picker(image), None, None, None, ""), photo, [overview, face, note, *outputs],
        api_name="interpolate_photo_changed", **PRIVATE,
    )  # fmt: skip
    # A reference photo and a preset never both stand for one end: each choice replaces the other.
    for preset, reference, side in ((start, start_reference, "start"), (end, end_reference, "end")):
        reference.upload(lambda _: REFERENCE_PHOTO, reference, preset, api_name=f"{side}_reference_chosen", **PRIVATE)
        preset.input(
            lambda choice, photo: photo if choice == REFERENCE_PHOTO else None, [preset, reference], reference,
            api_name=f"{side}_preset_chosen", **PRIVATE,
        )  # fmt: skip
    run.click(
        logic.interpolate,
        [photo, start, start_reference, end, end_reference, steps, face],
        outputs,
        api_name="interpolate",
    )


def main(args: argparse.Namespace) -> None:
    model, status = load_model(args.model)
    build_demo(model, status).launch(server_name=args.host, server_port=args.port, share=args.share, **LAUNCH)


if __name__ == "__main__":
    main(parse_args())
