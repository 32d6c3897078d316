"""The Pascal VOC 2012 segmentation dataset: background and 20 object classes.

Dataset: Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge",
IJCV 2010; http://host.robots.ox.ac.uk/pascal/VOC/voc2012/. File lists, folder
checks and the download come from ``torchvision.datasets.VOCSegmentation``
(year 2012); this class reads the files itself so that it returns tensors and
names any file it cannot read.

Masks are palette PNGs: the stored palette indices are the class ids (0
background, 1 aeroplane ... 20 tvmonitor) and 255 marks the band around each
object outline that VOC leaves out of evaluation (``IGNORE_INDEX``).
"""

import numpy as np
from torchvision.datasets import VOCSegmentation as TorchvisionVOCSegmentation

from .common import FileSegmentationDataset, PairedTransform, SegClass, missing_dataset_error

VOC_CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

SPLITS = ("train", "val")


def voc_palette() -> np.ndarray:
    """The VOC colour map, uint8 ``(256, 3)``: colour of each palette index in the masks.

    Index ``i`` spreads its bits over the channels: bit 0 to red, bit 1 to green,
    bit 2 to blue, then the next three bits one place lower, and so on.
    """
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        code = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                palette[index, channel] |= ((code >> channel) & 1) << shift
            code >>= 3
    return palette


VOC_CLASSES = tuple(
    SegClass(name, class_id, tuple(int(value) for value in voc_palette()[class_id]))
    for class_id, name in enumerate(VOC_CLASS_NAMES)
)

LAYOUT = """\
  <root>/VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg ...
  <root>/VOCdevkit/VOC2012/SegmentationClass/2007_000032.png ...   (palette PNG: 0..20, 255 boundary)
  <root>/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt        (one image id per line)
  <root>/VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"""

DOWNLOAD = (
    "Download VOCtrainval_11-May-2012.tar from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ "
    "and unpack it into <root>, or let the kit do it: download=True (train.py --download)."
)


class VOCSegmentation(FileSegmentationDataset):
    """Pascal VOC 2012 images with their 21-class segmentation masks.

    Args:
        root: folder holding ``VOCdevkit/VOC2012/`` (see ``LAYOUT``).
        split: ``"train"`` or ``"val"``, the official segmentation lists.
        transforms: paired transform ``(Image, Mask) -> (Image, Mask)``, or None.
        download: fetch and unpack the dataset into ``root`` when it is missing.

    Items are float32 ``(3, H, W)`` ImageNet-normalised images and int64 ``(H, W)``
    masks with class ids 0..20 and 255 (ignored).
    """

    classes_seg = VOC_CLASSES
    num_classes = len(VOC_CLASSES)

    def __init__(self, root, split: str = "train", transforms: PairedTransform | None = None, download: bool = False):
        super().__init__(root, split, transforms, SPLITS)
        split_file = self.root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not download and not split_file.is_file():
            raise missing_dataset_error("Pascal VOC 2012", root, LAYOUT, DOWNLOAD)
        source = TorchvisionVOCSegmentation(root, year="2012", image_set=split, download=download)
        self.images = list(source.images)
        self.masks = list(source.masks)
