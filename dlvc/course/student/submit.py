"""``dlvc submit``: pack your group's submission zip, check it, and run the public tests on it.

    dlvc submit --group 7 --report ~/Documents/report.pdf

Run it in the folder you unpacked the handout into. It

1. reads the assignment's manifest (``assignments/assignment<N>/assignment.toml``;
   ``--assignment N`` where the folder holds more than one) for what a submission holds;
2. refuses, writing nothing, when the report or another file it names is missing
   (``--report`` takes the report from anywhere; otherwise ``report.pdf`` must lie
   here), when the report is not a PDF, or when a file it names is larger than
   200 MiB; a file the manifest marks optional (a competition entry) may be missing;
3. packs ``group_<G>.zip``: ``dlvc/`` and the manifest's files (a checkpoint the
   manifest names, such as ``competition/model.pt``, too), leaving out caches,
   checkpoints, datasets, run folders, hidden files and links elsewhere, and lists
   what it packed and what it left out;
4. warns about TODOs that still raise ``NotImplementedError`` and about a large zip;
5. unpacks the zip into a temporary folder and runs ``tests/public`` against that
   copy, so what is counted is what you hand in (``--no-tests`` skips this).

The exit status is 0 when the zip was written (failing tests are reported, not
refused), 2 when nothing was written.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .archive import collect_files, output_folder, write_zip
from .manifest import MAX_FILE_BYTES, Manifest, ManifestError, SubmissionFile, available_assignments, load_manifest
from .notebook import read_notebook

PACKAGE = "dlvc"
REPORT = "report.pdf"
GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
LARGE_ZIP_BYTES = 10 * 2**20
TEST_SECONDS = 1800
LEFT_OUT_FOLDERS = {
    "__pycache__": "caches",
    ".pytest_cache": "caches",
    ".ipynb_checkpoints": "caches",
    "data": "datasets",
    "runs": "run folders",
}
LEFT_OUT_SUFFIXES = {
    ".pyc": "caches",
    ".pt": "checkpoints",
    ".pth": "checkpoints",
    ".ckpt": "checkpoints",
    ".safetensors": "checkpoints",
    ".npy": "datasets",
    ".npz": "datasets",
    ".h5": "datasets",
    ".hdf5": "datasets",
    ".zip": "archives",
    ".tar": "archives",
    ".gz": "archives",
}
STUB = re.compile(r"NotImplementedError\(\s*['\"]TODO (?P<id>\S+) \((?P<part>[^)]+)\) in (?P<file>[^,]+), (?P<function>[^:]+):")
NAMED_TODO = re.compile(r"NotImplementedError: TODO (\S+) \(")


PYTHON_SETTINGS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONSAFEPATH", "DLVC_REFERENCE")


class SubmitError(Exception):
    """The submission cannot be packed; nothing was written. The message says what to do."""


@dataclass(frozen=True)
class Stub:
    """A TODO that still raises the NotImplementedError of its stub."""

    todo_id: str
    part: str
    file: str
    function: str


@dataclass
class Packing:
    """What goes into the zip, and what was left out and why."""

    files: dict[str, Path] = field(default_factory=dict)  # name in the zip -> file
    left_out: dict[str, list[str]] = field(default_factory=dict)  # reason -> paths
    absent: list[SubmissionFile] = field(default_factory=list)  # optional files of the manifest that are not there


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", required=True, help="your group's name or number: the zip is group_<GROUP>.zip")
    parser.add_argument("--report", type=Path, default=None, help=f"your report (a PDF), packed as {REPORT} (default: ./{REPORT})")
    parser.add_argument("--assignment", type=int, default=None, help="the assignment's number (default: the one under assignments/)")
    parser.add_argument("--root", type=Path, default=Path("."), help="the folder holding dlvc/ and the assignment (default: here)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the zip (default: --root)")
    parser.add_argument("--no-tests", action="store_true", help="pack and check the zip, but do not run the public tests")


def run(args: argparse.Namespace) -> int:
    try:
        root = Path(args.root).resolve()
        manifest = find_manifest(root, args.assignment)
        target = output_folder(Path(args.out or root)).resolve() / f"group_{check_group(args.group)}.zip"
        packing = pack(root, manifest, args.report)
    except (SubmitError, ManifestError, ValueError) as error:
        print(f"dlvc submit: {error}\nNothing was written.", file=sys.stderr)
        return 2
    replaced = target.is_file()
    write_zip(target, packing.files)
    print(f"{'replaced' if replaced else 'wrote'} {target} ({_size(target.stat().st_size)}), for Assignment {manifest.number}: {manifest.title}")
    for line in packed_lines(packing):
        print(line)
    for line in warnings(target, remaining_stubs(root / PACKAGE, [root / path for path in manifest.notebooks]), manifest):
        print(line)
    if not args.no_tests:
        for line in public_test_lines(target, root):
            print(line)
    return 0


def check_group(group: str) -> str:
    """The group name, when it is safe in a file name; SubmitError otherwise."""
    if not GROUP.match(group):
        raise SubmitError(f"--group: expected letters, digits, '-' or '_' (up to 64, starting with a letter or digit), got {group!r}")
    return group


def find_manifest(root: Path, assignment: int | None) -> Manifest:
    """The manifest of ``assignment``, or of the only assignment under ``root/assignments``."""
    if not (root / PACKAGE / "__init__.py").is_file():
        raise SubmitError(f"no {PACKAGE}/ package in {root}: run dlvc submit in the folder you unpacked the handout into, or pass --root")
    if assignment is not None:
        return load_manifest(assignment, root)
    found = available_assignments(root)
    if len(found) != 1:
        listed = ", ".join(map(str, found)) or "none"
        raise SubmitError(f"{root}/assignments holds {'no assignment' if not found else 'several assignments'} ({listed}); pass --assignment N")
    return load_manifest(found[0], root)


def pack(root: Path, manifest: Manifest, report: Path | None) -> Packing:
    """Everything the manifest asks for, with ``dlvc/``; SubmitError naming every missing file."""
    packing = Packing()
    missing = []
    for entry in manifest.submission:
        source = root / entry.path
        if entry.path == REPORT and report is not None:
            source = Path(report).expanduser().resolve()
            if not source.is_file():
                raise SubmitError(f"--report {report}: no such file")
        if entry.path.endswith("/"):
            if not source.is_dir():
                missing.append(entry)
                continue
            _add_folder(packing, source, entry.path.rstrip("/"))
        elif source.is_file():
            packing.files[entry.path] = _checked_size(entry, source)
        elif entry.optional:
            packing.absent.append(entry)
        else:
            missing.append(entry)
    if missing:
        listed = "\n".join(f"  {entry.path}: {entry.what}" for entry in missing)
        hint = f"\nPass your report with --report path/to/report.pdf, or put it here as {REPORT}." if any(e.path == REPORT for e in missing) else ""
        raise SubmitError(f"the submission of Assignment {manifest.number} needs these files, which are missing in {root}:\n{listed}{hint}")
    if REPORT in packing.files and not packing.files[REPORT].read_bytes()[:5] == b"%PDF-":
        raise SubmitError(f"{packing.files[REPORT]} is not a PDF file (it does not begin with %PDF-); export your report as a PDF")
    _add_folder(packing, root / PACKAGE, PACKAGE)
    return packing


def _checked_size(entry: SubmissionFile, source: Path) -> Path:
    """``source``, when it is at most ``MAX_FILE_BYTES`` large; SubmitError saying how to make it smaller otherwise."""
    size = source.stat().st_size
    if size <= MAX_FILE_BYTES:
        return source
    if source.suffix.lower() in (".pt", ".pth"):
        hint = (
            "Save the weights in half precision, which halves the file and loads into the same model:\n"
            "  torch.save({name: value.half() if value.is_floating_point() else value "
            "for name, value in model.state_dict().items()}, path)\n"
            "or train a smaller model (arch resnet18)."
        )
    else:
        hint = "Make it smaller (a PDF: export its figures at a lower resolution)."
    raise SubmitError(f"{entry.path} is {_size(size)}, more than the {_size(MAX_FILE_BYTES)} a submitted file may be. {hint}")


def _add_folder(packing: Packing, folder: Path, name: str) -> None:
    """Add ``folder``'s files as ``name/...``, leaving out what :func:`left_out_because` names."""

    def leave_out(relative: str) -> bool:
        reason = left_out_because(folder / relative.rstrip("/"))
        if reason:
            packing.left_out.setdefault(reason, []).append(f"{name}/{relative}")
        return reason is not None

    for relative, path in collect_files(folder, leave_out).items():
        packing.files[f"{name}/{relative}"] = path


