"""Train SegFormer from scratch, pretrain its encoder, or fine-tune a pretrained one.

    python train_segformer.py --dataset synthetic-pets                  # from scratch, offline
    python train_segformer.py --dataset city --pretrain --out runs/city-segformer
    python train_segformer.py --dataset oxford --finetune runs/city-segformer/model_encoder.pt --strategy init
    python train_segformer.py --dataset oxford --finetune runs/city-segformer/model_encoder.pt --strategy freeze
    python compare_finetuning.py                                        # all of these on the synthetic data, one plot

``--pretrain`` writes the best model's encoder to ``model_encoder.pt`` in the run
folder. ``--finetune`` loads every encoder weight from it (or from an earlier run's
``model_best.pt`` or ``checkpoint.pt``) into a SegFormer with a new head for the
dataset's classes; ``--strategy freeze`` also keeps the encoder fixed and gives the
optimizer only the head's weights. Every other flag is train.py's (``--help``).
"""

import argparse

from dlvc.errors import exit_on_input_error
from dlvc.experiment import SEGFORMER_DATASETS, run, training_parser


def parse_args(argv=None) -> argparse.Namespace:
    return training_parser(__doc__, default_dataset="oxford", default_model="segformer", datasets=SEGFORMER_DATASETS).parse_args(argv)


def main(args: argparse.Namespace) -> None:
    run(args)


if __name__ == "__main__":
    exit_on_input_error(main, parse_args())
