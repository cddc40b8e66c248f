"""The model wrapper behind app.py: loading, image handling, AU charts, animations, readable errors.

app.py only lays out the Gradio UI and calls `Demo`; everything a visitor sees is computed
here. Needs the `app` extra (gradio; PyAV for MP4, optional).

Errors a visitor can cause (no face, not an image, too large, too small) become `gr.Error`
with a sentence a person understands; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import inspect
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from gradio.data_classes import FileData
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool

from wemgan.aus import AU_NAMES, EXPRESSIONS, canonical_au_name
from wemgan.data import synthetic
from wemgan.export import data_licence, trained_for
from wemgan.faces import FaceNotFoundError, FacesExtraMissingError, uint8_image
from wemgan.images import MAX_PIXELS, MIN_SIDE, ImageTooLargeError, ImageTooSmallError, InvalidImageError
from wemgan.model import WEMGAN, PreparedPhoto, check_strength

log = logging.getLogger(__name__)

OWN_EXPRESSION = "The photo's own expression"
REFERENCE_PHOTO = "The reference photo's expression"
MAX_APP_FRAMES = 16  # the app's frame slider; the library allows up to wemgan.MAX_FRAMES
MAX_ANIMATION_SIDE = 512  # GIF/MP4 frames of a 12 MP photo would be hundreds of MB; the edited photo keeps its size
FRAME_SECONDS = 0.15
STRIP_HEIGHT = 160
OVERVIEW_SIDE = 640  # the face picker's picture of a group photo
MAX_CACHED_PHOTOS = 16  # photos searched and read once, for the live sliders ...
MAX_CACHED_PIXELS = 60_000_000  # ... and their pixels in all (float32 RGB: about 0.7 GB at most)
RESULT_FILE_SECONDS = 3600  # our GIF/MP4/PNG results are swept out after an hour (gradio keeps its copies)
LIVE_FILE_SECONDS = 120  # the live sliders' JPEGs: gradio copies each at once, ours only need to outlive that
LIVE_JPEG_QUALITY = 95
ERROR_NOTE = "wemgan-error"  # the CSS class of a note that says why a photo cannot be used
GONE = "is no longer on the server (its temporary copy was removed): upload it again, or reload the page."
PHOTOS = Path(__file__).resolve().parent / "data" / "photos"  # public-domain portraits, see NOTICE.md there
EXAMPLE_IDENTITIES = (212, 201, 203, 211)  # seeds of docs/synthfacs.png: varied, clearly readable faces
CHART_COLORS = {"source": (90, 120, 200), "reference": (230, 150, 40), "result": (60, 170, 90)}


# ------------------------------------------------------------------ loading
def load_model(source: str) -> tuple[WEMGAN | None, str]:
    """(model, status line); model is None when nothing trained can be shown.

    The status names the model (a folder's name or a Hub id), never a path of the server.
    """
    local = Path(source)
    is_local = local.exists() or local.is_absolute() or source.startswith(".")
    name = local.resolve().name if is_local else source
    if is_local and not (local / "model.safetensors").is_file():
        return None, f"No trained model is shipped as `{name}` yet, so this demo cannot edit faces."
    try:
        model = WEMGAN.from_pretrained(source)
    except Exception as error:  # shown to the visitor instead of a traceback
        message = str(error).replace(str(local.resolve()), name) if is_local else str(error)
        return None, f"The model `{name}` could not be loaded: {message}"
    if not model.is_trained:
        return None, f"The model `{name}` was never trained; its edits would be noise, so none are shown."
    info = model.provenance
    _, data = data_licence(str(info.get("dataset", "unknown data")))
    made = describe(model)
    return model, f"Model: `{name}`, {made}. {data}"


def describe(model: WEMGAN) -> str:
    """What makes the model's edits, in a visitor's words."""
    if model.editor is None:  # the paper's generator
        return f"the paper's generator, {model.provenance.get('steps', 'an unknown number of')} training steps"
    if model.renderer is None:
        return "edits by the landmark motion of real faces (no adversarially trained part)"
    trained = trained_for(model.provenance.get("renderer", {}))
    return (f"edits by the landmark motion of real faces; what an edit opens is drawn by the WEM-GAN renderer "
            f"(trained {trained})")  # fmt: skip


MODEL_CARD_ID = "model-card"  # the page's section with the card of a model folder


@dataclasses.dataclass(frozen=True)
class ModelCard:
    link: str  # the card's address: a Hub page, or the page's own section
    text: str | None  # the card (README.md) of a model folder, without its metadata; None for a Hub id


def model_card(source: str) -> ModelCard | None:
    """Where the card of the model `load_model(source)` read is: its folder's README.md, or its Hub page."""
    local = Path(source)
    if local.exists() or local.is_absolute() or source.startswith("."):
        readme = local / "README.md"
        if not readme.is_file():
            return None
        text = readme.read_text(encoding="utf-8")
        if text.startswith("---"):  # YAML metadata for the Hub, not for readers
            text = text.split("\n---", 1)[-1].lstrip("-").lstrip()
        return ModelCard(f"#{MODEL_CARD_ID}", text)
    return ModelCard(f"https://huggingface.co/{source}", None)


def licence_line(status: str, card: ModelCard | None = None) -> str:
    """One short line under the title: the model, the terms it may be used under, a link to its card.

    status: load_model's line, whose sentence about the training data gives the terms.
    """
    name = re.search(r"`([^`]+)`", status)
    lowered = status.lower()
    if "non-commercial" in lowered:
        terms = "**non-commercial research use only**"
    elif "no real person is depicted" in lowered:
        terms = "trained on synthetic faces only"
    else:
        terms = "check the licence of its training data before use"
    parts = [f"Model `{name.group(1)}`" if name else "Model", terms]
    if card is not None:
        parts.append(f"[model card]({card.link})")
    return " · ".join(parts)


# ------------------------------------------------------------------- errors
def readable(error: Exception, what: str = "the photo") -> str:
    """What a visitor should read for an input error in `what` (the library's messages name API arguments)."""
    if isinstance(error, FaceNotFoundError):
        return (
            f"No face was found in {what}. Use a photo where a face looks roughly at the camera "
            "and is not too small, or upload a crop of the face."
        )
    if isinstance(error, FileNotFoundError):  # gone since it was uploaded: a temp cleaner, a cache sweep
        return f"{_sentence(what)} {GONE}"
    if isinstance(error, FacesExtraMissingError):
        return "This server cannot search photos for faces (dlib is not installed); upload a crop of the face."
    if isinstance(error, ImageTooLargeError | Image.DecompressionBombError):
        megapixels = MAX_PIXELS // 1_000_000
        return f"{_sentence(what)} is too large: at most {megapixels} megapixels, please upload a smaller one."
    if isinstance(error, InvalidImageError | UnidentifiedImageError):
        return f"{_sentence(what)} is not an image file that can be read. Upload a JPEG, PNG or WebP photo."
    if isinstance(error, ImageTooSmallError):
        width, height = error.size
        return f"{_sentence(what)} is only {width}x{height} pixels; a face needs at least {MIN_SIDE}x{MIN_SIDE}."
    message = str(error)
    return _sentence(message) + ("" if message.endswith(".") else ".")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def visitor_error(message: str) -> gr.Error:
    """A gr.Error for a mistake a visitor can make: shown to them, logged in one line, no traceback."""
    log.warning("visitor error: %s", message)
    return gr.Error(message, print_exception=False)


def warn_instead(fn: Callable[..., Any], outputs: int = 1) -> Callable[..., Any]:
    """fn for an event whose outputs are controls (sliders, the live result): a visitor error becomes a
    warning toast and the outputs stay as they are, instead of an "Error" badge on each of them."""

    @functools.wraps(fn)
    def warned(*args: Any) -> Any:
        try:
            return fn(*args)
        except gr.Error as error:
            gr.Warning(error.message)
            return gr.skip() if outputs == 1 else [gr.skip()] * outputs

    return warned


@contextlib.contextmanager
def visitor_errors(what: str = "the photo") -> Iterator[None]:
    """Turn input errors about `what` into visitor errors (a message, never a traceback)."""
    try:
        yield
    except (ValueError, TypeError, OSError) as error:  # OSError: PIL on unreadable or truncated files
        raise visitor_error(readable(error, what)) from None


def require(image: Any, what: str) -> Any:
    if image is None:
        raise visitor_error(f"Upload {what} first.")
    return image


def Photo(label: str, **kwargs: Any) -> gr.Image:
    """An image input whose events hand the file on untouched (give them `preprocess=False`).

    gr.Image's own preprocessing opens every upload with PIL before our code runs and turns any
    failure there (an unreadable file, a copy that a temp cleaner removed) into an anonymous
    "Error". The app's events skip it (`preprocess=False`): `Demo` gets gradio's FileData and
    reads the file itself, which explains bad files, restores removed example copies, applies
    EXIF rotation, keeps the mode and guards against huge images.
    """
    return gr.Image(type="filepath", image_mode=None, format="png", label=label, **kwargs)


FACE_PARAMETER = (
    'which face: "1" (the largest), "2", ... as numbered on the photo (see the faces found), or "all" for every face'
)


def FaceChoice(**kwargs: Any) -> gr.Dropdown:
    """The face picker of a group photo; the API describes its value as "1", "2", ... or "all".

    Its choices change with each photo, so the API's type must not be the choices of the first
    one (gradio would write Literal['1']).
    """
    dropdown = gr.Dropdown(face_choices(1), value="1", allow_custom_value=True, **kwargs)
    dropdown.api_info = lambda: {"type": "string", "additional_description": FACE_PARAMETER}  # type: ignore[method-assign]
    return dropdown


def describe_api(blocks: gr.Blocks, endpoint: Any) -> None:
    """Show each parameter of a gr.api endpoint with its description from the function's "Args:".

    gradio derives only the types from the type hints: view_api would say `aus: dict(str, float)`
    and nothing of what a partial dict means.
    """
    described = docstring_args(endpoint.fn)
    names = list(inspect.signature(endpoint.fn).parameters)
    for block_id, name in zip(endpoint["inputs"], names, strict=True):
        component = blocks.blocks[block_id]
        info = {**component.api_info(), "additional_description": described.get(name, "")}
        component.api_info = lambda info=info: info  # type: ignore[method-assign]


def docstring_args(fn: Callable[..., Any]) -> dict[str, str]:
    """The parameters described under "Args:" in fn's docstring (a description may go on over indented lines)."""
    described: dict[str, str] = {}
    name = None
    lines = (inspect.getdoc(fn) or "").splitlines()
    for line in lines[lines.index("Args:") + 1 :] if "Args:" in lines else []:
        if match := re.match(r"    (\w+): (.*)", line):
            name = match[1]
            described[name] = match[2].strip()
        elif name and line.startswith("        "):
            described[name] += " " + line.strip()
        else:
            break
    return described


# ------------------------------------------------------------------- faces
def face_choice(face: Any, count: int | None = None) -> str | int:
    """A visitor's face choice ("all", or the number drawn on the photo, 1 = largest) as WEMGAN's `faces=`.

    count: how many faces the photo has, when known: a number beyond it is refused.
    """
    text = str(face).strip().lower() if face is not None else "1"
    if text in ("all", "all faces"):
        return "all"
    if not (text.isdigit() and int(text) >= 1):
        raise visitor_error(f"Face {face!r} does not exist: give 'all' or the number of a face shown on the photo.")
    if count is not None and int(text) > count:
        found = "1 face was" if count == 1 else f"{count} faces were"
        raise visitor_error(f"Face {text} does not exist: {found} found in the photo.")
    return int(text) - 1


def face_choices(count: int) -> list[tuple[str, str]]:
    """(label, value) pairs of a face picker for a photo with `count` faces."""
    if count <= 1:
        return [("The face", "1")]
    return [("Face 1 (largest)", "1"), *[(f"Face {n}", str(n)) for n in range(2, count + 1)], ("All faces", "all")]


def _picker(overview: Image.Image | None, choices: list[tuple[str, str]], note: str, failed: bool = False) -> tuple:
    """gradio updates of (overview picture, face dropdown, note); a failed photo's note is shown as an error."""
    return (
        gr.update(value=overview, visible=overview is not None),
        gr.update(choices=choices, value="1", visible=len(choices) > 1),
        gr.update(value=note, elem_classes=[ERROR_NOTE] if failed else []),
    )


def _failed(picker: tuple) -> bool:
    return ERROR_NOTE in picker[2].get("elem_classes", [])


def faces_overview(photo: PreparedPhoto, longest: int = OVERVIEW_SIDE) -> Image.Image:
    """The photo, shrunk, with each face's box and number (1 = largest) drawn on it."""
    image = shrink(Image.fromarray(uint8_image(photo.batch.pixels[0])), longest)
    scale = image.width / photo.size[0]
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(14, image.width // 25))
    for number, face in enumerate(photo.faces, start=1):
        box = [round(c * scale) for c in face.box]
        draw.rectangle(box, outline=(255, 210, 0), width=3)
        draw.text(
            (box[0] + 4, box[1] + 2), str(number), fill=(255, 210, 0), font=font, stroke_width=2, stroke_fill="black"
        )
    return image


# ----------------------------------------------------------------- caching
class PreparedPhotos:
    """The last few photos, searched for faces and read (WEMGAN.prepare), by file path.

    A slider move then costs a generator call and a paste-back, not a face search. Gradio
    names uploads by their content's hash, so a path stands for one image (a file rewritten
    in place is prepared again; one that gradio's cache sweep deleted is still served from
    here). Bounded by count and pixels: at most MAX_CACHED_PHOTOS photos, MAX_CACHED_PIXELS in all.
    A photo that cannot be used (no face, not an image) is remembered too, as its error: slider
    moves on it do not search it for faces again.
    """

    def __init__(self, model: WEMGAN, photos: int = MAX_CACHED_PHOTOS, pixels: int = MAX_CACHED_PIXELS) -> None:
        self.model, self.photos, self.pixels = model, photos, pixels
        self._cache: OrderedDict[str, tuple[tuple[int, int] | None, PreparedPhoto]] = OrderedDict()
        self._failed: OrderedDict[tuple[str, tuple[int, int]], Exception] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str | Path) -> PreparedPhoto:
        key, version = str(path), _version(path)
        with self._lock:
            if key in self._cache and version in (None, self._cache[key][0]):
                self._cache.move_to_end(key)
                return self._cache[key][1]
            failed = self._failed.get((key, version)) if version else None
        if failed is not None:
            raise failed
        if version is None:
            raise FileNotFoundError(f"{Path(path).name} {GONE}")
        try:
            prepared = self.model.prepare(Path(path))  # outside the lock: other sessions' photos need not wait
        except (ValueError, TypeError, OSError) as error:  # the input errors of `visitor_errors`
            with self._lock:
                self._failed[key, version] = error.with_traceback(None)
                while len(self._failed) > self.photos:
                    self._failed.popitem(last=False)
            raise
        with self._lock:
            self._cache[key] = (version, prepared)
            self._cache.move_to_end(key)
            while len(self._cache) > self.photos or (len(self._cache) > 1 and self._total_pixels() > self.pixels):
                self._cache.popitem(last=False)
        return prepared

    def _total_pixels(self) -> int:
        return sum(width * height for width, height in (photo.size for _, photo in self._cache.values()))


def _version(path: str | Path) -> tuple[int, int] | None:
    """(modification time, size) of a file, or None when it is gone."""
    try:
        stat = Path(path).stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


class RecentFiles:
    """A folder for result files the server hands out (GIF, MP4, API images); files older than max_age go.

    Gradio copies a returned file into its own cache, so ours are only needed for a moment;
    each new file sweeps out the old ones, and the folder is deleted when the server exits.
    """

    def __init__(self, prefix: str, max_age: float = RESULT_FILE_SECONDS) -> None:
        self.folder, self.max_age = _temporary_folder(prefix), max_age

    def new_folder(self) -> Path:
        """An empty folder of its own for one request: concurrent requests never share files."""
        cutoff = time.time() - self.max_age
        for old in self.folder.iterdir():
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.folder))


