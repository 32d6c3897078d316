"""Points live in one place: the manifest. The TODO comments, the README's table and the graded tests agree with it."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dlvc.course.grader.grade import suite_problems
from dlvc.course.student.manifest import ManifestError, available_assignments, load_manifest, parse_manifest
from dlvc.course.authoring.handout import solution_sources
from dlvc.course.authoring.stubs import find_regions
from dlvc.course.grader.verdicts import GradedTest

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
GRADED = [number for number in available_assignments() if (REPOSITORY_ROOT / "tests" / "hidden" / f"assignment{number}").is_dir()]
TODO_PART = re.compile(r"^Assignment (\d+), part (\d+)$")


def todo_parts() -> dict[str, tuple[int, int]]:
    """TODO id -> (assignment, part number), from the comments of the solution files and the graded notebooks."""
    found = {}
    for name, source in solution_sources(REPOSITORY_ROOT):
        for region in find_regions(source, name):
            match = TODO_PART.match(region.part)
            assert match, f"{name}: TODO {region.todo_id} names its part as {region.part!r}, not 'Assignment N, part M'"
            found[region.todo_id] = (int(match[1]), int(match[2]))
    return found


def graded_tests(assignment: int, tmp_path: Path) -> list[GradedTest]:
    listing = tmp_path / "graded.json"
    suite = REPOSITORY_ROOT / "tests" / "hidden" / f"assignment{assignment}"
    command = [sys.executable, "-m", "pytest", str(suite), "--collect-only", "-q", "-p", "no:cacheprovider", "--graded-list", str(listing)]
    result = subprocess.run(command, cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [GradedTest.from_json(entry) for entry in json.loads(listing.read_text())]


@pytest.mark.parametrize("assignment", GRADED)
def test_every_todo_of_the_assignment_belongs_to_exactly_one_part_with_its_number(assignment):
    manifest = load_manifest(assignment)
    todos = {todo: number for todo, (of, number) in todo_parts().items() if of == assignment}
    listed = [todo for part in manifest.parts for todo in part.todos]
    assert sorted(listed) == sorted(todos), f"the manifest lists TODOs {sorted(listed)}, the solution files have {sorted(todos)}"
    for part in manifest.parts:
        for todo in part.todos:
            assert todos[todo] == part.number, f"TODO {todo} says part {todos[todo]}, the manifest puts it in part {part.number} ({part.id})"


@pytest.mark.parametrize("assignment", GRADED)
def test_the_files_and_public_tests_of_each_part_exist(assignment):
    for part in load_manifest(assignment).parts:
        for path in (*part.files, *part.public_tests):
            assert (REPOSITORY_ROOT / path).is_file(), f"part {part.id}: {path} does not exist"


@pytest.mark.parametrize("assignment", GRADED)
def test_the_graded_tests_of_each_part_add_up_to_its_points(assignment, tmp_path):
    manifest = load_manifest(assignment)
    tests = graded_tests(assignment, tmp_path)
    assert not suite_problems(tests, manifest), suite_problems(tests, manifest)
    assert {test.part for test in tests} == {part.id for part in manifest.parts}, "every part needs graded tests"


@pytest.mark.parametrize("assignment", GRADED)
def test_the_readme_table_agrees_with_the_manifest(assignment):
    manifest = load_manifest(assignment)
    readme = (REPOSITORY_ROOT / "assignments" / f"assignment{assignment}" / "README.md").read_text()
    rows = [line for line in readme.splitlines() if re.match(r"^\| \d+\. ", line)]
    assert len(rows) == len(manifest.parts), f"the README's table has {len(rows)} part rows, the manifest {len(manifest.parts)} parts"
    for row, part in zip(rows, manifest.parts):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        number, file, todos, points, check = cells
        assert number.startswith(f"{part.number}. "), f"README row {row!r}: expected part {part.number}"
        files = [name.strip().strip("`") for name in file.split(",")]
        assert sorted(files) == sorted(part.files), f"README row {row!r}: files {files}, the manifest says {list(part.files)}"
        assert _todo_range(todos) == list(part.todos), f"README row {row!r}: TODOs {todos}, the manifest says {part.todos}"
        assert float(points) == part.points, f"README row {row!r}: {points} points, the manifest says {part.points:g}"
        assert all(test in check for test in part.public_tests), f"README row {row!r}: should name {part.public_tests}"


def _todo_range(text: str) -> list[str]:
    """'1.1, 1.2, 1.3' or '1.11 to 1.15' as a list of TODO ids."""
    if " to " in text:
        (assignment, low), (_, high) = (value.split(".") for value in text.split(" to "))
        return [f"{assignment}.{value}" for value in range(int(low), int(high) + 1)]
    return [value.strip() for value in text.split(",")]


def write_manifest(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "assignment.toml"
    path.write_text(textwrap.dedent(text))
    return path


PART = """
[[parts]]
id = "metric"
number = 1
title = "The metric"
points = 3
todos = ["1.1"]
files = ["dlvc/metrics.py"]
public_tests = ["tests/public/test_metrics_public.py"]
"""


def test_a_todo_in_two_parts_is_refused(tmp_path):
    second = PART.replace('id = "metric"', 'id = "other"').replace("number = 1", "number = 2")
    with pytest.raises(ManifestError, match="a TODO belongs to exactly one part"):
        parse_manifest(write_manifest(tmp_path, 'number = 1\ntitle = "A"\n' + PART + second))


def test_todos_out_of_work_order_are_refused_naming_the_expected_numbers(tmp_path):
    second = PART.replace('id = "metric"', 'id = "other"').replace("number = 1", "number = 2").replace('"1.1"', '"1.3"')
    with pytest.raises(ManifestError, match="numbered in work order, 1.1, 1.2, through the parts as listed; got 1.1, 1.3"):
        parse_manifest(write_manifest(tmp_path, 'number = 1\ntitle = "A"\n' + PART + second))


def test_a_part_without_points_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ManifestError, match=r"parts\[0\]\.points: expected a positive number"):
        parse_manifest(write_manifest(tmp_path, 'number = 1\ntitle = "A"\n' + PART.replace("points = 3", "points = 0")))


def test_a_submission_file_with_points_must_name_its_part(tmp_path):
    text = 'number = 1\ntitle = "A"\n' + PART + '\n[[submission]]\npath = "train.py"\nwhat = "the script"\npoints = 1\n'
    with pytest.raises(ManifestError, match=r"submission\[0\]\.part"):
        parse_manifest(write_manifest(tmp_path, text))


def test_an_unknown_assignment_names_the_ones_there_are():
    with pytest.raises(ManifestError, match="assignments with one: 1, 2, 3"):
        load_manifest(99)
