"""wemgan demo (Hugging Face Space): edit facial expressions by Action Units.

    python app.py                       # embedded default model in hub/default, offline
    python app.py --model DIR_OR_HUB_ID --port 7860 [--share]

Layout only; the work is done by wemgan.WEMGAN. Until a trained model is shipped in
hub/default, the app says so plainly instead of showing edits of a random network.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home, before importing gradio

import gradio as gr

from wemgan import AU_DESCRIPTIONS, AU_NAMES, EXPRESSIONS, WEMGAN

DEFAULT_MODEL = Path(__file__).resolve().parent / "hub" / "default"


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


def load_model(source: str) -> tuple[WEMGAN | None, str]:
    """(model, status line); model is None when nothing trained can be shown."""
    local = Path(source)
    is_local = local.exists() or local.is_absolute() or source.startswith(".")
    if is_local and not (local / "model.safetensors").is_file():
        return None, f"No trained model is shipped in `{source}` yet, so this demo cannot edit faces."
    try:
        model = WEMGAN.from_pretrained(source)
    except Exception as error:  # shown to the visitor instead of a traceback
        return None, f"The model `{source}` could not be loaded: {error}"
    if not model.is_trained:
        return None, f"The model in `{source}` was never trained; its edits would be noise, so none are shown."
    return model, f"Model: `{source}` ({model.provenance.get('data', 'unknown data')})."


def build_demo(model: WEMGAN | None, status: str) -> gr.Blocks:
    with gr.Blocks(title="wemgan: facial expression editing", analytics_enabled=False) as demo:
        gr.Markdown("# wemgan — facial expression editing by Action Units\n" + status)
        if model is not None:
            with gr.Row():
                photo = gr.Image(type="pil", label="Face (a centred face crop)", image_mode="RGB")
                result = gr.Image(type="pil", label="Result", format="png")
            preset = gr.Dropdown(list(EXPRESSIONS), value="Happy", label="Expression")
            strength = gr.Slider(0, 1.5, value=1.0, step=0.05, label="Strength")
            gr.Button("Edit").click(
                lambda image, name, amount: _edit(model, image, name, amount),
                [photo, preset, strength],
                result,
                api_name="edit_aus",
            )
        gr.Markdown(
            "### The 17 Action Units\n| AU | meaning |\n|---|---|\n"
            + "\n".join(f"| {name} | {AU_DESCRIPTIONS[name]} |" for name in AU_NAMES)
        )
    return demo


def _edit(model: WEMGAN, image, preset: str, strength: float):
    if image is None:
        raise gr.Error("Upload a face photo first.")
    try:
        return model.edit(image, aus=preset, strength=strength)
    except (ValueError, TypeError) as error:
        raise gr.Error(str(error)) from None


def main(args: argparse.Namespace) -> None:
    model, status = load_model(args.model)
    demo = build_demo(model, status)
    demo.queue(max_size=32, default_concurrency_limit=2)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size="10mb")


if __name__ == "__main__":
    main(parse_args())
