"""The WEM-GAN generator (paper Table 1, Fig. 4).

U-Net encoder/decoder, a multi-AU fusion residual block at the 4x4 bottleneck, and
Detail Information Transmission (DIT): the decoder input at 16, 32 and 64 px is
concatenated with the Haar high-frequency part of the encoder feature of the same size.
The defaults are the paper's configuration; the arguments exist for the ablations
(Tables 6-7) and for small CPU models.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .wavelets import HighFrequency

SkipKind = Literal["haar", "plain"]
AUFusion = Literal["multi", "single"]
Norm = Literal["instance", "none"]
Output = Literal["image", "mask", "warp"]
Upsample = Literal["transposed", "resize"]

# Encoder depths (feature of resolution image_size / 2**depth) that send a skip connection
# to the decoder, by number of DIT levels (Table 7). At 128 px, 3 levels are the paper's
# "middle three" (64, 32, 16 px); 4 adds 8 px; 5 adds the full-size 128 px feature too.
SKIP_DEPTHS: dict[int, tuple[int, ...]] = {
    0: (),
    3: (1, 2, 3),
    4: (1, 2, 3, 4),
    5: (0, 1, 2, 3, 4),
}

NUM_DOWNSAMPLES = 5  # 128 -> 4: five stride-2 convolutions
LEAKY_SLOPE = 0.2  # not given in the paper; the usual GAN choice
FLOW_RESOLUTION = 32  # the warp head predicts its flow on the decoder's 32 px map (at 128 px): smooth by construction
MAX_FLOW = 0.2  # largest displacement, in [-1, 1] image coordinates (0.2 = 13 px at 128 px)
MASK_BIAS = -4.0  # initial mask logit: sigmoid(-4) = 0.02, so an untrained mask/warp head copies its input
STRETCH_FLOOR = 0.1  # stretch_gate: stretching an area by less than 10% is ordinary motion, no colour
STRETCH_GAIN = 4.0  # stretch_gate: colour is fully allowed where the flow stretches the input by 35% of its area
STRETCH_REACH = 5  # px at 128 px: the allowed region is widened so colour can cover the stretched region's rim
MAX_SHADING = 0.3  # shading: the largest brightening or darkening, as a fraction of a pixel's brightness
GATE_GAIN = 4.0  # zero_gate: flow and mask scale by tanh(4 |u|): 0.38 at |u| = 0.1, 0.96 at 0.5


def norm_layer(kind: Norm, channels: int) -> nn.Module:
    # Affine instance norm, as GANimation/FGGAN whose training setup the paper adopts.
    return nn.InstanceNorm2d(channels, affine=True) if kind == "instance" else nn.Identity()


class SmallMapConv2d(nn.Conv2d):
    """nn.Conv2d that runs as one matrix product (im2col) on CPU when the input map has at most
    `max_pixels` pixels; otherwise, and on GPUs, it is nn.Conv2d. Same parameters, same state dict.

    oneDNN's convolution kernels are slow on 2x2 and 4x4 maps with many channels, the critics'
    last layers and the generator's bottleneck. Measured here (bf16 autocast, batch 16, forward
    + the gradient penalty's double backward): a 1024->2048 conv on 4x4 maps takes 530 ms as a
    convolution and 200 ms as a GEMM; 256->512 takes 14 ms and 9 ms (totals: bench/train_step.py).
    """

    max_pixels = 16  # measured: GEMM wins at 4x4 inputs and loses at 8x8

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if (
            x.device.type != "cpu"
            or h * w > self.max_pixels
            or self.groups != 1
            or self.padding_mode != "zeros"
            or isinstance(self.padding, str)
        ):
            return super().forward(x)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        columns = nn.functional.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # B x Ckk x L
        # One (B*L x Ckk) @ (Ckk x out) product; autocast runs it in bf16 as it would the conv.
        # (A batched weight @ columns would copy the weight B times, forward and backward.)
        y = columns.transpose(1, 2).flatten(0, 1) @ self.weight.flatten(1).t()
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.view(x.shape[0], out_h, out_w, self.out_channels).permute(0, 3, 1, 2)


def conv_block(
    conv: nn.Module, channels: int, norm: Norm, activation: Literal["relu", "leaky", "none"]
) -> nn.Sequential:
    """conv -> norm -> activation, the unit every table row describes."""
    act = {
        "relu": nn.ReLU(inplace=True),
        "leaky": nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        "none": nn.Identity(),
    }[activation]
    return nn.Sequential(conv, norm_layer(norm, channels), act)


def tile_aus(aus: Tensor, like: Tensor) -> Tensor:
    """B x A -> B x A x H x W, spatially constant, matching `like`'s size and dtype."""
    b, a = aus.shape
    return aus.to(like.dtype).view(b, a, 1, 1).expand(b, a, *like.shape[-2:])


