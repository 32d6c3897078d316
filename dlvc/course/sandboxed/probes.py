"""What a graded test may build in a worker besides the student's objects: the grader's probes.

A graded test names a probe as ``"$probe:<Name>"`` (``Session.imported``); the worker
(:mod:`worker`) looks it up in :data:`PROBES`. Probes run in the worker, beside the
student's code: a stand-in metric, a recording wrapper, a forward-and-backward pass
whose gradients come back as data, the saved model of a competition entry. Those
that build parts of ``dlvc`` import it when called, so that in the worker they get
the student's package and in the grader the reference.

Like the rest of this subpackage it imports only the standard library and torch.
"""

import collections
import pickle
from pathlib import Path

import torch

PROBE_PREFIX = "$probe:"


# ----- probes: objects a graded test may build in the worker besides the student's --------


ProbeClass = collections.namedtuple("ProbeClass", ["name", "id", "color"])
"""A class as the kit's plots expect one (like ``dlvc.datasets.common.SegClass``)."""


class PixelAccuracyMetric:
    """A stand-in for SegMetrics with its interface, scoring pixel accuracy.

    The trainer is graded with this metric rather than the student's, so that a
    wrong metric costs the metric's points only. ``mIoU()`` returns the share of
    labelled pixels predicted correctly.

    Args:
        num_classes: C; the classes are named ``class 0`` ... with grey levels as colours.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.classes = [ProbeClass(f"class {label}", label, (40 * label % 256,) * 3) for label in range(num_classes)]
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.correct = 0
        self.labelled = 0

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        if prediction.is_floating_point():
            prediction = prediction.argmax(dim=1)  # (B, C, H, W) -> (B, H, W)
        target = target.reshape(prediction.shape)
        labelled = target != self.ignore_index
        self.correct += int(((prediction == target) & labelled).sum())
        self.labelled += int(labelled.sum())

    def all_reduce(self) -> None:
        """One process: nothing to merge."""

    def mIoU(self) -> float:
        return self.correct / self.labelled if self.labelled else 0.0


class CallRecorder(torch.nn.Module):
    """Wraps a network and records, for every forward pass, the mode it ran in.

    Each record is ``[training, grad_enabled, inference_mode, batch_size]``; read them
    with :meth:`records`. The wrapped network's weights sit under ``net.``.
    """

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self._records: list[list] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._records.append([self.training, torch.is_grad_enabled(), torch.is_inference_mode_enabled(), int(images.shape[0])])
        return self.net(images)

    def records(self) -> list[list]:
        return [list(record) for record in self._records]


def tiny_segmentation_net(in_channels: int = 3, width: int = 4, num_classes: int = 2) -> torch.nn.Module:
    """A two-layer network with BatchNorm, small enough to train in a second: (B, 3, H, W) -> (B, K, H, W)."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(in_channels, width, kernel_size=3, padding=1, bias=False),
        torch.nn.BatchNorm2d(width),
        torch.nn.ReLU(),
        torch.nn.Conv2d(width, num_classes, kernel_size=1),
    )


def forward_and_gradients(module: torch.nn.Module, inputs, *arguments, seed: int) -> dict:
    """One forward and backward pass of ``module``, with the loss ``(output * weights).sum()``.

    Args:
        inputs: a tensor, or a list of tensors (a decode head's stage maps); each
            gets its gradient.
        arguments: further arguments of ``forward``: a second stream, which gets its
            gradient too, or a map's height and width.
        seed: ``torch.manual_seed`` right before the forward pass, so that dropout and
            stochastic depth draw what the reference draws with the same seed; the
            loss's random ``weights``, shaped like the output, come from it too.

    A module that returns a tuple (a patch embedding's tokens, height and width) is
    judged by its first element.

    Returns the output, the gradient with respect to the inputs (a list for a list)
    and to each floating-point tensor among ``arguments`` (None for the others), and
    each parameter's gradient by name (None for a parameter that got none).
    """
    many = isinstance(inputs, list)
    leaves = [_leaf(tensor) for tensor in (inputs if many else [inputs])]
    arguments = [_leaf(argument) if _differentiable(argument) else argument for argument in arguments]
    module.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    output = module(leaves if many else leaves[0], *arguments)
    if isinstance(output, tuple):
        output = output[0]
    weights = torch.randn(output.shape, generator=torch.Generator().manual_seed(seed))
    (output * weights).sum().backward()
    gradients = [leaf.grad for leaf in leaves]
    return {
        "output": output.detach(),
        "input_grad": gradients if many else gradients[0],
        "argument_grads": [argument.grad if _differentiable(argument) else None for argument in arguments],
        "parameter_grads": {name: parameter.grad for name, parameter in module.named_parameters()},
    }


def _differentiable(value) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point()


