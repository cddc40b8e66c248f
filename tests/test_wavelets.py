import numpy as np
import pytest
import pywt
import torch

from wemgan.wavelets import HaarDWT, HaarIDWT, HighFrequency, high_frequency


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 5, 6, 10), (3, 1, 128, 64)])
def test_dwt_matches_pywavelets(shape):
    x = torch.randn(*shape)
    bands = HaarDWT()(x)
    for b in range(shape[0]):
        for c in range(shape[1]):
            ca, (ch, cv, cd) = pywt.dwt2(x[b, c].double().numpy(), "haar")
            for ours, theirs in zip(bands, (ca, ch, cv, cd), strict=True):
                np.testing.assert_allclose(ours[b, c].numpy(), theirs, atol=1e-5)


def test_inverse_is_exact_and_matches_pywavelets():
    x = torch.randn(2, 4, 16, 12, dtype=torch.float64)
    bands = HaarDWT().double()(x)
    torch.testing.assert_close(HaarIDWT().double()(bands), x, rtol=0, atol=1e-12)
    ca, (ch, cv, cd) = pywt.dwt2(x[1, 2].numpy(), "haar")
    np.testing.assert_allclose(pywt.idwt2((ca, (ch, cv, cd)), "haar"), HaarIDWT().double()(bands)[1, 2].numpy())


def test_high_frequency_is_inverse_without_ll():
    x = torch.randn(2, 3, 32, 32)
    ll, lh, hl, hh = HaarDWT()(x)
    expected = HaarIDWT()((torch.zeros_like(ll), lh, hl, hh))
    torch.testing.assert_close(high_frequency(x), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(HighFrequency()(x), expected, rtol=0, atol=1e-5)
    # Equivalently: x minus the mean of each 2x2 block.
    block_mean = torch.nn.functional.avg_pool2d(x, 2).repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(high_frequency(x), x - block_mean, rtol=0, atol=1e-5)
    assert high_frequency(torch.ones(1, 1, 4, 4)).abs().max() < 1e-6  # constant image: no detail


def test_transforms_are_differentiable():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: HaarDWT().double()(t).hh, (x,))
    assert torch.autograd.gradcheck(high_frequency, (x,))


def test_channels_last_and_bfloat16_inputs():
    x = torch.randn(2, 8, 16, 16)
    torch.testing.assert_close(high_frequency(x.to(memory_format=torch.channels_last)), high_frequency(x))
    assert HighFrequency()(x.bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("shape", [(1, 3, 7, 8), (1, 3, 8, 9), (3, 8, 8)])
def test_bad_shapes_are_rejected_clearly(shape):
    with pytest.raises(ValueError, match=r"even height and width|B x C x H x W"):
        HaarDWT()(torch.randn(*shape))
