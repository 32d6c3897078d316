"""The files ``dlvc grade`` leaves behind, and who reads them.

Per submission, in ``OUT/<submission>/``:

    feedback.md     the student reads it: points per part, missing files, and
                    every failed test with its message.
    results.json    Gradescope reads it (its autograder ``results.json`` format);
                    written last, so that one that exists means the submission's
                    reports are complete. A restarted run skips such submissions.

Per class, in ``OUT/``:

    grades.csv      the TA uploads it: one row per submission, points per part and total.
    report.md       the TA reads it: statistics, mean points per part, each test's
                    pass rate, the submissions that could not be graded.
    scores.png      a histogram of the totals, shown in report.md.
    .grading/       the run's own record: seed, calibration, logs, verdicts.

``dlvc leaderboard`` writes ``leaderboard.csv``, ``.md`` and ``.png`` (and keeps its
scratch in ``.leaderboard/``) in the same folder. :data:`CLASS_FILE_NAMES` lists all
of these names: the writers take them from there, and no submission may be named like
one of them (case folded, as some file systems fold it), or its folder would take a
class file's place.

Every file is written atomically: a temporary file in the same folder, then
``os.replace``; a killed run leaves either the old file or the new one, plus at
worst a hidden ``.<name>.*.tmp`` file.
"""

import csv
import io
import json
import math
import os
import re
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..student.manifest import Manifest, SubmissionFile
from .verdicts import SubmissionResult, Verdict

RESULTS_NAME = "results.json"
FEEDBACK_NAME = "feedback.md"
GRADES_NAME = "grades.csv"
REPORT_NAME = "report.md"
HISTOGRAM_NAME = "scores.png"
GRADING_DIRNAME = ".grading"
LEADERBOARD_CSV_NAME, LEADERBOARD_MARKDOWN_NAME, LEADERBOARD_CHART_NAME = "leaderboard.csv", "leaderboard.md", "leaderboard.png"
LEADERBOARD_DIRNAME = ".leaderboard"
CLASS_FILE_NAMES = (
    GRADES_NAME, REPORT_NAME, HISTOGRAM_NAME, GRADING_DIRNAME,
    LEADERBOARD_CSV_NAME, LEADERBOARD_MARKDOWN_NAME, LEADERBOARD_CHART_NAME, LEADERBOARD_DIRNAME,
)
"""What ``dlvc grade`` and ``dlvc leaderboard`` write at the top of OUT, beside the submissions' folders."""
MAX_NAMES_PRINTED = 10


class ReportError(OSError):
    """Some files could not be written; the message names each one and why."""


def class_file_name(name: str) -> str | None:
    """The class file that a submission named ``name`` would collide with (case folded), or None."""
    return next((reserved for reserved in CLASS_FILE_NAMES if reserved.casefold() == name.casefold()), None)


def format_points(x: float) -> str:
    """Points as people write them: 7 -> "7", 2.5 -> "2.5", 1/3 -> "0.33"."""
    rounded = round(float(x), 2)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.2f}".rstrip("0")


# results.json


def results_json(result: SubmissionResult, manifest: Manifest) -> dict:
    """The submission's results in Gradescope's autograder format."""
    earned = result.part_points(manifest)
    return {
        "score": sum(earned.values()),
        "output": _results_output(result, manifest, earned),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {
            "seed": result.seed,
            "isolation": result.isolation,
            "assignment": manifest.number,
            "submission": result.name,
            "parts": {part.id: {"score": earned[part.id], "max_score": part.points} for part in manifest.parts},
            "missing": [entry.path for entry in result.missing],
            "notes": list(result.notes),
            "error": result.error,
        },
        "tests": _verdict_entries(result, manifest) + _missing_file_entries(result, manifest),
    }


def _results_output(result: SubmissionResult, manifest: Manifest, earned: dict[str, float]) -> str:
    lines = [f"Total: {format_points(sum(earned.values()))} / {format_points(manifest.total_points)} points"]
    lines += [f"Part {p.number} ({p.title}): {format_points(earned[p.id])} / {format_points(p.points)}" for p in manifest.parts]
    if result.error:
        lines.append(f"Could not be graded: {result.error}")
    if result.missing:
        lines.append("Missing files: " + ", ".join(entry.path for entry in result.missing))
    return "\n".join(lines)