# --------------------------------------------------------------------- demo
class Demo:
    """Everything the app's events and API endpoints do, on one trained model.

    Face choices ("face") are what a visitor sees: "all", or the number drawn on the photo
    (1 = largest); see `face_choice`.
    """

    def __init__(self, model: WEMGAN, examples: dict[str, Path] | None = None) -> None:
        """examples: the example photos the page offers (`example_photos`); a removed copy is written again."""
        self.model = model
        self.examples = dict(examples or {})
        self.photos = PreparedPhotos(model)
        self.files = RecentFiles("wemgan-demo-")
        self.live_files = RecentFiles("wemgan-live-", max_age=LIVE_FILE_SECONDS)  # many, small, short-lived

    # ------------------------------------------------------------ the face picker
    def find_faces(self, photo: Any) -> tuple[Image.Image | None, list[tuple[str, str]], str]:
        """(overview with numbered boxes or None, face-picker choices, note) for a new photo; None clears."""
        if photo is None:
            return None, face_choices(1), ""
        prepared = self._prepared(photo, "the photo")
        count = len(prepared.faces)
        if not prepared.found_faces:
            note = "No face was found, so the whole image is taken to be a face crop."
            if prepared.size == (self.model.image_size, self.model.image_size):
                note = "The image is a face crop of the model's size: it is edited as a whole."
            return None, face_choices(1), note
        if count == 1:
            return None, face_choices(1), ""
        note = f"{count} faces found, numbered from the largest: pick one, or all of them."
        return faces_overview(prepared), face_choices(count), note

    def face_picker(self, photo: Any) -> tuple[Any, Any, Any]:
        """Updates of the face picker (overview picture, face dropdown, note) for a new photo.

        A photo that cannot be used (no face, not an image, ...) is said in the note, the one
        place the visitor looks after an upload: no toast, and no "Error" on every output.
        Everything that belonged to the previous photo is cleared either way.
        """
        try:
            overview, choices, note = self.find_faces(photo)
        except gr.Error as error:
            return _picker(None, face_choices(1), error.message, failed=True)
        return _picker(overview, choices, note)

    def open_for_edit(self, photo: Any) -> tuple[Any, ...]:
        """A new photo in the Edit tab: the face picker, the sliders at the largest face's AUs, no result.

        When the photo cannot be used the sliders keep their values (they stay usable), and
        the note under the photo says why.
        """
        picker = self.face_picker(photo)
        sliders = [gr.skip()] * len(AU_NAMES)
        if photo is not None and not _failed(picker):
            try:
                sliders = self.read_aus(photo)
            except gr.Error as error:
                picker = _picker(None, face_choices(1), error.message, failed=True)
        return (*picker, *sliders, None)

    def example_row(self, row: Sequence[Any]) -> list[Any]:
        """An example's values for the page: example names become their files' paths (written again if removed)."""
        restore_examples(self.examples)  # a stat per example when nothing is missing
        return [
            str(self.examples[value]) if isinstance(value, str) and value in self.examples else value for value in row
        ]

    # --------------------------------------------------------------------- transfer
    def transfer(self, photo: Any, reference: Any, strength: float, face: str = "1") -> tuple[Image.Image, Image.Image]:
        """The photo with the reference's expression, and a chart of the AUs of all three faces."""
        require(photo, "a photo to edit")
        require(reference, "a reference photo")
        strength = self._strength(strength)
        # Read each face on its own first, so that an error names the photo it is about.
        prepared, which = self._photo(photo, face, "the photo to edit")
        reference = self._prepared(reference, "the reference photo")
        with visitor_errors("the reference photo"):
            target = self.model.estimate_aus(reference, faces=0)
        with visitor_errors("the photo to edit"):
            source = self.model.estimate_aus(prepared, faces=_one(which))
            result = self.model.edit(prepared, aus=target, strength=strength, faces=which)  # = edit(reference=...)
            edited = self.model.estimate_aus(result, faces=_one(which))
        return displayable(result), au_chart({"source": source, "reference": target, "result": edited})

    # ------------------------------------------------------------------ AU sliders
    def read_aus(self, photo: Any, face: str = "1") -> list[float]:
        """The 17 AUs of the chosen face (all faces: the largest), in AU_NAMES order: the sliders' values."""
        require(photo, "a photo")
        prepared, which = self._photo(photo, face)
        with visitor_errors():
            aus = self.model.estimate_aus(prepared, faces=_one(which))
        return [round(aus[name], 2) for name in AU_NAMES]

    def edit_live(self, photo: Any, face: str, *values: float) -> str:
        """A JPEG of the photo with the chosen face's AUs set to `values` (17 numbers in AU_NAMES order).

        Runs on every slider move: the photo's faces come from the cache (`PreparedPhotos`),
        so only the generator and the paste-back run. The result goes out as a quality-95
        JPEG written here (5 ms for 1000 px) instead of gradio's PNG (250+ ms): the PNG would
        be most of each move's time.
        """
        require(photo, "a photo")
        if len(values) != len(AU_NAMES) or any(value is None for value in values):
            raise visitor_error(f"Give all {len(AU_NAMES)} AU values, got {sum(v is not None for v in values)}.")
        result = self._edit(photo, face, dict(zip(AU_NAMES, map(float, values), strict=True)))
        path = self.live_files.new_folder() / "edited.jpg"
        result.convert("RGB").save(path, quality=LIVE_JPEG_QUALITY)
        return str(path)

    # --------------------------------------------------------------------- the API
    def estimate_aus_api(self, photo: FileData, face: str = "1") -> dict[str, float]:
        """The 17 Action Unit intensities (0 to 1) of one face of the photo.

        Args:
            photo: the photo (a face crop or a photo with faces).
            face: which face: "1" (the largest), "2", ... as numbered on the photo.
        """
        path = _api_file(require(photo, "a photo"))
        if face_choice(face) == "all":
            raise visitor_error("estimate_aus reads one face: give its number (1 = the largest).")
        prepared, which = self._photo(path, face)
        with visitor_errors():
            aus = self.model.estimate_aus(prepared, faces=which)
        return {name: round(value, 4) for name, value in aus.items()}

    def edit_aus_api(self, photo: FileData, aus: dict[str, float], face: str = "1", strength: float = 1.0) -> FileData:
        """The photo with some of a face's Action Units set: those named in `aus`; the others keep the face's own.

        Args:
            photo: the photo to edit.
            aus: target intensities (0 to 1) of the AUs to set, e.g. {"AU06": 0.6, "AU12": 0.8};
                AUs not named keep the face's own value. Names: AU01, AU02, AU04, AU05, AU06, AU07,
                AU09, AU10, AU12, AU14, AU15, AU17, AU20, AU23, AU25, AU26, AU45 (as /estimate_aus gives).
            face: which face: "1" (the largest), "2", ... as numbered on the photo, or "all".
            strength: how far to go from the face's own expression to `aus`, 0 to 2 (1 = exactly).
        """
        path = _api_file(require(photo, "a photo"))
        prepared, which = self._photo(path, face)  # the photo first: a bad file is reported as a bad file
        strength, aus = self._strength(strength), check_aus(aus)
        with visitor_errors():
            result = displayable(self.model.edit(prepared, aus=aus, faces=which, strength=strength))
        output = self.files.new_folder() / "edited.png"
        result.save(output)
        return FileData(path=str(output))

    # ------------------------------------------------------------------- interpolate
    def interpolate(
        self,
        photo: Any,
        start: str,
        start_reference: Any = None,
        end: str = "Happy",
        end_reference: Any = None,
        steps: float = 8,
        face: str = "1",
    ) -> tuple[str, str | None, Image.Image, str]:
        """(GIF path, MP4 path or None, frame strip, note): the face moving from `start` to `end`.

        start, end: OWN_EXPRESSION, an expression preset, or REFERENCE_PHOTO (then the
        reference photo next to it is required; a reference given with anything else is an error).
        """
        require(photo, "a photo")
        first = _endpoint("start", start, self._reference(start_reference, "start"))
        last = _endpoint("end", end, self._reference(end_reference, "end"))
        if not isinstance(steps, int | float) or steps != int(steps) or not 2 <= steps <= MAX_APP_FRAMES:
            raise visitor_error(f"Frames must be a whole number from 2 to {MAX_APP_FRAMES}, got {steps!r}.")
        prepared, which = self._photo(photo, face)
        folder = self.files.new_folder()
        frames, strip = [], []  # frames kept small as they come: memory stays flat for large photos
        with visitor_errors():
            for frame in self.model.interpolation_frames(prepared, first, last, steps=int(steps), faces=which):
                frame = displayable(frame)
                frames.append(shrink(frame, MAX_ANIMATION_SIDE))
                strip.append(shrink(frame, STRIP_HEIGHT * 4))
        gif = write_gif(frames, folder / "interpolation.gif")
        mp4 = write_mp4(frames, folder / "interpolation.mp4")
        note = f"{len(frames)} frames." if mp4 else f"{len(frames)} frames. No MP4: install PyAV (`pip install av`)."
        return str(gif), str(mp4) if mp4 else None, frame_strip(strip), note

    # ------------------------------------------------------------------- helpers
    def _file(self, photo: Any, what: str = "the photo", must_exist: bool = False) -> Path:
        """The server path of a photo as the events and the API hand it over (a path, or gradio's FileData).

        A removed copy of an example photo is written again. must_exist: a removed upload is
        refused (without it, PreparedPhotos may still hold the photo, read before it went).
        """
        path = _api_file(photo)
        if not path.exists() and path.resolve() in {example.resolve() for example in self.examples.values()}:
            log.warning("example copies were removed from the server; writing them again")
            restore_examples(self.examples)
        if must_exist and not path.exists():
            raise visitor_error(f"{_sentence(what)} {GONE}")
        return path

    def _reference(self, photo: Any, side: str) -> Path | None:
        return None if photo is None else self._file(photo, f"the reference photo for the {side}", must_exist=True)

    def _prepared(self, photo: Any, what: str = "the photo") -> PreparedPhoto:
        path = self._file(photo, what)
        with visitor_errors(what):
            return self.photos.get(path)

    def _photo(self, photo: Any, face: Any, what: str = "the photo") -> tuple[PreparedPhoto, str | int]:
        """The photo, prepared, and the visitor's face choice checked against the faces found in it."""
        face_choice(face)  # a malformed choice is refused before any work
        prepared = self._prepared(photo, what)
        return prepared, face_choice(face, len(prepared.faces))

    def _strength(self, strength: Any) -> float:
        with visitor_errors():
            return check_strength(strength)

    def _edit(self, photo: Any, face: Any, aus: dict[str, float], strength: Any = 1.0) -> Image.Image:
        strength = self._strength(strength)
        prepared, which = self._photo(photo, face)
        with visitor_errors():
            return displayable(self.model.edit(prepared, aus=aus, faces=which, strength=strength))


