"""FCN-ResNet50 and its backbone weights from the local cache; DeepSegmenter save and partial load."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet50

from dlvc.models.fcn import BACKBONE_WEIGHTS, fcn_resnet50
from dlvc.models.pretrained import cache_path
from dlvc.models.segmenter import DeepSegmenter
from dlvc.models.unet import UNet


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


def test_fcn_from_scratch_returns_logits_at_the_input_size():
    model = fcn_resnet50(num_classes=3).eval()
    with torch.inference_mode():
        logits = model(torch.randn(2, 3, 64, 80))
    assert logits.shape == (2, 3, 64, 80)


def test_pretrained_backbone_is_read_from_the_torch_hub_cache(torch_home):
    weights = resnet50().state_dict()
    weights["conv1.weight"] = torch.randn_like(weights["conv1.weight"])
    path = cache_path(BACKBONE_WEIGHTS)
    assert path.parent == torch_home / "hub" / "checkpoints"
    path.parent.mkdir(parents=True)
    torch.save(weights, path)
    model = fcn_resnet50(num_classes=3, pretrained_backbone=True)
    assert torch.equal(model.net.backbone.conv1.weight, weights["conv1.weight"])


def test_missing_backbone_file_says_which_file_to_put_where(torch_home):
    with pytest.raises(FileNotFoundError) as raised:
        fcn_resnet50(num_classes=3, pretrained_backbone=True)
    message = str(raised.value)
    assert str(cache_path(BACKBONE_WEIGHTS)) in message and "--download" in message


def test_segmenter_unwraps_torchvision_dict_outputs():
    class DictNet(nn.Module):
        def forward(self, images):
            return {"out": images[:, :2]}

    assert DeepSegmenter(DictNet())(torch.zeros(1, 3, 4, 4)).shape == (1, 2, 4, 4)


def test_save_and_load_round_trip(tmp_path):
    source = DeepSegmenter(UNet(3, base_channels=4, depth=2))
    path = source.save(tmp_path, "best")
    assert path.name == "model_best.pt"
    target = DeepSegmenter(UNet(3, base_channels=4, depth=2))
    target.load(path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_load_only_the_encoder_into_a_model_with_another_head(tmp_path):
    source = DeepSegmenter(UNet(19, base_channels=4, depth=2))
    path = source.save(tmp_path)
    target = DeepSegmenter(UNet(3, base_channels=4, depth=2))
    head_before = target.net.classifier.weight.clone()
    loaded = target.load(path, only=("encoder",))
    assert loaded and all(name.startswith("encoder.") for name in loaded)
    assert torch.equal(target.net.encoder[0][0].weight, source.net.encoder[0][0].weight)
    assert torch.equal(target.net.classifier.weight, head_before), "the new head must keep its own weights"


def test_encoder_means_the_backbone_for_torchvision_models(tmp_path):
    source = fcn_resnet50(num_classes=21)
    path = source.save(tmp_path)
    target = fcn_resnet50(num_classes=3)
    loaded = target.load(path, only=("encoder",))
    assert loaded and all(name.startswith("backbone.") for name in loaded)
    assert torch.equal(target.net.backbone.conv1.weight, source.net.backbone.conv1.weight)


def test_loading_a_head_of_another_shape_names_the_weight(tmp_path):
    path = DeepSegmenter(UNet(19, base_channels=4, depth=2)).save(tmp_path)
    with pytest.raises(ValueError, match="classifier.weight"):
        DeepSegmenter(UNet(3, base_channels=4, depth=2)).load(path, only=("encoder", "classifier"))


def test_unknown_part_lists_the_parts():
    with pytest.raises(ValueError, match="decoder"):
        DeepSegmenter(UNet(3, base_channels=4, depth=2)).load(__file__, only=("decode_head",))
