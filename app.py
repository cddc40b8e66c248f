"""wemgan demo (Hugging Face Space): edit facial expressions by Action Units.

    python app.py                       # embedded default model in hub/default, offline
    python app.py --model DIR_OR_HUB_ID --port 7860 [--host 0.0.0.0] [--share]

Layout only; every event calls wemgan.demo.Demo. Until a trained model is shipped in
hub/default, the app says so plainly instead of showing edits of a random network.
Every event has an api_name, so the Space doubles as an API (gradio_client).
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home, before importing gradio

import gradio as gr

from wemgan import AU_DESCRIPTIONS, AU_NAMES, EXPRESSIONS, WEMGAN
from wemgan.aus import LOWER_FACE_AUS, UPPER_FACE_AUS
from wemgan.demo import OWN_EXPRESSION, Demo, Photo, example_faces, load_model, preset_values

DEFAULT_MODEL = Path(__file__).resolve().parent / "hub" / "default"
QUEUE = {"max_size": 32, "default_concurrency_limit": 2}  # 2 edits at once; more would only share the CPU
LAUNCH = {"max_file_size": "10mb"}
PRIVATE = {"api_visibility": "private"}  # UI-only helpers (presets, examples): not part of the API
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
    with gr.Blocks(title="wemgan: facial expression editing", analytics_enabled=False) as demo:
        gr.Markdown(INTRO + "\n" + status)
        if model is not None:  # never offer controls that would run an untrained network
            logic, examples = Demo(model), example_faces()
            with gr.Tab("Expression transfer"):
                transfer_tab(logic, examples)
            with gr.Tab("Edit Action Units"):
                edit_tab(logic, examples)
            with gr.Tab("Interpolate"):
                interpolate_tab(logic, examples)
        with gr.Accordion("The 17 Action Units", open=model is None):
            gr.Markdown(
                "| AU | meaning |\n|---|---|\n"
                + "\n".join(f"| {name} | {AU_DESCRIPTIONS[name]} |" for name in AU_NAMES)
            )
    demo.queue(**QUEUE)
    return demo


def transfer_tab(logic: Demo, examples: dict[str, Path]) -> None:
    with gr.Row():
        source = Photo("Photo to edit", elem_id="transfer-source")
        reference = Photo("Reference: whose expression to copy", elem_id="transfer-reference")
        result = gr.Image(type="pil", format="png", label="Result", interactive=False, elem_id="transfer-result")
    strength = gr.Slider(0, 1.5, value=1.0, step=0.05, label="Strength (1 = the reference's expression)")
    run = gr.Button("Transfer the expression", variant="primary", elem_id="transfer-run")
    chart = gr.Image(type="pil", format="png", label="Action Units read from each face", interactive=False)
    gr.Examples(
        [[examples["face-203"], examples["happy-201"]], [examples["face-212"], examples["surprise-211"]]],
        [source, reference],
        api_name="transfer_example",
        **PRIVATE,
    )
    run.click(logic.transfer, [source, reference, strength], [result, chart], api_name="transfer")


def edit_tab(logic: Demo, examples: dict[str, Path]) -> None:
    with gr.Row():
        photo = Photo("Photo (the sliders start at its own AUs)", elem_id="edit-source")
        result = gr.Image(
            type="pil", format="png", label="Result (updates when a slider is released)", elem_id="edit-result"
        )
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
    ordered = [sliders[name] for name in AU_NAMES]  # the order Demo.edit_aus and estimate_aus use
    photo.upload(logic.estimate_aus, photo, ordered, api_name="estimate_aus").then(
        lambda: None, None, result, api_name="clear_on_upload", **PRIVATE
    )  # a result of the previous photo would mislead
    gr.Examples(  # after the upload event: it takes the name /estimate_aus first
        [[examples[f"face-{seed}"]] for seed in (201, 211)],
        photo,
        ordered,
        fn=logic.estimate_aus,
        run_on_click=True,
        cache_examples=False,
        api_name="edit_example",
        **PRIVATE,
    )
    gr.on([slider.release for slider in ordered], logic.edit_aus, [photo, *ordered], result, api_name="edit_aus")
    for name, button in presets.items():
        button.click(
            functools.partial(preset_values, name), None, ordered, api_name=f"preset_{name.lower()}", **PRIVATE
        ).then(logic.edit_aus, [photo, *ordered], result, api_name=f"edit_preset_{name.lower()}", **PRIVATE)
    reset.click(logic.estimate_aus, photo, ordered, api_name="reset", **PRIVATE).then(
        lambda: None, None, result, api_name="clear_result", **PRIVATE
    )


def interpolate_tab(logic: Demo, examples: dict[str, Path]) -> None:
    choices = [OWN_EXPRESSION, *EXPRESSIONS]
    with gr.Row():
        photo = Photo("Photo", elem_id="interpolate-source")
        with gr.Column():
            start = gr.Dropdown(choices, value=OWN_EXPRESSION, label="From")
            start_reference = Photo("…or from the expression of this face (optional)")
        with gr.Column():
            end = gr.Dropdown(choices, value="Happy", label="To")
            end_reference = Photo("…or to the expression of this face (optional)")
    steps = gr.Slider(2, 16, value=8, step=1, label="Frames")
    run = gr.Button("Interpolate", variant="primary", elem_id="interpolate-run")
    with gr.Row():
        gif = gr.Image(type="filepath", label="Animated GIF", interactive=False, height=320, elem_id="interpolate-gif")
        video = gr.Video(label="MP4 (H.264)", interactive=False, height=320)
    strip = gr.Image(type="pil", format="png", label="Frames", interactive=False)
    note = gr.Markdown()
    gr.Examples(
        [[examples["face-211"], OWN_EXPRESSION, "Happy"], [examples["face-203"], "Sad", "Surprise"]],
        [photo, start, end],
        api_name="interpolate_example",
        **PRIVATE,
    )
    run.click(
        logic.interpolate,
        [photo, start, start_reference, end, end_reference, steps],
        [gif, video, strip, note],
        api_name="interpolate",
    )


def main(args: argparse.Namespace) -> None:
    model, status = load_model(args.model)
    build_demo(model, status).launch(server_name=args.host, server_port=args.port, share=args.share, **LAUNCH)


if __name__ == "__main__":
    main(parse_args())