def check_aus(aus: Any) -> dict[str, float]:
    """An API request's `aus`: some of the 17 AUs by name, each 0 to 1 (the library's partial dict).

    Unknown names are refused with the list of valid ones; AUs not named keep the face's own value.
    """
    if not isinstance(aus, dict):
        raise visitor_error(f'aus must map AU names to values, e.g. {{"AU12": 0.8}}; got {type(aus).__name__}.')
    unknown = [name for name in aus if not _is_au_name(name)]
    if unknown:
        raise visitor_error(
            f"Unknown AU name{'s' if len(unknown) > 1 else ''} in aus: {', '.join(map(repr, unknown))}. "
            f"The {len(AU_NAMES)} valid names are {', '.join(AU_NAMES)}."
        )
    checked = {}
    for name, value in aus.items():
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None or not 0 <= number <= 1:  # also NaN
            raise visitor_error(f"aus[{name!r}] must be a number from 0 to 1, got {value!r}.")
        checked[canonical_au_name(name)] = float(number)
    return checked


def _is_au_name(name: Any) -> bool:
    try:
        canonical_au_name(name)
    except ValueError:
        return False
    return True


def _one(which: str | int) -> int:
    """The face whose AUs stand for a choice: the face itself, or for "all" the largest."""
    return 0 if which == "all" else int(which)


