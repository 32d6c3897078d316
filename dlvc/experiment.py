"""The pieces a training script wires together, chosen by command-line flags.

``train.py`` (and later scripts) only parse flags and call :func:`run`; everything
they build comes from the plain dictionaries and small builders here, so a student
can follow a flag from the command line to the object it makes.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from . import distributed
from .checkpoint import seed_everything
from .datasets.cityscapes import CityscapesCustom
from .datasets.oxfordpets import OxfordPetsCustom
from .datasets.synthetic import SyntheticCity, SyntheticPets
from .datasets.transforms import eval_transforms, train_transforms
from .datasets.voc import VOCSegmentation
from .errors import BAD_FLAGS, MISSING_FILE, InputError, checking_input
from .losses import LOSSES, build_loss
from .metrics import SegMetrics
from .models.fcn import fcn_resnet50
from .models.freezing import Freezable
from .models.pspnet import ENCODERS, PSPNet
from .models.segformer import VARIANTS, SegFormer
from .models.segmenter import DeepSegmenter
from .models.unet import UNet
from .optim import OPTIMIZERS, SCHEDULER_INTERVALS, build_optimizer, build_scheduler, parameter_groups
from .threads import apply_threads, load_warning, plan_threads
from .trainer import CHECKPOINT_NAME, ImgSemSegTrainer, batches_per_epoch

DEFAULT_IMAGE_SIZE = {"oxford": 64, "synthetic-pets": 64, "city": (64, 128), "synthetic-city": (64, 128), "voc": 128}
"""Training resolution per dataset, (H, W) or one side of a square (``--image-size``)."""

REAL_DATASETS = {"oxford": OxfordPetsCustom, "city": CityscapesCustom, "voc": VOCSegmentation}
REAL_DATASET_FOLDERS = {"oxford": ".", "city": "cityscapes", "voc": "."}
"""Each real dataset's root under ``--data-root``: data/oxford-iiit-pet, data/cityscapes, data/VOCdevkit."""
SYNTHETIC_DATASETS = {"synthetic-pets": SyntheticPets, "synthetic-city": SyntheticCity}
DATASETS = (*REAL_DATASETS, *SYNTHETIC_DATASETS)
SEGFORMER_DATASETS = ("oxford", "city", "synthetic-pets", "synthetic-city")
"""The datasets of the SegFormer assignment (``train_segformer.py``)."""
MODELS = ("fcn", "unet", "pspnet", "segformer")
SMALL_STEM_MAX_SIDE = 128
"""SegFormer's small stem is the default for images whose shorter side is at most this."""
ENCODER_FILE_SUFFIX = "encoder"
"""``--pretrain`` writes the best model's encoder to ``model_encoder.pt`` in the run folder."""
SYNTHETIC_DATA_SEED = 0
"""The synthetic datasets are the same in every run; ``--seed`` varies initialisation and shuffling only."""


