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
from .flow import max_filter
from .wavelets import high_frequency


@dataclass(frozen=True)
class LossWeights:
    """The objective's coefficients; defaults are the paper's (§4.1) and WGAN-GP's."""

    lambda_gp: float = 10.0  # gradient penalty, eqs. 1 and 3
    lambda_d_cond: float = 150.0  # λ1: D_I's AU regression on real images, eq. 8
    lambda_g_cond: float = 150.0  # λ2: G's target-AU loss, eq. 9
    lambda_rec: float = 30.0  # λ3: self- and cycle-reconstruction L1, eq. 9


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
) -> dict[str, Tensor]:
    """Eq. 9: L_G = L_Gadv + L_GH + λ2 L_Gcond + λ3 L_rec.

    fake = G(x, u_rel), x_self = G(x, 0), x_cycle = G(fake, -u_rel), target_aus = u_y.
    high_frequency_critic=None drops L_GH (the "w/o D_h" ablation).
    expression_loss: L_Gcond from another judge than D_I's AU head (fake -> scalar), e.g.
        robust_expression_loss with a frozen estimator; None = D_I's head against target_aus (paper).
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
    loss = adv + high + weights.lambda_g_cond * cond + weights.lambda_rec * rec
    return {"loss": loss, "adv": adv.detach(), "high": high.detach(), "cond": cond.detach(), "rec": rec.detach()}


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


@dataclass(frozen=True)
class RenderWeights:
    """The renderer's objective (masked reconstruction; not in the paper, which edits whole faces)."""

    lambda_gp: float = 10.0  # gradient penalty of D_I and D_H (WGAN-GP, as the paper's critics)
    lambda_rec: float = 30.0  # L1 inside the mask: draw the face that was there
    lambda_high_frequency: float = 30.0  # L1 of the Haar high-frequency parts inside the mask: its detail
    lambda_adversarial: float = 0.1  # D_I and D_H: sharp teeth and skin where L1 alone averages to a blur
    lambda_edit_adversarial: float = 0.0  # D_I and D_H on edits as the composed model draws them: no ground truth


def masked_l1(output: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean |output - target| over the masked pixels (mask B x 1 x S x S weights them), in float32."""
    weight = mask.float().expand_as(output)
    return ((output - target).abs().float() * weight).sum() / weight.sum().clamp_min(1.0)


def render_loss(
    output: Tensor,
    target: Tensor,
    mask: Tensor,
    image_critic: ImageDiscriminator | None,
    high_critic: HighFrequencyDiscriminator | None,
    weights: RenderWeights = RenderWeights(),
) -> dict[str, Tensor]:
    """The renderer's loss: masked L1, masked high-frequency L1 and, with critics, their WGAN terms."""
    rec = masked_l1(output, target, mask)
    # The Haar transform mixes 2x2 blocks: its mask is widened by a pixel so the rim counts.
    near = max_filter(mask.float(), 1)
    high = masked_l1(high_frequency(output), high_frequency(target), near)
    loss = weights.lambda_rec * rec + weights.lambda_high_frequency * high
    terms = {"rec": rec.detach(), "high_frequency": high.detach()}
    if image_critic is not None:
        adversarial = adversarial_loss(output, image_critic, high_critic)
        loss = loss + weights.lambda_adversarial * adversarial
        terms["adversarial"] = adversarial.detach()
    return {"loss": loss, **terms}


def adversarial_loss(
    output: Tensor, image_critic: ImageDiscriminator, high_critic: HighFrequencyDiscriminator | None
) -> Tensor:
    """The WGAN generator term: minus the critics' mean scores of output (D_I's, and D_H's on its Haar detail)."""
    adversarial = -image_critic(output)[0].float().mean()
    if high_critic is not None:
        adversarial = adversarial - high_critic(high_frequency(output)).float().mean()
    return adversarial
