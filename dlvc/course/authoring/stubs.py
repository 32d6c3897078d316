"""Generate the student stubs in ``dlvc/`` from the reference source in ``solutions/``.

A solution file marks each part that students write between two comment lines::

    # TODO 1.2 (Assignment 1, part 1): add the batch to the confusion matrix.
    # Fill `self.confusion` (C, C) ... about 5 lines.
    # BEGIN SOLUTION
    ...reference code...
    # END SOLUTION

The generated stub keeps every line outside the markers, the TODO comment included,
and replaces each region by a ``raise NotImplementedError`` that names the TODO, its
assignment part, the file and the function. A region must sit inside one function,
be preceded by a ``# TODO <id> (<assignment part>): <what to do>`` comment, and
hold at least one line; nested, unterminated or misplaced markers stop the build
with the file and line.
"""

import argparse
import ast
import copy
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..student.manifest import available_assignments, load_manifest
from ..student.notebook import read_notebook, write_notebook_module

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]

BEGIN_MARKER = "# BEGIN SOLUTION"
END_MARKER = "# END SOLUTION"
HIDDEN_CELL_TAG = "hidden"
"""A notebook cell with this tag is the instructors' own and stays out of the student notebook."""
TODO_PATTERN = re.compile(r"^# TODO (?P<id>\S+) \((?P<part>[^)]+)\): (?P<text>.+)$")


class MarkerError(ValueError):
    """A solution marker is malformed or misplaced; the message names file and line."""

    def __init__(self, filename: str, line: int, message: str):
        super().__init__(f"{filename}:{line}: {message}")
        self.filename = filename
        self.line = line


@dataclass(frozen=True)
class Region:
    """One solution region; lines are 1-based and include the marker lines."""

    begin: int
    end: int
    indent: str
    todo_id: str
    part: str
    text: str
    function: str


def _function_spans(tree: ast.Module) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every function in the module."""
    spans = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    spans.append((child.lineno, child.end_lineno, name))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return spans


def _enclosing_function(spans, line: int) -> str | None:
    """The innermost function whose body contains ``line``."""
    inside = [span for span in spans if span[0] < line <= span[1]]
    if not inside:
        return None
    return max(inside, key=lambda span: span[0])[2]


def _todo_above(lines: list[str], begin_index: int, indent: str, filename: str):
    """The TODO comment in the comment block right above a BEGIN marker."""
    index = begin_index - 1
    while index >= 0 and lines[index].strip().startswith("#"):
        stripped = lines[index].strip()
        if stripped.startswith("# TODO"):
            match = TODO_PATTERN.match(stripped)
            if match is None or not lines[index].startswith(indent):
                raise MarkerError(
                    filename,
                    index + 1,
                    "a TODO comment must read '# TODO <id> (<assignment part>): <what to do>'"
                    f" at the marker's indentation, got {stripped!r}",
                )
            return match
        index -= 1
    raise MarkerError(
        filename,
        begin_index + 1,
        f"'{BEGIN_MARKER}' needs a '# TODO <id> (<assignment part>): <what to do>' comment right above it",
    )


def find_regions(source: str, filename: str) -> list[Region]:
    """All solution regions of ``source``, checked; raises MarkerError on the first fault."""
    lines = source.splitlines()
    try:
        spans = _function_spans(ast.parse(source, filename=filename))
    except SyntaxError as error:
        raise MarkerError(filename, error.lineno or 0, f"not valid Python: {error.msg}") from None
    regions = []
    open_line = None
    for index, line in enumerate(lines):
        stripped = line.strip()
        number = index + 1
        is_begin = stripped.startswith("# BEGIN SOLUTION")
        is_end = stripped.startswith("# END SOLUTION")
        if not (is_begin or is_end):
            continue
        if stripped not in (BEGIN_MARKER, END_MARKER):
            raise MarkerError(filename, number, f"malformed marker {stripped!r}; write it exactly as '{BEGIN_MARKER}' or '{END_MARKER}'")
        indent = line[: len(line) - len(line.lstrip())]
        if is_begin:
            if open_line is not None:
                raise MarkerError(filename, number, f"nested '{BEGIN_MARKER}': the region opened on line {open_line} is not closed")
            open_line = number
            continue
        if open_line is None:
            raise MarkerError(filename, number, f"'{END_MARKER}' without a '{BEGIN_MARKER}' before it")
        begin_line = lines[open_line - 1]
        begin_indent = begin_line[: len(begin_line) - len(begin_line.lstrip())]
        if indent != begin_indent:
            raise MarkerError(filename, number, f"'{END_MARKER}' is indented differently from its '{BEGIN_MARKER}' on line {open_line}")
        if number == open_line + 1:
            raise MarkerError(filename, open_line, "empty solution region")
        function = _enclosing_function(spans, open_line)
        if function is None:
            raise MarkerError(filename, open_line, "a solution region must sit inside a function body")
        code_lines = [n for n in range(open_line + 1, number) if lines[n - 1].strip() and not lines[n - 1].strip().startswith("#")]
        if code_lines and _enclosing_function(spans, code_lines[-1]) != function:
            raise MarkerError(filename, number, f"the region opened on line {open_line} in {function} must close in the same function")
        todo = _todo_above(lines, open_line - 1, begin_indent, filename)
        regions.append(Region(open_line, number, begin_indent, todo["id"], todo["part"], todo["text"], function))
        open_line = None
    if open_line is not None:
        raise MarkerError(filename, open_line, f"unterminated region: no '{END_MARKER}' after this '{BEGIN_MARKER}'")
    return regions


def stub_message(region: Region, relpath: str) -> str:
    """The NotImplementedError message that replaces ``region`` in ``relpath``."""
    return f"TODO {region.todo_id} ({region.part}) in {relpath}, {region.function}: {region.text}"


def make_stub(source: str, relpath: str, only: set[str] | None = None) -> str:
    """The student stub of one solution file.

    Args:
        source: the solution file's text.
        relpath: its path in the package, as students see it (``dlvc/metrics.py``).
        only: stub just the regions with these TODO ids and keep the others' solution
            (to check that the tests catch each stub on its own); None stubs all.
    """
    regions = find_regions(source, relpath)
    if not regions:
        raise MarkerError(relpath, 1, f"a solution file needs at least one '{BEGIN_MARKER}' region")
    lines = source.splitlines(keepends=True)
    out = []
    previous_end = 0
    for region in regions:
        if only is not None and region.todo_id not in only:
            continue
        out.extend(lines[previous_end : region.begin - 1])
        out.append(f"{region.indent}raise NotImplementedError(\n")
        out.append(f"{region.indent}    {stub_message(region, relpath)!r}\n")
        out.append(f"{region.indent})\n")
        previous_end = region.end
    out.extend(lines[previous_end:])
    return "".join(out)


def without_markers(source: str) -> str:
    """A solution file's text with its marker lines removed: the reference code as a student would write it."""
    return "".join(line for line in source.splitlines(keepends=True) if line.strip() not in (BEGIN_MARKER, END_MARKER))


