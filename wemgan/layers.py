"""Building blocks shared by the networks: normalisation, a CPU-friendly conv, conv blocks, and the
strided trunk of the critics, the landmark regressor and the AU estimator."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

Norm = Literal["instance", "none"]
LEAKY_SLOPE = 0.2  # not given in the paper; the usual GAN choice
TRUNK_LAYERS = 6  # downsampling_trunk: six stride-2 convs, 128 -> 2 px


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


def downsampling_trunk(base_channels: int, max_channels: int, norm: Norm) -> tuple[nn.Sequential, int]:
    """TRUNK_LAYERS 4x4/2 convs 3 -> base -> ... (doubling, capped), norm + LeakyReLU; returns (trunk, width)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for i in range(TRUNK_LAYERS):
        out_ch = min(base_channels * 2**i, max_channels)
        layers += [SmallMapConv2d(in_ch, out_ch, 4, 2, 1), norm_layer(norm, out_ch), nn.LeakyReLU(LEAKY_SLOPE, True)]
        in_ch = out_ch
    return nn.Sequential(*layers), in_ch
