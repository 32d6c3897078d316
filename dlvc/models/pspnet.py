"""PSPNet: a pyramid pooling module on a dilated ResNet, with a supplementary stride-32 stream.

Paper: Zhao, Shi, Qi, Wang and Jia, "Pyramid Scene Parsing Network", CVPR 2017.
Reference code: the authors' Caffe release (hszhao/PSPNet) and its PyTorch port
(hszhao/semseg); the encoder is torchvision's ResNet-50, ResNeXt-50 or, for quick tests, ResNet-18.

The network, top to bottom:

- :class:`PSPEncoder` splits one ResNet into two streams. A shared trunk (stem,
  ``layer1``, ``layer2``) brings the image to stride 8. The *main stream* continues
  with a dilated copy of ``layer3`` and ``layer4`` and stays at stride 8, as in the
  paper; the *supplementary stream* continues with the ordinary, strided ``layer3``
  and ``layer4`` and ends at stride 32. Both copies start from the same weights
  (random, or ImageNet from the local torch hub cache).
- :class:`PyramidPooling` pools the main stream over 1x1, 2x2, 3x3 and 6x6 bins
  and concatenates the upsampled results with its input.
- :class:`SupplementaryModule` brings the stride-32 stream to stride 8;
  :class:`PSPDecoder` fuses it with the pooled context.
- :class:`Upsampling` doubles the size three times (stride 8 -> 1), and a 1x1
  convolution gives the logits at the input's size.

Left out on purpose: the paper's auxiliary loss on ``layer3`` and its deep stem of
three 3x3 convolutions (torchvision's 7x7 stem is kept, so ImageNet weights load).
The supplementary stream and the learned upsampling replace the paper's single
8x bilinear resize; they are this kit's additions, not the paper's.

Shapes: B batch, C channels, K classes, H and W the input's height and width,
h and w the height and width of a feature map.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import (
    ResNet18_Weights,
    ResNet50_Weights,
    ResNeXt50_32X4D_Weights,
    WeightsEnum,
    resnet18,
    resnet50,
    resnext50_32x4d,
)

from ..checks import describe
from .freezing import Freezable
from .pretrained import cache_path, require_cached

ENCODERS = {
    "resnet18": (resnet18, ResNet18_Weights.IMAGENET1K_V1),
    "resnet50": (resnet50, ResNet50_Weights.IMAGENET1K_V1),
    "resnext50_32x4d": (resnext50_32x4d, ResNeXt50_32X4D_Weights.IMAGENET1K_V1),
}
"""Encoder name -> (torchvision constructor, ImageNet weights looked up in the cache).

ResNet-18 is small and quick, for tests and laptops; the paper uses deeper ResNets."""

MAIN_STREAM_DILATIONS = {"layer3": (1, 2), "layer4": (2, 4)}
"""Stage -> (dilation of its first block, of the other blocks) in the main stream, as in
torchvision's ``replace_stride_with_dilation=[False, True, True]``."""

PSPNET_CONFIG = dict(bins=(1, 2, 3, 6), decoder_channels=512, supplementary_channels=256, upsampling_channels=(256, 128, 64), dropout=0.1)
"""Decoder hyperparameters: the paper's bins and 512-channel bottleneck; the rest are this kit's choices."""

ALIGN_CORNERS = True
"""Every bilinear resize in PSPNet aligns corners, like the Caffe ``Interp`` layer of the reference code."""


def imagenet_weights(arch: str = "resnet50") -> WeightsEnum:
    """torchvision's ImageNet weights of ``arch``."""
    if arch not in ENCODERS:
        raise ValueError(f"arch: expected one of {sorted(ENCODERS)}, got {arch!r}")
    return ENCODERS[arch][1]


def backbone_cache_path(arch: str = "resnet50") -> Path:
    """Where torchvision looks for the ImageNet weights of ``arch`` before downloading them."""
    return cache_path(imagenet_weights(arch))


def load_imagenet_weights(arch: str, download: bool = False) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``arch`` from the torch hub cache; downloads only if ``download``."""
    weights = imagenet_weights(arch)
    require_cached(weights, download)
    return torch.hub.load_state_dict_from_url(weights.url, map_location="cpu", progress=False)


def resize(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) features to (B, C, *size), corners aligned."""
    return F.interpolate(features, size=size, mode="bilinear", align_corners=ALIGN_CORNERS)


