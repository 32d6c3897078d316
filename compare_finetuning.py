"""Compare ways to train SegFormer on a dataset: from scratch, or fine-tuned from a pretrained encoder.

    python compare_finetuning.py                          # synthetic city -> synthetic pets, on the CPU
    python compare_finetuning.py --source city --target oxford --epochs 30 --train-samples 0 --device cuda

The runs, each in its own folder under --out:

    pretrain     SegFormer trained on --source, its encoder kept (skipped with --pretrained CKPT)
    scratch      trained on --target from random weights
    init         on --target, the encoder loaded from the pretraining, everything trains
    freeze       on --target, the encoder loaded and frozen: only the head trains
    init-low-lr  like init, with the lower --finetune-lr

then comparison.png (train and validation loss and mIoU of the four runs on --target)
and comparison.csv (their histories, one row per run and epoch). A run folder that
holds a finished run is reused and an unfinished one resumed, so rerunning the
command after an interruption loses no work. Every flag not listed below goes to
every run as train_segformer.py reads it (``--small-stem``, ``--device``, ...).
"""

import argparse
import csv
from pathlib import Path

from dlvc.errors import MISSING_FILE, InputError, checking_input, exit_on_input_error
from dlvc.experiment import ENCODER_FILE_SUFFIX, SEGFORMER_DATASETS, best_val_miou, build_datasets, resolve, run, training_parser
from dlvc.trainer import CHECKPOINT_NAME
from dlvc.viz import plot_runs

TRAINING_DESCRIPTION = "train_segformer.py's flags, as each run of compare_finetuning.py reads them."
RUN_FLAGS = ("--dataset", "--model", "--out", "--resume", "--overwrite", "--pretrain", "--finetune", "--strategy")
"""Flags that differ between the runs: this script sets them, so they cannot be passed on."""
PRETRAIN_RUN = "pretrain"
"""The pretraining's run folder under --out; it is not one of the compared runs."""


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    """This script's flags, and the rest for every run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=SEGFORMER_DATASETS, default="synthetic-city", help="pretraining dataset (default: %(default)s)")
    parser.add_argument("--target", choices=SEGFORMER_DATASETS, default="synthetic-pets", help="dataset of the compared runs (default: %(default)s)")
    parser.add_argument("--pretrained", type=Path, default=None, metavar="CKPT", help="fine-tune from this encoder instead of pretraining first")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of each run on --target (default: %(default)s)")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="epochs of the pretraining (default: --epochs)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of scratch, init and freeze (default: %(default)s)")
    parser.add_argument("--finetune-lr", type=float, default=None, help="learning rate of init-low-lr (default: a tenth of --lr)")
    parser.add_argument("--batch-size", type=int, default=16, help="(default: %(default)s)")
    parser.add_argument("--train-samples", type=int, default=400, help="synthetic datasets: training samples; 0 for the dataset's (default: %(default)s)")
    parser.add_argument("--val-samples", type=int, default=100, help="synthetic datasets: validation samples; 0 for the dataset's (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("runs/finetuning"), help="folder of the runs and the plot (default: %(default)s)")
    args, passed_on = parser.parse_known_args(argv)
    owned = sorted({flag.split("=")[0] for flag in passed_on} & set(RUN_FLAGS))
    if owned:
        parser.error(f"{', '.join(owned)}: this script sets these for each run itself")
    return args, passed_on


def training_argv(args: argparse.Namespace, out: Path, dataset: str, epochs: int, lr: float) -> list[str]:
    """The flags of one run; it resumes when its folder already holds a checkpoint."""
    argv = ["--dataset", dataset, "--epochs", str(epochs), "--lr", str(lr), "--batch-size", str(args.batch_size)]
    for flag, samples in (("--train-samples", args.train_samples), ("--val-samples", args.val_samples)):
        if samples:
            argv += [flag, str(samples)]
    if (out / CHECKPOINT_NAME).is_file():
        return argv + ["--resume", str(out)]
    return argv + ["--out", str(out)]


def main(args: argparse.Namespace, passed_on: list[str]) -> None:
    parser = training_parser(TRAINING_DESCRIPTION, default_dataset=args.target, default_model="segformer", datasets=SEGFORMER_DATASETS)
    if args.pretrained is not None and not args.pretrained.is_file():
        raise InputError(f"--pretrained: no file at {args.pretrained}", MISSING_FILE)
    pretraining = args.out / PRETRAIN_RUN
    encoder = args.pretrained or pretraining / f"model_{ENCODER_FILE_SUFFIX}.pt"
    finetune_lr = args.finetune_lr if args.finetune_lr is not None else args.lr / 10
    runs = {
        "scratch": ([], args.lr),
        "init": (["--finetune", str(encoder), "--strategy", "init"], args.lr),
        "freeze": (["--finetune", str(encoder), "--strategy", "freeze"], args.lr),
        "init-low-lr": (["--finetune", str(encoder), "--strategy", "init"], finetune_lr),
    }
    argvs = {
        f"{name} (lr {lr:g})": training_argv(args, args.out / name, args.target, args.epochs, lr) + transfer + passed_on
        for name, (transfer, lr) in runs.items()
    }
    if args.pretrained is None:
        pretrain_argv = training_argv(args, pretraining, args.source, args.pretrain_epochs or args.epochs, args.lr) + ["--pretrain"] + passed_on
        argvs = {PRETRAIN_RUN: pretrain_argv, **argvs}
    check_datasets(parser, argvs.values())
    histories = {label: run(parser.parse_args(argv)) for label, argv in argvs.items()}
    histories.pop(PRETRAIN_RUN, None)
    write_histories(histories, args.out / "comparison.csv")
    path = plot_runs(histories, args.out / "comparison.png", title=f"SegFormer on {args.target}: scratch or fine-tuned from {args.source}")
    print(f"\n{'run':<26} {'best val mIoU':>13} {'last train loss':>16}")
    for label, history in histories.items():
        best = best_val_miou(history)
        shown = "-" if best is None else f"{best:.4f}"
        print(f"{label:<26} {shown:>13} {history[-1]['train_loss']:>16.4f}")
    print(f"plot: {path}")


def check_datasets(parser: argparse.ArgumentParser, argvs) -> None:
    """Resolve every run's flags and find its data sets before the first run trains, so that a mistake ends the script at once."""
    for argv in argvs:
        with checking_input():
            build_datasets(resolve(parser.parse_args(argv)))


def write_histories(histories: dict[str, list[dict]], path: Path) -> None:
    """One CSV row per run and epoch."""
    fields = ["run", *histories[next(iter(histories))][0]]
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        for label, history in histories.items():
            for row in history:
                writer.writerow({"run": label, **row})


if __name__ == "__main__":
    exit_on_input_error(main, *parse_args())
