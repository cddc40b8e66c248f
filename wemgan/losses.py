"""WEM-GAN objectives (paper §3.4, eqs. 1-9).

Each function returns a dict of named scalar terms; "loss" is the one to back-propagate,
the others are for logging. The discriminator objectives are split per critic (D_I and
D_H) so that a training loop can run one backward per optimizer (needed by fp16 loss
scaling, which updates the scale at every optimizer step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .augment import judging_views
from .discriminators import HighFrequencyDiscriminator, ImageDiscriminator
from .wavelets import high_frequency

FOLD_MARGIN = 0.5  # flow_folding: an area may shrink to half its size before the penalty starts


@dataclass(frozen=True)
class LossWeights:
    """The objective's coefficients; defaults are the paper's (§4.1) and WGAN-GP's."""

    lambda_gp: float = 10.0  # gradient penalty, eqs. 1 and 3
    lambda_d_cond: float = 150.0  # λ1: D_I's AU regression on real images, eq. 8
    lambda_g_cond: float = 150.0  # λ2: G's target-AU loss, eq. 9
    lambda_rec: float = 30.0  # λ3: self- and cycle-reconstruction L1, eq. 9
    # Not in the paper; they apply only to generators with a mask or flow (Generator(output=...)).
    lambda_mask: float = 5.0  # mean of the colour mask: paint only where motion cannot do it
    lambda_mask_tv: float = 1.0  # total variation of the mask: whole regions, not dots
    lambda_flow: float = 10.0  # squared gradient of the flow: faces move smoothly
    lambda_fold: float = 0.0  # where the warp folds or squeezes an area below FOLD_MARGIN of its size
    lambda_flow_magnitude: float = 0.0  # mean |flow|: move only what the expression needs
    lambda_landmark_motion: float = 0.0  # px from the landmark moves real faces make (wemgan.landmark_motion)
    lambda_shading: float = 10.0  # mean |shading|: shade only where the expression changes the light


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    grad_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """E[(||∇ critic(x̃)||_2 - 1)^2] at random interpolates x̃ between real and fake.

    grad_scale: under fp16 loss scaling, pass the current loss scale; the critic output is
    multiplied by it before autograd.grad (so small gradients do not underflow) and the
    gradient divided by it afterwards. The norm is taken in fp32.
    generator: source of the interpolation weights (a per-step generator makes resumed
    training repeat an uninterrupted run exactly); default: the global RNG.
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype, generator=generator)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    score = critic(mixed)
    (grad,) = torch.autograd.grad(score.sum() * grad_scale, mixed, create_graph=True)
    grad = grad.float().flatten(1) / grad_scale
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


def au_regression_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """E[||predicted - target||_2^2]: squared L2 over the AUs, mean over the batch (eqs. 5, 6)."""
    return (predicted.float() - target.float()).pow(2).sum(1).mean()


def image_discriminator_loss(
    critic: ImageDiscriminator,
    real: Tensor,
    fake: Tensor,
    real_aus: Tensor,
    weights: LossWeights = LossWeights(),
    grad_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """D_I's part of eq. 8: eq. 1 (WGAN-GP) + λ1 · eq. 5 (AU regression on real images)."""
    # One critic call on real and fake: the critic treats samples independently, so this is
    # two calls' result at one call's cost in kernel launches and (under autocast) weight casts.
    scores, predictions = critic(torch.cat([real, fake.detach()]))
    (real_score, fake_score), real_pred = scores.chunk(2), predictions[: real.shape[0]]
    wasserstein = real_score.float().mean() - fake_score.float().mean()
    penalty = gradient_penalty(lambda x: critic(x)[0], real, fake, grad_scale, generator)
    cond = au_regression_loss(real_pred, real_aus)
    loss = -wasserstein + weights.lambda_gp * penalty + weights.lambda_d_cond * cond
    return {"loss": loss, "wasserstein": wasserstein.detach(), "gp": penalty.detach(), "cond": cond.detach()}


