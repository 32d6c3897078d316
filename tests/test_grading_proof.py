"""The proof of the graded suites: one ``dlvc grade`` run per assignment over a class of known submissions.

Each class: the reference build (full points, though its report is missing: that
costs nothing), every mutant of ``tests/hidden/assignment<N>/mutants`` (points lost
in its own part only), and the round trip of a handout: ``dlvc handout`` builds it
with all its checks, it is unpacked as a student would, and its own ``dlvc submit``
packs it twice, as built (zero points) and with the reference filled back in (full
points).
Hostile submissions are a class of their own, graded once in each sandbox mode
(bubblewrap, and Landlock: as root with the unprivileged worker user, or as the
ordinary user that runs the tests), and each must get exactly the points it earned
there, the untouched stubs zero: an infinite loop, a memory bomb, ``os._exit`` at import, a
segfault, a fork bomb, a print flood, a syntax error, a ``conftest.py`` that marks
every test passed, monkeypatched ``torch.testing``, a forged ``results.json``, an
``mIoU()`` equal to everything, zips with ``../`` paths, a zip bomb, non-UTF-8
names, and code that tries to read the reference and the hidden tests, write
outside its scratch folder and kill the grader. Three correct variants must keep
full points: an ``mIoU()`` that returns a 0-d tensor or a numpy float, and a metric
with private attributes and helper methods of its own. Afterwards nothing may have
been written outside the output folder. A restarted run must grade only what was
missing and agree.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from dlvc.course.student.manifest import available_assignments, load_manifest
from dlvc.course.authoring.mutants import apply_mutant, load_mutants
from dlvc.course.authoring.handout import handout_name
from dlvc.course.student.notebook import read_notebook
from dlvc.course.authoring.stubs import copy_package, fill_in, make_student_notebook
from dlvc.course.student.submit import clean_environment
from isolation_modes import SANDBOXES, require

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = [number for number in available_assignments() if (REPOSITORY_ROOT / "tests" / "hidden" / f"assignment{number}" / "mutants").is_dir()]
MANIFESTS = {number: load_manifest(number) for number in ASSIGNMENTS}
MUTANTS = {number: load_mutants(REPOSITORY_ROOT / "tests" / "hidden" / f"assignment{number}" / "mutants") for number in ASSIGNMENTS}
EVERY_MUTANT = [(number, mutant) for number in ASSIGNMENTS for mutant in MUTANTS[number]]
TOKEN = uuid.uuid4().hex[:12]
HIDDEN = "tests/hidden/assignment1/"

pytestmark = pytest.mark.slow


# ----- building submissions -----------------------------------------------------------------


def reference(folder: Path) -> Path:
    return copy_package(REPOSITORY_ROOT, folder)


def stubs(folder: Path) -> Path:
    return copy_package(REPOSITORY_ROOT, folder, reference=False)


def inject(package: Path, relative: str, region: int, code: str) -> None:
    """Insert ``code`` at the start of the ``region``-th solution region of ``dlvc/<relative>``."""
    path = package / "dlvc" / relative
    lines = path.read_text().splitlines(keepends=True)
    begins = [index for index, line in enumerate(lines) if line.strip() == "# BEGIN SOLUTION"]
    indent = lines[begins[region]][: len(lines[begins[region]]) - len(lines[begins[region]].lstrip())]
    lines[begins[region] + 1 : begins[region] + 1] = [f"{indent}{line}\n" for line in code.strip("\n").splitlines()]
    path.write_text("".join(lines))


def zip_folder(folder: Path, archive: Path, top: str = "", extra: dict | None = None) -> Path:
    """Zip ``folder`` as ``top/...``, plus raw ``extra`` entries (name -> bytes) written as given."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zipped.write(path, f"{top}{path.relative_to(folder).as_posix()}")
        for name, data in (extra or {}).items():
            zipped.writestr(name, data)
    return archive


