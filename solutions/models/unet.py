"""UNet: an encoder-decoder with skip connections.

Paper: Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical
Image Segmentation", MICCAI 2015.

Left out on purpose: the paper's unpadded convolutions and output cropping. Every
3x3 convolution here is padded, so the logits come out at the input's size, and
batch normalisation follows each convolution, as in most current UNets.

Shapes: B batch, C channels, K classes, H and W the input's height and width.
"""

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU: (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """A UNet of configurable depth and width.

    Args:
        num_classes: K, the number of output channels.
        in_channels: channels of the input image.
        base_channels: channels of the first stage; each deeper stage doubles them
            (64 in the paper).
        depth: number of downsampling steps (4 in the paper). Inputs whose sides are
            not multiples of ``2 ** depth`` work too: each upsampled map is resized
            to its skip connection's size.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, base_channels: int = 64, depth: int = 4):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList()
        channels = in_channels
        for width in widths[:-1]:
            self.encoder.append(DoubleConv(channels, width))
            channels = width
        self.pool = nn.MaxPool2d(kernel_size=2)
        self.bottleneck = DoubleConv(widths[-2], widths[-1])
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(widths[level + 1], widths[level], kernel_size=2, stride=2) for level in reversed(range(depth))
        )
        self.decoder = nn.ModuleList(DoubleConv(2 * widths[level], widths[level]) for level in reversed(range(depth)))
        self.classifier = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, K, H, W) logits."""
        # TODO 1.10 (Assignment 1, part 4): the UNet forward pass.
        # In: `images` (B, 3, H, W), any H and W (not only multiples of 2 ** depth).
        # Out: `logits` (B, K, H, W), at the input's size.
        # Use the layers built in __init__, each once: the encoder blocks with a pooling
        # after each, the bottleneck, then per level, deepest first, an upsampling and a
        # decoder block, and the classifier. Each decoder block sees its level's encoder
        # output (the skip connection) first and the upsampled map second, along the
        # channels, both at the skip's size. Ronneberger et al., "U-Net", MICCAI 2015,
        # section 2 and figure 1. About 13 lines; hint 1.10 in the assignment's README.
        # BEGIN SOLUTION
        skips = []
        features = images
        for block in self.encoder:
            features = block(features)
            skips.append(features)
            features = self.pool(features)
        features = self.bottleneck(features)
        for upsample, block, skip in zip(self.upsample, self.decoder, reversed(skips)):
            features = upsample(features)
            if features.shape[-2:] != skip.shape[-2:]:
                features = F.interpolate(features, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            features = block(torch.cat([skip, features], dim=1))  # (B, 2C, h, w) -> (B, C, h, w)
        logits = self.classifier(features)
        return logits
        # END SOLUTION
