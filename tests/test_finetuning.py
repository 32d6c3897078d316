"""Pretraining and fine-tuning SegFormer: train_segformer.py's --pretrain, --finetune and --strategy, and compare_finetuning.py."""

import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dlvc.experiment import prepare_transfer
from dlvc.models.pspnet import PSPNet
from dlvc.models.segformer import SegFormer
from dlvc.models.segmenter import DeepSegmenter
from dlvc.optim import build_optimizer, parameter_groups
from top_level_scripts import import_script, run_script

TINY = [
    "--train-samples", "8", "--val-samples", "4", "--batch-size", "4", "--image-size", "32", "--workers", "0",
    "--device", "cpu", "--no-progress",
]  # fmt: skip


train_segformer = import_script("train_segformer")
compare_finetuning = import_script("compare_finetuning")


def segformer(num_classes: int) -> DeepSegmenter:
    return DeepSegmenter(SegFormer.from_variant("b0", num_classes, small_stem=True))


@pytest.fixture
def pretrained_encoder(tmp_path) -> Path:
    """A 19-class SegFormer's encoder (random but distinctive weights), saved as --pretrain does."""
    torch.manual_seed(1)
    return segformer(19).save(tmp_path, "encoder", only=("encoder",))


def finetuned(pretrained: Path, strategy: str) -> DeepSegmenter:
    """A 3-class SegFormer prepared by --finetune PATH --strategy STRATEGY."""
    args = train_segformer.parse_args(["--dataset", "synthetic-pets", "--finetune", str(pretrained), "--strategy", strategy])
    torch.manual_seed(2)
    model = segformer(3)
    prepare_transfer(model, args, announce=False)
    return model


def one_training_step(model: DeepSegmenter) -> torch.optim.Optimizer:
    optimizer = build_optimizer("adamw", parameter_groups(model, weight_decay=0.01), lr=1e-2)
    model.train()
    generator = torch.Generator().manual_seed(3)
    images, targets = torch.randn(4, 3, 32, 32, generator=generator), torch.randint(0, 3, (4, 32, 32), generator=generator)
    F.cross_entropy(model(images), targets).backward()
    optimizer.step()
    return optimizer


def test_init_loads_every_encoder_tensor_and_no_head_tensor(pretrained_encoder):
    saved = torch.load(pretrained_encoder, weights_only=True)
    torch.manual_seed(2)
    fresh_head = segformer(3).net.head.state_dict()
    model = finetuned(pretrained_encoder, "init")
    encoder = {f"encoder.{key}": value for key, value in model.net.encoder.state_dict().items()}
    assert encoder.keys() == saved.keys(), "the saved encoder and the model's encoder hold different tensors"
    for key, value in encoder.items():
        assert torch.equal(value, saved[key]), f"{key} was not loaded from the pretrained encoder"
    for key, value in model.net.head.state_dict().items():
        assert torch.equal(value, fresh_head[key]), f"head.{key} changed: fine-tuning must start with a new head"


def test_freeze_keeps_the_encoder_bit_identical_through_a_training_step(pretrained_encoder):
    model = finetuned(pretrained_encoder, "freeze")
    encoder_before = {key: value.clone() for key, value in model.net.encoder.state_dict().items()}
    head_before = {key: value.clone() for key, value in model.net.head.state_dict().items()}
    one_training_step(model)
    for key, value in model.net.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), f"encoder.{key} changed although the encoder is frozen"
    changed = [key for key, value in model.net.head.state_dict().items() if not torch.equal(value, head_before[key])]
    assert "classifier.weight" in changed and "fuse.weight" in changed, f"the head must learn; changed: {changed}"


def test_freeze_gives_the_optimizer_only_the_head(pretrained_encoder):
    model = finetuned(pretrained_encoder, "freeze")
    optimizer = one_training_step(model)
    optimized = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    assert optimized == {id(parameter) for parameter in model.net.head.parameters()}
    assert all(parameter.grad is None for parameter in model.net.encoder.parameters()), "a frozen encoder got gradients"


def test_frozen_encoder_stays_in_eval_mode_when_the_model_trains(pretrained_encoder):
    model = finetuned(pretrained_encoder, "freeze")
    model.train()
    assert model.net.head.training
    assert not any(module.training for module in model.net.encoder.modules()), "dropout and stochastic depth must stay off"
    model.net.encoder.unfreeze()
    assert model.net.encoder.training and all(parameter.requires_grad for parameter in model.net.encoder.parameters())


def test_finetune_refuses_an_encoder_of_another_variant(pretrained_encoder):
    args = train_segformer.parse_args(["--finetune", str(pretrained_encoder), "--segformer-variant", "b1"])
    with pytest.raises(SystemExit, match="--finetune: .*shape"):
        prepare_transfer(DeepSegmenter(SegFormer.from_variant("b1", 3, small_stem=True)), args, announce=False)