def check_features(name: str, features: torch.Tensor, channels: int) -> None:
    """Raise TypeError or ValueError, naming ``name``, unless ``features`` is a float (B, channels, h, w) tensor."""
    if not isinstance(features, torch.Tensor) or not features.is_floating_point() or features.ndim != 4:
        raise TypeError(f"{name}: expected a float tensor of shape (B, C, h, w), got {describe(features)}")
    if features.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channels, got {describe(features)}")


def dilate(stage: nn.Sequential, first_dilation: int, dilation: int) -> nn.Sequential:
    """Turn a strided ResNet stage into a dilated one in place: same weights, stride 1.

    Every convolution of ``stage`` gets stride 1; the 3x3 convolutions of its first
    block get ``first_dilation`` and those of the other blocks ``dilation`` (padding
    equal to the dilation keeps the size). Works for basic and bottleneck blocks.
    """
    for index, block in enumerate(stage):
        rate = first_dilation if index == 0 else dilation
        for module in block.modules():
            if isinstance(module, nn.Conv2d):
                module.stride = (1, 1)
                if module.kernel_size == (3, 3):
                    module.dilation = (rate, rate)
                    module.padding = (rate, rate)
    return stage


class ConvBNReLU(nn.Sequential):
    """A convolution without bias, BatchNorm and ReLU: (B, C_in, h, w) -> (B, C_out, h, w)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class PSPEncoder(Freezable):
    """A ResNet split into a main stream at stride 8 and a supplementary stream at stride 32.

    Args:
        arch: a key of :data:`ENCODERS`.
        pretrained: start from the ImageNet weights in the torch hub cache.
        download: allow downloading those weights when they are not cached.

    ``freeze()`` stops every encoder weight from learning and keeps the encoder in
    eval mode (BatchNorm statistics fixed) even when the model's ``train()`` is
    called; ``unfreeze()`` undoes both (see :class:`~dlvc.models.freezing.Freezable`).
    """

    def __init__(self, arch: str = "resnet50", pretrained: bool = False, download: bool = False):
        super().__init__()
        if arch not in ENCODERS:
            raise ValueError(f"arch: expected one of {sorted(ENCODERS)}, got {arch!r}")
        build, _ = ENCODERS[arch]
        dilated = build(weights=None)
        strided = build(weights=None)
        if pretrained:
            state = load_imagenet_weights(arch, download)
            dilated.load_state_dict(state)
            strided.load_state_dict(state)
        self.trunk = nn.Sequential(dilated.conv1, dilated.bn1, dilated.relu, dilated.maxpool, dilated.layer1, dilated.layer2)
        self.main = nn.Sequential(*(dilate(getattr(dilated, name), *rates) for name, rates in MAIN_STREAM_DILATIONS.items()))
        self.supplementary = nn.Sequential(strided.layer3, strided.layer4)
        self.main_channels = dilated.fc.in_features
        self.supplementary_channels = strided.fc.in_features

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) images -> main (B, C, H/8, W/8) and supplementary (B, C, H/32, W/32) features."""
        shared = self.trunk(images)
        return self.main(shared), self.supplementary(shared)


