"""Draw a trained model's predictions next to the ground truth, for validation samples.

    python viz_pets.py --checkpoint runs/oxford-fcn/model_best.pt
    python viz_pets.py --checkpoint runs/demo --num-samples 6 --out pets.png

The model and dataset settings are read from the run folder's ``config.json``
(written by ``train.py``); the output is a PNG grid with one row per sample:
image, ground truth, prediction.
"""

import argparse
import json
from pathlib import Path

import torch

from dlvc import viz
from dlvc.errors import BAD_FLAGS, MISSING_FILE, InputError, checking_input, exit_on_input_error
from dlvc.experiment import build_datasets, build_model, positive_int, select_device


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="model_best.pt, model_last.pt, checkpoint.pt, or a run folder (uses model_best.pt)")
    parser.add_argument("--num-samples", type=positive_int, default=8, help="validation samples to draw (default: %(default)s)")
    parser.add_argument("--first", type=int, default=0, help="index of the first validation sample (default: %(default)s)")
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding the dataset (default: the run's)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="(default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: <run folder>/viz_pets.png)")
    return parser.parse_args(argv)


def load_run_config(weights: Path) -> argparse.Namespace:
    """The training flags saved beside ``weights`` by train.py."""
    config_path = weights.parent / "config.json"
    if not config_path.is_file():
        raise InputError(f"--checkpoint: no config.json beside {weights}; point it at a file inside a train.py run folder", MISSING_FILE)
    config = json.loads(config_path.read_text())
    size = config["image_size"]
    config["image_size"] = tuple(size) if isinstance(size, list) else size
    config["data_root"] = Path(config["data_root"])
    return argparse.Namespace(**config)


def main(args: argparse.Namespace) -> Path:
    weights = args.checkpoint / "model_best.pt" if args.checkpoint.is_dir() else args.checkpoint
    if not weights.is_file():
        raise InputError(f"--checkpoint: no file at {weights}", MISSING_FILE)
    config = load_run_config(weights)
    config.download = False
    config.pretrained_backbone = False  # the trained weights replace them anyway
    if args.data_root is not None:
        config.data_root = args.data_root
    with checking_input():
        _, val_data = build_datasets(config)
    last = min(args.first + args.num_samples, len(val_data))
    if not 0 <= args.first < last:
        raise InputError(f"--first: expected an index in [0, {len(val_data)}) of the validation split, got {args.first}", BAD_FLAGS)
    device = select_device(args.device)
    model = build_model(config, len(val_data.classes_seg))
    with checking_input("--checkpoint"):
        model.load(weights)
    model.to(device).eval()
    images, targets = map(torch.stack, zip(*(val_data[index] for index in range(args.first, last))))
    with torch.inference_mode():
        predictions = model(images.to(device)).argmax(dim=1).cpu()
    out = args.out or weights.parent / "viz_pets.png"
    viz.prediction_grid(images, targets, predictions, val_data.classes_seg, out, title=f"{config.dataset}: {weights.name}")
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    exit_on_input_error(main, parse_args())