class MultiAUFusion(nn.Module):
    """Bottleneck residual block that re-injects the relative AUs before every conv.

    h = ReLU(IN(conv([z, u])));  r = IN(conv([h, u]));  out = ReLU(IN(conv([z, u, r, u])))
    The third conv fuses the encoder code with the residual branch (Table 1: 2x(512+17) in).
    """

    def __init__(self, channels: int, num_aus: int, norm: Norm) -> None:
        super().__init__()
        c, a = channels, num_aus
        self.conv1 = conv_block(SmallMapConv2d(c + a, c, 3, 1, 1), c, norm, "relu")
        self.conv2 = conv_block(SmallMapConv2d(c + a, c, 3, 1, 1), c, norm, "none")
        self.fuse = conv_block(SmallMapConv2d(2 * (c + a), c, 3, 1, 1), c, norm, "relu")

    def forward(self, z: Tensor, aus: Tensor) -> Tensor:
        u = tile_aus(aus, z)
        h = self.conv1(torch.cat([z, u], 1))
        r = self.conv2(torch.cat([h, u], 1))
        return self.fuse(torch.cat([z, u, r, u], 1))


class SingleAUFusion(nn.Module):
    """Ablation "w/o Mul_AU": the AUs enter once, through one conv at the bottleneck."""

    def __init__(self, channels: int, num_aus: int, norm: Norm) -> None:
        super().__init__()
        self.conv = conv_block(SmallMapConv2d(channels + num_aus, channels, 3, 1, 1), channels, norm, "relu")

    def forward(self, z: Tensor, aus: Tensor) -> Tensor:
        return self.conv(torch.cat([z, tile_aus(aus, z)], 1))


def upsampling_conv(in_channels: int, out_channels: int, kind: Upsample) -> nn.Module:
    """x2 upsampling: the paper's 4x4/2 transposed conv, or nearest-neighbour resize + 3x3 conv.

    A stride-2 transposed conv builds even and odd output pixels from different kernel taps;
    wherever the learned taps do not balance, a 2-pixel grid ("checkerboard") texture appears:
    the grid across the mouth in the paper-recipe edits. Resize + conv builds every pixel the same
    way (Odena et al., "Deconvolution and Checkerboard Artifacts", Distill 2016)."""
    if kind == "transposed":
        return nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_channels, out_channels, 3, 1, 1))


