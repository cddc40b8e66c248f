"""How the package fits together: imports without cycles, one config with one set of rules per
kind of model, the shipped model's edits unchanged by its format, and the Renderer composed with
the landmark editor."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from test_landmark_motion import drawn_face_landmarks

from wemgan import WEMGAN
from wemgan.aus import AU_NAMES
from wemgan.config import EditorConfig, GeneratorConfig, ModelConfig, RendererConfig
from wemgan.generator import Generator
from wemgan.landmark_guides import draw_contours, draw_heatmaps
from wemgan.part_windows import (
    WITH_CHEEKS,
    crop,
    nearest_part,
    part_shares,
    paste_add,
    share_window_corners,
    window_corners,
    window_interiors,
    zoomed_window_scales,
)
from wemgan.render_masks import (
    dilate,
    edit_mask,
    inner_mouth_mask,
    mouth_mask,
    smile_skin_bands,
    training_masks,
    window_masks_of,
    window_training_masks,
)
from wemgan.renderer import TRAINING_TINT, PartRenderer, Renderer, visible_mean_colour, white_balance_gains

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "wemgan"
# What the shipped model runs must not pull in training code (critics, losses, fits, metrics, data).
TRAINING_MODULES = ("wemgan.losses", "wemgan.discriminators", "wemgan.landmark_fit", "wemgan.au_training",
                    "wemgan.metrics", "wemgan.data", "wemgan.evaluate", "wemgan.edit_evaluation")  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> tuple[set[str], list[str]]:
    """(the wemgan modules a file imports, the ones it imports inside a function)."""
    tree = ast.parse(path.read_text())
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found, inside = set(), []
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            root = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names = [root] + [f"{root}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        names = [n for n in names if n.startswith("wemgan") and importable(n)]
        found.update(names)
        if names and id(node) in nested:
            inside.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found, inside


def importable(name: str) -> bool:
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        graph[name] = {m for m in project_imports(path)[0] if m != name and not name.startswith(m + ".")}
    return graph


def test_no_project_module_is_imported_inside_a_function():
    inside = [where for path in PACKAGE.rglob("*.py") for where in project_imports(path)[1]]
    assert inside == []


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for child in graph.get(node, ()):
            if child == "wemgan":  # the package's __init__ re-exports; submodules import their siblings
                continue
            assert state.get(child) != 1, "import cycle: " + " -> ".join([*trail, node, child])
            if child not in state:
                visit(child, [*trail, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_the_inference_model_imports_no_training_code():
    graph = import_graph()
    seen, todo = set(), ["wemgan.model"]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(child for child in graph.get(node, ()) if child != "wemgan")
    assert sorted(m for m in seen if m.startswith(TRAINING_MODULES)) == []


def test_each_module_imports_alone():
    modules = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'wemgan' or m.startswith('wemgan.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_generator_is_the_papers_network_with_few_arguments():
    assert len(inspect.signature(Generator).parameters) <= 10
    with pytest.raises(ValueError, match="skip_levels must be one of"):
        Generator(skip_levels=2)
    with pytest.raises(ValueError, match="skip_levels must be one of"):
        GeneratorConfig(skip_levels=2).validate()  # the same rule, written once


def test_a_model_config_holds_one_kind_and_rejects_mixtures():
    assert ModelConfig(generator=GeneratorConfig()).validate().kind == "paper"
    with pytest.raises(ValueError, match="exactly one"):
        ModelConfig(generator=GeneratorConfig(), editor=EditorConfig()).validate()
    with pytest.raises(ValueError, match="needs the editor"):
        WEMGAN(generator={}, renderer={})
    with pytest.raises(ValueError, match="motion_strength"):
        WEMGAN(editor={"motion_strength": 0.0})
    with pytest.raises(TypeError):
        WEMGAN(editor={"prior_only": True})  # a field no part has


def legacy_folder(folder: Path, out: Path) -> Path:
    """hub/default written in the format of before 2026-12-06: flat config, the fits under
    generator.*, baked in at motion_strength and stored in float16 like every other weight."""
    config = json.loads((folder / "config.json").read_text())
    editor, estimator = config["editor"], config["estimator"]
    strength = editor["motion_strength"]
    flat = {"image_size": 128, "base_channels": 16, "max_channels": 128, "skip_levels": 5, "skip_kind": "haar",
            "au_fusion": "multi", "norm": "instance", "upsample": "resize", "generator_output": "warp",
            "motion_prior": True, "prior_only": True, "mouth_cavity": editor["mouth_cavity"],
            "appearance": editor["appearance"], "flow_resolution": editor["flow_resolution"],
            "zero_gate": False, "stretch_gate": False, "shading": False,
            "estimator_channels": estimator["channels"], "estimator_max_channels": estimator["max_channels"],
            "estimator_calibration_knots": estimator["calibration_knots"], "face_template": config["face_template"],
            "provenance": {**config["provenance"], "prior_changes": {"motion_strength": strength}}}  # fmt: skip
    state = {}
    for name, value in safetensors.torch.load_file(folder / "model.safetensors").items():
        if name == "editor.jaw_reading" or name.startswith("renderer."):
            continue  # that format had neither
        if name.startswith("editor."):
            part = name.removeprefix("editor.")
            value = value * strength if part in ("motion_basis", "appearance_maps") else value
            name = "generator." + part
        state[name] = value.half()
    out.mkdir()
    (out / "config.json").write_text(json.dumps(flat))
    safetensors.torch.save_file(state, out / "model.safetensors")
    return out


def editor_alone(folder: Path) -> WEMGAN:
    """The model in `folder` with its renderer taken out (the landmark editor and the estimator)."""
    config = json.loads((folder / "config.json").read_text())
    config.pop("renderer", None)
    model = WEMGAN(**config)
    weights = safetensors.torch.load_file(folder / "model.safetensors")
    model.load_state_dict({name: value.float() for name, value in weights.items() if not name.startswith("renderer.")})
    return model.eval()


def test_the_shipped_model_edits_byte_identically_from_its_old_format(tmp_path):
    """A folder of the format of before 2026-12-06 loads (wemgan.legacy) and makes exactly the same
    edits as today's, down to the last byte, given the same fits: that format stored them in
    float16, baked in at motion_strength, so the comparison holds hub/default's fits rounded so. That
    format had no renderer and no whole brows: hub/default's editor alone, without them, is compared."""
    shipped = editor_alone(ROOT / "hub/default")
    old = WEMGAN.from_pretrained(legacy_folder(ROOT / "hub/default", tmp_path / "old"))
    assert old.editor.motion_strength == shipped.editor.motion_strength == 0.75
    strength = shipped.editor.motion_strength
    with torch.no_grad():
        for name in ("motion_basis", "appearance_maps"):
            fit = getattr(shipped.editor, name)
            fit.copy_((fit * strength).half().float() / strength)
        shipped.editor.appearance_mean.copy_(shipped.editor.appearance_mean.half().float())
        shipped.editor.jaw_reading.zero_()  # that format had no jaw reading: AU26 read by the estimator
    shipped.editor.whole_brows = False  # nor whole brows: its flow passed through the landmarks alone
    rng = np.random.default_rng(0)
    crops = (rng.random((3, 128, 128, 3)) * 255).astype(np.uint8)
    for spec in ({"AU06": 0.8, "AU12": 0.9}, {"AU01": 0.8, "AU02": 0.8, "AU25": 0.7, "AU26": 0.9}):
        assert np.array_equal(shipped.edit(crops, aus=spec), old.edit(crops, aus=spec))
    photo = ROOT / "wemgan/data/photos/grace_hopper.jpg"
    assert np.array_equal(
        np.asarray(shipped.edit(photo, aus="Happy", align=False)), np.asarray(old.edit(photo, aus="Happy", align=False))
    )


