"""Train an AU regressor on its own: the built-in estimator, or the independent judge.

    python -m wemgan.au_training --network estimator --data ../shared/data/faces-au --out runs/estimator
    python -m wemgan.au_training --network judge --data ../shared/data/faces-au --out runs/judge

Why apart from the GAN: the estimator reads the AUs that expression transfer aims at and (with
--expression_loss estimator in train_accelerate.py) judges the generator's edits, so it must read
strong expressions as strong and must not be moved by the generator; the judge scores edits in
the evaluation and must never have seen a generator at all.

What makes them read real expressions rather than the label mean:
- augmentation (colour jitter, noise, blur, small rotation/scale/shift, mirror): AUs are geometry,
  so readings must not depend on colour, sharpness or a pixel of misalignment — which also makes
  them harder to fool with colour blotches and speckles;
- AU-balanced sampling: a face showing a rare AU (AU01, AU02, AU05, AU15, AU17, AU20, AU23, AU26,
  AU45 are shown by 2-18% of faces-au) is drawn up to --max_oversample times as often;
- for the estimator, a quantile calibration fitted on held-out training faces (see
  wemgan.au_estimator.QuantileCalibration) that undoes the squared error's shrinkage to the mean.

The run is a fixed number of steps (cosine learning rate), checkpointed every --checkpoint_steps to
OUT/checkpoint.pt (resumed when present); the end writes OUT/model.safetensors, OUT/model.json
(configuration and training record) and OUT/report.json (test-split scores, see report()).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from torch import Tensor, nn

from .au_estimator import AUEstimator
from .augment import augment
from .aus import AU_NAMES, NUM_AUS
from .data.datasets import load_training_data
from .metrics.au_judge import AUJudge
from .metrics.ed import estimator_errors, strong_expression_ratios
from .model import WEMGAN

PRESENT = 0.2  # an AU "is shown" above 1 on OpenFace's 0-5 scale


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--network", choices=["estimator", "judge"], required=True)
    add("--data", default="../shared/data/faces-au", help="a dataset with train/test splits (see load_training_data)")
    add("--cache", default=None, help="folder for a decoded uint8 copy of the data (built on first use)")
    add("--test_data", default=None, help="where the test split is, when --data names one split (a uint8 cache)")
    add("--out", type=Path, required=True)
    add("--steps", type=int, default=6000)
    add("--batch_size", type=int, default=64)
    add("--learning_rate", type=float, default=2e-3)
    add("--weight_decay", type=float, default=1e-4)
    add("--max_oversample", type=float, default=6.0, help="cap on how much more often a rare-AU face is drawn")
    add("--holdout", type=int, default=1500, help="training faces kept out for calibration and validation")
    add("--calibration_knots", type=int, default=33, help="estimator only; 0 = no calibration")
    add("--base_channels", type=int, default=32, help="estimator width")
    add("--max_channels", type=int, default=256, help="estimator width cap")
    add("--widths", type=int, nargs="+", default=[32, 64, 128, 256], help="judge stem and stage widths")
    add("--bf16", action="store_true", help="bf16 autocast (CPUs with AMX or AVX-512 bf16)")
    add("--checkpoint_steps", type=int, default=500)
    add("--seed", type=int, default=0)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------ data
def load_split(args: argparse.Namespace, split: str) -> tuple[Tensor, Tensor]:
    """All images of a split as uint8 N x 3 x 128 x 128 (in memory: ~1 GB for faces-au) and AUs N x 17."""
    source = args.test_data if split == "test" and args.test_data else args.data
    data = load_training_data(source, split, image_format="uint8", cache=args.cache)
    images = getattr(data, "images", None)
    if images is not None:  # the memory-mapped uint8 cache: one read into memory
        return torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(data.aus.copy())
    rows = [data[i] for i in range(len(data))]
    return torch.stack([r["image"] for r in rows]), torch.stack([r["aus"] for r in rows])


def sampling_weights(aus: Tensor, max_oversample: float) -> Tensor:
    """Per face: how often to draw it. A face showing AU a (label > PRESENT) gets weight
    (share of the commonest AU / share of a), capped; the rarest AU a face shows decides."""
    shown = aus > PRESENT
    share = shown.float().mean(0).clamp_min(1e-3)
    boost = (share.max() / share).clamp(max=max_oversample)  # per AU
    weights = torch.where(shown, boost, torch.ones_like(boost)).amax(1)
    return weights / weights.mean()


# ----------------------------------------------------------------------------------- model
def build_network(args: argparse.Namespace) -> nn.Module:
    if args.network == "estimator":
        return AUEstimator(NUM_AUS, args.base_channels, args.max_channels, args.calibration_knots)
    return AUJudge(NUM_AUS, tuple(args.widths))


def network_config(args: argparse.Namespace) -> dict:
    if args.network == "estimator":
        return dict(
            estimator_channels=args.base_channels,
            estimator_max_channels=args.max_channels,
            estimator_calibration_knots=args.calibration_knots,
        )
    return dict(widths=list(args.widths))


def raw_output(net: nn.Module, x: Tensor) -> Tensor:
    """What the squared error is taken on: the estimator's uncalibrated sigmoid."""
    return net(x, calibrated=False) if isinstance(net, AUEstimator) else net(x)


