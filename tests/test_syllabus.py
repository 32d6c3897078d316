"""The course syllabus, assignments/SYLLABUS.md: its sessions, and that what it cites is real.

The syllabus names, for each of its nine sessions, the kit modules it opens, the
assignment parts it prepares ("Assignment N, part K, <title> (TODO a-b)", as in
the manifests) and the commands students run. These tests hold it to the
repository: every quoted path exists, every cited part is the manifest's, every
``python <script>.py`` line parses with that script's own argument parser, every
``dlvc ...`` line with the ``dlvc`` command's, and every ``python -c`` snippet imports
names that exist.
"""

import argparse
import ast
import contextlib
import functools
import importlib
import importlib.util
import io
import re
import shlex

import pytest

from dlvc.course import cli
from dlvc.course.student.manifest import available_assignments, load_manifest
from top_level_scripts import REPOSITORY_ROOT, import_script

SYLLABUS = REPOSITORY_ROOT / "assignments" / "SYLLABUS.md"

SESSION_TITLES = (
    "Datasets",
    "The dataset class",
    "The training loop",
    "Models",
    "Losses",
    "Optimisers, schedules and metrics",
    "The pipeline end to end",
    "Evaluation and visualisation",
    "Experiments and the class competition",
)
"""The course's topics, in the order the sessions teach them."""

SESSION_HEADING = re.compile(r"^## Session (\d+): (.+)$")
COMMAND_WORDS = ("python", "pytest", "torchrun", "tensorboard", "jupyter", "dlvc", "make")
"""A code line or inline code span that starts with one of these is a command."""
PATH_SUFFIXES = (".py", ".md", ".toml", ".ipynb")
PATH_PREFIXES = ("dlvc/", "tests/", "assignments/", "benchmarks/")
PATH_TOKEN = re.compile(r"[\w./-]+")
PASSED_ON_TO = {"compare_finetuning.py": "train_segformer.py"}
"""Scripts that pass the flags they do not know on to another script (compare_finetuning.py's docstring)."""
CITATION = re.compile(r"Assignment (\d+), part (\d+)")
TODO_SPEC = re.compile(r" \(TODO (\d+)\.(\d+)(?:-(\d+)\.(\d+))?\)")


def syllabus_text() -> str:
    assert SYLLABUS.is_file(), f"there is no syllabus at {SYLLABUS.relative_to(REPOSITORY_ROOT)}"
    return SYLLABUS.read_text()


def sessions() -> dict[int, tuple[str, str]]:
    """Session number -> (title, the text up to the next second-level heading)."""
    found, number, title, body = {}, None, None, []
    for line in syllabus_text().splitlines():
        if line.startswith("## "):
            if number is not None:
                found[number] = (title, "\n".join(body))
            match = SESSION_HEADING.match(line)
            number, title, body = (int(match[1]), match[2].strip(), []) if match else (None, None, [])
        elif number is not None:
            body.append(line)
    if number is not None:
        found[number] = (title, "\n".join(body))
    return found


