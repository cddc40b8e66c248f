"""WEMGAN: the Hub-loadable inference model (an editing network + the built-in AU estimator).

    model = WEMGAN.from_pretrained("hub/default")
    model.estimate_aus(img)                          -> {"AU01": 0.1, ...}
    model.edit(img, reference=ref)                   expression transfer
    model.edit(img, aus={"AU12": 0.8})               set some AUs, keep the rest
    model.edit(img, delta={"AU45": 1.0})             relative change
    model.interpolate(img, "Neutral", "Happy", 8)    list of frames

Inputs are PIL images, image files, numpy arrays or torch tensors, single or batched (see
images.py); results come back in the same form, size and mode. A photo is searched for faces,
each face is aligned onto the crop the networks were trained on, and only the change the
model makes is pasted back (faces.py); a crop of the model's size is edited directly.
Two kinds of model (wemgan.config): the paper's Generator, or the LandmarkEditor with an optional
Renderer that draws what its motion reveals. No training code lives here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from torch import Tensor, nn

from . import faces as facelib
from . import images as imgs
from .au_estimator import AUEstimator
from .aus import NUM_AUS, au_dict, au_vector
from .config import ModelConfig
from .editor import JAW, LandmarkEditor
from .flow import warp
from .generator import Generator
from .legacy import is_legacy, legacy_model, without_jaw_reading
from .render_masks import edit_mask
from .renderer import PartRenderer, Renderer

PAPER_URL = "https://arxiv.org/abs/2412.02530"
REPO_URL = "https://github.com/wemgan/wemgan"
WEIGHTS_NAME = "model.safetensors"

AUSpec = dict[str, float] | list[float] | np.ndarray | str
GENERATION_CHUNK = 16  # images per generator call: bounds peak memory on large batches
MAX_STRENGTH = 2.0  # edit(strength=...) range [0, MAX_STRENGTH]; above 1 exaggerates the change
MAX_FRAMES = 256  # interpolate(steps=...) range [2, MAX_FRAMES]; 256 frames at 0.15 s are 38 s of video


class WEMGAN(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="wemgan",
    repo_url=REPO_URL,
    paper_url=PAPER_URL,
    license="apache-2.0",
    pipeline_tag="image-to-image",
    tags=["facial-expression-editing", "action-units", "wem-gan"],
):
    """Facial expression editing by relative Action Units (WEM-GAN, Sun et al. 2024).

    The constructor is the configuration (saved as config.json, the parts the model has; each
    part's fields and rules: wemgan.config). WEMGAN() is the paper's.

    Args:
        image_size: side of the square face crop the networks work on (paper: 128).
        generator: the paper's Generator (config.GeneratorConfig fields); the default model's.
        editor: the LandmarkEditor (config.EditorConfig fields), instead of a generator.
        renderer: with the editor, the Renderer that draws what its motion reveals
            (config.RendererConfig fields).
        estimator: the built-in AU estimator (config.EstimatorConfig fields).
        provenance: how the weights were made, written by the exporter (data, steps,
            command); empty for a model that was never trained.
        face_template: where the 5 face landmarks sit in a training crop (fractions of the
            crop side, dlib's 5-point order); photos are aligned onto it. The default was
            derived from faces-au (`python -m wemgan.faces_cli derive-template DATA_DIR`); a
            model trained on crops framed differently passes its own, which config.json keeps.

    Photos: `edit`, `interpolate` and `estimate_aus` take `align` (None = auto: an image of
    exactly image_size x image_size is a crop, anything else is searched for faces; True =
    always search; False = the centred square is the face, see faces.locate), `faces`
    ("largest" or "all" faces of a photo) and `detector` ("auto": MediaPipe's BlazeFace when installed,
    else dlib's HOG; or "hog", "mediapipe", the slower "cnn").
    """

    def __init__(
        self,
        image_size: int = 128,
        generator: dict[str, Any] | None = None,
        editor: dict[str, Any] | None = None,
        renderer: dict[str, Any] | None = None,
        estimator: dict[str, Any] | None = None,
        provenance: dict[str, Any] | None = None,
        face_template: Sequence[Sequence[float]] = facelib.DEFAULT_TEMPLATE,
    ) -> None:
        super().__init__()
        if generator is None and editor is None:
            generator = {}  # the paper's model
        self.model_config = config = ModelConfig.from_dict(
            dict(
                image_size=image_size, generator=generator, editor=editor, renderer=renderer, estimator=estimator or {}
            )
        )
        self.image_size = image_size
        self.provenance = dict(provenance or {})
        self.face_template = facelib.check_template(face_template)
        self.generator = self.editor = self.renderer = None
        if config.generator is not None:
            self.generator = Generator(NUM_AUS, **asdict(config.generator), image_size=image_size)
        if config.editor is not None:
            self.editor = LandmarkEditor(**asdict(config.editor), image_size=image_size)
        if config.renderer is not None:
            renderer_class = PartRenderer if config.renderer.window else Renderer
            self.renderer = renderer_class(config.renderer, NUM_AUS, image_size)
        est = config.estimator
        self.au_estimator = AUEstimator(NUM_AUS, est.channels, est.max_channels, est.calibration_knots)
        # config.json: the parts this model has, not every constructor argument's default.
        self._hub_mixin_config = {
            **config.to_dict(),
            "provenance": self.provenance,
            "face_template": [list(point) for point in self.face_template],
        }
        self.eval()

    @property
    def is_trained(self) -> bool:
        """False for a randomly initialised model: its edits mean nothing."""
        return bool(self.provenance)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    # ------------------------------------------------------------------ loading
    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ) -> WEMGAN:
        """Strict safetensors-only loading: a missing, unexpected or misshapen tensor is an error."""
        if os.path.isdir(model_id):
            weights = os.path.join(model_id, WEIGHTS_NAME)
            if not os.path.isfile(weights):
                raise FileNotFoundError(
                    f"{model_id} has no {WEIGHTS_NAME}; a wemgan model folder holds "
                    "config.json and model.safetensors (see hub/export.py)"
                )
        else:
            weights = hf_hub_download(
                repo_id=model_id,
                filename=WEIGHTS_NAME,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                token=token,
                local_files_only=local_files_only,
            )
        state = safetensors.torch.load_file(weights)
        # A config.json of before 2026-12-06 has fields the constructor no longer takes (the mixin
        # passes only the ones it takes): read it whole and convert it.
        raw = json.loads(Path(weights).with_name("config.json").read_text(encoding="utf-8"))
        if is_legacy(raw):
            model_kwargs, state = legacy_model(raw, state)
        state = without_jaw_reading(model_kwargs, state)
        model = cls(**model_kwargs)
        try:
            model.load_state_dict(state, strict=strict)
        except RuntimeError as error:
            raise ValueError(f"{weights} does not match the configuration in config.json: {error}") from None
        return model.to(map_location).eval()

    # ---------------------------------------------------------------- inference
    @torch.inference_mode()
    def prepare(self, image: Any, *, align: bool | None = None, detector: facelib.Detector = "auto") -> PreparedPhoto:
        """Search one image for faces and read their AUs once, for many fast edits of it.

        Pass the result to `edit`, `interpolate` or `estimate_aus` instead of the image: they
        then skip detection, alignment and AU reading and only run the generator and the
        paste-back (an app's live sliders). `faces=` still chooses among the faces found.
        """
        batch = imgs.load_images(image)
        if batch.batched:
            raise ValueError("prepare takes one image; call it once per image")
        reading = self._read(batch, align, "all", detector)
        unedited, unedited_flow = self._generate(reading.crops, torch.zeros_like(reading.aus), reading.aus)
        return PreparedPhoto(batch, reading.located[0], reading.crops, reading.aus, unedited, unedited_flow)

    @torch.inference_mode()
    def estimate_aus(
        self,
        images: Any,
        *,
        align: bool | None = None,
        faces: facelib.Which = "largest",
        detector: facelib.Detector = "auto",
    ) -> dict[str, float] | list[Any]:
        """The 17 AU intensities in [0, 1] of each face.

        One dict per image (faces="largest" or a face index), or a list of dicts, largest face
        first, per image (faces="all"); a batch gives a list of those.
        """
        reading = self._read(images, align, faces, detector)
        dicts = iter([au_dict(row) for row in reading.aus.cpu().numpy()])
        per_image = [[next(dicts) for _ in image_faces] for image_faces in reading.located]
        results = [found if faces == "all" else found[0] for found in per_image]
        return results if reading.batch.batched else results[0]

    @torch.inference_mode()
    def edit(
        self,
        images: Any,
        *,
        reference: Any = None,
        aus: AUSpec | None = None,
        delta: AUSpec | None = None,
        strength: float = 1.0,
        preserve_detail: bool = True,
        align: bool | None = None,
        faces: facelib.Which = "largest",
        detector: facelib.Detector = "auto",
    ) -> Any:
        """Change the expression of each face; give exactly one of reference, aus or delta.

        images: an image, a batch, or a PreparedPhoto (see `prepare`).
        reference: an image (or a batch, one per input) whose expression is transferred; its
            largest face is found with align=None whatever `align` says (pass its AUs from
            estimate_aus(..., align=False) as aus= to use its centred square instead).
        aus: target intensities in [0, 1] as {"AU12": 0.8, ...} (AUs not named keep the
            face's own value), 17 values, or a preset name such as "Happy".
        delta: relative change in [-1, 1] as {"AU45": 1.0, ...} or 17 values.
        strength: multiplies the relative change u_rel, in [0, MAX_STRENGTH] (0 = no change,
            1 = as asked, above 1 exaggerates).
        preserve_detail: add G(x, u_rel) - G(x, 0) to the input instead of G(x, u_rel) - x:
            pixels the edit leaves alone keep their full original detail, and no change
            returns the input exactly.
        align, faces, detector: how faces are found in photos (see the class docstring).

        Raises faces.FaceNotFoundError (a ValueError) for a photo without a usable face and
        faces.FacesExtraMissingError (an ImportError and ValueError) for a photo when dlib is not
        installed.
        """
        given = [
            name for name, value in (("reference", reference), ("aus", aus), ("delta", delta)) if value is not None
        ]
        if len(given) != 1:
            raise ValueError(f"give exactly one of reference=, aus= or delta=; got {given or 'none'}")
        strength = check_strength(strength)
        reading = self._read(images, align, faces, detector)
        if reference is not None:
            relative = self._reference_aus(reference, reading.located, detector) - reading.aus
        elif aus is not None:
            relative = torch.stack([self._target(aus, row) - row for row in reading.aus])
        else:
            relative = self._as_tensor(au_vector(delta, low=-1, high=1, what="delta")).expand(len(reading.crops), -1)
        return self._render(reading, [strength * relative], preserve_detail)[0]

    @torch.inference_mode()
    def interpolate(
        self,
        image: Any,
        start: AUSpec | Any | None,
        end: AUSpec | Any,
        steps: int = 8,
        preserve_detail: bool = True,
        *,
        align: bool | None = None,
        faces: facelib.Which = "largest",
        detector: facelib.Detector = "auto",
    ) -> list[Any]:
        """Frames that move one image's face(s) from expression `start` to `end` in equal AU steps.

        image: one image or a PreparedPhoto.
        start, end: AU dicts (partial dicts keep the face's own other AUs), 17 values,
        preset names ("Happy"), or reference images (a plain string is a preset name; give
        a file as pathlib.Path); start=None is each face's own expression.
        steps: 2 to MAX_FRAMES frames.
        Returns `steps` images (first = start, last = end) in the input's type; for many
        frames of a large photo, iterate `interpolation_frames` instead (one frame at a time).
        """
        return list(
            self.interpolation_frames(
                image, start, end, steps, preserve_detail, align=align, faces=faces, detector=detector
            )
        )

    def interpolation_frames(
        self,
        image: Any,
        start: AUSpec | Any | None,
        end: AUSpec | Any,
        steps: int = 8,
        preserve_detail: bool = True,
        *,
        align: bool | None = None,
        faces: facelib.Which = "largest",
        detector: facelib.Detector = "auto",
    ) -> Iterator[Any]:
        """The frames of `interpolate`, made and yielded a few at a time: memory stays flat in `steps`.

        The arguments are checked, and the faces found, before the first frame is asked for.
        """
        if not isinstance(steps, int | np.integer) or isinstance(steps, bool) or not 2 <= steps <= MAX_FRAMES:
            raise ValueError(f"steps must be an integer from 2 to {MAX_FRAMES}, got {steps!r}")
        with torch.inference_mode():
            reading = self._read(image, align, faces, detector)
            if reading.batch.batched:
                raise ValueError("interpolate takes one image; call it once per image")
            first = reading.aus if start is None else self._endpoint(start, reading, detector)
            last = self._endpoint(end, reading, detector)
        return self._frames(reading, first, last, int(steps), preserve_detail)

    def _frames(
        self, reading: Reading, first: Tensor, last: Tensor, steps: int, preserve_detail: bool
    ) -> Iterator[Any]:
        weights = torch.linspace(0, 1, steps, device=self.device).tolist()
        per_call = max(1, GENERATION_CHUNK // len(reading.crops))  # frames per generator call
        for index in range(0, steps, per_call):
            with torch.inference_mode():
                relatives = [(1 - w) * first + w * last - reading.aus for w in weights[index : index + per_call]]
                frames = self._render(reading, relatives, preserve_detail)
            yield from frames

    @torch.inference_mode()
    def edit_crops(self, crops: Tensor, relative: Tensor, source: Tensor | None = None) -> Tensor:
        """The model's edit of aligned crops (N x 3 x S x S in [-1, 1]) by relative AUs (N x 17), as
        the networks make it (no detection, no paste-back): what the paper's protocol scores.
        source: the faces' own AUs (N x 17; the Renderer draws source + relative); default: read
        by the built-in estimator."""
        crops, relative = crops.to(self.device), relative.to(self.device)
        source = self._estimate(crops) if source is None else source.to(self.device)
        return self._generate(crops, relative, source)[0]

    # ----------------------------------------------------------------- helpers
    def _as_tensor(self, values: np.ndarray) -> Tensor:
        return torch.as_tensor(values, dtype=torch.float32, device=self.device)

    def _read(self, images: Any, align: bool | None, which: facelib.Which, detector: facelib.Detector) -> Reading:
        """The faces `which` names in each image, their crops and AUs (a PreparedPhoto is only selected from)."""
        if isinstance(images, PreparedPhoto):
            chosen = facelib.face_indices(len(images.faces), which)
            faces, index = [images.faces[i] for i in chosen], torch.tensor(chosen, device=self.device)
            flow = None if images.unedited_flow is None else images.unedited_flow[index]
            return Reading(images.batch, [faces], images.crops[index], images.aus[index], images.unedited[index], flow)
        batch = images if isinstance(images, imgs.ImageBatch) else imgs.load_images(images)
        located = [
            facelib.locate(pixels, self.image_size, self.face_template, align, which, detector)
            for pixels in batch.pixels
        ]
        crops = [
            facelib.crop(pixels, face) for pixels, found in zip(batch.pixels, located, strict=True) for face in found
        ]
        crops = (torch.cat(crops).clamp(0, 1) * 2 - 1).to(self.device)  # N x 3 x S x S in [-1, 1]
        return Reading(batch, located, crops, self._estimate(crops))

    def _estimate(self, crops: Tensor) -> Tensor:
        aus = self.au_estimator(crops.to(self.dtype)).float()
        if self.editor is not None:  # its AU26 is a jaw drop, which the estimator's labels do not read
            aus[:, JAW] = self.editor.read_jaw_drop(crops.to(self.dtype), aus).float()
        return aus

    def _target(self, spec: AUSpec, source: Tensor) -> Tensor:
        return self._as_tensor(au_vector(spec, base=source.cpu().numpy(), what="aus"))

    def _endpoint(self, spec: Any, reading: Reading, detector: facelib.Detector) -> Tensor:
        """Per-face target AUs (N x 17) of an interpolation end: a reference image or an AU spec."""
        if imgs.is_image(spec):  # arrays of 2+ dims, PIL images and files; 17 numbers are AUs
            return self._reference_aus(spec, reading.located, detector)
        return torch.stack([self._target(spec, row) for row in reading.aus])

    def _reference_aus(self, reference: Any, located: list[list[facelib.Face]], detector: facelib.Detector) -> Tensor:
        """The AUs of the reference's largest face, one row per face in `located`."""
        ref = self._read(reference, None, "largest", detector)
        if len(ref.batch) not in (1, len(located)):
            raise ValueError(
                f"got {len(ref.batch)} reference images for {len(located)} inputs; give one, or one per input"
            )
        per_image = ref.aus.expand(len(located), -1)
        counts = torch.tensor([len(found) for found in located], device=self.device)
        return per_image.repeat_interleave(counts, dim=0)

    def _generate(self, crops: Tensor, relative: Tensor, source: Tensor) -> tuple[Tensor, Tensor | None]:
        """The edited crops (N x 3 x S x S) for the relative AUs (N x 17) of faces whose own AUs are
        `source` (N x 17), and the landmark editor's flow (N x 2 x s x s; None for the paper's model)."""
        images, flows = [], []
        for x, u, own in zip(*(t.split(GENERATION_CHUNK) for t in (crops, relative, source)), strict=True):
            x, u = x.to(self.dtype), u.to(self.dtype)
            if self.editor is None:
                images.append(self.generator(x, u).float())
                continue
            edit = self.editor(x, u)
            edited = edit.image
            if self.renderer is not None:  # it draws what the motion reveals, where the motion changes the face
                # the edit mask's options are the renderer's, as in its training
                mask = edit_mask(edit.landmarks, edit.moves, self.image_size, self.model_config.renderer)
                target = (own.float() + u.float()).clamp(0, 1).to(self.dtype)
                edited = self.renderer(edited, mask.to(self.dtype), edit.landmarks + edit.moves, target)
            images.append(edited.float())
            flows.append(edit.flow.float())
        return torch.cat(images), torch.cat(flows) if flows else None

    def _render(self, reading: Reading, relatives: list[Tensor], preserve_detail: bool) -> list[Any]:
        """One output (same form as the input) per relative-AU tensor (N x 17 or 1 x 17) in `relatives`.

        All conditions (and G(x, 0) for preserve_detail, unless the reading holds it) go
        through the generator as one batch: interpolation frames cost one batched call.
        The landmark editor's motion is applied to the photo itself at its full resolution (its
        flow taken through the alignment), and only the colour the generator adds on top
        is pasted as a change: hairs, pores and brows stay sharp and move, instead of a
        blurred 128-px copy of a moved brow being added beside the sharp original.
        """
        crops, n = reading.crops, len(reading.crops)
        conditions = [relative.expand(n, -1) for relative in relatives]
        add_unedited = preserve_detail and reading.unedited is None
        if add_unedited:
            conditions.append(torch.zeros_like(conditions[0]))
        outputs, flows = self._generate(
            crops.repeat(len(conditions), 1, 1, 1), torch.cat(conditions), reading.aus.repeat(len(conditions), 1)
        )
        outputs = list(outputs.split(n))
        flows = list(flows.split(n)) if flows is not None and preserve_detail else [None] * len(outputs)
        if add_unedited:
            base, base_flow = outputs.pop(), flows.pop()
            conditions.pop()
        else:
            base = reading.unedited if preserve_detail else crops
            base_flow = reading.unedited_flow if preserve_detail else None
        results = []
        for relative, edited, flow in zip(conditions, outputs, flows, strict=True):
            motion, reference = None, base
            if flow is not None and base_flow is not None:
                motion = flow - base_flow  # what the edit moves beyond G(x, 0)'s own motion
                reference = warp(base, motion)  # G(x, 0) moved so: the change left is colour only
            change = (edited - reference) / 2  # [-1, 1] units -> [0, 1] units
            if preserve_detail:
                # G(x, 0) - G(x, 0) is exactly zero; do not let batch-dependent rounding say otherwise.
                unchanged = relative.abs().amax(1) == 0
                change[unchanged] = 0
                if motion is not None:
                    motion[unchanged] = 0
            pasted = self._paste(reading.batch, reading.located, change.cpu(), None if motion is None else motion.cpu())
            results.append(imgs.to_output(reading.batch, pasted))
        return results

    @staticmethod
    def _paste(
        batch: imgs.ImageBatch, located: list[list[facelib.Face]], change: Tensor, motion: Tensor | None
    ) -> list[Tensor]:
        """Each image with its faces' crop-space changes (and motions, if any) pasted back, in `located` order."""
        changes, motions = iter(change), iter(motion if motion is not None else [None] * len(change))
        pasted = []
        for pixels, found in zip(batch.pixels, located, strict=True):
            for face in found:
                face_change, face_motion = next(changes), next(motions)
                moves = face_motion is not None and bool(face_motion.any())
                if moves or face_change.any():  # an unchanged face leaves its photo bit-exact, and costs nothing
                    pixels = facelib.paste_back(pixels, face, face_change, face_motion if moves else None)
            pasted.append(pixels)
        return pasted


@dataclass(frozen=True)
class Reading:
    """The faces of a batch of images, as the networks see them."""

    batch: imgs.ImageBatch
    located: list[list[facelib.Face]]  # per image, the faces to edit
    crops: Tensor  # N x 3 x S x S in [-1, 1], N = all faces of all images
    aus: Tensor  # N x 17: what the AU estimator reads on each crop
    unedited: Tensor | None = None  # N x 3 x S x S: G(x, 0), when known
    unedited_flow: Tensor | None = None  # N x 2 x s x s: G(x, 0)'s flow, when known and G warps


@dataclass(frozen=True, eq=False)
class PreparedPhoto:
    """One image searched for faces and read once (made by `WEMGAN.prepare`).

    Holds the decoded photo, every face found (largest first), their crops, AUs and G(x, 0),
    so that each further edit only runs the generator and the paste-back.
    """

    batch: imgs.ImageBatch
    faces: list[facelib.Face]  # largest first; the centred square when the image was taken as a crop
    crops: Tensor
    aus: Tensor
    unedited: Tensor
    unedited_flow: Tensor | None = None  # a warp generator's flow for G(x, 0)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the photo."""
        height, width = self.batch.pixels[0].shape[-2:]
        return width, height

    @property
    def found_faces(self) -> bool:
        """False when no face was detected and the whole image was taken to be a face crop."""
        return any(face.landmarks is not None for face in self.faces)


def check_strength(strength: Any) -> float:
    """`strength` as a float, or a ValueError that gives the allowed range."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or not 0 <= value <= MAX_STRENGTH:
        raise ValueError(f"strength must be a number from 0 to {MAX_STRENGTH:g}, got {strength!r}")
    return value
