"""Graded: Assignment 1, part 3, the training loop (TODOs 1.7, 1.8 and 1.9 in dlvc/trainer.py).

The student's ``ImgSemSegTrainer`` trains a tiny seeded network (two convolutions
and a BatchNorm) on a random task in a sandboxed worker, and the reference trainer
does the same here. The tests compare what the two runs return and leave behind:
the history, the learning rate of each epoch, the mode the model ran in at each
forward pass, the weights in ``model_best.pt`` and the final weights.

The run is set up so that each mistake shows: the validation set's last batch is
smaller than the others (a mean of batch means differs from the mean per sample);
validation runs after epochs 2 and 3 (``val_frequency=2``, 3 epochs); and the
learning rate turns negative after epoch 2 (``MultiStepLR`` with ``gamma=-1``), so
that training climbs the loss from then on and validation scores best after epoch
2, not at the last validation. The trainer is given a stand-in metric (pixel
accuracy behind SegMetrics' interface), so that a wrong metric costs only the
metric's points.
"""

from dataclasses import dataclass

import pytest
import torch
from torch.utils.data import TensorDataset

from dlvc.constants import IGNORE_INDEX
from dlvc.course.grader.expect import expect_equal, expect_number, expect_tensor, fail
from dlvc.course.grader.graded import derived_seed
from dlvc.course.grader.sandbox import WorkerError
from dlvc.course.sandboxed.probes import CallRecorder, PixelAccuracyMetric, tiny_segmentation_net
from dlvc.trainer import ImgSemSegTrainer

NUM_EPOCHS = 3
VAL_FREQUENCY = 2
BATCH_SIZE = 8
TRAIN_SAMPLES, VAL_SAMPLES = 32, 20
LEARNING_RATE = 0.2
MILESTONE = 2
"""After this many epochs the learning rate is multiplied by -1."""
LOSS_TOLERANCE = 1e-4
WEIGHT_TOLERANCE = 1e-4
RUN_KEY = "tests/hidden/assignment1/test_trainer.py::the student's training run"


@dataclass
class Task:
    """Everything both runs start from, drawn from the grading seed."""

    seed: int
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    initial_weights: dict


@dataclass
class Run:
    """What a training run returned and left behind, or why the student's did not finish."""

    history: list | None = None
    records: list | None = None
    best_weights: dict | None = None
    final_weights: dict | None = None
    error: WorkerError | None = None
    weights_after_epoch: list | None = None
    """The reference run only: the model's weights after each epoch."""

    def checked(self) -> "Run":
        """This run, or the student's error as the test's failure."""
        if self.error is not None:
            raise self.error
        return self


def make_task(grading_seed: int) -> Task:
    """Noise images; a pixel is class 1 where its first two channels sum above a random threshold (swapped in the last validation batch)."""
    generator = torch.Generator().manual_seed(derived_seed(grading_seed, RUN_KEY))
    threshold = float(torch.randn(1, generator=generator)) * 0.3

    def samples(count: int):
        images = torch.randn(count, 3, 8, 8, generator=generator)
        targets = (images[:, 0] + images[:, 1] > threshold).long()
        targets[torch.rand(targets.shape, generator=generator) < 0.05] = IGNORE_INDEX
        return images, targets

    train = samples(TRAIN_SAMPLES)
    val_images, val_targets = samples(VAL_SAMPLES)
    # The last, smaller validation batch gets the other class, so that its mean loss is
    # far from the other batches' and a mean of batch means cannot pass for the mean per sample.
    last_batch = val_targets[VAL_SAMPLES - VAL_SAMPLES % BATCH_SIZE :]
    labelled = last_batch != IGNORE_INDEX
    last_batch[labelled] = 1 - last_batch[labelled]
    torch.manual_seed(derived_seed(grading_seed, RUN_KEY + " weights"))
    initial = {name: tensor.clone() for name, tensor in tiny_segmentation_net().state_dict().items()}
    return Task(derived_seed(grading_seed, RUN_KEY + " shuffle") % 2**31, train, (val_images, val_targets), initial)


class SnapshotTrainer(ImgSemSegTrainer):
    """The reference trainer, keeping a copy of the weights after each epoch (to tell which one a student saved)."""

    def _end_epoch(self, row: dict) -> None:
        self.snapshots.append({name: tensor.clone() for name, tensor in self.segmenter.state_dict().items()})
        super()._end_epoch(row)


