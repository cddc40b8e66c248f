"""The model shipped in hub/default: its files, size and card, and that it does what the card says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from wemgan import WEMGAN, metrics
from wemgan.demo import load_model
from wemgan.renderer import PartRenderer

DEFAULT = Path(__file__).resolve().parents[1] / "hub" / "default"
FACES_AU = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces-au"
MAX_BYTES = 40 * 2**20


@pytest.fixture(scope="module")
def shipped() -> WEMGAN:
    return WEMGAN.from_pretrained(DEFAULT)


@pytest.fixture(scope="module")
def card() -> str:
    return (DEFAULT / "README.md").read_text()


def card_table(card: str, header: str) -> dict[str, float]:
    """The values of the card's Markdown table whose header row contains `header`."""
    lines = card.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("|") and header in line)
    names = [cell.strip().split(" ")[0] for cell in lines[row].strip("|").split("|")]
    values = [float(cell) for cell in lines[row + 2].strip("|").split("|")]
    return dict(zip(names, values, strict=True))


def test_folder_holds_config_weights_and_card_within_40_mb():
    assert sorted(p.name for p in DEFAULT.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert sum(p.stat().st_size for p in DEFAULT.iterdir()) <= MAX_BYTES
    with safe_open(DEFAULT / "model.safetensors", "pt") as weights:
        names = weights.keys()  # a safetensors file handle is not iterable
        dtypes = {name: weights.get_slice(name).get_dtype() for name in names}
    fits = {"editor.motion_basis", "editor.jaw_reading", "editor.appearance_mean", "editor.appearance_maps"}  # exact
    assert {dtypes[name] for name in fits} == {"F32"}
    assert {dtype for name, dtype in dtypes.items() if name not in fits} == {"F16"}


def test_loads_as_a_trained_model_that_the_app_serves(shipped):
    assert shipped.is_trained and shipped.provenance["dataset"].endswith("faces-au")
    model, status = load_model(str(DEFAULT))
    assert model is not None, status
    assert "landmark motion of real faces" in status and "non-commercial" in status  # what the visitor reads
    assert next(model.parameters()).dtype == torch.float32  # fp16 storage, fp32 compute
    assert model.editor.whole_brows  # strong brow edits move the brows, not smear them over the eyes


def test_card_states_data_licence_commands_results_and_limits(card):
    assert "license: other" in card and "non-commercial" in card.lower()
    for needed in (
        "train_accelerate.py",
        "python -m wemgan.evaluate",
        "Held-out",
        "## Intended use",
        "## Known limits",
    ):
        assert needed in card, needed
    assert {"L1", "SSIM", "PSNR"} <= set(card_table(card, "PSNR"))
    assert {"ACD", "ED"} <= set(card_table(card, "ED unedited"))
    assert "MAE" in card_table(card, "MAE")


def test_it_holds_the_trained_renderer_and_the_card_says_how_long_it_trained(shipped, card):
    """The WEM-GAN generator, trained as a renderer of what an edit opens, composed with the editor."""
    assert isinstance(shipped.renderer, PartRenderer)
    record = shipped.provenance["renderer"]
    assert record["steps"] > 0 and record["dataset"].endswith("faces-au")
    assert f"{record['steps']:,} steps" in card and f"{record['cpu_hours']:.1f} CPU-hours" in card
    _, status = load_model(str(DEFAULT))
    assert f"{record['cpu_hours']:.1f} CPU-hours" in status  # what the visitor reads


def test_zero_edit_returns_the_photo_and_a_preset_changes_it(shipped):
    face = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))
    assert torch.equal(shipped.edit(face, delta={"AU12": 0.0}), face)
    assert (shipped.edit(face, aus="Happy") - face).abs().max() > 0.02


@pytest.mark.skipif(not FACES_AU.is_dir(), reason="../shared/data/faces-au is not here")
def test_held_out_faces_reproduce_the_card(shipped, card):
    """64 test faces: reconstruction near the card's full-test PSNR, and edits closer to their targets."""
    from wemgan.evaluate import load_test_data, make_pairs, run_model

    images, aus, _ = load_test_data(str(FACES_AU), "test", 64, shipped.image_size)
    targets = make_pairs(len(images), seed=0)
    out = run_model(shipped, images, aus, targets, batch_size=16)
    psnr = float(metrics.psnr(metrics.to_unit(out["reconstructions"]), metrics.to_unit(images)).mean())
    assert psnr == pytest.approx(card_table(card, "PSNR")["PSNR"], abs=1.5)
    edited = metrics.expression_distances(out["edit_aus"].numpy(), aus[targets]).mean()
    unedited = metrics.expression_distances(out["source_aus"].numpy(), aus[targets]).mean()
    assert edited < unedited
    assert np.isfinite(out["edits"].numpy()).all()


