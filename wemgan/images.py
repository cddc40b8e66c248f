"""Image conversions between what users hand us and what the networks take.

Users give PIL images, image files (a path, bytes or a binary file object), numpy arrays
(H x W x C or B x H x W x C, uint8 or float in [0, 1]) or torch tensors (C x H x W or
B x C x H x W, float in [0, 1] or uint8), one image or a batch (a list, or a 4-D array).
We keep every image at full resolution as float32 3 x H x W in [0, 1] (plus its alpha
channel, if any) for the face pipeline (faces.py), and give results back in the caller's
own type, size, mode and dtype.

Pixels an edit leaves alone come back bit-exact: the output starts from the caller's own
original (its PIL mode, palette, 16-bit values or float64 array included) and only the
changed pixels are converted back from our float working copy.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

Kind = Literal["pil", "numpy", "torch"]
MIN_SIDE = 32  # smaller inputs carry too little of a face to edit
MAX_PIXELS = 40_000_000  # decompression-bomb guard: 40 MP is above any phone camera's default
PathOrFile = str | os.PathLike | bytes | bytearray | BinaryIO
# PIL modes holding one grey value per pixel with more than 8 bits; decoded without rounding to 8 bits.
WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


class ImageTooLargeError(ValueError):
    """An image with more pixels than MAX_PIXELS (possibly a decompression bomb)."""


class ImageTooSmallError(ValueError):
    """An image with a side below MIN_SIDE pixels."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(f"image is {width}x{height} pixels; the smallest usable face image is {MIN_SIDE}x{MIN_SIDE}")
        self.size = (width, height)


class InvalidImageError(ValueError):
    """A file or byte string that is not a readable image (unknown format, truncated, corrupt)."""


@dataclass(frozen=True)
class ImageBatch:
    """Decoded images plus the originals needed to hand results back in the input's form."""

    pixels: list[Tensor]  # each 3 x H x W, float32 in [0, 1], full resolution
    alphas: list[Tensor | None]  # each 1 x H x W in [0, 1], or None
    originals: list[Any]  # the caller's images (PIL upright after EXIF, numpy, torch on CPU)
    kind: Kind
    batched: bool  # the input was a batch (list / 4-D array), so the output is one too

    def __len__(self) -> int:
        return len(self.pixels)


def is_image(obj: object) -> bool:
    """True for an image or a list of images; a plain str is not one (it names a preset)."""
    if isinstance(obj, Image.Image | os.PathLike | bytes | bytearray | io.IOBase):
        return True
    if isinstance(obj, np.ndarray | Tensor):
        return obj.ndim >= 2
    if isinstance(obj, list | tuple) and obj:
        return all(not isinstance(item, list | tuple | str) and is_image(item) for item in obj)
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
    if isinstance(images, str | os.PathLike | bytes | bytearray | io.IOBase):
        with open_image(images) as image:  # closes a file opened by name; the batch holds a copy
            return _from_pil(image)
    if isinstance(images, Image.Image):
        return _from_pil(images)
    if isinstance(images, np.ndarray):
        return _from_numpy(images)
    if isinstance(images, Tensor):
        return _from_torch(images)
    raise TypeError(
        "expected a PIL image, an image file (path, bytes or binary file), a numpy array, a torch tensor "
        f"or a list of them, got {type(images).__name__}"
    )


def open_image(source: PathOrFile) -> Image.Image:
    """Open an image file with clear errors for non-images and oversized (bomb) images.

    The pixel count is checked from the header, before anything is decoded; PIL's own
    DecompressionBombError/Warning (above ~90 MP) come out as the same ImageTooLargeError.
    """
    name = os.fspath(source) if isinstance(source, str | os.PathLike) else "the image data"
    if isinstance(source, bytes | bytearray):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLargeError(f"{name} is too large to edit: {error}") from None
    except UnidentifiedImageError:
        raise InvalidImageError(f"{name} is not an image file that PIL can read") from None
    try:
        _check_pixels(*image.size, name)
    except ImageTooLargeError:
        image.close()
        raise
    return image


def _as_batch(parts: list[ImageBatch]) -> ImageBatch:
    """Single-image batches -> one batch (of the first one's kind)."""
    if not parts:
        raise ValueError("got an empty batch of images")
    return replace(
        parts[0],
        pixels=[p.pixels[0] for p in parts],
        alphas=[p.alphas[0] for p in parts],
        originals=[p.originals[0] for p in parts],
        batched=True,
    )


def _from_pil(image: Image.Image) -> ImageBatch:
    _check_pixels(*image.size, "the image")
    _check_side(*image.size)
    try:
        image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF; also loads it
        image.load()
    except (OSError, SyntaxError) as error:  # PIL reports truncated and corrupt data as OSError / SyntaxError
        raise InvalidImageError(f"the image is truncated or corrupt and cannot be decoded ({error})") from None
    if image.mode in WIDE_GREY_MODES:
        grey = torch.from_numpy(np.asarray(image, dtype=np.float32) / _grey_scale(image))
        tensor = grey.clamp(0, 1).expand(3, -1, -1).contiguous()
        return ImageBatch([tensor], [None], [image], "pil", batched=False)
    has_alpha = image.mode in ALPHA_MODES or "transparency" in image.info
    rgba = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    tensor = torch.from_numpy(rgba.copy()).permute(2, 0, 1).float() / 255
    return ImageBatch([tensor[:3]], [tensor[3:] if has_alpha else None], [image], "pil", batched=False)


def _grey_scale(image: Image.Image) -> float:
    """The value of white in a wide grey image: 16-bit modes 65535; "I"/"F" by their range."""
    if image.mode.startswith("I;16"):
        return 65535.0
    peak = float(np.asarray(image).max(initial=0))
    if image.mode == "F" and peak <= 1:
        return 1.0
    return 255.0 if peak <= 255 else 65535.0