def test_a_research_variant_folder_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"generator_output": "warp", "base_channels": 8}))
    safetensors.torch.save_file({"x": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="commit 060beb0"):
        WEMGAN.from_pretrained(tmp_path)


def test_the_renderer_changes_nothing_outside_its_mask_and_nothing_for_an_empty_one():
    torch.manual_seed(0)
    renderer = Renderer(RendererConfig(base_channels=8, max_channels=16)).eval()
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    landmarks = torch.rand(2, 68, 2) * 80 + 24
    aus = torch.rand(2, 17)
    assert torch.equal(renderer(x, torch.zeros(2, 1, 128, 128), landmarks, aus), x)
    mask = training_masks(landmarks, 128, torch.Generator().manual_seed(0))
    hard = (mask == 1).float()
    out = renderer(x, hard, landmarks, aus)
    assert torch.equal(out * (1 - hard), x * (1 - hard)) and not torch.equal(out, x)
    with pytest.raises(ValueError, match="mask of shape"):
        renderer(x, hard[:, :, :64], landmarks, aus)


def test_a_colour_centred_renderer_moves_its_drawing_with_the_colour_of_what_it_sees():
    torch.manual_seed(0)
    renderer = Renderer(RendererConfig(base_channels=8, max_channels=16, centre_colour=True)).eval()
    x = torch.rand(1, 3, 128, 128) - 0.5
    landmarks = torch.rand(1, 68, 2) * 80 + 24
    mask = (training_masks(landmarks, 128, torch.Generator().manual_seed(0)) == 1).float()
    cast = torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1)  # a tinted photo of the same face
    aus = torch.zeros(1, 17)
    out, tinted = renderer(x, mask, landmarks, aus), renderer(x + cast, mask, landmarks, aus)
    inside = ((mask > 0) & (out.abs() < 1) & ((out + cast).abs() < 1)).expand_as(out)  # where no clamp cut it
    assert torch.allclose((tinted - out)[inside], cast.expand_as(out)[inside], atol=1e-5)
    assert torch.equal(tinted * (1 - mask), (x + cast) * (1 - mask))
    plain = Renderer(RendererConfig(base_channels=8, max_channels=16)).eval()
    plain.load_state_dict(renderer.state_dict())  # the same weights, blind to nothing
    shift = plain(x + cast, mask, landmarks, aus) - plain(x, mask, landmarks, aus)
    assert not torch.allclose(shift, cast * mask, atol=1e-3)