def warp(x: Tensor, flow: Tensor) -> Tensor:
    """x (B x C x H x W) sampled at each pixel's position + flow (B x 2 x h x w, [-1, 1] units, x then y),
    the flow bilinearly resized to H x W first. Borders repeat the edge pixel."""
    height, width = x.shape[-2:]
    flow = nn.functional.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=x.device, dtype=flow.dtype)
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=x.device, dtype=flow.dtype)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # H x W x 2, (x, y)
    grid = base.unsqueeze(0) + flow.permute(0, 2, 3, 1)
    return nn.functional.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def flow_stretch(flow: Tensor, image_size: int, floor: bool = True) -> Tensor:
    """B x 1 x s x s: how much a backward flow (B x 2 x s x s, `warp`'s units) magnifies the input,
    as 1 - det(Jacobian of q -> q + flow(q)), floored at 0: 0 where pixels only move (or are
    squeezed), 0.5 where an output area is made from half as much input. An opening mouth or a
    lid drawn over an eye is stretched; a brow that only moves is not. floor=False keeps the
    negative values of squeezed regions (1 - determinant everywhere)."""
    pixels = flow * (image_size / 2)
    spacing = image_size / flow.shape[-1]
    (dx_dx, dx_dy), (dy_dx, dy_dy) = (
        (
            torch.gradient(pixels[:, c], spacing=spacing, dim=-1)[0],
            torch.gradient(pixels[:, c], spacing=spacing, dim=-2)[0],
        )
        for c in (0, 1)
    )
    stretch = (1 - ((1 + dx_dx) * (1 + dy_dy) - dx_dy * dy_dx)).unsqueeze(1)
    return stretch.clamp_min(0) if floor else stretch