def injected(relative: str, region: int, code: str):
    """A builder: the reference build with ``code`` at the start of a solution region (see :func:`inject`)."""

    def build(folder: Path) -> Path:
        package = reference(folder)
        inject(package, relative, region, code)
        return package

    return build


def exit_at_import(folder):
    package = reference(folder)
    path = package / "dlvc" / "datasets" / "transforms.py"
    path.write_text("import os\nos._exit(0)\n" + path.read_text())
    return package


CONFTEST = """
import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
    report.longrepr = None
"""


def conftest_marks_everything_passed(folder):
    package = stubs(folder)
    for place in (package, package / "dlvc"):
        (place / "conftest.py").write_text(CONFTEST)
    (package / "pytest.ini").write_text("[pytest]\naddopts = -p no:dlvc-graded\n")
    (package / "sitecustomize.py").write_text("import builtins\nbuiltins.__dict__['GRADED'] = True\n")
    (package / "torch.py").write_text("raise SystemExit('a fake torch')\n")
    return package


def monkeypatched_checks(folder):
    package = stubs(folder)
    init = package / "dlvc" / "__init__.py"
    init.write_text(
        init.read_text()
        + "\nimport torch, torch.testing\n"
        + "torch.testing.assert_close = lambda *args, **kwargs: None\n"
        + "torch.allclose = lambda *args, **kwargs: True\n"
        + "torch.equal = lambda *args, **kwargs: True\n"
        + "torch.Tensor.__eq__ = lambda self, other: True\n"
    )
    return package


def forged_results(folder):
    package = stubs(folder.parent / f"{folder.name}-source")
    forged = json.dumps({"score": 25.0, "tests": [{"name": "everything", "score": 25, "max_score": 25, "status": "passed"}]})
    (package / "dlvc" / "results.json").write_text(forged)
    return zip_folder(package, folder.with_suffix(".zip"), top="group/", extra={"results.json": forged, "group/results.json": forged})


def zip_with_escaping_paths(folder):
    package = reference(folder.parent / f"{folder.name}-source")
    escaping = {
        f"../../escaped-{TOKEN}.txt": b"outside",
        f"/tmp/escaped-{TOKEN}.txt": b"absolute",
        f"group/dlvc/../../../escaped-{TOKEN}-2.txt": b"outside",
    }
    archive = zip_folder(package, folder.with_suffix(".zip"), top="group/", extra=escaping)
    with zipfile.ZipFile(archive, "a") as zipped:
        link = zipfile.ZipInfo("group/dlvc/link-to-root")
        link.external_attr = 0o120777 << 16
        zipped.writestr(link, "/")
    return archive


def zip_bomb(folder):
    """Five entries of 60 MiB of zeros: each under the limit for one file, 300 MiB in all (the zip is about 300 KB)."""
    package = reference(folder.parent / f"{folder.name}-source")
    archive = zip_folder(package, folder.with_suffix(".zip"))
    chunk = bytes(2**20)
    with zipfile.ZipFile(archive, "a", zipfile.ZIP_DEFLATED) as zipped:
        for index in range(5):
            with zipped.open(f"dlvc/weights-{index}.bin", "w", force_zip64=True) as entry:
                for _ in range(60):
                    entry.write(chunk)
    return archive


def non_utf8_names(folder):
    package = reference(folder.parent / f"{folder.name}-source")
    archive = zip_folder(package, folder.with_suffix(".zip"))
    with zipfile.ZipFile(archive, "a") as zipped:
        zipped.writestr("dlvc/notes-cafX.txt", b"notes")  # an ASCII name, so no UTF-8 flag; its bytes are changed below
    data = archive.read_bytes().replace(b"notes-cafX", b"notes-caf\x82")
    archive.write_bytes(data)
    return archive