def left_out_because(path: Path) -> str | None:
    """Why a file or folder stays out of the zip (caches, checkpoints, datasets, ...), or None when it goes in."""
    if path.is_symlink():
        return "links"
    if path.name.startswith(".") and path.name not in LEFT_OUT_FOLDERS:
        return "hidden files"
    if path.is_dir():
        return LEFT_OUT_FOLDERS.get(path.name)
    if not path.is_file():
        return "special files"
    return LEFT_OUT_SUFFIXES.get(path.suffix.lower())


def packed_lines(packing: Packing) -> list[str]:
    """The listing: every file packed with its size, then what was left out, by reason."""
    lines = [f"packed {len(packing.files)} files:"]
    lines += [f"  {name}  ({_size(path.stat().st_size)})" for name, path in packing.files.items()]
    for reason, paths in sorted(packing.left_out.items()):
        shown = ", ".join(paths[:5]) + (f", ... ({len(paths) - 5} more)" if len(paths) > 5 else "")
        lines.append(f"left out {reason}: {shown}")
    if packing.absent:
        lines.append("not there, and optional: " + "; ".join(f"{entry.path} ({entry.what})" for entry in packing.absent))
    return lines


def remaining_stubs(package: Path, notebooks: Sequence[Path] = ()) -> list[Stub]:
    """The TODOs whose stub still raises NotImplementedError in ``package`` (a ``dlvc/`` folder) and in ``notebooks``.

    A notebook's stubs are read from its code cells; a notebook that is missing or
    cannot be read holds none.
    """
    sources = [path.read_text(errors="replace") for path in sorted(Path(package).rglob("*.py")) if "__pycache__" not in path.parts]
    for path in notebooks:
        try:
            sources.append("\n".join(cell.source for cell in read_notebook(path).cells if cell.cell_type == "code"))
        except ValueError:
            continue
    return [Stub(match["id"], match["part"], match["file"], match["function"]) for source in sources for match in STUB.finditer(source)]