def training_parser(description: str, default_dataset: str, default_model: str, datasets=DATASETS) -> argparse.ArgumentParser:
    """A training script's parser: its docstring as the description and every shared flag."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(parser, default_dataset, default_model, datasets)
    return parser


def add_training_arguments(parser: argparse.ArgumentParser, default_dataset: str, default_model: str, datasets=DATASETS) -> None:
    """The flags every training script shares, with the course's reference settings as defaults."""
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=datasets, default=default_dataset, help="dataset to train on (default: %(default)s)")
    data.add_argument("--data-root", type=Path, default=Path("data"), help="folder holding the real datasets (default: %(default)s)")
    data.add_argument("--download", action="store_true", help="download the dataset or pretrained weights when they are not on disk")
    data.add_argument("--image-size", type=int, nargs="+", default=None, help="training size, H [W] (default: per dataset, 64 for the pets)")
    data.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True, help="paired augmentations on the training split (default: on)")
    data.add_argument("--train-samples", type=int, default=None, help="synthetic datasets: training samples (default: the dataset's)")
    data.add_argument("--val-samples", type=int, default=None, help="synthetic datasets: validation samples (default: the dataset's)")
    data.add_argument("--workers", type=int, default=4, help="DataLoader worker processes per training process (default: %(default)s)")
    data.add_argument("--threads", type=positive_int, default=None,
                      help="CPU threads of each training process, one per DataLoader worker and the rest for the main process "
                      "(default: the cores this process may use, shared among torchrun's processes on the machine)")

    model = parser.add_argument_group("model")
    model.add_argument("--model", choices=MODELS, default=default_model, help="network (default: %(default)s)")
    model.add_argument("--pretrained-backbone", action="store_true", help="FCN, PSPNet: start from ImageNet weights in the torch hub cache")
    model.add_argument("--unet-width", type=int, default=64, help="UNet: channels of the first stage (default: %(default)s)")
    model.add_argument("--unet-depth", type=int, default=4, help="UNet: downsampling steps (default: %(default)s)")
    model.add_argument("--pspnet-arch", choices=sorted(ENCODERS), default="resnet50", help="PSPNet: the ResNet encoder (default: %(default)s)")
    model.add_argument("--segformer-variant", choices=sorted(VARIANTS), default="b0", help="SegFormer: the paper's size (default: %(default)s)")
    model.add_argument("--small-stem", action=argparse.BooleanOptionalAction, default=None,
                       help=f"SegFormer: first patch embedding 5x5 with stride 2 instead of 7x7 with stride 4 "
                       f"(default: on when the images' shorter side is at most {SMALL_STEM_MAX_SIDE})")

    transfer = parser.add_argument_group("transfer learning")
    transfer.add_argument("--pretrain", action="store_true",
                          help=f"after training, also write the best model's encoder to model_{ENCODER_FILE_SUFFIX}.pt in the run folder, for --finetune")
    transfer.add_argument("--finetune", type=Path, default=None, metavar="CKPT",
                          help=f"start the encoder from an earlier run's model_{ENCODER_FILE_SUFFIX}.pt, model_best.pt or checkpoint.pt; the head starts afresh")
    transfer.add_argument("--strategy", choices=("init", "freeze"), default="init",
                          help="init: train the whole model from the loaded encoder; freeze: keep the encoder fixed "
                          "(no gradients, eval mode) and train the rest (default: %(default)s)")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=positive_int, default=30, help="epochs in the whole run (default: %(default)s)")
    optim.add_argument("--batch-size", type=positive_int, default=64, help="batch size per process (default: %(default)s)")
    optim.add_argument("--loss", choices=sorted(LOSSES), default="ce", help="loss function (default: %(default)s)")
    optim.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw", help="optimizer; AdamW uses amsgrad (default: %(default)s)")
    optim.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: %(default)s)")
    optim.add_argument("--weight-decay", type=float, default=0.01, help="weight decay, not applied to biases and norms (default: %(default)s)")
    optim.add_argument("--head-lr-multiplier", type=float, default=1.0, help="learning-rate factor for the head's parameters (default: %(default)s)")
    optim.add_argument("--scheduler", choices=tuple(SCHEDULER_INTERVALS), default="exponential", help="learning-rate schedule (default: %(default)s)")
    optim.add_argument("--gamma", type=float, default=0.98, help="exponential schedule: factor per epoch (default: %(default)s)")
    optim.add_argument("--warmup-epochs", type=float, default=0.0, help="poly schedule: linear warm-up length (default: %(default)s)")
    optim.add_argument("--clip-grad-norm", type=float, default=None, help="clip the gradient norm to this value (default: no clipping)")
    optim.add_argument("--amp", nargs="?", const="auto", choices=("auto", "bf16", "fp16"), default=None,
                       help="mixed precision; bare --amp picks bf16 where supported, else fp16 (default: off)")

    run = parser.add_argument_group("run")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when available (default: %(default)s)")
    run.add_argument("--val-frequency", type=positive_int, default=2, help="validate every N epochs and after the last (default: %(default)s)")
    run.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<dataset>-<model>, or the --resume checkpoint's folder)")
    run.add_argument("--resume", type=Path, default=None, help="continue from a checkpoint.pt or a run folder holding one")
    run.add_argument("--overwrite", action="store_true", help="start afresh in an --out folder that already holds a run")
    run.add_argument("--seed", type=int, default=0, help="seed for initialisation and shuffling (default: %(default)s)")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars (default: on)")


