"""Mix Transformer (MiT): the hierarchical encoder of SegFormer.

Paper: Xie, Wang, Yu, Anandkumar, Alvarez and Luo, "SegFormer: Simple and Efficient
Design for Semantic Segmentation with Transformers", NeurIPS 2021, section 3.1.
Checked against: Hugging Face transformers' ``SegformerModel`` (weights ported,
every stage's output equal in eval mode; see ``tests/test_segformer.py``).

The encoder has four stages. Each stage embeds overlapping patches with a strided
convolution, runs a few transformer blocks on the resulting tokens and ends with a
LayerNorm; its tokens are then laid out as a feature map again. A block is pre-norm:
efficient self-attention (keys and values spatially reduced) and a Mix-FFN (an MLP
with a depthwise 3x3 convolution that gives the tokens their position), each with a
residual connection and stochastic depth.

Left out on purpose: dropout inside the blocks (0 in the paper's configurations);
stochastic depth is the only regulariser of the encoder.

Shapes: B batch, C channels, H and W a feature map's height and width, N = H * W
tokens, K classes.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import describe
from .freezing import Freezable


class DropPath(nn.Module):
    """Stochastic depth: drops a residual branch for whole samples during training.

    Each sample's branch is zeroed with probability ``drop_prob`` and the kept ones are
    scaled by ``1 / (1 - drop_prob)``, so the expected output is unchanged. The identity
    in eval mode or when ``drop_prob`` is 0.

    Args:
        drop_prob: probability of dropping a sample's branch, in [0, 1).
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, ...), the same shape."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        keep = torch.bernoulli(torch.full(mask_shape, keep_prob, dtype=x.dtype, device=x.device))
        return x * keep / keep_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch embedding: a strided convolution, then LayerNorm on the tokens.

    The patches overlap because the kernel is larger than the stride. The output map is
    ``ceil(H / stride)`` by ``ceil(W / stride)``, so any input size works.

    Args:
        in_channels: channels of the input map.
        embed_dim: C, channels of each output token.
        patch_size: the convolution's (odd) kernel size: 7 for the first stage, 3 later.
        stride: the convolution's stride: 4 for the first stage, 2 later.
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int, stride: int):
        super().__init__()
        if patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"patch_size must be a positive odd number, got {patch_size}")
        if stride < 1:
            raise ValueError(f"stride must be at least 1, got {stride}")
        self.patch_size = patch_size
        self.stride = stride
        # TODO 2.1 (Assignment 2, part 1): the overlapping patch embedding's layers.
        # Afterwards two layers exist, under these names (weights are loaded by name).
        # `self.proj` maps a (B, in_channels, H, W) map to a (B, embed_dim, ceil(H / stride),
        # ceil(W / stride)) map for every H and W: output pixel (i, j) is computed from the
        # `patch_size` x `patch_size` patch centred on input pixel (stride * i, stride * j),
        # zeros outside the map, so neighbouring patches overlap. `self.norm` normalises each
        # (embed_dim,) token that `forward` gives it. Paper, section 3.1, "Overlapped Patch
        # Merging". About 2 lines.
        raise NotImplementedError(
            "TODO 2.1 (Assignment 2, part 1) in dlvc/models/mit_transformer.py, OverlapPatchEmbed.__init__: the overlapping patch embedding's layers."
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(B, C_in, H_in, W_in) map -> (B, N, C) tokens and the output map's H and W."""
        x = self.proj(x)
        height, width = x.shape[-2:]
        tokens = self.norm(x.flatten(2).transpose(1, 2))  # (B, C, H, W) -> (B, N, C)
        return tokens, height, width


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys and values come from a spatially reduced map.

    Queries keep all N tokens. Keys and values are computed from the tokens laid out as a
    map and shrunk by a convolution with kernel and stride ``sr_ratio`` (then LayerNorm),
    so attention costs N * N / sr_ratio**2 instead of N * N.

    Args:
        dim: C, channels of each token.
        num_heads: attention heads; must divide ``dim``.
        sr_ratio: spatial reduction ratio R of keys and values; 1 keeps all tokens.
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int):
        super().__init__()
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(f"num_heads must be a positive divisor of dim={dim}, got {num_heads}")
        if sr_ratio < 1:
            raise ValueError(f"sr_ratio must be at least 1, got {sr_ratio}")
        self.num_heads = num_heads
        self.sr_ratio = sr_ratio
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.sr_norm = nn.LayerNorm(dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, heads, N, C / heads)."""
        batch, tokens, channels = x.shape
        return x.view(batch, tokens, self.num_heads, channels // self.num_heads).transpose(1, 2)  # (B, N, C) -> (B, heads, N, C/heads)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, N, C) tokens of an H x W map -> (B, N, C)."""
        batch, tokens, channels = x.shape
        if tokens != height * width:
            raise ValueError(f"x: expected height * width = {height * width} tokens, got {tokens}")
        reduced = x
        # TODO 2.2 (Assignment 2, part 2): the spatial reduction of keys and values.
        # In: `x` (B, N, C), the tokens of a `height` x `width` map in row-major order (token
        # n is the pixel in row n // W, column n % W). Out: `reduced` (B, N', C), the tokens
        # that keys and values are computed from. With R = `self.sr_ratio` above 1, they are
        # the pixels of the map after `self.sr` shrinks it (floor(H / R) x floor(W / R), in
        # the same row-major order), each normalised by `self.sr_norm`; with R = 1 they stay
        # `x` (there is no `self.sr`). Paper, section 3.1, "Efficient Self-Attention".
        # About 4 lines.
        raise NotImplementedError(
            'TODO 2.2 (Assignment 2, part 2) in dlvc/models/mit_transformer.py, EfficientSelfAttention.forward: the spatial reduction of keys and values.'
        )
        queries = self.split_heads(self.query(x))
        keys = self.split_heads(self.key(reduced))
        values = self.split_heads(self.value(reduced))
        attended = F.scaled_dot_product_attention(queries, keys, values)
        attended = attended.transpose(1, 2).reshape(batch, tokens, channels)  # (B, heads, N, C/heads) -> (B, N, C)
        return self.proj(attended)


