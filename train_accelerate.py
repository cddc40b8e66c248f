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
from pathlib import Path

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
from wemgan.data.datasets import load_training_data, pair_targets
from wemgan.discriminators import HighFrequencyDiscriminator, ImageDiscriminator
from wemgan.export import list_checkpoints, model_card, push_folder, write_hub_folder
from wemgan.generator import FLOW_RESOLUTION, Generator
from wemgan.landmark_motion import (
    crop_landmarks,
    landmark_displacements,
    load_landmark_regressor,
    motion_flow,
    parted_lips_flow,
)
from wemgan.losses import (
    LossWeights,
    au_regression_loss,
    edit_regularisation,
    generator_loss,
    high_frequency_discriminator_loss,
    image_discriminator_loss,
    l1_distance,
    landmark_motion_loss,
    robust_expression_loss,
)
from wemgan.model import WEMGAN

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
    # not in the paper: a generator that edits by motion, judged by a frozen robust AU reader
    # (docs/recipe-trials.md); the defaults are the paper's
    add(
        "--generator_output",
        default="image",
        choices=["image", "mask", "warp"],
        help="image: the decoder paints the edit (paper); mask: GANimation blend; warp: flow + masked colour",
    )
    add("--upsample", default="transposed", choices=["transposed", "resize"], help="decoder upsampling")
    add(
        "--zero_gate",
        action="store_true",
        help="mask/warp generators: flow and mask scale by tanh(4 |u_rel|), so G(x, 0) = x exactly",
    )
    add(
        "--stretch_gate",
        action="store_true",
        help="warp generators: colour only where the flow stretches the input (an opening mouth, a closing lid)",
    )
    add(
        "--shading",
        action="store_true",
        help="warp generators: also a smooth brightness factor beside the flow (cheeks, folds; no colour, no dots)",
    )
    add(
        "--mouth_cavity",
        action="store_true",
        help="with --motion_prior: lips part along a cut and the gap shows a mouth's inside, not stretched lip",
    )
    add(
        "--appearance",
        action="store_true",
        help="with --motion_prior: the smile's AUs also brighten and darken the skin as on real faces (no colour)",
    )
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
    add(
        "--flow_resolution",
        type=int,
        default=FLOW_RESOLUTION,
        help="warp generators: side of the decoder map the flow is predicted on (64, 32, 16 or 8 at 128 px)",
    )
    add("--lambda_mask", type=float, default=5.0, help="mask/warp generators: mean of the colour mask")
    add("--lambda_mask_tv", type=float, default=1.0, help="mask/warp generators: total variation of the mask")
    add("--lambda_flow", type=float, default=10.0, help="warp generators: flow smoothness")
    add("--lambda_fold", type=float, default=0.0, help="warp generators: penalty where the flow folds the face")
    add("--lambda_flow_magnitude", type=float, default=0.0, help="warp generators: mean |flow| (L1: sparse motion)")
    add("--lambda_shading", type=float, default=10.0, help="--shading: mean |shading| (L1: shade only what changes)")
    add(
        "--motion_prior",
        default=None,
        metavar="DIR",
        help="warp generators: start the flow from the landmark motion of real faces, landmarks read by the "
        "LandmarkRegressor in DIR (python -m wemgan.landmark_motion train-regressor)",
    )
    add(
        "--lambda_landmark_motion",
        type=float,
        default=0.0,
        help="warp generators: L1 (px) between the flow and the one that moves dlib's landmarks as real faces' "
        "move for the AU change (wemgan/landmark_motion.py); needs dlib",
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
    if args.motion_prior and args.generator_output != "warp":
        p.error("--motion_prior is a flow: add --generator_output warp")
    if args.stretch_gate and args.generator_output != "warp":
        p.error("--stretch_gate reads the flow: add --generator_output warp")
    if args.shading and args.generator_output != "warp":
        p.error("--shading is predicted beside the flow: add --generator_output warp")
    if args.mouth_cavity and not args.motion_prior:
        p.error("--mouth_cavity follows the lips' landmarks: add --motion_prior")
    if args.appearance and not args.motion_prior:
        p.error("--appearance follows the landmarks: add --motion_prior")
    if args.mouth_cavity and args.stretch_gate:
        p.error("--stretch_gate limits the colour head, which --mouth_cavity replaces: choose one")
    if args.lambda_landmark_motion and args.generator_output != "warp":
        p.error("--lambda_landmark_motion needs a flow to supervise: add --generator_output warp")
    preset = dict(PRESETS[args.preset])
    if args.num_epochs is not None:  # an explicit epoch count is not cut short by the preset's step cap
        preset.pop("max_train_steps")
    for key, value in preset.items():  # the preset fills what the command line left open
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


# ----------------------------------------------------------------------------- helpers
def build_networks(args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    """The networks to train (a frozen --estimator_path estimator is loaded by load_estimator)."""
    nets = {
        "generator": Generator(
            NUM_AUS, args.base_channels, args.max_channels, args.skip_levels, args.skip_kind, args.au_fusion,
            output=args.generator_output, upsample=args.upsample, zero_gate=args.zero_gate,
            flow_resolution=args.flow_resolution, motion_prior=bool(args.motion_prior),
            stretch_gate=args.stretch_gate, mouth_cavity=args.mouth_cavity, shading=args.shading,
            appearance=args.appearance,
        ),
        "image_critic": ImageDiscriminator(NUM_AUS, args.critic_base_channels, args.critic_max_channels),
    }  # fmt: skip
    if args.motion_prior:  # frozen, distilled from dlib: python -m wemgan.landmark_motion train-regressor
        regressor = nets["generator"].landmark_regressor
        regressor.load_state_dict(load_landmark_regressor(args.motion_prior).state_dict())
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


def inference_model(args: argparse.Namespace, generator: torch.nn.Module, estimator: torch.nn.Module, step: int):
    """The Hub-loadable WEMGAN holding (copies of) the trained generator and AU estimator."""
    model = WEMGAN(
        base_channels=args.base_channels, max_channels=args.max_channels, skip_levels=args.skip_levels,
        skip_kind=args.skip_kind, au_fusion=args.au_fusion, estimator_channels=args.estimator_channels,
        estimator_max_channels=args.estimator_max_channels, generator_output=args.generator_output,
        upsample=args.upsample, estimator_calibration_knots=estimator.calibration_knots,
        zero_gate=args.zero_gate, flow_resolution=args.flow_resolution, motion_prior=bool(args.motion_prior),
        stretch_gate=args.stretch_gate, mouth_cavity=args.mouth_cavity, shading=args.shading,
        appearance=args.appearance,
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
        # --mouth_cavity's generator does not run its colour head: DDP must not wait for its gradients
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)] if args.mouth_cavity else [],
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
    estimator = frozen_estimator if frozen_estimator is not None else nets["estimator"]
    base_lrs = {name: opt.param_groups[0]["lr"] for name, opt in optimizers.items()}
    ema = None
    if args.ema_decay is not None:
        ema = AveragedModel(
            accelerator.unwrap_model(nets["generator"]), multi_avg_fn=ema_with_warmup(args.ema_decay), use_buffers=True
        )
        accelerator.register_for_checkpointing(ema)

    steps_per_epoch = len(loader)
    total_steps = args.max_train_steps or args.num_epochs * steps_per_epoch
    # Constant until the start of epoch lr_decay_start_epoch, then linear to 0 at the last step;
    # a run cut short by --max_train_steps before that epoch keeps the constant rate.
    decay_start = min((args.lr_decay_start_epoch - 1) * steps_per_epoch, total_steps)
    weights = LossWeights(args.lambda_gp, args.lambda_d_cond, args.lambda_g_cond, args.lambda_rec,
                          args.lambda_mask, args.lambda_mask_tv, args.lambda_flow, args.lambda_fold,
                          args.lambda_flow_magnitude, args.lambda_landmark_motion, args.lambda_shading)  # fmt: skip
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
    if path is not None:
        accelerator.load_state(str(path))
        step = json.loads((path / "train_state.json").read_text())["step"]
        last_checkpoint = path
        accelerator.print(f"resumed from {path} at step {step}")
    if accelerator.is_main_process:
        accelerator.init_trackers("wemgan", config={k: v for k, v in args.config.items()
                                                    if isinstance(v, int | float | str | bool)})  # fmt: skip

    # --- the loop: one critic step per batch, one generator step every n_critic batches
    progress = tqdm(total=total_steps, initial=step, disable=not accelerator.is_local_main_process, desc="train")
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}  # G terms arrive every n_critic steps only
    tick, ticked_samples = time.perf_counter(), 0
    generator = nets["generator"]
    prior_basis = getattr(accelerator.unwrap_model(generator), "motion_basis", None)  # loaded state: its own
    cpu_at_start = time.process_time()  # --max_cpu_minutes counts this session's CPU time

    def out_of_cpu_time() -> bool:
        return args.max_cpu_minutes is not None and time.process_time() - cpu_at_start > 60 * args.max_cpu_minutes

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
            u_y, donors = pair_targets(u_x, rng, args.target_noise, return_donors=True)
            u_rel = u_y - u_x
            generator_turn = not warmup and step % args.n_critic == 0
            expression = motion = None
            if args.expression_loss == "estimator" and generator_turn:
                expression = robust_expression(accelerator, frozen_estimator, x, donors, rng)
            if args.lambda_landmark_motion and (generator_turn or warmup):
                motion = landmark_motion(x, u_rel, prior_basis, args.mouth_cavity, args.flow_resolution)

            if warmup:  # G learns to copy its input first: every step, no critics
                terms = warmup_step(accelerator, nets, optimizers, x, u_x, u_rel, weights, motion)
            else:
                terms = critic_step(accelerator, nets, optimizers, x, u_x, u_rel, weights, rng)
            if generator_turn:
                terms.update(generator_step(accelerator, nets, optimizers, x, u_rel, u_y, weights, expression, motion))
            if ema is not None and (warmup or step % args.n_critic == 0):
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
                logs.update(lr=optimizers["generator"].param_groups[0]["lr"], epoch=epoch,
                            samples_per_s=ticked_samples / (time.perf_counter() - tick))  # fmt: skip
                _log(accelerator, output_dir, logs, step)
                if "g/warmup_rec" in logs:  # warm-up: no critics yet, G's loss is the L1
                    progress.set_postfix(warmup_l1=f"{logs['g/warmup_rec']:.4f}")
                else:
                    progress.set_postfix(d=f"{logs['d_image/loss']:.2f}", g=f"{logs.get('g/loss', float('nan')):.2f}")
                sums, counts, tick, ticked_samples = {}, {}, time.perf_counter(), 0
            if args.sample_steps and (step % args.sample_steps == 0 or step == total_steps):
                _write_samples(accelerator, output_dir, ema or generator, sample_faces, sample_aus, step)
            if args.checkpointing_steps and step % args.checkpointing_steps == 0:
                last_checkpoint = _save_checkpoint(accelerator, args, output_dir, nets, ema, estimator, step)
            if args.export_every and step % args.export_every == 0:
                _export(accelerator, args, output_dir / "hub", nets, ema, estimator, step)
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
        _save_checkpoint(accelerator, args, output_dir, nets, ema, estimator, step)
    folder = _export(accelerator, args, output_dir / "hub", nets, ema, estimator, step)
    if accelerator.is_main_process and args.push_to_hub:
        print(f"pushed: {push_folder(folder, args.push_to_hub)}")
    accelerator.wait_for_everyone()
    accelerator.free_memory(*nets.values(), *optimizers.values())
    gc.collect()
    accelerator.end_training()


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
    accelerator, nets, optimizers, x, u_rel, u_y, weights: LossWeights, expression=None, motion=None
) -> dict[str, torch.Tensor]:
    """G on one batch (eq. 9). The critics judge through their unwrapped modules with
    requires_grad off: no gradients for them, and no DDP reduction to wait for.
    expression: L_Gcond as a function of the edit (robust_expression), else D_I's AU head (paper).
    motion: the landmark-motion loss as a function of G's flow (landmark_motion), or None."""
    critics = [accelerator.unwrap_model(nets[n]) for n in ("image_critic", "high_frequency_critic") if n in nets]
    for critic in critics:
        critic.requires_grad_(False)
    generator = nets["generator"]
    with accelerator.autocast():  # one region: G's weights are cast once for its two calls
        # G(x, u_rel) and G(x, 0) in one call: instance norm is per sample, so batching changes nothing.
        both, parts = generator(torch.cat([x, x]), torch.cat([u_rel, torch.zeros_like(u_rel)]), return_parts=True)
        fake, x_self = both.chunk(2)
        x_cycle = generator(fake, -u_rel)
        high = critics[1] if len(critics) > 1 else None
        terms = generator_loss(fake, x, x_self, x_cycle, u_y, critics[0], high, weights, expression, parts, motion)
    _update(accelerator, optimizers["generator"], terms["loss"])
    for critic in critics:
        critic.requires_grad_(True)
    return {f"g/{k}": v for k, v in terms.items()}


