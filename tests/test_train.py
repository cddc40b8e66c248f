"""train_accelerate.py end to end on SynthFACS with tiny networks (CPU, one or two processes)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

pytest.importorskip("accelerate", reason="the train extra is not installed")

import train_accelerate as ta
from wemgan import WEMGAN
from wemgan.aus import AU_NAMES
from wemgan.config import RendererConfig
from wemgan.export import list_checkpoints
from wemgan.part_windows import MOUTH_AND_EYES, WITH_CHEEKS, window_corners
from wemgan.render_masks import edit_mask
from wemgan.renderer import PartRenderer, Renderer

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--base_channels", "8", "--max_channels", "16", "--critic_base_channels", "8", "--critic_max_channels", "32",
    "--estimator_channels", "8", "--estimator_max_channels", "16", "--train_batch_size", "4", "--log_steps", "2",
]  # fmt: skip


def train(out: Path, *extra: str, env: dict | None = None, launcher: list[str] | None = None, check: bool = True):
    cmd = [*(launcher or [sys.executable]), str(ROOT / "train_accelerate.py"), "--output_dir", str(out), *TINY, *extra]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    result = subprocess.run(cmd, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def composed_with_editor(renderer: Path, out: Path, *options: str) -> WEMGAN:
    """hub/export.py's composition of a trained renderer with hub/default's editor, loaded."""
    subprocess.run(
        [sys.executable, "hub/export.py", "--editor", "--regressor", "hub/default", "--estimator", "hub/default",
         "--renderer", str(renderer), "--out", str(out), *options],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return WEMGAN.from_pretrained(out)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_lr_schedule_is_constant_then_linear_to_zero():
    assert ta.lr_factor(0, 100, 60) == 1.0
    assert ta.lr_factor(59, 100, 60) == 1.0
    assert ta.lr_factor(80, 100, 60) == pytest.approx(0.5)
    assert ta.lr_factor(100, 100, 60) == 0.0


def test_paper_defaults_and_presets():
    args = ta.parse_args(["--preset", "paper"])
    assert (args.learning_rate, args.adam_beta1, args.adam_beta2, args.train_batch_size) == (1e-4, 0.5, 0.999, 16)
    assert (args.num_epochs, args.lr_decay_start_epoch, args.n_critic) == (50, 31, 4)
    assert (args.lambda_d_cond, args.lambda_g_cond, args.lambda_rec, args.lambda_gp) == (150, 150, 30, 10)
    assert (args.base_channels, args.max_channels, args.critic_max_channels) == (64, 512, 2048)
    cpu = ta.parse_args([])
    assert cpu.dataset == "synthfacs" and cpu.base_channels == 16 and cpu.max_train_steps
    assert ta.parse_args(["--base_channels", "32"]).base_channels == 32  # flags beat the preset
    assert ta.parse_args(["--num_epochs", "2"]).max_train_steps is None  # epochs are not capped by the preset
    with pytest.raises(SystemExit):
        ta.parse_args(["--checkpoints_total_limit", "0"])
    assert cpu.objective == "edit" and cpu.landmark_regressor is None  # the paper's objective by default


EDIT_JUDGED = ["--objective", "render", "--landmark_regressor", "x", "--lambda_edit_adversarial", "1"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--objective", "render"], "--landmark_regressor"),  # it reads the training faces' landmarks
        (["--objective", "render", "--landmark_regressor", "hub/default", "--estimator_path", "DIR"], "alone"),
        (["--skip_levels", "2"], "--skip_levels: invalid choice"),
        (["--upsample", "bicubic"], "--upsample: invalid choice"),
        (["--objective", "paint"], "--objective: invalid choice"),
        (["--base_channels", "64", "--max_channels", "32"], "base_channels <= max_channels"),  # wemgan.config's rule
        (["--objective", "render", "--landmark_regressor", "hub/default", "--max_channels", "4"], "base_channels"),
        (["--objective", "render", "--landmark_regressor", "hub/default", "--render_window", "48"], "window"),
        (["--objective", "render", "--landmark_regressor", "x", "--render_masks", "blobs"], "invalid choice"),
        # edits are judged in the windows of a PartRenderer, by its critics, as edit-shaped masks make them
        (EDIT_JUDGED, "--render_masks"),
        (
            [*EDIT_JUDGED, "--render_masks", "edits", "--render_window", "64", "--lambda_adversarial", "0"],
            "--lambda_adversarial > 0",
        ),
    ],
)
def test_bad_arguments_stop_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        ta.parse_args(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_render_arguments_make_a_renderer_config():
    args = ta.parse_args(["--objective", "render", "--landmark_regressor", "hub/default", *TINY, "--upsample",
                          "resize", "--skip_levels", "4", "--lambda_adversarial", "0"])  # fmt: skip
    assert ta.network_config(args) == RendererConfig(8, 16, 4, "resize")
    skin = ta.parse_args([*TINY, "--objective", "render", "--landmark_regressor", "x", "--render_smile_skin"])
    assert ta.network_config(skin) == RendererConfig(8, 16, smile_skin=True, upsample=skin.upsample)
    assert ta.network_config(skin).weights_config() == RendererConfig(8, 16, upsample=skin.upsample)
    mouth = ta.parse_args([*TINY, "--objective", "render", "--landmark_regressor", "x", "--render_no_brow_skin"])
    assert ta.network_config(mouth) == RendererConfig(8, 16, brow_skin=False, upsample=mouth.upsample)
    assert ta.network_config(mouth).weights_config() == RendererConfig(8, 16, upsample=mouth.upsample)
    nets = ta.build_networks(args)
    assert set(nets) == {"renderer"}  # --lambda_adversarial 0: no critics, and no AU estimator to train
    assert isinstance(nets["renderer"], Renderer) and nets["renderer"].generator.skip_depths == (1, 2, 3, 4)
    with_critics = ta.build_networks(ta.parse_args([*TINY, "--objective", "render", "--landmark_regressor", "x"]))
    assert set(with_critics) == {"renderer", "image_critic", "high_frequency_critic"}
    windowed = ta.build_networks(ta.parse_args([*TINY, "--objective", "render", "--landmark_regressor", "x",
                                                "--render_window", "64"]))  # fmt: skip
    assert isinstance(windowed["renderer"], PartRenderer)
    assert windowed["image_critic"].image_size == windowed["high_frequency_critic"].image_size == 64


def test_checkpoint_listing_ignores_incomplete_ones(tmp_path):
    for name in ("checkpoint-10", "checkpoint-2", "checkpoint-30.tmp", "checkpoint-x"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10"]


def test_run_exports_a_loadable_model_and_logs(tmp_path):
    out = tmp_path / "run"
    train(out, "--max_train_steps", "4", "--sample_steps", "4", "--checkpointing_steps", "2",
          "--checkpoints_total_limit", "1", "--ema_decay", "0.9")  # fmt: skip
    model = WEMGAN.from_pretrained(out / "hub")
    assert model.is_trained and model.provenance["steps"] == 4 and model.provenance["dataset"] == "synthfacs"
    assert "Trained on SynthFACS" in (out / "hub" / "README.md").read_text()
    face = torch.rand(3, 128, 128)
    assert model.edit(face, aus="Happy").shape == (3, 128, 128)
    logged = metrics(out)
    assert {"d_image/gp", "d_high/gp", "g/rec", "g/cond", "lr", "samples_per_s"} <= set(logged[0])
    assert logged[-1]["replicas_in_sync"] is True
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-4"]  # limit 1
    assert (out / "samples" / "step-0000004.png").is_file()
    assert json.loads((out / "config.json").read_text())["lambda_rec"] == 30


def test_resume_repeats_an_uninterrupted_run_exactly(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(straight, "--max_train_steps", "6", "--checkpointing_steps", "3")
    train(resumed, "--max_train_steps", "3", "--checkpointing_steps", "3")
    result = train(
        resumed, "--max_train_steps", "6", "--checkpointing_steps", "3", "--resume_from_checkpoint", "latest"
    )
    assert "at step 3" in result.stdout + result.stderr
    for name in ("model.safetensors", "model_1.safetensors", "model_3.safetensors"):
        a = load_file(straight / "checkpoints" / "checkpoint-6" / name)
        b = load_file(resumed / "checkpoints" / "checkpoint-6" / name)
        assert all(torch.equal(a[key], b[key]) for key in a), name

    def losses(run: Path) -> dict:  # the step-6 log line, less the wall-clock throughput
        return {k: v for k, v in metrics(run)[-2].items() if k != "samples_per_s"}

    assert losses(straight) == losses(resumed)


@pytest.mark.slow
def test_two_cpu_processes_stay_in_sync(tmp_path):
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
    ]  # fmt: skip
    out = tmp_path / "ddp"
    train(out, "--max_train_steps", "4", launcher=launcher, env={"ACCELERATE_USE_CPU": "true"})
    logged = metrics(out)
    assert logged[-1]["replicas_in_sync"] is True
    assert json.loads((out / "config.json").read_text())["num_processes"] == 2


def test_reconstruction_warmup_trains_only_the_generator_first(tmp_path):
    out = tmp_path / "warmup"
    train(out, "--max_train_steps", "6", "--reconstruction_warmup_steps", "2", "--warmup_learning_rate", "0.002")
    warm, gan = metrics(out)[0], metrics(out)[2]  # steps 0-1, and 4-5 (G steps every 4th: 0, 4)
    assert (warm["step"], gan["step"]) == (2, 6)
    assert set(warm) >= {"g/warmup_rec", "estimator/loss"} and not any(k.startswith("d_") for k in warm)
    assert warm["lr"] == 0.002 and gan["lr"] == 1e-4  # the paper's rate once the GAN starts
    assert {"d_image/loss", "d_high/loss", "g/rec"} <= set(gan) and "g/warmup_rec" not in gan


def test_bf16_run_has_finite_losses(tmp_path):
    out = tmp_path / "bf16"
    train(out, "--max_train_steps", "4", env={"ACCELERATE_MIXED_PRECISION": "bf16"})
    logged = [row for row in metrics(out) if "d_image/loss" in row]
    assert logged and all(torch.isfinite(torch.tensor(list(row.values()))).all() for row in logged)
    assert json.loads((out / "config.json").read_text())["mixed_precision"] == "bf16"


def test_non_finite_loss_stops_with_the_term_and_step(tmp_path):
    result = train(tmp_path / "nan", "--max_train_steps", "4", "--lambda_gp", "nan", check=False)
    assert result.returncode != 0
    assert "non-finite loss term loss/d_image/loss" in result.stderr and "at step 0" in result.stderr
    assert not (tmp_path / "nan" / "checkpoints").exists()


def test_bad_dataset_fails_before_training(tmp_path):
    result = train(tmp_path / "bad", "--dataset", str(tmp_path / "no-such-data"), check=False)
    assert result.returncode != 0 and "no-such-data" in result.stderr
    assert "Traceback" not in result.stderr.splitlines()[-1]
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_dry_run_builds_and_exits(tmp_path):
    result = train(tmp_path / "dry", "--dry_run")
    assert "steps/epoch" in result.stdout and not (tmp_path / "dry" / "checkpoints").exists()


def test_push_to_hub_and_export_cli(tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw)) or "commit-url")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    ta.main(ta.parse_args(["--output_dir", str(out), *TINY, "--max_train_steps", "2", "--push_to_hub", "me/wemgan"]))
    assert calls[0] == ("create", "me/wemgan")
    assert calls[1][1]["folder_path"] == str(out / "hub") and calls[1][1]["repo_id"] == "me/wemgan"

    (tmp_path / "eval.md").write_text("| L1 | 0.1 |")
    subprocess.run(
        [sys.executable, "hub/export.py", str(out), "--out", str(tmp_path / "exported"), "--dtype", "float16",
         "--card-section", f"Evaluation={tmp_path / 'eval.md'}"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    exported = tmp_path / "exported"
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "## Evaluation" in (exported / "README.md").read_text()
    assert next(iter(load_file(exported / "model.safetensors").values())).dtype == torch.float16
    assert WEMGAN.from_pretrained(exported).provenance["steps"] == 2


def test_ema_warms_up_instead_of_keeping_the_initialisation():
    from torch.optim.swa_utils import AveragedModel

    net = torch.nn.Linear(2, 2)
    ema = AveragedModel(net, multi_avg_fn=ta.ema_with_warmup(0.999), use_buffers=True)
    ema.update_parameters(net)  # the first update copies
    with torch.no_grad():
        net.weight.fill_(1.0)
    for _ in range(100):
        ema.update_parameters(net)
    # A fixed 0.999 would still hold 0.999**100 = 90% of the old weights; the ramp holds < 1%.
    assert (ema.module.weight - 1).abs().max() < 0.01


def test_render_objective_writes_a_renderer_and_resumes_exactly(tmp_path):
    out = tmp_path / "render"
    render = ["--objective", "render", "--landmark_regressor", "hub/default", "--checkpointing_steps", "2",
              "--upsample", "resize"]  # fmt: skip
    train(out, *render, "--max_train_steps", "2", "--sample_steps", "2")
    record = json.loads((out / "renderer" / "config.json").read_text())
    assert record["steps"] == 2 and record["dataset"] == "synthfacs" and "--objective render" in record["command"]
    assert record["config"] == dict(base_channels=8, max_channels=16, skip_levels=3, upsample="resize", window=0,
                                 guide="contours", centre_colour=False, keep_inner_mouth=False,
                                 mouth_surroundings=0, smile_skin=False, brow_skin=True,
                                 warped_input=False, blank_inner_mouth=False, white_balance=False,
                                 cheek_windows=False)  # fmt: skip
    assert 0 < record["cpu_hours"] < 1 and record["init_renderer"] is None
    assert record["image_size"] == 128
    renderer = Renderer(RendererConfig(**record["config"]))
    renderer.load_state_dict(load_file(out / "renderer" / "model.safetensors"))  # strict: the whole Renderer
    checkpoint = out / "checkpoints" / "checkpoint-2"
    assert sorted(p.name for p in (checkpoint / "renderer").iterdir()) == ["config.json", "model.safetensors"]
    assert not (checkpoint / "inference").exists() and not (out / "hub").exists()  # no WEMGAN to export
    assert (out / "samples" / "step-0000002.png").is_file()
    logged = metrics(out)
    assert {"r/loss", "r/rec", "r/high_frequency", "r/adversarial", "d_image/gp", "d_high/gp"} <= set(logged[0])
    assert "d_image/cond" not in logged[0] and not any(k.startswith("g/") for k in logged[0])
    assert logged[-1]["replicas_in_sync"] is True

    result = train(out, *render, "--max_train_steps", "4", "--resume_from_checkpoint", "latest")
    assert "at step 2" in result.stdout + result.stderr
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2", "checkpoint-4"]
    resumed = json.loads((out / "checkpoints" / "checkpoint-4" / "renderer" / "config.json").read_text())
    assert resumed["steps"] == 4 and json.loads((out / "renderer" / "config.json").read_text())["steps"] == 4
    assert resumed["cpu_hours"] > record["cpu_hours"]  # CPU time adds up over resumes
    before = load_file(checkpoint / "renderer" / "model.safetensors")
    after = load_file(out / "renderer" / "model.safetensors")
    assert set(before) == set(after) and not all(torch.equal(before[k], after[k]) for k in before)  # trained on
    straight = tmp_path / "straight"  # the resumed run repeats an uninterrupted one exactly
    train(straight, *render, "--max_train_steps", "4", "--sample_steps", "2")
    for name in ("model.safetensors", "model_1.safetensors", "model_2.safetensors"):  # renderer, D_I, D_H
        a = load_file(straight / "checkpoints" / "checkpoint-4" / name)
        b = load_file(out / "checkpoints" / "checkpoint-4" / name)
        assert set(a) == set(b) and all(torch.equal(a[key], b[key]) for key in a), name
    step_4 = [{k: v for k, v in metrics(run)[-2].items() if k != "samples_per_s"} for run in (straight, out)]
    assert step_4[0]["step"] == 4 and step_4[0] == step_4[1]

    # hub/export.py composes it with the landmark editor into one model
    composed = composed_with_editor(out / "renderer", tmp_path / "composed")
    assert composed.model_config.kind == "editor+renderer" and composed.provenance["renderer"]["steps"] == 4
    # at the shipped editor's motion strength unless told otherwise, so the two compare at equal motion
    assert composed.editor.motion_strength == WEMGAN.from_pretrained(ROOT / "hub/default").editor.motion_strength
    assert "It trained for 4 steps, 0.0 CPU-hours" in (tmp_path / "composed" / "README.md").read_text()
    assert all(torch.equal(v, composed.renderer.state_dict()[k]) for k, v in after.items())
    assert composed.model_config.renderer.brow_skin  # as it trained
    mouths_only = composed_with_editor(out / "renderer", tmp_path / "mouths-only", "--no-brow-skin", "--whole-brows")
    assert not mouths_only.model_config.renderer.brow_skin  # where it redraws changes, not its weights
    assert mouths_only.editor.whole_brows and not composed.editor.whole_brows
    assert all(torch.equal(v, mouths_only.renderer.state_dict()[k]) for k, v in after.items())
    assert "`renderer.brow_skin` false" in (tmp_path / "mouths-only" / "README.md").read_text()


def test_edits_judged_by_the_critics(tmp_path):
    out = tmp_path / "judged"
    train(out, "--objective", "render", "--landmark_regressor", "hub/default", "--render_window", "64",
          "--render_masks", "edits", "--lambda_adversarial", "1", "--lambda_edit_adversarial", "1",
          "--max_train_steps", "2")  # fmt: skip
    logged = [record for record in metrics(out) if "r/loss" in record]
    assert logged and all(math.isfinite(record["r/edit_adversarial"]) for record in logged)
    assert json.loads((out / "config.json").read_text())["lambda_edit_adversarial"] == 1.0


def test_edit_windows_are_the_composed_edit_and_the_donors_part():
    model = WEMGAN.from_pretrained(ROOT / "hub/default")
    faces = torch.rand(3, 3, 128, 128) * 2 - 1
    landmarks = model.editor.landmark_regressor(faces).float()
    u_rel = torch.zeros(3, 17)
    u_rel[:, AU_NAMES.index("AU25")] = u_rel[:, AU_NAMES.index("AU26")] = 0.8
    moves = model.editor.landmark_moves(landmarks, u_rel)
    masks = edit_mask(landmarks, moves, 128, model.model_config.renderer)
    rows, donors, parts = torch.tensor([0, 2]), torch.tensor([2, 1]), torch.tensor([0, 0])  # their mouths
    with torch.no_grad():
        drawn, real = ta.edit_windows(model.renderer, model.editor, faces, landmarks, moves, u_rel,
                                      torch.zeros(3, 17), masks, rows, donors, parts, 64, MOUTH_AND_EYES)  # fmt: skip
    assert drawn.shape == real.shape == (2, 3, 64, 64)
    corner = window_corners(landmarks[1:2], 64, 128)[0, 0].tolist()
    assert torch.equal(real[1], faces[1, :, corner[1] : corner[1] + 64, corner[0] : corner[0] + 64])
    edited, _ = model.editor.apply(faces[2:], landmarks[2:], moves[2:], u_rel[2:])
    corner = window_corners(landmarks[2:] + moves[2:], 64, 128)[0, 0].tolist()
    warp_only = edited[0, :, corner[1] : corner[1] + 64, corner[0] : corner[0] + 64]
    assert (drawn[1] - warp_only).abs().amax() > 0.05  # the renderer drew the mouth the edit opened


def test_render_objective_without_critics(tmp_path):
    out = tmp_path / "plain"
    train(out, "--objective", "render", "--landmark_regressor", "hub/default", "--lambda_adversarial", "0",
          "--max_train_steps", "2", "--ema_decay", "0.9")  # fmt: skip
    logged = metrics(out)
    assert {"r/loss", "r/rec", "r/high_frequency"} <= set(logged[0])
    assert "r/adversarial" not in logged[0] and not any(k.startswith("d_") for k in logged[0])
    assert (out / "renderer" / "model.safetensors").is_file()

    # the renderer alone, in float16, with its card: what a new run (a new machine, its checkpoints
    # gone) goes on from
    candidate = tmp_path / "candidate"
    subprocess.run([sys.executable, "hub/export.py", "--renderer", str(out / "renderer"), "--dtype", "float16",
                    "--out", str(candidate)], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    first = json.loads((candidate / "config.json").read_text())
    trained = json.loads((out / "renderer" / "config.json").read_text())
    assert first["config"] == trained["config"] and first["steps"] == 2 and first["cpu_hours"] == trained["cpu_hours"]
    assert str(out) in trained["command"] and os.path.relpath(out, ROOT) in first["command"]  # no machine paths
    assert "It trained for 2 steps" in (candidate / "README.md").read_text()
    halves = load_file(candidate / "model.safetensors")
    assert all(v.dtype == torch.float16 for v in halves.values() if v.is_floating_point())
    # a renderer trained with other redraw options (where it redraws, what it sees there) may start a run:
    # the weights are alike
    started = tmp_path / "started"
    result = train(started, "--objective", "render", "--landmark_regressor", "hub/default", "--lambda_adversarial",
                   "0", "--max_train_steps", "1", "--learning_rate", "0", "--ema_decay", "0.9", "--init_renderer",
                   str(candidate), "--render_masks", "edits", "--render_warped_input",
                   "--render_smile_skin")  # fmt: skip
    assert f"renderer initialised from {candidate} (2 steps" in result.stdout + result.stderr
    record = json.loads((started / "renderer" / "config.json").read_text())
    assert record["steps"] == 3 and record["cpu_hours"] > first["cpu_hours"]
    assert record["init_renderer"] == str(candidate) and record["config"]["warped_input"]
    assert record["config"]["smile_skin"]
    after = load_file(started / "renderer" / "model.safetensors")
    assert all(torch.equal(halves[k].float(), after[k]) for k in halves)  # learning rate 0: where it started
    wider = train(tmp_path / "wider", "--objective", "render", "--landmark_regressor", "hub/default",
                  "--max_train_steps", "1", "--base_channels", "16", "--init_renderer", str(candidate),
                  check=False)  # fmt: skip
    assert wider.returncode != 0 and "give the same widths" in wider.stderr


def test_cheek_windows_train_on_fold_bands_and_edits_and_compose(tmp_path):
    out = tmp_path / "cheeks"
    train(out, "--objective", "render", "--landmark_regressor", "hub/default", "--render_window", "64",
          "--render_masks", "edits", "--render_smile_skin", "--render_cheek_windows", "--lambda_adversarial", "1",
          "--lambda_edit_adversarial", "0.1", "--max_train_steps", "2", "--sample_steps", "2")  # fmt: skip
    record = json.loads((out / "renderer" / "config.json").read_text())
    assert record["config"]["cheek_windows"] and record["config"]["smile_skin"]
    assert "r/edit_adversarial" in metrics(out)[0]  # the edits' windows, cut with the cheeks' windows among them
    composed = composed_with_editor(out / "renderer", tmp_path / "composed")
    assert composed.renderer.parts == WITH_CHEEKS and composed.model_config.renderer.cheek_windows
    refused = train(tmp_path / "refused", "--objective", "render", "--landmark_regressor", "hub/default",
                    "--render_cheek_windows", "--max_train_steps", "1", check=False)  # fmt: skip
    assert refused.returncode != 0 and "cheek_windows" in refused.stderr and "give window > 0" in refused.stderr


def test_a_windowed_renderer_trains_on_its_windows_and_composes(tmp_path):
    out = tmp_path / "windows"
    train(out, "--objective", "render", "--landmark_regressor", "hub/default", "--render_window", "64",
          "--render_masks", "edits", "--render_centre_colour", "--render_keep_inner_mouth",
          "--render_mouth_surroundings", "6", "--render_warped_input", "--render_edit_strengths", "0.5", "2",
          "--max_train_steps", "2", "--sample_steps", "2")  # fmt: skip
    record = json.loads((out / "renderer" / "config.json").read_text())
    assert record["config"]["window"] == 64 and record["config"]["centre_colour"] and record["image_size"] == 128
    assert record["config"]["keep_inner_mouth"]  # its edits keep the teeth a face shows, as its training masks did
    assert record["config"]["mouth_surroundings"] == 6 and record["config"]["warped_input"]
    assert Image.open(out / "samples" / "step-0000002.png").size == (6 * 130, 4 * 130)  # the edits it corrects
    logged = metrics(out)
    assert {"r/rec", "r/adversarial", "d_image/gp", "d_high/gp"} <= set(logged[0])  # critics on 64-px windows
    composed = composed_with_editor(out / "renderer", tmp_path / "composed")
    assert isinstance(composed.renderer, PartRenderer) and composed.renderer.renderer.image_size == 64
    assert composed.model_config.renderer.keep_inner_mouth and composed.model_config.renderer.mouth_surroundings == 6
    assert composed.model_config.renderer.warped_input  # it reads the editor's warp inside its masks, as trained
    random_masks = train(tmp_path / "random", "--objective", "render", "--landmark_regressor", "hub/default",
                         "--render_warped_input", "--max_train_steps", "1", check=False)  # fmt: skip
    assert random_masks.returncode != 0 and "needs --render_masks edits" in random_masks.stderr
    assert json.loads((out / "config.json").read_text())["render_edit_strengths"] == [0.5, 2.0]
    for flags, said in ((["--render_edit_strengths", "2", "1"], "give 0 <= LO <= HI"),
                        (["--render_edit_strengths", "0.5", "2"], "it needs --render_masks edits")):  # fmt: skip
        refused = train(tmp_path / "refused", "--objective", "render", "--landmark_regressor", "hub/default",
                        *flags, "--max_train_steps", "1", check=False)  # fmt: skip
        assert refused.returncode != 0 and said in refused.stderr
