"""The pytest plugin behind the graded suites in ``tests/hidden``: points, seeds, the sandboxed student, verdicts.

A graded test declares its part and points with a marker and talks to the
student's package only through a sandboxed worker::

    @pytest.mark.graded(part="metric", points=1)
    def test_update_skips_pixels_labelled_255(worker, rng):
        ...

Fixtures:

- ``worker``: a fresh :class:`~dlvc.course.grader.sandbox.Session` for the test (one
  worker process), with the test's time limit;
- ``sessions``: opens more sessions under other keys (a module-wide training run);
- ``rng``: a ``torch.Generator`` seeded from the grading run's seed and the test's
  id, so that inputs change with every grading run and never between two runs
  with the same seed;
- ``grading_seed``: the run's seed.

Options (``dlvc grade`` passes them; an instructor may too; ``tests/conftest.py``
declares them, so that declaring them imports no ``dlvc``):

- ``--impl FOLDER``: the package to grade (the folder holding its ``dlvc/``);
  without it, the reference build is copied to a temporary folder and graded;
- ``--grading-seed S``: the seed (default: a new random one, shown in the header);
- ``--isolation``: ``auto`` (the strongest that works), ``bwrap``, ``landlock``,
  ``process``, or ``in-process`` (the benchmark's baseline; reference build only);
- ``--worker-user NAME``: where the grader is root, the user Landlock workers become;
- ``--time-limits FILE``: the calibration (seconds per session key, measured on
  the reference build: a file ``dlvc grade`` wrote, see :mod:`dlvc.course.grader.calibration`,
  or a plain JSON object of seconds); a session may take ``--time-factor`` times
  that, at least ``--time-floor`` seconds;
- ``--grading-results-fd N``: one JSON line per graded test, written to the open
  descriptor ``N``: its verdict and the message a student reads (never the test's
  source). ``dlvc grade``'s runner passes the write end of a pipe that it reads
  (:mod:`dlvc.course.grader.runner`); the grader takes verdicts from nowhere else;
- ``--grading-results FILE``: the same lines, appended to a file, for a run by hand;
- ``--graded-list FILE``: the graded tests (id, title, part, points) as JSON;
- ``--timings FILE``: seconds per session key, for calibration.
"""

import hashlib
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from ..student.manifest import ManifestError, load_manifest
from .calibration import seconds_per_test
from .isolation import SandboxError, choose_isolation
from .sandbox import Limits, Sandbox, WorkerError
from ..authoring.stubs import copy_package
from .verdicts import GradedTest

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
UNCALIBRATED_SECONDS = 120.0
"""A session's time limit when no calibration is given."""
VERDICT = pytest.StashKey[dict]()
"""An item's graded test and, once it ran, its outcome."""
ISOLATION = pytest.StashKey[tuple]()
"""The run's isolation and the warning that goes with it (see :func:`~dlvc.course.grader.isolation.choose_isolation`)."""


class GradingFailure(AssertionError):
    """A graded behaviour does not hold; the message is written for the student."""


def pytest_configure(config):
    config.addinivalue_line("markers", "graded(part, points): a graded test, worth `points` in the assignment part `part`")
    if not reference_build_loaded():
        raise pytest.UsageError(
            "the graded suites compare with the reference build, which needs solutions/ beside dlvc/ "
            "(and DLVC_REFERENCE unset or 1); this process imported the package as it stands"
        )
    if config.getoption("--grading-seed") is None:
        config.option.grading_seed = secrets.randbelow(2**31)
    try:
        config.stash[ISOLATION] = choose_isolation(config.getoption("--isolation"), config.getoption("--worker-user"))
    except SandboxError as error:
        raise pytest.UsageError(str(error)) from None
    isolation = config.stash[ISOLATION][0]
    if isolation == "in-process" and config.getoption("--impl") is not None:
        raise pytest.UsageError("--isolation in-process runs the reference build this process imported; it cannot grade --impl")


def reference_build_loaded() -> bool:
    """Whether this process's ``dlvc`` is the reference build (solutions/ laid over the stubs)."""
    from dlvc._reference import ReferenceOverlayFinder

    return any(isinstance(finder, ReferenceOverlayFinder) and finder.package == "dlvc" for finder in sys.meta_path)


def pytest_report_header(config):
    isolation, warning = config.stash[ISOLATION]
    return [f"grading seed: {config.getoption('--grading-seed')}, student code isolated by: {isolation}", *([warning] if warning else [])]


def pytest_collection_modifyitems(session, config, items):
    graded, problems = [], []
    manifests = {}
    for item in items:
        assignment = assignment_of(item.path)
        if assignment is None:
            continue
        markers = list(item.iter_markers("graded"))
        if len(markers) != 1:
            problems.append(f"{item.nodeid}: expected one @pytest.mark.graded(part=..., points=...) marker, got {len(markers)}")
            continue
        try:
            test = graded_test(item, markers[0])
            manifest = manifests.setdefault(assignment, load_manifest(assignment))
            manifest.part(test.part)
        except (ManifestError, ValueError) as error:
            problems.append(f"{item.nodeid}: {error}")
            continue
        item.stash[VERDICT] = {"test": test}
        graded.append(test)
    if problems:
        raise pytest.UsageError("graded tests that do not follow the suite's rules:\n  " + "\n  ".join(problems))
    path = config.getoption("--graded-list")
    if path is not None:
        _write_json(path, [test.to_json() for test in graded])


def assignment_of(path: Path) -> int | None:
    """The assignment number of a graded test file (``.../tests/hidden/assignment<N>/...``), or None."""
    parts = Path(path).parts
    for index in range(len(parts) - 2):
        if parts[index] == "tests" and parts[index + 1] == "hidden" and parts[index + 2].startswith("assignment"):
            number = parts[index + 2].removeprefix("assignment")
            return int(number) if number.isdigit() else None
    return None