def high_frequency_discriminator_loss(
    critic: HighFrequencyDiscriminator,
    real: Tensor,
    fake: Tensor,
    weights: LossWeights = LossWeights(),
    grad_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """D_H's part of eq. 8: eq. 3, WGAN-GP on the Haar high-frequency images x_h = W(x)."""
    real_high, fake_high = high_frequency(real), high_frequency(fake.detach())
    real_score, fake_score = critic(torch.cat([real_high, fake_high])).float().chunk(2)
    wasserstein = real_score.mean() - fake_score.mean()
    penalty = gradient_penalty(critic, real_high, fake_high, grad_scale, generator)
    loss = -wasserstein + weights.lambda_gp * penalty
    return {"loss": loss, "wasserstein": wasserstein.detach(), "gp": penalty.detach()}


def l1_distance(x: Tensor, y: Tensor) -> Tensor:
    """||x - y||_1 as a per-pixel mean, in float32."""
    return (x - y).abs().float().mean()


def reconstruction_loss(x: Tensor, x_self: Tensor, x_cycle: Tensor) -> Tensor:
    """Eq. 7: ||x - G(x, 0)||_1 + ||x - G(G(x, u_rel), -u_rel)||_1, per-pixel means."""
    return l1_distance(x, x_self) + l1_distance(x, x_cycle)


def total_variation(x: Tensor) -> Tensor:
    """Mean |difference| between neighbouring pixels, in float32."""
    x = x.float()
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def flow_smoothness(flow: Tensor) -> Tensor:
    """Mean squared difference between neighbouring flow vectors: large where the face would tear."""
    flow = flow.float()
    return (flow[..., 1:, :] - flow[..., :-1, :]).pow(2).mean() + (flow[..., :, 1:] - flow[..., :, :-1]).pow(2).mean()


def flow_folding(flow: Tensor, margin: float = FOLD_MARGIN) -> Tensor:
    """Mean of relu(margin - det J)^2 over the flow's grid, J the Jacobian of p -> p + flow(p).

    det J is the factor by which the warp changes a small area: 1 for no change, near 0 where
    the face is squeezed into a crease, below 0 where it folds over itself (a nose or lip drawn
    twice, torn lip edges). Smoothness alone does not stop a large smooth flow from folding.
    """
    flow = flow.float()
    height, width = flow.shape[-2:]
    dx = (flow[..., :-1, 1:] - flow[..., :-1, :-1]) * (width / 2)  # d flow / d x in grid units ([-1, 1] is 2 wide)
    dy = (flow[..., 1:, :-1] - flow[..., :-1, :-1]) * (height / 2)
    det = (1 + dx[:, 0]) * (1 + dy[:, 1]) - dy[:, 0] * dx[:, 1]
    return torch.relu(margin - det).pow(2).mean()


def landmark_motion_loss(flow: Tensor, target: Tensor, image_size: int) -> Tensor:
    """Mean L1 distance in pixels between a warp's flow and the target flow (both B x 2 x h x w in
    [-1, 1] units, as `generator.warp` takes them for image_size px images), e.g. the flow
    `wemgan.landmark_motion.motion_flow` makes from the landmark moves of real faces."""
    return (flow.float() - target.float()).abs().mean() * (image_size / 2)


def edit_regularisation(
    parts: dict[str, Tensor], weights: LossWeights, landmark_motion: Callable[[Tensor], Tensor] | None = None
) -> dict[str, Tensor]:
    """Penalties on the mask and flow of a mask or warp generator (GANimation's mask terms; a
    smoothness term for the flow). Empty for the paper's plain-image generator.
    landmark_motion: flow -> landmark_motion_loss for this batch (with lambda_landmark_motion)."""
    terms: dict[str, Tensor] = {}
    if "mask" in parts:
        terms["mask"] = weights.lambda_mask * parts["mask"].float().mean()
        terms["mask_tv"] = weights.lambda_mask_tv * total_variation(parts["mask"])
    if "flow" in parts:
        # The network's own flow: a motion prior is smooth where it should be and cut where lips part.
        terms["flow"] = weights.lambda_flow * flow_smoothness(parts.get("network_flow", parts["flow"]))
        if weights.lambda_fold:
            terms["fold"] = weights.lambda_fold * flow_folding(parts["flow"])
        if weights.lambda_flow_magnitude:
            # L1, so most of the face gets exactly no motion: a frozen estimator rewards stretching
            # the whole face (noses pulled down, faces lengthened) as much as moving lip corners.
            terms["flow_magnitude"] = weights.lambda_flow_magnitude * parts["flow"].float().abs().mean()
        if landmark_motion is not None:
            terms["landmark_motion"] = weights.lambda_landmark_motion * landmark_motion(parts["flow"])
    if "shading" in parts:
        terms["shading"] = weights.lambda_shading * parts["shading"].float().abs().mean()
    return terms


def generator_loss(
    fake: Tensor,
    x: Tensor,
    x_self: Tensor,
    x_cycle: Tensor,
    target_aus: Tensor,
    image_critic: ImageDiscriminator,
    high_frequency_critic: HighFrequencyDiscriminator | None,
    weights: LossWeights = LossWeights(),
    expression_loss: Callable[[Tensor], Tensor] | None = None,
    parts: dict[str, Tensor] | None = None,
    landmark_motion: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Eq. 9: L_G = L_Gadv + L_GH + λ2 L_Gcond + λ3 L_rec (+ mask and flow penalties).

    fake = G(x, u_rel), x_self = G(x, 0), x_cycle = G(fake, -u_rel), target_aus = u_y.
    high_frequency_critic=None drops L_GH (the "w/o D_h" ablation).
    expression_loss: L_Gcond from another judge than D_I's AU head (fake -> scalar), e.g.
        robust_expression_loss with a frozen estimator; None = D_I's head against target_aus (paper).
    parts: the generator's mask/flow (Generator(..., return_parts=True)) for edit_regularisation.
    landmark_motion: flow -> landmark_motion_loss of this batch (warp generators), for edit_regularisation.
    """
    fake_score, fake_pred = image_critic(fake)
    adv = -fake_score.float().mean()
    high = (
        -high_frequency_critic(high_frequency(fake)).float().mean()
        if high_frequency_critic is not None
        else torch.zeros((), device=fake.device)
    )
    cond = expression_loss(fake) if expression_loss is not None else au_regression_loss(fake_pred, target_aus)
    rec = reconstruction_loss(x, x_self, x_cycle)
    regularisation = edit_regularisation(parts or {}, weights, landmark_motion)
    loss = adv + high + weights.lambda_g_cond * cond + weights.lambda_rec * rec + sum(regularisation.values())
    terms = {"loss": loss, "adv": adv.detach(), "high": high.detach(), "cond": cond.detach(), "rec": rec.detach()}
    return terms | {name: value.detach() for name, value in regularisation.items()}


def robust_expression_loss(
    estimator: Callable[[Tensor], Tensor], fake: Tensor, target_readings: Tensor, generator: torch.Generator
) -> Tensor:
    """L_Gcond judged through random low-passed copies of the edit (wemgan.augment.judging_views).

    estimator: a frozen AU network (image -> B x 17, its raw reading); target_readings: what it
    reads on the same kind of copies of real faces that show the target expression. Blur, a trip
    through 64 px, shifts and noise wash out the dot patterns that fool an AU network seeing the
    exact pixels; what survives them is a change of shape.
    """
    return au_regression_loss(estimator(judging_views(fake, generator)), target_readings)