@pytest.mark.skipif(not FACES_AU.is_dir(), reason="../shared/data/faces-au is not here")
def test_presets_move_held_out_faces_as_far_as_the_card_says(shipped):
    """dlib reads the edits of 32 test faces: Happy lifts the lip corners and Surprise raises the
    brows by at least half of real faces' effect (the card: 0.78 and 0.82 on 128 faces), and AU26
    alone drops the jaw: the lips part by at least 0.4 of how far real lips part."""
    from wemgan.edit_evaluation import as_uint8, geometry_fraction, preset_references
    from wemgan.evaluate import load_test_data
    from wemgan.metrics.geometry import geometry_changes, geometry_unavailable, natural_effects

    if geometry_unavailable():
        pytest.skip(geometry_unavailable())
    images, _, _ = load_test_data(str(FACES_AU), "test", 32, shipped.image_size)
    sources = metrics.to_uint8(images)
    effects = natural_effects()
    for preset, measure in (("Happy", "lip_corner_lift"), ("Surprise", "brow_height")):
        edits = as_uint8(shipped.edit(list(sources), aus=preset))
        _, effect = preset_references(preset, effects)[measure]
        assert geometry_fraction(geometry_changes(sources, edits), measure, effect) >= 0.5, preset
    jaw_drops = as_uint8(shipped.edit(list(sources), aus={"AU26": 0.8}))
    opening = geometry_fraction(geometry_changes(sources, jaw_drops), "mouth_opening", effects["AU26"]["effect"])
    assert opening >= 0.4 and effects["AU26"]["effect"] > 0.1  # judged by real lips parting, not AU26's labels


@pytest.mark.skipif(not FACES_AU.is_dir(), reason="../shared/data/faces-au is not here")
def test_its_au26_reading_follows_the_jaw_that_dlib_measures(shipped):
    """AU26 is read off the landmarks (LandmarkEditor.read_jaw_drop): on 96 test faces it correlates
    with the inner-lip gap dlib measures (0.65 on the evaluation's 128 faces; the AU estimator's own
    AU26, trained on labels that do not follow jaws, 0.27), and closed mouths read about 0."""
    from wemgan.evaluate import load_test_data
    from wemgan.landmark_fit import mouth_openness
    from wemgan.metrics.geometry import geometry_unavailable, landmarks68

    if geometry_unavailable():
        pytest.skip(geometry_unavailable())
    images, _, _ = load_test_data(str(FACES_AU), "test", 96, shipped.image_size)
    crops = metrics.to_uint8(images)
    gap = mouth_openness(landmarks68(crops))
    jaw = np.array([reading["AU26"] for reading in shipped.estimate_aus(list(crops), align=False)])
    assert np.corrcoef(jaw, gap)[0, 1] >= 0.45
    assert np.median(jaw[gap < 0.02]) < 0.05


def test_the_renderer_candidate_loads_composes_and_says_how_long_it_trained(shipped):
    """hub/renderer-candidate: the renderer in training, which the next run goes on from."""
    folder = DEFAULT.with_name("renderer-candidate")
    text = (folder / "config.json").read_text()
    record = json.loads(text)
    composed = WEMGAN(editor=shipped._hub_mixin_config["editor"], renderer=record["config"],
                      estimator=shipped._hub_mixin_config["estimator"])  # fmt: skip
    assert isinstance(composed.renderer, PartRenderer)  # the design the trials chose: windows
    composed.renderer.load_state_dict({k: v.float() for k, v in load_file(folder / "model.safetensors").items()})
    assert record["cpu_hours"] > 0 and record["steps"] > 0 and '"/' not in text  # no machine paths
    assert f"{record['cpu_hours']:.1f} CPU-hours" in (folder / "README.md").read_text()