def test_a_colour_centred_renderer_draws_grey_on_a_black_and_white_photo_and_colour_on_a_colour_one():
    torch.manual_seed(0)
    renderer = Renderer(RendererConfig(base_channels=8, max_channels=16, centre_colour=True)).eval()
    landmarks = torch.rand(1, 68, 2) * 80 + 24
    mask = (training_masks(landmarks, 128, torch.Generator().manual_seed(0)) == 1).float()
    aus = torch.rand(1, 17)
    grey = (torch.rand(1, 1, 128, 128) - 0.5).expand(1, 3, 128, 128)
    out = renderer(grey, mask, landmarks, aus)
    assert not torch.equal(out, grey) and torch.allclose(out - out.mean(1, keepdim=True), torch.zeros_like(out),
                                                         atol=1e-5)  # fmt: skip
    colour = torch.rand(1, 3, 128, 128) - 0.5
    drawn = renderer(colour, mask, landmarks, aus)
    assert (drawn - drawn.mean(1, keepdim=True))[(mask > 0).expand_as(drawn)].abs().max() > 0.05


def test_a_white_balanced_renderer_scales_its_drawing_with_a_photos_colour_cast():
    """A cast multiplies colours (in [0, 1]); white-balanced, the drawing is multiplied alike, where drawing
    relative to the mean colour alone would add the cast's offset (a cool photo's dark mouth turns blue)."""
    torch.manual_seed(0)
    config = RendererConfig(base_channels=8, max_channels=16, centre_colour=True, white_balance=True)
    renderer = Renderer(config).eval()
    x = torch.rand(1, 3, 128, 128) * 0.8 - 0.6
    landmarks = torch.rand(1, 68, 2) * 80 + 24
    mask = (training_masks(landmarks, 128, torch.Generator().manual_seed(0)) == 1).float()
    aus = torch.rand(1, 17)
    mean = ((visible_mean_colour(x, mask) + 1) / 2).flatten()
    cast = torch.tensor([0.85, 1.0, 1.15])
    cast = (cast * mean.mean() / (cast * mean).mean()).view(1, 3, 1, 1)  # tints, keeps the mean's brightness
    out, tinted = renderer(x, mask, landmarks, aus), renderer((x + 1) * cast - 1, mask, landmarks, aus)
    unclamped = (out.abs() < 1) & (tinted.abs() < 1)
    assert unclamped[(mask > 0).expand_as(out)].float().mean() > 0.5
    assert torch.allclose((tinted + 1)[unclamped], ((out + 1) * cast)[unclamped], atol=1e-4)  # inside the mask too
    assert torch.equal(renderer(x, torch.zeros_like(mask), landmarks, aus), x)  # nothing to draw: no change
    gains = white_balance_gains(x, mask)
    assert torch.allclose((gains.flatten() * mean).mean(), mean.mean())  # brightness kept
    balanced = gains.flatten() * mean
    assert torch.allclose(balanced.log() - balanced[1].log(), torch.tensor([TRAINING_TINT[0], 0, TRAINING_TINT[1]]),
                          atol=1e-5)  # fmt: skip
    grey = (torch.rand(1, 1, 128, 128) - 0.5).expand(1, 3, 128, 128)  # a black-and-white photo: no gains
    assert torch.allclose(white_balance_gains(grey, mask), torch.ones(1, 3, 1, 1), atol=1e-5)
    plain = Renderer(replace(config, white_balance=False)).eval()
    plain.load_state_dict(renderer.state_dict())
    assert torch.allclose(plain(grey, mask, landmarks, aus), renderer(grey, mask, landmarks, aus), atol=1e-4)