def stretch_allowance(flow: Tensor, image_size: int) -> Tensor:
    """B x 1 x S x S in [0, 1]: where stretch_gate lets the colour mask act (STRETCH_FLOOR, _GAIN, _REACH)."""
    allowed = (STRETCH_GAIN * (flow_stretch(flow, image_size) - STRETCH_FLOOR)).clamp(0, 1)
    allowed = nn.functional.interpolate(allowed, size=(image_size, image_size), mode="bilinear", align_corners=False)
    reach = STRETCH_REACH * image_size // 128 | 1  # odd
    return nn.functional.max_pool2d(allowed, reach, 1, reach // 2)


class Generator(nn.Module):
    """G(x, u_rel) -> x': edits image x (B x 3 x S x S in [-1, 1]) by relative AUs u_rel (B x A).

    Outputs (not in the paper except "image"; see docs/recipe-trials.md for why they exist):
    - "image": the decoder's 7x7 conv + tanh is the edited image (paper);
    - "mask": GANimation's attention blend x' = (1 - M) x + M C, colour C and mask M from the
      decoder: pixels the mask leaves at 0 are the input's own;
    - "warp": the input's pixels moved by a smooth flow field (predicted at flow_resolution px, resized) and
      blended with a masked colour C for what motion cannot make (teeth, mouth interior,
      wrinkles): x' = (1 - M) warp(x, F) + M C. Expressions are mostly motion, and a flow cannot
      paint colour blotches or speckles.

    Args:
        num_aus: length of the AU condition vector (17 OpenFace AUs).
        base_channels: width of the first encoder conv (paper: 64); doubles per downsample.
        max_channels: cap on the width (paper: 512).
        skip_levels: number of DIT skip connections, 0 / 3 / 4 / 5 (paper: 3, see SKIP_DEPTHS).
        skip_kind: "haar" sends the Haar high-frequency part of the encoder feature (DIT);
            "plain" sends the feature itself (an ordinary U-Net skip).
        au_fusion: "multi" = the paper's multi-AU fusion block, "single" = AUs enter once.
        norm: "instance" (paper) or "none".
        image_size: side of the square input (paper: 128); must be divisible by 32.
        output: "image" (paper), "mask" or "warp", see above.
        upsample: "transposed" 4x4/2 convs (paper) or "resize" (nearest x2 + 3x3 conv).
        zero_gate: mask/warp outputs only: scale the flow and the mask by tanh(GATE_GAIN |u_rel|),
            so that no requested change is exactly no change (G(x, 0) = x) and small requests make
            small changes. Without it a warp generator learns an expression-independent distortion
            that the self-reconstruction loss removes only slowly.
        flow_resolution: warp output only: side of the decoder map the flow is predicted on
            (image_size / 2, 4, 8 or 16), then resized: the coarser, the fewer ways to bend a lip.
        motion_prior: warp output only: the flow is the landmark motion of real faces for u_rel
            (a LandmarkRegressor reads the input's landmarks, wemgan.landmark_motion moves them
            and blends the moves into a flow) plus what the decoder predicts on top: edits are
            expressions from the first step, and the GAN learns what motion alone misses.
            The regressor is frozen; train_accelerate.py --motion_prior loads its weights.
        stretch_gate: warp output only: the colour mask is allowed only where the flow stretches
            the input (a mouth opening, a lid closing over an eye; `flow_stretch`), so nothing can
            be painted where pixels only move or stand still. With motion_prior it is the prior's
            flow that decides, and only around the mouth (`landmark_motion.mouth_region`): the
            decoder's own flow is noisy, and its small local stretches let colour through; closing
            lids stretch but show their own skin. Without these limits the colour head painted
            dark blobs under the nose, white spots on an iris and pale lids (docs/recipe-trials.md).
        mouth_cavity: motion_prior only: the lips part along a cut, and the gap is drawn as a
            mouth's inside (`landmark_motion.mouth_cavity`) instead of the stretched lip a warp
            makes of it. It replaces the colour head, which is then not run (the decoder stops at
            the flow's map): every colour head tried painted specks, magenta lips or blotches as
            soon as an AU loss could reward it (docs/recipe-trials.md). x' = cavity over
            shading(warp(x, F)).
        shading: warp output only: the moved face is brightened or darkened by a smooth factor
            the decoder predicts beside the flow (1 ± MAX_SHADING, on the flow's grid, resized):
            what cheeks raised by a smile (AU06) and deepened folds (AU10, AU14) change besides
            motion. It scales R, G and B alike, so it cannot change a colour, and on a 4-px grid
            it cannot draw a dot.
        appearance: motion_prior only: the moved face's brightness also changes as real faces' does
            for the smile's AUs (raised cheeks, deepened nasolabial folds; R, G and B alike, the
            patterns fitted on real faces and carried by the landmarks, see
            wemgan.landmark_appearance): what a warp cannot make and the judge missed in warps.
        prior_only: motion_prior only: the edit is the landmark motion (with mouth_cavity, the
            drawn mouth) and nothing else: the encoder-decoder is not built or run, so the
            model holds the LandmarkRegressor and the motion basis alone. What `hub/export.py
            --prior-only` makes of a motion-prior run: no trained part has yet beaten the prior
            on the measures the GAN was not trained against (docs/recipe-trials.md).
    """

    def __init__(
        self,
        num_aus: int = 17,
        base_channels: int = 64,
        max_channels: int = 512,
        skip_levels: int = 3,
        skip_kind: SkipKind = "haar",
        au_fusion: AUFusion = "multi",
        norm: Norm = "instance",
        image_size: int = 128,
        output: Output = "image",
        upsample: Upsample = "transposed",
        zero_gate: bool = False,
        flow_resolution: int = FLOW_RESOLUTION,
        motion_prior: bool = False,
        stretch_gate: bool = False,
        mouth_cavity: bool = False,
        shading: bool = False,
        prior_only: bool = False,
        appearance: bool = False,
    ) -> None:
        super().__init__()
        if appearance and not motion_prior:
            raise ValueError("appearance needs motion_prior (its patterns follow the landmarks)")
        if prior_only and not motion_prior:
            raise ValueError("prior_only needs motion_prior (the edit is the landmark motion)")
        if prior_only and (stretch_gate or shading or zero_gate):
            raise ValueError("prior_only builds no network: stretch_gate, shading and zero_gate have nothing to act on")
        if output not in ("image", "mask", "warp"):
            raise ValueError(f"output must be 'image', 'mask' or 'warp', got {output!r}")
        if motion_prior and output != "warp":
            raise ValueError("motion_prior needs output 'warp' (the prior is a flow)")
        if shading and output != "warp":
            raise ValueError("shading needs output 'warp' (it is predicted beside the flow)")
        if mouth_cavity and not motion_prior:
            raise ValueError("mouth_cavity needs motion_prior (it follows the landmarks of the lips)")
        if mouth_cavity and stretch_gate:
            raise ValueError("stretch_gate limits the colour head, which mouth_cavity replaces: choose one")
        if stretch_gate and output != "warp":
            raise ValueError("stretch_gate needs output 'warp' (it reads the flow)")
        if zero_gate and output == "image":
            raise ValueError("zero_gate needs output 'mask' or 'warp' (an image output has nothing to gate)")
        if upsample not in ("transposed", "resize"):
            raise ValueError(f"upsample must be 'transposed' or 'resize', got {upsample!r}")
        if skip_levels not in SKIP_DEPTHS:
            raise ValueError(f"skip_levels must be one of {sorted(SKIP_DEPTHS)}, got {skip_levels}")
        if skip_kind not in ("haar", "plain"):
            raise ValueError(f"skip_kind must be 'haar' or 'plain', got {skip_kind!r}")
        if au_fusion not in ("multi", "single"):
            raise ValueError(f"au_fusion must be 'multi' or 'single', got {au_fusion!r}")
        if image_size % 2**NUM_DOWNSAMPLES:
            raise ValueError(f"image_size must be divisible by {2**NUM_DOWNSAMPLES}, got {image_size}")
        flow_sizes = {image_size // 2**depth: depth for depth in range(1, NUM_DOWNSAMPLES)}
        if flow_resolution not in flow_sizes:
            raise ValueError(
                f"flow_resolution must be one of {sorted(flow_sizes)} at {image_size} px, got {flow_resolution}"
            )
        self.num_aus = num_aus
        self.image_size = image_size
        self.skip_kind = skip_kind
        self.output = output
        self.zero_gate = zero_gate
        self.stretch_gate = stretch_gate
        self.mouth_cavity = mouth_cavity
        self.shading = shading
        self.skip_depths = SKIP_DEPTHS[skip_levels]
        self.flow_depth = flow_sizes[flow_resolution]
        self.flow_resolution = flow_resolution
        self.prior_only = prior_only
        # The network is registered before the prior's modules: resumed optimiser states follow this order.
        if not prior_only:
            # widths[i] = channels of the encoder feature at depth i (resolution image_size / 2**i).
            widths = [min(base_channels * 2**i, max_channels) for i in range(NUM_DOWNSAMPLES + 1)]
            self.widths = widths

            self.encoder = nn.ModuleList(
                [conv_block(nn.Conv2d(3, widths[0], 7, 1, 3), widths[0], norm, "leaky")]
                + [
                    conv_block(nn.Conv2d(widths[i - 1], widths[i], 4, 2, 1), widths[i], norm, "leaky")
                    for i in range(1, NUM_DOWNSAMPLES + 1)
                ]
            )
            fusion = MultiAUFusion if au_fusion == "multi" else SingleAUFusion
            self.fusion = fusion(widths[-1], num_aus, norm)

            # Decoder step d upsamples from depth d+1 to depth d; its input is concatenated with
            # the (high-frequency) encoder feature of depth d+1 when that depth has a skip.
            self.decoder = nn.ModuleList()
            for depth in reversed(range(NUM_DOWNSAMPLES)):
                in_ch = widths[depth + 1] * (2 if depth + 1 in self.skip_depths else 1)
                up = upsampling_conv(in_ch, widths[depth], upsample)
                self.decoder.append(conv_block(up, widths[depth], norm, "relu"))
            out_in = widths[0] * (2 if 0 in self.skip_depths else 1)
            self.to_rgb = nn.Sequential(nn.Conv2d(out_in, 3, 7, 1, 3), nn.Tanh())
            self.high_frequency = HighFrequency()
            if output != "image":
                self.to_mask = nn.Conv2d(out_in, 1, 7, 1, 3)
                nn.init.constant_(self.to_mask.bias, MASK_BIAS)
            if output == "warp":
                self.to_flow = nn.Conv2d(widths[self.flow_depth], 2, 3, 1, 1)
                nn.init.zeros_(self.to_flow.weight)  # starts as the identity warp (or the motion prior alone)
                nn.init.zeros_(self.to_flow.bias)
            if shading:
                self.to_shading = nn.Conv2d(widths[self.flow_depth], 1, 3, 1, 1)
                nn.init.zeros_(self.to_shading.weight)  # starts as no shading
                nn.init.zeros_(self.to_shading.bias)
        self.motion_prior = motion_prior
        if motion_prior:
            # Imported here: the regressor builds on discriminators (which import this module), and
            # `python -m wemgan.landmark_motion` must not find its module imported by the package.
            from .landmark_motion import motion_basis
            from .landmark_regressor import LandmarkRegressor

            self.landmark_regressor = LandmarkRegressor(image_size).requires_grad_(False)
            self.register_buffer("motion_basis", motion_basis().clone())  # 17 x 68 x 2, see landmark_motion
        self.appearance = appearance
        if appearance:
            from .landmark_appearance import packaged_maps

            mean_landmarks, maps = packaged_maps()
            self.register_buffer("appearance_mean", mean_landmarks.clone())  # 68 x 2 px, the mean face
            self.register_buffer("appearance_maps", maps.clone())  # K x s x s log-brightness per AU at label 1

    def prior_flow(self, x: Tensor, aus: Tensor, resolution: int) -> tuple[Tensor, Tensor, Tensor]:
        """motion_prior: the flow (B x 2 x r x r; with mouth_cavity B x 2 x S x S, cut between the
        lips) that moves x's landmarks as real faces' move for aus, with those landmarks and moves
        (B x 68 x 2 pixels each)."""
        from .landmark_motion import landmark_displacements, motion_flow, parted_lips_flow

        with torch.no_grad():
            landmarks = self.landmark_regressor(x).float()
            moves = landmark_displacements(landmarks, aus.float(), self.motion_basis.float())
            if self.mouth_cavity:  # a full-size flow with a cut between the lips
                return parted_lips_flow(landmarks, moves, self.image_size, resolution), landmarks, moves
            return motion_flow(landmarks, moves, self.image_size, resolution), landmarks, moves

    def forward(self, x: Tensor, aus: Tensor, return_parts: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The edited image; with return_parts, also {"mask": B x 1 x S x S, "flow": B x 2 x s x s,
        "network_flow": the decoder's part of the flow, "cavity": mouth_cavity's mask, "shading":
        B x 1 x s x s} (those the output kind has) for the mask, flow and shading regularisers."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.image_size,) * 2:
            raise ValueError(
                f"Generator expects images of shape B x 3 x {self.image_size} x {self.image_size}, got {tuple(x.shape)}"
            )
        if aus.shape != (x.shape[0], self.num_aus):
            raise ValueError(f"Generator expects AUs of shape {x.shape[0]} x {self.num_aus}, got {tuple(aus.shape)}")
        if self.prior_only:
            return self.prior_edit(x, aus, return_parts)
        skips: dict[int, Tensor] = {}
        h = x
        for depth, layer in enumerate(self.encoder):
            h = layer(h)
            if depth in self.skip_depths:
                skips[depth] = self.high_frequency(h) if self.skip_kind == "haar" else h
        gate = torch.tanh(GATE_GAIN * aus.float().norm(dim=1)).view(-1, 1, 1, 1) if self.zero_gate else None
        h = self.fusion(h, aus)
        parts: dict[str, Tensor] = {}
        for depth, layer in zip(reversed(range(NUM_DOWNSAMPLES)), self.decoder, strict=True):
            if depth + 1 in skips:
                h = torch.cat([h, skips[depth + 1]], 1)
            h = layer(h)
            if depth == self.flow_depth and self.output == "warp":
                flow = MAX_FLOW * torch.tanh(self.to_flow(h))
                parts["network_flow"] = flow  # what the decoder adds to the prior, for its smoothness term
                if self.motion_prior:
                    prior, landmarks, moves = self.prior_flow(x, aus, flow.shape[-1])
                    if prior.shape[-1] != flow.shape[-1]:  # mouth_cavity's prior is full size
                        flow = nn.functional.interpolate(flow, prior.shape[-2:], mode="bilinear", align_corners=False)
                    flow = flow + prior.to(flow.dtype)
                parts["flow"] = flow if gate is None else flow * gate.to(flow.dtype)
                if self.shading:
                    shading = MAX_SHADING * torch.tanh(self.to_shading(h))
                    parts["shading"] = shading if gate is None else shading * gate.to(shading.dtype)
                if self.mouth_cavity:  # nothing is painted: the finer maps only feed the colour head
                    edited = self.with_mouth_cavity(
                        x, self.shaded(warp(x, parts["flow"]), parts), parts, landmarks, moves
                    )
                    edited = self.with_appearance(edited, landmarks, moves, aus)
                    return (edited, parts) if return_parts else edited
        if 0 in skips:
            h = torch.cat([h, skips[0]], 1)
        colour = self.to_rgb(h)
        if self.output == "image":
            return (colour, parts) if return_parts else colour
        mask = torch.sigmoid(self.to_mask(h))
        if self.stretch_gate:  # not a way for G to unlock painting: the prior's stretch if any, no gradient
            if self.motion_prior:  # and, knowing the landmarks, only around the mouth
                from .landmark_motion import mouth_region

                allowed = stretch_allowance(prior, self.image_size) * mouth_region(landmarks, moves, self.image_size)
            else:
                allowed = stretch_allowance(parts["flow"].detach().float(), self.image_size)
            mask = mask * allowed.to(mask.dtype)
        parts["mask"] = mask = mask if gate is None else mask * gate.to(mask.dtype)
        base = self.shaded(warp(x, parts["flow"]), parts) if self.output == "warp" else x
        edited = base + mask * (colour - base)
        if self.appearance:
            edited = self.with_appearance(edited, landmarks, moves, aus)
        return (edited, parts) if return_parts else edited

    def prior_edit(self, x: Tensor, aus: Tensor, return_parts: bool) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """prior_only: x moved by the landmark motion for aus (and the mouth it opens drawn in)."""
        flow, landmarks, moves = self.prior_flow(x, aus, self.flow_resolution)
        parts = {"flow": flow.to(x.dtype)}
        edited = warp(x, parts["flow"])
        if self.mouth_cavity:
            edited = self.with_mouth_cavity(x, edited, parts, landmarks, moves)
        edited = self.with_appearance(edited, landmarks, moves, aus)
        return (edited, parts) if return_parts else edited

    def with_appearance(self, edited: Tensor, landmarks: Tensor, moves: Tensor, aus: Tensor) -> Tensor:
        """appearance: the edit with its skin brightened or darkened as real faces' is for aus."""
        if not self.appearance:
            return edited
        from .landmark_appearance import appearance_shading, with_appearance

        with torch.no_grad():
            shading = appearance_shading(
                landmarks + moves, aus, self.appearance_mean, self.appearance_maps, self.image_size,
                self.flow_resolution,
            )  # fmt: skip
        return with_appearance(edited, shading)

    def shaded(self, image: Tensor, parts: dict[str, Tensor]) -> Tensor:
        """shading: the image's brightness scaled by 1 + the shading, resized from the flow's grid
        (R, G and B alike: it can darken a fold or lighten a cheek, not paint a colour or a dot)."""
        if not self.shading:
            return image
        shading = nn.functional.interpolate(parts["shading"], image.shape[-2:], mode="bilinear", align_corners=False)
        return (image + (image + 1) * shading.to(image.dtype)).clamp(-1, 1)  # brightness = (image + 1) / 2

    def with_mouth_cavity(self, x: Tensor, moved: Tensor, parts: dict[str, Tensor], landmarks: Tensor, moves: Tensor):
        """mouth_cavity: the moved face with the inside of the mouth its flow opens drawn in."""
        from .landmark_motion import mouth_cavity

        with torch.no_grad():
            cavity, parts["cavity"] = mouth_cavity(x, landmarks, moves, parts["flow"].float())
        return moved + parts["cavity"].to(moved.dtype) * (cavity.to(moved.dtype) - moved)
