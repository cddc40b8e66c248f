"""WEMGAN: the Hub-loadable inference model (generator + built-in AU estimator).

    model = WEMGAN.from_pretrained("hub/default")
    model.estimate_aus(img)                          -> {"AU01": 0.1, ...}
    model.edit(img, reference=ref)                   expression transfer
    model.edit(img, aus={"AU12": 0.8})               set some AUs, keep the rest
    model.edit(img, delta={"AU45": 1.0})             relative change
    model.interpolate(img, "Neutral", "Happy", 8)    list of frames

Inputs are PIL images, numpy arrays or torch tensors, single or batched (see images.py);
results come back in the same form and size. No training code lives here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from torch import Tensor, nn

from . import images as imgs
from .au_estimator import AUEstimator
from .aus import NUM_AUS, au_dict, au_vector
from .generator import AUFusion, Generator, Norm, SkipKind

PAPER_URL = "https://arxiv.org/abs/2412.02530"
REPO_URL = "https://github.com/wemgan/wemgan"
WEIGHTS_NAME = "model.safetensors"

AUSpec = dict[str, float] | list[float] | np.ndarray | str
GENERATION_CHUNK = 16  # images per generator call: bounds peak memory on large batches


class WEMGAN(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="wemgan",
    repo_url=REPO_URL,
    paper_url=PAPER_URL,
    license="apache-2.0",
    pipeline_tag="image-to-image",
    tags=["facial-expression-editing", "action-units", "gan", "wavelet", "wem-gan"],
):
    """Facial expression editing by relative Action Units (WEM-GAN, Sun et al. 2024).

    The constructor is the configuration (saved as config.json); WEMGAN() is the paper's.

    Args:
        image_size: side of the square face crop the networks work on (paper: 128).
        base_channels: generator width of the first conv (paper: 64).
        max_channels: generator width cap (paper: 512).
        skip_levels: DIT skip connections, 0 / 3 / 4 / 5 (paper: 3).
        skip_kind: "haar" (DIT, paper) or "plain" U-Net skips.
        au_fusion: "multi" (paper) or "single" AU injection at the bottleneck.
        norm: generator normalisation, "instance" (paper) or "none".
        estimator_channels: width of the AU estimator's first conv.
        estimator_max_channels: width cap of the AU estimator.
        provenance: how the weights were made, written by the exporter (data, steps,
            command); empty for a model that was never trained.
    """

    def __init__(
        self,
        image_size: int = 128,
        base_channels: int = 64,
        max_channels: int = 512,
        skip_levels: int = 3,
        skip_kind: SkipKind = "haar",
        au_fusion: AUFusion = "multi",
        norm: Norm = "instance",
        estimator_channels: int = 32,
        estimator_max_channels: int = 256,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.provenance = dict(provenance or {})
        self.generator = Generator(
            NUM_AUS, base_channels, max_channels, skip_levels, skip_kind, au_fusion, norm, image_size
        )
        self.au_estimator = AUEstimator(NUM_AUS, estimator_channels, estimator_max_channels)
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
        model = cls(**model_kwargs)
        try:
            model.load_state_dict(safetensors.torch.load_file(weights), strict=strict)
        except RuntimeError as error:
            raise ValueError(f"{weights} does not match the configuration in config.json: {error}") from None
        return model.to(map_location).eval()

    # ---------------------------------------------------------------- inference
    @torch.inference_mode()
    def estimate_aus(self, images: Any) -> dict[str, float] | list[dict[str, float]]:
        """The 17 AU intensities in [0, 1] of each face: one dict, or a list for a batch."""
        batch = imgs.load_images(images)
        values = self._estimate(self._crops(batch))
        dicts = [au_dict(row) for row in values.cpu().numpy()]
        return dicts if batch.batched else dicts[0]

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
    ) -> Any:
        """Change the expression of each face; give exactly one of reference, aus or delta.

        reference: an image (or a batch, one per input) whose expression is transferred.
        aus: target intensities in [0, 1] as {"AU12": 0.8, ...} (AUs not named keep the
            face's own value), 17 values, or a preset name such as "Happy".
        delta: relative change in [-1, 1] as {"AU45": 1.0, ...} or 17 values.
        strength: multiplies the relative change u_rel (0 = no change, 1 = as asked).
        preserve_detail: add G(x, u_rel) - G(x, 0) to the input instead of returning
            G(x, u_rel): pixels the edit leaves alone keep their full original detail, and
            no change returns the input exactly.
        """
        given = [
            name for name, value in (("reference", reference), ("aus", aus), ("delta", delta)) if value is not None
        ]
        if len(given) != 1:
            raise ValueError(f"give exactly one of reference=, aus= or delta=; got {given or 'none'}")
        strength = float(strength)
        if not np.isfinite(strength) or not 0 <= strength <= 2:
            raise ValueError(f"strength must be a number in [0, 2], got {strength}")
        batch = imgs.load_images(images)
        crops = self._crops(batch)
        source = self._estimate(crops)
        if reference is not None:
            target = self._reference_aus(reference, len(batch))
            relative = target - source
        elif aus is not None:
            relative = torch.stack([self._target(aus, row) - row for row in source])
        else:
            relative = self._as_tensor(au_vector(delta, low=-1, high=1, what="delta")).expand(len(batch), -1)
        return self._render(batch, crops, [strength * relative], preserve_detail)[0]

    @torch.inference_mode()
    def interpolate(
        self,
        image: Any,
        start: AUSpec | Any | None,
        end: AUSpec | Any,
        steps: int = 8,
        preserve_detail: bool = True,
    ) -> list[Any]:
        """Frames that move one face from expression `start` to `end` in equal AU steps.

        start, end: AU dicts (partial dicts keep the face's own other AUs), 17 values,
        preset names ("Happy"), or reference images; start=None is the face's own expression.
        Returns `steps` images (first = start, last = end) in the input's type.
        """
        if not isinstance(steps, int) or steps < 2:
            raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
        batch = imgs.load_images(image)
        if batch.batched:
            raise ValueError("interpolate takes one image; call it once per image")
        crops = self._crops(batch)
        source = self._estimate(crops)[0]
        first = source if start is None else self._endpoint(start, source)
        last = self._endpoint(end, source)
        weights = torch.linspace(0, 1, steps, device=self.device).unsqueeze(1)
        targets = (1 - weights) * first + weights * last
        relatives = [(target - source).unsqueeze(0) for target in targets]
        return self._render(batch, crops, relatives, preserve_detail)

    # ----------------------------------------------------------------- helpers
    def _as_tensor(self, values: np.ndarray) -> Tensor:
        return torch.as_tensor(values, dtype=torch.float32, device=self.device)

    def _crops(self, batch: imgs.ImageBatch) -> Tensor:
        return imgs.centre_crops(batch, self.image_size).to(self.device)

    def _estimate(self, crops: Tensor) -> Tensor:
        return self.au_estimator(crops.to(self.dtype)).float()

    def _target(self, spec: AUSpec, source: Tensor) -> Tensor:
        return self._as_tensor(au_vector(spec, base=source.cpu().numpy(), what="aus"))

    def _endpoint(self, spec: Any, source: Tensor) -> Tensor:
        if imgs.is_image(spec):  # arrays of 2+ dims and PIL images; 17 numbers are AUs
            return self._reference_aus(spec, 1)[0]
        return self._target(spec, source)

    def _reference_aus(self, reference: Any, count: int) -> Tensor:
        ref = imgs.load_images(reference)
        if len(ref) not in (1, count):
            raise ValueError(f"got {len(ref)} reference images for {count} inputs; give one, or one per input")
        return self._estimate(self._crops(ref)).expand(count, -1)

    def _generate(self, crops: Tensor, relative: Tensor) -> Tensor:
        outputs = [
            self.generator(x.to(self.dtype), u.to(self.dtype)).float()
            for x, u in zip(crops.split(GENERATION_CHUNK), relative.split(GENERATION_CHUNK), strict=True)
        ]
        return torch.cat(outputs)

    def _render(
        self, batch: imgs.ImageBatch, crops: Tensor, relatives: list[Tensor], preserve_detail: bool
    ) -> list[Any]:
        """One output (same form as the input) per relative-AU tensor in `relatives`.

        All conditions (and G(x, 0) for preserve_detail) go through the generator as one
        batch: interpolation frames cost one batched call, not one call per frame.
        """
        n = len(crops)
        conditions = [relative.expand(n, -1) for relative in relatives]
        if preserve_detail:
            conditions.append(torch.zeros_like(conditions[0]))
        outputs = self._generate(crops.repeat(len(conditions), 1, 1, 1), torch.cat(conditions)).split(n)
        base = outputs[-1] if preserve_detail else crops
        results = []
        for relative, edited in zip(conditions[: len(relatives)], outputs, strict=False):
            change = edited - base
            if preserve_detail:
                # G(x, 0) - G(x, 0) is exactly zero; do not let batch-dependent rounding say otherwise.
                change[relative.abs().amax(1) == 0] = 0
            results.append(imgs.to_output(imgs.paste_residuals(batch, change)))
        return results
