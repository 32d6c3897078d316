"""PSPNet: the two-stream encoder, each decoder module's shapes, freezing, parameter counts, cached weights."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18, resnet50

from dlvc.models.pspnet import (
    PSPDecoder,
    PSPEncoder,
    PSPNet,
    PyramidPooling,
    SupplementaryModule,
    Upsampling,
    backbone_cache_path,
    count_parameters,
)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return PSPNet(num_classes=3, arch="resnet18")


def test_encoder_main_stream_is_at_stride_8_and_supplementary_at_stride_32():
    encoder = PSPEncoder("resnet18")
    main, supplementary = encoder(torch.randn(2, 3, 64, 96))
    assert main.shape == (2, encoder.main_channels, 8, 12), "the main stream must stay at stride 8"
    assert supplementary.shape == (2, encoder.supplementary_channels, 2, 3), "the supplementary stream must reach stride 32"
    assert encoder.main_channels == encoder.supplementary_channels == 512


@pytest.mark.slow
def test_main_stream_equals_torchvision_dilated_resnet50():
    torch.manual_seed(0)
    encoder = PSPEncoder("resnet50").eval()
    reference = resnet50(replace_stride_with_dilation=[False, True, True]).eval()
    layers = nn.Sequential(reference.conv1, reference.bn1, reference.relu, reference.maxpool, *(getattr(reference, f"layer{n}") for n in range(1, 5)))
    layers.load_state_dict(nn.Sequential(*encoder.trunk, *encoder.main).state_dict())
    images = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(encoder(images)[0], layers(images), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_resnext50_encoder_gives_2048_channels_at_both_strides():
    encoder = PSPEncoder("resnext50_32x4d").eval()
    with torch.inference_mode():
        main, supplementary = encoder(torch.randn(1, 3, 64, 64))
    assert main.shape == (1, 2048, 8, 8) and supplementary.shape == (1, 2048, 2, 2)


def test_unknown_encoder_names_the_choices():
    with pytest.raises(ValueError, match="resnet50"):
        PSPEncoder("vgg16")


def test_pyramid_pooling_output_channels_follow_the_paper():
    module = PyramidPooling(in_channels=2048)
    assert module.out_channels == 2048 + 4 * 512
    assert len(module.stages) == 4
    assert [stage[0].output_size for stage in module.stages] == [1, 2, 3, 6]


def test_pyramid_pooling_rejects_channels_that_the_bins_do_not_divide():
    with pytest.raises(ValueError, match="in_channels"):
        PyramidPooling(in_channels=10, bins=(1, 2, 3, 6))


def test_pyramid_pooling_output_shape():
    pooled = PyramidPooling(in_channels=8)(torch.randn(2, 8, 9, 9))
    assert pooled.shape == (2, 16, 9, 9)


def test_supplementary_module_reduces_and_resizes_to_the_requested_size():
    module = SupplementaryModule(in_channels=16, out_channels=4)
    assert module(torch.randn(2, 16, 2, 3), (8, 12)).shape == (2, 4, 8, 12)


def test_upsampling_channels_and_size():
    module = Upsampling(in_channels=16)
    assert module.out_channels == 64
    assert module(torch.randn(2, 16, 3, 4)).shape == (2, 64, 24, 32)


def test_decoder_turns_stride_8_and_32_streams_into_stride_1_features():
    decoder = PSPDecoder(main_channels=16, supplementary_channels=16, decoder_channels=8, reduced_channels=4, upsampling_channels=(8, 8, 5))
    assert decoder.out_channels == 5
    assert decoder(torch.randn(2, 16, 8, 8), torch.randn(2, 16, 2, 2)).shape == (2, 5, 64, 64)


def test_logits_are_at_the_input_size_for_sizes_that_are_not_multiples_of_32(small_model):
    small_model.train()
    assert small_model(torch.randn(2, 3, 50, 70)).shape == (2, 3, 50, 70)


def test_images_of_the_wrong_type_or_channels_name_the_argument(small_model):
    with pytest.raises(TypeError, match="images"):
        small_model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="images"):
        small_model(torch.zeros(2, 1, 32, 32))


def test_decoder_names_the_stream_with_the_wrong_channels():
    decoder = PSPDecoder(main_channels=8, supplementary_channels=12, decoder_channels=4, reduced_channels=4, upsampling_channels=(4, 4, 4))
    with pytest.raises(ValueError, match="supplementary"):
        decoder(torch.randn(2, 8, 4, 4), torch.randn(2, 8, 1, 1))


def test_frozen_encoder_gets_no_gradient_and_the_decoder_does():
    model = PSPNet(num_classes=2, arch="resnet18")
    model.encoder.freeze()
    model.train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(parameter.grad is None for parameter in model.encoder.parameters()), "a frozen encoder must get no gradient"
    assert all(parameter.grad is not None for parameter in [*model.decoder.parameters(), *model.head.parameters()])


def test_frozen_encoder_stays_in_eval_mode_and_keeps_its_batchnorm_statistics():
    model = PSPNet(num_classes=2, arch="resnet18")
    model.encoder.freeze()
    model.train()
    running_mean = model.encoder.trunk[1].running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert not any(module.training for module in model.encoder.modules()), "model.train() must leave a frozen encoder in eval mode"
    assert model.decoder.training and model.head.training
    assert torch.equal(model.encoder.trunk[1].running_mean, running_mean), "a frozen encoder's BatchNorm statistics must not move"


def test_unfreeze_lets_the_encoder_learn_and_follow_train_mode_again():
    encoder = PSPEncoder("resnet18")
    encoder.freeze()
    encoder.unfreeze()
    assert all(parameter.requires_grad for parameter in encoder.parameters())
    assert all(module.training for module in encoder.modules())
    encoder.eval()
    encoder.freeze()
    encoder.unfreeze()
    assert not encoder.training, "unfreeze() must not switch an encoder in eval mode back to training"


def test_count_parameters_of_a_frozen_encoder_is_zero_and_the_rest_still_counts():
    model = PSPNet(num_classes=2, arch="resnet18")
    total = sum(parameter.numel() for parameter in model.parameters())
    assert count_parameters(model) == total
    model.encoder.freeze()
    assert count_parameters(model.encoder) == 0
    assert count_parameters(model) == total - sum(parameter.numel() for parameter in model.encoder.parameters())


def test_count_parameters_rejects_what_is_not_a_module():
    with pytest.raises(TypeError, match="model"):
        count_parameters(torch.zeros(3))


def test_backward_reaches_every_parameter_of_an_unfrozen_model(small_model):
    small_model.train()
    small_model.zero_grad(set_to_none=True)
    small_model(torch.randn(2, 3, 32, 32)).sum().backward()
    missing = [name for name, parameter in small_model.named_parameters() if parameter.grad is None]
    assert not missing, f"these parameters are not used in forward: {missing}"


def test_missing_backbone_file_says_which_file_to_put_where(torch_home):
    with pytest.raises(FileNotFoundError) as raised:
        PSPNet(num_classes=3, arch="resnet18", pretrained_backbone=True)
    message = str(raised.value)
    path = backbone_cache_path("resnet18")
    assert path.parent == torch_home / "hub" / "checkpoints"
    assert path.name in message and str(path) in message and "download" in message


def test_pretrained_weights_from_the_cache_start_both_streams(torch_home):
    weights = resnet18().state_dict()
    weights["conv1.weight"] = torch.randn_like(weights["conv1.weight"])
    weights["layer4.0.conv1.weight"] = torch.randn_like(weights["layer4.0.conv1.weight"])
    path = backbone_cache_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(weights, path)
    encoder = PSPEncoder("resnet18", pretrained=True)
    assert torch.equal(encoder.trunk[0].weight, weights["conv1.weight"])
    assert torch.equal(encoder.main[1][0].conv1.weight, weights["layer4.0.conv1.weight"])
    assert torch.equal(encoder.supplementary[1][0].conv1.weight, weights["layer4.0.conv1.weight"])
