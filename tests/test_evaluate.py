"""The evaluation CLI on a tiny random model and a tiny SynthFACS split, and the ablation runner."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image

from wemgan import WEMGAN, ablations, evaluate
from wemgan.aus import AU_NAMES
from wemgan.metrics import acd

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
N = 8
TABLE_KEYS = {"acd", "ed", "ed_source", "l1", "ssim", "psnr", "is", "is_std", "fid", "au_mae", "au_pcc"}
PAIRED_KEYS = {f"paired_{m}{s}" for m in ("l1", "psnr", "ssim") for s in ("", "_source", "_gain")}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    WEMGAN(**TINY).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    """A stand-in with the documented interface: (N x D features, N x 1008 logits) of uint8 images.

    D = 256 instead of Inception's 2048 keeps the covariance square roots fast here.
    """

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Linear(3 * 16, 256)
            self.logits = torch.nn.Linear(256, 1008)

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.nn.functional.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1)
            features = torch.relu(self.features(x))
            return features, self.logits(features)

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / "inception.pt"
    torch.jit.script(Net()).save(str(path))
    return path


def run(model_dir, out, *extra) -> dict:
    evaluate.main(["--model", str(model_dir), "--data", "synthfacs", "--limit", str(N), "--out", str(out), *extra])
    return json.loads((out / "results.json").read_text())


def test_pairing_is_reproducible_and_never_pairs_an_image_with_itself():
    first, again, other = evaluate.make_pairs(50, 0), evaluate.make_pairs(50, 0), evaluate.make_pairs(50, 1)
    assert first == again and first != other
    assert all(target != i and 0 <= target < 50 for i, target in enumerate(first))
    with pytest.raises(ValueError, match="at least 2"):
        evaluate.make_pairs(1, 0)


def test_cli_writes_every_metric_and_reuses_its_pairs(model_dir, inception, tmp_path):
    edits = tmp_path / "edits"
    results = run(model_dir, tmp_path / "a", "--seed", "3", "--inception", str(inception), "--write-edits", str(edits))
    assert set(results["metrics"]) == TABLE_KEYS | PAIRED_KEYS
    expected_unavailable = set() if acd.acd_unavailable() is None else {"acd"}
    if evaluate.metrics.ssim_unavailable():
        expected_unavailable |= {"ssim", "paired_ssim", "paired_ssim_source", "paired_ssim_gain"}
    assert set(results["unavailable"]) == expected_unavailable
    assert all(np.isfinite(v) for k, v in results["metrics"].items() if k not in expected_unavailable)
    assert results["pairs"] == N and results["seed"] == 3 and results["trained"] is False
    assert sorted(p.name for p in edits.iterdir()) == [f"{i:05d}.png" for i in range(N)]
    assert Image.open(edits / "00000.png").size == (128, 128)
    markdown = (tmp_path / "a" / "results.md").read_text()
    assert "| ACD ↓ | ED ↓ | ED unedited |" in markdown and "| L1 ↓ | SSIM ↑ | PSNR ↑ |" in markdown
    assert "| IS ↑ | IS std | FID ↓ |" in markdown and "unedited source" in markdown
    # A second run on the stored pairs (with another --seed) scores the same pairs, to the same values.
    pairs = tmp_path / "a" / "pairs.json"
    again = run(model_dir, tmp_path / "a", "--seed", "9", "--pairs", str(pairs), "--inception", str(inception))
    assert json.loads((tmp_path / "a" / "pairs.json").read_text()) == json.loads(pairs.read_text())
    assert again["seed"] == 3 and again["metrics"] == pytest.approx(results["metrics"], rel=1e-6)
    assert len((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()) == 2


def test_missing_optional_dependencies_are_unavailable_not_zero(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(acd.faces, "available", lambda: False)
    monkeypatch.setattr(evaluate.metrics, "ssim_unavailable", lambda: "SSIM needs scikit-image")
    results = run(model_dir, tmp_path)
    for key in ("acd", "fid", "is", "ssim", "paired_ssim", "paired_ssim_gain"):
        assert results["metrics"][key] is None and results["unavailable"][key]
    assert results["metrics"]["psnr"] is not None and results["metrics"]["paired_psnr"] is not None
    assert "not installed" in results["unavailable"]["acd"] and "--inception" in results["unavailable"]["fid"]
    markdown = (tmp_path / "results.md").read_text()
    assert "| n/a |" in markdown and "## Unavailable" in markdown


def test_openface_csv_replaces_the_estimator(model_dir, tmp_path):
    """OpenFace output that measures every edit exactly at its target gives ED 0."""
    first = run(model_dir, tmp_path / "a")
    targets = json.loads((tmp_path / "a" / "pairs.json").read_text())["targets"]
    from wemgan.data.datasets import load_hf_dataset

    aus = np.asarray(load_hf_dataset("synthfacs", "test", n_identities=1, per_identity=N)["aus"])
    csv = tmp_path / "openface.csv"
    header = ["file", "confidence", *(f"{name}_r" for name in AU_NAMES)]
    rows = [[f"edits/{i:05d}.png", "0.98", *(f"{5 * v:.6f}" for v in aus[t])] for i, t in enumerate(targets)]
    csv.write_text("\n".join(", ".join(row) for row in [header, *rows]) + "\n")
    results = run(model_dir, tmp_path / "b", "--pairs", str(tmp_path / "a" / "pairs.json"), "--openface-csv", str(csv))
    assert results["metrics"]["ed"] == pytest.approx(0.0, abs=1e-5)
    assert results["metrics"]["ed_source"] > 0 and "OpenFace" in results["ed_by"]
    assert first["metrics"]["ed"] > 0


def test_pairs_of_another_data_size_are_rejected(model_dir, tmp_path):
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps({"seed": 0, "targets": evaluate.make_pairs(N + 1, 0)}))
    with pytest.raises(ValueError, match="does not pair"):
        run(model_dir, tmp_path / "out", "--pairs", str(pairs))


@pytest.mark.slow
def test_ablation_runner_trains_scores_and_tabulates_two_variants(tmp_path):
    tiny = [
        "--base_channels",
        "8",
        "--max_channels",
        "16",
        "--critic_base_channels",
        "8",
        "--critic_max_channels",
        "32",
    ]
    tiny += ["--estimator_channels", "8", "--estimator_max_channels", "16", "--train_batch_size", "2"]
    argv = ["--out", str(tmp_path), "--steps", "1", "--eval-limit", "4", "--variants", "backbone,plain_skips", *tiny]
    ablations.main(argv)
    table = (tmp_path / "ablations.md").read_text()
    assert "| U-Net backbone |" in table and "| full, plain skips instead of Haar |" in table
    configs = [
        json.loads((tmp_path / name / "hub" / "config.json").read_text()) for name in ("backbone", "plain_skips")
    ]
    assert (configs[0]["generator"]["skip_levels"], configs[0]["generator"]["au_fusion"]) == (0, "single")
    assert configs[1]["generator"]["skip_kind"] == "plain"
    assert (tmp_path / "plain_skips" / "eval" / "pairs.json").read_text() == (tmp_path / "pairs.json").read_text()


def test_ablation_variants_are_checked():
    with pytest.raises(SystemExit):
        ablations.parse_args(["--out", "x", "--variants", "backbone,nope"])
    args, extra = ablations.parse_args(["--out", "x", "--base_channels", "8"])
    assert args.variants == list(ablations.VARIANTS) and extra == ["--base_channels", "8"]
    assert sys.executable  # the runner trains with this interpreter


def test_user_edits_are_scored_by_measures_the_generator_cannot_fool(model_dir, tmp_path):
    from wemgan import edit_evaluation

    results = run(model_dir, tmp_path / "e", "--edit-faces", "4")
    edits = results["edits"]
    assert edits["faces"] == 4 and set(edits) == {"faces", "user", "raw"}
    for mode in ("user", "raw"):
        assert set(edits[mode]) >= {"transfer", *edit_evaluation.PRESETS}
        assert all(np.isfinite(edits[mode][kind]["chroma_ratio"]) for kind in edit_evaluation.PRESETS)
    if "edits/judge" not in results["unavailable"]:
        assert edits["user"]["transfer"]["judge_ed_ratio"] > 0
    if "edits/geometry" not in results["unavailable"]:
        assert "lip_corner_lift_fraction" in edits["user"]["Happy"]
        assert edits["user"]["single_AU12"]["measure"] == "lip_corner_lift"
    sheet = Image.open(tmp_path / "e" / "sheet.png")
    # 4 faces (fewer than 8 given), 2x; columns: source, reference, transfer, 4 presets, AU26, AU25+AU26,
    # a laughing face and its Surprise
    assert sheet.size == (11 * 128 * 2, 4 * 128 * 2)
    assert "Edits as users get them" in (tmp_path / "e" / "results.md").read_text()


def test_the_sheet_shows_laughing_faces_surprised_and_blank_rows_without_one():
    from wemgan import edit_evaluation

    labels = np.zeros((5, 17), np.float32)
    labels[[1, 3], edit_evaluation.AU_NAMES.index("AU12")] = [0.6, 0.9]
    labels[[1, 3], edit_evaluation.AU_NAMES.index("AU25")] = 0.7
    assert edit_evaluation.laughing_faces(labels).tolist() == [3, 1]  # strongest first
    faces = np.full((3, 4, 4, 3), 10, np.uint8)
    edits = {name: faces for name in ("transfer", *edit_evaluation.PRESETS, *edit_evaluation.SHEET_EDITS)}
    edits["laughing Surprise"] = faces[:1] + 5
    grid = np.asarray(edit_evaluation.sheet(faces, faces, edits, faces[:1]))
    assert grid.shape == (3 * 4 * 2, 11 * 4 * 2, 3)
    assert (grid[:8, -8:] == 15).all() and (grid[8:, -16:] == 255).all()  # one laughing row, then blanks


def test_surprise_is_judged_against_its_strongest_natural_effects():
    from wemgan import edit_evaluation
    from wemgan.metrics import natural_effects

    chosen = edit_evaluation.preset_references("Surprise", natural_effects())
    assert chosen["brow_height"][0] == "AU02" and chosen["mouth_opening"][0] == "AU25"
    assert edit_evaluation.preset_references("Happy", natural_effects())["lip_corner_lift"][0] == "AU12"
