"""Train WEM-GAN (generator G, image critic D_I, high-frequency critic D_H) with Accelerate.

    python train_accelerate.py                                  # SynthFACS, CPU preset, short run
    accelerate launch train_accelerate.py --preset paper --dataset ../shared/data/faces-au
    accelerate launch --mixed_precision bf16 train_accelerate.py --resume_from_checkpoint latest

The objective is the paper's (§3.4, §4.1): WGAN-GP critics D_I and D_H (λ_gp 10), AU
regression on D_I for real images (λ1 150) and for G's edits (λ2 150), self- and
cycle-reconstruction L1 (λ3 30), Adam 1e-4 β (0.5, 0.999), batch 16, 50 epochs with the
learning rate decaying linearly to 0 from epoch 31, one G step every 4 critic steps.
The loss maths lives in wemgan/losses.py; this script wires data, models and bookkeeping.
Alongside the GAN it trains the small AUEstimator that the inference model uses to read
AUs from photos (same labels, its own optimizer; it does not touch the GAN).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import safetensors.torch
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from PIL import Image
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from wemgan.au_estimator import AUEstimator
from wemgan.au_training import load_trained_estimator
from wemgan.augment import judging_views
from wemgan.aus import EXPRESSIONS, NUM_AUS
from wemgan.config import GeneratorConfig, RendererConfig
from wemgan.data.datasets import load_training_data, pair_targets
from wemgan.discriminators import HighFrequencyDiscriminator, ImageDiscriminator
from wemgan.editor import LandmarkEditor
from wemgan.export import list_checkpoints, model_card, push_folder, read_renderer_folder, write_hub_folder
from wemgan.generator import Generator
from wemgan.landmark_fit import load_landmark_regressor
from wemgan.landmark_guides import draw_contours
from wemgan.losses import (
    LossWeights,
    RenderWeights,
    adversarial_loss,
    au_regression_loss,
    generator_loss,
    high_frequency_discriminator_loss,
    image_discriminator_loss,
    l1_distance,
    render_loss,
    robust_expression_loss,
)
from wemgan.model import WEMGAN
from wemgan.part_windows import crop, window_corners, window_parts
from wemgan.render_masks import edit_mask, mouth_mask, training_masks, window_masks_of, window_training_masks
from wemgan.renderer import PartRenderer, Renderer, visible_mean_colour

# Size and length groups. Optimisation hyperparameters are the paper's in both.
PRESETS: dict[str, dict[str, object]] = {
    "paper": dict(
        base_channels=64, max_channels=512, critic_base_channels=64, critic_max_channels=2048,
        estimator_channels=32, estimator_max_channels=256, num_epochs=50, max_train_steps=None,
        checkpointing_steps=5000, sample_steps=2000,
    ),
    # Widths ÷4 and a few hundred steps: a complete run on a 2-core CPU in minutes.
    "cpu": dict(
        base_channels=16, max_channels=128, critic_base_channels=16, critic_max_channels=512,
        estimator_channels=16, estimator_max_channels=128, num_epochs=1, max_train_steps=300,
        checkpointing_steps=100, sample_steps=100,
    ),
}  # fmt: skip
SAMPLE_EXPRESSIONS = ("Happy", "Sad", "Surprise", "Anger")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    # data and run
    add("--dataset", default="synthfacs", help="synthfacs, a save_to_disk/parquet/imagefolder path, or a Hub id")
    add("--preset", choices=list(PRESETS), default="cpu", help="model size and run length group")
    add("--output_dir", default="runs/wemgan")
    add("--seed", type=int, default=0)
    add("--dataloader_num_workers", type=int, default=0)
    add("--dry_run", action="store_true", help="build data, models and optimizers, print the config, exit")
    add(
        "--objective",
        default="edit",
        choices=["edit", "render"],
        help="edit: G edits whole faces by relative AUs (paper); render: the Renderer (the paper's G with a mask "
        "and landmark contours as extra inputs) learns to redraw blanked face parts (masked reconstruction)",
    )
    add(
        "--landmark_regressor",
        default=None,
        metavar="DIR",
        help="--objective render: where the landmarks of training faces come from: a model's Hub folder "
        "(hub/default) or a regressor folder (python -m wemgan.landmark_fit train-regressor)",
    )
    add("--render_guide", default="contours", choices=["contours", "heatmaps"], help="render: the landmarks drawn "
        "as a line per part (contours) or as Gaussian points per part (heatmaps, as LaFIn)")  # fmt: skip
    add("--render_masks", default="random", choices=["random", "edits"], help="render: the blanked regions: random "
        "parts (mouth, eyes, brows, blobs), or what the landmark editor of --landmark_regressor (a model folder) "
        "would redraw when the face takes another face's expression (render_masks.edit_mask)")  # fmt: skip
    add("--render_centre_colour", action="store_true", help="render: draw relative to the mean colour of the "
        "pixels the renderer sees (blind to a photo's colour cast; RendererConfig.centre_colour)")  # fmt: skip
    add("--render_keep_inner_mouth", action="store_true", help="render: edits keep the inner mouth the face shows "
        "before and after (its own teeth); with --render_masks edits, training blanks the same regions "
        "(RendererConfig.keep_inner_mouth)")  # fmt: skip
    add("--render_mouth_surroundings", type=int, default=0, metavar="PX", help="render: edits that move the lips "
        "redraw them whole with PX px of skin around them (folds, chin; at 128 px); with --render_masks edits, "
        "training blanks the same regions (RendererConfig.mouth_surroundings)")  # fmt: skip
    add("--render_smile_skin", action="store_true", help="render: edits that move the lips also redraw the skin a "
        "smile shapes (nasolabial folds with the cheek beside them, the skin under the lower lip; the lips stay the "
        "warp's); with --render_masks edits, training blanks the same regions (RendererConfig.smile_skin)")  # fmt: skip
    add("--render_no_brow_skin", action="store_true", help="render: edits that raise a brow leave the skin it "
        "uncovers to the warp, so only the mouth is redrawn; with --render_masks edits, training blanks the same "
        "regions (RendererConfig.brow_skin)")  # fmt: skip
    add("--render_warped_input", action="store_true", help="render: the renderer sees the edit's warped pixels "
        "inside the mask instead of a blank and learns to correct them: training moves real faces to another "
        "face's expression and back (LandmarkEditor.round_trip) and redraws the originals; needs --render_masks "
        "edits (RendererConfig.warped_input)")  # fmt: skip
    add("--render_blank_inner_mouth", action="store_true", help="render: with --render_warped_input, the inner "
        "mouth is still blanked and drawn afresh (teeth never copied from the editor's drawing or a stretched warp); "
        "the rest of the mask is seen warped and corrected (RendererConfig.blank_inner_mouth)")  # fmt: skip
    add("--render_cheek_windows", action="store_true", help="render: with --render_window, each cheek beside the "
        "mouth gets a window of its own, at the face's resolution, where --render_smile_skin's folds are drawn (else "
        "they widen the mouth's window into a zoomed-out one); training blanks each cheek's fold band too "
        "(RendererConfig.cheek_windows)")  # fmt: skip
    add("--render_white_balance", action="store_true", help="render: the renderer draws each window white-balanced "
        "to the training faces' mean tint and undoes the gains, so a photo's colour cast scales what it draws "
        "(RendererConfig.white_balance)")  # fmt: skip
    add("--render_edit_strengths", type=float, nargs=2, default=(1.0, 1.0), metavar=("LO", "HI"), help="render: "
        "with --render_masks edits, each face takes the other face's expression at a strength drawn uniformly "
        "from [LO, HI], as a user's strength slider scales an edit (1 1: the editor's own strength); strong "
        "strengths show training the wide openings of strong edits")  # fmt: skip
    add("--init_renderer", default=None, metavar="DIR", help="render: a new run starts from this trained renderer "
        "(a run's or a checkpoint's renderer/ folder) with fresh critics and optimisers; its steps and CPU hours "
        "count into the new run's record (a run resumed from a checkpoint ignores it)")  # fmt: skip
    add("--lambda_high_frequency", type=float, default=30.0, help="render: masked L1 of the Haar detail")
    add("--lambda_adversarial", type=float, default=0.1, help="render: weight of D_I and D_H (0: no critics)")
    add("--lambda_edit_adversarial", type=float, default=0.0, help="render: weight of D_I and D_H on real edits "
        "as the composed model draws them (the editor's edit, then the renderer in its edit mask), judged against "
        "the part of the real face whose expression each edit takes; needs --render_masks edits, --render_window "
        "and critics")  # fmt: skip
    add(
        "--render_window",
        type=int,
        default=0,
        help="render: 0 draws on the whole face; N: a PartRenderer draws in N-px windows around the mouth and "
        "each eye at the face's resolution (a quarter of the cost at 64 of 128), critics judge those windows",
    )
    # schedule (paper §4.1)
    add("--train_batch_size", type=int, default=16, help="per process")
    add("--num_epochs", type=int, default=None, help="paper: 50")
    add("--max_train_steps", type=int, default=None, help="critic steps; overrides --num_epochs")
    add("--learning_rate", type=float, default=1e-4)
    add("--adam_beta1", type=float, default=0.5)
    add("--adam_beta2", type=float, default=0.999)
    add("--lr_decay_start_epoch", type=int, default=31, help="1-based epoch where linear decay to 0 starts")
    add("--n_critic", type=int, default=4, help="critic steps per generator step")
    add("--estimator_learning_rate", type=float, default=1e-3)
    add("--ema_decay", type=float, default=None, help="keep an EMA of G (exported for inference), e.g. 0.999")
    add("--target_noise", type=float, default=0.0, help="std of Gaussian noise added to paired target AUs")
    # not in the paper: a head start for short (CPU) runs, off by default
    add(
        "--reconstruction_warmup_steps",
        type=int,
        default=0,
        help="first N steps train G on self-reconstruction L1 alone (no critics), then the paper's GAN",
    )
    add("--warmup_learning_rate", type=float, default=1e-3, help="G's learning rate during that warm-up")
    add(
        "--max_cpu_minutes",
        type=float,
        default=None,
        help="stop (checkpoint and export) once this process has used this much CPU time: equal-cost trials",
    )
    # not in the paper: the expression judged by a frozen robust AU reader (docs/research/gan-trials.md)
    add("--upsample", default="transposed", choices=["transposed", "resize"], help="decoder upsampling")
    add(
        "--expression_loss",
        default="critic",
        choices=["critic", "estimator"],
        help="critic: D_I's AU head judges G's edits (paper); estimator: a frozen AU estimator (--estimator_path) "
        "judges low-passed, shifted, noised copies of them (wemgan.losses.robust_expression_loss)",
    )
    add(
        "--estimator_path",
        default=None,
        help="folder of a trained AU estimator (python -m wemgan.au_training), or a model's Hub folder such as "
        "hub/default for its built-in one: used frozen for reading AUs and exported with the model instead of "
        "training one alongside the GAN",
    )
    # objective (paper eqs. 1-9)
    add("--lambda_gp", type=float, default=10.0)
    add("--lambda_d_cond", type=float, default=150.0, help="λ1")
    add("--lambda_g_cond", type=float, default=150.0, help="λ2")
    add("--lambda_rec", type=float, default=30.0, help="λ3")
    # architecture and ablations (Tables 6-7); widths default to the preset
    add("--skip_levels", type=int, default=3, choices=[0, 3, 4, 5], help="DIT skip connections")
    add("--skip_kind", default="haar", choices=["haar", "plain"])
    add("--au_fusion", default="multi", choices=["multi", "single"])
    add("--no_high_frequency_critic", action="store_true", help="ablation: train without D_H")
    for name in ("base_channels", "max_channels", "critic_base_channels", "critic_max_channels",
                 "estimator_channels", "estimator_max_channels"):  # fmt: skip
        add(f"--{name}", type=int, default=None)
    # bookkeeping
    add("--checkpointing_steps", type=int, default=None)
    add("--checkpoints_total_limit", type=int, default=3)
    add("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    add("--log_steps", type=int, default=10)
    add("--sample_steps", type=int, default=None, help="write a PNG grid of edits every N steps")
    add("--export_every", type=int, default=None, help="also write the Hub folder every N steps")
    add("--push_to_hub", default=None, metavar="REPO", help="upload the final Hub folder to this repo id")
    args = p.parse_args(argv)
    if args.checkpoints_total_limit < 1:
        p.error("--checkpoints_total_limit must be at least 1 (the newest checkpoint is always kept)")
    if args.expression_loss == "estimator" and not args.estimator_path:
        p.error("--expression_loss estimator needs --estimator_path (train one: python -m wemgan.au_training)")
    if args.expression_loss == "estimator" and args.target_noise:
        p.error("--expression_loss estimator matches the estimator's reading of real donor faces: no --target_noise")
    if args.objective == "render" and not args.landmark_regressor:
        p.error("--objective render reads the faces' landmarks: add --landmark_regressor hub/default")
    if args.objective == "render" and args.estimator_path:
        p.error("--objective render trains the Renderer alone: no --estimator_path")
    if args.render_warped_input and args.render_masks != "edits":
        p.error("--render_warped_input learns to correct real edits' warps: it needs --render_masks edits")
    if args.lambda_edit_adversarial and not (
        args.render_masks == "edits" and args.render_window and args.lambda_adversarial and not args.render_warped_input
    ):
        p.error("--lambda_edit_adversarial judges edits' windows by the critics: it needs --render_masks edits, "
                "--render_window, --lambda_adversarial > 0, and no --render_warped_input")  # fmt: skip
    lo, hi = args.render_edit_strengths
    if not 0 <= lo <= hi:
        p.error(f"--render_edit_strengths {lo} {hi}: give 0 <= LO <= HI")
    if (lo, hi) != (1.0, 1.0) and args.render_masks != "edits":
        p.error("--render_edit_strengths scales the edits that shape the masks: it needs --render_masks edits")
    if args.init_renderer and args.objective != "render":
        p.error("--init_renderer starts a renderer: it needs --objective render")
    if args.objective == "render" and (args.skip_kind != "haar" or args.au_fusion != "multi"):
        p.error("--objective render: the Renderer has the paper's Haar skips and multi-AU fusion (no --skip_kind, "
                "--au_fusion)")  # fmt: skip
    preset = dict(PRESETS[args.preset])
    if args.num_epochs is not None:  # an explicit epoch count is not cut short by the preset's step cap
        preset.pop("max_train_steps")
    for key, value in preset.items():  # the preset fills what the command line left open
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:  # the rules of the network's configuration, written once in wemgan.config
        network_config(args).validate()
    except ValueError as error:
        p.error(str(error))
    return args


def network_config(args: argparse.Namespace) -> GeneratorConfig | RendererConfig:
    """The trained network's configuration (wemgan.config) from the command line."""
    if args.objective == "render":
        return RendererConfig(args.base_channels, args.max_channels, args.skip_levels, args.upsample,
                              args.render_window, args.render_guide, args.render_centre_colour,
                              keep_inner_mouth=args.render_keep_inner_mouth,
                              mouth_surroundings=args.render_mouth_surroundings,
                              smile_skin=args.render_smile_skin, brow_skin=not args.render_no_brow_skin,
                              warped_input=args.render_warped_input,
                              blank_inner_mouth=args.render_blank_inner_mouth,
                              cheek_windows=args.render_cheek_windows,
                              white_balance=args.render_white_balance)  # fmt: skip
    return GeneratorConfig(args.base_channels, args.max_channels, args.skip_levels, args.skip_kind, args.au_fusion,
                           upsample=args.upsample)  # fmt: skip


