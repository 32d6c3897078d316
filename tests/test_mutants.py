"""The mutant corpora: at least two known mistakes per TODO, each patch still fits the reference, and the public tests catch every one they can see."""

from functools import partial
from pathlib import Path

import pytest

from dlvc.course.student.manifest import available_assignments, load_manifest
from dlvc.course.authoring.mutants import MutantError, apply_mutant, load_mutants, parse_mutant
from dlvc.course.authoring.stubs import copy_package
from warm_pytest import run_all

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = [number for number in available_assignments() if (REPOSITORY_ROOT / "tests" / "hidden" / f"assignment{number}").is_dir()]
MANIFESTS = {number: load_manifest(number) for number in ASSIGNMENTS}
MUTANTS = [
    (number, mutant)
    for number in ASSIGNMENTS
    if (REPOSITORY_ROOT / "tests" / "hidden" / f"assignment{number}" / "mutants").is_dir()
    for mutant in load_mutants(REPOSITORY_ROOT / "tests" / "hidden" / f"assignment{number}" / "mutants")
]
IDS = [f"assignment{number}-{mutant.name}" for number, mutant in MUTANTS]


def mutated(mutant, folder: Path) -> Path:
    package = copy_package(REPOSITORY_ROOT, folder)
    apply_mutant(mutant, package)
    return package


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_todo_of_a_graded_assignment_has_at_least_two_mutants(assignment):
    for part in MANIFESTS[assignment].parts:
        for todo in part.todos:
            count = sum(mutant.todo == todo for number, mutant in MUTANTS if number == assignment)
            assert count >= 2, f"TODO {todo} ({part.id}) has {count} mutant(s); the corpus needs at least two per TODO"


@pytest.mark.parametrize("assignment, mutant", MUTANTS, ids=IDS)
def test_mutant_names_the_part_of_its_todo_and_changes_the_reference(assignment, mutant, tmp_path):
    assert mutant.todo in MANIFESTS[assignment].part(mutant.part).todos, f"{mutant.name}: TODO {mutant.todo} is not in part {mutant.part}"
    package = mutated(mutant, tmp_path / "mutated")
    original = (copy_package(REPOSITORY_ROOT, tmp_path / "reference") / mutant.path).read_text()
    assert (package / mutant.path).read_text() != original, f"{mutant.name} changes nothing"
    compile((package / mutant.path).read_text(), mutant.path, "exec")


def test_a_mutant_that_no_longer_fits_fails_loudly(tmp_path):
    stale = tmp_path / "stale.diff"
    stale.write_text("Mistake: x\nPart: metric\nTODO: 2\nPublic: caught\n--- a/dlvc/metrics.py\n+++ b/dlvc/metrics.py\n@@ -1,1 +1,1 @@\n-no such line\n+other\n")
    with pytest.raises(MutantError, match="does not fit dlvc/metrics.py"):
        apply_mutant(parse_mutant(stale), copy_package(REPOSITORY_ROOT, tmp_path / "package"))


def test_a_mutant_without_its_header_is_refused(tmp_path):
    bare = tmp_path / "bare.diff"
    bare.write_text("--- a/dlvc/metrics.py\n+++ b/dlvc/metrics.py\n@@ -1 +1 @@\n-a\n+b\n")
    with pytest.raises(MutantError, match="the header lacks Mistake, Part, TODO, Public"):
        parse_mutant(bare)


def public_outcome(assignment: int, mutant, folder: Path, name: str, run) -> tuple[int | None, str]:
    """The exit status and output's end of the mutant's part's public tests run on the mutated package."""
    mutated(mutant, folder)
    tests = list(MANIFESTS[assignment].part(mutant.part).public_tests)
    status, output = run([*tests, "--impl", str(folder), "-q", "-x", "-p", "no:cacheprovider", "--tb=line"], name)
    return status, output[-2000:]


@pytest.fixture(scope="module")
def public_outcomes(tmp_path_factory) -> dict:
    """Each mutant's public-test outcome, two warm pytest runs at a time."""
    jobs = {name: partial(public_outcome, number, mutant, tmp_path_factory.mktemp(name), name) for name, (number, mutant) in zip(IDS, MUTANTS)}
    return run_all(tmp_path_factory.mktemp("logs"), jobs)


@pytest.mark.slow
@pytest.mark.parametrize("assignment, mutant", MUTANTS, ids=IDS)
def test_public_tests_catch_the_mutants_they_can_see(public_outcomes, assignment, mutant):
    """A mutant marked 'caught' must fail its part's public tests; one marked 'unseen' must pass them (the label is true)."""
    status, output = public_outcomes[f"assignment{assignment}-{mutant.name}"]
    tests = MANIFESTS[assignment].part(mutant.part).public_tests
    if mutant.public_catches:
        assert status == 1, f"{mutant.name} ({mutant.mistake}) passes the public tests {tests}:\n{output}"
    else:
        assert status == 0, f"{mutant.name} is marked '{mutant.public}' but the public tests catch it; mark it caught:\n{output}"
