"""Realism as a classifier two-sample test: can a fresh network tell edits from real faces?

A small CNN, trained from scratch at every call (it has never seen any model, so nothing was
trained to fool it), learns to tell edited faces of some people from unedited faces of other
people, and is scored on held-out images of both: accuracy 0.5 = indistinguishable, 1 = every
edit is spotted. Edits and real faces come from disjoint people, so the network cannot win by
recognising who was edited. An edit that changes nothing also scores 0.5: this measure counts
only beside the effect measures (judge, geometry). Two controls make its scale readable: real
against real (about 0.5) and a 10% darkening of every pixel (global brightness shifts are easy to
spot, so edits must not shift it).

Against real faces in general, even a perfect edit is spotted: every edited face shows the
expression, and most real faces do not (real smiles of other people against random real faces
score about 0.72 on faces-au). So each edit is also told from real faces of other people that
show its expression (`most_showing`): there 0.5 = as real as real expressions, and an edit that
changes nothing is spotted by its missing expression. The score of those real faces against random
real faces is printed beside it: what a perfect edit scores in the first test.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

TRAIN_SHARE = 0.7  # of each set, for training the classifier; the rest scores it
STEPS = 400  # classifier updates (batch BATCH): a fixed budget, the same for every model
BATCH = 32
SEEDS = (0, 1)  # each test is run with these seeds and averaged
MOUTH_BOX = (0.50, 0.92, 0.22, 0.78)  # top, bottom, left, right of the mouth crop, fractions of an aligned crop


def classifier(channels: int = 16) -> nn.Module:
    """Four stride-2 convs, global average pooling, one logit: small enough to train in seconds."""
    layers: list[nn.Module] = []
    width = 3
    for i in range(4):
        out = channels * 2**i
        layers += [nn.Conv2d(width, out, 3, 2, 1), nn.GroupNorm(4, out), nn.SiLU()]
        width = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 1))


def mouth_crops(images: np.ndarray) -> np.ndarray:
    """N x H x W x 3 aligned crops -> their mouth region (MOUTH_BOX)."""
    height, width = images.shape[1:3]
    top, bottom, left, right = MOUTH_BOX
    return images[:, round(top * height) : round(bottom * height), round(left * width) : round(right * width)]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # tied scores share their mean rank
    positives = labels.astype(bool)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / max(1, n_pos * n_neg))


def _tensor(images: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def trained_classifier(x: Tensor, y: Tensor, generator: torch.Generator, steps: int = STEPS) -> nn.Module:
    """A fresh classifier() trained to tell label 1 from label 0 (x: N x 3 x H x W in [-1, 1], y: N),
    on random mirrored batches; returned in eval mode."""
    net = classifier()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        batch = torch.randint(len(x), (BATCH,), generator=generator)
        flip = torch.rand(BATCH, generator=generator) < 0.5  # a mirrored face is as real
        inputs = torch.where(flip.view(-1, 1, 1, 1), x[batch].flip(-1), x[batch])
        loss = nn.functional.binary_cross_entropy_with_logits(net(inputs).squeeze(1), y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return net.eval()


def two_sample_test(edited: np.ndarray, real: np.ndarray, seed: int = 0, steps: int = STEPS) -> dict[str, float]:
    """Held-out accuracy and AUC of a fresh classifier telling `edited` (N x H x W x 3 uint8) from
    `real` (M x H x W x 3 uint8, other people); each set is split TRAIN_SHARE / rest."""
    if len(edited) < 4 or len(real) < 4:
        raise ValueError(f"a two-sample test needs at least 4 images a side, got {len(edited)} and {len(real)}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sides = []
    for images, label in ((edited, 1.0), (real, 0.0)):
        order = torch.randperm(len(images), generator=generator).numpy()
        cut = round(TRAIN_SHARE * len(images))
        sides.append((_tensor(images[order[:cut]]), _tensor(images[order[cut:]]), label))
    train_x = torch.cat([side[0] for side in sides])
    train_y = torch.cat([torch.full((len(side[0]),), side[2]) for side in sides])
    net = trained_classifier(train_x, train_y, generator, steps)
    with torch.no_grad():
        test_x = torch.cat([side[1] for side in sides])
        test_y = torch.cat([torch.full((len(side[1]),), side[2]) for side in sides]).numpy()
        scores = torch.cat([net(chunk).squeeze(1) for chunk in test_x.split(256)]).numpy()
    # Accuracy on a balanced held-out set: the mean of the two sides' hit rates.
    hits = [((scores > 0) == (test_y == 1))[test_y == side].mean() for side in (1, 0)]
    return {"accuracy": float(np.mean(hits)), "auc": auc(scores, test_y)}


def realism(edited: np.ndarray, real: np.ndarray, seeds: tuple[int, ...] = SEEDS, steps: int = STEPS) -> dict:
    """two_sample_test on the whole crops and on their mouths, averaged over `seeds`."""
    out = {}
    for region, pick in (("face", lambda a: a), ("mouth", mouth_crops)):
        runs = [two_sample_test(pick(edited), pick(real), seed, steps) for seed in seeds]
        out[region] = {key: float(np.mean([run[key] for run in runs])) for key in ("accuracy", "auc")}
    return out


def most_showing(aus: np.ndarray, expression: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n faces whose AUs (N x 17, 0-1) show `expression` (17 AUs) most, strongest
    first: ranked by the projection of their AUs on it (for a single AU: that AU's intensity)."""
    expression = np.asarray(expression, dtype=np.float64)
    if not expression.any():
        raise ValueError("most_showing needs an expression with at least one AU above 0")
    projection = np.asarray(aus, dtype=np.float64) @ expression / (expression @ expression)
    return np.argsort(-projection, kind="stable")[:n]


def realism_controls(first: np.ndarray, second: np.ndarray, seeds: tuple[int, ...] = SEEDS, steps: int = STEPS):
    """The scale's two ends on these faces (first and second: unedited faces of disjoint people):
    real against real, and `first` darkened by 10% against `second`."""
    darker = (first.astype(np.float32) * 0.9).round().astype(np.uint8)
    return {"real_vs_real": realism(first, second, seeds, steps), "darkened": realism(darker, second, seeds, steps)}
