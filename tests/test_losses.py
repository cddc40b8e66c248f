import pytest
import torch
from torch import nn

from wemgan.discriminators import HighFrequencyDiscriminator, ImageDiscriminator
from wemgan.generator import Generator
from wemgan.losses import (
    LossWeights,
    RenderWeights,
    au_regression_loss,
    generator_loss,
    gradient_penalty,
    high_frequency_discriminator_loss,
    image_discriminator_loss,
    masked_l1,
    reconstruction_loss,
    render_loss,
)
from wemgan.wavelets import high_frequency


class LinearCritic(nn.Module):
    """f(x) = <w, x>: its gradient is w everywhere, so the penalty is (||w|| - 1)^2."""

    def __init__(self, norm: float) -> None:
        super().__init__()
        w = torch.randn(3, 8, 8)
        self.w = nn.Parameter(w / w.norm() * norm)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


@pytest.mark.parametrize("norm", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("grad_scale", [1.0, 65536.0])
def test_gradient_penalty_closed_form(norm, grad_scale):
    critic = LinearCritic(norm)
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    penalty = gradient_penalty(critic, real, fake, grad_scale=grad_scale)
    assert penalty.item() == pytest.approx((norm - 1) ** 2, abs=1e-5)
    penalty.backward()  # create_graph=True: the penalty trains the critic
    assert critic.w.grad is not None


def test_au_regression_is_squared_l2_summed_over_aus():
    pred, target = torch.zeros(2, 17), torch.zeros(2, 17)
    pred[0, :4] = 0.5  # 4 * 0.25 = 1 for sample 0, 0 for sample 1
    assert au_regression_loss(pred, target).item() == pytest.approx(0.5)


def test_reconstruction_loss():
    x = torch.zeros(1, 3, 4, 4)
    assert reconstruction_loss(x, x, x).item() == 0
    assert reconstruction_loss(x, x + 0.5, x - 0.25).item() == pytest.approx(0.75)


@pytest.fixture
def nets():
    torch.manual_seed(0)
    return (
        Generator(base_channels=8, max_channels=32),
        ImageDiscriminator(base_channels=8, max_channels=64),
        HighFrequencyDiscriminator(base_channels=8, max_channels=64),
    )


def test_discriminator_losses_train_only_the_critic(nets):
    g, d_image, d_high = nets
    x, u_x, u_rel = torch.rand(2, 3, 128, 128) * 2 - 1, torch.rand(2, 17), torch.rand(2, 17) - 0.5
    fake = g(x, u_rel)
    terms = image_discriminator_loss(d_image, x, fake, u_x)
    assert set(terms) == {"loss", "wasserstein", "gp", "cond"}
    high = high_frequency_discriminator_loss(d_high, x, fake)
    assert set(high) == {"loss", "wasserstein", "gp"}
    (terms["loss"] + high["loss"]).backward()
    assert all(p.grad is None for p in g.parameters())
    assert all(p.grad is not None for p in d_image.parameters())
    assert all(p.grad is not None for p in d_high.parameters())
    w = LossWeights()
    expected = -terms["wasserstein"] + w.lambda_gp * terms["gp"] + w.lambda_d_cond * terms["cond"]
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_high_frequency_critic_sees_only_detail(nets):
    _, _, d_high = nets
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    # Adding a constant changes no 2x2-block difference: D_H cannot tell the images apart.
    terms = high_frequency_discriminator_loss(d_high, x, x + 0.3)
    assert abs(terms["wasserstein"].item()) < 1e-5


def test_generator_loss_eq9(nets):
    g, d_image, d_high = nets
    for critic in (d_image, d_high):
        critic.requires_grad_(False)  # as in the training loop's G step
    x, u_x = torch.rand(2, 3, 128, 128) * 2 - 1, torch.rand(2, 17)
    u_y = torch.rand(2, 17)
    fake = g(x, u_y - u_x)
    terms = generator_loss(fake, x, g(x, torch.zeros(2, 17)), g(fake, u_x - u_y), u_y, d_image, d_high)
    w = LossWeights()
    expected = terms["adv"] + terms["high"] + w.lambda_g_cond * terms["cond"] + w.lambda_rec * terms["rec"]
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    terms["loss"].backward()
    assert all(p.grad is not None for p in g.parameters())
    assert all(p.grad is None for p in d_image.parameters())
    without_high = generator_loss(fake, x, x, x, u_y, d_image, None)
    assert without_high["high"].item() == 0


def test_paper_weights():
    w = LossWeights()
    assert (w.lambda_gp, w.lambda_d_cond, w.lambda_g_cond, w.lambda_rec) == (10, 150, 150, 30)


def test_masked_l1_is_the_mean_error_over_the_masked_pixels_only():
    target = torch.zeros(2, 3, 8, 8)
    output = torch.full((2, 3, 8, 8), 5.0)  # wrong everywhere outside the mask ...
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:4, 2:4] = 1
    output[:, :, 2:4, 2:4] = 0.5  # ... and 0.5 off inside it
    assert masked_l1(output, target, mask).item() == pytest.approx(0.5)
    assert masked_l1(output, target, torch.zeros_like(mask)).item() == 0  # an empty mask counts nothing
    half = mask * 0.5  # a soft mask weights the pixels: the mean is still over them
    assert masked_l1(output, target, half).item() == pytest.approx(0.5)
    output.requires_grad_(True)
    masked_l1(output, target, mask).backward()
    assert output.grad[:, :, 2:4, 2:4].abs().min() > 0
    assert output.grad.abs().sum() == output.grad[:, :, 2:4, 2:4].abs().sum()  # nothing flows outside the mask