@torch.inference_mode()
def predict(net: nn.Module, images: Tensor, raw: bool = False, batch_size: int = 256) -> Tensor:
    net.eval()
    out = []
    for chunk in images.split(batch_size):
        x = chunk.float() / 127.5 - 1
        out.append(raw_output(net, x) if raw else net(x))
    return torch.cat(out).float()


def report(measured: np.ndarray, labels: np.ndarray) -> dict:
    """Test-split scores: MAE and mean PCC over all AUs (as the evaluation), mean PCC over the AUs
    shown (> 0.2) by at least 10% of faces, and on the decile of faces with the strongest label of
    AU04/06/12/25/26 the mean estimate ÷ the mean label (1 = no shrinkage)."""
    common = [j for j in range(NUM_AUS) if (labels[:, j] > PRESENT).mean() >= 0.1]
    per_au = {
        AU_NAMES[j]: float(np.corrcoef(measured[:, j], labels[:, j])[0, 1])
        for j in range(NUM_AUS)
        if labels[:, j].std() > 0 and measured[:, j].std() > 0
    }
    return {
        **estimator_errors(measured, labels),
        "pcc_common": float(np.mean([per_au[AU_NAMES[j]] for j in common if AU_NAMES[j] in per_au])),
        "common_aus": [AU_NAMES[j] for j in common],
        "pcc_per_au": per_au,
        "strong_decile_ratio": strong_expression_ratios(measured, labels),
    }


# -------------------------------------------------------------------------------- the run
def load_trained_estimator(folder: str | Path) -> tuple[AUEstimator, dict]:
    """The AU estimator this script wrote to `folder` (model.json + model.safetensors), in eval
    mode, and its model.json record (widths, calibration knots, steps, data). A WEMGAN Hub folder
    (config.json + model.safetensors, such as hub/default) gives its built-in estimator, so a run
    can start from the shipped one instead of training it again."""
    folder = Path(folder)
    if not (folder / "model.json").is_file() and (folder / "config.json").is_file():
        return _hub_model_estimator(folder)
    if not (folder / "model.json").is_file():
        raise FileNotFoundError(
            f"{folder} has no model.json: train an estimator with python -m wemgan.au_training --out {folder}"
        )
    record = json.loads((folder / "model.json").read_text())
    if record.get("network") != "estimator":
        raise ValueError(f"{folder} holds a {record.get('network')!r}, not an AU estimator")
    estimator = AUEstimator(NUM_AUS, record["estimator_channels"], record["estimator_max_channels"],
                            record["estimator_calibration_knots"])  # fmt: skip
    estimator.load_state_dict(safetensors.torch.load_file(str(folder / "model.safetensors")), strict=True)
    return estimator.eval(), record