def _verdict_entries(result: SubmissionResult, manifest: Manifest) -> list[dict]:
    entries = []
    index_in_part: dict[str, int] = {}
    for verdict in result.verdicts:
        part = manifest.part(verdict.test.part)
        index_in_part[part.id] = index_in_part.get(part.id, 0) + 1
        entries.append(
            {
                "name": f"{part.title}: {verdict.test.title}",
                "score": verdict.points,
                "max_score": verdict.test.points,
                "status": "passed" if verdict.passed else "failed",
                "output": "" if verdict.passed else verdict.message,
                "visibility": "visible",
                "tags": [part.id],
                "number": f"{part.number}.{index_in_part[part.id]}",
                "extra_data": {"seed": result.seed, "nodeid": verdict.test.nodeid, "seconds": _finite_or_none(verdict.seconds)},
            }
        )
    return entries


def _missing_file_entries(result: SubmissionResult, manifest: Manifest) -> list[dict]:
    """A failed test per missing file that costs points, numbered after its part's tests."""
    entries = []
    index_in_part = {part.id: sum(v.test.part == part.id for v in result.verdicts) for part in manifest.parts}
    for entry in result.missing:
        if entry.points <= 0:
            continue
        part = manifest.part(entry.part)
        index_in_part[part.id] += 1
        entries.append(
            {
                "name": f"missing file: {entry.path}",
                "score": 0.0,
                "max_score": entry.points,
                "status": "failed",
                "output": f"The submission has no {entry.path} ({entry.what}); that costs {format_points(entry.points)} points of this part.",
                "visibility": "visible",
                "tags": [part.id],
                "number": f"{part.number}.{index_in_part[part.id]}",
                "extra_data": {"seed": result.seed, "path": entry.path},
            }
        )
    return entries


def _finite_or_none(seconds: float | None) -> float | None:
    """JSON has no NaN or infinity: those, like None, become null."""
    return seconds if seconds is not None and math.isfinite(seconds) else None


# feedback.md


def feedback_markdown(result: SubmissionResult, manifest: Manifest) -> str:
    """What the student reads: the points, what is missing, what failed and what passed."""
    earned = result.part_points(manifest)
    sections = [
        f"# Assignment {manifest.number}: {manifest.title} — {result.name}",
        f"**Total: {format_points(sum(earned.values()))} / {format_points(manifest.total_points)} points**",
        _parts_table(manifest, earned),
    ]
    if result.error:
        sections.append(_error_section(result.error))
    if result.missing:
        sections.append(_missing_section(result.missing, manifest))
    if result.notes:
        sections.append("## Notes\n\n" + "\n".join(f"- {note}" for note in result.notes))
    sections.append(_failed_section(result, manifest))
    passed = _passed_section(result, manifest)
    if passed:
        sections.append(passed)
    return "\n\n".join(sections) + "\n"


def _parts_table(manifest: Manifest, earned: dict[str, float]) -> str:
    rows = [f"| {p.number} | {_cell(p.title)} | {format_points(earned[p.id])} | {format_points(p.points)} |" for p in manifest.parts]
    return "\n".join(["| Part | Title | Earned | Max |", "|---:|---|---:|---:|", *rows])


def _error_section(error: str) -> str:
    return (
        "## ⚠ This submission could not be graded\n\n"
        "The graded tests could not run on it, so it earns no points from them. The reason:\n\n"
        + _fenced(error)
    )


def _missing_section(missing: Sequence[SubmissionFile], manifest: Manifest) -> str:
    lines = ["## Missing files", ""]
    for entry in missing:
        if entry.points > 0:
            part = manifest.part(entry.part)
            cost = f"costs {format_points(entry.points)} points of part {part.number} ({part.title})"
        else:
            cost = "costs no points in the autograded parts (a file worth 0 points here is graded by hand)"
        lines.append(f"- `{entry.path}`: {entry.what}; {cost}")
    return "\n".join(lines)


def _failed_section(result: SubmissionResult, manifest: Manifest) -> str:
    failed = result.failed()
    if not failed:
        return "## What failed\n\nNothing: every graded test passed."
    blocks = ["## What failed"]
    for part in manifest.parts:
        in_part = [verdict for verdict in failed if verdict.test.part == part.id]
        if in_part:
            blocks.append(f"### Part {part.number}: {part.title}")
            blocks += [_failed_test(verdict) for verdict in in_part]
    return "\n\n".join(blocks)


def _failed_test(verdict: Verdict) -> str:
    heading = f"#### ✗ {verdict.test.title} (0 / {format_points(verdict.test.points)} points)"
    return heading + "\n\n" + _fenced(verdict.message or "(no message)")


