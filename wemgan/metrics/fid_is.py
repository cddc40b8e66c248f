"""Fréchet Inception Distance and Inception Score (Table 5), from a user-given Inception network.

No installable package ships Inception-v3 weights, so the network is a TorchScript file given
with `--inception PATH`. The interface it must have:

    net = torch.jit.load(PATH)
    features, logits = net(images)

images: uint8 tensor N x 3 x H x W, RGB, 0-255, any H = W (here 128): the network resizes to
its own input size (299) and normalises itself, as the FID Inception of pytorch-fid /
NVIDIA's `pt_inception-2015-12-05` do internally. features: N x 2048 float, the final average
pool ("pool_3", what FID uses). logits: N x C float class logits before the softmax (C = 1008
for the FID Inception, 1000 for torchvision's), from which IS takes p(y|x) = softmax(logits).
Wrap a network that returns something else in a small module with this forward and script it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch


def inception_unavailable(path: str | os.PathLike | None) -> str | None:
    """Why FID/IS cannot be computed, or None."""
    if path is None:
        return (
            "no Inception network: pass --inception PATH, a TorchScript file returning (2048-d pool features, "
            "logits) for uint8 images (see wemgan/metrics/fid_is.py); no installable package ships the weights"
        )
    if not os.path.isfile(path):
        return f"--inception {path} does not exist"
    return None


def load_inception(path: str | os.PathLike) -> torch.jit.ScriptModule:
    return torch.jit.load(str(path), map_location="cpu").eval()


@torch.inference_mode()
def inception_outputs(net: torch.nn.Module, images: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(features N x D, logits N x C) of N x H x W x 3 uint8 images."""

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(images), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).permute(0, 3, 1, 2)
            out = net(chunk)
            if not (isinstance(out, tuple | list) and len(out) == 2 and out[0].ndim == 2 and out[1].ndim == 2):
                raise ValueError("the Inception network must return (features N x 2048, logits N x C); see fid_is.py")
            yield out[0].double(), out[1].double()

    features, logits = zip(*batches(), strict=True)
    return torch.cat(features).numpy(), torch.cat(logits).numpy()


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (N - 1 normalisation, as pytorch-fid) of N x D features."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least 2 feature vectors (N x D), got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix; round-off negatives are clipped to 0."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the distance between two Gaussians.

    Tr (S1 S2)^(1/2) is computed as the sum of the square roots of the eigenvalues of the
    symmetric S1^(1/2) S2 S1^(1/2), which has the same spectrum as S1 S2. Unlike sqrtm of the
    non-symmetric product (pytorch-fid, which then needs an eps offset and drops an imaginary
    part), this stays real and finite when the covariances are singular, as they are with
    fewer images than feature dimensions.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shapes do not match: mu {mu1.shape} {mu2.shape}, sigma {sigma1.shape} {sigma2.shape}")
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean)


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))), mean and std over `splits` equal parts (Salimans et al.).

    With fewer images than splits, one split per image would make every KL 0: splits is
    reduced so that each part holds at least 2 images.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(logits) < 1:
        raise ValueError(f"logits must be N x C, got shape {logits.shape}")
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))  # log-softmax, stable for large logits
    scores = []
    for part in np.array_split(log_p, max(1, min(splits, len(log_p) // 2))):
        log_marginal = np.log(np.exp(part).mean(axis=0))
        kl = (np.exp(part) * (part - log_marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
