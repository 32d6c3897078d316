"""SegFormer equals transformers' SegformerForSemanticSegmentation, weight for weight.

A randomly initialised transformers model has every parameter and BatchNorm buffer
perturbed (so that no layer is an identity or a zero by accident), its weights are
ported into dlvc's SegFormer by an explicit name mapping, and in eval mode every
stage's features and the logits must agree to 1e-5. Both run in float64, so that
the comparison sees the architecture and not float32 rounding (the fused logits of
float32 runs differ by up to about 2e-5 from summation order alone).
"""

import re

import pytest
import torch
import torch.nn.functional as F
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from dlvc.models.mit_transformer import DropPath, MixTransformer
from dlvc.models.segformer import VARIANTS, SegFormer

TOLERANCE = dict(rtol=1e-5, atol=1e-5)

STAGE = r"^segformer\.stages\.(\d+)\."
BLOCK = r"^segformer\.stages\.(\d+)\.blocks\.(\d+)\."

# transformers' state-dict key (a regular expression) -> dlvc's; exactly one rule matches each key.
NAME_MAPPING = [
    (STAGE + r"patch_embeddings\.proj\.", r"encoder.stages.\1.patch_embed.proj."),
    (STAGE + r"patch_embeddings\.layer_norm\.", r"encoder.stages.\1.patch_embed.norm."),
    (BLOCK + r"layernorm_before\.", r"encoder.stages.\1.blocks.\2.norm1."),
    (BLOCK + r"attention\.q_proj\.", r"encoder.stages.\1.blocks.\2.attn.query."),
    (BLOCK + r"attention\.k_proj\.", r"encoder.stages.\1.blocks.\2.attn.key."),
    (BLOCK + r"attention\.v_proj\.", r"encoder.stages.\1.blocks.\2.attn.value."),
    (BLOCK + r"attention\.o_proj\.", r"encoder.stages.\1.blocks.\2.attn.proj."),
    (BLOCK + r"attention\.sequence_reduction\.sequence_reduction\.", r"encoder.stages.\1.blocks.\2.attn.sr."),
    (BLOCK + r"attention\.sequence_reduction\.layer_norm\.", r"encoder.stages.\1.blocks.\2.attn.sr_norm."),
    (BLOCK + r"layernorm_after\.", r"encoder.stages.\1.blocks.\2.norm2."),
    (BLOCK + r"mlp\.fc1\.", r"encoder.stages.\1.blocks.\2.mlp.fc1."),
    (BLOCK + r"mlp\.dwconv\.dwconv\.", r"encoder.stages.\1.blocks.\2.mlp.dwconv."),
    (BLOCK + r"mlp\.fc2\.", r"encoder.stages.\1.blocks.\2.mlp.fc2."),
    (STAGE + r"layer_norm\.", r"encoder.stages.\1.norm."),
    (r"^decode_head\.linear_projections\.(\d+)\.proj\.", r"head.projections.\1."),
    (r"^decode_head\.linear_fuse\.", "head.fuse."),
    (r"^decode_head\.batch_norm\.", "head.fuse_norm."),
    (r"^decode_head\.classifier\.", "head.classifier."),
]


def dlvc_name(name: str) -> str:
    """dlvc's state-dict key of transformers' key ``name``."""
    renamed = [re.sub(pattern, replacement, name) for pattern, replacement in NAME_MAPPING if re.match(pattern, name)]
    assert len(renamed) == 1, f"{name}: {len(renamed)} mapping rules match, expected exactly one"
    return renamed[0]


def b0_config(num_labels: int) -> SegformerConfig:
    return SegformerConfig(
        num_labels=num_labels,
        hidden_sizes=[32, 64, 160, 256],
        depths=[2, 2, 2, 2],
        num_attention_heads=[1, 2, 5, 8],
        sr_ratios=[8, 4, 2, 1],
        mlp_ratios=[4, 4, 4, 4],
        patch_sizes=[7, 3, 3, 3],
        strides=[4, 2, 2, 2],
        decoder_hidden_size=256,
        drop_path_rate=0.1,
        classifier_dropout_prob=0.1,
    )