def inline_code(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def commands(text: str) -> list[str]:
    """Command lines of the indented code blocks, and inline code spans that are commands."""
    block_lines = [line.strip() for line in text.splitlines() if line.startswith("    ") and line.strip()]
    candidates = block_lines + inline_code(text)
    return [candidate for candidate in candidates if candidate.split()[0] in COMMAND_WORDS]


def tokens(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def quoted_paths(text: str) -> set[str]:
    """Every repository path quoted in code: inline spans and the words of command lines."""
    words = [word for span in inline_code(text) for word in span.split()]
    words += [word for command in commands(text) for word in tokens(command)]
    return {
        word for word in words
        if PATH_TOKEN.fullmatch(word) and (word.endswith(PATH_SUFFIXES) or word.startswith(PATH_PREFIXES))
    }  # fmt: skip


def script_commands() -> list[tuple[str, str, list[str]]]:
    """(command, script, its arguments) for every ``python <script>.py ...`` and ``torchrun ... <script>.py ...``."""
    found = []
    for command in commands(syllabus_text()):
        words = tokens(command)
        if words[0] == "python" and len(words) > 1 and words[1].endswith(".py"):
            found.append((command, words[1], words[2:]))
        elif words[0] == "torchrun":
            script = next((index for index, word in enumerate(words) if word.endswith(".py")), None)
            assert script is not None, f"the torchrun command names no script: {command}"
            found.append((command, words[script], words[script + 1 :]))
    return found


def dlvc_commands() -> list[tuple[str, list[str]]]:
    """(command, its arguments) for every ``dlvc <command> ...``."""
    return [(command, tokens(command)[1:]) for command in commands(syllabus_text()) if tokens(command)[0] == "dlvc"]


def snippets() -> list[tuple[str, str]]:
    """(command, code) for every ``python -c "<code>"``."""
    return [(command, tokens(command)[2]) for command in commands(syllabus_text()) if tokens(command)[:2] == ["python", "-c"]]


@functools.cache
def script_module(script: str):
    """The script as a module, to call its ``parse_args``: the root scripts by name, others from their path."""
    path = REPOSITORY_ROOT / script
    if path.parent == REPOSITORY_ROOT:
        return import_script(path.stem)
    spec = importlib.util.spec_from_file_location(f"syllabus_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(script: str, arguments: list[str]):
    """What ``parse_args`` of the script returns for ``arguments``; a parser error fails the calling test."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return script_module(script).parse_args(arguments)
    except SystemExit as exit:
        status = exit.code
    error = (stderr.getvalue().strip().splitlines() or ["(no message)"])[-1]
    pytest.fail(f"{script} refuses the flags {' '.join(arguments)} (exit status {status}): {error}")


@functools.cache
def documented_flags(script: str) -> frozenset[str]:
    """The flags that ``<script> --help`` lists, with those of the script it passes unknown flags on to."""
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        script_module(script).parse_args(["--help"])
    flags = set(re.findall(r"--[a-z0-9][a-z0-9-]*", help_text.getvalue()))
    if script in PASSED_ON_TO:
        flags |= documented_flags(PASSED_ON_TO[script])
    return frozenset(flags)


def cited_parts(text: str) -> list[tuple[str, int, int, str]]:
    """(citation as written, assignment, part, the text after "Assignment N, part K, ") for every citation."""
    flat = " ".join(text.split())
    found = []
    for match in CITATION.finditer(flat):
        rest = flat[match.end() :]
        end = rest.find(")", 0, 120)
        found.append((match[0] + (rest[: end + 1] if end >= 0 else rest[:80] + "..."), int(match[1]), int(match[2]), rest))
    return found


def manifest_part(assignment: int, number: int):
    if assignment not in available_assignments():
        return None
    return next((part for part in load_manifest(assignment).parts if part.number == number), None)


def importable(name: str):
    """The module ``name``, or None when there is none."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        return None


def expand_todos(spec: re.Match) -> list[str]:
    """``(TODO 1.11-1.15)`` -> 1.11, 1.12, ..., 1.15; ``(TODO 1.10)`` -> 1.10."""
    first_major, first_minor, last_major, last_minor = spec.groups()
    if last_major is None:
        return [f"{first_major}.{first_minor}"]
    if last_major != first_major or int(last_minor) < int(first_minor):
        return [f"{first_major}.{first_minor}-{last_major}.{last_minor} (not a range of one assignment's TODOs)"]
    return [f"{first_major}.{minor}" for minor in range(int(first_minor), int(last_minor) + 1)]


# Sessions


def test_there_are_nine_sessions_numbered_one_to_nine_in_order():
    headings = [line for line in syllabus_text().splitlines() if line.startswith("## Session")]
    malformed = [heading for heading in headings if not SESSION_HEADING.match(heading)]
    assert not malformed, f"session headings must read '## Session <n>: <title>'; these do not: {malformed}"
    numbers = [int(SESSION_HEADING.match(heading)[1]) for heading in headings]
    assert numbers == list(range(1, 10)), f"the sessions must be numbered 1 to 9 in order, found {numbers}"


def test_the_session_titles_are_the_course_topics_in_order():
    titles = tuple(title for title, _ in sessions().values())
    assert titles == SESSION_TITLES, f"the session titles must be {list(SESSION_TITLES)}, in that order; found {list(titles)}"


def test_every_session_names_a_kit_module():
    without = [number for number, (_, body) in sessions().items() if not any(path.startswith("dlvc/") for path in quoted_paths(body))]
    assert not without, f"sessions {without} name no module of the kit (a quoted path under dlvc/)"


def test_every_session_names_a_command_for_students():
    without = [number for number, (_, body) in sessions().items() if not commands(body)]
    assert not without, f"sessions {without} quote no command (a code line or span starting with one of {COMMAND_WORDS})"


# Paths


def test_every_quoted_path_exists_in_the_repository():
    missing = sorted(path for path in quoted_paths(syllabus_text()) if not (REPOSITORY_ROOT / path).exists())
    assert not missing, f"the syllabus quotes paths that are not in the repository: {missing}"


# Assignment parts


def test_the_syllabus_cites_assignment_parts():
    assert cited_parts(syllabus_text()), "the syllabus cites no assignment part ('Assignment N, part K, <title> (TODO ...)')"


def test_every_cited_part_exists_in_its_assignments_manifest():
    unknown = [citation for citation, assignment, number, _ in cited_parts(syllabus_text()) if manifest_part(assignment, number) is None]
    assert not unknown, f"the syllabus cites parts that no assignment.toml has: {unknown}"


def test_every_cited_part_carries_its_manifest_title():
    wrong = []
    for citation, assignment, number, rest in cited_parts(syllabus_text()):
        part = manifest_part(assignment, number)
        if part is not None and not rest.startswith(f", {part.title} (TODO"):
            wrong.append(f"Assignment {assignment}, part {number} must read '..., {part.title} (TODO ...)'; it reads '{citation}'")
    assert not wrong, "\n".join(wrong)


def test_every_cited_part_quotes_exactly_its_own_todos():
    wrong = []
    for citation, assignment, number, rest in cited_parts(syllabus_text()):
        part = manifest_part(assignment, number)
        if part is None or not rest.startswith(f", {part.title}"):
            continue  # the two tests above report these
        spec = TODO_SPEC.match(rest[len(f", {part.title}") :])
        quoted = expand_todos(spec) if spec else ["nothing in the form (TODO a.b) or (TODO a.b-a.c)"]
        if quoted != list(part.todos):
            wrong.append(f"Assignment {assignment}, part {number} covers TODOs {', '.join(part.todos)}; the syllabus quotes {', '.join(quoted)}")
    assert not wrong, "\n".join(wrong)


def test_every_part_of_every_assignment_is_prepared_by_a_session():
    cited = {(assignment, number) for _, assignment, number, _ in cited_parts(syllabus_text())}
    missing = [
        f"Assignment {assignment}, part {part.number}, {part.title}"
        for assignment in available_assignments()
        for part in load_manifest(assignment).parts
        if (assignment, part.number) not in cited
    ]  # fmt: skip
    assert not missing, f"no session of the syllabus prepares these parts: {missing}"


# Commands


def test_the_syllabus_quotes_script_commands():
    assert script_commands(), "the syllabus quotes no 'python <script>.py ...' command"


def test_every_script_command_names_a_script_that_exists():
    missing = sorted({script for _, script, _ in script_commands() if not (REPOSITORY_ROOT / script).is_file()})
    assert not missing, f"the syllabus runs scripts that are not in the repository: {missing}"


def test_every_script_command_is_accepted_by_the_scripts_argument_parser():
    for command, script, arguments in script_commands():
        if not (REPOSITORY_ROOT / script).is_file():
            continue  # reported by the test above
        parsed = parse(script, arguments)
        if script in PASSED_ON_TO:
            _, passed_on = parsed
            parse(PASSED_ON_TO[script], passed_on)
        else:
            assert isinstance(parsed, argparse.Namespace), f"{script}.parse_args returned {type(parsed).__name__} for: {command}"


def test_every_flag_of_a_script_command_is_spelled_as_the_script_documents_it():
    undocumented = []
    for command, script, arguments in script_commands():
        if not (REPOSITORY_ROOT / script).is_file():
            continue
        flags = documented_flags(script)
        undocumented += [f"{flag} ({script})" for flag in (word.split("=")[0] for word in arguments) if flag.startswith("--") and flag not in flags]
    assert not undocumented, f"flags that the scripts' --help does not list (a shortened or misspelt flag?): {undocumented}"


def test_every_dlvc_command_is_accepted_by_the_dlvc_commands_parser():
    wrong = []
    for command, arguments in dlvc_commands():
        if len(arguments) == 1:  # a mention such as `dlvc submit`: the command must exist
            if arguments[0] not in cli.available_commands():
                wrong.append(f"dlvc has no command {arguments[0]!r} (it has {', '.join(cli.available_commands())}): {command}")
            continue
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                cli.parse_args(arguments)
        except SystemExit as exit:
            error = (stderr.getvalue().strip().splitlines() or ["(no message)"])[-1]
            wrong.append(f"dlvc refuses {command} (exit status {exit.code}): {error}")
    assert not wrong, "\n".join(wrong)


def test_every_python_c_snippet_is_python_whose_imports_exist():
    wrong = []
    for command, code in snippets():
        try:
            tree = ast.parse(code)
        except SyntaxError as error:
            wrong.append(f"not valid Python ({error.msg}): {command}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = importable(node.module)
                if module is None:
                    wrong.append(f"there is no module {node.module}: {command}")
                    continue
                wrong += [f"{node.module} has no {alias.name}: {command}" for alias in node.names if not hasattr(module, alias.name)]
            elif isinstance(node, ast.Import):
                wrong += [f"there is no module {alias.name}: {command}" for alias in node.names if importable(alias.name) is None]
    assert not wrong, "\n".join(wrong)