class MixFFN(nn.Module):
    """Mix-FFN: Linear -> depthwise 3x3 convolution -> GELU -> Linear.

    The depthwise convolution mixes each token with its neighbours on the map, which
    gives the encoder positional information without position embeddings.

    Args:
        dim: C, channels of each token.
        hidden_dim: channels of the hidden layer (``mlp_ratio * dim``).
    """

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, kernel_size=3, padding=1, groups=hidden_dim)
        self.activation = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, N, C) tokens of an H x W map -> (B, N, C)."""
        hidden = self.fc1(x)
        batch, tokens, channels = hidden.shape
        feature_map = hidden.transpose(1, 2).reshape(batch, channels, height, width)  # (B, N, C') -> (B, C', H, W)
        hidden = self.dwconv(feature_map).flatten(2).transpose(1, 2)  # (B, C', H, W) -> (B, N, C')
        return self.fc2(self.activation(hidden))


class Block(nn.Module):
    """A pre-norm transformer block: attention and Mix-FFN, each with a residual connection.

    Args:
        dim: C, channels of each token.
        num_heads: attention heads.
        mlp_ratio: hidden channels of the Mix-FFN per token channel.
        sr_ratio: spatial reduction ratio of the attention's keys and values.
        drop_path: stochastic depth probability of both residual branches.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, sr_ratio: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MixFFN(dim, mlp_ratio * dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, N, C) tokens of an H x W map -> (B, N, C)."""
        # TODO 2.3 (Assignment 2, part 3): the block's two residual sub-layers.
        # In: `x` (B, N, C), the tokens of a `height` x `width` map. Out: `x` (B, N, C) after
        # the attention sub-layer and then the Mix-FFN sub-layer (`self.attn`, `self.mlp`;
        # both take the tokens, `height` and `width`). Each sub-layer is a pre-norm residual
        # branch: its own LayerNorm (`self.norm1` for the attention, `self.norm2` for the
        # Mix-FFN) comes before it, and stochastic depth (`self.drop_path`) after it, on the
        # branch only, so a dropped branch leaves its input unchanged. Paper, section 3.1.
        # About 2 lines.
        raise NotImplementedError(
            "TODO 2.3 (Assignment 2, part 3) in dlvc/models/mit_transformer.py, Block.forward: the block's two residual sub-layers."
        )
        return x


class Stage(nn.Module):
    """One encoder stage: patch embedding, transformer blocks, LayerNorm.

    Args:
        in_channels: channels of the stage's input map.
        dim: C, channels of the stage's output.
        depth: number of blocks.
        num_heads: attention heads of each block.
        mlp_ratio: Mix-FFN ratio of each block.
        sr_ratio: spatial reduction ratio of each block's attention.
        patch_size: kernel of the patch embedding.
        stride: stride of the patch embedding.
        drop_paths: stochastic depth probability of each block, ``depth`` of them.
    """

    def __init__(self, in_channels, dim, depth, num_heads, mlp_ratio, sr_ratio, patch_size, stride, drop_paths):
        super().__init__()
        if len(drop_paths) != depth:
            raise ValueError(f"drop_paths: expected one probability per block ({depth}), got {len(drop_paths)}")
        self.patch_embed = OverlapPatchEmbed(in_channels, dim, patch_size, stride)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, sr_ratio, p) for p in drop_paths)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H_in, W_in) -> (B, C, ceil(H_in / stride), ceil(W_in / stride))."""
        tokens, height, width = self.patch_embed(x)
        for block in self.blocks:
            tokens = block(tokens, height, width)
        tokens = self.norm(tokens)
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, height, width)  # (B, N, C) -> (B, C, H, W)


