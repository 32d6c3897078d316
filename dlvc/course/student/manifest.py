"""The points of an assignment, in one place: ``assignments/assignment<N>/assignment.toml``.

A manifest names the assignment's parts (an id, the number the TODO comments use,
a title, the points, the TODOs and files it covers, the public tests that check
it) and the files a submission must hold besides the ``dlvc/`` package. TODOs are
numbered in the order students work: ``<assignment>.1``, ``<assignment>.2``, ... through
the parts as listed. The graded tests' markers, the README's
table and ``dlvc grade`` read it, and tests fail when they drift apart::

    number = 1
    title = "Segmenting pets"

    [[parts]]
    id = "metric"
    number = 1
    title = "The confusion-matrix metric"
    points = 8
    todos = ["1.1", "1.2", "1.3"]
    files = ["dlvc/metrics.py"]
    public_tests = ["tests/public/test_metrics_public.py"]

    [[submission]]
    path = "report.pdf"
    what = "the report (graded by hand)"
    points = 0            # what a missing file costs; a file with points names its part

    [[submission]]
    path = "competition/model.pt"
    what = "the weights of your entry in the class competition"
    points = 0
    optional = true       # a submission may leave it out: nothing is missing then

A file a manifest names may be up to :data:`MAX_FILE_BYTES` large: ``dlvc submit``
refuses a larger one, saying what to do, and the grader's staging accepts one.

The file is read with the standard library's ``tomllib``; a malformed manifest
raises :class:`ManifestError` naming the file and the key.
"""

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
ASSIGNMENTS_DIRNAME = "assignments"
MANIFEST_NAME = "assignment.toml"
PART_ID = re.compile(r"^[a-z][a-z0-9_-]*$")
MAX_FILE_BYTES = 200 * 2**20
"""The largest file a manifest's ``[[submission]]`` entry may be (a competition entry's weights)."""


class ManifestError(ValueError):
    """A manifest is missing or malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Part:
    """One graded part of an assignment."""

    id: str
    number: int
    title: str
    points: float
    todos: tuple[str, ...]
    files: tuple[str, ...]
    public_tests: tuple[str, ...]


@dataclass(frozen=True)
class SubmissionFile:
    """A file (or, ending in ``/``, a folder) that a submission must hold besides ``dlvc/``.

    ``optional``: the submission may leave it out (a competition entry); when it is
    there, it is packed and staged like any other.
    """

    path: str
    what: str
    points: float
    part: str | None
    optional: bool = False


@dataclass(frozen=True)
class Manifest:
    """An assignment's parts and the files a submission holds."""

    number: int
    title: str
    parts: tuple[Part, ...]
    submission: tuple[SubmissionFile, ...]
    path: Path

    @property
    def total_points(self) -> float:
        return sum(part.points for part in self.parts)

    def part(self, part_id: str) -> Part:
        """The part with this id; ManifestError naming the known ids otherwise."""
        for part in self.parts:
            if part.id == part_id:
                return part
        raise ManifestError(f"{self.path}: no part {part_id!r}; the parts are {', '.join(p.id for p in self.parts)}")

    @property
    def notebooks(self) -> tuple[str, ...]:
        """The notebooks among the parts' files (graded from their code cells), in order."""
        return tuple(dict.fromkeys(path for part in self.parts for path in part.files if path.endswith(".ipynb")))

    def part_of_todo(self, todo_id: str) -> Part | None:
        """The part covering TODO ``todo_id``, or None."""
        return next((part for part in self.parts if todo_id in part.todos), None)


def manifest_path(assignment: int | str, root: Path = REPOSITORY_ROOT) -> Path:
    """``root/assignments/assignment<N>/assignment.toml``."""
    return Path(root) / ASSIGNMENTS_DIRNAME / f"assignment{assignment}" / MANIFEST_NAME


def available_assignments(root: Path = REPOSITORY_ROOT) -> list[int]:
    """The numbers of the assignments that have a manifest, in order."""
    found = []
    for path in (Path(root) / ASSIGNMENTS_DIRNAME).glob(f"assignment*/{MANIFEST_NAME}"):
        suffix = path.parent.name.removeprefix("assignment")
        if suffix.isdigit():
            found.append(int(suffix))
    return sorted(found)


def load_manifest(assignment: int | str, root: Path = REPOSITORY_ROOT) -> Manifest:
    """Read and check the manifest of assignment ``assignment`` (its number)."""
    path = manifest_path(assignment, root)
    if not path.is_file():
        known = ", ".join(map(str, available_assignments(root))) or "none"
        raise ManifestError(f"assignment {assignment}: no manifest at {path} (assignments with one: {known})")
    return parse_manifest(path)


