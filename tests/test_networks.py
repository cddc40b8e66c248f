"""Generator and critics against the paper's Tables 1 and 2, and the ablation configurations."""

import pytest
import torch
from torch import nn

from wemgan.config import GeneratorConfig
from wemgan.discriminators import HighFrequencyDiscriminator, ImageDiscriminator
from wemgan.flow import flow_stretch
from wemgan.generator import Generator
from wemgan.layers import SmallMapConv2d

IN, LRELU, RELU, TANH, NONE = "IN", "LeakyReLU", "ReLU", "Tanh", "-"

# Table 1: (kernel, stride, padding, normalisation, activation, input CxHxW, output CxHxW)
TABLE_1 = [
    (7, 1, 3, IN, LRELU, (3, 128, 128), (64, 128, 128)),
    (4, 2, 1, IN, LRELU, (64, 128, 128), (128, 64, 64)),
    (4, 2, 1, IN, LRELU, (128, 64, 64), (256, 32, 32)),
    (4, 2, 1, IN, LRELU, (256, 32, 32), (512, 16, 16)),
    (4, 2, 1, IN, LRELU, (512, 16, 16), (512, 8, 8)),
    (4, 2, 1, IN, LRELU, (512, 8, 8), (512, 4, 4)),
    (3, 1, 1, IN, RELU, (512 + 17, 4, 4), (512, 4, 4)),  # multiple AU fusion module
    (3, 1, 1, IN, NONE, (512 + 17, 4, 4), (512, 4, 4)),
    (3, 1, 1, IN, RELU, (2 * (512 + 17), 4, 4), (512, 4, 4)),
    (4, 2, 1, IN, RELU, (512, 4, 4), (512, 8, 8)),  # decoder
    (4, 2, 1, IN, RELU, (512, 8, 8), (512, 16, 16)),
    (4, 2, 1, IN, RELU, (2 * 512, 16, 16), (256, 32, 32)),
    (4, 2, 1, IN, RELU, (2 * 256, 32, 32), (128, 64, 64)),
    (4, 2, 1, IN, RELU, (2 * 128, 64, 64), (64, 128, 128)),
    (7, 1, 3, NONE, TANH, (64, 128, 128), (3, 128, 128)),
]

# Table 2 (D_H)
TABLE_2 = [
    (4, 2, 1, IN, LRELU, (3, 128, 128), (64, 64, 64)),
    (4, 2, 1, IN, LRELU, (64, 64, 64), (128, 32, 32)),
    (4, 2, 1, IN, LRELU, (128, 32, 32), (256, 16, 16)),
    (4, 2, 1, IN, LRELU, (256, 16, 16), (512, 8, 8)),
    (4, 2, 1, IN, LRELU, (512, 8, 8), (1024, 4, 4)),
    (4, 2, 1, IN, LRELU, (1024, 4, 4), (2048, 2, 2)),
    (3, 1, 1, NONE, NONE, (2048, 2, 2), (1, 2, 2)),
]


def _layer_after(parents: dict[nn.Module, nn.Module], conv: nn.Module, offset: int) -> nn.Module | None:
    parent = parents.get(conv)
    if parent is None:
        return None
    children = list(parent.children())
    index = children.index(conv) + offset
    return children[index] if index < len(children) else None


def walk(model: nn.Module, *inputs: torch.Tensor) -> list[tuple]:
    """Run the model once and describe every conv in call order, as the tables do."""
    parents = {child: parent for parent in model.modules() for child in parent.children()}
    rows = []

    def hook(conv, args, output):
        after = [_layer_after(parents, conv, k) for k in (1, 2)]
        norm = IN if isinstance(after[0], nn.InstanceNorm2d) else NONE
        acts = [m for m in after if isinstance(m, nn.ReLU | nn.LeakyReLU | nn.Tanh)]
        act = type(acts[0]).__name__ if acts else NONE
        rows.append(
            (
                conv.kernel_size[0],
                conv.stride[0],
                conv.padding[0],
                norm,
                act,
                tuple(args[0].shape[1:]),
                tuple(output.shape[1:]),
            )
        )

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    with torch.no_grad():
        model(*inputs)
    for handle in handles:
        handle.remove()
    return rows


def test_generator_matches_table_1():
    rows = walk(Generator(), torch.randn(1, 3, 128, 128), torch.zeros(1, 17))
    assert rows == TABLE_1