def test_windows_are_cut_and_pasted_back_exactly_and_each_pixel_has_one_part():
    landmarks = drawn_face_landmarks().expand(2, -1, -1).clone()
    landmarks[1] += 30  # a face near the corner: its windows stay inside the image
    corners = window_corners(landmarks, 64, 128)
    assert corners.shape == (2, 3, 2) and corners.min() >= 0 and corners.max() <= 64
    x = torch.rand(2, 3, 128, 128)
    samples = torch.tensor([0, 1])
    windows = crop(x, samples, corners[:, 0], 64)
    x0, y0 = corners[1, 0].tolist()
    assert torch.equal(windows[1], x[1, :, y0 : y0 + 64, x0 : x0 + 64])
    pasted = paste_add(torch.zeros_like(x), windows, samples, corners[:, 0])
    assert torch.equal(pasted[1, :, y0 : y0 + 64, x0 : x0 + 64], windows[1])
    assert torch.isclose(pasted[1].sum(), windows[1].sum())  # and nothing outside the window
    local = landmarks[1:] - corners[1, 0].float()  # the face's contours, seen through its mouth window
    seen = draw_contours(landmarks[1:], 128)[..., y0 : y0 + 64, x0 : x0 + 64]
    assert torch.allclose(draw_contours(local, 64, face_size=128), seen, atol=1e-5)
    share = torch.zeros(2, 3, 128, 128)
    share[:, 0, 90:100, 40:60] = 1  # a mouth share: its window is centred on it, 4 px from its border at least
    centred = share_window_corners(share, landmarks, 64)
    assert centred[:, 0].tolist() == [[18, 63], [18, 63]]
    assert (centred[:, 1:] - corners[:, 1:]).abs().max() <= 1  # empty shares: windows on the parts' landmarks
    interiors = window_interiors(centred, 64, 128)
    assert interiors[0, 0].sum() == 56 * 56 and interiors[0, 0, 63 + 3, 30] == 0 and interiors[0, 0, 63 + 4, 30] == 1
    owners = nearest_part(landmarks, 128)
    assert owners.shape == (2, 3, 128, 128) and bool((owners.sum(1) >= 1).all())
    mask, parts = window_training_masks(landmarks, 128, 64, torch.Generator().manual_seed(0))
    for i, part in enumerate(parts.tolist()):
        x0, y0 = corners[i, part].tolist()
        inside = mask[i, 0, y0 : y0 + 64, x0 : x0 + 64].sum()
        assert mask[i].sum() > 50 and torch.isclose(inside, mask[i].sum())  # one part, inside its window


def test_heatmaps_peak_at_each_parts_landmarks_in_the_contours_channel_order():
    landmarks = drawn_face_landmarks()
    maps = draw_heatmaps(landmarks, 128)
    assert maps.shape == draw_contours(landmarks, 128).shape
    x, y = landmarks[0, 62].round().long().tolist()  # an inner lip point: only the inner-lips channel peaks
    assert maps[0, 4, y, x] > 0.8 and maps[0, :3, y, x].max() < 0.1
    renderer = Renderer(RendererConfig(base_channels=8, max_channels=16, guide="heatmaps"))
    assert renderer(torch.zeros(1, 3, 128, 128), torch.ones(1, 1, 128, 128), landmarks, torch.zeros(1, 17)).shape == (
        1, 3, 128, 128)  # fmt: skip
    with pytest.raises(ValueError, match="guide"):
        RendererConfig(guide="points").validate()


def test_edit_shaped_masks_are_cut_to_one_part_and_empty_ones_fall_back():
    landmarks = drawn_face_landmarks().expand(3, -1, -1).clone()
    fallback, fallback_parts = window_training_masks(landmarks, 128, 64, torch.Generator().manual_seed(0))
    edited = torch.zeros(3, 1, 128, 128)
    edited[0] = mouth_mask(landmarks[:1], 128, 3.0)  # face 0's edit redraws its mouth; face 1's nothing
    edited[2] = mouth_mask(landmarks[:1], 128, 14.0)  # face 2's mouth share is wider than a 64-px window draws
    mask, parts = window_masks_of(edited, landmarks, torch.Generator().manual_seed(0), fallback, fallback_parts)
    assert parts[0] == 0 and torch.equal(mask[0], edited[0] * nearest_part(landmarks, 128)[0, :1])
    assert parts[1] == fallback_parts[1] and torch.equal(mask[1], fallback[1])
    # kept whole, as an edit gives it: training draws it through the zoomed-out window, as edits do
    assert parts[2] == 0 and torch.equal(mask[2], edited[2] * nearest_part(landmarks, 128)[2, :1])
    assert zoomed_window_scales(part_shares(mask[2:], landmarks[2:]), 64)[0, 0] > 1


