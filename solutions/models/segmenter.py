"""DeepSegmenter: one wrapper that gives every segmentation network the same interface.

The trainer, ``viz_pets.py`` and the fine-tuning scripts talk to a ``DeepSegmenter``:

- ``forward(images)`` returns the logits tensor ``(B, K, H, W)``, whether the wrapped
  network returns a tensor (dlvc's models) or torchvision's ``{"out": logits}`` dict;
- ``save(folder, suffix)`` writes the weights to ``folder/model_<suffix>.pt``;
- ``load(path, only=("encoder",))`` loads all weights, or only those of the named
  parts, into a network whose other parts may differ (a new head with another
  number of classes, say): the transfer-learning step.

The part names are the wrapped network's top-level submodules. ``"encoder"`` also
finds torchvision's ``backbone``, so the same call works for every model.
"""

import os
from pathlib import Path

import torch
from torch import nn

PART_ALIASES = {"encoder": ("encoder", "backbone")}


class DeepSegmenter(nn.Module):
    """Wraps ``net`` so that it returns a logits tensor and saves and loads its weights.

    Args:
        net: a network mapping ``(B, 3, H, W)`` images to ``(B, K, H, W)`` logits or to
            a dict holding them under ``"out"``.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net: expected a torch.nn.Module, got {type(net).__name__}")
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, K, H, W) logits."""
        output = self.net(images)
        if isinstance(output, dict):
            output = output["out"]
        return output

    def save(self, folder: str | os.PathLike, suffix: str | None = None, only: tuple[str, ...] | None = None) -> Path:
        """Write the network's weights to ``folder/model.pt`` or ``folder/model_<suffix>.pt``.

        ``only`` names the top-level parts to write (``("encoder",)`` keeps a pretrained
        encoder for fine-tuning); None writes everything.
        """
        state = self.net.state_dict()
        if only is not None:
            state = _parts_of(state, self._prefixes(only))
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (f"model_{suffix}.pt" if suffix else "model.pt")
        torch.save(state, path)
        return path

    def load(self, path: str | os.PathLike, only: tuple[str, ...] | None = None) -> list[str]:
        """Load weights saved by :meth:`save` (or a training checkpoint).

        Args:
            path: a file written by :meth:`save`, or a trainer checkpoint holding them
                under ``"model"``.
            only: names of the top-level parts to load (``("encoder",)`` for transfer
                learning), each of them whole; None loads everything and requires an
                exact match.

        Returns:
            The names of the loaded parameters and buffers.
        """
        prefixes = None if only is None else self._prefixes(only)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: no weights file at {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "model" in state and isinstance(state["model"], dict):
            # A trainer checkpoint holds this wrapper's own state dict: the network's under "net.".
            state = {key.removeprefix("net."): value for key, value in state["model"].items()}
        if prefixes is None:
            self.net.load_state_dict(state)
            return list(state)
        # TODO 2.5 (Assignment 2, part 5): load the weights of the named parts, and only those.
        # In: `state`, the file's weights by name ("encoder.stages.0.norm.weight": a tensor),
        # and `prefixes`, the names of the top-level parts of `self.net` to load ({"encoder"}).
        # Afterwards every weight of those parts holds the file's value, and every other
        # weight (the new head) keeps its own, even when the file holds one of the same shape.
        # A file that does not fit is refused, before anything is loaded, by
        # `self._check_selected` (read its docstring). Returns the names of the loaded
        # weights. About 4 lines.
        # BEGIN SOLUTION
        selected = _parts_of(state, prefixes)
        self._check_selected(selected, prefixes, path, state)
        self.net.load_state_dict(selected, strict=False)
        return list(selected)
        # END SOLUTION

    def _check_selected(self, selected: dict, prefixes: set[str], path: Path, state: dict) -> None:
        """Raise ValueError unless ``selected``, taken from the file's ``state``, holds every weight of the parts ``prefixes``, each fitting the network."""
        if not selected:
            raise ValueError(f"{path} holds no weights under {sorted(prefixes)}; its parts are {sorted({key.split('.')[0] for key in state})}")
        own = self.net.state_dict()
        for key, value in selected.items():
            if key not in own:
                raise ValueError(f"{path}: {key} does not exist in this {type(self.net).__name__}")
            if own[key].shape != value.shape:
                raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, this model expects {tuple(own[key].shape)}")
        missing = sorted(_parts_of(own, prefixes).keys() - selected.keys())
        if missing:
            raise ValueError(f"{path}: lacks {len(missing)} of the weights of {sorted(prefixes)}, such as {missing[:3]}; was it saved from another model?")

    def part(self, name: str) -> nn.Module:
        """The network's top-level part ``name``; ``"encoder"`` also finds torchvision's ``backbone``."""
        (prefix,) = self._prefixes((name,))
        return getattr(self.net, prefix)

    def _prefixes(self, only: tuple[str, ...]) -> set[str]:
        if isinstance(only, str):
            raise TypeError(f"only: expected a tuple of part names such as ('encoder',), got the string {only!r}")
        children = {name for name, _ in self.net.named_children()}
        prefixes = set()
        for part in only:
            found = [name for name in PART_ALIASES.get(part, (part,)) if name in children]
            if not found:
                raise ValueError(f"only: {type(self.net).__name__} has no part {part!r}; its parts are {sorted(children)}")
            prefixes.update(found)
        return prefixes


def _parts_of(state: dict, prefixes: set[str]) -> dict:
    """The entries of a state dict that belong to the top-level parts named in ``prefixes``."""
    return {key: value for key, value in state.items() if key.split(".")[0] in prefixes}