def warnings(target: Path, stubs: list[Stub], manifest: Manifest) -> list[str]:
    """Warnings for TODOs still stubbed (those of this assignment one by one) and for a large zip."""
    graded = {todo for part in manifest.parts for todo in part.todos}
    stubs = sorted(stubs, key=lambda stub: todo_order(stub.todo_id))
    here = [stub for stub in stubs if stub.todo_id in graded]
    others = [stub for stub in stubs if stub.todo_id not in graded]
    lines = []
    if here:
        lines.append(f"warning: {len(here)} TODO(s) of Assignment {manifest.number} still raise NotImplementedError, and score nothing:")
        lines += [f"  TODO {stub.todo_id} ({stub.part}) in {stub.file}, {stub.function}" for stub in here]
    if others:
        ids = ", ".join(stub.todo_id for stub in others)
        lines.append(f"note: TODO {ids} of other assignments still raise NotImplementedError (not graded in Assignment {manifest.number})")
    size, unnamed = target.stat().st_size, bytes_besides_named_files(target, manifest)
    if unnamed > LARGE_ZIP_BYTES:
        besides = "" if unnamed == size else f", {_size(unnamed)} of it besides the files the assignment names"
        lines.append(
            f"warning: {target.name} is {_size(size)}{besides}; a submission is usually well under 1 MiB. "
            "Look for checkpoints or data in the list above and move them out of the folders you submit."
        )
    return lines


def bytes_besides_named_files(target: Path, manifest: Manifest) -> int:
    """The compressed bytes of the zip's entries that the manifest does not name (a competition's weights may be large)."""
    named = {entry.path for entry in manifest.submission if not entry.path.endswith("/")}
    with zipfile.ZipFile(target) as archive:
        return sum(info.compress_size for info in archive.infolist() if info.filename not in named)