def graded_test(item, marker) -> GradedTest:
    """The GradedTest an item's marker declares; ValueError for a malformed marker."""
    part, points = marker.kwargs.get("part"), marker.kwargs.get("points")
    if marker.args or not isinstance(part, str) or isinstance(points, bool) or not isinstance(points, (int, float)) or points <= 0:
        raise ValueError(f"write the marker as @pytest.mark.graded(part='<part id>', points=<positive number>), got {marker}")
    return GradedTest(item.nodeid, title_of(item), part, float(points))


def title_of(item) -> str:
    """A test's title for students: the first docstring line, or its name in words."""
    doc = getattr(item.function, "__doc__", None)
    title = doc.strip().splitlines()[0].rstrip(".") if doc and doc.strip() else item.originalname.removeprefix("test_").replace("_", " ")
    if getattr(item, "callspec", None) is not None:
        title += f" [{item.callspec.id}]"
    return title


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    state = item.stash.get(VERDICT, None)
    if state is None:
        return
    if report.failed and "message" not in state:
        state["message"] = student_message(call.excinfo)
    if report.skipped and "message" not in state:
        state["message"] = f"the test was skipped ({call.excinfo.value if call.excinfo else 'no reason'}), so it earns nothing; tell your TA"
    if report.when == "teardown":
        state["seconds"] = state.get("seconds", 0.0) + report.duration
        _record_verdict(item.config, state)
    else:
        state["seconds"] = state.get("seconds", 0.0) + report.duration


def _record_verdict(config, state: dict) -> None:
    line = {
        "nodeid": state["test"].nodeid,
        "passed": "message" not in state,
        "message": state.get("message", ""),
        "seconds": round(state.get("seconds", 0.0), 3),
    }
    data = (json.dumps(line) + "\n").encode()
    descriptor = config.getoption("--grading-results-fd")
    if descriptor is not None:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
    path = config.getoption("--grading-results")
    if path is not None:
        with open(path, "ab") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())


def student_message(excinfo) -> str:
    """What a student reads about a failed graded test: never the test's source or the reference's code."""
    if excinfo is None:
        return "the test failed"
    error = excinfo.value
    if isinstance(error, (GradingFailure, WorkerError)):
        return str(error)
    if isinstance(error, SandboxError):
        return f"the grader could not run this test ({error}); this is a problem of the grading machine: tell your TA"
    if isinstance(error, AssertionError):
        return (str(error).splitlines() or ["the test failed"])[0]
    return f"the grader hit an error of its own in this test ({type(error).__name__}); tell your TA"


# ----- fixtures ----------------------------------------------------------------------------


class SessionFactory:
    """Opens worker sessions on the submission's sandbox with calibrated time limits, and records their times."""

    def __init__(self, sandbox: Sandbox, config):
        self.sandbox = sandbox
        self.config = config
        path = config.getoption("--time-limits")
        self.calibration = seconds_per_test(path) if path is not None else None
        self.timings: dict[str, float] = {}

    def seconds_for(self, key: str) -> float:
        if self.calibration is None:
            return UNCALIBRATED_SECONDS
        factor, floor = self.config.getoption("--time-factor"), self.config.getoption("--time-floor")
        measured = self.calibration.get(key)
        return max(floor, factor * measured) if measured is not None else UNCALIBRATED_SECONDS

    def open(self, key: str):
        """A new session (a fresh worker) keyed ``key``; its time is recorded when it closes."""
        return _TimedSession(self, key)

    def write_timings(self) -> None:
        path = self.config.getoption("--timings")
        if path is not None:
            _write_json(path, self.timings)


class _TimedSession:
    def __init__(self, factory: SessionFactory, key: str):
        self.factory = factory
        self.session = factory.sandbox.session(key, seconds=factory.seconds_for(key))

    def __enter__(self):
        return self.session.__enter__()

    def __exit__(self, *exc_info):
        self.session.__exit__(*exc_info)
        self.factory.timings[self.session.key] = self.factory.timings.get(self.session.key, 0.0) + self.session.seconds


@pytest.fixture(scope="session")
def grading_seed(pytestconfig) -> int:
    return pytestconfig.getoption("--grading-seed")


@pytest.fixture(scope="session")
def sessions(pytestconfig, tmp_path_factory):
    """Opens sandboxed worker sessions on the package under test."""
    impl = pytestconfig.getoption("--impl")
    isolation = pytestconfig.stash[ISOLATION][0]
    if impl is None:
        package_root = copy_package(REPOSITORY_ROOT, tmp_path_factory.mktemp("reference-build"))
    else:
        package_root = Path(impl).resolve()
    hidden = (REPOSITORY_ROOT, *pytestconfig.getoption("--sandbox-hide"))
    scratch = Path(tempfile.gettempdir())
    with Sandbox(package_root, isolation, Limits(), hidden=hidden, scratch=scratch, worker_user=pytestconfig.getoption("--worker-user")) as sandbox:
        factory = SessionFactory(sandbox, pytestconfig)
        yield factory
        factory.write_timings()


@pytest.fixture
def worker(sessions, request):
    """A fresh worker for this test, keyed by the test's id."""
    with sessions.open(request.node.nodeid) as session:
        yield session


@pytest.fixture
def rng(grading_seed, request) -> torch.Generator:
    """A generator seeded from the grading seed and this test's id."""
    return torch.Generator().manual_seed(derived_seed(grading_seed, request.node.nodeid))


def derived_seed(seed: int, name: str) -> int:
    """A seed for ``name`` that depends on the run's ``seed`` only, not on which tests run or their order."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**63


def _write_json(path: Path, data) -> None:
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)