class PyramidPooling(nn.Module):
    """The pyramid pooling module: (B, C, h, w) -> (B, C + len(bins) * C // len(bins), h, w).

    Each bin size ``n`` averages the map over an n x n grid, reduces the channels to
    ``C // len(bins)`` with a 1x1 convolution, BatchNorm and ReLU, and is resized back
    to (h, w). The input comes first in the concatenation, once. In training mode the
    1x1 bin needs a batch of at least 2 (BatchNorm over a single value fails).

    Args:
        in_channels: C, divisible by the number of bins.
        bins: the grid sizes (1, 2, 3, 6 in the paper).
    """

    def __init__(self, in_channels: int, bins: tuple[int, ...] = PSPNET_CONFIG["bins"]):
        super().__init__()
        if not bins or any(size < 1 for size in bins):
            raise ValueError(f"bins: expected positive grid sizes, got {bins}")
        if in_channels < 1 or in_channels % len(bins):
            raise ValueError(f"in_channels: expected a positive multiple of {len(bins)} (the number of bins), got {in_channels}")
        branch_channels = in_channels // len(bins)
        self.in_channels = in_channels
        self.stages = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(size), ConvBNReLU(in_channels, branch_channels)) for size in bins)
        self.out_channels = in_channels + len(bins) * branch_channels

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features -> (B, C + len(bins) * C // len(bins), h, w)."""
        check_features("features", features, self.in_channels)
        # TODO 3.1 (Assignment 3, part 1): the pyramid pooling forward pass.
        # In: `features` (B, C, h, w). Out: `pooled` (B, C + len(bins) * C // len(bins), h, w),
        # 2C for the paper's four bins: the input, unchanged and once, first; then, in the
        # order of the bins, the output of each branch of `self.stages` (pooled to n x n,
        # then reduced to C // len(bins) channels) brought back to (h, w) by a bilinear
        # resize with corners aligned, like every resize in PSPNet. Paper, section 3.2,
        # "Pyramid Pooling Module". About 3 lines.
        raise NotImplementedError(
            'TODO 3.1 (Assignment 3, part 1) in dlvc/models/pspnet.py, PyramidPooling.forward: the pyramid pooling forward pass.'
        )


class SupplementaryModule(nn.Module):
    """Brings the supplementary stream to the main stream's size: (B, C_in, h, w) -> (B, C_out, *size)."""

    def __init__(self, in_channels: int, out_channels: int = PSPNET_CONFIG["supplementary_channels"]):
        super().__init__()
        self.reduce = ConvBNReLU(in_channels, out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, C_in, h, w) stride-32 features -> (B, C_out, *size): a 1x1 reduction, then a bilinear resize."""
        check_features("features", features, self.in_channels)
        return resize(self.reduce(features), size)


class Upsampling(nn.Module):
    """Doubles the size once per stage: (B, C_in, h, w) -> (B, channels[-1], 2^n h, 2^n w) for n stages.

    Each stage resizes bilinearly (corners aligned) by 2 and applies a 3x3
    convolution, BatchNorm and ReLU. Three stages take stride 8 to stride 1.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...] = PSPNET_CONFIG["upsampling_channels"]):
        super().__init__()
        if not channels:
            raise ValueError(f"channels: expected the output channels of at least one stage, got {channels}")
        widths = [in_channels, *channels]
        self.in_channels = in_channels
        self.stages = nn.ModuleList(ConvBNReLU(widths[index], widths[index + 1], kernel_size=3) for index in range(len(channels)))
        self.out_channels = channels[-1]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C_in, h, w) -> (B, channels[-1], 2^n h, 2^n w), n the number of stages."""
        check_features("features", features, self.in_channels)
        upsampled = features
        # TODO 3.2 (Assignment 3, part 2): the upsampling module's forward pass.
        # In: `features` (B, C_in, h, w). Out: `upsampled` (B, channels[-1], 2^n h, 2^n w)
        # after the n stages of `self.stages`. Each stage first doubles the height and width
        # of its input, by a bilinear resize with corners aligned (`ALIGN_CORNERS`), and then
        # applies its convolution, BatchNorm and ReLU: n resizes by 2, not one by 2^n, so
        # that each convolution refines the map at its own scale. About 3 lines.
        raise NotImplementedError(
            "TODO 3.2 (Assignment 3, part 2) in dlvc/models/pspnet.py, Upsampling.forward: the upsampling module's forward pass."
        )
        return upsampled


class PSPDecoder(nn.Module):
    """Pyramid pooling on the main stream, fused with the supplementary stream, then upsampled.

    Args:
        main_channels: channels of the stride-8 main stream.
        supplementary_channels: channels of the stride-32 supplementary stream.
        bins: grid sizes of the pyramid pooling module.
        decoder_channels: channels after the 3x3 bottleneck that follows pyramid pooling
            and after the fusion.
        reduced_channels: channels the supplementary module reduces its stream to.
        upsampling_channels: output channels of each upsampling stage.

    Returns features at the input's resolution (stride 1) when the streams come at
    strides 8 and 32 and there are three upsampling stages.
    """

    def __init__(
        self,
        main_channels: int,
        supplementary_channels: int,
        bins: tuple[int, ...] = PSPNET_CONFIG["bins"],
        decoder_channels: int = PSPNET_CONFIG["decoder_channels"],
        reduced_channels: int = PSPNET_CONFIG["supplementary_channels"],
        upsampling_channels: tuple[int, ...] = PSPNET_CONFIG["upsampling_channels"],
    ):
        super().__init__()
        self.pyramid = PyramidPooling(main_channels, bins)
        self.bottleneck = ConvBNReLU(self.pyramid.out_channels, decoder_channels, kernel_size=3)
        self.supplementary = SupplementaryModule(supplementary_channels, reduced_channels)
        self.fuse = ConvBNReLU(decoder_channels + reduced_channels, decoder_channels, kernel_size=3)
        self.upsampling = Upsampling(decoder_channels, upsampling_channels)
        self.out_channels = self.upsampling.out_channels

    def forward(self, main: torch.Tensor, supplementary: torch.Tensor) -> torch.Tensor:
        """Main (B, C_m, h, w) and supplementary (B, C_s, h/4, w/4) -> (B, upsampling_channels[-1], 8h, 8w)."""
        check_features("main", main, self.pyramid.in_channels)
        check_features("supplementary", supplementary, self.supplementary.in_channels)
        # TODO 3.3 (Assignment 3, part 3): the decoder's fusion.
        # In: the main stream `main` (B, C_m, h, w) and the supplementary stream
        # `supplementary` (B, C_s, h/4, w/4). Out: `decoded` (B, upsampling_channels[-1],
        # 8h, 8w). The context is the main stream after pyramid pooling and the 3x3
        # bottleneck (`self.pyramid`, `self.bottleneck`); `self.supplementary` brings the
        # other stream to the context's size; the two are concatenated in that order,
        # [context, supplementary], fused by `self.fuse` and upsampled by `self.upsampling`.
        # About 5 lines.
        raise NotImplementedError(
            "TODO 3.3 (Assignment 3, part 3) in dlvc/models/pspnet.py, PSPDecoder.forward: the decoder's fusion."
        )


class PSPNet(nn.Module):
    """PSPNet with a ResNet-50, ResNeXt-50 or ResNet-18 encoder.

    Args:
        num_classes: K, the number of output channels.
        arch: the encoder, a key of :data:`ENCODERS`.
        pretrained_backbone: start the encoder from ImageNet weights in the torch hub
            cache (``$TORCH_HOME/hub/checkpoints/``); the error says which file to put where.
        download: allow downloading those weights when they are not cached.
        decoder_channels: channels of the decoder's bottleneck and fusion (the paper's 512).
        upsampling_channels: output channels of each upsampling stage; narrower ones
            train much faster on a CPU, at small images.

    ``model.encoder.freeze()`` trains the decoder and head only.
    """

    def __init__(
        self,
        num_classes: int,
        arch: str = "resnet50",
        pretrained_backbone: bool = False,
        download: bool = False,
        decoder_channels: int = PSPNET_CONFIG["decoder_channels"],
        upsampling_channels: tuple[int, ...] = PSPNET_CONFIG["upsampling_channels"],
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.encoder = PSPEncoder(arch, pretrained=pretrained_backbone, download=download)
        self.decoder = PSPDecoder(
            self.encoder.main_channels,
            self.encoder.supplementary_channels,
            decoder_channels=decoder_channels,
            upsampling_channels=tuple(upsampling_channels),
        )
        self.head = nn.Sequential(nn.Dropout2d(PSPNET_CONFIG["dropout"]), nn.Conv2d(self.decoder.out_channels, num_classes, kernel_size=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, K, H, W) logits.

        The decoder returns stride-1 features; when H or W is not a multiple of 8 they
        differ slightly from the input's size and the logits are resized to (H, W).
        """
        check_features("images", images, 3)
        main, supplementary = self.encoder(images)
        logits = self.head(self.decoder(main, supplementary))
        if logits.shape[-2:] != images.shape[-2:]:
            logits = resize(logits, images.shape[-2:])
        return logits


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters of ``model`` (those with ``requires_grad``): a frozen encoder counts 0."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    # TODO 3.4 (Assignment 3, part 4): count the trainable parameters.
    # In: `model`, any nn.Module. Out: `count`, an int, the number of numbers the
    # optimizer would train: every element (not every tensor) of the parameters that
    # require gradients. Frozen parameters and buffers (BatchNorm's running statistics)
    # do not count; a model without trainable parameters counts 0. About 2 lines.
    raise NotImplementedError(
        'TODO 3.4 (Assignment 3, part 4) in dlvc/models/pspnet.py, count_parameters: count the trainable parameters.'
    )
