"""Kit tests of dlvc.metrics: agreement with torchmetrics, input checks, dtypes, distributed merging.

The hand-computed cases live in ``tests/public/test_metrics_public.py``.
"""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dlvc.constants import IGNORE_INDEX
from dlvc.datasets.common import SegClass
from dlvc.metrics import SegMetrics, per_image_iou, per_image_recall

NUM_CLASSES = 5
BATCH_SHAPE = (3, 16, 20)  # (B, H, W)


def random_batches(count: int, seed: int = 0, ignored: float = 0.2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` (logits (B, C, H, W), target (B, H, W)) pairs; a share ``ignored`` of the target is 255.

    Each target holds every class, so no class is absent from the evaluation.
    """
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        logits = torch.randn(BATCH_SHAPE[0], NUM_CLASSES, *BATCH_SHAPE[1:], generator=generator)
        target = torch.randint(0, NUM_CLASSES, BATCH_SHAPE, generator=generator)
        target[torch.rand(BATCH_SHAPE, generator=generator) < ignored] = IGNORE_INDEX
        target[0, 0, :NUM_CLASSES] = torch.arange(NUM_CLASSES)
        batches.append((logits, target))
    return batches


def confusion_matrix_of(batches) -> torch.Tensor:
    metrics = SegMetrics(range(NUM_CLASSES))
    for prediction, target in batches:
        metrics.update(prediction, target)
    return metrics.confusion_matrix


def test_miou_agrees_with_torchmetrics_over_several_updates():
    from torchmetrics.classification import MulticlassJaccardIndex  # imported here: slow, and the spawned processes need none

    metrics = SegMetrics(range(NUM_CLASSES))
    jaccard = MulticlassJaccardIndex(num_classes=NUM_CLASSES, average="macro", ignore_index=IGNORE_INDEX)
    for logits, target in random_batches(4):
        metrics.update(logits, target)
        jaccard.update(logits, target)
    assert metrics.mIoU() == pytest.approx(jaccard.compute().item(), abs=1e-6), "mIoU differs from torchmetrics' macro Jaccard index"


def test_per_class_iou_agrees_with_torchmetrics():
    from torchmetrics.classification import MulticlassJaccardIndex

    metrics = SegMetrics(range(NUM_CLASSES))
    jaccard = MulticlassJaccardIndex(num_classes=NUM_CLASSES, average="none", ignore_index=IGNORE_INDEX)
    for logits, target in random_batches(3, seed=1):
        labels = logits.argmax(dim=1)  # (B, C, H, W) -> (B, H, W)
        metrics.update(labels, target)
        jaccard.update(labels, target)
    torch.testing.assert_close(metrics.iou(), jaccard.compute().to(torch.float64), atol=1e-6, rtol=0)


def test_uint8_inputs_count_like_int64_inputs():
    batches = random_batches(2, seed=2)
    as_int64 = [(logits.argmax(dim=1), target) for logits, target in batches]
    as_uint8 = [(labels.to(torch.uint8), target.to(torch.uint8)) for labels, target in as_int64]
    assert torch.equal(confusion_matrix_of(as_uint8), confusion_matrix_of(as_int64)), "uint8 labels should give the int64 counts"


def test_logits_that_require_grad_are_counted_without_autograd():
    logits, target = random_batches(1, seed=3)[0]
    metrics = SegMetrics(range(NUM_CLASSES))
    metrics.update(logits.requires_grad_(), target)
    assert not metrics.confusion_matrix.requires_grad, "the confusion matrix must not be part of an autograd graph"
    assert torch.equal(metrics.confusion_matrix, confusion_matrix_of([(logits.detach(), target)])), "grad-tracking logits should count like plain ones"


def test_update_leaves_its_inputs_unchanged():
    logits, target = random_batches(1, seed=9)[0]
    for labels in (logits.argmax(dim=1), logits.argmax(dim=1).to(torch.uint8)):
        for expected in (target, target.to(torch.uint8), target.to(torch.int16)):
            labels_before, target_before = labels.clone(), expected.clone()
            SegMetrics(range(NUM_CLASSES)).update(labels, expected)
            assert torch.equal(labels, labels_before), f"update() changed a {labels.dtype} prediction in place"
            assert torch.equal(expected, target_before), f"update() changed a {expected.dtype} target in place"


def test_another_ignore_index_is_honoured():
    logits, target = random_batches(1, seed=4)[0]
    relabelled = target.masked_fill(target == IGNORE_INDEX, 100)
    metrics = SegMetrics(range(NUM_CLASSES), ignore_index=100)
    metrics.update(logits, relabelled)
    assert torch.equal(metrics.confusion_matrix, confusion_matrix_of([(logits, target)])), "ignore_index=100 should skip the 100 pixels"


def test_many_classes_count_correctly():
    """200 classes need more bins than a compact int16 pair index holds."""
    num_classes = 200
    generator = torch.Generator().manual_seed(5)
    prediction = torch.randint(0, num_classes, (2, 30, 30), generator=generator)
    target = torch.randint(0, num_classes, (2, 30, 30), generator=generator)
    metrics = SegMetrics(range(num_classes))
    metrics.update(prediction, target)
    expected = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    expected.index_put_((target.flatten(), prediction.flatten()), torch.ones(target.numel(), dtype=torch.int64), accumulate=True)
    assert torch.equal(metrics.confusion_matrix, expected), "counts with 200 classes differ from a direct count"


def test_str_names_every_class_and_the_miou():
    classes = [SegClass("road", 0, (128, 64, 128)), SegClass("sidewalk", 1, (244, 35, 232)), SegClass("sky", 2, (70, 130, 180))]
    metrics = SegMetrics(classes)
    metrics.update(torch.tensor([[[0, 1, 1]]]), torch.tensor([[[0, 1, 0]]]))
    text = str(metrics)
    for name in ("mIoU", "road", "sidewalk", "sky", "absent", "50.00"):
        assert name in text, f"str(metrics) should mention {name!r}; got:\n{text}"


def test_all_reduce_without_a_process_group_changes_nothing():
    metrics = SegMetrics(range(NUM_CLASSES))
    for logits, target in random_batches(1, seed=6):
        metrics.update(logits, target)
    before = metrics.confusion_matrix.clone()
    metrics.all_reduce()
    assert torch.equal(metrics.confusion_matrix, before), "all_reduce() outside a distributed run should be a no-op"


@pytest.mark.parametrize(
    ("prediction", "target", "argument", "words"),
    [
        ([[[0, 1]]], torch.tensor([[[0, 1]]]), "prediction", "list"),
        (torch.tensor([[[True, False]]]), torch.tensor([[[0, 1]]]), "prediction", "torch.bool"),
        (torch.tensor([[[0, 1]]]), torch.tensor([[[0.0, 1.0]]]), "target", "torch.float32"),
        (torch.tensor([[[0, 1]]]), None, "target", "NoneType"),
    ],
)
def test_wrong_types_raise_type_error_naming_the_argument(prediction, target, argument, words):
    with pytest.raises(TypeError, match=rf"^{argument}: expected .*{words}"):
        SegMetrics(range(NUM_CLASSES)).update(prediction, target)


@pytest.mark.parametrize(
    ("prediction", "target", "argument", "words"),
    [
        (torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64), "prediction", r"\(B, 5, H, W\).*\(1, 3, 2, 2\)"),
        (torch.zeros(1, 2, 2, 2, dtype=torch.int64), torch.zeros(1, 2, 2, dtype=torch.int64), "prediction", r"\(B, H, W\).*\(1, 2, 2, 2\)"),
        (torch.zeros(1, 2, 2, dtype=torch.int64), torch.zeros(1, 2, 3, dtype=torch.int64), "target", r"\(1, 2, 2\).*\(1, 2, 3\)"),
        (torch.zeros(1, 2, 2, dtype=torch.int64), torch.zeros(1, 2, 2, 2, dtype=torch.int64), "target", r"\(1, 2, 2, 2\)"),
    ],
)
def test_wrong_shapes_raise_value_error_naming_the_argument(prediction, target, argument, words):
    with pytest.raises(ValueError, match=rf"^{argument}: expected .*{words}"):
        SegMetrics(range(NUM_CLASSES)).update(prediction, target)


@pytest.mark.parametrize(
    ("prediction", "target", "argument", "value"),
    [
        (torch.tensor([[[0, 5]]]), torch.tensor([[[0, 1]]]), "prediction", 5),
        (torch.tensor([[[0, -1]]]), torch.tensor([[[0, 1]]]), "prediction", -1),
        (torch.tensor([[[0, 1]]]), torch.tensor([[[0, 200]]]), "target", 200),
        (torch.tensor([[[0, 1]]]), torch.tensor([[[-3, IGNORE_INDEX]]]), "target", -3),
        (torch.tensor([[[0, 1]]], dtype=torch.uint8), torch.tensor([[[9, IGNORE_INDEX]]], dtype=torch.uint8), "target", 9),
        (torch.tensor([[[0, 1]]]), torch.tensor([[[300, IGNORE_INDEX]]]), "target", 300),
    ],
)
def test_labels_out_of_range_raise_value_error_naming_the_argument_and_value(prediction, target, argument, value):
    with pytest.raises(ValueError, match=rf"^{argument}: expected labels in \[0, 5\).*got values \[{value}\]"):
        SegMetrics(range(NUM_CLASSES)).update(prediction, target)


def test_inputs_on_different_devices_raise_value_error_naming_target():
    with pytest.raises(ValueError, match=r"^target: expected a tensor on the prediction's device meta, got one on cpu"):
        SegMetrics(range(NUM_CLASSES)).update(torch.zeros(1, 2, 2, dtype=torch.int64, device="meta"), torch.zeros(1, 2, 2, dtype=torch.int64))


@pytest.mark.parametrize("ignore_index", [2, -1])
def test_constructor_rejects_an_ignore_index_below_the_number_of_classes(ignore_index):
    with pytest.raises(ValueError, match=rf"^ignore_index: expected a label past the classes, at least 5, got {ignore_index}"):
        SegMetrics(range(NUM_CLASSES), ignore_index=ignore_index)


def test_per_image_micro_recall_is_each_images_pixel_accuracy():
    logits, target = random_batches(1, seed=7)[0]
    recalls = per_image_recall(logits, target, NUM_CLASSES, average="micro", reduce="none")
    for index, recall in enumerate(recalls.tolist()):
        metrics = SegMetrics(range(NUM_CLASSES))
        metrics.update(logits[index : index + 1], target[index : index + 1])
        assert recall == pytest.approx(metrics.pixel_accuracy()), f"image {index}: micro recall should equal its pixel accuracy"


def test_per_image_macro_iou_averages_the_classes_of_the_target():
    """One image whose target holds only classes 0 and 1 while class 2 is also predicted."""
    prediction = torch.tensor([[[0, 2, 1, 1]]])
    target = torch.tensor([[[0, 0, 1, 1]]])
    # IoU 0 = 1 / 2, IoU 1 = 2 / 2; class 2 (IoU 0) is not in the target, so it is not averaged.
    assert per_image_iou(prediction, target, 3, average="macro") == pytest.approx(0.75), "macro IoU averages the target's classes only"


def test_per_image_image_without_labelled_pixels_is_nan_and_left_out_of_the_mean():
    prediction = torch.tensor([[[0, 1]], [[0, 1]]])
    target = torch.tensor([[[0, 1]], [[IGNORE_INDEX, IGNORE_INDEX]]])
    scores = per_image_iou(prediction, target, 2, reduce="none")
    assert scores[0] == 1.0 and scores[1].isnan(), "an image with no labelled pixel should score NaN"
    assert per_image_iou(prediction, target, 2, reduce="mean") == 1.0, "the mean should skip images without labelled pixels"


@pytest.mark.parametrize(("keyword", "value"), [("average", "weighted"), ("reduce", "max"), ("num_classes", 0), ("ignore_index", 1)])
def test_per_image_rejects_bad_options(keyword, value):
    arguments = {"num_classes": 2, "average": "macro", "reduce": "mean"} | {keyword: value}
    with pytest.raises(ValueError, match=rf"^{keyword}: expected"):
        per_image_iou(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 1]]]), **arguments)


def _update_half_and_all_reduce(rank: int, world_size: int, folder: str, batches) -> None:
    """One process of the distributed test: count every other batch, merge, save the matrix."""
    dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=rank, world_size=world_size)
    try:
        metrics = SegMetrics(range(NUM_CLASSES))
        for logits, target in batches[rank::world_size]:
            metrics.update(logits, target)
        metrics.all_reduce()
        torch.save(metrics.confusion_matrix, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_merges_two_processes_into_the_single_process_result(tmp_path):
    batches = random_batches(4, seed=8)
    mp.spawn(_update_half_and_all_reduce, args=(2, str(tmp_path), batches), nprocs=2, join=True)
    expected = confusion_matrix_of(batches)
    for rank in range(2):
        merged = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.equal(merged, expected), f"after all_reduce() process {rank} should hold the total of all batches"


def test_an_ignore_label_above_255_is_skipped_and_labels_below_it_are_checked():
    metric = SegMetrics(range(NUM_CLASSES), ignore_index=300)
    metric.update(torch.tensor([[[0, 1, 2]]]), torch.tensor([[[0, 1, 300]]]))
    assert metric.confusion_matrix.sum() == 2, "pixels labelled 300 must be skipped"
    with pytest.raises(ValueError, match=r"^target: .*got values \[299\]"):
        metric.update(torch.tensor([[[0, 1]]]), torch.tensor([[[299, 300]]]))
