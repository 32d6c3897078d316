"""``dlvc leaderboard``: the class competition, each entry run in the sandbox and scored by the grader; and the entry ``dlvc submit`` packs.

One leaderboard run over a class of known entries (a module fixture): a PSPNet-ResNet-18
trained for a few seconds, the same network with a head that predicts background
everywhere, one that predicts dog everywhere, a submission without an entry, one whose
weights do not fit its PSPNet and one whose model.json names an encoder that does not
exist. The constant entries' mIoU is known from the split's masks alone.
"""

import contextlib
import csv
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from dlvc.course.cli import main
from dlvc.course.grader.leaderboard import ENTRY_FILES
from dlvc.course.authoring.stubs import copy_package
from dlvc.course.grader.submission import Limits, SubmissionError, stage
from dlvc.datasets.species import SPECIES_CLASSES
from dlvc.datasets.synthetic import SyntheticPetSpecies
from dlvc.metrics import SegMetrics
from dlvc.models.pspnet import PSPNet

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
ARCH = "resnet18"
SPLIT = {"seed": 5, "num_samples": 24, "image_size": 32}
ISOLATION = os.environ.get("DLVC_SANDBOX", "process")
"""Plain worker processes start quicker; CI's DLVC_SANDBOX=bwrap runs the same entries in bubblewrap."""
BACKGROUND, DOG = 0, 2
PDF = b"%PDF-1.4\n%%EOF\n"


# ----- the class -------------------------------------------------------------------------------


def briefly_trained_pspnet(steps: int = 30) -> PSPNet:
    """A PSPNet whose decoder and head were trained a few seconds on the synthetic train split (encoder frozen)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy machine one thread trains faster than two that wait for each other
    try:
        return _train(steps)
    finally:
        torch.set_num_threads(threads)


def _train(steps: int) -> PSPNet:
    torch.manual_seed(0)
    model = PSPNet(len(SPECIES_CLASSES), ARCH)
    train = SyntheticPetSpecies("train", num_samples=128, image_size=SPLIT["image_size"], seed=0)
    images = torch.stack([train[index][0] for index in range(len(train))])
    masks = torch.stack([train[index][1] for index in range(len(train))])
    optimizer = torch.optim.Adam([*model.decoder.parameters(), *model.head.parameters()], lr=3e-3)
    model.train()
    model.encoder.eval()
    batches = torch.Generator().manual_seed(0)
    for _ in range(steps):
        chosen = torch.randint(0, len(images), (8,), generator=batches)
        with torch.no_grad():
            streams = model.encoder(images[chosen])
        loss = torch.nn.functional.cross_entropy(model.head(model.decoder(*streams)), masks[chosen], ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def constant_head(state: dict, label: int) -> dict:
    """``state`` with a head whose logits favour ``label`` at every pixel, whatever the features."""
    state = dict(state)
    state["head.1.weight"] = torch.zeros_like(state["head.1.weight"])
    state["head.1.bias"] = torch.nn.functional.one_hot(torch.tensor(label), len(SPECIES_CLASSES)).float() * 10
    return state


def submission(folder: Path, model_json: dict | None = None, weights: dict | None = None) -> Path:
    """A submission folder: the reference build's dlvc/, and a competition entry when one is given."""
    copy_package(REPOSITORY_ROOT, folder)
    if model_json is not None:
        (folder / "competition").mkdir()
        (folder / ENTRY_FILES[0]).write_text(json.dumps(model_json))
        torch.save(weights, folder / ENTRY_FILES[1])
    return folder


def run_leaderboard(*arguments: str) -> tuple[int, str]:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = main(["leaderboard", *arguments])
    return status, output.getvalue()


@pytest.fixture(scope="module")
def competition(tmp_path_factory):
    """The leaderboard of the class above, run once: the output folder, what was printed, the exit status."""
    base = tmp_path_factory.mktemp("competition")
    state = briefly_trained_pspnet().state_dict()
    pspnet = {"model": "pspnet", "arch": ARCH, "num_classes": 3}
    classes = base / "submissions"
    submission(classes / "trained", pspnet, state)
    submission(classes / "background", pspnet, constant_head(state, BACKGROUND))
    narrow = {"decoder_channels": 32, "upsampling_channels": [16, 8, 4]}  # the decoder widths model.json may name
    submission(classes / "dog", {**pspnet, **narrow}, constant_head(PSPNet(3, ARCH, **narrow).state_dict(), DOG))
    submission(classes / "bad-widths", {**pspnet, "upsampling_channels": "wide"}, {})
    submission(classes / "no-entry")
    submission(classes / "misfit", pspnet, {"head.1.weight": torch.zeros(3, 64, 1, 1)})
    submission(classes / "unknown-arch", {**pspnet, "arch": "resnet19"}, {})
    out = base / "out"
    graded = {"score": 7.0, "output": "Total: 7 / 13 points", "tests": [{"name": "a test", "score": 7.0}], "extra_data": {"seed": 3}}
    for name in ("trained", "background"):
        (out / name).mkdir(parents=True)
        (out / name / "results.json").write_text(json.dumps({**graded, "leaderboard": [{"name": "old", "value": 1}]}))
    status, printed = run_leaderboard(
        str(classes), "--out", str(out), "--isolation", ISOLATION, "--jobs", "2",
        "--seed", str(SPLIT["seed"]), "--num-samples", str(SPLIT["num_samples"]), "--image-size", str(SPLIT["image_size"]),
    )
    return {"out": out, "printed": printed, "status": status, "graded": graded}


