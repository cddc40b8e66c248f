"""WEMGAN: Hub round trip, strict loading, and the inference API contract."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from conftest import assert_same_up_to_rounding
from PIL import Image

from wemgan import AU_NAMES, WEMGAN
from wemgan.editor import EditorOutput
from wemgan.flow import warp


def test_default_is_the_paper_configuration():
    model = WEMGAN()
    assert model.generator.widths == [64, 128, 256, 512, 512, 512]
    assert model.generator.skip_depths == (1, 2, 3)
    assert not model.is_trained and not model.training


def test_save_load_round_trip(tmp_path, tiny_model, face_crop):
    tiny_model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["README.md", "config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text())["generator"]["base_channels"] == 8
    loaded = WEMGAN.from_pretrained(tmp_path)
    assert not loaded.training
    expected = tiny_model.edit(face_crop, aus="Happy", preserve_detail=False)
    assert np.array_equal(np.asarray(loaded.edit(face_crop, aus="Happy", preserve_detail=False)), np.asarray(expected))
    assert loaded.estimate_aus(face_crop) == tiny_model.estimate_aus(face_crop)


def _rewrite_weights(folder: Path, change) -> None:
    path = folder / "model.safetensors"
    state = safetensors.torch.load_file(path)
    change(state)
    safetensors.torch.save_file(state, path)


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.pop("generator.to_rgb.0.weight"),
        lambda s: s.update({"generator.extra": torch.zeros(1)}),
        lambda s: s.update({"au_estimator.head.2.bias": torch.zeros(5)}),
    ],
    ids=["missing", "unexpected", "wrong-shape"],
)
def test_wrong_weights_fail_loudly(tmp_path, tiny_model, change):
    tiny_model.save_pretrained(tmp_path)
    _rewrite_weights(tmp_path, change)
    with pytest.raises(ValueError, match="does not match the configuration"):
        WEMGAN.from_pretrained(tmp_path)


def test_missing_weights_file_fails_loudly(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"no model\.safetensors"):
        WEMGAN.from_pretrained(tmp_path)


def test_loads_a_hub_id_from_the_local_cache(tmp_path, tiny_model, face_crop):
    snapshot = tmp_path / "models--someone--wemgan-tiny" / "snapshots" / ("a" * 40)
    tiny_model.save_pretrained(snapshot)
    (tmp_path / "models--someone--wemgan-tiny" / "refs").mkdir()
    (tmp_path / "models--someone--wemgan-tiny" / "refs" / "main").write_text("a" * 40)
    loaded = WEMGAN.from_pretrained("someone/wemgan-tiny", cache_dir=tmp_path, local_files_only=True)
    assert loaded.estimate_aus(face_crop) == tiny_model.estimate_aus(face_crop)


def test_estimate_aus(tiny_model, face_crop):
    aus = tiny_model.estimate_aus(face_crop)
    assert list(aus) == list(AU_NAMES)
    assert all(0 <= v <= 1 for v in aus.values())
    batch = tiny_model.estimate_aus([face_crop, face_crop.rotate(90)])
    assert len(batch) == 2 and batch[0] == pytest.approx(aus)


def test_zero_change_returns_the_input_exactly_and_deterministically(tiny_model, face_crop):
    first = tiny_model.edit(face_crop, delta={"AU12": 0.0})
    assert np.array_equal(np.asarray(first), np.asarray(face_crop))
    floats = np.random.default_rng(1).random((2, 128, 128, 3), dtype=np.float32)
    assert np.array_equal(tiny_model.edit(floats, delta=[0.0] * 17), floats)
    plain = [np.asarray(tiny_model.edit(face_crop, delta=[0.0] * 17, preserve_detail=False)) for _ in range(2)]
    assert np.array_equal(*plain)
    assert not np.array_equal(plain[0], np.asarray(face_crop))  # G(x, 0) of an untrained G is not x


def test_edit_without_detail_preservation_is_the_generator_output(tiny_model, face_crop):
    out = tiny_model.edit(face_crop, delta={"AU45": 1.0}, preserve_detail=False)
    x = torch.from_numpy(np.array(face_crop)).permute(2, 0, 1)[None].float() / 127.5 - 1
    u = torch.zeros(1, 17)
    u[0, AU_NAMES.index("AU45")] = 1
    with torch.no_grad():
        expected = ((tiny_model.generator(x, u) + 1) * 127.5).round().clamp(0, 255)
    got = torch.from_numpy(np.array(out)).permute(2, 0, 1)[None].float()
    assert (got - expected).abs().max() <= 1


def test_modes_move_the_face(tiny_model, face_crop):
    reference = face_crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(30)
    for kwargs in (dict(reference=reference), dict(aus="Surprise"), dict(delta={"AU26": 1.0})):
        out = np.asarray(tiny_model.edit(face_crop, **kwargs)).astype(int)
        assert np.abs(out - np.asarray(face_crop)).max() > 0, kwargs
    half = np.asarray(tiny_model.edit(face_crop, delta={"AU26": 1.0}, strength=0.0))
    assert np.array_equal(half, np.asarray(face_crop))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(aus={"AU13": 0.5}), "unknown Action Unit 'AU13'"),
        (dict(aus={"AU12": float("nan")}), "must be finite"),
        (dict(aus=[0.5] * 16), "must hold 17 values"),
        (dict(aus={"AU12": 2.0}), "outside"),
        (dict(delta={"AU12": -1.5}), "outside"),
        (dict(delta=np.full(18, 0.1)), "must hold 17 values"),
        (dict(aus="Joy"), "unknown expression"),
        (dict(), "exactly one of"),
        (dict(aus="Happy", delta={"AU12": 0.1}), "exactly one of"),
        (dict(aus="Happy", strength=float("nan")), "strength"),
        (dict(aus="Happy", strength=5), "strength must be a number from 0 to 2"),
    ],
)
def test_edit_rejects_malformed_requests(tiny_model, face_crop, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.edit(face_crop, **kwargs)


def test_bad_images_are_rejected(tiny_model):
    with pytest.raises(TypeError, match="expected a PIL image"):
        tiny_model.edit(42, aus="Happy")
    with pytest.raises(FileNotFoundError, match=r"no-such-face\.jpg"):
        tiny_model.edit("no-such-face.jpg", aus="Happy")
    with pytest.raises(ValueError, match="smallest usable"):
        tiny_model.edit(Image.new("RGB", (1, 1)), aus="Happy")
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]"):
        tiny_model.edit(torch.full((3, 128, 128), 3.0), aus="Happy")
    with pytest.raises(ValueError, match="C x H x W"):
        tiny_model.edit(torch.zeros(5, 128, 128), aus="Happy")
    with pytest.raises(ValueError, match="2 reference images for 3 inputs"):
        tiny_model.edit([Image.new("RGB", (128, 128))] * 3, reference=[Image.new("RGB", (128, 128))] * 2)


def test_output_types_and_sizes(tiny_model, face_crop):
    array = np.array(face_crop)
    out = tiny_model.edit(array, aus="Happy")
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    out = tiny_model.edit(np.stack([array, array]), aus="Happy")
    assert out.shape == (2, 128, 128, 3)
    out = tiny_model.edit(array.astype(np.float32) / 255, aus="Happy")
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    assert tiny_model.edit(tensor, aus="Happy").shape == (3, 128, 128)
    assert tiny_model.edit(tensor[None].repeat(3, 1, 1, 1), aus="Happy").shape == (3, 3, 128, 128)
    listed = tiny_model.edit([face_crop, face_crop.resize((200, 160))], aus="Happy")
    assert [im.size for im in listed] == [(128, 128), (200, 160)]


def test_larger_images_keep_size_mode_and_untouched_pixels(tiny_model, face_crop):
    photo = face_crop.resize((300, 200))
    out = tiny_model.edit(photo, aus="Happy", align=False)
    assert out.size == (300, 200) and out.mode == "RGB"
    # align=False: the face crop is the centred 200x200 square, so the 50-pixel margins are untouched.
    assert np.array_equal(np.asarray(out)[:, :50], np.asarray(photo)[:, :50])
    assert not np.array_equal(np.asarray(out)[:, 50:250], np.asarray(photo)[:, 50:250])


def test_greyscale_and_alpha_are_kept(tiny_model, face_crop):
    grey = tiny_model.edit(face_crop.convert("L"), delta={"AU12": 0.5})
    assert grey.mode == "L" and grey.size == (128, 128)
    rgba = face_crop.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((128, 128)))
    out = tiny_model.edit(rgba, delta={"AU12": 0.5})
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out)[..., 3], np.asarray(rgba)[..., 3])
    grey_array = tiny_model.edit(np.asarray(face_crop.convert("L")), delta={"AU12": 0.5})
    assert grey_array.shape == (128, 128)


def test_interpolate(tiny_model, face_crop):
    frames = tiny_model.interpolate(face_crop, None, "Happy", steps=5)
    assert len(frames) == 5 and all(f.size == (128, 128) for f in frames)
    assert np.array_equal(np.asarray(frames[0]), np.asarray(face_crop))  # start = own expression
    assert np.array_equal(np.asarray(frames[-1]), np.asarray(tiny_model.edit(face_crop, aus="Happy")))
    reference = face_crop.rotate(45)
    frames = tiny_model.interpolate(face_crop, {"AU45": 1.0}, reference, steps=3)
    assert np.array_equal(np.asarray(frames[-1]), np.asarray(tiny_model.edit(face_crop, reference=reference)))
    with pytest.raises(ValueError, match="steps"):
        tiny_model.interpolate(face_crop, None, "Happy", steps=1)
    with pytest.raises(ValueError, match="one image"):
        tiny_model.interpolate([face_crop, face_crop], None, "Happy")


def test_interpolation_is_bounded_and_streams(tiny_model, face_crop):
    with pytest.raises(ValueError, match="from 2 to 256"):
        tiny_model.interpolate(face_crop, None, "Happy", steps=10_000)  # refused before any work
    frames = tiny_model.interpolation_frames(face_crop, None, "Happy", steps=40)
    first = next(frames)  # made lazily, a chunk at a time: nothing holds all 40 frames
    assert np.array_equal(np.asarray(first), np.asarray(face_crop))
    rest = list(frames)
    assert len(rest) == 39
    # Frames run in batches; on some CPUs (AVX2 without AVX-512) a convolution's last bit depends on
    # the batch size, which can move a pixel by one grey level after rounding.
    last, edited = (np.asarray(image).astype(int) for image in (rest[-1], tiny_model.edit(face_crop, aus="Happy")))
    assert np.abs(last - edited).max() <= 1 and (last != edited).mean() < 0.001


def test_a_prepared_photo_edits_as_the_photo_does(tiny_model, face_crop):
    photo = face_crop.resize((200, 200))  # a small image with no detectable face: taken as a crop
    prepared = tiny_model.prepare(photo)
    assert not prepared.found_faces and prepared.size == (200, 200) and len(prepared.faces) == 1
    for spec in ("Happy", {"AU45": 0.9}):
        assert_same_up_to_rounding(tiny_model.edit(prepared, aus=spec), tiny_model.edit(photo, aus=spec))
    assert tiny_model.estimate_aus(prepared) == pytest.approx(tiny_model.estimate_aus(photo), abs=1e-6)
    assert np.array_equal(np.asarray(tiny_model.edit(prepared, delta={"AU12": 0.0})), np.asarray(photo))
    frames = tiny_model.interpolate(prepared, None, "Sad", steps=3)
    assert_same_up_to_rounding(frames[-1], tiny_model.edit(photo, aus="Sad"))
    with pytest.raises(ValueError, match="face 1 was asked for, but 1 face was found"):
        tiny_model.edit(prepared, aus="Happy", faces=1)
    with pytest.raises(ValueError, match="one image"):
        tiny_model.prepare([face_crop, face_crop])


def test_bfloat16_weights(tiny_model, face_crop):
    out = tiny_model.to(torch.bfloat16).edit(face_crop, aus="Happy")
    assert out.size == (128, 128)


class ShiftRight(torch.nn.Module):
    """An editor whose edit moves the whole crop right by 4 px per unit of AU12, colour untouched."""

    def forward(self, x, aus):
        flow = torch.zeros(len(x), 2, 8, 8, dtype=x.dtype)
        flow[:, 0] = -4 / 64 * aus[:, AU_NAMES.index("AU12")].view(-1, 1, 1)
        nowhere = torch.zeros(len(x), 68, 2)
        return EditorOutput(warp(x, flow), flow, nowhere, nowhere)

    def read_jaw_drop(self, x, aus):  # it reads no landmarks: the estimator's AU26 stays
        return aus[:, AU_NAMES.index("AU26")]


def test_the_editor_moves_the_photo_at_its_own_resolution(tiny_model):
    """The landmark editor's motion moves the photo's own pixels: a 2 px line of a 512 px photo
    stays one sharp line, 16 photo px further (4 crop px at 1/4 scale), instead of a blurred
    128-px copy of the moved line pasted beside the sharp original."""
    tiny_model.generator, tiny_model.editor = None, ShiftRight()
    photo = np.zeros((512, 512, 3), np.uint8)
    photo[:, 200:202] = 255
    out = tiny_model.edit(photo, delta={"AU12": 1.0}, align=False)
    row = out[256, :, 0].astype(int)
    assert row[216] == 255 and row[217] == 255 and row[200] == 0  # moved, still full strength
    assert (row > 20).sum() == 2  # and nothing else: no ghost of the old line, no blur
    assert np.array_equal(tiny_model.edit(photo, delta={"AU12": 0.0}, align=False), photo)
    prepared = tiny_model.prepare(photo, align=False)
    assert np.array_equal(tiny_model.edit(prepared, delta={"AU12": 1.0}), out)
