"""Assignment 3: PSPNet (TODOs 3.1 to 3.4 in dlvc/models/pspnet.py).

Part 1 pyramid pooling, part 2 the upsampling module, part 3 the decoder's fusion,
part 4 counting trainable parameters. Everything runs on small random inputs with
random weights; nothing is downloaded.
"""

import torch
from torch import nn

from dlvc.models.pspnet import PSPDecoder, PSPNet, PyramidPooling, Upsampling, count_parameters


def test_pyramid_pooling_doubles_the_channels_and_keeps_the_size():
    module = PyramidPooling(in_channels=8, bins=(1, 2, 3, 6))
    pooled = module(torch.randn(2, 8, 12, 10))
    assert pooled.shape == (2, 16, 12, 10), "pyramid pooling must return (B, C + 4 * C/4, h, w): the input plus one C/4 map per bin"


def test_pyramid_pooling_puts_the_input_first_and_only_once():
    module = PyramidPooling(in_channels=4, bins=(1, 2))
    features = torch.randn(2, 4, 6, 6)
    pooled = module(features)
    assert torch.equal(pooled[:, :4], features), "the first C output channels must be the unchanged input"
    assert pooled.shape[1] == 8, "concatenate the input once, followed by the pooled branches"


def test_pyramid_pooling_one_by_one_bin_is_the_same_at_every_pixel():
    module = PyramidPooling(in_channels=4, bins=(1,))
    pooled = module(torch.randn(2, 4, 5, 7))
    branch = pooled[:, 4:]
    assert torch.allclose(branch, branch[:, :, :1, :1].expand_as(branch)), "the 1x1 bin holds one value per channel, resized back to (h, w)"


def test_upsampling_doubles_the_size_three_times():
    module = Upsampling(in_channels=8, channels=(6, 5, 4))
    upsampled = module(torch.randn(2, 8, 5, 7))
    assert upsampled.shape == (2, 4, 40, 56), "three stages that each double the size must take (h, w) to (8h, 8w)"


def test_upsampling_resizes_bilinearly_with_aligned_corners_before_each_stage():
    module = Upsampling(in_channels=1, channels=(1, 1, 1))
    module.stages = nn.ModuleList(nn.Identity() for _ in range(3))
    features = torch.arange(6.0).reshape(1, 1, 2, 3)
    upsampled = module(features)
    corners = upsampled[0, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.equal(corners, torch.tensor([0.0, 2.0, 3.0, 5.0])), "with align_corners=True the corner pixels keep their values"
    assert torch.allclose(upsampled[0, 0, 0, :8].diff(), torch.full((7,), 2.0 / 23)), "bilinear resizing must interpolate linearly between the input pixels"


def test_decoder_returns_features_at_eight_times_the_main_stream_size():
    decoder = PSPDecoder(main_channels=8, supplementary_channels=12, decoder_channels=6, reduced_channels=4, upsampling_channels=(6, 5, 3))
    decoded = decoder(torch.randn(2, 8, 4, 6), torch.randn(2, 12, 1, 2))
    assert decoded.shape == (2, 3, 32, 48), "the decoder must fuse at the main stream's size, then upsample it by 8"


def test_decoder_uses_the_supplementary_stream():
    torch.manual_seed(0)
    decoder = PSPDecoder(main_channels=8, supplementary_channels=12, decoder_channels=6, reduced_channels=4, upsampling_channels=(6, 5, 3)).eval()
    main = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        one = decoder(main, torch.randn(2, 12, 1, 1))
        other = decoder(main, torch.randn(2, 12, 1, 1))
    assert not torch.allclose(one, other), "changing the supplementary stream must change the output: fuse it with the pooled context"


def test_count_parameters_counts_every_trainable_number():
    layer = nn.Linear(3, 2)
    assert count_parameters(layer) == 3 * 2 + 2, "a Linear(3, 2) layer has 6 weights and 2 biases"


def test_count_parameters_skips_frozen_parameters():
    layer = nn.Linear(3, 2)
    layer.weight.requires_grad_(False)
    assert count_parameters(layer) == 2, "parameters with requires_grad=False are not trainable and count 0"


def test_pspnet_returns_logits_at_the_input_size():
    model = PSPNet(num_classes=3, arch="resnet18")
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 3, 64, 64), "PSPNet must return (B, K, H, W) logits at the input's size"


def test_frozen_encoder_has_no_trainable_parameters():
    model = PSPNet(num_classes=3, arch="resnet18")
    model.encoder.freeze()
    assert count_parameters(model.encoder) == 0, "a frozen encoder has no trainable parameters"
    assert count_parameters(model) == count_parameters(model.decoder) + count_parameters(model.head), "only the decoder and head train"