def public_test_lines(target: Path, root: Path) -> list[str]:
    """Run ``root/tests/public`` against the zip's own dlvc/, unpacked into a temporary folder; the summary."""
    tests = root / "tests" / "public"
    if not tests.is_dir():
        return [f"public tests: none found in {tests}; not run"]
    with tempfile.TemporaryDirectory(prefix="dlvc-submit-") as temporary:
        copy = Path(temporary)
        with zipfile.ZipFile(target) as archive:
            archive.extractall(copy)  # the zip this command just wrote, nobody else's
        shutil.copytree(tests, copy / "tests" / "public", ignore=shutil.ignore_patterns("__pycache__"))
        if (root / "pyproject.toml").is_file():
            shutil.copyfile(root / "pyproject.toml", copy / "pyproject.toml")
        report = copy / "public-tests.xml"
        print(f"running the public tests on the packed copy (at most {TEST_SECONDS // 60} min) ...", flush=True)
        try:
            result = run_public_tests(Path(sys.executable), copy, report, TEST_SECONDS)
        except subprocess.TimeoutExpired:
            return [f"public tests: did not finish within {TEST_SECONDS // 60} minutes (an endless loop?); the zip is written all the same"]
        if not report.is_file():
            return [f"public tests: pytest did not run (exit status {result.returncode}):", *result.stdout.splitlines()[-10:], *result.stderr.splitlines()[-10:]]
        return summarize_junit(report)


def run_public_tests(python: Path, folder: Path, report: Path, seconds: float) -> subprocess.CompletedProcess:
    """Run ``folder/tests/public`` with ``python`` from ``folder``, whose dlvc/ is imported; pytest's JUnit XML goes to ``report``.

    A module that fails to import fails its tests and the rest still run. The
    environment has no setting that would import another dlvc. TimeoutExpired after
    ``seconds``.
    """
    command = [str(python), "-m", "pytest", "tests/public", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors", "--junitxml", str(report)]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=seconds, env=clean_environment())


@dataclass(frozen=True)
class CaseOutcome:
    """One test case of a pytest JUnit report."""

    name: str
    failed: bool  # a failure or an error
    skipped: bool
    todo: str | None  # the TODO whose NotImplementedError the failure names


def junit_outcomes(report: Path) -> list[CaseOutcome]:
    """Every test case of the JUnit XML file pytest wrote (``--junitxml``)."""
    outcomes = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        problems = [element for element in case if element.tag in ("failure", "error")]
        text = "".join((element.get("message") or "") + (element.text or "") for element in problems)
        named = NAMED_TODO.search(text)
        name = ".".join(filter(None, (case.get("classname"), case.get("name"))))
        outcomes.append(CaseOutcome(name, bool(problems), case.find("skipped") is not None, named[1] if named else None))
    return outcomes


def clean_environment() -> dict[str, str]:
    """This process's environment without the settings that would make Python import another ``dlvc``."""
    return {key: value for key, value in os.environ.items() if key not in PYTHON_SETTINGS}


def summarize_junit(report: Path) -> list[str]:
    """How many public tests passed; the failing ones grouped by the TODO their error names."""
    outcomes = junit_outcomes(report)
    passed = sum(not outcome.failed and not outcome.skipped for outcome in outcomes)
    skipped = sum(outcome.skipped for outcome in outcomes)
    by_todo = Counter(outcome.todo for outcome in outcomes if outcome.failed and outcome.todo)
    other = [outcome.name for outcome in outcomes if outcome.failed and not outcome.todo]
    lines = [f"public tests: {passed} of {len(outcomes)} passed" + (f", {skipped} skipped" if skipped else "")]
    lines += [f"  {count} fail at TODO {todo} (still a stub)" for todo, count in sorted(by_todo.items(), key=lambda item: todo_order(item[0]))]
    if other:
        lines.append(f"  {len(other)} fail for other reasons: run `pytest tests/public` to see why")
        lines += [f"    {name}" for name in other[:10]]
    return lines


def todo_order(todo_id: str) -> tuple[tuple[int, ...], str]:
    """Sort key for TODO ids such as ``1.10``: by assignment, then by number (1.9 before 1.10)."""
    pieces = todo_id.split(".")
    if all(piece.isdigit() for piece in pieces):
        return tuple(int(piece) for piece in pieces), ""
    return (10**9,), todo_id


def _size(count: int) -> str:
    if count < 2**10:
        return f"{count} B"
    if count < 2**20:
        return f"{count / 2**10:.1f} KiB"
    return f"{count / 2**20:.1f} MiB"