def perturb(model: torch.nn.Module) -> None:
    """Add noise to every parameter, set the BatchNorm statistics away from 0 and 1."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator, dtype=buffer.dtype))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator, dtype=buffer.dtype))


@pytest.fixture(scope="module")
def ported_pair():
    torch.manual_seed(0)
    theirs = SegformerForSemanticSegmentation(b0_config(num_labels=19)).double().eval()
    perturb(theirs)
    ours = SegFormer.from_variant("b0", num_classes=19).double().eval()
    state = {dlvc_name(name): value for name, value in theirs.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    return theirs, ours


def test_name_mapping_covers_every_weight_of_both_models_once():
    theirs = SegformerForSemanticSegmentation(b0_config(num_labels=19))
    ours = SegFormer.from_variant("b0", num_classes=19)
    mapped = [dlvc_name(name) for name in theirs.state_dict()]
    assert len(set(mapped)) == len(mapped), "two transformers weights map to the same dlvc name"
    assert set(mapped) == set(ours.state_dict()), (
        f"unmapped: {sorted(set(mapped) ^ set(ours.state_dict()))}"
    )
    for name, value in theirs.state_dict().items():
        assert ours.state_dict()[dlvc_name(name)].shape == value.shape, f"{name} and {dlvc_name(name)} differ in shape"


@pytest.mark.slow
@pytest.mark.parametrize("size", [(256, 256), (375, 500)], ids=["256x256", "375x500"])
def test_segformer_b0_equals_transformers_stage_by_stage(ported_pair, size):
    theirs, ours = ported_pair
    images = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        output = theirs(pixel_values=images, output_hidden_states=True)
        features = ours.encoder(images)
        logits = ours.head(features)
        upsampled = ours(images)
    assert len(output.hidden_states) == len(features) == 4
    for stage, (their_feature, our_feature) in enumerate(zip(output.hidden_states, features)):
        torch.testing.assert_close(our_feature, their_feature, **TOLERANCE, msg=lambda text: f"stage {stage + 1}: {text}")
    torch.testing.assert_close(logits, output.logits, **TOLERANCE, msg=lambda text: f"H/4 logits: {text}")
    expected = F.interpolate(output.logits, size=size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsampled, expected, **TOLERANCE, msg=lambda text: f"logits at the input size: {text}")


@pytest.mark.slow
def test_segformer_b0_training_gradients_equal_transformers():
    """In train mode (BatchNorm on batch statistics), every parameter gets transformers' gradient."""
    torch.manual_seed(0)
    config = b0_config(num_labels=19)
    config.drop_path_rate, config.classifier_dropout_prob = 0.0, 0.0
    theirs = SegformerForSemanticSegmentation(config).double().train()
    perturb(theirs)
    ours = SegFormer.from_variant("b0", num_classes=19, drop_path_rate=0.0, dropout=0.0).double().train()
    ours.load_state_dict({dlvc_name(name): value for name, value in theirs.state_dict().items()}, strict=True)
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, 96, 128, generator=generator, dtype=torch.float64)
    weights = torch.randn(2, 19, 24, 32, generator=generator, dtype=torch.float64)
    (theirs(pixel_values=images).logits * weights).sum().backward()
    (ours.head(ours.encoder(images)) * weights).sum().backward()
    our_parameters = dict(ours.named_parameters())
    for name, parameter in theirs.named_parameters():
        torch.testing.assert_close(
            our_parameters[dlvc_name(name)].grad, parameter.grad, **TOLERANCE, msg=lambda text: f"gradient of {dlvc_name(name)}: {text}"
        )


def test_segformer_b0_has_3719027_parameters_with_19_classes():
    count = sum(parameter.numel() for parameter in SegFormer.from_variant("b0", num_classes=19).parameters())
    assert count == 3_719_027, f"SegFormer-B0 with 19 classes has {count:,} parameters, expected 3,719,027"


def test_segformer_b0_has_3714915_parameters_with_3_classes():
    count = sum(parameter.numel() for parameter in SegFormer.from_variant("b0", num_classes=3).parameters())
    assert count == 3_714_915, f"SegFormer-B0 with 3 classes has {count:,} parameters, expected 3,714,915"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_has_as_many_parameters_as_transformers(variant):
    config = VARIANTS[variant]
    their_config = SegformerConfig(
        num_labels=19,
        hidden_sizes=list(config["embed_dims"]),
        depths=list(config["depths"]),
        decoder_hidden_size=config["decoder_dim"],
    )
    with torch.device("meta"):
        ours = SegFormer.from_variant(variant, num_classes=19)
        theirs = SegformerForSemanticSegmentation(their_config)
    count = sum(parameter.numel() for parameter in ours.parameters())
    expected = sum(parameter.numel() for parameter in theirs.parameters())
    assert count == expected, f"SegFormer-{variant.upper()}: {count:,} parameters, transformers has {expected:,}"


def test_unknown_variant_is_rejected_by_name():
    with pytest.raises(ValueError, match="variant"):
        SegFormer.from_variant("b6", num_classes=3)


def test_encoder_rejects_images_with_the_wrong_number_of_channels():
    with pytest.raises(ValueError, match="images"):
        MixTransformer()(torch.randn(1, 1, 32, 32))


def test_encoder_rejects_integer_images():
    with pytest.raises(TypeError, match="images"):
        MixTransformer()(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_small_stem_gives_stage_strides_2_4_8_16():
    encoder = MixTransformer(small_stem=True)
    sizes = [tuple(feature.shape[-2:]) for feature in encoder(torch.randn(1, 3, 64, 64))]
    assert sizes == [(32, 32), (16, 16), (8, 8), (4, 4)], f"stage sizes with the small stem: {sizes}"


def test_stochastic_depth_grows_linearly_to_the_drop_path_rate():
    encoder = MixTransformer(depths=(2, 2, 2, 2), drop_path_rate=0.7)
    rates = [block.drop_path.drop_prob for stage in encoder.stages for block in stage.blocks]
    expected = [0.1 * index for index in range(8)]
    assert rates == pytest.approx(expected), f"drop-path rates per block: {rates}"


def test_drop_path_is_the_identity_in_eval_mode_and_drops_whole_samples_in_training():
    drop = DropPath(0.5)
    x = torch.ones(1000, 3, 4)
    assert torch.equal(drop.eval()(x), x), "DropPath must not change anything in eval mode"
    dropped = drop.train()(x)
    per_sample = dropped.flatten(1)
    assert torch.all((per_sample == 0).all(dim=1) | (per_sample == 2).all(dim=1)), "each sample is either dropped or scaled by 1/(1-p)"
    assert 0.4 < (per_sample[:, 0] == 0).float().mean() < 0.6, "about half of the samples must be dropped with p=0.5"