def test_the_part_renderer_draws_only_its_mask_inside_its_windows():
    torch.manual_seed(0)
    renderer = PartRenderer(RendererConfig(base_channels=8, max_channels=16, window=64)).eval()
    landmarks = drawn_face_landmarks().expand(2, -1, -1).clone()
    x, aus = torch.rand(2, 3, 128, 128) * 2 - 1, torch.rand(2, 17)
    assert torch.equal(renderer(x, torch.zeros(2, 1, 128, 128), landmarks, aus), x)
    mask = torch.zeros(2, 1, 128, 128)
    mask[0, :, 80:100, 50:80] = 1  # around the mouth
    mask[:, :, 0:3, 0:3] = 1  # the image's corner: within WINDOW_MARGIN of any window's border, left as it is
    out = renderer(x, mask, landmarks, aus)
    assert torch.equal(out[:, :, 0:3, 0:3], x[:, :, 0:3, 0:3]) and torch.equal(out[1], x[1])
    assert torch.equal(out * (1 - mask), x * (1 - mask))
    assert not torch.equal(out[0, :, 80:100, 50:80], x[0, :, 80:100, 50:80])
    with pytest.raises(ValueError, match="window"):
        RendererConfig(window=48).validate()
    with pytest.raises(ValueError, match="window"):
        PartRenderer(RendererConfig())


def test_a_share_wider_than_a_window_is_drawn_whole_by_a_zoomed_out_window():
    torch.manual_seed(0)
    renderer = PartRenderer(RendererConfig(base_channels=8, max_channels=16, window=64)).eval()
    landmarks = drawn_face_landmarks().expand(2, -1, -1).clone()
    x, aus = torch.rand(2, 3, 128, 128) * 2 - 1, torch.rand(2, 17)
    mask = torch.zeros(2, 1, 128, 128)
    mask[0, :, 84:104, 22:106] = 1  # an 84-px mouth (a strong edit's): wider than the 56 px a window draws
    mask[1, :, 88:100, 50:80] = 1  # a mouth that fits
    assert zoomed_window_scales(part_shares(mask, landmarks), 64)[:, 0].tolist() == [1.5, 1.0]
    out = renderer(x, mask, landmarks, aus)
    assert torch.equal(out * (1 - mask), x * (1 - mask))
    assert (out[0, :, 84:104, 22:30] != x[0, :, 84:104, 22:30]).all()  # its ends, beyond a 64-px window, drawn
    assert out.abs().max() <= 1
    for face in (0, 1):  # each face's windows change that face only
        alone = renderer(x[face : face + 1], mask[face : face + 1], landmarks[:1], aus[face : face + 1])
        assert torch.allclose(alone, out[face : face + 1], atol=1e-6)


def test_the_edit_mask_covers_what_the_edit_reveals_and_nothing_when_nothing_moves():
    landmarks = drawn_face_landmarks()  # brows at y 40, upper lids near y 49, lips closed at y 94
    still = torch.zeros_like(landmarks)
    assert edit_mask(landmarks, still, 128).sum() == 0
    opening = still.clone()
    opening[0, [*range(55, 60), *range(65, 68)], 1] = 6.0  # the lower lip drops: the mouth opens
    rows = torch.nonzero(edit_mask(landmarks, opening, 128)[0, 0].amax(1) > 0).flatten()
    assert rows.min() >= 90 and rows.max() <= 104  # the inner mouth with its rim; not the chin, not the eyes
    raised = still.clone()
    raised[0, 17:27, 1] = -4.0  # both brows rise by 4 px
    column = edit_mask(landmarks, raised, 128)[0, 0, :, 44]
    assert column[41:48].all() and column[:39].sum() == 0 and column[49:].sum() == 0  # skin, not brow hair, not the eye
    lowered = still.clone()
    lowered[0, 17:27, 1] = 4.0  # a falling brow only squeezes skin: the warp's job
    assert edit_mask(landmarks, lowered, 128).sum() == 0
    mouth_only = RendererConfig(brow_skin=False)  # rising brows' skin left to the warp as well
    assert edit_mask(landmarks, raised, 128, mouth_only).sum() == 0
    assert torch.equal(edit_mask(landmarks, opening, 128, mouth_only), edit_mask(landmarks, opening, 128))