def test_finetune_refuses_a_file_without_the_whole_encoder(pretrained_encoder, tmp_path):
    partial = torch.load(pretrained_encoder, weights_only=True)
    partial.pop(next(iter(partial)))
    torch.save(partial, tmp_path / "partial.pt")
    args = train_segformer.parse_args(["--finetune", str(tmp_path / "partial.pt")])
    with pytest.raises(SystemExit, match="lacks 1 of the weights"):
        prepare_transfer(segformer(3), args, announce=False)


def test_freeze_without_pretrained_weights_is_refused():
    from dlvc.experiment import resolve

    with pytest.raises(SystemExit, match="random initialisation"):
        resolve(train_segformer.parse_args(["--strategy", "freeze"]))


def test_freeze_needs_an_encoder_that_can_be_frozen(tmp_path):
    from dlvc.models.unet import UNet

    path = DeepSegmenter(UNet(3, base_channels=4, depth=2)).save(tmp_path)
    args = train_segformer.parse_args(["--model", "unet", "--finetune", str(path), "--strategy", "freeze"])
    with pytest.raises(SystemExit, match="cannot be frozen"):
        prepare_transfer(DeepSegmenter(UNet(3, base_channels=4, depth=2)), args, announce=False)


def test_pspnet_encoder_freezes_the_same_way(tmp_path):
    model = DeepSegmenter(PSPNet(3, arch="resnet18"))
    args = train_segformer.parse_args(["--model", "pspnet", "--pretrained-backbone", "--strategy", "freeze"])
    prepare_transfer(model, args, announce=False)
    model.train()
    assert not model.net.encoder.training and not any(parameter.requires_grad for parameter in model.net.encoder.parameters())


@pytest.mark.slow
def test_pretrain_then_finetune_from_the_command_line(tmp_path):
    pretrain, finetune = tmp_path / "pretrain", tmp_path / "freeze"
    run_script("train_segformer.py", "--dataset", "synthetic-city", *TINY, "--epochs", "1", "--pretrain", "--out", pretrain)
    encoder = pretrain / "model_encoder.pt"
    best = torch.load(pretrain / "model_best.pt", weights_only=True)
    saved = torch.load(encoder, weights_only=True)
    assert saved and saved.keys() == {key for key in best if key.startswith("encoder.")}, "--pretrain must save exactly the encoder"
    assert all(torch.equal(value, best[key]) for key, value in saved.items()), "--pretrain must save the best model's encoder"

    printed = run_script("train_segformer.py", "--dataset", "synthetic-pets", *TINY, "--epochs", "2",
                         "--finetune", encoder, "--strategy", "freeze", "--out", finetune).stdout  # fmt: skip
    assert "loaded 192 encoder tensors" in printed, printed
    last = torch.load(finetune / "model_last.pt", weights_only=True)
    assert all(torch.equal(last[key], value) for key, value in saved.items()), "two epochs with --strategy freeze changed the encoder"

    changed = run_script("train_segformer.py", "--dataset", "synthetic-pets", *TINY, "--epochs", "3",
                         "--finetune", encoder, "--strategy", "init", "--resume", finetune, expect_success=False)  # fmt: skip
    assert changed.returncode != 0 and "'strategy' was 'freeze'" in changed.stderr, changed.stderr[-2000:]


@pytest.mark.slow
def test_compare_finetuning_writes_one_plot_of_four_runs_and_reuses_finished_runs(tmp_path):
    arguments = ["compare_finetuning.py", "--out", tmp_path, "--epochs", "1", "--train-samples", "8", "--val-samples", "4",
                 "--batch-size", "4", "--image-size", "32", "--workers", "0", "--device", "cpu", "--no-progress"]  # fmt: skip
    run_script(*arguments)
    assert (tmp_path / "comparison.png").stat().st_size > 0
    with open(tmp_path / "comparison.csv") as file:
        rows = list(csv.DictReader(file))
    runs = sorted({row["run"] for row in rows})
    assert runs == ["freeze (lr 0.001)", "init (lr 0.001)", "init-low-lr (lr 0.0001)", "scratch (lr 0.001)"], runs
    assert [row["epoch"] for row in rows] == ["1"] * 4, "each run must have one row per epoch"
    encoder = torch.load(tmp_path / "pretrain" / "model_encoder.pt", weights_only=True)
    frozen = torch.load(tmp_path / "freeze" / "model_last.pt", weights_only=True)
    assert all(torch.equal(frozen[key], value) for key, value in encoder.items()), "the freeze run changed the encoder"

    before = (tmp_path / "scratch" / "model_last.pt").stat().st_mtime_ns
    printed = run_script(*arguments).stdout
    assert "finished (epoch 1 of 1)" in printed and (tmp_path / "scratch" / "model_last.pt").stat().st_mtime_ns == before


def test_compare_finetuning_refuses_flags_it_sets_per_run():
    with pytest.raises(SystemExit):
        compare_finetuning.parse_args(["--strategy", "freeze"])