def warmup_step(
    accelerator, nets, optimizers, x, u_x, u_rel=None, weights: LossWeights | None = None, motion=None
) -> dict[str, torch.Tensor]:
    """--reconstruction_warmup_steps: G(x, 0) -> x by L1 alone, plus the AU estimator's step.
    With the paper's lr and one G step per 4 batches, a U-Net needs thousands of steps just to
    learn to copy its input; a short run gets there first, then learns to edit.
    motion (--lambda_landmark_motion): G also learns the moves, G(x, u_rel)'s flow making the
    landmark moves of real faces and G(x, 0)'s none, with the mask and flow penalties of the GAN
    phase: the warp exists before any critic or AU network can be fooled by painting."""
    generator = nets["generator"]
    with accelerator.autocast():
        if motion is None:
            rec = l1_distance(x, generator(x, torch.zeros_like(u_x)))
            loss, regularisation = rec, {}
        else:
            both, parts = generator(torch.cat([x, x]), torch.cat([u_rel, torch.zeros_like(u_rel)]), return_parts=True)
            rec = l1_distance(x, both.chunk(2)[1])
            regularisation = edit_regularisation(parts, weights, motion)
            loss = weights.lambda_rec * rec + sum(regularisation.values())
    _update(accelerator, optimizers["generator"], loss)
    terms = {"g/warmup_rec": rec.detach()} | {f"g/warmup_{k}": v.detach() for k, v in regularisation.items()}
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