def tampered_folders(out: Path, submissions: Path) -> list[Path]:
    """Where the tampering submission tries to write (its sandbox's own /tmp is its scratch: allowed)."""
    return [REPOSITORY_ROOT, out, out / "reference", submissions, Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")]


def snoop_and_tamper(folder, out: Path, submissions: Path):
    """Reads what the worker must not see and signals what it must not (wrong answers if either works), and writes
    where it must not: a write may land in the sandbox's scratch tmpfs, so the test checks the machine afterwards."""
    package = reference(folder)
    secrets = [
        REPOSITORY_ROOT / "solutions" / "metrics.py",
        REPOSITORY_ROOT / HIDDEN / "test_metric.py",
        out / ".grading" / "run.json",
        submissions / "reference" / "dlvc" / "metrics.py",
    ]
    targets = [path / f"tampered-{TOKEN}" for path in tampered_folders(out, submissions)]
    inject(
        package,
        "metrics.py",
        0,
        f"import os, signal\n"
        f"worked = []\n"
        f"for path in {[str(path) for path in secrets]!r}:\n"
        f"    try:\n        open(path).read(1)\n        worked.append(path)\n    except OSError:\n        pass\n"
        f"for path in {[str(path) for path in targets]!r}:\n"
        f"    try:\n        open(path, 'w').write('x')\n    except OSError:\n        pass\n"
        f"for pid in (os.getppid(), 1):\n"
        f"    try:\n        os.kill(pid, signal.SIGKILL)\n        worked.append(pid)\n    except OSError:\n        pass\n"
        f"if worked:\n    self.num_classes += 1",
    )
    return package


def replace_in(package: Path, relative: str, old: str, new: str) -> Path:
    path = package / "dlvc" / relative
    source = path.read_text()
    assert source.count(old) == 1, f"{relative}: {old!r} should occur once"
    path.write_text(source.replace(old, new))
    return package


MIOU_LINE = "        miou = ious[present].mean().item() if present.any() else 0.0\n"


def miou_as_a_0d_tensor(folder):
    return replace_in(reference(folder), "metrics.py", MIOU_LINE, "        miou = ious[present].mean() if present.any() else torch.tensor(0.0)\n")


def miou_as_a_numpy_float(folder):
    return replace_in(reference(folder), "metrics.py", MIOU_LINE, "        import numpy\n        miou = numpy.float64(ious[present].mean().item() if present.any() else 0.0)\n")


def metric_with_helpers_of_its_own(folder):
    package = reference(folder)
    replace_in(
        package,
        "metrics.py",
        "        self.confusion_matrix += counts.view(num_classes, num_classes)  # (C*C,) -> (C, C)\n",
        "        self._add_counts(counts)\n",
    )
    return replace_in(
        package,
        "metrics.py",
        "    def all_reduce(self) -> None:",
        "    def _add_counts(self, counts):\n"
        "        self._batches_seen = getattr(self, '_batches_seen', 0) + 1\n"
        "        self.confusion_matrix += counts.view(self.num_classes, self.num_classes)\n\n"
        "    def all_reduce(self) -> None:",
    )


def package_missing(folder):
    source = folder.parent / f"{folder.name}-source"
    source.mkdir(parents=True)
    (source / "report.pdf").write_text("a report without code")
    return zip_folder(source, folder.with_suffix(".zip"))


def graded_in(graded: list[dict], file: str, but: tuple[str, ...] = ()) -> set[str]:
    return {test["nodeid"] for test in graded if test["nodeid"].startswith(HIDDEN + file) and not any(part in test["nodeid"] for part in but)}


def graded_named(graded: list[dict], *fragments: str) -> set[str]:
    return {test["nodeid"] for test in graded if any(fragment in test["nodeid"] for fragment in fragments)}


def every_test(graded: list[dict]) -> set[str]:
    return {test["nodeid"] for test in graded}


@dataclass
class Hostile:
    """A hostile submission: how to build it, and the graded tests it must fail (all others it must pass)."""

    build: object
    fails: object
    reason: str = ""
    ungradable: bool = False


HOSTILE = {
    "infinite-loop-in-update": Hostile(injected("metrics.py", 1, "while True:\n    pass"), lambda g: graded_in(g, "test_metric.py", but=("rejects_inputs",)), "timed out"),
    "memory-bomb": Hostile(injected("models/unet.py", 0, "hoard = [bytearray(2**28) for _ in range(64)]"), lambda g: graded_in(g, "test_unet.py"), "memory limit"),
    "exit-at-import": Hostile(exit_at_import, lambda g: graded_in(g, "test_augmentations.py"), "exited with status 0"),
    "segfault": Hostile(injected("metrics.py", 2, "import ctypes\nctypes.string_at(0)"), lambda g: graded_named(g, "test_miou_"), "SIGSEGV"),
    "fork-bomb": Hostile(injected("datasets/transforms.py", 4, "import os\nwhile True:\n    os.fork()"), lambda g: graded_named(g, "test_rotation_"), "PermissionError"),
    "print-flood": Hostile(injected("models/unet.py", 0, "for _ in range(2**20):\n    print('x' * 1024)"), lambda g: graded_in(g, "test_unet.py"), "printed more than"),
    "syntax-error": Hostile(injected("models/unet.py", 0, "if True\n    pass"), lambda g: graded_in(g, "test_unet.py"), "SyntaxError"),
    "conftest-marks-everything-passed": Hostile(conftest_marks_everything_passed, every_test, "NotImplementedError"),
    "monkeypatched-torch-checks": Hostile(monkeypatched_checks, every_test, "NotImplementedError"),
    "forged-results-json": Hostile(forged_results, every_test, "NotImplementedError"),
    "miou-equal-to-everything": Hostile(
        injected("metrics.py", 2, "return type('Everything', (), {'__eq__': lambda self, other: True, '__float__': lambda self: 1.0})()"),
        lambda g: graded_named(g, "test_miou_"),
        "expected a number",
    ),
    "zip-with-escaping-paths": Hostile(zip_with_escaping_paths, lambda g: set()),
    "zip-bomb": Hostile(zip_bomb, every_test, "zip bomb", ungradable=True),
    "non-utf8-names": Hostile(non_utf8_names, lambda g: set()),
    "package-missing": Hostile(package_missing, every_test, "no dlvc/ package folder", ungradable=True),
    "snoop-and-tamper": Hostile(snoop_and_tamper, lambda g: set()),
    "untouched-stubs": Hostile(stubs, every_test, "NotImplementedError"),
    "variant-miou-as-a-0d-tensor": Hostile(miou_as_a_0d_tensor, lambda g: set()),
    "variant-miou-as-a-numpy-float": Hostile(miou_as_a_numpy_float, lambda g: set()),
    "variant-metric-with-helpers-of-its-own": Hostile(metric_with_helpers_of_its_own, lambda g: set()),
}
"""Hostile submissions, and at the end correct variants that a comparison must not refuse: a 0-d tensor or a
numpy float for a float, private attributes and helper methods of the student's own."""


# ----- the grading run ---------------------------------------------------------------------------


@dataclass
class GradingRun:
    out: Path
    submissions: Path
    command: list[str]
    environment: dict
    output: str
    graded: list[dict]
    outside_before: dict
    outside_after: dict
    watched: list[Path]
    submitted: dict[str, str]  # what dlvc submit printed, by group

    def results(self, name: str) -> dict:
        return json.loads((self.out / name / "results.json").read_text())

    def failed(self, name: str) -> set[str]:
        return {test["extra_data"]["nodeid"] for test in self.results(name)["tests"] if test["status"] == "failed" and "nodeid" in test["extra_data"]}

    def messages(self, name: str) -> dict[str, str]:
        return {test["extra_data"].get("nodeid", test["name"]): test["output"] for test in self.results(name)["tests"] if test["status"] == "failed"}

    def parts(self, name: str) -> dict[str, float]:
        return {part: values["score"] for part, values in self.results(name)["extra_data"]["parts"].items()}


def snapshot(folders: list[Path]) -> dict:
    """Every file under ``folders`` (the .git folder left out) with its size and modification time."""
    files = {}
    for folder in folders:
        for root, directories, names in os.walk(folder):
            directories[:] = [name for name in directories if name != ".git"]
            for name in names:
                path = Path(root) / name
                try:
                    status = path.lstat()
                except FileNotFoundError:
                    continue
                files[str(path)] = (status.st_size, status.st_mtime_ns)
    return files


def round_trip(archive: Path, assignment: int, base: Path, submissions: Path) -> dict[str, str]:
    """Unpack a handout zip, and pack it with its own ``dlvc submit`` as built and filled in.

    Returns what each ``dlvc submit`` printed, by group; the zips land in ``submissions``.
    The handout was checked as it was built, so the public tests run on the filled-in one only.
    """
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(base / "student")
    folder = base / "student" / handout_name(assignment)
    report = base / "student" / "report.pdf"
    report.write_bytes(b"%PDF-1.4\n%%EOF\n")
    printed = {}
    for group in ("handout", "filled"):
        if group == "filled":
            fill_in(folder / "dlvc", REPOSITORY_ROOT)
            for relative in load_manifest(assignment).notebooks:
                nbformat.write(make_student_notebook(read_notebook(REPOSITORY_ROOT / relative), relative, only=set()), folder / relative)
        command = [sys.executable, "-m", "dlvc.course.cli", "submit", "--group", group, "--report", str(report), "--out", str(submissions)]
        command += ["--no-tests"] if group == "handout" else []
        result = subprocess.run(command, cwd=folder, env=clean_environment(), capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, f"dlvc submit --group {group} failed:\n{result.stdout}\n{result.stderr}"
        printed[group] = result.stdout
    return printed


def build_class(assignment: int, submissions: Path, out: Path) -> None:
    submissions.mkdir()
    reference(submissions / "reference")
    for mutant in MUTANTS[assignment]:
        package = reference(submissions / f"mutant-{mutant.name}")
        apply_mutant(mutant, package)
        (package / "report.pdf").write_text("a report")


def build_hostile_class(submissions: Path, out: Path) -> None:
    submissions.mkdir()
    for name, hostile in HOSTILE.items():
        if hostile.build is snoop_and_tamper:
            snoop_and_tamper(submissions / f"hostile-{name}", out, submissions)
        else:
            hostile.build(submissions / f"hostile-{name}")
    for source in [path for path in submissions.iterdir() if path.name.endswith("-source")]:
        shutil.move(source, submissions.parent / source.name)


def grade_class(assignment: int, base: Path, handout: Path, worker_user_passes) -> GradingRun:
    """Build the class of ``assignment`` under ``base`` (with the round trip of ``handout``) and grade it."""
    submissions, out = base / "submissions", base / "grades"
    build_class(assignment, submissions, out)
    submitted = round_trip(handout, assignment, base, submissions)
    return grade(assignment, base, submissions, out, submitted, worker_user_passes)


def grade_hostile_class(base: Path, isolation: str, worker_user_passes) -> GradingRun:
    """Build the hostile class under ``base`` and grade it with Assignment 1's suite in one isolation mode."""
    submissions, out = base / "submissions", base / "grades"
    build_hostile_class(submissions, out)
    return grade(1, base, submissions, out, {}, worker_user_passes, ["--isolation", isolation])


def grade(assignment: int, base: Path, submissions: Path, out: Path, submitted: dict, worker_user_passes, options=()) -> GradingRun:
    """``dlvc grade`` on ``submissions``, HOME and TMPDIR watched, the repository and the submissions snapshotted.

    ``worker_user_passes`` (the fixture) opens pytest's folders to the worker user again, after the pytest runs
    that building the class started."""
    watched = [base / "home", base / "tmp"]
    for folder in watched:
        folder.mkdir()
    environment = {**os.environ, "HOME": str(watched[0]), "TMPDIR": str(watched[1])}
    command = [sys.executable, "-m", "dlvc.course.cli", "grade", str(submissions), "--assignment", str(assignment), "--out", str(out), "--jobs", "2", "--time-floor", "5", *options]
    outside = [REPOSITORY_ROOT, submissions]
    worker_user_passes(out)
    before = snapshot(outside)
    result = subprocess.run(command, cwd=REPOSITORY_ROOT, env=environment, capture_output=True, text=True, timeout=3600)
    after = snapshot(outside)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"dlvc grade failed:\n{output[-5000:]}"
    graded = json.loads((out / ".grading" / "graded-tests.json").read_text())
    return GradingRun(out, submissions, command, environment, output, graded, before, after, watched, submitted)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, handouts, worker_user_passes):
    """``runs(N)``: the grading run of assignment N's class, graded once for the whole module."""
    done = {}

    def run(assignment: int) -> GradingRun:
        if assignment not in done:
            done[assignment] = grade_class(assignment, tmp_path_factory.mktemp(f"class{assignment}"), handouts(assignment)[0], worker_user_passes)
        return done[assignment]

    return run


@pytest.fixture(scope="module")
def grading(runs) -> GradingRun:
    """Assignment 1's run."""
    return runs(1)


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory, worker_user_passes):
    """``hostile_runs(mode)``: the hostile class graded in one isolation mode, once for the whole module."""
    done = {}

    def run(isolation: str) -> GradingRun:
        require(isolation)
        if isolation not in done:
            done[isolation] = grade_hostile_class(tmp_path_factory.mktemp(f"hostile-{isolation}"), isolation, worker_user_passes)
        return done[isolation]

    return run


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_reference_build_gets_full_points_and_a_missing_report_costs_nothing(runs, assignment):
    grading = runs(assignment)
    results = grading.results("reference")
    assert not grading.failed("reference"), f"the reference build failed graded tests: {grading.messages('reference')}"
    assert results["score"] == MANIFESTS[assignment].total_points
    assert "report.pdf" in results["extra_data"]["missing"], "the reference submission has no report.pdf; the feedback must name it"
    assert "report.pdf" in (grading.out / "reference" / "feedback.md").read_text()


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_handout_as_built_and_submitted_gets_zero(runs, assignment):
    grading = runs(assignment)
    assert grading.results("group_handout")["score"] == 0
    assert grading.failed("group_handout") == every_test(grading.graded)
    assert f"TODO(s) of Assignment {assignment} still raise NotImplementedError" in grading.submitted["handout"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_handout_filled_in_and_submitted_gets_full_points(runs, assignment):
    grading = runs(assignment)
    results = grading.results("group_filled")
    assert not grading.failed("group_filled"), f"the filled-in handout failed graded tests: {grading.messages('group_filled')}"
    assert results["score"] == MANIFESTS[assignment].total_points and results["extra_data"]["missing"] == []
    counted = re.search(r"public tests: (\d+) of (\d+) passed", grading.submitted["filled"])
    assert counted and counted[1] == counted[2], f"dlvc submit said:\n{grading.submitted['filled']}"
    assert "warning" not in grading.submitted["filled"], grading.submitted["filled"]


@pytest.mark.parametrize("assignment, mutant", EVERY_MUTANT, ids=[f"assignment{number}-{mutant.name}" for number, mutant in EVERY_MUTANT])
def test_mutant_loses_points_in_its_own_part_only(runs, assignment, mutant):
    grading = runs(assignment)
    name = f"mutant-{mutant.name}"
    parts = grading.parts(name)
    lost = {part.id: part.points - parts[part.id] for part in MANIFESTS[assignment].parts if parts[part.id] < part.points}
    assert set(lost) == {mutant.part}, f"{mutant.name} ({mutant.mistake}) lost points in {lost or 'no part'}, expected in {mutant.part!r} only"
    for nodeid, message in grading.messages(name).items():
        assert "error of its own" not in message and "no verdict" not in message, f"{mutant.name}: {nodeid} reported {message!r}"


@pytest.mark.isolation
@pytest.mark.parametrize("isolation", SANDBOXES)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_submission_gets_exactly_the_points_it_earned(hostile_runs, isolation, name):
    hostile = HOSTILE[name]
    grading = hostile_runs(isolation)
    assert f"isolation {isolation}" in grading.output, f"the run did not grade with {isolation}:\n{grading.output[-2000:]}"
    results = grading.results(f"hostile-{name}")
    assert results["extra_data"]["isolation"] == isolation, f"results.json records the isolation {results['extra_data']['isolation']!r}"
    expected = hostile.fails(grading.graded)
    assert grading.failed(f"hostile-{name}") == expected, (
        f"{name}: failed {sorted(grading.failed(f'hostile-{name}') - expected)} unexpectedly, "
        f"passed {sorted(expected - grading.failed(f'hostile-{name}'))} unexpectedly"
    )
    earned = sum(test["points"] for test in grading.graded if test["nodeid"] not in expected)
    assert results["score"] == earned
    assert (results["extra_data"]["error"] is not None) == hostile.ungradable, f"{name}: error {results['extra_data']['error']!r}"
    if hostile.reason:
        shown = "\n".join(grading.messages(f"hostile-{name}").values()) + str(results["extra_data"]["error"])
        assert hostile.reason in shown, f"{name}: the feedback should give the reason {hostile.reason!r}; it says:\n{shown[:2000]}"


@pytest.mark.isolation
@pytest.mark.parametrize("isolation", SANDBOXES)
def test_grading_the_hostile_class_writes_nothing_outside_its_output_folder(hostile_runs, isolation):
    grading = hostile_runs(isolation)
    changed = {path for path in grading.outside_before.keys() | grading.outside_after.keys() if grading.outside_before.get(path) != grading.outside_after.get(path)}
    assert not changed, f"dlvc grade changed files outside --out: {sorted(changed)[:20]}"
    for folder in grading.watched:
        assert not any(folder.iterdir()), f"dlvc grade wrote into {folder}: {sorted(os.listdir(folder))}"
    canaries = [folder / f"tampered-{TOKEN}" for folder in tampered_folders(grading.out, grading.submissions)]
    canaries += [grading.out.parent / f"escaped-{TOKEN}.txt", Path("/tmp") / f"escaped-{TOKEN}.txt"]
    escaped = [path for path in canaries if path.exists()]
    assert not escaped, f"student code wrote {escaped}"


def test_grades_csv_has_a_row_per_submission_and_a_column_per_part(grading):
    lines = (grading.out / "grades.csv").read_text().splitlines()
    assert lines[0] == ",".join(["submission", *(part.id for part in MANIFESTS[1].parts), "total"])
    names = {line.split(",")[0] for line in lines[1:]}
    assert names == {path.name.removesuffix(".zip") for path in grading.submissions.iterdir()}
    assert (grading.out / "report.md").is_file() and (grading.out / "scores.png").read_bytes()[:4] == b"\x89PNG"


def test_results_record_the_seed_of_the_run(grading):
    seed = json.loads((grading.out / ".grading" / "run.json").read_text())["seed"]
    results = grading.results("reference")
    assert results["extra_data"]["seed"] == seed and all(test["extra_data"]["seed"] == seed for test in results["tests"])


def test_a_restarted_run_grades_only_what_was_left_and_agrees(grading):
    name = f"mutant-{MUTANTS[1][0].name}"
    before = grading.results(name)
    (grading.out / name / "results.json").unlink()
    result = subprocess.run(grading.command, cwd=REPOSITORY_ROOT, env=grading.environment, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    total = len(list(grading.submissions.iterdir()))
    assert f"{total} submission(s), {total - 1} already graded" in result.stderr, result.stderr[-2000:]
    after = grading.results(name)
    assert after["score"] == before["score"]
    assert [(test["name"], test["status"]) for test in after["tests"]] == [(test["name"], test["status"]) for test in before["tests"]]