# ----------------------------------------------------------------------------- helpers
def build_networks(args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    """The networks to train (a frozen --estimator_path estimator is loaded by load_estimator)."""
    if args.objective == "render":
        config = network_config(args)
        renderer = PartRenderer(config, NUM_AUS) if config.window else Renderer(config, NUM_AUS)
        nets: dict[str, torch.nn.Module] = {"renderer": renderer}
        judged = config.window or 128  # the critics judge what the renderer draws: the window or the face
        if args.lambda_adversarial:
            nets["image_critic"] = ImageDiscriminator(
                NUM_AUS, args.critic_base_channels, args.critic_max_channels, image_size=judged
            )
        if args.lambda_adversarial and not args.no_high_frequency_critic:
            # Table 2's instance norm is undefined on the 1 x 1 map a 64-px window leaves: none there.
            nets["high_frequency_critic"] = HighFrequencyDiscriminator(
                args.critic_base_channels, args.critic_max_channels, "none" if config.window else "instance", judged
            )
        return nets
    nets = {
        "generator": Generator(NUM_AUS, **asdict(network_config(args))),
        "image_critic": ImageDiscriminator(NUM_AUS, args.critic_base_channels, args.critic_max_channels),
    }
    if not args.estimator_path:
        nets["estimator"] = AUEstimator(NUM_AUS, args.estimator_channels, args.estimator_max_channels)
    if not args.no_high_frequency_critic:
        nets["high_frequency_critic"] = HighFrequencyDiscriminator(args.critic_base_channels, args.critic_max_channels)
    return nets


def load_estimator(args: argparse.Namespace) -> AUEstimator:
    """The frozen AU estimator of --estimator_path (written by python -m wemgan.au_training); sets
    args' estimator widths (before main records the config) so that the exported model holds it."""
    estimator, record = load_trained_estimator(args.estimator_path)
    args.estimator_channels = record["estimator_channels"]
    args.estimator_max_channels = record["estimator_max_channels"]
    return estimator.requires_grad_(False)


def load_mask_editor(folder: str) -> LandmarkEditor:
    """The landmark editor of a model folder (hub/default), whose edits shape --render_masks edits."""
    model = WEMGAN.from_pretrained(folder)
    if model.editor is None:
        raise ValueError(f"--render_masks edits needs a landmark editor's model folder, such as hub/default; "
                         f"{folder} holds {model.model_config.kind}")  # fmt: skip
    return model.editor.requires_grad_(False).eval()


def init_renderer(args: argparse.Namespace, renderer: torch.nn.Module, ema: AveragedModel | None) -> dict:
    """Loads --init_renderer's weights into the renderer (and its EMA); returns the CPU-hours and
    steps it had trained, which the new run's record carries on."""
    record, weights = read_renderer_folder(args.init_renderer)
    # Where it redraws and what it is shown there are not its weights: a run may start from a renderer
    # trained with other such options (it learns the new regions, or to correct what it drew from nothing).
    if RendererConfig(**record["config"]).weights_config() != network_config(args).weights_config():
        raise ValueError(f"--init_renderer {args.init_renderer} is a renderer of {record['config']}, this run trains "
                         f"{asdict(network_config(args))}: give the same widths and --render_* flags")  # fmt: skip
    renderer.load_state_dict(weights)
    if ema is not None:
        ema.module.load_state_dict(weights)
    return {"cpu_hours": float(record.get("cpu_hours", 0.0)), "steps_before": int(record.get("steps", 0))}


def inference_model(args: argparse.Namespace, generator: torch.nn.Module, estimator: torch.nn.Module, step: int):
    """The Hub-loadable WEMGAN holding (copies of) the trained generator and AU estimator."""
    model = WEMGAN(
        generator=asdict(network_config(args)),
        estimator={"channels": args.estimator_channels, "max_channels": args.estimator_max_channels,
                   "calibration_knots": estimator.calibration_knots},
        provenance={"dataset": str(args.dataset), "steps": step, "command": args.command, "config": args.config},
    )  # fmt: skip
    model.generator.load_state_dict(generator.state_dict())
    model.au_estimator.load_state_dict(estimator.state_dict())
    return model


def ema_with_warmup(decay: float):
    """EMA update for AveragedModel whose decay ramps up as (1 + n) / (10 + n) towards `decay`.

    A fixed 0.999 would keep 0.999**n of the random initialisation: a quarter of it after the
    ~1,400 generator steps of a short CPU run. The ramp makes the average follow G early on."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor | int) -> None:
        n = float(num_averaged)
        torch._foreach_lerp_(averaged, current, 1 - min(decay, (1 + n) / (10 + n)))

    return update


def lr_factor(step: int, total_steps: int, decay_start: int) -> float:
    """1 until decay_start, then linearly down to 0 at total_steps (paper: from epoch 31 of 50)."""
    if step < decay_start:
        return 1.0
    return max(0.0, (total_steps - step) / max(1, total_steps - decay_start))


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """Randomness of one training step (target pairing, GP interpolation), a pure function of
    (seed, step, rank): a resumed run repeats an uninterrupted one exactly."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + step * 101 + rank)


def check_finite(terms: dict[str, torch.Tensor], prefix: str, step: int, last_checkpoint: Path | None) -> None:
    for name, value in terms.items():
        if not torch.isfinite(value).all():
            where = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
            raise FloatingPointError(
                f"non-finite loss term {prefix}/{name} = {value.item()} at step {step}; stopping ({where}). "
                "Try a lower --learning_rate, or --mixed_precision bf16 instead of fp16."
            )


def image_grid(rows: list[list[torch.Tensor]]) -> Image.Image:
    """rows of 3xHxW tensors in [-1, 1] -> one PIL image (2 px white gutters)."""
    tiles = torch.stack([torch.stack(row) for row in rows])  # R x C x 3 x H x W
    r, c, _, h, w = tiles.shape
    canvas = torch.ones(3, r * (h + 2), c * (w + 2))
    for i in range(r):
        for j in range(c):
            canvas[:, i * (h + 2) : i * (h + 2) + h, j * (w + 2) : j * (w + 2) + w] = (tiles[i, j].float() + 1) / 2
    return Image.fromarray((canvas.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def save_atomic_png(image: Image.Image, path: Path) -> None:
    tmp = path.with_suffix(".tmp.png")
    image.save(tmp)
    os.replace(tmp, path)


# -------------------------------------------------------------------------------- main
def main(args: argparse.Namespace) -> None:
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        log_with="tensorboard" if _has_tensorboard() else None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # Shuffling seeded by (seed, epoch): a resumed run sees batches in the same order.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        # the render objective does not train D_I's AU head: DDP must not wait for its gradients
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)]
        if args.objective == "render"
        else [],
    )
    set_seed(args.seed)
    if args.max_cpu_minutes is not None and accelerator.num_processes > 1:
        raise ValueError("--max_cpu_minutes is for single-process trials (processes would stop at different steps)")
    frozen_estimator = load_estimator(args) if args.estimator_path else None
    args.command = "train_accelerate.py " + shlex.join(sys.argv[1:])
    args.config = {k: v for k, v in vars(args).items() if k not in ("config", "command")}
    args.config.update(mixed_precision=accelerator.mixed_precision, num_processes=accelerator.num_processes)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        print(json.dumps(args.config, indent=2))
        (output_dir / "config.json").write_text(json.dumps(args.config, indent=2))

    # --- data: fails here, before any model is built, on a bad path or missing AU columns
    with accelerator.main_process_first():  # one process converts/validates, the others reuse its cache
        dataset = load_training_data(args.dataset, "train")
    loader = DataLoader(
        dataset, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
        num_workers=args.dataloader_num_workers, persistent_workers=args.dataloader_num_workers > 0,
    )  # fmt: skip
    if len(loader) == 0:
        raise ValueError(f"{args.dataset} has {len(dataset)} samples: fewer than one batch of {args.train_batch_size}")
    spread = range(0, len(dataset), max(1, len(dataset) // 4))[:4]  # four faces far apart: other identities
    sample_faces = torch.stack([dataset[i]["image"] for i in spread])
    sample_aus = torch.stack([dataset[i]["aus"] for i in spread])

    # --- models and optimizers: one Adam per network (paper: 1e-4, β 0.5/0.999)
    nets = build_networks(args)
    optimizers = {
        name: torch.optim.Adam(
            net.parameters(),
            lr=args.estimator_learning_rate if name == "estimator" else args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
        )
        for name, net in nets.items()
    }
    names = list(nets)
    prepared = accelerator.prepare(*nets.values(), *optimizers.values(), loader)
    nets = dict(zip(names, prepared[: len(names)], strict=True))
    optimizers = dict(zip(names, prepared[len(names) : 2 * len(names)], strict=True))
    loader = prepared[-1]
    if frozen_estimator is not None:
        frozen_estimator.to(accelerator.device)
    estimator = frozen_estimator if frozen_estimator is not None else nets.get("estimator")
    trained = "renderer" if args.objective == "render" else "generator"  # the network the model ships
    landmark_reader = None
    if args.objective == "render":
        landmark_reader = load_landmark_regressor(args.landmark_regressor)[0].to(accelerator.device)
        mask_editor = (
            load_mask_editor(args.landmark_regressor).to(accelerator.device) if args.render_masks == "edits" else None
        )
        render_weights = RenderWeights(args.lambda_gp, args.lambda_rec, args.lambda_high_frequency,
                                       args.lambda_adversarial, args.lambda_edit_adversarial)  # fmt: skip
        render_config = network_config(args)  # its window and the mask options its edits will use
    base_lrs = {name: opt.param_groups[0]["lr"] for name, opt in optimizers.items()}
    ema = None
    if args.ema_decay is not None:
        ema = AveragedModel(
            accelerator.unwrap_model(nets[trained]), multi_avg_fn=ema_with_warmup(args.ema_decay), use_buffers=True
        )
        accelerator.register_for_checkpointing(ema)

    steps_per_epoch = len(loader)
    total_steps = args.max_train_steps or args.num_epochs * steps_per_epoch
    # Constant until the start of epoch lr_decay_start_epoch, then linear to 0 at the last step;
    # a run cut short by --max_train_steps before that epoch keeps the constant rate.
    decay_start = min((args.lr_decay_start_epoch - 1) * steps_per_epoch, total_steps)
    weights = LossWeights(args.lambda_gp, args.lambda_d_cond, args.lambda_g_cond, args.lambda_rec)
    if accelerator.is_main_process:
        params = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
        print(f"{len(dataset)} samples, {steps_per_epoch} steps/epoch, {total_steps} steps, lr decay from "
              f"step {decay_start}; parameters: {params}")  # fmt: skip
    if args.dry_run:
        accelerator.end_training()
        return

    # --- resume: the newest complete checkpoint, or the one named
    step, last_checkpoint = 0, None
    if args.resume_from_checkpoint == "latest":
        path = (list_checkpoints(output_dir) or [None])[-1]
        if path is None:
            accelerator.print(f"no checkpoint in {output_dir / 'checkpoints'}; starting from scratch")
    else:
        path = Path(args.resume_from_checkpoint) if args.resume_from_checkpoint else None
        if path is not None and not (path / "train_state.json").is_file():
            raise FileNotFoundError(f"{path} is not a complete checkpoint (no train_state.json)")
    before = {"cpu_hours": 0.0, "steps_before": 0}  # what the trained network had before this run's steps
    if path is not None:
        accelerator.load_state(str(path))
        saved = json.loads((path / "train_state.json").read_text())
        step, last_checkpoint = saved["step"], path
        before = {"cpu_hours": saved.get("cpu_hours", 0.0), "steps_before": saved.get("steps_before", 0)}
        accelerator.print(f"resumed from {path} at step {step}")
    elif args.init_renderer:
        before = init_renderer(args, accelerator.unwrap_model(nets["renderer"]), ema)
        accelerator.print(f"renderer initialised from {args.init_renderer} ({before['steps_before']} steps, "
                          f"{before['cpu_hours']:.2f} CPU-hours)")  # fmt: skip
    if accelerator.is_main_process:
        accelerator.init_trackers("wemgan", config={k: v for k, v in args.config.items()
                                                    if isinstance(v, int | float | str | bool)})  # fmt: skip

    # --- the loop: one critic step per batch, one generator step every n_critic batches
    progress = tqdm(total=total_steps, initial=step, disable=not accelerator.is_local_main_process, desc="train")
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}  # G terms arrive every n_critic steps only
    tick, ticked_samples = time.perf_counter(), 0
    generator = nets[trained]
    cpu_at_start = time.process_time()  # --max_cpu_minutes counts this session's CPU time

    def out_of_cpu_time() -> bool:
        return args.max_cpu_minutes is not None and time.process_time() - cpu_at_start > 60 * args.max_cpu_minutes

    def train_state() -> dict:
        """The step and how long the trained network has trained, in CPU-hours of this process."""
        cpu_hours = before["cpu_hours"] + (time.process_time() - cpu_at_start) / 3600
        return {"step": step, "cpu_hours": round(cpu_hours, 4), "steps_before": before["steps_before"]}

    while step < total_steps:
        epoch, skip = divmod(step, steps_per_epoch)
        loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch in batches:
            warmup = step < args.reconstruction_warmup_steps
            for name, opt in optimizers.items():
                lr = base_lrs[name] * lr_factor(step, total_steps, decay_start)
                if warmup and name == "generator":
                    lr = args.warmup_learning_rate
                for group in opt.param_groups:
                    group["lr"] = lr
            rng = step_generator(args.seed, step, accelerator.process_index, accelerator.device)
            x, u_x = batch["image"], batch["aus"]
            if landmark_reader is not None:  # --objective render: redraw blanked parts, nothing else
                terms = render_step(accelerator, nets, optimizers, x, u_x, landmark_reader, render_weights, rng,
                                    mask_editor, render_config, args.render_edit_strengths)  # fmt: skip
                warmup = False
            else:
                terms = edit_step(accelerator, args, nets, optimizers, x, u_x, warmup, step, weights, rng,
                                  frozen_estimator)  # fmt: skip
            if ema is not None and (warmup or step % args.n_critic == 0 or landmark_reader is not None):
                ema.update_parameters(accelerator.unwrap_model(generator))
            check_finite(terms, "loss", step, last_checkpoint)
            step += 1
            progress.update(1)
            ticked_samples += x.shape[0] * accelerator.num_processes
            # --- bookkeeping
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value.item()
                counts[key] = counts.get(key, 0) + 1
            if step % args.log_steps == 0 or step == total_steps:
                logs = {key: sums[key] / counts[key] for key in sums}
                logs.update(lr=optimizers[trained].param_groups[0]["lr"], epoch=epoch,
                            samples_per_s=ticked_samples / (time.perf_counter() - tick))  # fmt: skip
                _log(accelerator, output_dir, logs, step)
                if "g/warmup_rec" in logs:  # warm-up: no critics yet, G's loss is the L1
                    progress.set_postfix(warmup_l1=f"{logs['g/warmup_rec']:.4f}")
                elif "r/rec" in logs:
                    progress.set_postfix(l1=f"{logs['r/rec']:.4f}", d=f"{logs.get('d_image/loss', float('nan')):.2f}")
                else:
                    progress.set_postfix(d=f"{logs['d_image/loss']:.2f}", g=f"{logs.get('g/loss', float('nan')):.2f}")
                sums, counts, tick, ticked_samples = {}, {}, time.perf_counter(), 0
            if args.sample_steps and (step % args.sample_steps == 0 or step == total_steps):
                if landmark_reader is not None:
                    _write_render_samples(accelerator, output_dir, ema or generator, landmark_reader, sample_faces,
                                          sample_aus, step, mask_editor, render_config)  # fmt: skip
                else:
                    _write_samples(accelerator, output_dir, ema or generator, sample_faces, sample_aus, step)
            if args.checkpointing_steps and step % args.checkpointing_steps == 0:
                last_checkpoint = _save_checkpoint(accelerator, args, output_dir, nets, ema, estimator, train_state())
            if args.export_every and step % args.export_every == 0:
                _export(accelerator, args, output_dir / "hub", nets, ema, estimator, train_state())
            if step >= total_steps or out_of_cpu_time():
                break
        if out_of_cpu_time():
            accelerator.print(f"stopping at step {step}: --max_cpu_minutes {args.max_cpu_minutes} used")
            break
    progress.close()

    # --- the end: replicas agree, final checkpoint + Hub folder, clean shutdown (gloo, see NOTES)
    in_sync = _replicas_in_sync(accelerator, nets)
    accelerator.print(f"replicas in sync: {in_sync}")
    if accelerator.is_main_process:
        _append_jsonl(output_dir / "metrics.jsonl", {"step": step, "replicas_in_sync": in_sync})
    if last_checkpoint is None or last_checkpoint.name != f"checkpoint-{step}":
        _save_checkpoint(accelerator, args, output_dir, nets, ema, estimator, train_state())
    folder = _export(accelerator, args, output_dir / "hub", nets, ema, estimator, train_state())
    if accelerator.is_main_process and args.push_to_hub:
        print(f"pushed: {push_folder(folder, args.push_to_hub)}")
    accelerator.wait_for_everyone()
    accelerator.free_memory(*nets.values(), *optimizers.values())
    gc.collect()
    accelerator.end_training()


def edit_step(
    accelerator, args, nets, optimizers, x, u_x, warmup: bool, step: int, weights: LossWeights, rng,
    frozen_estimator=None,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """--objective edit (paper): each sample takes another's AUs as its target; a critic step on
    every batch, a generator step every n_critic batches (or, in the warm-up, G's L1 alone)."""
    u_y, donors = pair_targets(u_x, rng, args.target_noise, return_donors=True)
    u_rel = u_y - u_x
    generator_turn = not warmup and step % args.n_critic == 0
    expression = None
    if args.expression_loss == "estimator" and generator_turn:
        expression = robust_expression(accelerator, frozen_estimator, x, donors, rng)
    if warmup:  # G learns to copy its input first: every step, no critics
        terms = warmup_step(accelerator, nets, optimizers, x, u_x)
    else:
        terms = critic_step(accelerator, nets, optimizers, x, u_x, u_rel, weights, rng)
    if generator_turn:
        terms.update(generator_step(accelerator, nets, optimizers, x, u_rel, u_y, weights, expression))
    return terms


def render_step(
    accelerator, nets, optimizers, x, u_x, landmark_reader, weights: RenderWeights, rng,
    mask_editor: LandmarkEditor | None = None, config: RendererConfig | None = None,
    edit_strengths: tuple[float, float] = (1.0, 1.0),
) -> dict[str, torch.Tensor]:  # fmt: skip
    """--objective render: random parts of each face are blanked (wemgan.render_masks) and the
    Renderer draws them back from the face's landmarks and AUs. The critics (if any) step first on
    this batch's drawing, then the Renderer steps against them: one renderer pass per batch.
    With config.window > 0 (a PartRenderer), one part per face is blanked, and the losses and critics see
    that part's window only (the rest of the face is the input's own). With a mask_editor, the
    masks have the shapes of real edits (what it redraws when a face takes another's expression,
    shaped by the mask options of the renderer's config, as its edits will be). With config.warped_input the
    renderer is shown, inside an edit's mask, the face moved to the other expression and back by the
    editor (its squeeze, stretch and drawn mouth) instead of a blank, and redraws the real face. Each
    edit's strength is drawn uniformly from edit_strengths, as a user's slider scales the AU change.
    With weights.lambda_edit_adversarial, the critics also judge each edit as the composed model draws it
    (edit_windows): masked reconstruction never shows the renderer a mouth whose surroundings disagree
    with its landmarks, which is what a fresh classifier spots in edits (docs/research/measures.md)."""
    config = config or RendererConfig()
    window, part_names = config.window, window_parts(config.cheek_windows)
    with torch.no_grad(), accelerator.autocast():
        landmarks = landmark_reader(x).float()
    size = x.shape[-1]
    if window:
        mask, parts = window_training_masks(landmarks, size, window, rng, part_names)
    else:
        mask, parts = training_masks(landmarks, size, rng), None
    seen = x  # what the renderer is shown; it blanks the mask itself unless config.warped_input
    judged_edits = None  # with weights.lambda_edit_adversarial: (drawn, real) edit windows for the critics
    if mask_editor is not None:
        lo, hi = edit_strengths
        strength = lo + (hi - lo) * torch.rand(len(x), 1, generator=rng, device=x.device)
        targets, donors = pair_targets(u_x, rng, return_donors=True)
        u_rel = strength * (targets - u_x)
        moves = mask_editor.landmark_moves(landmarks, u_rel)
        # With warped_input the face is moved by `moves` and back: the edit that draws it is the way back.
        start, move = (landmarks + moves, -moves) if config.warped_input else (landmarks, moves)
        edited = edit_mask(start, move, size, config)
        redrawn = edited.flatten(1).amax(1).view(-1, 1, 1, 1) > 0  # else the face keeps its random mask
        if window:
            mask, parts = window_masks_of(edited, landmarks, rng, mask, parts, part_names)
        else:
            mask = torch.where(redrawn, edited, mask)
        if weights.lambda_edit_adversarial and redrawn.any():
            faces = redrawn.flatten().nonzero().squeeze(1)
            with accelerator.autocast():
                judged_edits = edit_windows(nets["renderer"], mask_editor, x, landmarks, moves, u_rel, u_x, edited,
                                            faces, donors[faces], parts[faces], window, part_names)  # fmt: skip
        if config.warped_input:  # an edit's warp inside its mask; a random mask is shown blank, as without
            fill = torch.where(redrawn, mask_editor.round_trip(x, landmarks, moves), visible_mean_colour(x, mask))
            seen = x + mask * (fill - x)
    critics = [accelerator.unwrap_model(nets[n]) for n in ("image_critic", "high_frequency_critic") if n in nets]
    with accelerator.autocast():
        drawn = nets["renderer"](seen, mask, landmarks, u_x)
    if window:  # what the losses and critics judge: each face's chosen part's window, as it drew it
        samples = torch.arange(len(x), device=x.device)
        corners, part_masks = accelerator.unwrap_model(nets["renderer"]).windows(mask, landmarks)
        corners, mask = corners[samples, parts], part_masks[samples, parts, None]
        x, drawn, mask = (crop(t, samples, corners, window) for t in (x, drawn, mask))
    terms: dict[str, torch.Tensor] = {}
    if critics:
        grad_scale = accelerator.scaler.get_scale() if accelerator.scaler is not None else 1.0
        critic_weights = LossWeights(lambda_gp=weights.lambda_gp, lambda_d_cond=0.0)  # no AU head: nothing to fool
        real, fake = x, drawn
        if judged_edits is not None:  # the edits' windows join the reconstructions' as fakes, their donors' as reals
            real, fake = torch.cat([x, judged_edits[1]]), torch.cat([drawn, judged_edits[0]])
        no_aus = u_x.new_zeros(len(real), u_x.shape[1])  # read by no loss: the critics have no AU head here
        image_critic = nets["image_critic"]
        with accelerator.autocast():
            d_image = image_discriminator_loss(image_critic, real, fake, no_aus, critic_weights, grad_scale, rng)
        _update(accelerator, optimizers["image_critic"], d_image["loss"])
        terms |= {f"d_image/{k}": v for k, v in d_image.items() if k != "cond"}
        if "high_frequency_critic" in nets:
            with accelerator.autocast():
                d_high = high_frequency_discriminator_loss(
                    nets["high_frequency_critic"], real, fake, critic_weights, grad_scale, rng
                )
            _update(accelerator, optimizers["high_frequency_critic"], d_high["loss"])
            terms |= {f"d_high/{k}": v for k, v in d_high.items()}
        for critic in critics:
            critic.requires_grad_(False)
    with accelerator.autocast():
        losses = render_loss(drawn, x, mask, *([*critics, None, None])[:2], weights)
        if judged_edits is not None:
            edit_adversarial = adversarial_loss(judged_edits[0], *([*critics, None])[:2])
            losses["loss"] = losses["loss"] + weights.lambda_edit_adversarial * edit_adversarial
            losses["edit_adversarial"] = edit_adversarial.detach()
    _update(accelerator, optimizers["renderer"], losses["loss"])
    for critic in critics:
        critic.requires_grad_(True)
    return terms | {f"r/{k}": v for k, v in losses.items()}


def edit_windows(
    renderer, editor: LandmarkEditor, x, landmarks, moves, u_rel, u_x, masks, faces, donors, parts, window: int,
    part_names: tuple[str, ...],
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(drawn, real), N x 3 x window x window each: the edits of faces x[faces] (landmarks and their moves
    B x 68 x 2, u_rel B x 17, edit masks B x 1 x S x S) as the composed model draws them (the editor's edit,
    then the renderer inside the edit mask), each cut at one part's window (parts, N: indices into
    part_names, the PartRenderer's parts), and the same part
    of the real face whose expression it took (donors, N). Both windows are centred on the part's landmarks,
    so where they sit tells a critic nothing. Only the renderer's drawing carries gradient."""
    size = x.shape[-1]
    image, _ = editor.apply(x[faces], landmarks[faces], moves[faces], u_rel[faces])
    target = (u_x[faces] + u_rel[faces]).clamp(0, 1)
    moved = landmarks[faces] + moves[faces]  # where the edit puts them
    drawn = renderer(image, masks[faces].to(image.dtype), moved, target)
    rows = torch.arange(len(faces), device=x.device)
    drawn_corners = window_corners(moved, window, size, part_names)[rows, parts]
    real_corners = window_corners(landmarks[donors], window, size, part_names)[rows, parts]
    return crop(drawn, rows, drawn_corners, window), crop(x, donors, real_corners, window)


def critic_step(accelerator, nets, optimizers, x, u_x, u_rel, weights: LossWeights, rng) -> dict[str, torch.Tensor]:
    """D_I (eq. 1 + λ1 eq. 5) and D_H (eq. 3) on one batch, one backward per optimizer (fp16
    loss scaling updates its scale at every optimizer step); plus the AU estimator's step.
    Each loss is computed in one autocast region (backward runs outside, as torch advises):
    its cache casts each weight to low precision once for all of a network's calls there
    (the gradient penalty calls the critic a second time)."""
    grad_scale = accelerator.scaler.get_scale() if accelerator.scaler is not None else 1.0
    with torch.no_grad(), accelerator.autocast():
        fake = nets["generator"](x, u_rel)
    with accelerator.autocast():
        d_image = image_discriminator_loss(nets["image_critic"], x, fake, u_x, weights, grad_scale, rng)
    _update(accelerator, optimizers["image_critic"], d_image["loss"])
    terms = {f"d_image/{k}": v for k, v in d_image.items()}
    if "high_frequency_critic" in nets:
        with accelerator.autocast():
            d_high = high_frequency_discriminator_loss(nets["high_frequency_critic"], x, fake, weights, grad_scale, rng)
        _update(accelerator, optimizers["high_frequency_critic"], d_high["loss"])
        terms.update({f"d_high/{k}": v for k, v in d_high.items()})
    if "estimator" in nets:
        terms["estimator/loss"] = estimator_step(accelerator, nets, optimizers, x, u_x)
    return terms


def generator_step(
    accelerator, nets, optimizers, x, u_rel, u_y, weights: LossWeights, expression=None
) -> dict[str, torch.Tensor]:
    """G on one batch (eq. 9). The critics judge through their unwrapped modules with
    requires_grad off: no gradients for them, and no DDP reduction to wait for.
    expression: L_Gcond as a function of the edit (robust_expression), else D_I's AU head (paper)."""
    critics = [accelerator.unwrap_model(nets[n]) for n in ("image_critic", "high_frequency_critic") if n in nets]
    for critic in critics:
        critic.requires_grad_(False)
    generator = nets["generator"]
    with accelerator.autocast():  # one region: G's weights are cast once for its two calls
        # G(x, u_rel) and G(x, 0) in one call: instance norm is per sample, so batching changes nothing.
        fake, x_self = generator(torch.cat([x, x]), torch.cat([u_rel, torch.zeros_like(u_rel)])).chunk(2)
        x_cycle = generator(fake, -u_rel)
        high = critics[1] if len(critics) > 1 else None
        terms = generator_loss(fake, x, x_self, x_cycle, u_y, critics[0], high, weights, expression)
    _update(accelerator, optimizers["generator"], terms["loss"])
    for critic in critics:
        critic.requires_grad_(True)
    return {f"g/{k}": v for k, v in terms.items()}


def warmup_step(accelerator, nets, optimizers, x, u_x) -> dict[str, torch.Tensor]:
    """--reconstruction_warmup_steps: G(x, 0) -> x by L1 alone, plus the AU estimator's step.
    With the paper's lr and one G step per 4 batches, a U-Net needs thousands of steps just to
    learn to copy its input; a short run gets there first, then learns to edit."""
    with accelerator.autocast():
        rec = l1_distance(x, nets["generator"](x, torch.zeros_like(u_x)))
    _update(accelerator, optimizers["generator"], rec)
    terms = {"g/warmup_rec": rec.detach()}
    if "estimator" in nets:
        terms["estimator/loss"] = estimator_step(accelerator, nets, optimizers, x, u_x)
    return terms


def robust_expression(accelerator, estimator: AUEstimator, x, donors, rng):
    """--expression_loss estimator: L_Gcond(fake) = the frozen estimator's raw reading of judging views
    of the edit against its reading of such views of the donor faces (whose AUs are the targets).
    Readings of real faces, not labels, are the target: the raw reading of a face with AU12 0.9 is
    lower than 0.9 (regression to the mean), and asking for 0.9 would reward exaggeration."""
    with torch.no_grad(), accelerator.autocast():
        targets = estimator(judging_views(x, rng), calibrated=False).float()[donors]

    def loss(fake: torch.Tensor) -> torch.Tensor:
        return robust_expression_loss(lambda v: estimator(v, calibrated=False), fake, targets, rng)

    return loss


def estimator_step(accelerator, nets, optimizers, x, u_x) -> torch.Tensor:
    """The AU estimator's regression step on real images and their labels; its detached loss."""
    with accelerator.autocast():
        loss = au_regression_loss(nets["estimator"](x), u_x)
    _update(accelerator, optimizers["estimator"], loss)
    return loss.detach()


def _update(accelerator: Accelerator, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    optimizer.step()


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _log(accelerator: Accelerator, output_dir: Path, logs: dict[str, float], step: int) -> None:
    accelerator.log(logs, step=step)
    if accelerator.is_main_process:
        _append_jsonl(output_dir / "metrics.jsonl", {"step": step, **logs})


@torch.no_grad()
def _write_samples(accelerator, output_dir: Path, generator, faces, aus, step: int) -> None:
    """inputs | edits to fixed expressions | self-reconstruction, one row per face."""
    if not accelerator.is_main_process:
        return
    net = generator.module if isinstance(generator, AveragedModel) else accelerator.unwrap_model(generator)
    faces, aus = faces.to(accelerator.device), aus.to(accelerator.device)
    columns = [faces]
    for name in SAMPLE_EXPRESSIONS:
        target = torch.tensor(EXPRESSIONS[name], device=faces.device).expand_as(aus)
        columns.append(net(faces, target - aus))
    columns.append(net(faces, torch.zeros_like(aus)))
    grid = image_grid([[column[i].cpu() for column in columns] for i in range(len(faces))])
    (output_dir / "samples").mkdir(exist_ok=True)
    save_atomic_png(grid, output_dir / "samples" / f"step-{step:07d}.png")


@torch.no_grad()
def _write_render_samples(
    accelerator, output_dir: Path, renderer, landmark_reader, faces, aus, step: int,
    mask_editor: LandmarkEditor | None = None, config: RendererConfig | None = None,
) -> None:  # fmt: skip
    """A sheet of the EMA renderer's drawing of the sample faces (columns: _warp_correction_columns with
    config.warped_input, else _mouth_swap_columns)."""
    if not accelerator.is_main_process:
        return
    net = renderer.module if isinstance(renderer, AveragedModel) else accelerator.unwrap_model(renderer)
    faces, aus = faces.to(accelerator.device), aus.to(accelerator.device)
    landmarks = landmark_reader(faces).float()
    if config is not None and config.warped_input:
        columns = _warp_correction_columns(net, mask_editor, config, faces, aus, landmarks)
    else:
        columns = _mouth_swap_columns(net, faces, aus, landmarks)
    grid = image_grid([[column[i].cpu() for column in columns] for i in range(len(faces))])
    (output_dir / "samples").mkdir(exist_ok=True)
    save_atomic_png(grid, output_dir / "samples" / f"step-{step:07d}.png")


def _warp_correction_columns(net, mask_editor: LandmarkEditor, config: RendererConfig, faces, aus, landmarks):
    """Per face, as a warped-input renderer trains and edits: the face | what it is shown (the face moved
    to the next face's expression and back, inside the mask, with the contours) | its redrawing | the
    editor's edit to the next face's expression | that edit as it corrects it | the next face."""
    size, other = faces.shape[-1], aus.roll(1, 0)
    moves = mask_editor.landmark_moves(landmarks, other - aus)
    mask = edit_mask(landmarks + moves, -moves, size, config)
    seen = faces + mask * (mask_editor.round_trip(faces, landmarks, moves) - faces)
    edit = mask_editor(faces, other - aus)
    corrected = net(edit.image, edit_mask(edit.landmarks, edit.moves, size, config), edit.landmarks + edit.moves,
                    other)  # fmt: skip
    contours = draw_contours(landmarks, size).amax(1, keepdim=True)
    return [faces, seen.maximum(contours * 2 - 1), net(seen, mask, landmarks, aus), edit.image, corrected,
            faces.roll(1, 0)]  # fmt: skip


def _mouth_swap_columns(net, faces, aus, landmarks) -> list[torch.Tensor]:
    """Per face: the face | its masked input with the landmark contours | its redrawing | the
    contours of the next face's mouth, fitted to this mouth | the mouth drawn from them | that face."""
    size = faces.shape[-1]
    mask = training_masks(landmarks, size, torch.Generator(device=faces.device).manual_seed(0))
    contours = draw_contours(landmarks, size).amax(1, keepdim=True)
    shown = (faces * (1 - mask)).maximum(contours * 2 - 1)
    donor = landmarks.roll(1, 0)
    mouth = list(range(48, 68))
    centre, donor_centre = landmarks[:, mouth].mean(1, keepdim=True), donor[:, mouth].mean(1, keepdim=True)
    width = (landmarks[:, 54] - landmarks[:, 48]).norm(dim=-1) / (donor[:, 54] - donor[:, 48]).norm(dim=-1)
    target = landmarks.clone()
    target[:, mouth] = centre + (donor[:, mouth] - donor_centre) * width.view(-1, 1, 1)
    swap_mask = torch.maximum(mouth_mask(landmarks, size, 4.0), mouth_mask(target, size, 4.0))
    target_drawing = draw_contours(target, size).amax(1, keepdim=True) * 2 - 1
    return [faces, shown, net(faces, mask, landmarks, aus), target_drawing.expand_as(faces),
            net(faces, swap_mask, target, aus.roll(1, 0)), faces.roll(1, 0)]  # fmt: skip


def _save_checkpoint(accelerator, args, output_dir: Path, nets, ema, estimator, state: dict) -> Path:
    """accelerate state + the inference model, written under a .tmp name and renamed when complete."""
    step = state["step"]
    final = output_dir / "checkpoints" / f"checkpoint-{step}"
    staging = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        (staging / "train_state.json").write_text(json.dumps(state))
        if args.objective == "render":
            _save_renderer(accelerator, args, nets, ema, staging / "renderer", state)
        else:
            _inference_from(accelerator, args, nets, ema, estimator, step).save_pretrained(staging / "inference")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        for old in list_checkpoints(output_dir)[: -args.checkpoints_total_limit]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def _inference_from(accelerator, args, nets, ema, estimator, step: int) -> WEMGAN:
    generator = ema.module if ema is not None else accelerator.unwrap_model(nets["generator"])
    return inference_model(args, generator, accelerator.unwrap_model(estimator), step)


def _save_renderer(accelerator, args, nets, ema, folder: Path, state: dict) -> None:
    """The trained Renderer (its EMA if kept): model.safetensors + config.json (its constructor
    arguments and how it was trained), what hub/export.py composes with the landmark editor."""
    renderer = ema.module if ema is not None else accelerator.unwrap_model(nets["renderer"])
    folder.mkdir(parents=True, exist_ok=True)
    config = asdict(network_config(args))  # RendererConfig fields
    weights = {k: v.detach().cpu().contiguous() for k, v in renderer.state_dict().items()}
    safetensors.torch.save_file(weights, str(folder / "model.safetensors"))
    record = {"config": config, "image_size": renderer.image_size, "steps": state["steps_before"] + state["step"],
              "cpu_hours": state["cpu_hours"], "command": args.command, "init_renderer": args.init_renderer,
              "dataset": str(args.dataset)}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(record, indent=2))


def _export(accelerator, args, folder: Path, nets, ema, estimator, state: dict) -> Path:
    step = state["step"]
    if args.objective == "render":  # the renderer alone: hub/export.py composes it with the editor
        if accelerator.is_main_process:
            _save_renderer(accelerator, args, nets, ema, folder.with_name("renderer"), state)
            print(f"renderer: {folder.with_name('renderer')}")
        accelerator.wait_for_everyone()
        return folder.with_name("renderer")
    if accelerator.is_main_process:
        model = _inference_from(accelerator, args, nets, ema, estimator, step)
        write_hub_folder(model.cpu(), folder, model_card(model))
        print(f"Hub folder: {folder} (load with WEMGAN.from_pretrained({str(folder)!r}))")
    accelerator.wait_for_everyone()
    return folder


def _replicas_in_sync(accelerator: Accelerator, nets) -> bool:
    """Every process holds the same weights (a DDP desync would silently train N models)."""
    vector = torch.stack([torch.cat([p.detach().float().flatten() for p in net.parameters()]).double().sum()
                          for net in nets.values()])  # fmt: skip
    gathered = accelerator.gather(vector.to(accelerator.device)).view(accelerator.num_processes, -1)
    return bool(torch.all(gathered == gathered[0]).item())


if __name__ == "__main__":
    main(parse_args())
