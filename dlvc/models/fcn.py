"""FCN-ResNet50: torchvision's fully convolutional network, from scratch or with an ImageNet backbone.

Paper: Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015. The model is torchvision's ``fcn_resnet50``; this module
only decides where the backbone's weights come from:

- ``pretrained_backbone=False``: everything randomly initialised;
- ``pretrained_backbone=True``: the ImageNet ResNet-50 weights from the local torch
  hub cache (``$TORCH_HOME/hub/checkpoints/``). Nothing is downloaded unless
  ``download=True`` (``train.py --download``); without the file the error says
  which file to put where.
"""

from torchvision.models import ResNet50_Weights
from torchvision.models.segmentation import fcn_resnet50 as torchvision_fcn_resnet50

from .pretrained import require_cached
from .segmenter import DeepSegmenter

BACKBONE_WEIGHTS = ResNet50_Weights.IMAGENET1K_V1


def fcn_resnet50(num_classes: int, pretrained_backbone: bool = False, download: bool = False) -> DeepSegmenter:
    """FCN-ResNet50 with ``num_classes`` outputs, wrapped in a :class:`DeepSegmenter`.

    Args:
        num_classes: K, the number of output channels.
        pretrained_backbone: start the ResNet-50 from ImageNet weights.
        download: allow torchvision to download those weights when they are not cached.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    weights_backbone = None
    if pretrained_backbone:
        require_cached(BACKBONE_WEIGHTS, download)
        weights_backbone = BACKBONE_WEIGHTS
    net = torchvision_fcn_resnet50(weights=None, weights_backbone=weights_backbone, num_classes=num_classes, aux_loss=False)
    return DeepSegmenter(net)
