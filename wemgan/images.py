"""Image conversions between what users hand us and what the networks take.

Users give PIL images, numpy arrays (H x W x C or B x H x W x C, uint8 or float in [0, 1])
or torch tensors (C x H x W or B x C x H x W, float in [0, 1] or uint8), one image or a
batch (a list, or a 4-D array). We keep every image at full resolution as float32 3 x H x W
in [0, 1] (plus its alpha channel, if any), cut a centred square crop resized to the model
size for the networks, and give results back in the caller's own type, size and layout.

Full photos with face detection and alignment are handled by the face pipeline; this
module's centre crop is what is used for inputs that are already face crops.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

Kind = Literal["pil", "numpy", "torch"]
MIN_SIDE = 32  # smaller inputs carry too little of a face to edit


@dataclass(frozen=True)
class ImageBatch:
    """Decoded images plus what is needed to hand results back in the input's form."""

    pixels: list[Tensor]  # each 3 x H x W, float32 in [0, 1], full resolution
    alphas: list[Tensor | None]  # each 1 x H x W in [0, 1], or None
    kind: Kind
    batched: bool  # the input was a batch (list / 4-D array), so the output is one too
    dtype: Any = None  # numpy or torch dtype of the input, returned as such
    channels: int = 3  # channels of the input (1, 3 or 4), returned as such
    squeeze: bool = False  # numpy H x W input: returned as H x W
    pil_mode: str = "RGB"  # PIL mode to return ("L", "LA", "RGB" or "RGBA")

    def __len__(self) -> int:
        return len(self.pixels)


def is_image(obj: object) -> bool:
    """True for a PIL image, an array/tensor of 2+ dims, or a non-empty list of those."""
    if isinstance(obj, Image.Image):
        return True
    if isinstance(obj, np.ndarray | Tensor):
        return obj.ndim >= 2
    if isinstance(obj, list | tuple) and obj:
        return all(isinstance(item, Image.Image | np.ndarray | Tensor) and is_image(item) for item in obj)
    return False


def load_images(images: Any) -> ImageBatch:
    """Decode any supported image input into an ImageBatch (see module docstring)."""
    if isinstance(images, list | tuple):
        parts = [load_images(item) for item in images]
        if any(p.batched for p in parts):
            raise ValueError("a list of images must hold single images, not batches")
        kinds = {p.kind for p in parts}
        if len(kinds) > 1:
            raise ValueError(f"a batch must hold images of one type, got {sorted(kinds)}")
        return _as_batch(parts)
    if isinstance(images, Image.Image):
        return _from_pil(images)
    if isinstance(images, np.ndarray):
        return _from_numpy(images)
    if isinstance(images, Tensor):
        return _from_torch(images)
    raise TypeError(
        f"expected a PIL image, a numpy array, a torch tensor or a list of them, got {type(images).__name__}"
    )


def _as_batch(parts: list[ImageBatch]) -> ImageBatch:
    """Single-image batches -> one batch (type and layout taken from the first)."""
    if not parts:
        raise ValueError("got an empty batch of images")
    return replace(parts[0], pixels=[p.pixels[0] for p in parts], alphas=[p.alphas[0] for p in parts], batched=True)


def _from_pil(image: Image.Image) -> ImageBatch:
    image = ImageOps.exif_transpose(image)  # phone photos store rotation in EXIF
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32)
        image = Image.fromarray(np.clip(array / (256 if array.max() > 255 else 1), 0, 255).astype(np.uint8))
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    grey = image.mode in ("L", "LA", "1")
    rgba = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    tensor = torch.from_numpy(rgba.copy()).permute(2, 0, 1).float() / 255
    _check_size(tensor)
    alpha = tensor[3:] if has_alpha else None
    mode = ("L" if grey else "RGB") + ("A" if has_alpha else "")
    return ImageBatch([tensor[:3]], [alpha], "pil", batched=False, channels=4 if has_alpha else 3, pil_mode=mode)


def _from_numpy(array: np.ndarray) -> ImageBatch:
    squeeze = array.ndim == 2
    if squeeze:
        array = array[..., None]
    if array.ndim == 4:
        return _as_batch([_from_numpy(item) for item in array])
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"numpy images must be H x W x C with C in (1, 3, 4), got shape {array.shape}")
    tensor = _to_unit_float(torch.from_numpy(np.array(array)).permute(2, 0, 1))  # a copy: inputs may be read-only
    pixels, alpha = _split_channels(tensor)
    return ImageBatch([pixels], [alpha], "numpy", False, array.dtype, channels=array.shape[-1], squeeze=squeeze)


