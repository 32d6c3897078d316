"""ImgSemSegTrainer with the parts it is given: training, validation schedule, run folder, loaders, checkpoints and exact resume."""

import contextlib
import csv
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dlvc import loaders
from dlvc.constants import IGNORE_INDEX
from dlvc.datasets.common import SegClass
from dlvc.distributed import ProcessInfo
from dlvc.metrics import SegMetrics
from dlvc.models.segmenter import DeepSegmenter
from dlvc.run_folder import RunFolder
from dlvc.trainer import CHECKPOINT_NAME, ImgSemSegTrainer, batches_per_epoch

CLASSES = (SegClass("dark", 0, (0, 0, 0)), SegClass("bright", 1, (255, 255, 0)))


class BrightSquares(Dataset):
    """16x16 noise images with a brighter square; the square is class 1.

    With ``flip=True`` each item is flipped at random with torch's global generator,
    like an augmentation, so that resuming must restore the random state.
    """

    classes_seg = CLASSES

    def __init__(self, count: int, seed: int, flip: bool = False):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(count, 3, 16, 16, generator=generator) * 0.5
        self.masks = torch.zeros(count, 16, 16, dtype=torch.int64)
        for index in range(count):
            top, left = torch.randint(0, 9, (2,), generator=generator).tolist()
            self.masks[index, top : top + 7, left : left + 7] = 1
        self.images += 1.5 * self.masks[:, None]
        self.masks[:, 0, :] = IGNORE_INDEX
        self.flip = flip

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image, mask = self.images[index], self.masks[index]
        if self.flip and torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        return image, mask


