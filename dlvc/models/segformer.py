"""SegFormer: the Mix Transformer encoder with the All-MLP decode head.

Paper: Xie, Wang, Yu, Anandkumar, Alvarez and Luo, "SegFormer: Simple and Efficient
Design for Semantic Segmentation with Transformers", NeurIPS 2021. Checked against:
Hugging Face transformers' ``SegformerForSemanticSegmentation`` (weights ported,
every stage's features and the logits equal in eval mode; ``tests/test_segformer.py``).

The encoder (:mod:`dlvc.models.mit_transformer`) gives four maps at strides 4, 8,
16 and 32; the head (:mod:`dlvc.models.segformer_head`) fuses them into logits at
stride 4, and :class:`SegFormer` upsamples those (bilinear) to the input's size.

Left out on purpose: ImageNet-pretrained encoder weights (nothing is downloaded) and
dropout inside the encoder's blocks (0 in the paper).

Shapes: B batch, K classes, H and W the input's height and width.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import describe
from .mit_transformer import MixTransformer
from .segformer_head import SegFormerHead

# The paper's variants, MiT-B0 .. MiT-B5 with their decode heads. Every variant uses
# num_heads (1, 2, 5, 8), sr_ratios (8, 4, 2, 1) and mlp_ratio 4. Parameter counts with
# 19 classes in the comments (B0: 3,719,027; with 3 classes 3,714,915).
VARIANTS = {
    "b0": dict(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2), decoder_dim=256),  # 3.7 M
    "b1": dict(embed_dims=(64, 128, 320, 512), depths=(2, 2, 2, 2), decoder_dim=256),  # 13.7 M
    "b2": dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 6, 3), decoder_dim=768),  # 27.4 M
    "b3": dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 18, 3), decoder_dim=768),  # 47.2 M
    "b4": dict(embed_dims=(64, 128, 320, 512), depths=(3, 8, 27, 3), decoder_dim=768),  # 64.0 M
    "b5": dict(embed_dims=(64, 128, 320, 512), depths=(3, 6, 40, 3), decoder_dim=768),  # 84.6 M
}


class SegFormer(nn.Module):
    """SegFormer: (B, 3, H, W) images -> (B, K, H, W) logits.

    Args:
        num_classes: K.
        embed_dims: channels of the encoder's four stages.
        depths: transformer blocks per stage.
        decoder_dim: channels of the decode head.
        num_heads: attention heads per stage.
        sr_ratios: spatial reduction ratio of keys and values per stage.
        mlp_ratio: Mix-FFN hidden channels per token channel.
        drop_path_rate: stochastic depth of the encoder's last block.
        dropout: dropout before the classifier.
        small_stem: first patch embedding 5x5 with stride 2 instead of 7x7 with stride 4,
            for small (64x64) images.
        in_channels: channels of the input image.
    """

    def __init__(
        self,
        num_classes: int,
        embed_dims=(32, 64, 160, 256),
        depths=(2, 2, 2, 2),
        decoder_dim: int = 256,
        num_heads=(1, 2, 5, 8),
        sr_ratios=(8, 4, 2, 1),
        mlp_ratio: int = 4,
        drop_path_rate: float = 0.1,
        dropout: float = 0.1,
        small_stem: bool = False,
        in_channels: int = 3,
    ):
        super().__init__()
        self.encoder = MixTransformer(embed_dims, depths, num_heads, sr_ratios, mlp_ratio, drop_path_rate, in_channels, small_stem)
        self.head = SegFormerHead(embed_dims, decoder_dim, num_classes, dropout)

    @classmethod
    def from_variant(cls, variant: str, num_classes: int, **options) -> "SegFormer":
        """The paper's variant ``"b0"`` .. ``"b5"``; ``options`` are further arguments of SegFormer."""
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {sorted(VARIANTS)}, got {variant!r}")
        return cls(num_classes, **VARIANTS[variant], **options)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, K, H, W) logits."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise TypeError(f"images: expected a float tensor of shape (B, 3, H, W), got {describe(images)}")
        logits = self.head(self.encoder(images))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
