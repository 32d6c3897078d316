"""The grader's warm runner (dlvc/course/grader/runner.py) and the way verdicts come back: through its pipe, never a file.

The runner's tests run small pytest files of their own in a fork of a runner without a
``dlvc`` (as the kit's mutant tests do); their conftest declares ``--records-fd``, the
descriptor the runner appends, as ``--grading-results-fd`` for the graded suites.
"""

import argparse
import json
import os
from pathlib import Path

import pytest

from dlvc.course.grader import grade
from dlvc.course.grader.grade import ClassGrader, SuiteRunner, add_arguments
from dlvc.course.grader.verdicts import GradedTest

CONFTEST = """
def pytest_addoption(parser):
    parser.addoption("--records-fd", type=int, default=None)
"""

TESTS = """
import ctypes
import json
import os
import sys
import time

PR_GET_DUMPABLE = 3


def emit(request, **record):
    os.write(request.config.getoption("--records-fd"), (json.dumps(record) + "\\n").encode())


def test_many_records(request):
    for index in range(2000):  # about 230 KiB: more than a pipe holds
        emit(request, index=index, padding="x" * 100)


def test_hangs_after_one_record(request):
    emit(request, sent="before the hang")
    time.sleep(600)


def test_imports_a_library_and_a_module_of_its_own(request):
    emit(request, wave_before="wave" in sys.modules)
    import wave  # noqa: F401
    import helper_of_the_tests  # noqa: F401


def test_reports_whether_it_is_dumpable(request):
    emit(request, dumpable=ctypes.CDLL(None).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


def test_reports_what_is_warm(request):
    emit(request, wave="wave" in sys.modules, helper="helper_of_the_tests" in sys.modules)
"""


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runner-suite")
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "test_records.py").write_text(TESTS)
    (folder / "helper_of_the_tests.py").write_text("")
    return folder


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    logs = tmp_path_factory.mktemp("runner-logs")
    started = SuiteRunner(os.environ.copy(), logs / "runner.log", with_dlvc=False)
    yield started, logs
    started.close()


def run_test(runner, suite: Path, name: str, seconds: float = 120) -> tuple[dict, list[dict]]:
    """Run one test of the suite in a fork of the runner; the reply and the records it sent."""
    process, logs = runner
    argv = [f"{suite / 'test_records.py'}::{name}", "-c", str(suite / "pytest.ini"), "-p", "no:cacheprovider", "-q"]
    reply = process.run(argv, os.environ.copy(), logs / f"{name}.log", seconds, results_option="--records-fd")
    return reply, [json.loads(line) for line in reply["records"]]


@pytest.mark.slow
def test_records_come_back_whole_even_beyond_what_a_pipe_holds(runner, suite):
    reply, records = run_test(runner, suite, "test_many_records")
    assert reply["status"] == 0 and not reply["timed_out"], reply
    assert [record["index"] for record in records] == list(range(2000))


@pytest.mark.slow
def test_a_child_killed_at_its_time_limit_still_yields_what_it_sent(runner, suite):
    reply, records = run_test(runner, suite, "test_hangs_after_one_record", seconds=4)
    assert reply["timed_out"] and reply["status"] is None, reply
    assert records == [{"sent": "before the hang"}]


@pytest.mark.slow
def test_the_child_is_not_dumpable_so_no_worker_of_its_user_opens_its_pipe_through_proc(runner, suite):
    _, records = run_test(runner, suite, "test_reports_whether_it_is_dumpable")
    assert records == [{"dumpable": 0}]


@pytest.mark.slow
def test_the_runner_warms_the_libraries_a_run_imported_but_not_the_tests_own_modules(runner, suite):
    _, first = run_test(runner, suite, "test_imports_a_library_and_a_module_of_its_own")
    assert first == [{"wave_before": False}], "the runner imported wave before any run asked for it"
    _, second = run_test(runner, suite, "test_reports_what_is_warm")
    assert second == [{"wave": True, "helper": False}]


# ----- the grader takes verdicts from the runner's reply only ---------------------------------

ASSIGNMENT = 3
PASSING = GradedTest("tests/hidden/assignment3/test_upsampling.py::test_a", "A works", "upsampling", 1.0)
FORGED = GradedTest("tests/hidden/assignment3/test_upsampling.py::test_b", "B works", "upsampling", 1.0)


class ForgingRunner:
    """Stands in for the runner: reports one verdict, while 'a worker' writes a passing one where verdicts used to be read from."""

    def __init__(self, environment, log, with_dlvc=True):
        self.requests = []

    def alive(self) -> bool:
        return True

    def run(self, argv, environment, log, seconds, results_option=None):
        self.requests.append((argv, results_option))
        out = Path(argv[argv.index("--sandbox-hide") + 1])
        forged = {"nodeid": FORGED.nodeid, "passed": True, "message": "", "seconds": 0.1}
        (out / ".grading" / "verdicts" / "group_1.jsonl").write_text(json.dumps(forged) + "\n")
        reported = {"nodeid": PASSING.nodeid, "passed": True, "message": "", "seconds": 0.2}
        return {"status": 1, "timed_out": False, "records": [json.dumps(reported)]}

    def close(self) -> None:
        pass


def test_a_verdict_written_to_a_file_is_not_taken_only_the_runners_pipe_counts(tmp_path, monkeypatch):
    submission = tmp_path / "submissions" / "group_1"
    (submission / "dlvc").mkdir(parents=True)
    (submission / "dlvc" / "__init__.py").write_text("")
    monkeypatch.setattr(ClassGrader, "_collect", lambda self: [PASSING, FORGED])
    monkeypatch.setattr(grade, "SuiteRunner", ForgingRunner)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(submission), "--assignment", str(ASSIGNMENT), "--out", str(tmp_path / "out"), "--isolation", "process"])
    grader = ClassGrader(args)
    try:
        result = grader._grade_package("group_1", submission)
    finally:
        grader.close()
    verdicts = {verdict.test.nodeid: verdict for verdict in result.verdicts}
    assert verdicts[PASSING.nodeid].passed
    assert not verdicts[FORGED.nodeid].passed, "a verdict was taken from a file a worker can write"
    assert "before this test reported" in verdicts[FORGED.nodeid].message
    (argv, results_option), = grader._all_runners[0].requests
    assert results_option == "--grading-results-fd" and "--grading-results" not in argv
