"""The model wrapper behind app.py: loading, image handling, AU charts, animations, readable errors.

app.py only lays out the Gradio UI and calls `Demo`; everything a visitor sees is computed
here. Needs the `app` extra (gradio; PyAV for MP4, optional).

Errors a visitor can cause (no face, not an image, too large, too small) become `gr.Error`
with a sentence a person understands; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from wemgan.aus import AU_NAMES, EXPRESSIONS
from wemgan.data import synthetic
from wemgan.export import data_licence
from wemgan.faces import FaceNotFoundError, FacesExtraMissingError
from wemgan.images import MAX_PIXELS, ImageTooLargeError, InvalidImageError
from wemgan.model import WEMGAN

OWN_EXPRESSION = "The photo's own expression"
MAX_ANIMATION_SIDE = 512  # GIF/MP4 frames of a 12 MP photo would be hundreds of MB; the edited photo keeps its size
FRAME_SECONDS = 0.15
STRIP_HEIGHT = 160
EXAMPLE_IDENTITIES = (212, 201, 203, 211)  # seeds of docs/synthfacs.png: varied, clearly readable faces
CHART_COLORS = {"source": (90, 120, 200), "reference": (230, 150, 40), "result": (60, 170, 90)}


# ------------------------------------------------------------------ loading
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
    info = model.provenance
    _, data = data_licence(str(info.get("dataset", "unknown data")))
    return model, f"Model: `{source}`, {info.get('steps', 'an unknown number of')} training steps. {data}"


# ------------------------------------------------------------------- errors
def readable(error: Exception, what: str = "the photo") -> str:
    """What a visitor should read for an input error in `what` (the library's messages name API arguments)."""
    if isinstance(error, FaceNotFoundError):
        return (
            f"No face was found in {what}. Use a photo where a face looks roughly at the camera "
            "and is not too small, or upload a crop of the face."
        )
    if isinstance(error, FacesExtraMissingError):
        return "This server cannot search photos for faces (dlib is not installed); upload a crop of the face."
    if isinstance(error, ImageTooLargeError | Image.DecompressionBombError):
        megapixels = MAX_PIXELS // 1_000_000
        return f"{_sentence(what)} is too large: at most {megapixels} megapixels, please upload a smaller one."
    if isinstance(error, InvalidImageError | UnidentifiedImageError):
        return f"{_sentence(what)} is not an image file that can be read. Upload a JPEG, PNG or WebP photo."
    message = str(error)
    return _sentence(message) + ("" if message.endswith(".") else ".")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


@contextlib.contextmanager
def visitor_errors(what: str = "the photo") -> Iterator[None]:
    """Turn input errors about `what` into gr.Error (shown as a message, never a traceback)."""
    try:
        yield
    except (ValueError, TypeError, OSError) as error:  # OSError: PIL on unreadable or truncated files
        raise gr.Error(readable(error, what)) from None


def require(image: Any, what: str) -> Any:
    if image is None:
        raise gr.Error(f"Upload {what} first.")
    return image


def Photo(label: str, **kwargs: Any) -> gr.Image:
    """An image input that hands the file path on untouched and explains unreadable uploads.

    gr.Image opens every upload with PIL before our code runs and reports a failure there as an
    anonymous error; here it becomes a readable message. The path (not a decoded image) goes to
    the model, which applies EXIF rotation, keeps the mode and guards against huge images.
    """
    image = gr.Image(type="filepath", image_mode=None, format="png", label=label, **kwargs)
    # Wrapped on the instance: a gr.Image subclass would make gradio write a .pyi stub next to this module.
    image.preprocess = _explain_upload_errors(image.preprocess, f"the upload for '{label}'")
    return image


def _explain_upload_errors(preprocess: Callable[[Any], Any], what: str) -> Callable[[Any], Any]:
    @functools.wraps(preprocess)
    def explained(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise gr.Error(readable(error, what)) from None

    return explained


# --------------------------------------------------------------------- demo
class Demo:
    """Everything the app's events do, on one trained model."""

    def __init__(self, model: WEMGAN) -> None:
        self.model = model
        self.folder = _temporary_folder("wemgan-demo-")  # animations; gradio copies them to its cache

    def transfer(self, photo: Any, reference: Any, strength: float) -> tuple[Image.Image, Image.Image]:
        """The photo with the reference's expression, and a chart of the AUs of all three faces."""
        require(photo, "a photo to edit")
        require(reference, "a reference photo")
        # Read each face on its own first, so that an error names the photo it is about.
        with visitor_errors("the photo to edit"):
            source = self.model.estimate_aus(photo)
        with visitor_errors("the reference photo"):
            target = self.model.estimate_aus(reference)
        with visitor_errors():
            result = self.model.edit(photo, aus=target, strength=float(strength))  # = edit(reference=...)
            edited = self.model.estimate_aus(result)
        return displayable(result), au_chart({"source": source, "reference": target, "result": edited})

    def estimate_aus(self, photo: Any) -> list[float]:
        """The 17 AUs of the photo's largest face, in AU_NAMES order (the sliders' values)."""
        require(photo, "a photo")
        with visitor_errors():
            aus = self.model.estimate_aus(photo)
        return [round(aus[name], 2) for name in AU_NAMES]

    def edit_aus(self, photo: Any, *values: float) -> Image.Image:
        """The photo with its AUs set to `values` (17 numbers in AU_NAMES order)."""
        require(photo, "a photo")
        if len(values) != len(AU_NAMES):
            raise gr.Error(f"Give {len(AU_NAMES)} AU values, got {len(values)}.")
        with visitor_errors():
            return displayable(self.model.edit(photo, aus=dict(zip(AU_NAMES, map(float, values), strict=True))))

    def interpolate(
        self, photo: Any, start: str, start_reference: Any, end: str, end_reference: Any, steps: float
    ) -> tuple[str, str | None, Image.Image, str]:
        """(GIF path, MP4 path or None, frame strip, note): the face moving from `start` to `end`.

        A reference photo, when given, wins over the preset chosen next to it.
        """
        require(photo, "a photo")
        first = _endpoint(start, start_reference)
        last = _endpoint(end, end_reference)
        with visitor_errors():
            frames = self.model.interpolate(photo, first, last, steps=int(steps))
        frames = [displayable(frame) for frame in frames]
        small = [shrink(frame, MAX_ANIMATION_SIDE) for frame in frames]
        folder = Path(tempfile.mkdtemp(dir=self.folder))  # one per request: concurrent requests never share files
        gif = write_gif(small, folder / "interpolation.gif")
        mp4 = write_mp4(small, folder / "interpolation.mp4")
        note = f"{len(frames)} frames." if mp4 else f"{len(frames)} frames. No MP4: install PyAV (`pip install av`)."
        return str(gif), str(mp4) if mp4 else None, frame_strip(frames), note


def _temporary_folder(prefix: str) -> Path:
    """A folder deleted when the server exits (gradio serves copies from its own cache)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _endpoint(preset: str, reference: Any) -> Any:
    if reference is not None:
        return Path(reference)  # a Path is an image to the model; a plain string would be a preset name
    if preset == OWN_EXPRESSION:
        return None
    if preset not in EXPRESSIONS:
        raise gr.Error(f"Unknown expression {preset!r}; choose one of {', '.join(EXPRESSIONS)}.")
    return preset


def preset_values(name: str) -> list[float]:
    """Slider values of an expression preset, in AU_NAMES order."""
    return [round(float(value), 2) for value in EXPRESSIONS[name]]


# ------------------------------------------------------------------- images
def displayable(image: Image.Image) -> Image.Image:
    """The image in a mode a browser shows (PNG): results keep the input's mode, e.g. CMYK or 16-bit."""
    if image.mode in ("RGB", "RGBA", "L", "LA"):
        return image
    has_alpha = image.mode in ("PA", "La", "RGBa") or "transparency" in image.info
    if image.mode.startswith("I"):  # 16/32-bit grey: scale to 8 bits instead of clipping
        pixels = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        return Image.fromarray((pixels / peak * 255).clip(0, 255).astype(np.uint8), "L")
    return image.convert("RGBA" if has_alpha else "RGB")


def shrink(image: Image.Image, longest: int) -> Image.Image:
    scale = longest / max(image.size)
    if scale >= 1:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)


def frame_strip(frames: Sequence[Image.Image], height: int = STRIP_HEIGHT) -> Image.Image:
    """The frames side by side at one height, as the paper's Fig. 9."""
    width = max(1, round(frames[0].width * height / frames[0].height))
    strip = Image.new("RGB", (width * len(frames), height), "white")
    for index, frame in enumerate(frames):
        strip.paste(frame.convert("RGB").resize((width, height), Image.LANCZOS), (index * width, 0))
    return strip


def write_gif(frames: Sequence[Image.Image], path: Path, seconds: float = FRAME_SECONDS) -> Path:
    """A looping GIF that plays forth and back, so the change of expression reads both ways."""
    loop = [frame.convert("RGB") for frame in [*frames, *frames[-2:0:-1]]]
    loop[0].save(path, save_all=True, append_images=loop[1:], duration=round(seconds * 1000), loop=0)
    return path


def write_mp4(frames: Sequence[Image.Image], path: Path, seconds: float = FRAME_SECONDS) -> Path | None:
    """An H.264 MP4 (yuv420p, which browsers play); None when PyAV is not installed."""
    try:
        import av
    except ImportError:
        return None
    # yuv420p needs even sides; pad by one pixel rather than distort the face.
    width, height = frames[0].width + frames[0].width % 2, frames[0].height + frames[0].height % 2
    fps = Fraction(round(1 / seconds))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in [*frames, *frames[-2:0:-1]]:
            canvas = Image.new("RGB", (width, height))
            canvas.paste(frame.convert("RGB"))
            for packet in stream.encode(av.VideoFrame.from_image(canvas)):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)
    return path


