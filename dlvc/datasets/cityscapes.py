"""The Cityscapes dataset (fine annotations) with its 19 train-id classes.

Dataset: Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene
Understanding", CVPR 2016; https://www.cityscapes-dataset.com/. File lists and
folder checks come from ``torchvision.datasets.Cityscapes``, pointed at the
``*_gtFine_labelTrainIds.png`` masks that cityscapesScripts' ``createTrainIdLabelImgs``
writes: 19 train ids (0 road ... 18 bicycle) and 255 for every pixel left out of
evaluation (ego vehicle, rectification border, void classes). Masks are returned
as they are on disk; 255 is ``IGNORE_INDEX``.

Cityscapes has no automatic download: it needs a login on the website.
"""

from torchvision.datasets import Cityscapes

from .common import FileSegmentationDataset, PairedTransform, SegClass, missing_dataset_error

CITYSCAPES_CLASSES = tuple(
    SegClass(label.name, label.train_id, label.color)
    for label in sorted(Cityscapes.classes, key=lambda label: label.train_id)
    if 0 <= label.train_id < 255
)
"""The 19 evaluated classes with their official names and colours, indexed by train id."""

SPLITS = ("train", "val")

LAYOUT = """\
  <root>/leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png ...
  <root>/gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png ...
  <root>/leftImg8bit/val/frankfurt/...   <root>/gtFine/val/frankfurt/...
  (the *_labelTrainIds.png masks are written by cityscapesScripts' createTrainIdLabelImgs)"""

DOWNLOAD = (
    "Cityscapes has no automatic download (download=True cannot fetch it): log in at "
    "https://www.cityscapes-dataset.com/, download leftImg8bit_trainvaltest.zip and "
    "gtFine_trainvaltest.zip, unpack both into <root> and run createTrainIdLabelImgs."
)


class _TrainIdCityscapes(Cityscapes):
    """torchvision's Cityscapes whose ``semantic`` target is the train-id mask."""

    def _get_target_suffix(self, mode: str, target_type: str) -> str:
        if target_type == "semantic":
            return f"{mode}_labelTrainIds.png"
        return super()._get_target_suffix(mode, target_type)


class CityscapesCustom(FileSegmentationDataset):
    """Cityscapes images with their 19-class train-id masks.

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/`` (see ``LAYOUT``).
        split: ``"train"`` or ``"val"``.
        transforms: paired transform ``(Image, Mask) -> (Image, Mask)``, or None.
        download: accepted for a uniform interface; Cityscapes cannot be downloaded
            automatically, so a missing dataset raises FileNotFoundError either way.

    Items are float32 ``(3, H, W)`` ImageNet-normalised images and int64 ``(H, W)``
    masks with train ids 0..18 and 255 (ignored). Samples are sorted by file name.
    """

    classes_seg = CITYSCAPES_CLASSES
    num_classes = len(CITYSCAPES_CLASSES)

    def __init__(self, root, split: str = "train", transforms: PairedTransform | None = None, download: bool = False):
        super().__init__(root, split, transforms, SPLITS)
        if not all((self.root / folder / split).is_dir() for folder in ("leftImg8bit", "gtFine")):
            raise missing_dataset_error("Cityscapes", root, LAYOUT, DOWNLOAD)
        source = _TrainIdCityscapes(root, split=split, mode="fine", target_type="semantic")
        # torchvision lists the folders in file-system order; sort for the same order everywhere.
        pairs = sorted(zip(source.images, (targets[0] for targets in source.targets)))
        self.images = [image for image, _ in pairs]
        self.masks = [mask for _, mask in pairs]