def landmark_motion(
    x: torch.Tensor,
    u_rel: torch.Tensor,
    basis: torch.Tensor | None = None,
    parted_lips: bool = False,
    flow_resolution: int = 32,
):
    """--lambda_landmark_motion: flow -> landmark_motion_loss for G's batch of [x, x] edited by [u_rel, 0]:
    the flow should move x's landmarks as real faces' move for u_rel (wemgan.landmark_motion) and
    nothing for 0, so G(x, 0) keeps the face where it is (edit's paste-back subtracts it). basis: a
    motion-prior generator's own (saved with it), so that its prior and this target agree;
    parted_lips: --mouth_cavity's flow, cut between the lips (the generator's prior is that too)."""
    landmarks = crop_landmarks(x)
    moves = landmark_displacements(landmarks, u_rel, basis)
    landmarks, moves = torch.cat([landmarks, landmarks]), torch.cat([moves, torch.zeros_like(moves)])
    size = x.shape[-1]
    if parted_lips:  # the flow is full size, its halves are computed at flow_resolution
        target = parted_lips_flow(landmarks, moves, size, flow_resolution)
        return lambda flow: landmark_motion_loss(flow, target, size)
    return lambda flow: landmark_motion_loss(flow, motion_flow(landmarks, moves, size, flow.shape[-1]), size)


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


def _save_checkpoint(accelerator, args, output_dir: Path, nets, ema, estimator, step: int) -> Path:
    """accelerate state + the inference model, written under a .tmp name and renamed when complete."""
    final = output_dir / "checkpoints" / f"checkpoint-{step}"
    staging = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        (staging / "train_state.json").write_text(json.dumps({"step": step}))
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


def _export(accelerator, args, folder: Path, nets, ema, estimator, step: int) -> Path:
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