def positive_int(text: str) -> int:
    """The argparse type of counts that must be at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {value}")
    return value


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults that depend on other flags (``--threads`` among them) and check the combinations."""
    if args.resume is not None and args.resume.is_dir():
        args.resume = args.resume / CHECKPOINT_NAME
    if args.out is None:
        args.out = args.resume.parent if args.resume is not None else Path("runs") / f"{args.dataset}-{args.model}"
    if args.image_size is None:
        args.image_size = DEFAULT_IMAGE_SIZE[args.dataset]
    elif len(args.image_size) > 2:
        raise InputError(f"--image-size: expected H or H W, got {args.image_size}", BAD_FLAGS)
    else:
        args.image_size = args.image_size[0] if len(args.image_size) == 1 else tuple(args.image_size)
    if args.small_stem is None:
        sides = (args.image_size,) if isinstance(args.image_size, int) else args.image_size
        args.small_stem = min(sides) <= SMALL_STEM_MAX_SIDE
    if args.strategy == "freeze" and args.finetune is None and not args.pretrained_backbone:
        raise InputError(
            "--strategy freeze: the encoder would stay at its random initialisation; give --finetune CKPT or --pretrained-backbone", BAD_FLAGS
        )
    if args.amp == "auto":
        args.amp = "bf16" if args.device == "cpu" or not torch.cuda.is_available() or torch.cuda.is_bf16_supported() else "fp16"
    with checking_input():
        args.threads = plan_threads(args.threads, args.workers).total
    return args


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here; use --device cpu or auto", BAD_FLAGS)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def build_datasets(args: argparse.Namespace):
    """The (train, val) datasets; augmentations on the training split when ``--augment``."""
    train_transform = train_transforms(args.image_size) if args.augment else eval_transforms(args.image_size)
    val_transform = eval_transforms(args.image_size)
    if args.dataset in SYNTHETIC_DATASETS:
        dataset = SYNTHETIC_DATASETS[args.dataset]
        return tuple(
            dataset(split, num_samples=samples, seed=SYNTHETIC_DATA_SEED, transforms=transform)
            for split, samples, transform in (("train", args.train_samples, train_transform), ("val", args.val_samples, val_transform))
        )
    dataset, root = REAL_DATASETS[args.dataset], args.data_root / REAL_DATASET_FOLDERS[args.dataset]
    return tuple(
        dataset(root, split, transforms=transform, download=args.download)
        for split, transform in (("train", train_transform), ("val", val_transform))
    )


def build_model(args: argparse.Namespace, num_classes: int) -> DeepSegmenter:
    """The network named by ``--model``, wrapped in a DeepSegmenter."""
    if args.model == "fcn":
        return fcn_resnet50(num_classes, pretrained_backbone=args.pretrained_backbone, download=args.download)
    if args.model == "unet":
        return DeepSegmenter(UNet(num_classes, base_channels=args.unet_width, depth=args.unet_depth))
    if args.model == "pspnet":
        return DeepSegmenter(PSPNet(num_classes, arch=args.pspnet_arch, pretrained_backbone=args.pretrained_backbone, download=args.download))
    if args.model == "segformer":
        return DeepSegmenter(SegFormer.from_variant(args.segformer_variant, num_classes, small_stem=args.small_stem))
    raise ValueError(f"model: expected one of {MODELS}, got {args.model!r}")