def rows(out: Path) -> dict[str, dict]:
    with open(out / "leaderboard.csv", newline="") as file:
        return {row["submission"]: row for row in csv.DictReader(file)}


def entry(out: Path, name: str) -> dict:
    return json.loads((out / name / "leaderboard.json").read_text())


def constant_miou(label: int) -> float:
    """The mIoU of predicting ``label`` at every pixel of the leaderboard's split, by the reference SegMetrics."""
    split = SyntheticPetSpecies("test", **SPLIT)
    masks = torch.stack([split[index][1] for index in range(len(split))])
    metric = SegMetrics(SPECIES_CLASSES)
    metric.update(torch.full_like(masks, label), masks)
    return metric.mIoU()


# ----- the leaderboard ---------------------------------------------------------------------------


def test_leaderboard_ranks_the_scored_entries_by_miou(competition):
    table = rows(competition["out"])
    ranks = {name: row["rank"] for name, row in table.items() if row["rank"]}
    assert ranks == {"trained": "1", "background": "2", "dog": "3"}, (
        f"expected the trained model first, then background everywhere, then dog everywhere; the CSV says {ranks}:\n"
        + (competition["out"] / "leaderboard.csv").read_text()
    )


@pytest.mark.parametrize("name, label", [("background", BACKGROUND), ("dog", DOG)])
def test_a_constant_entry_scores_the_miou_its_labels_earn_on_the_split(competition, name, label):
    scored = entry(competition["out"], name)["miou"]
    assert scored == pytest.approx(constant_miou(label), rel=1e-12), f"{name} everywhere should score {constant_miou(label)}, got {scored}"


def test_the_trained_entry_scores_clearly_above_background_everywhere(competition):
    trained, background = entry(competition["out"], "trained")["miou"], constant_miou(BACKGROUND)
    assert trained > background + 0.03, f"the briefly trained PSPNet scored {trained}, background everywhere {background}"


@pytest.mark.parametrize(
    "name, words",
    [
        ("no-entry", "no competition entry: the submission has no competition/model.json and no competition/model.pt"),
        ("misfit", "keys of the model's state dict are missing"),
        ("unknown-arch", "competition/model.json: expected {\"model\": \"pspnet\", \"arch\": one of resnet18, resnet50"),
        ("bad-widths", "optionally with \"decoder_channels\": an int and \"upsampling_channels\": a list of ints"),
    ],
)
def test_an_entry_that_cannot_run_is_listed_with_its_reason_and_no_score(competition, name, words):
    row = rows(competition["out"])[name]
    assert row["rank"] == "" and row["mIoU"] == "", f"{name} has no working entry and must have no rank or score: {row}"
    assert words in row["reason"], f"the reason of {name} should say {words!r}; it says {row['reason']!r}"
    assert words in entry(competition["out"], name)["reason"]


def test_an_existing_results_json_gets_the_leaderboard_field_and_keeps_the_rest(competition):
    results = json.loads((competition["out"] / "trained" / "results.json").read_text())
    assert {key: value for key, value in results.items() if key != "leaderboard"} == competition["graded"], "the grader's fields changed"
    board = {column["name"]: column for column in results["leaderboard"]}
    assert list(board)[0] == "mIoU" and "old" not in board, f"the leaderboard field was not replaced: {results['leaderboard']}"
    assert board["mIoU"]["value"] == round(entry(competition["out"], "trained")["miou"], 4) and board["mIoU"]["order"] == "desc"


def test_no_results_json_is_created_where_grading_wrote_none(competition):
    out = competition["out"]
    assert not (out / "dog" / "results.json").exists(), "dlvc grade would take a results.json written here for a graded submission"
    assert entry(out, "dog")["leaderboard"][0]["name"] == "mIoU", "the entry's own leaderboard.json holds the field"
    assert "grade them with `dlvc grade --out`" in competition["printed"]