class MixTransformer(Freezable):
    """The four-stage MiT encoder; ``freeze()`` and ``unfreeze()`` it for fine-tuning.

    Args:
        embed_dims: channels of the four stages (B0: 32, 64, 160, 256).
        depths: blocks per stage (B0: 2, 2, 2, 2).
        num_heads: attention heads per stage (paper: 1, 2, 5, 8).
        sr_ratios: spatial reduction ratio per stage (paper: 8, 4, 2, 1).
        mlp_ratio: Mix-FFN ratio of every block (paper: 4).
        drop_path_rate: stochastic depth of the last block; it grows linearly from 0 over
            all blocks (paper: 0.1).
        in_channels: channels of the input image.
        small_stem: embed the first stage with a 5x5 kernel and stride 2 instead of 7x7
            and stride 4, for small (64x64) images; the stages' strides become 2, 4, 8, 16.
    """

    def __init__(
        self,
        embed_dims=(32, 64, 160, 256),
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 5, 8),
        sr_ratios=(8, 4, 2, 1),
        mlp_ratio: int = 4,
        drop_path_rate: float = 0.1,
        in_channels: int = 3,
        small_stem: bool = False,
    ):
        super().__init__()
        for name, values in (("depths", depths), ("num_heads", num_heads), ("sr_ratios", sr_ratios)):
            if len(values) != len(embed_dims):
                raise ValueError(f"{name}: expected one value per stage ({len(embed_dims)}), got {len(values)}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.embed_dims = tuple(embed_dims)
        self.in_channels = in_channels
        first_patch, first_stride = (5, 2) if small_stem else (7, 4)
        total = sum(depths)
        drop_paths = [drop_path_rate * index / max(total - 1, 1) for index in range(total)]
        self.stages = nn.ModuleList()
        channels, start = in_channels, 0
        for index, (dim, depth) in enumerate(zip(embed_dims, depths)):
            patch_size, stride = (first_patch, first_stride) if index == 0 else (3, 2)
            stage_drop_paths = drop_paths[start : start + depth]
            self.stages.append(
                Stage(channels, dim, depth, num_heads[index], mlp_ratio, sr_ratios[index], patch_size, stride, stage_drop_paths)
            )
            channels, start = dim, start + depth
        self.apply(init_weights)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, C_in, H, W) images -> four maps (B, C_i, H_i, W_i), H_1 = ceil(H / 4) (H / 2 with the small stem), each next stage half that."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
            raise TypeError(f"images: expected a float tensor of shape (B, C, H, W), got {describe(images)}")
        if images.shape[1] != self.in_channels:
            raise ValueError(f"images: expected {self.in_channels} channels, got {images.shape[1]}")
        features = []
        x = images
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def init_weights(module: nn.Module) -> None:
    """The reference code's initialisation: truncated normal linear layers, He-normal convolutions."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, std=(2.0 / fan_out) ** 0.5)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