def test_high_frequency_discriminator_matches_table_2():
    assert walk(HighFrequencyDiscriminator(), torch.randn(1, 3, 128, 128)) == TABLE_2


def test_image_discriminator_heads():
    d = ImageDiscriminator()
    rows = walk(d, torch.randn(2, 3, 128, 128))
    assert [r[6] for r in rows[:6]] == [
        (64, 64, 64),
        (128, 32, 32),
        (256, 16, 16),
        (512, 8, 8),
        (1024, 4, 4),
        (2048, 2, 2),
    ]
    assert all(r[3] == NONE and r[4] == LRELU for r in rows[:6])  # WGAN-GP critic: no normalisation
    score, aus = d(torch.randn(2, 3, 128, 128))
    assert score.shape == (2, 1, 2, 2) and aus.shape == (2, 17)


def test_dit_skips_carry_high_frequency_of_encoder_features(monkeypatch):
    g = Generator(base_channels=8, max_channels=32)
    seen = []
    original = g.high_frequency.forward
    monkeypatch.setattr(g.high_frequency, "forward", lambda x: seen.append(tuple(x.shape[1:])) or original(x))
    g(torch.randn(1, 3, 128, 128), torch.zeros(1, 17))
    assert seen == [(16, 64, 64), (32, 32, 32), (32, 16, 16)]


def test_paper_configuration_size():
    params = sum(p.numel() for p in Generator().parameters())
    assert 34.7e6 < params < 34.9e6  # README: 34.82 M


@pytest.mark.parametrize("skip_levels", [0, 3, 4, 5])
@pytest.mark.parametrize("skip_kind", ["haar", "plain"])
@pytest.mark.parametrize("au_fusion", ["multi", "single"])
def test_ablation_configurations_run(skip_levels, skip_kind, au_fusion):
    g = Generator(base_channels=8, max_channels=32, skip_levels=skip_levels, skip_kind=skip_kind, au_fusion=au_fusion)
    y = g(torch.randn(2, 3, 128, 128), torch.rand(2, 17) * 2 - 1)
    assert y.shape == (2, 3, 128, 128)
    assert y.abs().max() <= 1


def test_ablation_sizes_are_ordered():
    def size(**kw):
        return sum(p.numel() for p in Generator(**kw).parameters())

    assert size(au_fusion="single") < size()
    assert size(skip_levels=0) < size(skip_levels=3) < size(skip_levels=4) < size(skip_levels=5)
    assert size(skip_kind="plain") == size(skip_kind="haar")  # same wiring, different signal


def test_skip_kind_changes_what_is_sent():
    torch.manual_seed(0)
    haar = Generator(base_channels=8, max_channels=32, skip_kind="haar")
    plain = Generator(base_channels=8, max_channels=32, skip_kind="plain")
    plain.load_state_dict(haar.state_dict())
    x, u = torch.randn(1, 3, 128, 128), torch.zeros(1, 17)
    assert not torch.allclose(haar(x, u), plain(x, u))


def test_au_condition_changes_the_output():
    torch.manual_seed(0)
    g = Generator(base_channels=8, max_channels=32)
    x = torch.randn(1, 3, 128, 128)
    assert not torch.allclose(g(x, torch.zeros(1, 17)), g(x, torch.ones(1, 17)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(skip_levels=2), "skip_levels"),
        (dict(skip_kind="wavelet"), "skip_kind"),
        (dict(au_fusion="double"), "au_fusion"),
        (dict(norm="batch"), "norm"),
        (dict(upsample="bicubic"), "upsample"),
        (dict(base_channels=64, max_channels=32), "base_channels <= max_channels"),
        (dict(image_size=100), "multiple of 32"),
    ],
)
def test_bad_configurations_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Generator(**kwargs)


@pytest.mark.parametrize(
    ("field", "value"),
    [("skip_levels", 2), ("skip_kind", "wavelet"), ("au_fusion", "double"), ("norm", "batch"), ("upsample", "x")],
)
def test_generator_config_names_the_bad_option_and_what_is_allowed(field, value):
    config = GeneratorConfig(**{field: value})
    with pytest.raises(ValueError, match=rf"^{field} must be one of .*got {value!r}$"):
        config.validate()
    assert GeneratorConfig().validate() == GeneratorConfig()  # the paper's defaults pass
    with pytest.raises(ValueError, match="image_size"):
        GeneratorConfig().validate(image_size=96 + 8)