def test_leaderboard_writes_a_markdown_table_and_a_png_chart(competition):
    out = competition["out"]
    markdown = (out / "leaderboard.md").read_text()
    assert f"seed {SPLIT['seed']}" in markdown and "| 1 | trained |" in markdown, markdown
    assert "![mIoU by submission](leaderboard.png)" in markdown
    assert (out / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "leaderboard.png is not a PNG"


def test_leaderboard_prints_a_short_table_and_exits_0(competition):
    assert competition["status"] == 0, competition["printed"]
    lines = competition["printed"].splitlines()
    assert lines[0].split() == ["rank", "submission", "mIoU", "pixel", "acc."], lines[0]
    assert lines[1].split()[:2] == ["1", "trained"], competition["printed"]
    assert not (competition["out"] / ".leaderboard").exists(), "the staging folder was left behind"


def test_a_missing_dataset_gives_its_own_message_and_exit_status_2(tmp_path, capsys):
    submission(tmp_path / "submissions" / "group_7")
    status, _ = run_leaderboard(str(tmp_path / "submissions"), "--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "nowhere"))
    error = capsys.readouterr().err
    assert status == 2 and "dlvc leaderboard: Oxford-IIIT Pet not found under root=" in error, error
    assert "Traceback" not in error


def test_every_entry_records_the_split_it_was_scored_on(competition):
    recorded = entry(competition["out"], "no-entry")["split"]
    assert recorded == {"dataset": "synthetic", "split": "test", **SPLIT}, f"leaderboard.json records {recorded}"


# ----- the entry in a submission ------------------------------------------------------------------


@pytest.fixture
def student(tmp_path) -> Path:
    """A student's folder for Assignment 3: the package, the assignment's manifest, a report, a competition entry."""
    folder = copy_package(REPOSITORY_ROOT, tmp_path / "dlvc-assignment3")
    shutil.copytree(REPOSITORY_ROOT / "assignments" / "assignment3", folder / "assignments" / "assignment3", ignore=shutil.ignore_patterns(".ipynb_checkpoints"), dirs_exist_ok=True)
    (folder / "report.pdf").write_bytes(PDF)
    (folder / "competition").mkdir()
    (folder / ENTRY_FILES[0]).write_text(json.dumps({"model": "pspnet", "arch": ARCH, "num_classes": 3}))
    torch.save({"head.1.bias": torch.zeros(3)}, folder / ENTRY_FILES[1])
    (folder / "dlvc" / "model_best.pt").write_bytes(b"a checkpoint")
    return folder


def submit(folder: Path) -> int:
    return main(["submit", "--root", str(folder), "--group", "7", "--no-tests", "--assignment", "3"])


def packed(folder: Path) -> set[str]:
    with zipfile.ZipFile(folder / "group_7.zip") as archive:
        return set(archive.namelist())


def test_submit_packs_the_competition_entry_but_no_other_checkpoint(student, capsys):
    assert submit(student) == 0, capsys.readouterr().err
    names = packed(student)
    assert set(ENTRY_FILES) <= names, f"the competition entry is not in the zip: {sorted(name for name in names if not name.startswith('dlvc/'))}"
    assert "dlvc/model_best.pt" not in names, "a checkpoint the manifest does not name was packed"


def test_submit_without_a_competition_entry_packs_the_rest_and_says_the_entry_is_optional(student, capsys):
    shutil.rmtree(student / "competition")
    assert submit(student) == 0, capsys.readouterr().err
    assert "not there, and optional: competition/model.json" in capsys.readouterr().out
    assert "report.pdf" in packed(student)


def test_submit_refuses_weights_over_the_limit_and_says_how_to_make_them_smaller(student, capsys):
    os.truncate(student / ENTRY_FILES[1], 201 * 2**20)  # sparse: the size is all that is read
    assert submit(student) == 2
    error = capsys.readouterr().err
    assert "competition/model.pt is 201.0 MiB, more than the 200.0 MiB" in error and "half precision" in error, error
    assert not (student / "group_7.zip").exists()


def test_staging_carries_the_entry_beside_the_package_and_nothing_else(student, tmp_path, capsys):
    assert submit(student) == 0
    staged = stage(student / "group_7.zip", tmp_path / "staging", ["report.pdf", *ENTRY_FILES], carried_files=ENTRY_FILES)
    held = {path.relative_to(staged.root).as_posix() for path in staged.root.rglob("*") if not path.is_relative_to(staged.root / "dlvc")}
    assert held == {"competition", *ENTRY_FILES} and (staged.root / "dlvc" / "__init__.py").is_file(), f"the staged root holds {sorted(held)}"
    assert (staged.root / ENTRY_FILES[1]).read_bytes() == (student / ENTRY_FILES[1]).read_bytes()
    assert oct((staged.root / ENTRY_FILES[1]).stat().st_mode & 0o777) == oct(0o644)


def test_staging_lets_a_wanted_file_be_larger_than_other_files(tmp_path):
    folder = tmp_path / "group_7"
    (folder / "dlvc").mkdir(parents=True)
    (folder / "dlvc" / "__init__.py").write_text("")
    (folder / "competition").mkdir()
    (folder / ENTRY_FILES[1]).write_bytes(bytes(5000))
    limits = Limits(max_file_bytes=2000, max_wanted_file_bytes=10**6)
    staged = stage(folder, tmp_path / "staging", list(ENTRY_FILES), limits, carried_files=ENTRY_FILES)
    assert (staged.root / ENTRY_FILES[1]).stat().st_size == 5000, "the wanted weights were not staged"
    (folder / "dlvc" / "weights.bin").write_bytes(bytes(5000))
    with pytest.raises(SubmissionError, match=r"'dlvc/weights.bin' is larger than 2000 bytes"):
        stage(folder, tmp_path / "staging", list(ENTRY_FILES), limits, carried_files=ENTRY_FILES)