def prepare_transfer(model: DeepSegmenter, args: argparse.Namespace, announce: bool) -> None:
    """Apply ``--finetune`` (load the whole encoder, nothing else) and ``--strategy freeze``.

    A resumed run takes its weights from its own checkpoint, so only the freezing is
    applied then.
    """
    if args.finetune is not None and args.resume is None:
        with checking_input("--finetune"):
            loaded = model.load(args.finetune, only=("encoder",))
        if announce:
            print(f"--finetune: loaded {len(loaded)} encoder tensors from {args.finetune}; the head starts afresh")
    if args.strategy == "freeze":
        encoder = model.part("encoder")
        if not isinstance(encoder, Freezable):
            raise InputError(f"--strategy freeze: the {args.model} encoder cannot be frozen; use --strategy init", BAD_FLAGS)
        encoder.freeze()


def run(args: argparse.Namespace) -> list[dict]:
    """Build everything the flags describe and train; returns the history.

    A bad flag or combination of flags, a missing dataset or weight file ends in an
    :class:`~dlvc.errors.InputError` while the run is being built; the configuration,
    with the resolved thread count, is printed only once everything is built.
    """
    args = resolve(args)
    device = select_device(args.device)
    threads = plan_threads(args.threads, args.workers)
    apply_threads(threads)
    process = distributed.init_from_environment(device)
    device = distributed.device_for(process, device)
    try:
        seed_everything(args.seed)
        trainer, model = build_trainer(args, device, process)
        if process.is_main:
            print("configuration:", json.dumps(vars(args), default=str, indent=2))
            print(threads.describe())
            warning = load_warning(threads)
            if warning is not None:
                print(warning, file=sys.stderr)
        history = trainer.train()
        if process.is_main and args.pretrain:
            model.load(args.out / "model_best.pt")
            path = model.save(args.out, ENCODER_FILE_SUFFIX, only=("encoder",))
            print(f"--pretrain: wrote the best model's encoder to {path}; fine-tune with --finetune {path}")
        if process.is_main:
            best = best_val_miou(history)
            print(f"best val mIoU {best:.4f}; run folder: {os.fspath(args.out)}" if best is not None else f"run folder: {os.fspath(args.out)}")
        return history
    finally:
        distributed.shutdown()


def build_trainer(args: argparse.Namespace, device: torch.device, process: distributed.ProcessInfo) -> tuple[ImgSemSegTrainer, DeepSegmenter]:
    """The trainer of a resolved run and its model; the kit's complaints about the inputs become InputErrors."""
    if args.resume is not None and not args.resume.is_file():
        raise InputError(f"--resume: no checkpoint at {args.resume}", MISSING_FILE)
    with checking_input():
        train_data, val_data = build_datasets(args)
        classes = train_data.classes_seg
        model = build_model(args, len(classes))
        prepare_transfer(model, args, announce=process.is_main)
        model.to(device)
        groups = parameter_groups(model, args.weight_decay, args.head_lr_multiplier)
        optimizer = build_optimizer(args.optimizer, groups, args.lr)
        steps_per_epoch = batches_per_epoch(len(train_data), args.batch_size, process.world_size)
        scheduler = build_scheduler(args.scheduler, optimizer, args.epochs, steps_per_epoch, gamma=args.gamma, warmup_epochs=args.warmup_epochs)
        trainer = ImgSemSegTrainer(
            model,
            optimizer,
            build_loss(args.loss),
            scheduler,
            SegMetrics(classes),
            SegMetrics(classes),
            train_data,
            val_data,
            device,
            args.epochs,
            args.out,
            batch_size=args.batch_size,
            val_frequency=args.val_frequency,
            scheduler_interval=SCHEDULER_INTERVALS[args.scheduler],
            amp=args.amp,
            clip_grad_norm=args.clip_grad_norm,
            num_workers=args.workers,
            seed=args.seed,
            resume=args.resume,
            overwrite=args.overwrite,
            config=vars(args),
            progress=args.progress,
        )
    return trainer, model


def best_val_miou(history: list[dict]) -> float | None:
    """The highest validation mIoU of a run's history; None before any validation."""
    return max((row["val_miou"] for row in history if row["val_miou"] is not None), default=None)
