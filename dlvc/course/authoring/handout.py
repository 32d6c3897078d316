"""``dlvc handout``: build the zip that students receive, and check it before it is written.

    dlvc handout --assignment 2 --out dist/          # writes dist/dlvc-assignment2.zip

The zip holds one folder, ``dlvc-assignment<N>/``, with

- ``dlvc/``: the package as generated from ``solutions/`` (every TODO a stub; the
  build stops when ``dlvc stubs --check`` finds a stub out of date), with only the
  students' part of ``dlvc/course`` (``dlvc submit``);
- ``assignments/assignment<N>/``: the assignment's text and manifest, and its
  notebooks as students get them (solution regions stubbed, the cells tagged
  ``hidden`` removed, outputs cleared: :func:`~dlvc.course.authoring.stubs.make_student_notebook`);
- the scripts (``train.py``, ``train_segformer.py``, ``viz_pets.py``, ``compare_finetuning.py``);
- ``tests/public/``: the public tests of Assignments 1 to N (each assignment builds on
  the code of the ones before);
- ``README.md``, ``pyproject.toml``, ``Makefile`` and ``.gitignore`` for students, made
  from ``assignments/handout/`` and the pins of this repository's ``pyproject.toml``.

Never ``solutions/``, ``tests/hidden/``, the mutants, the kit's own tests or the
staff's commands. Before the zip is written, the folder it is made from is checked:

1. no file lies where the handout must hold none, and no file holds a line of a
   solution region (see :func:`leaks`);
2. the package installs from the handout's own ``pyproject.toml`` into a fresh
   virtual environment (offline: the environment sees this one's libraries), every
   module imports there, and its ``dlvc`` offers ``submit`` and no staff command;
3. the public tests, run in that environment, fail at the stubs that remain and
   nowhere else: every failure is the ``NotImplementedError`` of a TODO of
   Assignments 1 to N (so nothing the tests need is missing from the handout).

A failed check writes nothing and says what leaked or broke. The zip is
reproducible (:mod:`dlvc.course.student.archive`): built twice from one commit, it is the
same bytes.
"""

import argparse
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from string import Template

import nbformat

from ..student.archive import collect_files, output_folder, write_zip
from ..student.manifest import ManifestError, available_assignments, load_manifest
from ..student.notebook import read_notebook
from .stubs import BEGIN_MARKER, MarkerError, find_regions, generate_stubs, graded_notebooks, make_student_notebook, solution_files
from ..student.submit import clean_environment, junit_outcomes, remaining_stubs, run_public_tests, todo_order

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = Path("assignments") / "handout"
SCRIPTS = ("train.py", "train_segformer.py", "viz_pets.py", "compare_finetuning.py")
STUDENT_COURSE = ("__init__.py", "cli.py", "student")
"""What of dlvc/course a handout holds: the package, the `dlvc` command and the students' tools (student/)."""
STAFF_COMMANDS = ("stubs", "grade", "handout", "autograder", "leaderboard")
STUDENT_TEST_DEPENDENCIES = ("pytest",)
FORBIDDEN = ("solutions/", "tests/hidden/", "tests/conftest.py", "mutants/", ".git/", ".grading/")
LONG_LINE = 40  # a solution line this long is its own; shorter ones count when two of one region appear
SHORT_LINE = 12
STEP_SECONDS = 1200
CACHES = shutil.ignore_patterns("__pycache__", "*.pyc")


class HandoutError(Exception):
    """The handout cannot be built, or failed a check; nothing was written."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--assignment", type=int, required=True, help="the assignment's number")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write dlvc-assignment<N>.zip into")


def run(args: argparse.Namespace) -> int:
    try:
        target = build_handout(args.assignment, output_folder(args.out))
    except (HandoutError, ManifestError, ValueError, MarkerError) as error:
        print(f"dlvc handout: {error}\nNothing was written.", file=sys.stderr)
        return 2
    print(f"wrote {target}")
    return 0


def handout_name(assignment: int) -> str:
    return f"dlvc-assignment{assignment}"


def build_handout(assignment: int, out: Path, root: Path = REPOSITORY_ROOT) -> Path:
    """Lay out, check and zip the handout of ``assignment``; returns the zip's path."""
    with tempfile.TemporaryDirectory(prefix="dlvc-handout-") as temporary:
        work = Path(temporary)
        tree = lay_out(assignment, work / handout_name(assignment), root)
        problems = leaks(tree, root)
        if problems:
            raise HandoutError("the handout would give away what students must not see:\n  " + "\n  ".join(problems))
        print(f"dlvc handout: no solution line and no staff file in {len(collect_files(tree))} files", flush=True)
        python = check_install(tree, work)
        print("dlvc handout: the package installs and imports in a fresh virtual environment; `dlvc` offers submit only", flush=True)
        failing = check_public_tests(work / "install", python, expected_todos(assignment, root), work / "public-tests.xml")
        print(f"dlvc handout: every public test that fails, fails at a stub (TODO {', '.join(failing)})", flush=True)
        return write_zip(Path(out) / f"{handout_name(assignment)}.zip", collect_files(tree), top=handout_name(assignment))