def fill_in(package: Path, root: Path) -> None:
    """Write the reference code of every solution file of ``root`` into ``package`` (a ``dlvc/`` folder), markers removed."""
    for relative in solution_files(root):
        (Path(package) / relative).write_text(without_markers((Path(root) / "solutions" / relative).read_text()))


def solution_files(root: Path) -> list[Path]:
    """Every solution file under ``root/solutions``, relative to that folder."""
    solutions = root / "solutions"
    return sorted(path.relative_to(solutions) for path in solutions.rglob("*.py"))


def generate_stubs(root: Path, package: str = "dlvc", check: bool = False) -> list[str]:
    """Write ``root/<package>/<path>`` for every ``root/solutions/<path>``.

    Args:
        root: the repository root, holding ``solutions/`` and the package.
        package: the package folder's name.
        check: compare only; write nothing.

    Returns:
        The package paths whose stub differed from the generated one (all of them
        were rewritten unless ``check``).
    """
    root = Path(root)
    if not (root / "solutions").is_dir():
        raise FileNotFoundError(f"no solutions/ folder in {root}: stubs are generated from it")
    changed = []
    for relative in solution_files(root):
        relpath = f"{package}/{relative.as_posix()}"
        stub = make_stub((root / "solutions" / relative).read_text(), relpath)
        target = root / package / relative
        if not target.is_file() or target.read_text() != stub:
            changed.append(relpath)
            if not check:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(stub)
    return changed


def make_student_notebook(notebook: nbformat.NotebookNode, relpath: str, only: set[str] | None = None) -> nbformat.NotebookNode:
    """The student notebook of a solution notebook (a new one; ``notebook`` is left as it is).

    Cells tagged ``hidden`` (the instructors' own checks) are removed, every solution
    region of a code cell becomes a stub as in the ``.py`` files (its message names
    ``relpath``; ``only`` as for :func:`make_stub`), and outputs and execution counts
    are cleared.
    """
    student = copy.deepcopy(notebook)
    student.cells = [cell for cell in student.cells if HIDDEN_CELL_TAG not in cell.metadata.get("tags", [])]
    for cell in student.cells:
        if cell.cell_type != "code":
            continue
        if any(line.strip() == BEGIN_MARKER for line in cell.source.splitlines()):
            cell.source = make_stub(cell.source + "\n", relpath, only).rstrip("\n")
        cell.outputs = []
        cell.execution_count = None
    return student


def graded_notebooks(root: Path) -> list[str]:
    """The notebooks that the manifests of ``root`` grade, as paths relative to ``root``."""
    return [path for number in available_assignments(root) for path in load_manifest(number, root).notebooks]


def copy_package(root: Path, target: Path, package: str = "dlvc", reference: bool = True) -> Path:
    """Copy ``root/<package>`` to ``target/<package>``; returns ``target``.

    With ``reference`` the solution files are laid over the copy (the reference
    build as a plain package, markers and all: they are comments); without it the
    copy holds the stubs, as students receive them. Caches are left out. Each
    graded notebook is copied to its place under ``target/assignments/`` (the
    solution notebook, or without ``reference`` the student notebook), as a
    submission holds it, and its definitions go to ``target/notebooks/<name>.py``.
    """
    root, target = Path(root), Path(target)
    shutil.copytree(root / package, target / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if reference:
        for relative in solution_files(root):
            shutil.copyfile(root / "solutions" / relative, target / package / relative)
    for relative in graded_notebooks(root):
        notebook = read_notebook(root / relative)
        if not reference:
            notebook = make_student_notebook(notebook, relative)
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target / relative)
        write_notebook_module(notebook, Path(relative).stem, target)
    return target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=REPOSITORY_ROOT, help="repository root holding solutions/ and dlvc/ (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any stub differs from what solutions/ generates")


def run(args: argparse.Namespace) -> int:
    """``dlvc stubs``: write the stubs, or with ``--check`` list those that are out of date."""
    try:
        changed = generate_stubs(args.root, check=args.check)
    except (MarkerError, FileNotFoundError) as error:
        print(f"dlvc stubs: {error}", file=sys.stderr)
        return 2
    if args.check:
        for path in changed:
            print(f"out of date: {path} (run `dlvc stubs`)")
        return 1 if changed else 0
    for path in changed:
        print(f"wrote {path}")
    print(f"{len(changed)} stub file(s) written" if changed else "stubs are up to date")
    return 0