def _leaf(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.clone().requires_grad_(True)


class StandInAttention(torch.nn.Module):
    """A fixed token mixer that takes a transformer block's attention's place: (B, N, C), H, W -> (B, N, C).

    A block is graded with it rather than with the student's attention, so that a
    wrong attention costs the attention's points only.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.mix = torch.nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if x.shape[1] != height * width:
            raise ValueError(f"x: expected height * width = {height * width} tokens, got {x.shape[1]}")
        return torch.tanh(self.mix(x))


def with_stand_in_attention(block: torch.nn.Module, dim: int) -> torch.nn.Module:
    """``block`` with :class:`StandInAttention` as its ``attn``."""
    block.attn = StandInAttention(dim)
    return block


def transfer_net(num_classes: int) -> torch.nn.Module:
    """A small ``DeepSegmenter`` around an ``encoder`` (a ``Freezable`` with BatchNorm and dropout) and a ``head``.

    Built from the ``dlvc`` of the process that calls it: the student's in the worker,
    the reference in the grader. (B, 3, H, W) -> (B, K, H, W).
    """
    from dlvc.models.freezing import Freezable
    from dlvc.models.segmenter import DeepSegmenter

    class Encoder(Freezable):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(
                torch.nn.Conv2d(3, 6, kernel_size=3, padding=1, bias=False),
                torch.nn.BatchNorm2d(6),
                torch.nn.ReLU(),
                torch.nn.Dropout(0.5),
            )

        def forward(self, images):
            return self.layers(images)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Encoder()
            self.head = torch.nn.Conv2d(6, num_classes, kernel_size=1)

        def forward(self, images):
            return self.head(self.encoder(images))

    return DeepSegmenter(Net())


def fine_tuning_step(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, lr: float) -> dict:
    """Freeze ``model``'s encoder, then one training step as the trainer takes it.

    ``model.train()``, an SGD optimizer over ``parameter_groups(model)``, cross-entropy,
    backward, step. Returns what a frozen encoder must keep: the state dict before and
    after, the names of the parameters the optimizer holds, and each module's
    training flag after ``model.train()``.
    """
    from dlvc.optim import build_optimizer, parameter_groups

    model.part("encoder").freeze()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    model.train()
    training = {name: module.training for name, module in model.named_modules()}
    optimizer = build_optimizer("sgd", parameter_groups(model, weight_decay=0.0), lr=lr)
    held = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(images), targets).backward()
    optimizer.step()
    return {
        "before": before,
        "after": model.state_dict(),
        "optimized": sorted(name for name, parameter in model.named_parameters() if id(parameter) in held),
        "training": training,
    }


PROBES = {
    "PixelAccuracyMetric": PixelAccuracyMetric,
    "CallRecorder": CallRecorder,
    "tiny_segmentation_net": tiny_segmentation_net,
    "forward_and_gradients": forward_and_gradients,
    "with_stand_in_attention": with_stand_in_attention,
    "transfer_net": transfer_net,
    "fine_tuning_step": fine_tuning_step,
}


# ----- the class competition (dlvc leaderboard): a submission's saved model on the grader's images --------


class SavedModelPredictor:
    """The student's own PSPNet with the weights of their competition entry, in eval mode: images in, labels out.

    Built in the worker, so ``dlvc`` is the student's package: ``PSPNet(**config)`` of
    their ``dlvc.models.pspnet``, the weights read with ``torch.load(...,
    weights_only=True)`` (tensors and plain containers, never code) and loaded with
    ``load_state_dict`` (every key and shape must match). The grader checks the labels
    that come back again and scores them itself.

    Args:
        config: the keyword arguments of ``PSPNet`` that the entry's model.json names
            (``arch``, ``num_classes`` and maybe the decoder's widths), checked by the grader.
        weights: the weights file, relative to the folder holding the student's ``dlvc/``.
    """

    def __init__(self, config: dict, weights: str):
        import dlvc
        from dlvc.models.pspnet import PSPNet

        self.num_classes = num_classes = config["num_classes"]
        arch = config["arch"]
        self.model = PSPNet(**config)
        try:
            state = torch.load(Path(dlvc.__file__).resolve().parents[1] / weights, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ValueError(f"{weights} holds more than tensors, which is not loaded: save model.state_dict() ({first_line})") from None
        if not isinstance(state, dict):
            raise TypeError(f"{weights}: expected a state dict, as torch.save(model.state_dict(), path) writes it; got a {type(state).__name__}")
        _check_state_keys(state, self.model.state_dict(), f"{weights} for PSPNet({num_classes}, {arch!r})")
        self.model.load_state_dict(state)
        self.model.eval()

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float images -> (B, H, W) uint8 labels, the argmax of the logits over K."""
        logits = self.model(images)
        expected = (images.shape[0], self.num_classes, *images.shape[-2:])
        if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or tuple(logits.shape) != expected:
            shown = f"{str(logits.dtype).removeprefix('torch.')} {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"the model returned {shown} for images {tuple(images.shape)}; expected float logits {expected}")
        finite = torch.isfinite(logits).all(dim=1)  # (B, K, H, W) -> (B, H, W)
        if not finite.all():
            raise ValueError(f"the model's logits are NaN or infinite at {int((~finite).sum())} of {finite.numel()} pixels")
        return logits.argmax(dim=1).to(torch.uint8)  # (B, K, H, W) -> (B, H, W)


def _check_state_keys(state: dict, expected: dict, what: str) -> None:
    """ValueError naming the first missing and unexpected keys when ``state`` does not have ``expected``'s keys."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if not missing and not unexpected:
        return
    hint = " (a DeepSegmenter's keys: save model.net.state_dict())" if unexpected and all(str(key).startswith("net.") for key in state) else ""
    raise ValueError(
        f"{what}: {len(missing)} of the {len(expected)} keys of the model's state dict are missing (first: {missing[:3]}), "
        f"{len(unexpected)} keys are unexpected (first: {[str(key) for key in unexpected[:3]]}){hint}"
    )


PROBES["SavedModelPredictor"] = SavedModelPredictor
