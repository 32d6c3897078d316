"""``dlvc submit``: the zip a group hands in, what it refuses, what it warns about, and the public tests it runs."""

import os
import re
import zipfile
from pathlib import Path

import pytest

from dlvc.course.cli import main
from dlvc.course.authoring.handout import lay_out
from dlvc.course.student.manifest import load_manifest
from dlvc.course.authoring.stubs import fill_in, find_regions, make_stub, solution_files
from dlvc.course.grader.submission import stage
from dlvc.course.student.submit import remaining_stubs

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
PDF = b"%PDF-1.4\n%%EOF\n"


@pytest.fixture
def student(tmp_path) -> Path:
    """A student's folder: Assignment 2's handout laid out, everything filled in, a report beside it."""
    folder = lay_out(2, tmp_path / "dlvc-assignment2")
    fill_in(folder / "dlvc", REPOSITORY_ROOT)
    (folder / "report.pdf").write_bytes(PDF)
    return folder


def submit(folder: Path, *arguments: str) -> int:
    return main(["submit", "--root", str(folder), "--group", "7", "--no-tests", *arguments])


def packed(folder: Path) -> set[str]:
    with zipfile.ZipFile(folder / "group_7.zip") as archive:
        return set(archive.namelist())


def test_submit_packs_the_package_and_the_files_the_manifest_names(student, capsys):
    assert submit(student) == 0
    names = packed(student)
    expected_files = {entry.path for entry in load_manifest(2).submission}
    assert {name for name in names if not name.startswith("dlvc/")} == expected_files
    package = {path.relative_to(student).as_posix() for path in (student / "dlvc").rglob("*.py")}
    assert {name for name in names if name.startswith("dlvc/")} == package
    output = capsys.readouterr().out
    assert "wrote" in output and "group_7.zip" in output and "  report.pdf  (15 B)" in output


def test_submit_leaves_out_caches_checkpoints_datasets_runs_and_links(student, capsys):
    (student / "dlvc" / "__pycache__").mkdir(exist_ok=True)
    (student / "dlvc" / "__pycache__" / "metrics.cpython-311.pyc").write_bytes(b"compiled")
    (student / "dlvc" / "model_best.pt").write_bytes(b"weights")
    (student / "dlvc" / "data").mkdir()
    (student / "dlvc" / "data" / "pets.h5").write_bytes(b"pixels")
    (student / "dlvc" / "runs").mkdir()
    (student / "dlvc" / "runs" / "metrics.csv").write_text("epoch\n")
    (student / "dlvc" / ".DS_Store").write_bytes(b"finder")
    (student / "dlvc" / "solutions.py").symlink_to("/etc/hostname")
    (student / "runs").mkdir()
    (student / "runs" / "checkpoint.pt").write_bytes(b"weights")
    assert submit(student) == 0
    names = packed(student)
    left_in = [name for name in names if name.endswith((".pyc", ".pt", ".h5", ".csv", ".DS_Store")) or "solutions.py" in name]
    assert not left_in, f"packed {left_in}"
    output = capsys.readouterr().out
    for reason in ("caches", "checkpoints: dlvc/model_best.pt", "datasets: dlvc/data/", "run folders: dlvc/runs/", "hidden files", "links: dlvc/solutions.py"):
        assert f"left out {reason}" in output, f"the listing should say 'left out {reason}':\n{output}"


def test_submit_refuses_a_missing_report_and_writes_nothing(student, capsys):
    (student / "report.pdf").unlink()
    assert submit(student) == 2
    error = capsys.readouterr().err
    assert "report.pdf: the report" in error and "--report path/to/report.pdf" in error and "Nothing was written" in error
    assert not (student / "group_7.zip").exists()


def test_submit_takes_the_report_from_where_report_points(student, tmp_path):
    (student / "report.pdf").unlink()
    elsewhere = tmp_path / "Documents" / "final report.pdf"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(PDF)
    assert submit(student, "--report", str(elsewhere)) == 0
    with zipfile.ZipFile(student / "group_7.zip") as archive:
        assert archive.read("report.pdf") == PDF


def test_submit_refuses_a_report_that_is_not_a_pdf(student, capsys):
    (student / "report.pdf").write_text("my report, as a text file")
    assert submit(student) == 2
    assert "is not a PDF file" in capsys.readouterr().err
    assert not (student / "group_7.zip").exists()


def test_submit_refuses_when_a_file_of_the_manifest_is_missing(student, capsys):
    (student / "train_segformer.py").unlink()
    assert submit(student) == 2
    assert "train_segformer.py: the SegFormer training script" in capsys.readouterr().err