# ----- what goes in ------------------------------------------------------------------------------


def lay_out(assignment: int, tree: Path, root: Path = REPOSITORY_ROOT) -> Path:
    """Copy what students receive into ``tree`` (created); returns it."""
    manifest = load_manifest(assignment, root)
    if not (root / "solutions").is_dir():
        raise HandoutError(f"no solutions/ in {root}: a handout is built in the course repository")
    stale = generate_stubs(root, check=True)
    if stale:
        raise HandoutError(f"these stubs are out of date with solutions/ (run `make stubs`): {', '.join(stale)}")
    tree.mkdir(parents=True)
    shutil.copytree(root / "dlvc", tree / "dlvc", ignore=_package_ignore(root))
    shutil.copytree(manifest.path.parent, tree / manifest.path.parent.relative_to(root), ignore=CACHES)
    for relative in manifest.notebooks:
        nbformat.write(make_student_notebook(read_notebook(root / relative), relative), tree / relative)
    for script in SCRIPTS:
        shutil.copy2(root / script, tree / script)
    tests = public_tests(assignment, root)
    for relative in tests:
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, tree / relative)
    write_student_files(tree, manifest.number, manifest.title, root)
    uncommitted = uncommitted_files(root, ["dlvc", str(manifest.path.parent.relative_to(root)), *SCRIPTS, *tests])
    if uncommitted:
        shown = ", ".join(uncommitted[:10]) + (f", ... ({len(uncommitted) - 10} more)" if len(uncommitted) > 10 else "")
        print(f"dlvc handout: warning: the handout holds files that differ from the last commit: {shown}", file=sys.stderr)
    return tree


def uncommitted_files(root: Path, paths: list[str]) -> list[str]:
    """Of ``paths`` under ``root``, the files that are new or changed since the last commit; [] outside a git checkout.

    A handout is the same bytes whenever it is built from one commit; these files would
    make it differ, so ``dlvc handout`` names them.
    """
    command = ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all", "--", *paths]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if result.returncode != 0:
        return []
    return sorted(line[3:] for line in result.stdout.splitlines() if line[3:] and not line[3:].endswith((".pyc", "/")))


def _package_ignore(root: Path):
    """shutil.copytree's ignore for dlvc/: caches, and of dlvc/course everything but the students' modules."""
    course = (root / "dlvc" / "course").resolve()

    def ignore(folder: str, names: list[str]) -> list[str]:
        ignored = CACHES(folder, names)
        if Path(folder).resolve() == course:
            ignored |= {name for name in names if name not in STUDENT_COURSE}
        return ignored

    return ignore


def public_tests(assignment: int, root: Path = REPOSITORY_ROOT) -> list[str]:
    """The public test files of Assignments 1 to ``assignment``, as paths relative to ``root``."""
    files = []
    for number in available_assignments(root):
        if number <= assignment:
            files += [path for part in load_manifest(number, root).parts for path in part.public_tests if path not in files]
    return sorted(files)


def expected_todos(assignment: int, root: Path = REPOSITORY_ROOT) -> set[str]:
    """The TODOs of Assignments 1 to ``assignment``: where the handout's public tests must fail."""
    return {todo for number in available_assignments(root) if number <= assignment for part in load_manifest(number, root).parts for todo in part.todos}


def write_student_files(tree: Path, number: int, title: str, root: Path = REPOSITORY_ROOT) -> None:
    """README.md, pyproject.toml, Makefile and .gitignore from ``assignments/handout/``."""
    project = tomllib.loads((root / "pyproject.toml").read_text())
    values = {
        "number": str(number),
        "title": title,
        "version": json.dumps(project["project"]["version"]),
        "description": json.dumps(f"Assignment {number} of the dlvc course: {title}"),
        "dependencies": _toml_list(project["project"]["dependencies"]),
        "test_dependencies": _toml_list(extra_pins(project, STUDENT_TEST_DEPENDENCIES)),
        "markers": _toml_list(project["tool"]["pytest"]["ini_options"]["markers"]),
    }
    templates = root / TEMPLATES
    for name in ("README.md", "pyproject.toml"):
        text = Template((templates / name).read_text()).substitute(values)
        (tree / name).write_text(text)
    shutil.copyfile(templates / "Makefile", tree / "Makefile")
    shutil.copyfile(templates / "gitignore", tree / ".gitignore")


