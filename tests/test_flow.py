"""The image geometry the editor and training run on every edit (wemgan.flow, guides, masks, fold factors),
against slow, plain references: the fast forms must draw and measure the same."""

import pytest
import torch
from matplotlib.path import Path as PolygonPath
from torch import nn

from wemgan.flow import derivative, flow_stretch, max_filter, polygon_coverage
from wemgan.landmark_guides import CONTOUR_CHANNELS, LINE_WIDTH, draw_contours
from wemgan.landmark_motion import FOLD_MARGIN, fold_free_factors
from wemgan.render_masks import dilate


@pytest.mark.parametrize(("shape", "radius"), [((2, 1, 128, 128), 3), ((1, 1, 32, 32), 2), ((3, 2, 20, 33), 1)])
def test_max_filter_is_max_pooling(shape, radius):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(radius))
    expected = nn.functional.max_pool2d(x, 2 * radius + 1, 1, radius)
    assert torch.equal(max_filter(x, radius), expected)


def test_dilation_with_a_radius_per_mask_is_each_masks_own():
    masks = (torch.rand(4, 1, 40, 40, generator=torch.Generator().manual_seed(0)) > 0.98).float()
    radii = torch.tensor([0, 2, 5, 1])
    grown = dilate(masks, radii)
    for mask, radius, got in zip(masks, radii.tolist(), grown, strict=True):
        assert torch.equal(got, dilate(mask[None], radius)[0])
    assert not torch.equal(grown[2], grown[1])  # the radii differ, so do the results


@pytest.mark.parametrize("dim", [-1, -2])
def test_derivative_is_torch_gradient(dim):
    x = torch.randn(2, 2, 16, 24, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(derivative(x, dim, 4.0), torch.gradient(x, spacing=4.0, dim=dim)[0])


def reference_coverage(points: torch.Tensor, size: int, supersample: int) -> torch.Tensor:
    """Share of each pixel's supersample² points inside the polygon, by matplotlib, over the whole image."""
    pixels = (torch.arange(size * supersample) + 0.5) / supersample - 0.5
    y, x = torch.meshgrid(pixels, pixels, indexing="ij")
    samples = torch.stack([x.flatten(), y.flatten()], -1).numpy()
    inside = [torch.from_numpy(PolygonPath(p.numpy()).contains_points(samples)) for p in points.double()]
    inside = torch.stack(inside).view(-1, 1, size * supersample, size * supersample).float()
    return nn.functional.avg_pool2d(inside, supersample)


@pytest.mark.parametrize("supersample", [1, 2])
def test_polygon_coverage_matches_a_whole_image_reference(supersample):
    g = torch.Generator().manual_seed(supersample)
    polygons = torch.rand(3, 9, 2, generator=g) * 30 + torch.tensor([[[10.0, 70.0]], [[60.0, 5.0]], [[110.0, -12.0]]])
    coverage = polygon_coverage(polygons, 128, supersample)  # the last one is partly outside the image
    reference = reference_coverage(polygons, 128, supersample)
    assert coverage.shape == (3, 1, 128, 128)
    # samples on an edge may fall either way; a pixel may differ by a sample's share at most in a few places
    assert (coverage - reference).abs().amax() <= 1 / supersample**2
    assert (coverage != reference).float().mean() < 0.002
    assert (coverage > 0).sum() > 200  # something was drawn


def test_polygon_coverage_outside_the_image_is_empty():
    square = torch.tensor([[[-30.0, -30.0], [-10.0, -30.0], [-10.0, -10.0], [-30.0, -10.0]]])
    assert polygon_coverage(square, 64).abs().sum() == 0
    inside = torch.tensor([[[10.0, 20.0], [29.0, 20.0], [29.0, 39.0], [10.0, 39.0]]])  # pixel centres are integers
    assert polygon_coverage(inside, 64).sum() == 19 * 19


def segment_distances(landmarks: torch.Tensor, segments: list[tuple[int, int]], size: int) -> torch.Tensor:
    """S x S: each pixel's exact distance to the nearest of the segments (one face, 68 x 2 px)."""
    pixels = torch.arange(size, dtype=torch.float32)
    q = torch.stack(torch.meshgrid(pixels, pixels, indexing="xy"), -1).view(-1, 1, 2)
    a, b = landmarks[[i for i, _ in segments]], landmarks[[j for _, j in segments]]
    t = (((q - a) * (b - a)).sum(-1) / (b - a).square().sum(-1).clamp_min(1e-9)).clamp(0, 1)
    return (q - (a + t.unsqueeze(-1) * (b - a))).norm(dim=-1).amin(-1).view(size, size)


@pytest.mark.parametrize(("size", "face_size"), [(128, 128), (64, 128), (96, 192)])
def test_contours_are_lines_of_their_width_around_the_segments(size, face_size):
    landmarks = torch.rand(1, 68, 2, generator=torch.Generator().manual_seed(size)) * (size + 20) - 10
    drawn = draw_contours(landmarks, size, face_size)[0]
    width = LINE_WIDTH * face_size / 128
    for channel, segments in zip(drawn, CONTOUR_CHANNELS.values(), strict=True):
        exact = (1 - segment_distances(landmarks[0], segments, size) / width).clamp(0, 1)
        # samples every 1/4 px: a pixel on a segment between two samples reads at most 1/8 px too far
        assert (exact - channel).amax() <= 0.13 / width + 1e-5
        assert (channel - exact).amax() <= 1e-5  # never nearer than the segment itself


def test_fold_free_factors_are_those_of_explicitly_scaled_flows():
    flow = nn.functional.interpolate(torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(0)), size=32)
    flow = flow * 0.1
    steps = 20
    factors = torch.linspace(0, 1, steps + 1)
    folds = torch.stack([1 - flow_stretch(flow * f, 128, floor=False) < FOLD_MARGIN for f in factors], 1)
    first = torch.where(folds, torch.arange(steps + 1).view(1, -1, 1, 1, 1), steps + 1).amin(1)
    expected = factors[(first - 1).clamp(min=0)]
    got = fold_free_factors(flow, 128, steps)
    assert (got != expected).float().mean() < 0.002  # a determinant within rounding of the margin may differ
    assert (got < 1).any() and (got == 1).any()  # the flow folds somewhere, not everywhere
