"""Assignment 2, parts 1 to 4: SegFormer (TODOs 2.1, 2.2 and 2.3 in dlvc/models/mit_transformer.py, TODO 2.4 in dlvc/models/segformer_head.py)."""

import torch

from dlvc.models.mit_transformer import Block, EfficientSelfAttention, MixTransformer, OverlapPatchEmbed
from dlvc.models.segformer import SegFormer
from dlvc.models.segformer_head import SegFormerHead


def test_overlap_patch_embed_returns_tokens_and_the_output_size():
    embed = OverlapPatchEmbed(in_channels=3, embed_dim=8, patch_size=7, stride=4)
    tokens, height, width = embed(torch.randn(2, 3, 37, 50))
    assert (height, width) == (10, 13), f"a 37x50 input with stride 4 must give a ceil(37/4) x ceil(50/4) = 10x13 map, got {height}x{width}"
    assert tokens.shape == (2, 10 * 13, 8), f"tokens must be (B, H*W, C) = (2, 130, 8), got {tuple(tokens.shape)}"


def test_overlap_patch_embed_normalises_every_token():
    embed = OverlapPatchEmbed(in_channels=3, embed_dim=16, patch_size=3, stride=2)
    tokens, _, _ = embed(5 + 3 * torch.randn(1, 3, 8, 8))
    mean, std = tokens.mean(dim=-1), tokens.std(dim=-1, unbiased=False)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4), "each token must have mean 0 over its channels: apply the LayerNorm"
    assert torch.allclose(std, torch.ones_like(std), atol=1e-2), "each token must have standard deviation 1 over its channels: apply the LayerNorm"


def test_efficient_attention_keeps_the_token_shape():
    attention = EfficientSelfAttention(dim=16, num_heads=2, sr_ratio=4)
    out = attention(torch.randn(2, 64, 16), 8, 8)
    assert out.shape == (2, 64, 16), f"attention must return (B, N, C) = (2, 64, 16), got {tuple(out.shape)}"


def test_efficient_attention_computes_keys_from_the_reduced_map():
    attention = EfficientSelfAttention(dim=16, num_heads=2, sr_ratio=4)
    seen = []
    attention.key.register_forward_hook(lambda module, inputs, output: seen.append(tuple(inputs[0].shape)))
    attention(torch.randn(2, 64, 16), 8, 8)
    assert seen == [(2, 4, 16)], f"with sr_ratio 4 an 8x8 map gives 2x2 = 4 key tokens, the keys saw {seen}"


def test_efficient_attention_without_reduction_uses_every_token():
    attention = EfficientSelfAttention(dim=16, num_heads=2, sr_ratio=1)
    seen = []
    attention.value.register_forward_hook(lambda module, inputs, output: seen.append(tuple(inputs[0].shape)))
    attention(torch.randn(2, 12, 16), 3, 4)
    assert seen == [(2, 12, 16)], f"with sr_ratio 1 the values must see all 12 tokens, they saw {seen}"


def test_block_keeps_the_token_shape():
    block = Block(dim=16, num_heads=2, mlp_ratio=4, sr_ratio=2, drop_path=0.0)
    out = block(torch.randn(2, 48, 16), 6, 8)
    assert out.shape == (2, 48, 16), f"a block must return (B, N, C) = (2, 48, 16), got {tuple(out.shape)}"


def test_block_with_silent_sub_layers_is_the_identity():
    """With the last layer of attention and Mix-FFN zeroed, only the residual connections remain."""
    block = Block(dim=16, num_heads=2, mlp_ratio=4, sr_ratio=2, drop_path=0.0)
    for layer in (block.attn.proj, block.mlp.fc2):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    x = torch.randn(2, 48, 16)
    assert torch.allclose(block(x, 6, 8), x), "each sub-layer's output must be added to its input (residual connections)"


def test_block_normalises_before_each_sub_layer():
    block = Block(dim=16, num_heads=2, mlp_ratio=4, sr_ratio=1, drop_path=0.0).eval()
    x = torch.randn(1, 12, 16)
    with torch.no_grad():
        reference = block(x, 3, 4)
        block.norm1.weight.mul_(2)
        changed = block(x, 3, 4)
    assert not torch.allclose(reference, changed), "the attention must see norm1(x), not x (pre-norm block)"


def test_mix_transformer_b0_returns_four_maps_at_strides_4_to_32():
    encoder = MixTransformer()
    features = encoder(torch.randn(2, 3, 64, 64))
    shapes = [tuple(feature.shape) for feature in features]
    assert shapes == [(2, 32, 16, 16), (2, 64, 8, 8), (2, 160, 4, 4), (2, 256, 2, 2)], f"stage outputs: {shapes}"


def test_segformer_head_returns_logits_at_the_first_stage_size():
    head = SegFormerHead(in_channels=(8, 16, 24, 32), decoder_dim=16, num_classes=5)
    features = [torch.randn(2, 8, 16, 12), torch.randn(2, 16, 8, 6), torch.randn(2, 24, 4, 3), torch.randn(2, 32, 2, 2)]
    logits = head(features)
    assert logits.shape == (2, 5, 16, 12), f"the head returns (B, K, H/4, W/4) = (2, 5, 16, 12), got {tuple(logits.shape)}"


def test_segformer_head_concatenates_the_deepest_stage_first():
    """With the fuse layer reading only its first D input channels, only the deepest stage may matter."""
    torch.manual_seed(0)
    head = SegFormerHead(in_channels=(8, 16, 24, 32), decoder_dim=16, num_classes=5).eval()
    with torch.no_grad():
        head.fuse.weight[:, 16:] = 0
    features = [torch.randn(1, 8, 8, 8), torch.randn(1, 16, 4, 4), torch.randn(1, 24, 2, 2), torch.randn(1, 32, 1, 1)]
    with torch.no_grad():
        reference = head(features)
        other_shallow = head([torch.randn(1, 8, 8, 8)] + features[1:])
        other_deep = head(features[:3] + [torch.randn(1, 32, 1, 1)])
    assert torch.allclose(reference, other_shallow), "the first channels of the concatenation must come from the deepest stage (reverse the list)"
    assert not torch.allclose(reference, other_deep), "the deepest stage must reach the logits"


def test_segformer_b0_with_small_stem_returns_logits_at_the_input_size():
    model = SegFormer.from_variant("b0", num_classes=3, small_stem=True)
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 3, 64, 64), f"SegFormer must return (B, K, H, W) = (2, 3, 64, 64), got {tuple(logits.shape)}"


def test_segformer_backward_reaches_every_parameter():
    model = SegFormer.from_variant("b0", num_classes=3, small_stem=True)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    missing = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert not missing, f"these parameters are not used in forward: {missing}"
