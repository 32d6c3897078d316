"""Test-wide options.

``pytest --impl PATH`` tests the ``dlvc`` package found in ``PATH/dlvc`` (a
student's checkout, or a folder of generated stubs) instead of this repository's
reference build. Subprocesses started by the tests see the same package through
``PYTHONPATH``.

The graded suites in ``tests/hidden`` are different: they never import the
package under test. ``pytest tests/hidden/assignment1 --impl PATH`` runs PATH's
package in sandboxed workers while this process holds the reference build, which
the graded tests compare with (:mod:`dlvc.course.grader.graded`). So ``--impl`` cannot
mix the graded suites with the other tests in one run. The grading options are
declared here, before anything imports ``dlvc``.
"""

import os
import sys
from pathlib import Path

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
HIDDEN = REPOSITORY_ROOT / "tests" / "hidden"


def pytest_addoption(parser):
    parser.addoption(
        "--impl",
        metavar="PATH",
        default=None,
        help="folder holding the dlvc package to test (default: this repository's reference build)",
    )
    group = parser.getgroup("dlvc grading", "the graded suites in tests/hidden (see dlvc/course/grader/graded.py)")
    group.addoption("--grading-seed", type=int, default=None, help="seed of every random input (default: a new one)")
    group.addoption("--isolation", default=None, choices=("auto", "bwrap", "landlock", "process", "in-process"), help="how student code is isolated")
    group.addoption("--worker-user", default=None, help="where the grader is root, the user Landlock workers become")
    group.addoption("--time-limits", type=Path, default=None, help="the calibration: seconds per session key, measured on the reference build (see dlvc/course/grader/calibration.py)")
    group.addoption("--time-factor", type=float, default=10.0, help="a session may take this many times the reference's time")
    group.addoption("--time-floor", type=float, default=10.0, help="... and at least this many seconds")
    group.addoption("--grading-results", type=Path, default=None, help="append one JSON line per graded test's verdict to this file (a run by hand)")
    group.addoption(
        "--grading-results-fd", type=int, default=None, metavar="N",
        help="write one JSON line per graded test's verdict to the open descriptor N (dlvc grade's runner passes a pipe)",
    )
    group.addoption("--graded-list", type=Path, default=None, help="write the graded tests (id, title, part, points) here")
    group.addoption("--timings", type=Path, default=None, help="write the seconds of every worker session here")
    group.addoption("--sandbox-hide", type=Path, action="append", default=[], help="a folder the sandbox must not show")


def _targets(config) -> list[Path]:
    """The paths the run collects from (command-line arguments without ``::`` parts, or testpaths)."""
    return [(Path(config.invocation_params.dir) / arg.split("::")[0]).resolve() for arg in config.args]


def pytest_configure(config):
    impl = config.getoption("--impl")
    targets = _targets(config)
    graded_only = bool(targets) and all(HIDDEN == target or HIDDEN in target.parents for target in targets)
    with_graded = any(HIDDEN == target or HIDDEN in target.parents or target in HIDDEN.parents for target in targets)
    if impl and with_graded and not graded_only:
        raise pytest.UsageError(
            "--impl: the graded suites (tests/hidden) run the package in a sandbox and the other tests import it; "
            "run them separately: pytest tests/hidden/assignment<N> --impl PATH"
        )
    in_process_impl = None if graded_only else impl
    root = Path(in_process_impl).resolve() if in_process_impl else REPOSITORY_ROOT
    if not (root / "dlvc" / "__init__.py").is_file():
        raise pytest.UsageError(f"--impl {impl}: expected a folder holding dlvc/__init__.py, found none in {root}")
    if graded_only and impl and not (Path(impl) / "dlvc" / "__init__.py").is_file():
        raise pytest.UsageError(f"--impl {impl}: expected a folder holding dlvc/__init__.py")
    imported = sys.modules.get("dlvc")
    if imported is not None and Path(imported.__file__).resolve().parent != root / "dlvc":
        raise pytest.UsageError(f"dlvc was imported from {imported.__file__} before the tests chose {root}; run pytest directly")
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    import dlvc

    if Path(dlvc.__file__).resolve().parent != root / "dlvc":
        raise pytest.UsageError(f"imported dlvc from {dlvc.__file__}, expected it from {root / 'dlvc'}")
    if with_graded:
        from dlvc.course.grader import graded

        config.pluginmanager.register(graded, "dlvc-graded")


def pytest_report_header(config):
    import dlvc
    from dlvc._reference import solutions_folder

    package = Path(dlvc.__file__).resolve().parent
    overlay = solutions_folder(package) and os.environ.get("DLVC_REFERENCE", "1") != "0"
    kind = "reference build (solutions/ laid over the stubs)" if overlay else "the package as it stands"
    if config.getoption("--impl") and config.pluginmanager.has_plugin("dlvc-graded"):
        return [f"graded in sandboxed workers: {Path(config.getoption('--impl')).resolve()}", f"compared with: {package}, {kind}"]
    return f"dlvc under test: {package}, {kind}"


@pytest.fixture(scope="session")
def handouts(tmp_path_factory):
    """``handouts(N)``: Assignment N's handout zip and what ``dlvc handout`` printed, built once per test run."""
    import subprocess

    built = {}

    def build(assignment: int) -> tuple[Path, str]:
        if assignment not in built:
            out = tmp_path_factory.mktemp(f"handout{assignment}")
            command = [sys.executable, "-m", "dlvc.course.cli", "handout", "--assignment", str(assignment), "--out", str(out)]
            result = subprocess.run(command, cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=1800)
            assert result.returncode == 0, f"dlvc handout --assignment {assignment} failed:\n{result.stdout}\n{result.stderr}"
            built[assignment] = (out / f"dlvc-assignment{assignment}.zip", result.stdout)
        return built[assignment]

    return build


@pytest.fixture(scope="session")
def _temporary_folders_open_to_the_worker_user(tmp_path_factory):
    """As root, the tests' own temporary folders are made 0755 (pytest makes each one 0700); see below."""
    if os.geteuid() != 0:
        yield
        return
    original = pytest.TempPathFactory.mktemp

    def mktemp(self, basename, numbered=True):
        path = original(self, basename, numbered)
        path.chmod(0o755)
        return path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pytest.TempPathFactory, "mktemp", mktemp)
        yield


@pytest.fixture(autouse=True)
def worker_user_reaches_temporary_folders(_temporary_folders_open_to_the_worker_user, tmp_path_factory):
    """Where the tests run as root, Landlock workers become an unprivileged user (dlvc.course.grader.isolation),
    who must pass through the tests' temporary folders to the submissions and scratch folders in them and read
    the submissions. So as root the tests' own folders are 0755, and pytest's base folders 0711 (pass through, no
    listing), set again before every test: a pytest run that a test starts makes them 0700 again."""
    let_the_worker_user_pass(tmp_path_factory.getbasetemp() / "any")
    yield


def let_the_worker_user_pass(folder: Path) -> None:
    """As root, make pytest's own folders above ``folder`` (pytest-of-<user>, pytest-<N>) 0711 again."""
    if os.geteuid() != 0:
        return
    for parent in Path(folder).parents:
        if parent.name.startswith("pytest-"):
            parent.chmod(0o711)


@pytest.fixture(scope="session")
def worker_user_passes():
    """``worker_user_passes(folder)``: see :func:`let_the_worker_user_pass`; for a test that runs pytest itself
    (``dlvc submit``'s public tests make pytest's folders 0700 again) before it grades in them."""
    return let_the_worker_user_pass