def test_keep_inner_mouth_leaves_the_teeth_shown_before_and_after_and_draws_only_the_change(tmp_path):
    landmarks = drawn_face_landmarks()
    landmarks[0, 65:68, 1] += 6.0  # an open mouth: the inner lower lip 6 px below the upper
    wider = torch.zeros_like(landmarks)
    wider[0, [*range(55, 60), *range(65, 68)], 1] = 4.0  # it opens 4 px further
    keep = RendererConfig(keep_inner_mouth=True)
    every, kept = edit_mask(landmarks, wider, 128), edit_mask(landmarks, wider, 128, keep)
    assert every[0, 0, 96, 64] == 1 and kept[0, 0, 96, 64] == 0  # inside before and after: its own teeth stay
    assert kept[0, 0, 103, 64] == 1  # only the edit's mouth shows here: drawn
    assert (kept <= every).all() and kept.sum() < every.sum()
    model = WEMGAN(editor={"appearance": False}, renderer={"base_channels": 8, "max_channels": 16, "window": 64,
                   "keep_inner_mouth": True}, estimator={"channels": 8, "max_channels": 16})  # fmt: skip
    model.save_pretrained(tmp_path)
    assert WEMGAN.from_pretrained(tmp_path).model_config.renderer.keep_inner_mouth


def test_mouth_surroundings_redraw_moving_lips_whole_with_the_skin_around_them(tmp_path):
    landmarks = drawn_face_landmarks()
    smile = torch.zeros_like(landmarks)
    smile[0, [48, 54], 1], smile[0, 48, 0], smile[0, 54, 0] = -4.0, -3.0, 3.0  # the corners go up and out
    surroundings = RendererConfig(mouth_surroundings=6)
    revealed, around = edit_mask(landmarks, smile, 128), edit_mask(landmarks, smile, 128, surroundings)
    assert (revealed <= around).all() and around.sum() > 2 * revealed.sum()
    lips = landmarks[0, 48:60]
    below_lower_lip, beside_corner = lips[:, 1].max().round().int() + 4, lips[:, 0].max().round().int() + 8
    assert revealed[0, 0, below_lower_lip, 64] == 0 and around[0, 0, below_lower_lip, 64] == 1  # skin under the lip
    assert around[0, 0, int(lips[6, 1]) - 4, beside_corner] == 1  # beside the raised corner, where it goes
    assert around[0, 0, 20, 64] == 0 and around[0, 0, 127, 64] == 0  # not the brows, not the neck
    assert edit_mask(landmarks, torch.zeros_like(landmarks), 128, surroundings).sum() == 0  # still lips
    with pytest.raises(ValueError, match="mouth_surroundings"):
        WEMGAN(editor={}, renderer={"mouth_surroundings": 40})
    model = WEMGAN(editor={"appearance": False}, renderer={"base_channels": 8, "max_channels": 16, "window": 64,
                   "mouth_surroundings": 6}, estimator={"channels": 8, "max_channels": 16})  # fmt: skip
    model.save_pretrained(tmp_path)
    assert WEMGAN.from_pretrained(tmp_path).model_config.renderer.mouth_surroundings == 6


def test_smile_skin_redraws_the_folds_and_the_skin_under_the_lower_lip_but_not_the_lips(tmp_path):
    landmarks = drawn_face_landmarks()
    smile = torch.zeros_like(landmarks)
    smile[0, [48, 54], 1], smile[0, 48, 0], smile[0, 54, 0] = -4.0, -3.0, 3.0  # the corners go up and out
    revealed, skin = edit_mask(landmarks, smile, 128), edit_mask(landmarks, smile, 128, RendererConfig(smile_skin=True))
    assert (revealed <= skin).all() and skin.sum() > 3 * revealed.sum()
    points = landmarks[0]
    for nose_wing, corner in ((31, 48), (35, 54)):  # the fold, halfway from the nose wing to the corner, just outside
        halfway = (points[nose_wing] + points[corner]) / 2
        outward = 1.0 if corner == 54 else -1.0
        x, y = (halfway[0] + outward * 3).round().int(), halfway[1].round().int()
        assert revealed[0, 0, y, x] == 0 and skin[0, 0, y, x] == 1
    under_lip = points[57, 1].round().int() + 3
    assert revealed[0, 0, under_lip, 64] == 0 and skin[0, 0, under_lip, 64] == 1  # the skin under the lower lip
    upper_lip = ((points[51, 1] + points[62, 1]) / 2).round().int()
    assert skin[0, 0, upper_lip, points[51, 0].round().int()] == 0  # the lips stay the warp's
    assert skin[0, 0, 20, 64] == 0 and skin[0, 0, 127, 64] == 0  # not the brows, not the neck
    assert edit_mask(landmarks, torch.zeros_like(landmarks), 128, RendererConfig(smile_skin=True)).sum() == 0
    model = WEMGAN(editor={"appearance": False}, renderer={"base_channels": 8, "max_channels": 16, "window": 64,
                   "smile_skin": True}, estimator={"channels": 8, "max_channels": 16})  # fmt: skip
    model.save_pretrained(tmp_path)
    assert WEMGAN.from_pretrained(tmp_path).model_config.renderer.smile_skin


