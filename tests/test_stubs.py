"""The stub generator: solution regions become NotImplementedError stubs, and bad markers stop the build."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyflakes.api import check as pyflakes_check
from pyflakes.reporter import Reporter

from dlvc.course.authoring.stubs import MarkerError, find_regions, generate_stubs, make_stub, solution_files

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]

GOOD = textwrap.dedent(
    """\
    def double(x):
        \"\"\"Twice x.\"\"\"
        # TODO 7 (Assignment 1, part 2): compute `result`, one line.
        # BEGIN SOLUTION
        result = 2 * x
        # END SOLUTION
        return result
    """
)


def test_region_becomes_not_implemented_error_naming_todo_part_file_and_function():
    stub = make_stub(GOOD, "dlvc/example.py")
    namespace = {}
    exec(compile(stub, "dlvc/example.py", "exec"), namespace)
    with pytest.raises(NotImplementedError) as raised:
        namespace["double"](3)
    message = str(raised.value)
    assert "TODO 7" in message and "Assignment 1, part 2" in message, message
    assert "dlvc/example.py" in message and "double" in message, message


def test_stub_keeps_every_line_outside_the_region_and_drops_the_solution():
    stub = make_stub(GOOD, "dlvc/example.py")
    assert "result = 2 * x" not in stub
    assert "BEGIN SOLUTION" not in stub and "END SOLUTION" not in stub
    for line in ('"""Twice x."""', "# TODO 7 (Assignment 1, part 2): compute `result`, one line.", "return result"):
        assert line in stub, f"{line!r} must stay in the stub"


def test_region_records_the_qualified_function_name():
    source = textwrap.dedent(
        """\
        class Metric:
            def reset(self):
                # TODO 2 (Assignment 1, part 1): clear the matrix.
                # BEGIN SOLUTION
                self.matrix = 0
                # END SOLUTION
        """
    )
    (region,) = find_regions(source, "m.py")
    assert region.function == "Metric.reset"
    assert (region.todo_id, region.part) == ("2", "Assignment 1, part 1")


def _marker_error(source: str) -> MarkerError:
    with pytest.raises(MarkerError) as raised:
        make_stub(textwrap.dedent(source), "dlvc/bad.py")
    return raised.value


def test_nested_markers_are_rejected_with_the_line():
    error = _marker_error(
        """\
        def f():
            # TODO 1 (A1, part 1): x.
            # BEGIN SOLUTION
            # BEGIN SOLUTION
            x = 1
            # END SOLUTION
            # END SOLUTION
        """
    )
    assert error.line == 4 and "nested" in str(error)


def test_unterminated_region_is_rejected_with_the_line():
    error = _marker_error(
        """\
        def f():
            # TODO 1 (A1, part 1): x.
            # BEGIN SOLUTION
            x = 1
        """
    )
    assert error.line == 3 and "unterminated" in str(error)


def test_end_without_begin_is_rejected():
    error = _marker_error("def f():\n    x = 1\n    # END SOLUTION\n")
    assert error.line == 3


def test_region_outside_a_function_is_rejected():
    error = _marker_error("# TODO 1 (A1, part 1): x.\n# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n")
    assert "inside a function" in str(error)


def test_region_without_todo_comment_is_rejected():
    error = _marker_error("def f():\n    # BEGIN SOLUTION\n    x = 1\n    # END SOLUTION\n")
    assert "TODO" in str(error) and error.line == 2


def test_malformed_todo_comment_is_rejected():
    error = _marker_error("def f():\n    # TODO: fill x\n    # BEGIN SOLUTION\n    x = 1\n    # END SOLUTION\n")
    assert error.line == 2


def test_malformed_marker_is_rejected():
    error = _marker_error("def f():\n    # TODO 1 (A1, part 1): x.\n    # BEGIN SOLUTIONS\n    x = 1\n    # END SOLUTION\n")
    assert error.line == 3 and "malformed" in str(error)


def test_empty_region_is_rejected():
    error = _marker_error("def f():\n    # TODO 1 (A1, part 1): x.\n    # BEGIN SOLUTION\n    # END SOLUTION\n    return 1\n")
    assert "empty" in str(error)


def test_file_without_regions_is_rejected():
    error = _marker_error("def f():\n    return 1\n")
    assert "at least one" in str(error)


def test_generate_writes_stubs_and_check_reports_drift(tmp_path):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "example.py").write_text(GOOD)
    assert generate_stubs(tmp_path, check=True) == ["dlvc/example.py"]
    assert generate_stubs(tmp_path) == ["dlvc/example.py"]
    assert generate_stubs(tmp_path, check=True) == []
    (tmp_path / "dlvc" / "example.py").write_text(GOOD.replace("2 * x", "3 * x"))
    assert generate_stubs(tmp_path, check=True) == ["dlvc/example.py"]


def test_stubs_in_the_package_match_the_solutions():
    """Instructors edit solutions/ and run `dlvc stubs`; this fails when they forgot."""
    if not (REPOSITORY_ROOT / "solutions").is_dir():
        pytest.skip("no solutions/ folder: a student's checkout")
    drifted = generate_stubs(REPOSITORY_ROOT, check=True)
    assert drifted == [], f"out of date, run `dlvc stubs`: {drifted}"


@pytest.mark.parametrize("relative", [path.as_posix() for path in solution_files(REPOSITORY_ROOT)])
def test_a_stub_file_uses_no_name_that_only_the_solution_defines(relative, tmp_path):
    """pyflakes on the stub: a name used after a region but set inside it would be undefined in the student's file."""
    warnings, errors = tmp_path / "warnings", tmp_path / "errors"
    with open(warnings, "w") as out, open(errors, "w") as err:
        pyflakes_check((REPOSITORY_ROOT / "dlvc" / relative).read_text(), f"dlvc/{relative}", Reporter(out, err))
    undefined = [line for line in warnings.read_text().splitlines() if "undefined name" in line]
    assert not errors.read_text() and not undefined, (
        "the stub uses names that only the solution region defines; move those uses into the region:\n"
        + "\n".join(undefined) + errors.read_text()
    )


def test_no_solution_line_leaks_into_the_package():
    for path in (REPOSITORY_ROOT / "dlvc").rglob("*.py"):
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text or path.name == "stubs.py", path


def test_dlvc_stubs_check_command_exits_zero_when_up_to_date():
    if not (REPOSITORY_ROOT / "solutions").is_dir():
        pytest.skip("no solutions/ folder: a student's checkout")
    result = subprocess.run(
        [sys.executable, "-m", "dlvc.course.cli", "stubs", "--check", "--root", str(REPOSITORY_ROOT)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_region_spanning_two_functions_is_rejected():
    error = _marker_error(
        """\
        def f():
            # TODO 1 (A1, part 1): x.
            # BEGIN SOLUTION
            x = 1
        def g():
            y = 2
            # END SOLUTION
        """
    )
    assert "same function" in str(error)


def test_only_stubs_the_named_todos_and_keeps_the_other_solutions():
    source = GOOD + "\n\n" + GOOD.replace("double", "triple").replace("TODO 7", "TODO 8").replace("2 * x", "3 * x")
    stub = make_stub(source, "dlvc/example.py", only={"8"})
    assert "result = 2 * x" in stub and "result = 3 * x" not in stub
    assert "TODO 8 (" in stub and "raise NotImplementedError" in stub