def _passed_section(result: SubmissionResult, manifest: Manifest) -> str:
    """One line per passed test, grouped per part; "" when none passed."""
    lines = []
    for part in manifest.parts:
        in_part = [verdict for verdict in result.verdicts if verdict.passed and verdict.test.part == part.id]
        if in_part:
            lines += ["", f"### Part {part.number}: {part.title}", ""]
            lines += [f"- ✓ {v.test.title} ({format_points(v.points)} points)" for v in in_part]
    return "## What passed\n" + "\n".join(lines) if lines else ""


def _fenced(text: str) -> str:
    """A fenced code block holding ``text`` verbatim, its fence longer than any run of backticks inside."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text.rstrip()}\n{fence}"


def _cell(text: str) -> str:
    """Text that fits in one cell of a Markdown table."""
    return " ".join(str(text).split()).replace("|", "\\|")


# Per-submission files


def write_submission_reports(folder: Path, result: SubmissionResult, manifest: Manifest) -> None:
    """Write ``folder/feedback.md``, then ``folder/results.json``: a results.json means both are complete."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    feedback = feedback_markdown(result, manifest)
    results = json.dumps(results_json(result, manifest), indent=2, allow_nan=False) + "\n"
    _write_atomically(folder / FEEDBACK_NAME, feedback.encode())
    _write_atomically(folder / RESULTS_NAME, results.encode())