def parse_manifest(path: Path) -> Manifest:
    """Read and check one manifest file."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as error:
        raise ManifestError(f"{path}: not valid TOML: {error}") from None
    check = _Checker(path)
    number = check.integer(data, "number")
    title = check.text(data, "title")
    parts = tuple(_parse_part(check, entry, index) for index, entry in enumerate(check.tables(data, "parts")))
    if not parts:
        raise ManifestError(f"{path}: [[parts]]: expected at least one part")
    check.unique("parts: id", [part.id for part in parts])
    check.unique("parts: number", [part.number for part in parts])
    check.unique("parts: todos (a TODO belongs to exactly one part)", [todo for part in parts for todo in part.todos])
    _check_work_order(path, number, parts)
    part_ids = {part.id for part in parts}
    submission = tuple(
        _parse_submission_file(check, entry, index, part_ids)
        for index, entry in enumerate(check.tables(data, "submission", required=False))
    )
    check.unique("submission: path", [entry.path for entry in submission])
    return Manifest(number, title, parts, submission, Path(path))


def _check_work_order(path: Path, number: int, parts: tuple[Part, ...]) -> None:
    """TODO ids run ``<number>.1``, ``<number>.2``, ... through the parts in the order listed."""
    listed = [todo for part in parts for todo in part.todos]
    expected = [f"{number}.{index}" for index in range(1, len(listed) + 1)]
    if listed != expected:
        raise ManifestError(
            f"{path}: parts: todos: expected the TODOs numbered in work order, {', '.join(expected)}, "
            f"through the parts as listed; got {', '.join(listed)}"
        )


def _parse_part(check: "_Checker", entry: dict, index: int) -> Part:
    where = f"parts[{index}]"
    part_id = check.text(entry, "id", where)
    if not PART_ID.match(part_id):
        raise ManifestError(f"{check.path}: {where}.id: expected lower-case letters, digits, '-' or '_', got {part_id!r}")
    return Part(
        id=part_id,
        number=check.integer(entry, "number", where),
        title=check.text(entry, "title", where),
        points=check.points(entry, "points", where, positive=True),
        todos=check.texts(entry, "todos", where),
        files=check.texts(entry, "files", where),
        public_tests=check.texts(entry, "public_tests", where),
    )


def _parse_submission_file(check: "_Checker", entry: dict, index: int, part_ids: set[str]) -> SubmissionFile:
    where = f"submission[{index}]"
    points = check.points(entry, "points", where, positive=False)
    part = entry.get("part")
    if points > 0 and part not in part_ids:
        raise ManifestError(
            f"{check.path}: {where}.part: a file with points names the part they count in, one of {sorted(part_ids)}; got {part!r}"
        )
    optional = entry.get("optional", False)
    if not isinstance(optional, bool):
        raise ManifestError(f"{check.path}: {where}.optional: expected true or false, got {optional!r}")
    return SubmissionFile(check.text(entry, "path", where), check.text(entry, "what", where), points, part, optional)


class _Checker:
    """Typed reads of manifest keys, each raising ManifestError with the file and key."""

    def __init__(self, path: Path):
        self.path = path

    def _fail(self, where: str, key: str, expected: str, value) -> ManifestError:
        prefix = f"{where}.{key}" if where else key
        return ManifestError(f"{self.path}: {prefix}: expected {expected}, got {value!r}")

    def _get(self, table: dict, key: str, where: str):
        if key not in table:
            raise ManifestError(f"{self.path}: {where + '.' if where else ''}{key}: missing")
        return table[key]

    def integer(self, table: dict, key: str, where: str = "") -> int:
        value = self._get(table, key, where)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self._fail(where, key, "a positive integer", value)
        return value

    def text(self, table: dict, key: str, where: str = "") -> str:
        value = self._get(table, key, where)
        if not isinstance(value, str) or not value.strip():
            raise self._fail(where, key, "a non-empty string", value)
        return value

    def texts(self, table: dict, key: str, where: str) -> tuple[str, ...]:
        value = self._get(table, key, where)
        if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
            raise self._fail(where, key, "a non-empty list of strings", value)
        return tuple(value)

    def points(self, table: dict, key: str, where: str, positive: bool) -> float:
        value = self._get(table, key, where)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (positive and value == 0):
            raise self._fail(where, key, "a positive number" if positive else "a number of at least 0", value)
        return value

    def tables(self, data: dict, key: str, required: bool = True) -> list[dict]:
        value = data.get(key, None if required else [])
        if value is None:
            raise ManifestError(f"{self.path}: [[{key}]]: missing")
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ManifestError(f"{self.path}: {key}: expected [[{key}]] tables, got {value!r}")
        return value

    def unique(self, what: str, values: list) -> None:
        seen = set()
        for value in values:
            if value in seen:
                raise ManifestError(f"{self.path}: {what}: {value!r} appears twice")
            seen.add(value)