@pytest.mark.parametrize("group", ["../7", "7 8", "", "-7", "g" * 65])
def test_submit_refuses_a_group_name_unsafe_in_a_file_name(student, capsys, group):
    assert main(["submit", "--root", str(student), "--group", group, "--no-tests"]) == 2
    assert "--group: expected letters, digits" in capsys.readouterr().err
    assert not list(student.parent.rglob("*.zip"))


def test_submit_outside_a_handout_says_where_to_run_it(tmp_path, capsys):
    assert main(["submit", "--root", str(tmp_path), "--group", "7"]) == 2
    assert "run dlvc submit in the folder you unpacked the handout into" in capsys.readouterr().err


def test_submit_warns_about_the_assignments_todos_still_stubbed(student, capsys):
    for relative in ("models/mit_transformer.py", "models/freezing.py"):
        source = (REPOSITORY_ROOT / "solutions" / relative).read_text()
        (student / "dlvc" / relative).write_text(make_stub(source, f"dlvc/{relative}"))
    assert submit(student) == 0
    output = capsys.readouterr().out
    assert "warning: 4 TODO(s) of Assignment 2 still raise NotImplementedError" in output
    for todo in ("TODO 2.3 (Assignment 2, part 3) in dlvc/models/mit_transformer.py, Block.forward", "TODO 2.6 (Assignment 2, part 5)"):
        assert todo in output, output


def test_submit_notes_other_assignments_stubs_apart(student, capsys):
    source = (REPOSITORY_ROOT / "solutions" / "metrics.py").read_text()
    (student / "dlvc" / "metrics.py").write_text(make_stub(source, "dlvc/metrics.py"))
    assert submit(student) == 0
    output = capsys.readouterr().out
    assert "warning:" not in output
    assert "note: TODO 1.1, 1.2, 1.3, 3.5, 3.6 of other assignments still raise NotImplementedError (not graded in Assignment 2)" in output


def test_submit_warns_about_a_large_zip(student, capsys):
    (student / "dlvc" / "weights.bin").write_bytes(os.urandom(11 * 2**20))
    assert submit(student) == 0
    assert "warning: group_7.zip is" in capsys.readouterr().out


def test_submit_replaces_an_earlier_zip_and_says_so(student, capsys):
    assert submit(student) == 0
    assert capsys.readouterr().out.startswith("wrote ")
    assert submit(student) == 0
    assert capsys.readouterr().out.startswith("replaced ")


def test_grader_stages_the_zip_with_every_file_the_manifest_names(student, tmp_path):
    assert submit(student) == 0
    staged = stage(student / "group_7.zip", tmp_path / "staging", [entry.path for entry in load_manifest(2).submission])
    assert staged.missing == [] and staged.notes == []
    assert (staged.root / "dlvc" / "__init__.py").is_file()


def test_remaining_stubs_reads_every_stub_the_generator_writes(tmp_path):
    package = tmp_path / "dlvc"
    expected = set()
    for relative in solution_files(REPOSITORY_ROOT):
        source = (REPOSITORY_ROOT / "solutions" / relative).read_text()
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(make_stub(source, f"dlvc/{relative.as_posix()}"))
        expected |= {(region.todo_id, f"dlvc/{relative.as_posix()}", region.function) for region in find_regions(source, str(relative))}
    assert {(stub.todo_id, stub.file, stub.function) for stub in remaining_stubs(package)} == expected


@pytest.mark.slow
def test_submit_runs_the_public_tests_on_the_packed_copy_and_counts_them(tmp_path, capsys):
    folder = lay_out(1, tmp_path / "dlvc-assignment1")
    (folder / "report.pdf").write_bytes(PDF)
    fill_in(folder / "dlvc", REPOSITORY_ROOT)
    unet = (REPOSITORY_ROOT / "solutions" / "models" / "unet.py").read_text()
    (folder / "dlvc" / "models" / "unet.py").write_text(make_stub(unet, "dlvc/models/unet.py"))
    # A helper kept in dlvc/data/ works in the folder, but data/ folders are left out of the zip.
    (folder / "dlvc" / "data").mkdir()
    (folder / "dlvc" / "data" / "__init__.py").write_text("BINS = 256\n")
    metrics = folder / "dlvc" / "metrics.py"
    metrics.write_text("from .data import BINS\n" + metrics.read_text())
    assert main(["submit", "--root", str(folder), "--group", "7"]) == 0
    output = capsys.readouterr().out
    counted = re.search(r"public tests: (\d+) of (\d+) passed", output)
    assert counted and 0 < int(counted[1]) < int(counted[2]), output
    assert "4 fail at TODO 1.10 (still a stub)" in output, output
    assert "fail for other reasons" in output and "test_metrics_public" in output, output