def _api_file(photo: Any) -> Path:
    """The server path of a file an API client uploaded (gradio hands it over as FileData or its dict)."""
    path = photo.get("path") if isinstance(photo, dict) else getattr(photo, "path", photo)
    if not isinstance(path, str | os.PathLike):
        raise visitor_error("photo must be an uploaded file (gradio_client.handle_file(...)).")
    return Path(path)


def _temporary_folder(prefix: str) -> Path:
    """A folder deleted when the server exits (gradio serves copies from its own cache)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _endpoint(side: str, choice: str, reference: Any) -> Any:
    """An interpolation end as WEMGAN.interpolate takes it: None (own expression), a preset name or an image."""
    if choice == REFERENCE_PHOTO:
        return Path(require(reference, f"the reference photo for the {side}"))  # a Path is an image to the model
    if reference is not None:
        raise visitor_error(
            f"A reference photo was given for the {side}, but '{choice}' was chosen: "
            f"choose '{REFERENCE_PHOTO}' to use the photo, or remove it."
        )
    if choice == OWN_EXPRESSION:
        return None
    if choice not in EXPRESSIONS:
        raise visitor_error(f"Unknown expression {choice!r}; choose one of {', '.join(EXPRESSIONS)}.")
    return choice


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
    """A looping GIF that plays forth and back, so the change of expression reads both ways.

    All frames share one adaptive palette, made from all of them, and are dithered onto it:
    a palette per frame without dithering (PIL's default) turns smooth skin into flat patches
    of the nearest colours, and the palette changing between frames makes them flicker.
    """
    rgb = [frame.convert("RGB") for frame in frames]
    palette = shared_palette(rgb)
    indexed = [frame.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG) for frame in rgb]
    loop = [*indexed, *indexed[-2:0:-1]]
    loop[0].save(path, save_all=True, append_images=loop[1:], duration=round(seconds * 1000), loop=0, optimize=False)
    return path


def shared_palette(frames: Sequence[Image.Image], colors: int = 256, step: int = 2) -> Image.Image:
    """One palette (a "P" image) for all `frames`: octree quantisation of all of them, at 1/step size.

    Measured on 8-frame animations of four portraits (dithered, 7x7 mean of the error on skin,
    99th percentile): octree 1.3-4.7 grey levels, median cut 6.5-17 (it gives skin too few
    shades), PIL's default per-frame palette 7.6-10.5; octree is also the fastest (~30 ms a frame).
    """
    width, height = max(1, frames[0].width // step), max(1, frames[0].height // step)
    sample = Image.new("RGB", (width, height * len(frames)))
    for index, frame in enumerate(frames):
        sample.paste(frame.resize((width, height), Image.BILINEAR), (0, index * height))
    return sample.quantize(colors, method=Image.Quantize.FASTOCTREE)


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
def example_photos(folder: Path | None = None) -> dict[str, Path]:
    """The demo's examples by name: real public-domain portraits first, then SynthFACS faces.

    "astronaut" (smiling), "grace_hopper" (calm) and "two_portraits" (both, side by side)
    ship with the package (data/photos, licences in its NOTICE.md); the SynthFACS faces of
    `example_faces` are rendered and are offered labelled as synthetic.
    folder: where all of them are written (the app: inside gradio's folder, so that gradio
    serves them as they are and `restore_examples` can write a removed one again); without
    it the portraits are the package's files and the faces go to a temporary folder.
    """
    photos = {path.stem: path for path in sorted(PHOTOS.glob("*.jpg"))}
    if folder is None:
        return photos | example_faces()
    folder = Path(folder).resolve()
    paths = {name: folder / path.name for name, path in photos.items()}
    paths |= {name: folder / f"{name}.png" for name in EXAMPLE_FACES}
    restore_examples(paths)
    return paths


EXAMPLE_FACES = {f"face-{seed}": (seed, "Neutral") for seed in EXAMPLE_IDENTITIES} | {
    "happy-201": (201, "Happy"),
    "surprise-211": (211, "Surprise"),
    "anger-212": (212, "Anger"),
}  # name: (SynthFACS identity, expression)


def example_faces(folder: Path | None = None) -> dict[str, Path]:
    """SynthFACS faces rendered now (nothing downloaded, free to redistribute), by name.

    "face-N": identity N with a neutral face; "<expression>-N": identity N with a preset.
    """
    folder = Path(folder) if folder else _temporary_folder("wemgan-examples-")
    paths = {name: folder / f"{name}.png" for name in EXAMPLE_FACES}
    for path in paths.values():
        path.unlink(missing_ok=True)
    restore_examples(paths)
    return paths


def restore_examples(paths: dict[str, Path]) -> list[str]:
    """Write each example file of `paths` (as `example_photos` names them) that is missing; the names written.

    A temp cleaner, or another gradio server sharing the folder, may remove the copies under
    a running server; each is written to a temporary name and renamed, so no request sees half a file.
    """
    written = []
    for name, path in paths.items():
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        if name in EXAMPLE_FACES:
            synthetic.render(*EXAMPLE_FACES[name], size=256).save(partial, format="PNG")
        else:
            shutil.copyfile(PHOTOS / path.name, partial)
        os.replace(partial, path)
        written.append(name)
    return written


# ------------------------------------------------------------------ the server's files
class ExampleFileRestorer:
    """ASGI middleware of the app's server: a request for an example's file writes it again first if it
    was removed.

    A temp cleaner may empty the server's folder under it. A page loaded after that asks for every
    example's thumbnail at once, before any event of its own can run; without this those requests
    find nothing, and the page shows broken images. A request for any other file costs nothing more.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        # Made when the server starts, after build_demo made this process's folder and wrote the examples there.
        folder = private_gradio_folder() / EXAMPLE_FOLDER
        self.folder, self.examples = str(folder), example_photos(folder)

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "http" and "/file=" in scope["path"] and self.folder in scope["path"]:
            await run_in_threadpool(restore_examples, self.examples)  # a stat per example when none is missing
        await self.app(scope, receive, send)


_GRADIO_FOLDER: list[Path] = []  # this process's own folder for gradio, once made
EXAMPLE_FOLDER = "examples"  # the app's copies of its examples, inside that folder (gradio serves them)


def private_gradio_folder() -> Path:
    """A folder of this server's own for gradio's uploads, results and example copies.

    Gradio's default, <tmp>/gradio, is shared by every gradio server of the machine: one that
    stops deletes its files there, which include the example copies the others serve, and
    temp cleaners empty it. Call before the first component is made (gradio reads
    GRADIO_TEMP_DIR then); one folder per process, inside GRADIO_TEMP_DIR when the operator
    set one, deleted when the process ends.
    """
    if not _GRADIO_FOLDER or os.environ.get("GRADIO_TEMP_DIR") != str(_GRADIO_FOLDER[-1]):
        parent = os.environ.get("GRADIO_TEMP_DIR")
        if parent:
            Path(parent).mkdir(parents=True, exist_ok=True)
        _GRADIO_FOLDER.append(Path(tempfile.mkdtemp(prefix="wemgan-gradio-", dir=parent)).resolve())
        os.environ["GRADIO_TEMP_DIR"] = str(_GRADIO_FOLDER[-1])
        atexit.register(shutil.rmtree, _GRADIO_FOLDER[-1], ignore_errors=True)
    return _GRADIO_FOLDER[-1]
