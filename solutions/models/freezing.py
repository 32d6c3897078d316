"""Freezable: a part of a network that fine-tuning can freeze.

Freezing an encoder for fine-tuning means two things, and forgetting the second is a
common bug: its weights get no gradients (``requires_grad_(False)``), and it stays in
eval mode, so that BatchNorm keeps its running statistics and dropout and stochastic
depth stay off, even though the trainer puts the whole model in train mode every
epoch. :class:`Freezable` does both; the encoders of PSPNet and SegFormer derive from it.
"""

from torch import nn


class Freezable(nn.Module):
    """A module with :meth:`freeze` and :meth:`unfreeze`; a frozen one stays in eval mode.

    ``train(mode)`` remembers the requested mode, so that :meth:`unfreeze` returns the
    module to the mode of the model around it.
    """

    def __init__(self):
        super().__init__()
        self.frozen = False
        self.requested_training = True

    def freeze(self):
        """Stop the module's weights from learning and keep it in eval mode."""
        # TODO 2.6 (Assignment 2, part 5): freeze the module.
        # Afterwards no parameter of the module gets a gradient, and the module stays in
        # eval mode whatever `train(mode)` is asked of it, also when the trainer calls
        # `model.train()` on the whole model every epoch: a frozen module is bit-identical
        # after a training step, weights and BatchNorm statistics alike. `unfreeze` undoes
        # both; the `return` line below then applies the mode the model asked for last.
        # About 2 lines.
        # BEGIN SOLUTION
        self.frozen = True
        self.requires_grad_(False)
        # END SOLUTION
        return self.train(self.requested_training)

    def unfreeze(self):
        """Let the module learn again and follow the model's train/eval mode."""
        self.frozen = False
        self.requires_grad_(True)
        return self.train(self.requested_training)

    def train(self, mode: bool = True):
        """Remember the requested mode; a frozen module stays in eval mode whatever it is."""
        self.requested_training = mode
        return super().train(mode and not self.frozen)