def extra_pins(project: dict, names: tuple[str, ...]) -> list[str]:
    """The pins of ``names`` in the test extra (``[project.optional-dependencies] test``) of a parsed ``pyproject.toml``."""
    return [pin for pin in project["project"]["optional-dependencies"]["test"] if requirement_name(pin) in names]


def requirement_name(pin: str) -> str:
    """The distribution's name in a requirement: ``torch`` of ``torch==2.14.1``."""
    return pin.split("=")[0].split("<")[0].split(">")[0].split("[")[0].strip()


def _toml_list(values: list[str]) -> str:
    return "\n".join(f"    {json.dumps(value)}," for value in values)


# ----- check 1: nothing leaks --------------------------------------------------------------------


@dataclass(frozen=True)
class SolutionLine:
    text: str  # whitespace-normalised
    where: str  # solutions/<file>:<line>
    region: str  # solutions/<file>:<first line of the region>


def solution_lines(root: Path = REPOSITORY_ROOT) -> list[SolutionLine]:
    """The code lines of every solution region that the stubbed package does not hold too.

    The regions are those of ``solutions/`` and of the code cells of the graded
    notebooks. A line that also appears in ``dlvc/`` (the stubs and the modules
    without solutions) is given to students anyway, so it cannot give anything away.
    """
    public = {_normalised(line) for path in (root / "dlvc").rglob("*.py") for line in path.read_text().splitlines()}
    found = []
    for name, text in solution_sources(root):
        lines = text.splitlines()
        for region in find_regions(text, name):
            for number in range(region.begin + 1, region.end):
                line = _normalised(lines[number - 1])
                if len(line) >= SHORT_LINE and not line.startswith("#") and line not in public:
                    found.append(SolutionLine(line, f"{name}:{number}", f"{name}:{region.begin}"))
    return found


def solution_sources(root: Path = REPOSITORY_ROOT) -> list[tuple[str, str]]:
    """(name, source) of every solution file and of every code cell with a solution region of a graded notebook."""
    sources = [(f"solutions/{relative.as_posix()}", (root / "solutions" / relative).read_text()) for relative in solution_files(root)]
    for relative in graded_notebooks(root):
        cells = read_notebook(root / relative).cells
        sources += [(f"{relative}, cell {index}", cell.source + "\n") for index, cell in enumerate(cells, start=1) if cell.cell_type == "code" and BEGIN_MARKER in cell.source]
    return sources


def text_lines(path: Path) -> list[str]:
    """The lines of a text file; of a notebook, the lines of its cells. UnicodeDecodeError for a binary file."""
    if path.suffix == ".ipynb":
        try:
            return [line for cell in read_notebook(path).cells for line in cell.source.splitlines()]
        except ValueError:
            pass  # not a notebook after all: read as text
    return path.read_text().splitlines()


def leaks(tree: Path, root: Path = REPOSITORY_ROOT) -> list[str]:
    """What the laid-out handout must not hold: forbidden paths, and solution lines.

    A text file leaks a solution region when it holds one of the region's lines of at
    least LONG_LINE characters, or two of its lines of at least SHORT_LINE (short ones
    alone, such as ``with torch.inference_mode():``, are common Python).
    """
    files = collect_files(tree)
    problems = [f"{name}: the handout holds no {prefix}" for name in files for prefix in FORBIDDEN if name.startswith(prefix) or f"/{prefix}" in f"/{name}"]
    course = sorted(name for name in files if name.startswith("dlvc/course/") and name.removeprefix("dlvc/course/").split("/")[0] not in STUDENT_COURSE)
    problems += [f"{name}: a staff module (dlvc/course holds {', '.join(STUDENT_COURSE)} only)" for name in course]
    secret = solution_lines(root)
    for name, path in files.items():
        try:
            held = {_normalised(line) for line in text_lines(path)}
        except UnicodeDecodeError:
            continue  # images and other binary files
        matched = [line for line in secret if line.text in held]
        per_region: dict[str, list[SolutionLine]] = {}
        for line in matched:
            per_region.setdefault(line.region, []).append(line)
        for lines in per_region.values():
            if any(len(line.text) >= LONG_LINE for line in lines) or len({line.text for line in lines}) >= 2:
                problems.append(f"{name} holds {len(lines)} line(s) of the solution region at {lines[0].region}, such as {lines[0].text!r} ({lines[0].where})")
    return problems