def test_masked_l1_under_bfloat16_is_float32():
    x = torch.rand(1, 3, 8, 8).bfloat16()
    assert masked_l1(x, torch.zeros_like(x), torch.ones(1, 1, 8, 8)).dtype == torch.float32


def test_render_loss_counts_only_the_masked_part_of_the_drawing():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 128, 128) * 2 - 1
    mask = torch.zeros(2, 1, 128, 128)
    mask[:, :, 60:90, 40:90] = 1
    output = target.clone()
    output[:, :, :40] = torch.rand(2, 3, 40, 128)  # changed far outside the mask (and its 1-px rim)
    terms = render_loss(output, target, mask, None, None)
    assert set(terms) == {"loss", "rec", "high_frequency"}  # no critics: no adversarial term
    assert terms["loss"].item() == 0
    output[:, :, 70:80, 50:60] += 0.4  # a change inside the mask
    terms = render_loss(output, target, mask, None, None, RenderWeights(lambda_rec=2.0, lambda_high_frequency=3.0))
    assert terms["rec"].item() == pytest.approx(0.4 * 100 / 1500, rel=1e-4)
    assert terms["high_frequency"].item() > 0  # the patch's edges are detail
    assert terms["loss"].item() == pytest.approx(2 * terms["rec"].item() + 3 * terms["high_frequency"].item())
    near = torch.nn.functional.max_pool2d(mask, 3, 1, 1)
    expected_high = masked_l1(high_frequency(output), high_frequency(target), near)
    assert terms["high_frequency"].item() == pytest.approx(expected_high.item())


def test_render_loss_adds_the_critics_only_when_given(nets):
    _, d_image, d_high = nets
    for critic in (d_image, d_high):
        critic.requires_grad_(False)  # as in the training loop's renderer step
    target = torch.rand(2, 3, 128, 128) * 2 - 1
    mask = torch.zeros(2, 1, 128, 128)
    mask[:, :, 60:90, 40:90] = 1
    output = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    weights = RenderWeights(lambda_adversarial=0.5)
    plain = render_loss(output, target, mask, None, None, weights)
    image_only = render_loss(output, target, mask, d_image, None, weights)
    both = render_loss(output, target, mask, d_image, d_high, weights)
    with torch.no_grad():
        adv_image = -d_image(output)[0].mean()
        adv_high = -d_high(high_frequency(output)).mean()
    assert "adversarial" not in plain
    assert image_only["adversarial"].item() == pytest.approx(adv_image.item(), rel=1e-5)
    assert both["adversarial"].item() == pytest.approx((adv_image + adv_high).item(), rel=1e-5)
    for terms in (image_only, both):
        expected = plain["loss"] + 0.5 * terms["adversarial"]
        assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    both["loss"].backward()
    assert output.grad.abs().sum() > 0 and all(p.grad is None for p in d_image.parameters())
    # The critics judge the whole image: their term moves pixels outside the mask too (the L1 terms do not).
    assert output.grad[:, :, :20].abs().sum() > 0


def test_render_weights_defaults():
    w = RenderWeights()
    assert (w.lambda_gp, w.lambda_rec, w.lambda_high_frequency, w.lambda_adversarial) == (10, 30, 30, 0.1)