def _from_torch(tensor: Tensor) -> ImageBatch:
    if tensor.dim() == 4:
        return _as_batch([_from_torch(item) for item in tensor])
    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3, 4):
        raise ValueError(f"torch images must be C x H x W with C in (1, 3, 4), got shape {tuple(tensor.shape)}")
    pixels, alpha = _split_channels(_to_unit_float(tensor.detach().cpu()))
    return ImageBatch([pixels], [alpha], "torch", False, tensor.dtype, channels=tensor.shape[0])


def _to_unit_float(tensor: Tensor) -> Tensor:
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255
    if not tensor.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {tensor.dtype}")
    tensor = tensor.float()
    if not torch.isfinite(tensor).all():
        raise ValueError("image contains NaN or infinite values")
    if tensor.min() < -1e-3 or tensor.max() > 1 + 1e-3:
        raise ValueError(f"float images must lie in [0, 1], got values in [{tensor.min():.3g}, {tensor.max():.3g}]")
    return tensor.clamp(0, 1)


def _split_channels(tensor: Tensor) -> tuple[Tensor, Tensor | None]:
    _check_size(tensor)
    if tensor.shape[0] == 1:
        return tensor.expand(3, -1, -1).contiguous(), None
    return tensor[:3].contiguous(), (tensor[3:].contiguous() if tensor.shape[0] == 4 else None)


def _check_size(tensor: Tensor) -> None:
    h, w = tensor.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"image is {w}x{h} pixels; the smallest usable face image is {MIN_SIDE}x{MIN_SIDE}")


def centre_box(width: int, height: int) -> tuple[int, int, int]:
    """The largest centred square: (left, top, side)."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def centre_crops(batch: ImageBatch, size: int) -> Tensor:
    """Centred square crops resized to size x size, as a B x 3 x size x size tensor in [-1, 1]."""
    crops = []
    for pixels in batch.pixels:
        left, top, side = centre_box(pixels.shape[2], pixels.shape[1])
        crop = pixels[:, top : top + side, left : left + side].unsqueeze(0)
        if side != size:
            crop = F.interpolate(crop, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        crops.append(crop.clamp(0, 1))
    return torch.cat(crops) * 2 - 1


def paste_residuals(batch: ImageBatch, residuals: Tensor) -> ImageBatch:
    """Add each crop-space change (B x 3 x size x size, in [-1, 1] units) to its full image.

    The change is resized to the crop's true size, so the photo keeps its resolution and
    the pixels the edit does not touch stay exactly as they were.
    """
    out = []
    for pixels, residual in zip(batch.pixels, residuals.float().cpu(), strict=True):
        left, top, side = centre_box(pixels.shape[2], pixels.shape[1])
        change = residual.unsqueeze(0) / 2  # [-1, 1] units -> [0, 1] units
        if side != change.shape[-1]:
            change = F.interpolate(change, size=(side, side), mode="bilinear", align_corners=False)
        edited = pixels.clone()
        edited[:, top : top + side, left : left + side] += change[0]
        out.append(edited.clamp(0, 1))
    return replace(batch, pixels=out)


def to_output(batch: ImageBatch) -> Any:
    """An ImageBatch back in the type, layout and dtype the user gave."""
    items = [_export(batch, pixels, alpha) for pixels, alpha in zip(batch.pixels, batch.alphas, strict=True)]
    if not batch.batched:
        return items[0]
    if batch.kind == "numpy" and len({item.shape for item in items}) == 1:
        return np.stack(items)
    if batch.kind == "torch" and len({tuple(item.shape) for item in items}) == 1:
        return torch.stack(items)
    return items


def _export(batch: ImageBatch, pixels: Tensor, alpha: Tensor | None) -> Any:
    if batch.kind == "pil":
        rgb = Image.fromarray(_to_uint8(pixels.permute(1, 2, 0).numpy()), "RGB")
        if alpha is not None:
            rgb.putalpha(Image.fromarray(_to_uint8(alpha[0].numpy()), "L"))
        return rgb.convert(batch.pil_mode) if rgb.mode != batch.pil_mode else rgb
    # Greyscale inputs get back the luminance of the (possibly tinted) result.
    colour = pixels.mean(0, keepdim=True) if batch.channels == 1 else pixels
    channels = colour if alpha is None else torch.cat([colour, alpha])
    if batch.kind == "torch":
        return (channels * 255).round().to(torch.uint8) if batch.dtype == torch.uint8 else channels.to(batch.dtype)
    array = channels.permute(1, 2, 0).numpy()
    result = _to_uint8(array) if batch.dtype == np.uint8 else array.astype(batch.dtype)
    return result[..., 0] if batch.squeeze else result


def _to_uint8(array: np.ndarray) -> np.ndarray:
    return (array * 255).round().clip(0, 255).astype(np.uint8)