def _normalised(line: str) -> str:
    return " ".join(line.split())


# ----- check 2: it installs and imports ----------------------------------------------------------


def check_install(tree: Path, work: Path) -> Path:
    """Install a copy of ``tree`` into a fresh virtual environment; returns its Python.

    The environment is made without pip and installs nothing from a network: a
    ``.pth`` file lets it see this Python's libraries (pip and setuptools among
    them), and pip installs with ``--no-index``, so a pin that this environment
    does not satisfy fails the check. The installed package must import
    whole from outside the tree, and its ``dlvc`` must offer no staff command.
    """
    copy = work / "install"
    shutil.copytree(tree, copy)
    venv = work / "venv"
    _step([sys.executable, "-m", "venv", "--without-pip", str(venv)], "create a virtual environment", work)
    python = venv / "bin" / "python"
    site_packages = Path(_step([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], "find its site-packages", work).strip())
    (site_packages / "dlvc-handout-check.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _step([str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation", f"{copy}[test]"], "install the handout with pip", work)
    imports = (
        "import importlib, pkgutil, dlvc\n"
        "[importlib.import_module(module.name) for module in pkgutil.walk_packages(dlvc.__path__, 'dlvc.')]\n"
        "print(dlvc.__file__)\n"
    )
    imported = Path(_step([str(python), "-c", imports], "import every module of the installed package", work).strip())
    if not imported.is_relative_to(venv):
        raise HandoutError(f"the fresh environment imported dlvc from {imported}, not from its own installation")
    usage = _step([str(venv / "bin" / "dlvc"), "--help"], "run the installed `dlvc --help`", work)
    offered = usage.split("{", 1)[1].split("}", 1)[0].split(",") if "{" in usage else []
    if "submit" not in offered or any(command in offered for command in STAFF_COMMANDS):
        raise HandoutError(f"the handout's `dlvc` offers {offered}; it must offer submit and none of {', '.join(STAFF_COMMANDS)}")
    return python


def _step(command: list[str], what: str, cwd: Path) -> str:
    """Run one step of a check; its standard output, or HandoutError with its output's end."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=STEP_SECONDS, env=clean_environment())
    except subprocess.TimeoutExpired:
        raise HandoutError(f"could not {what}: it took more than {STEP_SECONDS} s") from None
    if result.returncode != 0:
        raise HandoutError(f"could not {what} (exit status {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
    return result.stdout


# ----- check 3: the public tests fail at the stubs, and only there -------------------------------


def check_public_tests(tree: Path, python: Path, expected: set[str], report: Path) -> list[str]:
    """Run the public tests of the handout laid out in ``tree`` with ``python``; HandoutError unless every failure is at a stub.

    Each failing test must fail with the NotImplementedError of a TODO of ``expected``
    (Assignments 1 to N), which the handout must still hold as a stub: a test that
    fails for any other reason (a module, file or fixture missing from the handout)
    stops the build. That each TODO on its own fails a public test is proven in the
    course repository (``tests/test_public_suite.py``). ``report`` is where pytest
    writes its JUnit XML. Returns the TODOs the failures name, in order.
    """
    notebooks = sorted((tree / "assignments").rglob("*.ipynb"))
    left = {stub.todo_id for stub in remaining_stubs(tree / "dlvc", notebooks)}
    if not expected <= left:
        raise HandoutError(f"TODO {', '.join(sorted(expected - left, key=todo_order))} should be stubs in the handout, and are not")
    try:
        run_public_tests(python, tree, report, STEP_SECONDS)
    except subprocess.TimeoutExpired:
        raise HandoutError(f"the public tests took more than {STEP_SECONDS} s on the handout") from None
    if not report.is_file():
        raise HandoutError("the public tests did not run on the handout (no report from pytest)")
    outcomes = junit_outcomes(report)
    strangers = [outcome.name for outcome in outcomes if outcome.failed and outcome.todo not in expected]
    if strangers:
        raise HandoutError("these public tests fail on the handout, and not at a stub of its assignments:\n  " + "\n  ".join(strangers))
    named = {outcome.todo for outcome in outcomes if outcome.failed}
    if not named:
        raise HandoutError(f"no public test fails on the handout, though TODO {', '.join(sorted(expected, key=todo_order))} are stubs")
    return sorted(named, key=todo_order)