def test_guide_channels_are_extra_inputs_of_the_first_conv():
    torch.manual_seed(0)
    g = Generator(base_channels=8, max_channels=16, guide_channels=5)
    assert g.encoder[0][0].in_channels == 3 + 5
    plain = Generator(base_channels=8, max_channels=16)
    assert plain.encoder[0][0].in_channels == 3  # the paper's: no guide
    x, u = torch.rand(2, 3, 128, 128) * 2 - 1, torch.rand(2, 17)
    guide = torch.zeros(2, 5, 128, 128)
    with torch.no_grad():
        y = g(x, u, guide)
        assert y.shape == (2, 3, 128, 128) and y.abs().max() <= 1
        guide[:, 2, 40:80, 40:80] = 1
        assert not torch.allclose(g(x, u, guide), y)  # the guide is seen
    with pytest.raises(RuntimeError):  # the guide is not optional once the network takes one
        g(x, u)
    with pytest.raises(RuntimeError):
        g(x, u, torch.zeros(2, 4, 128, 128))


def test_bad_inputs_are_rejected():
    g = Generator(base_channels=8, max_channels=32)
    with pytest.raises(ValueError, match="B x 3 x 128 x 128"):
        g(torch.randn(1, 3, 64, 64), torch.zeros(1, 17))
    with pytest.raises(ValueError, match="AUs of shape 1 x 17"):
        g(torch.randn(1, 3, 128, 128), torch.zeros(1, 16))


def test_generator_trains_in_bfloat16_autocast():
    g = Generator(base_channels=8, max_channels=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = g(torch.randn(2, 3, 128, 128), torch.zeros(2, 17))
    y.float().mean().backward()
    assert all(p.grad is not None for p in g.parameters())


@pytest.mark.parametrize(
    "in_ch, out_ch, kernel, stride, padding, bias, size",
    [(6, 10, 4, 2, 1, True, 4), (6, 10, 3, 1, 1, False, 4), (6, 5, 2, 1, 0, False, 2), (6, 10, 4, 2, 1, True, 8)],
)
def test_small_map_conv_equals_conv2d_with_gradient_penalty_gradients(
    in_ch, out_ch, kernel, stride, padding, bias, size
):
    torch.manual_seed(0)
    small = SmallMapConv2d(in_ch, out_ch, kernel, stride, padding, bias=bias).double()
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=bias).double()
    conv.load_state_dict(small.state_dict())  # the same parameters and state dict as nn.Conv2d

    def penalised(layer):  # output, and the weight gradient of a gradient penalty (double backward)
        x = torch.randn(3, in_ch, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        x.requires_grad_(True)
        y = layer(x)
        (grad,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        (weight_grad,) = torch.autograd.grad(grad.square().sum(), layer.weight)
        return y, weight_grad

    (y_small, g_small), (y_conv, g_conv) = penalised(small), penalised(conv)
    assert y_small.shape == y_conv.shape
    torch.testing.assert_close(y_small, y_conv)
    torch.testing.assert_close(g_small, g_conv)


def test_small_map_conv_matches_conv2d_under_bfloat16_autocast():
    torch.manual_seed(0)
    small = SmallMapConv2d(64, 32, 4, 2, 1)
    x = torch.randn(4, 64, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_small = small(x)
        y_conv = nn.functional.conv2d(x, small.weight, small.bias, 2, 1)
    assert y_small.dtype == y_conv.dtype == torch.bfloat16
    torch.testing.assert_close(y_small.float(), y_conv.float(), atol=2e-2, rtol=2e-2)


def test_flow_stretch_is_zero_for_motion_and_the_area_lost_for_magnification():
    size, s = 128, 32
    coords = (torch.arange(s) + 0.5) * (size / s) - 0.5  # pixel positions of the flow samples
    shift = torch.zeros(1, 2, s, s)
    shift[:, 0] = 5 / 64  # every pixel shows the input 5 px to its right: motion only
    assert flow_stretch(shift, size).abs().max() < 1e-6
    zoom = torch.zeros(1, 2, s, s)
    zoom[:, 0] = -0.5 * (coords - 64).view(1, -1) / 64  # x: each output px reads the input at 64 + (x - 64) / 2
    stretch = flow_stretch(zoom, size)
    assert torch.allclose(stretch[..., 2:-2, 2:-2], torch.full_like(stretch[..., 2:-2, 2:-2], 0.5), atol=1e-5)
    assert flow_stretch(-zoom, size).max() < 1e-6  # squeezed, not stretched