def reference_run(task: Task, folder) -> Run:
    """The reference trainer on the task, in this process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = tiny_segmentation_net()
        net.load_state_dict(task.initial_weights)
        model = CallRecorder(net)
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=0.9)
        trainer = SnapshotTrainer(
            model,
            optimizer,
            torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX),
            torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[MILESTONE], gamma=-1.0),
            PixelAccuracyMetric(2),
            PixelAccuracyMetric(2),
            TensorDataset(*task.train),
            TensorDataset(*task.val),
            torch.device("cpu"),
            NUM_EPOCHS,
            folder,
            batch_size=BATCH_SIZE,
            val_frequency=VAL_FREQUENCY,
            seed=task.seed,
            progress=False,
            num_preview=1,
        )
        trainer.snapshots = []
        history = trainer.train()
        best = torch.load(folder / "model_best.pt", weights_only=True)
        return Run(history, model.records(), best, model.state_dict(), weights_after_epoch=trainer.snapshots)
    finally:
        torch.set_num_threads(threads)


def student_run(sessions, task: Task) -> Run:
    """The student's trainer on the task, in a sandboxed worker; a failure is kept, not raised."""
    try:
        with sessions.open(RUN_KEY) as worker:
            net = worker.call("$probe:tiny_segmentation_net")
            net.call("load_state_dict", task.initial_weights)
            model = worker.new("$probe:CallRecorder", net)
            optimizer = worker.new("torch.optim:SGD", model.call("parameters"), lr=LEARNING_RATE, momentum=0.9)
            trainer = worker.new(
                "dlvc.trainer:ImgSemSegTrainer",
                model,
                optimizer,
                worker.new("torch.nn:CrossEntropyLoss", ignore_index=IGNORE_INDEX),
                worker.new("torch.optim.lr_scheduler:MultiStepLR", optimizer, milestones=[MILESTONE], gamma=-1.0),
                worker.new("$probe:PixelAccuracyMetric", 2),
                worker.new("$probe:PixelAccuracyMetric", 2),
                worker.new("torch.utils.data:TensorDataset", *task.train),
                worker.new("torch.utils.data:TensorDataset", *task.val),
                "cpu",
                NUM_EPOCHS,
                worker.scratch("run"),
                batch_size=BATCH_SIZE,
                val_frequency=VAL_FREQUENCY,
                seed=task.seed,
                progress=False,
                num_preview=1,
            )
            history = trainer.call("train")
            best = worker.call("torch:load", worker.scratch("run/model_best.pt"), weights_only=True)
            return Run(history, model.call("records"), best, model.call("state_dict"))
    except WorkerError as error:
        return Run(error=error)


@pytest.fixture(scope="module")
def runs(sessions, grading_seed, tmp_path_factory) -> tuple[Run, Run]:
    """(the student's run, the reference's run), once for all the tests of this file."""
    task = make_task(grading_seed)
    return student_run(sessions, task), reference_run(task, tmp_path_factory.mktemp("reference-run"))


def rows(run: Run) -> list[dict]:
    history = run.checked().history
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        fail(f"train() should return the history, a list with one dict per epoch; got {type(history).__name__}")
    return history


def column(run: Run, key: str) -> list:
    history = rows(run)
    for row in history:
        if key not in row:
            fail(f"train()'s history: the row of epoch {row.get('epoch', '?')} has no {key!r} (it holds {sorted(map(str, row))})")
    return [row[key] for row in history]


def validated_epochs(run: Run) -> list[int]:
    return [epoch for epoch, value in zip(column(run, "epoch"), column(run, "val_miou")) if value is not None]


SETUP = (
    f"ImgSemSegTrainer on a 2-class task ({TRAIN_SAMPLES} training and {VAL_SAMPLES} validation samples, "
    f"batch_size={BATCH_SIZE}, {NUM_EPOCHS} epochs, val_frequency={VAL_FREQUENCY}, an epoch-wise scheduler), then train()"
)


@pytest.mark.graded(part="trainer", points=0.5)
def test_train_returns_one_history_row_per_epoch(runs):
    """train() returns the history: one row per epoch, epochs counted from 1"""
    student, _ = runs
    expect_equal(column(student, "epoch"), list(range(1, NUM_EPOCHS + 1)), f"{SETUP}: the epochs of the history")


def expect_column(runs, key: str, tolerance: float, relative: float, note: str = "") -> None:
    """The student's history has the reference's ``key`` in every epoch the reference filled it (None elsewhere is not checked)."""
    student, reference = runs
    for epoch, got, expected in zip(column(reference, "epoch"), column(student, key), column(reference, key)):
        if expected is None:
            continue
        what = f"{SETUP}: {key} of epoch {epoch}{note}"
        if got is None:
            fail(f"{what}: expected {expected:.6g}, got None")
        expect_number(got, expected, what, atol=tolerance, rtol=relative)