def _hub_model_estimator(folder: Path) -> tuple[AUEstimator, dict]:
    """The built-in AU estimator of the WEMGAN model in Hub folder `folder`, in float32, and a
    record like model.json's (how that estimator was trained, when the model's card knows)."""
    model = WEMGAN.from_pretrained(folder)
    estimator = model.au_estimator.float().eval()
    config = model.model_config.estimator
    record = {
        **model.provenance.get("estimator", {}),
        "network": "estimator",
        "estimator_channels": config.channels,
        "estimator_max_channels": config.max_channels,
        "estimator_calibration_knots": estimator.calibration_knots,
        "folder": str(folder),
    }
    return estimator, record


def save_atomic(write, path: Path) -> None:
    """write(tmp_path), then rename: a crash never leaves a half-written file under `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def main(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    images, aus = load_split(args, "train")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
    held, train = order[: args.holdout], order[args.holdout :]
    weights = sampling_weights(aus[train], args.max_oversample)
    print(f"{len(train)} training faces, {len(held)} held out; oversampling up to {weights.max():.1f}x")

    net = build_network(args)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    )
    step, checkpoint = 0, args.out / "checkpoint.pt"
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step = state["step"]
        print(f"resumed at step {step}")

    tick, running = time.perf_counter(), 0.0
    while step < args.steps:
        net.train()
        rng = torch.Generator().manual_seed(args.seed * 1_000_003 + step)  # resumable: a function of the step
        pick = train[torch.multinomial(weights, args.batch_size, replacement=True, generator=rng)]
        x = augment(images[pick], rng)
        with torch.autocast("cpu", torch.bfloat16, enabled=args.bf16):
            loss = (raw_output(net, x).float() - aus[pick]).pow(2).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        step += 1
        running += loss.item()
        if step % 100 == 0:
            rate = 100 * args.batch_size / (time.perf_counter() - tick)
            lr = schedule.get_last_lr()[0]
            print(f"step {step}/{args.steps} loss {running / 100:.4f} lr {lr:.2e} {rate:.0f} img/s")
            tick, running = time.perf_counter(), 0.0
        if step % args.checkpoint_steps == 0 or step == args.steps:
            state = {"net": net.state_dict(), "optimizer": optimizer.state_dict(),
                     "schedule": schedule.state_dict(), "step": step}  # fmt: skip
            save_atomic(lambda p, s=state: torch.save(s, p), checkpoint)

    if isinstance(net, AUEstimator) and net.calibration is not None:
        net.calibration.fit(predict(net, images[held], raw=True), aus[held])
    test_images, test_aus = load_split(args, "test")
    scores = {"held_out_train": report(predict(net, images[held]).numpy(), aus[held].numpy()),
              "test": report(predict(net, test_images).numpy(), test_aus.numpy())}  # fmt: skip
    if isinstance(net, AUEstimator) and net.calibration is not None:
        scores["test_uncalibrated"] = report(predict(net, test_images, raw=True).numpy(), test_aus.numpy())
    record = {"network": args.network, **network_config(args), "data": args.data, "steps": args.steps,
              "batch_size": args.batch_size, "learning_rate": args.learning_rate, "seed": args.seed,
              "max_oversample": args.max_oversample, "holdout": args.holdout, "bf16": args.bf16,
              "parameters": sum(p.numel() for p in net.parameters())}  # fmt: skip
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_atomic(lambda p: safetensors.torch.save_file(state, str(p)), args.out / "model.safetensors")
    save_atomic(lambda p: p.write_text(json.dumps(record, indent=2)), args.out / "model.json")
    save_atomic(lambda p: p.write_text(json.dumps(scores, indent=2)), args.out / "report.json")
    test = scores["test"]
    print(f"test: MAE {test['au_mae']:.4f}, mean PCC {test['au_pcc']:.3f}, PCC over common AUs "
          f"{test['pcc_common']:.3f}; strong-decile estimate/label {test['strong_decile_ratio']}")  # fmt: skip


if __name__ == "__main__":
    main(parse_args())
