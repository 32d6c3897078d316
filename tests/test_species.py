"""Pet species segmentation: the labels, the dataset on torchvision's loader, and the synthetic twin."""

import pytest
import torch

from dlvc.constants import IGNORE_INDEX
from dlvc.datasets.species import SPECIES_CLASSES, PetSpecies, species_labels
from dlvc.datasets.synthetic import SyntheticPetSpecies, write_oxford_pets_tree

TRIMAP = torch.tensor([[0, 1], [2, IGNORE_INDEX]])  # pet, background, border, ignored


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_oxford_pets_tree(tmp_path_factory.mktemp("species"), num_train=20, num_val=8, image_size=32, species=True)


def test_a_cats_pixels_become_cat_and_the_border_is_ignored():
    assert species_labels(TRIMAP, 0).tolist() == [[1, 0], [IGNORE_INDEX, IGNORE_INDEX]]


def test_a_dogs_pixels_become_dog():
    assert species_labels(TRIMAP, 1).tolist() == [[2, 0], [IGNORE_INDEX, IGNORE_INDEX]]


def test_a_species_other_than_0_or_1_is_refused():
    with pytest.raises(ValueError, match="is_dog: expected 0 \\(cat\\) or 1 \\(dog\\)"):
        species_labels(TRIMAP, 2)


def test_the_test_split_read_by_torchvision_is_the_synthetic_test_split(tree):
    read, drawn = PetSpecies(tree, "test"), SyntheticPetSpecies("test", num_samples=8, image_size=32)
    assert len(read) == 8
    for index in range(8):
        assert torch.equal(read[index][1], drawn[index][1]), f"test image {index}: the mask read from disk differs from the one drawn"


def test_every_tenth_trainval_image_is_val(tree):
    assert (len(PetSpecies(tree, "train")), len(PetSpecies(tree, "val"))) == (18, 2)


def test_an_unknown_split_is_refused(tree):
    with pytest.raises(ValueError, match="split: expected one of"):
        PetSpecies(tree, "trainval")


def test_a_missing_dataset_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="oxford-iiit-pet"):
        PetSpecies(tmp_path, "train")


def test_each_synthetic_image_holds_one_species_and_the_background():
    data = SyntheticPetSpecies("train", num_samples=40, image_size=32)
    species = [set(data.load_pair(index)[1].unique().tolist()) - {0, IGNORE_INDEX} for index in range(len(data))]
    assert all(len(found) == 1 for found in species), f"expected one species per image, got {species}"
    assert {next(iter(found)) for found in species} == {SPECIES_CLASSES[1].id, SPECIES_CLASSES[2].id}, "expected cats and dogs among 40 images"


def test_synthetic_cats_are_cool_and_dogs_warm():
    data = SyntheticPetSpecies("train", num_samples=40, image_size=32)
    for index in range(len(data)):
        image, mask = data.load_pair(index)
        fur = image[:, mask == 1] if (mask == 1).any() else image[:, mask == 2]
        red, blue = fur[0].float().mean(), fur[2].float().mean()
        if (mask == 1).any():
            assert blue > red, f"image {index}: a cat's fur should be cool (more blue than red), got red {red:.0f}, blue {blue:.0f}"
        else:
            assert red > blue, f"image {index}: a dog's fur should be warm (more red than blue), got red {red:.0f}, blue {blue:.0f}"
