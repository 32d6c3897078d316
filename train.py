"""Train a segmentation model: FCN-ResNet50 on the Oxford-IIIT pets by default.

    python train.py                                       # the course's reference run
    python train.py --dataset synthetic-pets --model unet # offline, on the embedded data
    python train.py --resume runs/oxford-fcn              # continue a run
    torchrun --nproc_per_node=2 train.py ...              # several processes / GPUs

Every flag has a default (``python train.py --help``); the resolved configuration is
printed once the data and the model are built, and saved in the run folder and in
every checkpoint. A missing dataset or weight file ends the script with
``train.py: error: <message>`` and exit status 1, a bad flag or combination of flags
with status 2.
"""

import argparse

from dlvc.errors import exit_on_input_error
from dlvc.experiment import run, training_parser


def parse_args(argv=None) -> argparse.Namespace:
    return training_parser(__doc__, default_dataset="oxford", default_model="fcn").parse_args(argv)


def main(args: argparse.Namespace) -> None:
    run(args)


if __name__ == "__main__":
    exit_on_input_error(main, parse_args())