def reloaded_renderer_config(folder: Path, **options: object) -> RendererConfig:
    """The renderer config of a tiny windowed model with these RendererConfig options, saved and loaded."""
    renderer = {"base_channels": 8, "max_channels": 16, "window": 64, **options}
    model = WEMGAN(editor={"appearance": False}, renderer=renderer, estimator={"channels": 8, "max_channels": 16})
    model.save_pretrained(folder)
    return WEMGAN.from_pretrained(folder).model_config.renderer


def test_cheek_windows_draw_a_smiles_folds_at_the_faces_resolution_and_train_on_fold_bands(tmp_path):
    landmarks = 64 + (drawn_face_landmarks() - 64) * 1.2  # a face as large as faces-au's
    smile = torch.zeros_like(landmarks)
    smile[0, [48, 54], 1], smile[0, 48, 0], smile[0, 54, 0] = -8.0, -6.0, 6.0  # a wide smile
    mask = edit_mask(landmarks, smile, 128, RendererConfig(smile_skin=True))
    mouth_only = zoomed_window_scales(part_shares(mask, landmarks), 64)[0, 0]
    shares = part_shares(mask, landmarks, WITH_CHEEKS)
    assert shares.shape == (1, 5, 128, 128) and torch.equal(shares.sum(1, keepdim=True), mask)  # each pixel once
    right, left, _ = smile_skin_bands(landmarks, 128)
    for band, part in ((right, 3), (left, 4)):  # a fold band's pixels are its cheek's, not the mouth's
        assert (shares[0, part] * band[0, 0]).sum() > 0.6 * (mask[0, 0] * band[0, 0]).sum()
    scales = zoomed_window_scales(shares, 64)
    assert mouth_only > 1.1 and scales.amax() == 1  # every share fits a window at the face's resolution
    mask, parts = window_training_masks(landmarks.expand(64, -1, -1), 128, 64, torch.Generator().manual_seed(0),
                                        WITH_CHEEKS)  # fmt: skip
    assert set(parts.tolist()) == {0, 1, 2, 3, 4}
    cheek = parts.tolist().index(3)
    assert torch.equal(mask[cheek] > 0, (right[0] * window_interiors(window_corners(landmarks, 64, 128, WITH_CHEEKS),
                                                                     64, 128, margin=0)[0, 3]) > 0)  # fmt: skip
    config = RendererConfig(base_channels=8, max_channels=16, window=64, smile_skin=True, cheek_windows=True)
    renderer = PartRenderer(config).eval()
    x, aus = torch.rand(1, 3, 128, 128) * 2 - 1, torch.zeros(1, 17)
    assert torch.equal(renderer(x, torch.zeros(1, 1, 128, 128), landmarks, aus), x)
    drawn = renderer(x, right, landmarks, aus)
    assert torch.equal(drawn * (1 - right), x * (1 - right)) and (drawn - x).abs().amax() > 0.01
    with pytest.raises(ValueError, match="window"):
        RendererConfig(cheek_windows=True).validate()
    assert reloaded_renderer_config(tmp_path, smile_skin=True, cheek_windows=True).cheek_windows


def test_a_warped_input_renderer_reads_the_pixels_inside_its_mask_and_a_blanking_one_does_not(tmp_path):
    torch.manual_seed(0)
    config = RendererConfig(base_channels=8, max_channels=16, centre_colour=True)
    blanking, reading = Renderer(config).eval(), Renderer(replace(config, warped_input=True)).eval()
    reading.load_state_dict(blanking.state_dict())  # the same weights: only what each is shown differs
    x = torch.rand(1, 3, 128, 128) - 0.5
    landmarks = torch.rand(1, 68, 2) * 80 + 24
    mask = (training_masks(landmarks, 128, torch.Generator().manual_seed(0)) == 1).float()
    other = x + mask * (torch.rand_like(x) - 0.5)  # other pixels inside the mask only
    aus = torch.zeros(1, 17)
    assert torch.equal(blanking(x, mask, landmarks, aus), blanking(other, mask, landmarks, aus))
    read, read_other = reading(x, mask, landmarks, aus), reading(other, mask, landmarks, aus)
    assert not torch.allclose(read, read_other, atol=1e-3)
    assert torch.equal(read * (1 - mask), x * (1 - mask)) and torch.equal(reading(x, 0 * mask, landmarks, aus), x)
    model = WEMGAN(editor={"appearance": False}, renderer={"base_channels": 8, "max_channels": 16, "window": 64,
                   "warped_input": True}, estimator={"channels": 8, "max_channels": 16})  # fmt: skip
    model.save_pretrained(tmp_path)
    assert WEMGAN.from_pretrained(tmp_path).model_config.renderer.warped_input