def au_chart(faces: dict[str, dict[str, float]], height: int = 260) -> Image.Image:
    """Grouped bars: for each AU, one bar per face (e.g. source, reference, result), values in [0, 1]."""
    font = ImageFont.load_default(size=11)
    left, bottom, top, group = 34, 34, 26, 40
    width = left + group * len(AU_NAMES) + 10
    chart = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(chart)
    plot = height - top - bottom
    for tick in (0.0, 0.5, 1.0):
        y = top + plot * (1 - tick)
        draw.line([(left, y), (width - 10, y)], fill=(225, 225, 225))
        draw.text((4, y - 6), f"{tick:.1f}", fill="black", font=font)
    bar = (group - 8) // max(1, len(faces))
    for index, name in enumerate(AU_NAMES):
        x0 = left + index * group + 4
        for which, (label, aus) in enumerate(faces.items()):
            value = min(1.0, max(0.0, float(aus[name])))
            color = CHART_COLORS.get(label, (120, 120, 120))
            draw.rectangle(
                [(x0 + which * bar, top + plot * (1 - value)), (x0 + (which + 1) * bar - 1, top + plot)], color
            )
        draw.text((x0, height - bottom + 6), name, fill="black", font=font)
    for which, label in enumerate(faces):
        x = left + which * 110
        draw.rectangle([(x, 6), (x + 12, 18)], CHART_COLORS.get(label, (120, 120, 120)))
        draw.text((x + 16, 6), label, fill="black", font=font)
    return chart


# ----------------------------------------------------------------- examples
def example_faces(folder: Path | None = None) -> dict[str, Path]:
    """SynthFACS faces rendered now (nothing downloaded, free to redistribute), by name.

    "face-N": identity N with a neutral face; "<expression>-N": identity N with a preset.
    """
    folder = Path(folder) if folder else _temporary_folder("wemgan-examples-")
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f"face-{seed}": (seed, "Neutral") for seed in EXAMPLE_IDENTITIES}
    wanted |= {"happy-201": (201, "Happy"), "surprise-211": (211, "Surprise"), "anger-212": (212, "Anger")}
    paths = {}
    for name, (seed, expression) in wanted.items():
        paths[name] = folder / f"{name}.png"
        synthetic.render(seed, expression, size=256).save(paths[name])
    return paths
