"""Assignment 1, part 3: the UNet forward pass (TODO 1 in dlvc/models/unet.py)."""

import torch

from dlvc.models.unet import UNet


def test_unet_returns_logits_at_the_input_size():
    model = UNet(num_classes=3, base_channels=4, depth=3)
    logits = model(torch.randn(2, 3, 64, 48))
    assert logits.shape == (2, 3, 64, 48), "UNet must return (B, K, H, W) logits at the input's size"


def test_unet_handles_sizes_that_are_not_multiples_of_two_to_the_depth():
    model = UNet(num_classes=2, base_channels=4, depth=3)
    logits = model(torch.randn(1, 3, 37, 50))
    assert logits.shape == (1, 2, 37, 50), "resize each upsampled map to its skip connection's size before concatenating"


def test_unet_decoder_puts_each_skip_connection_before_the_upsampled_map():
    """The last decoder block must receive [first encoder block's output, upsampled map] on the channel dimension."""
    torch.manual_seed(0)
    model = UNet(num_classes=2, base_channels=4, depth=2).eval()
    seen = {}
    model.encoder[0].register_forward_hook(lambda module, inputs, output: seen.update(skip=output))
    model.decoder[-1].register_forward_hook(lambda module, inputs, output: seen.update(decoder_input=inputs[0]))
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 16))
    channels = seen["skip"].shape[1]
    assert torch.equal(seen["decoder_input"][:, :channels], seen["skip"]), (
        "the last decoder block's input should start with the first encoder block's output (the skip connection), "
        "then the upsampled map: torch.cat([skip, upsampled], dim=1)"
    )


def test_unet_backward_reaches_every_parameter():
    model = UNet(num_classes=2, base_channels=4, depth=2)
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    missing = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert not missing, f"these parameters are not used in forward: {missing}"