@pytest.mark.graded(part="trainer", points=1)
def test_training_loss_is_the_mean_per_sample(runs):
    """Each epoch's train_loss is the mean loss per training sample"""
    expect_column(runs, "train_loss", LOSS_TOLERANCE, LOSS_TOLERANCE)


@pytest.mark.graded(part="trainer", points=0.5)
def test_training_metric_sees_every_training_batch(runs):
    """Each epoch's train_miou is the training metric over all of the epoch's batches"""
    expect_column(runs, "train_miou", LOSS_TOLERANCE, 0)


@pytest.mark.graded(part="trainer", points=1)
def test_validation_runs_every_val_frequency_epochs_and_after_the_last(runs):
    """Validation runs after every val_frequency-th epoch and after the last one, and only then"""
    student, reference = runs
    expected = validated_epochs(reference)
    expect_equal(validated_epochs(student), expected, f"{SETUP}: the epochs whose history row has a val_miou")


@pytest.mark.graded(part="trainer", points=1)
def test_validation_loss_is_the_mean_per_sample(runs):
    """Each validation's val_loss is the mean loss per validation sample (the last batch is smaller)"""
    expect_column(runs, "val_loss", LOSS_TOLERANCE, LOSS_TOLERANCE, note=" (validation batches of 8, 8 and 4 samples)")


@pytest.mark.graded(part="trainer", points=0.5)
def test_validation_metric_sees_every_validation_batch(runs):
    """Each validation's val_miou is the validation metric over all validation batches"""
    expect_column(runs, "val_miou", LOSS_TOLERANCE, 0)


@pytest.mark.graded(part="trainer", points=1)
def test_validation_runs_in_eval_mode_without_gradients(runs):
    """Training forward passes run in train mode with gradients; validation ones in eval mode under inference_mode"""
    student, reference = runs
    got, expected = student.checked().records, reference.records
    names = ("model.training", "torch.is_grad_enabled()", "torch.is_inference_mode_enabled()", "the batch size")
    for index, (seen, wanted) in enumerate(zip(got, expected)):
        if list(seen) != list(wanted):
            phase = "validation" if not wanted[0] else "training"
            differing = [f"{name} was {a}, expected {b}" for name, a, b in zip(names, seen, wanted) if a != b]
            fail(f"{SETUP}: forward pass {index + 1} (during {phase}): {'; '.join(differing)}")
    expect_equal(len(got), len(expected), f"{SETUP}: the number of forward passes of the model")


@pytest.mark.graded(part="trainer", points=1)
def test_scheduler_steps_once_per_epoch(runs):
    """The learning-rate scheduler steps once per epoch, after the training epoch"""
    expect_column(runs, "lr", 1e-12, 1e-9, note=f" (the milestone is epoch {MILESTONE})")


@pytest.mark.graded(part="trainer", points=1)
def test_best_model_holds_the_weights_of_the_best_validation(runs):
    """model_best.pt holds the weights after the epoch with the best validation mIoU"""
    student, reference = runs
    student.checked()
    best_epoch = max(validated_epochs(reference), key=lambda epoch: reference.history[epoch - 1]["val_miou"])
    what = f"{SETUP}: the weights in model_best.pt (validation scored best after epoch {best_epoch})"
    for epoch, weights in enumerate(reference.weights_after_epoch, start=1):
        if epoch != best_epoch and _same_weights(student.best_weights, weights):
            fail(f"{what} are the weights after epoch {epoch}: save the model only when the validation mIoU beats the best so far")
    _expect_weights(student.best_weights, reference.best_weights, what)


@pytest.mark.graded(part="trainer", points=0.5)
def test_final_weights_equal_the_reference(runs):
    """After train(), the model's weights and BatchNorm statistics equal the reference run's"""
    student, reference = runs
    _expect_weights(student.checked().final_weights, reference.final_weights, f"{SETUP}: the model's state_dict() after train()")


def _same_weights(got, expected: dict) -> bool:
    return (
        isinstance(got, dict)
        and set(got) == set(expected)
        and all(
            isinstance(got[name], torch.Tensor)
            and got[name].shape == tensor.shape
            and torch.allclose(got[name].double(), tensor.double(), atol=WEIGHT_TOLERANCE, rtol=WEIGHT_TOLERANCE)
            for name, tensor in expected.items()
        )
    )


def _expect_weights(got, expected: dict, what: str) -> None:
    if not isinstance(got, dict):
        fail(f"{what}: expected a state dict, got {type(got).__name__}")
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or unexpected:
        fail(f"{what}: the keys differ (missing {missing}, unexpected {unexpected})")
    for name, tensor in expected.items():
        expect_tensor(got[name], tensor, f"{what}, {name}", atol=WEIGHT_TOLERANCE, rtol=WEIGHT_TOLERANCE)