class TinyNet(nn.Module):
    """A two-layer convolutional network with dropout, so that training draws random numbers."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(0.1))
        self.classifier = nn.Conv2d(8, 2, 1)

    def forward(self, images):
        return self.classifier(self.encoder(images))


def make_trainer(folder, num_epochs=3, val_frequency=1, seed=0, scheduler="exponential", loss_fn=None, **options):
    torch.manual_seed(seed)
    model = DeepSegmenter(TinyNet())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, amsgrad=True)
    if scheduler == "onecycle":
        lr_scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, epochs=num_epochs, steps_per_epoch=4)
        options["scheduler_interval"] = "step"
    else:
        lr_scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
    return ImgSemSegTrainer(
        model,
        optimizer,
        loss_fn or nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX),
        lr_scheduler,
        SegMetrics(CLASSES),
        SegMetrics(CLASSES),
        BrightSquares(32, seed=1, flip=True),
        BrightSquares(12, seed=2),
        torch.device("cpu"),
        num_epochs,
        folder,
        batch_size=8,
        val_frequency=val_frequency,
        seed=seed,
        progress=False,
        **options,
    )


def test_training_learns_the_easy_task(tmp_path):
    history = make_trainer(tmp_path, num_epochs=4).train()
    assert history[-1]["val_miou"] > 0.8, f"val mIoU after 4 epochs: {[row['val_miou'] for row in history]}"
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_run_folder_holds_logs_plots_and_checkpoints(tmp_path):
    make_trainer(tmp_path, num_epochs=2).train()
    for name in ("metrics.csv", "curves.png", "predictions.png", "config.json", CHECKPOINT_NAME, "model_best.pt", "model_last.pt"):
        assert (tmp_path / name).is_file(), f"the run folder lacks {name}"
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*")), "no TensorBoard events"
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert 0 <= float(rows[-1]["val_miou"]) <= 1


def test_validates_every_val_frequency_epochs_and_after_the_last(tmp_path):
    history = make_trainer(tmp_path, num_epochs=5, val_frequency=2).train()
    validated = [row["epoch"] for row in history if row["val_miou"] is not None]
    assert validated == [2, 4, 5]


def test_best_model_is_the_one_with_the_highest_val_miou(tmp_path):
    trainer = make_trainer(tmp_path, num_epochs=4)
    history = trainer.train()
    best = max(row["val_miou"] for row in history)
    assert trainer.best_miou == best
    model = DeepSegmenter(TinyNet())
    model.load(tmp_path / "model_best.pt")
    metric = SegMetrics(CLASSES)
    model.eval()
    with torch.inference_mode():
        for image, mask in BrightSquares(12, seed=2):
            metric.update(model(image[None]), mask[None])
    assert metric.mIoU() == pytest.approx(best, abs=1e-6), "model_best.pt does not reproduce the best val mIoU"


def test_last_model_holds_the_final_weights(tmp_path):
    trainer = make_trainer(tmp_path, num_epochs=2)
    trainer.train()
    saved = torch.load(tmp_path / "model_last.pt", weights_only=True)
    for key, value in trainer.segmenter.net.state_dict().items():
        assert torch.equal(saved[key], value), key


class StopAfterEpoch(Exception):
    pass


@pytest.mark.parametrize("scheduler", ["exponential", "onecycle"])
def test_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, scheduler):
    uninterrupted = make_trainer(tmp_path / "full", num_epochs=4, val_frequency=2, scheduler=scheduler)
    full_history = uninterrupted.train()

    killed = make_trainer(tmp_path / "killed", num_epochs=4, val_frequency=2, scheduler=scheduler)
    save = killed.run.save_checkpoint

    def save_then_die(trainer, epochs_done):
        save(trainer, epochs_done)
        if epochs_done == 2:
            raise StopAfterEpoch

    killed.run.save_checkpoint = save_then_die
    with pytest.raises(StopAfterEpoch):
        killed.train()
    torch.manual_seed(12345)  # a new process starts from another random state
    resumed = make_trainer(tmp_path / "killed", num_epochs=4, val_frequency=2, scheduler=scheduler, resume=tmp_path / "killed" / CHECKPOINT_NAME)
    assert resumed.start_epoch == 2
    resumed_history = resumed.train()

    for key, value in uninterrupted.segmenter.state_dict().items():
        assert torch.equal(resumed.segmenter.state_dict()[key], value), f"{key} differs after resuming"
    strip = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]  # noqa: E731
    assert strip(resumed_history) == strip(full_history)


def test_starting_over_an_existing_run_needs_overwrite(tmp_path):
    make_trainer(tmp_path, num_epochs=1).train()
    with pytest.raises(FileExistsError, match="--resume"):
        make_trainer(tmp_path, num_epochs=1)
    make_trainer(tmp_path, num_epochs=1, overwrite=True).train()


def test_non_finite_loss_stops_with_epoch_and_step(tmp_path):
    calls = []

    def loss_fn(logits, target):
        calls.append(1)
        loss = nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
        return loss * math.nan if len(calls) == 3 else loss

    with pytest.raises(FloatingPointError, match="epoch 1, step 3"):
        make_trainer(tmp_path, num_epochs=1, loss_fn=loss_fn).train()


def test_validation_runs_in_inference_mode_without_a_graph(tmp_path):
    seen = []

    def loss_fn(logits, target):
        if not torch.is_grad_enabled():
            seen.append((torch.is_inference_mode_enabled(), logits.requires_grad))
        return nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)

    make_trainer(tmp_path, num_epochs=1, loss_fn=loss_fn).train()
    assert seen, "the loss was never computed without gradients: does validation run?"
    assert all(inference and not graph for inference, graph in seen)


def test_gradient_clipping_bounds_the_step(tmp_path):
    trainer = make_trainer(tmp_path, num_epochs=1, clip_grad_norm=1e-3)
    trainer.optimizer = torch.optim.SGD(trainer.segmenter.parameters(), lr=1.0)
    trainer.lr_scheduler = torch.optim.lr_scheduler.ExponentialLR(trainer.optimizer, gamma=1.0)
    before = torch.cat([p.detach().flatten().clone() for p in trainer.segmenter.parameters()])
    images, targets = next(iter(trainer.train_loader))
    loss = trainer.loss_fn(trainer.model(images), targets)
    trainer._optimization_step(loss, epoch=0, step=0)
    after = torch.cat([p.detach().flatten() for p in trainer.segmenter.parameters()])
    assert torch.linalg.vector_norm(after - before) <= 1e-3 * (1 + 1e-4)


def test_bf16_autocast_trains_on_the_cpu(tmp_path):
    history = make_trainer(tmp_path, num_epochs=1, amp="bf16").train()
    assert math.isfinite(history[0]["train_loss"])


def test_fp16_without_cuda_is_refused(tmp_path):
    with pytest.raises(ValueError, match="amp"):
        make_trainer(tmp_path, amp="fp16")


@pytest.mark.parametrize("name, value", [("num_epochs", 0), ("val_frequency", 0)])
def test_bad_settings_name_the_argument(tmp_path, name, value):
    with pytest.raises(ValueError, match=name):
        make_trainer(tmp_path, **{name: value})


def test_resume_warns_about_changed_settings(tmp_path):
    make_trainer(tmp_path, num_epochs=1, config={"lr": 0.05}).train()
    with pytest.warns(UserWarning, match="'lr'"):
        make_trainer(tmp_path, num_epochs=2, config={"lr": 0.01}, resume=tmp_path / CHECKPOINT_NAME)


def test_resume_with_other_trained_weights_names_the_changed_setting(tmp_path, monkeypatch):
    make_trainer(tmp_path, num_epochs=1, config={"strategy": "full"}).train()
    original = torch.optim.AdamW

    def classifier_only(parameters, **options):
        return original(list(parameters)[-2:], **options)  # the classifier's weight and bias

    monkeypatch.setattr(torch.optim, "AdamW", classifier_only)
    with pytest.raises(ValueError, match=r"resume: .*'strategy' was 'full' in the resumed run, now 'freeze'"):
        make_trainer(tmp_path, num_epochs=2, config={"strategy": "freeze"}, resume=tmp_path / CHECKPOINT_NAME)


def test_only_the_writing_process_touches_the_run_folder(tmp_path):
    trainer = make_trainer(tmp_path / "rank0", num_epochs=1)
    silent = RunFolder(tmp_path / "rank1", writes=False)
    silent.open({"lr": 0.05}, first_epoch=1)
    silent.save_model(trainer.segmenter, "best")
    silent.save_checkpoint(trainer, 1)
    silent.log_epoch([{"epoch": 1, "train_loss": 1.0, "train_miou": 0.5, "val_loss": 1.0, "val_miou": 0.5, "lr": 0.05, "seconds": 1.0}], 1)
    silent.draw_predictions(trainer.segmenter, trainer.val_data, CLASSES, 1, 2, contextlib.nullcontext())
    silent.close()
    assert not (tmp_path / "rank1").exists(), "a RunFolder with writes=False wrote files"


@pytest.mark.parametrize("num_samples", [3, 8, 9, 23, 32])
def test_batches_per_epoch_matches_the_training_loader(num_samples):
    dataset = BrightSquares(num_samples, seed=0)
    loader = loaders.training_loader(dataset, batch_size=8, seed=0, num_workers=0, device=torch.device("cpu"), process=ProcessInfo())
    assert len(loader) == batches_per_epoch(num_samples, batch_size=8)


def test_an_epochs_shuffling_depends_on_the_seed_and_the_epoch_alone():
    dataset = BrightSquares(20, seed=0)

    def first_batch(seed, epoch, epochs_before=()):
        loader = loaders.training_loader(dataset, batch_size=8, seed=seed, num_workers=0, device=torch.device("cpu"), process=ProcessInfo())
        for earlier in epochs_before:
            loaders.seed_epoch(loader, seed, earlier)
            list(loader)
        loaders.seed_epoch(loader, seed, epoch)
        return next(iter(loader))[0]

    assert torch.equal(first_batch(0, 2), first_batch(0, 2, epochs_before=(0, 1))), "resuming at epoch 2 shuffles differently"
    assert not torch.equal(first_batch(0, 2), first_batch(0, 3)), "two epochs shuffle alike"


def test_validation_loader_shares_the_samples_between_processes_once_each():
    dataset = torch.utils.data.TensorDataset(torch.arange(11))
    shares = [
        torch.cat([batch for (batch,) in loaders.validation_loader(dataset, 4, num_workers=0, device=torch.device("cpu"), process=ProcessInfo(rank, rank, 3))])
        for rank in range(3)
    ]
    assert sorted(torch.cat(shares).tolist()) == list(range(11)), f"the shares {[share.tolist() for share in shares]} do not hold each sample once"


@pytest.mark.parametrize("num_samples", [3, 17, 23, 32])
def test_batches_per_epoch_matches_a_distributed_shard(num_samples):
    dataset = BrightSquares(num_samples, seed=0)
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1)
    drop_last = len(sampler) > 4
    assert len(DataLoader(dataset, batch_size=4, sampler=sampler, drop_last=drop_last)) == batches_per_epoch(num_samples, 4, world_size=2)