def test_blank_inner_mouth_draws_the_inner_mouth_afresh_and_reads_the_warped_lips_around_it(tmp_path):
    torch.manual_seed(0)
    landmarks = drawn_face_landmarks()
    landmarks[0, 65:68, 1] += 6  # parted lips: an inner mouth to blank
    config = RendererConfig(base_channels=8, max_channels=16, centre_colour=True, warped_input=True)
    reading, blanking = Renderer(config).eval(), Renderer(replace(config, blank_inner_mouth=True)).eval()
    blanking.load_state_dict(reading.state_dict())
    mask = mouth_mask(landmarks, 128, 6.0)  # the lips and 6 px of skin, as mouth_surroundings redraws them
    inner = dilate(inner_mouth_mask(landmarks, 128), 2)
    assert inner.sum() > 40 and (mask * (1 - inner)).sum() > 200
    x, aus = torch.rand(1, 3, 128, 128) - 0.5, torch.zeros(1, 17)
    new_teeth = x + inner * (torch.rand_like(x) - 0.5)  # other pixels in the inner mouth only
    new_lips = x + mask * (1 - inner) * (torch.rand_like(x) - 0.5)  # other pixels in the rest of the mask
    assert torch.equal(blanking(x, mask, landmarks, aus), blanking(new_teeth, mask, landmarks, aus))
    assert not torch.allclose(reading(x, mask, landmarks, aus), reading(new_teeth, mask, landmarks, aus), atol=1e-3)
    assert not torch.allclose(blanking(x, mask, landmarks, aus), blanking(new_lips, mask, landmarks, aus), atol=1e-3)
    assert torch.equal(blanking(x, 0 * mask, landmarks, aus), x)
    with pytest.raises(ValueError, match="warped_input"):
        RendererConfig(blank_inner_mouth=True).validate()
    assert reloaded_renderer_config(tmp_path, warped_input=True, blank_inner_mouth=True).blank_inner_mouth


def test_a_round_trip_is_no_change_for_no_move_and_leaves_an_edits_marks_for_a_real_one():
    editor = WEMGAN.from_pretrained(ROOT / "hub/default").editor.float()
    y, x = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    face = torch.stack([x, y, 1 - x * y])[None] * 1.6 - 0.8  # smooth: resampling alone changes little
    landmarks = drawn_face_landmarks()
    assert torch.allclose(editor.round_trip(face, landmarks, torch.zeros_like(landmarks)), face, atol=1e-5)
    parted = editor.landmark_moves(landmarks, torch.eye(17)[[AU_NAMES.index("AU25")]])
    changed = (editor.round_trip(face, landmarks, parted) - face).abs().amax(1, keepdim=True)
    mouth = mouth_mask(landmarks, 128, 2.0)
    assert (changed * mouth).amax() > 0.5  # the drawn mouth, squeezed back between the lips
    assert (changed * (1 - dilate(mouth, 16))).amax() < 0.1  # far from the moves, nearly as it was


def test_an_editor_with_a_renderer_round_trips_and_keeps_no_change_exact(tmp_path, face_crop):
    model = WEMGAN(editor={"appearance": False}, renderer={"base_channels": 8, "max_channels": 16},
                   estimator={"channels": 8, "max_channels": 16})  # fmt: skip
    model.save_pretrained(tmp_path)
    loaded = WEMGAN.from_pretrained(tmp_path)
    assert loaded.model_config.kind == "editor+renderer"
    assert "gan" not in WEMGAN(editor={}).model_config.kind
    assert np.array_equal(np.asarray(loaded.edit(face_crop, delta={"AU12": 0.0})), np.asarray(face_crop))
    assert loaded.edit(face_crop, delta={"AU12": 1.0, "AU25": 1.0}).size == (128, 128)
    windowed = WEMGAN(editor={"appearance": False}, renderer={"base_channels": 8, "max_channels": 16, "window": 64},
                      estimator={"channels": 8, "max_channels": 16})  # fmt: skip
    windowed.save_pretrained(tmp_path / "windowed")
    loaded = WEMGAN.from_pretrained(tmp_path / "windowed")
    assert isinstance(loaded.renderer, PartRenderer) and loaded.model_config.renderer.window == 64
    assert np.array_equal(np.asarray(loaded.edit(face_crop, delta={"AU12": 0.0})), np.asarray(face_crop))
    assert loaded.edit(face_crop, delta={"AU12": 1.0, "AU25": 1.0}).size == (128, 128)