def _from_numpy(array: np.ndarray) -> ImageBatch:
    if array.ndim == 4:
        return _as_batch([_from_numpy(item) for item in array])
    shaped = array[..., None] if array.ndim == 2 else array
    if shaped.ndim != 3 or shaped.shape[-1] not in (1, 3, 4):
        raise ValueError(f"numpy images must be H x W x C with C in (1, 3, 4), got shape {array.shape}")
    _check_pixels(shaped.shape[1], shaped.shape[0], "the array")
    tensor = _to_unit_float(torch.from_numpy(np.array(shaped)).permute(2, 0, 1))  # a copy: inputs may be read-only
    pixels, alpha = _split_channels(tensor)
    return ImageBatch([pixels], [alpha], [array], "numpy", batched=False)


def _from_torch(tensor: Tensor) -> ImageBatch:
    if tensor.dim() == 4:
        return _as_batch([_from_torch(item) for item in tensor])
    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3, 4):
        raise ValueError(f"torch images must be C x H x W with C in (1, 3, 4), got shape {tuple(tensor.shape)}")
    _check_pixels(tensor.shape[2], tensor.shape[1], "the tensor")
    original = tensor.detach().cpu()
    pixels, alpha = _split_channels(_to_unit_float(original))
    return ImageBatch([pixels], [alpha], [original], "torch", batched=False)


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
    _check_side(tensor.shape[2], tensor.shape[1])
    if tensor.shape[0] == 1:
        return tensor.expand(3, -1, -1).contiguous(), None
    return tensor[:3].contiguous(), (tensor[3:].contiguous() if tensor.shape[0] == 4 else None)


def _check_side(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE:
        raise ImageTooSmallError(width, height)


def _check_pixels(width: int, height: int, name: str) -> None:
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{name} is {width}x{height} = {width * height / 1e6:.0f} MP; images above {MAX_PIXELS / 1e6:.0f} MP "
            "are refused (they may be decompression bombs): downscale it first"
        )


def to_output(batch: ImageBatch, pixels: list[Tensor]) -> Any:
    """Edited pixels (3 x H x W floats, one per image) in the type, layout and dtype the user gave."""
    items = [
        _export(original, edited, decoded, alpha)
        for original, edited, decoded, alpha in zip(batch.originals, pixels, batch.pixels, batch.alphas, strict=True)
    ]
    if not batch.batched:
        return items[0]
    if batch.kind == "numpy" and len({item.shape for item in items}) == 1:
        return np.stack(items)
    if batch.kind == "torch" and len({tuple(item.shape) for item in items}) == 1:
        return torch.stack(items)
    return items


def _export(original: Any, edited: Tensor, decoded: Tensor, alpha: Tensor | None) -> Any:
    """A copy of the original with the changed pixels (edited != decoded) converted back into it.

    Only the box around the changes is converted: a 24 MP photo with one edited face costs
    a copy, not a conversion of every pixel.
    """
    changed = (edited != decoded).any(0)
    rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
    out = original.copy() if isinstance(original, Image.Image | np.ndarray) else original.clone()
    if not len(rows):
        return out
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    region = edited[:, top:bottom, left:right]
    region_alpha = None if alpha is None else alpha[:, top:bottom, left:right]
    mask = changed[top:bottom, left:right]
    if isinstance(original, Image.Image):
        out.paste(_pil_region(original, region, region_alpha), (left, top), Image.fromarray(mask.numpy()))
        return out
    channels_last = isinstance(original, np.ndarray)
    single = original.ndim == 2 or original.shape[-1 if channels_last else 0] == 1
    # Greyscale inputs get back the luminance of the (possibly tinted) result.
    colour = region.mean(0, keepdim=True) if single else region
    channels = colour if region_alpha is None else torch.cat([colour, region_alpha])
    if channels_last:
        array = channels.permute(1, 2, 0).numpy()
        values = _to_uint8(array) if original.dtype == np.uint8 else array.astype(original.dtype)
        out[top:bottom, left:right][mask.numpy()] = values.reshape(*mask.shape, *original.shape[2:])[mask.numpy()]
        return out
    values = (channels * 255).round().to(torch.uint8) if original.dtype == torch.uint8 else channels.to(original.dtype)
    out[:, top:bottom, left:right][:, mask] = values[:, mask]
    return out


def _pil_region(original: Image.Image, region: Tensor, alpha: Tensor | None) -> Image.Image:
    """Float pixels (3 x h x w) as a PIL image in the original's mode (and palette)."""
    if original.mode in WIDE_GREY_MODES:
        grey = region.mean(0).numpy() * _grey_scale(original)
        values = grey.astype(np.float32) if original.mode == "F" else np.round(grey).astype(np.int32)
        return Image.fromarray(values).convert(original.mode)
    image = Image.fromarray(_to_uint8(region.permute(1, 2, 0).numpy()))
    if alpha is not None:
        image.putalpha(Image.fromarray(_to_uint8(alpha[0].numpy())))
    return _to_mode(image, original)


def _to_mode(image: Image.Image, original: Image.Image) -> Image.Image:
    """An RGB(A) result in the original's mode; palette images keep their own palette."""
    if original.mode == "P":
        result = image.convert("RGB").quantize(palette=original, dither=Image.Dither.NONE)
        if "transparency" in original.info:
            result.info["transparency"] = original.info["transparency"]
        return result
    if original.mode == "1":
        return image.convert("L").convert("1", dither=Image.Dither.NONE)
    return image.convert(original.mode)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    return (array * 255).round().clip(0, 255).astype(np.uint8)