def read_results(folder: Path) -> dict | None:
    """The results.json in ``folder``, or None when it is absent, unreadable or truncated."""
    try:
        data = json.loads((Path(folder) / RESULTS_NAME).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it over ``path``."""
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), 0o644)  # readable like any file the TA writes (temporary files start private)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


# Class files


def write_class_reports(out_dir: Path, results: Sequence[SubmissionResult], manifest: Manifest) -> Path:
    """Write ``grades.csv``, ``report.md`` and ``scores.png`` in ``out_dir``; returns the report's path.

    ReportError, after writing what it could, when any of them could not be written.
    """
    out_dir = Path(out_dir)
    write_files(out_dir, {
        GRADES_NAME: lambda: grades_csv(results, manifest).encode(),
        HISTOGRAM_NAME: lambda: scores_png(results, manifest),
        REPORT_NAME: lambda: class_report_markdown(results, manifest).encode(),
    })
    return out_dir / REPORT_NAME


def write_files(folder: Path, contents: dict) -> None:
    """Write each ``name: make_bytes`` of ``contents`` atomically in ``folder``, all that can be.

    ReportError names every file that could not be written and why (a folder in its
    place, a full disk, no permission).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for name, make in contents.items():
        try:
            _write_atomically(folder / name, make())
        except OSError as error:
            why = "a folder is in its place" if (folder / name).is_dir() else (error.strerror or str(error))
            failures.append(f"{folder / name} ({why})")
    if failures:
        raise ReportError("could not write " + ", ".join(failures))


def grades_csv(results: Sequence[SubmissionResult], manifest: Manifest) -> str:
    """One row per submission, sorted by name: its points per part (manifest order) and total."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["submission", *(part.id for part in manifest.parts), "total"])
    for result in sorted(results, key=lambda r: r.name):
        earned = result.part_points(manifest)
        writer.writerow([result.name, *(format_points(earned[p.id]) for p in manifest.parts), format_points(sum(earned.values()))])
    return buffer.getvalue()


def class_report_markdown(results: Sequence[SubmissionResult], manifest: Manifest) -> str:
    """The TA's overview of a class: statistics, points per part, pass rates, ungradable submissions."""
    title = f"# Assignment {manifest.number}: {manifest.title} — class report"
    if not results:
        return f"{title}\n\nNo submissions were graded.\n\n![Histogram of the total points]({HISTOGRAM_NAME})\n"
    sections = [
        title,
        f"{len(results)} submission(s) graded, out of {format_points(manifest.total_points)} points. {_isolation_sentence(results)}",
        _statistics_table([result.total(manifest) for result in results]),
        _part_means_table(results, manifest),
        _pass_rates_table(results, manifest),
    ]
    errors = [result for result in results if result.error]
    if errors:
        sections.append(_errors_section(errors))
    sections.append(f"## Totals\n\n![Histogram of the total points]({HISTOGRAM_NAME})")
    return "\n\n".join(sections) + "\n"


def _isolation_sentence(results: Sequence[SubmissionResult]) -> str:
    """Which isolation the student code ran in (a run restarted elsewhere may have used two)."""
    modes = sorted({result.isolation or "unrecorded" for result in results})
    return f"Student code ran in the {' and '.join(modes)} isolation (see the README's table of modes)."


def _statistics_table(totals: list[float]) -> str:
    stats = {"mean": statistics.mean(totals), "median": statistics.median(totals), "min": min(totals), "max": max(totals)}
    rows = [f"| {name} | {format_points(value)} |" for name, value in stats.items()]
    return "\n".join(["| Total | Points |", "|---|---:|", *rows])


def _part_means_table(results: Sequence[SubmissionResult], manifest: Manifest) -> str:
    earned = [result.part_points(manifest) for result in results]
    rows = [
        f"| {p.number} | {_cell(p.title)} | {format_points(statistics.mean(e[p.id] for e in earned))} | {format_points(p.points)} |"
        for p in manifest.parts
    ]
    return "\n".join(["## Points per part", "", "| Part | Title | Mean | Max |", "|---:|---|---:|---:|", *rows])


def _pass_rates_table(results: Sequence[SubmissionResult], manifest: Manifest) -> str:
    """Each graded test, in suite order, with how many submissions passed it (a missing verdict counts as failed)."""
    suite = next((result.verdicts for result in results if result.verdicts), [])
    if not suite:
        return "## Pass rates\n\nNo submission has verdicts."
    passed_nodeids = [{v.test.nodeid for v in result.verdicts if v.passed} for result in results]
    rows = []
    for verdict in suite:
        test = verdict.test
        passed = sum(test.nodeid in nodeids for nodeids in passed_nodeids)
        part = manifest.part(test.part)
        rate = f"{100 * passed / len(results):.0f}%"
        rows.append(f"| {_cell(test.title)} | {part.number} {part.id} | {format_points(test.points)} | {passed}/{len(results)} | {rate} |")
    return "\n".join(["## Pass rates", "", "| Test | Part | Points | Passed | Pass rate |", "|---|---|---:|---:|---:|", *rows])


def _errors_section(errors: Sequence[SubmissionResult]) -> str:
    lines = [f"- `{result.name}`: {_first_line(result.error)}" for result in sorted(errors, key=lambda r: r.name)]
    return "## Could not be graded\n\nThese count 0 points; their feedback.md holds the whole reason.\n\n" + "\n".join(lines)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "(no reason given)"


def scores_png(results: Sequence[SubmissionResult], manifest: Manifest) -> bytes:
    """A PNG histogram of the totals over [0, total points]; empty axes when there are no results."""
    # Imported here: matplotlib is slow to import, and only the class report needs it.
    # The object-oriented Figure needs no pyplot backend and no closing: nothing global holds it.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    total_points = manifest.total_points
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    axes.hist([result.total(manifest) for result in results], bins=max(1, math.ceil(total_points)), range=(0, total_points), edgecolor="white")
    axes.set_xlim(0, total_points)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel(f"total points (of {format_points(total_points)})")
    axes.set_ylabel("submissions")
    axes.set_title(f"Assignment {manifest.number}: {manifest.title} ({len(results)} submissions)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


# The terminal


def summary_lines(results: Sequence[SubmissionResult], manifest: Manifest) -> list[str]:
    """What ``dlvc grade`` prints at the end; file names are relative to the output folder."""
    if not results:
        return [f"No submissions graded for assignment {manifest.number}.", f"Wrote {GRADES_NAME} and {REPORT_NAME} in the output folder."]
    totals = [result.total(manifest) for result in results]
    full = sum(math.isclose(total, manifest.total_points) or total > manifest.total_points for total in totals)
    lines = [
        f"Graded {len(results)} submission(s) of assignment {manifest.number} ({manifest.title}).",
        f"Mean total: {format_points(statistics.mean(totals))} / {format_points(manifest.total_points)} points; {full} with full points.",
    ]
    errors = sorted(result.name for result in results if result.error)
    if errors:
        shown = ", ".join(errors[:MAX_NAMES_PRINTED])
        more = f" and {len(errors) - MAX_NAMES_PRINTED} more" if len(errors) > MAX_NAMES_PRINTED else ""
        lines.append(f"{len(errors)} could not be graded: {shown}{more} (see {REPORT_NAME}).")
    lines.append(_isolation_sentence(results))
    lines.append(f"Grades: {GRADES_NAME}; class report: {REPORT_NAME} (in the output folder).")
    return lines
