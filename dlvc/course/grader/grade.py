"""``dlvc grade``: grade a whole class with the hidden suite of an assignment.

    dlvc grade submissions/ --assignment 1 --out grades/ [--jobs 2] [--seed 1234]

What happens, in order:

1. Each argument is a submission (a zip, or a folder holding ``dlvc/``) or a folder
   of submissions. Names come from the zips' and folders' names and must be unique
   (case aside), and none may be named like a file the grader writes in OUT
   (``grades.csv``, ``report.md``, ...: :data:`dlvc.course.grader.reports.CLASS_FILE_NAMES`).
   With no submissions but ``--calibration FILE``, only step 3 runs.
2. ``OUT/.grading/run.json`` records the assignment, the seed (a new random one
   unless ``--seed`` is given) and the graded tests. A run that was killed and is
   started again with the same arguments reads the seed from there, skips every
   submission whose ``OUT/<name>/results.json`` exists, and grades the rest.
3. The reference build is graded first. Every graded test must pass on it, and
   the time each worker took becomes that test's calibrated limit
   (``--time-factor`` times as long, at least ``--time-floor`` seconds), so a slow
   machine does not fail correct code. ``--calibration FILE`` reuses a calibration
   made for the same suite, reference, Python, torch and machine
   (:mod:`dlvc.course.grader.calibration`) and skips this step.
4. Submissions are graded ``--jobs`` at a time. Each one is unpacked and staged
   safely (:mod:`dlvc.course.grader.submission`), the definitions of its notebooks are taken
   from their code cells (:mod:`dlvc.course.student.notebook`), and it is graded by a pytest run of its own
   (forked from a warm runner, :mod:`dlvc.course.grader.runner`) with ``--impl`` on the
   staged package: the student's code runs in that run's sandboxed workers only. Verdicts
   come back only through a pipe from that run to the runner to this process; a test that
   sends no verdict scores zero, with the reason.
5. Per submission ``OUT/<name>/results.json`` (Gradescope's format) and
   ``feedback.md``; for the class ``grades.csv``, ``report.md`` and ``scores.png``.

The exit status is 0 whenever grading finished, whatever the students scored;
1 when the class files could not be written (the message names each and why);
2 when it could not start (bad arguments, a submission named like a class file,
a suite that fails on the reference).
Everything the grader writes lies under OUT (temporary files included).
"""

import argparse
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm

from . import calibration
from ..student.manifest import Manifest, ManifestError, load_manifest
from ..student.notebook import write_submitted_notebook_module
from .reports import GRADING_DIRNAME, ReportError, class_file_name, read_results, summary_lines, write_class_reports, write_submission_reports
from .isolation import SandboxError, add_isolation_arguments, choose_isolation
from ..authoring.stubs import copy_package
from .submission import SubmissionError, find_package_root, stage, submission_name
from .verdicts import GradedTest, SubmissionResult, Verdict, missing_verdict

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
WORK_DIRNAME = GRADING_DIRNAME
WORK_FOLDERS = {"tmp": 0o711, "staging": 0o711, "logs": 0o700, "verdicts": 0o700, "cache": 0o700, "config": 0o700}
"""OUT/.grading's folders and their modes: a Landlock worker's user passes through to its staged submission and its
scratch folder (tmp), and can read nothing of the grader's logs, records, caches and settings, even without Landlock."""
RESULTS_FD_OPTION = "--grading-results-fd"
"""The graded suite's option that takes the descriptor its verdicts are written to (see :mod:`dlvc.course.grader.runner`)."""
STARTUP_SECONDS = 300.0
"""Time a submission's pytest process gets on top of its tests' limits (imports, the sandbox's start)."""


class GradeError(Exception):
    """Grading cannot start; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "submissions", nargs="*", type=Path,
        help="zips, folders holding dlvc/, or folders of those; none with --calibration FILE: only calibrate, and write FILE",
    )
    parser.add_argument("--assignment", type=int, required=True, help="the assignment's number (its manifest: assignments/assignment<N>/assignment.toml)")
    parser.add_argument("--out", type=Path, required=True, help="the output folder: one folder per submission, grades.csv, report.md")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at a time, one core each (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random inputs (default: a new one, kept in OUT for a restart)")
    add_isolation_arguments(parser)
    parser.add_argument("--time-factor", type=float, default=10.0, help="a test may take this many times the reference's time (default: %(default)s)")
    parser.add_argument("--time-floor", type=float, default=10.0, help="... and at least this many seconds (default: %(default)s)")
    parser.add_argument(
        "--calibration", type=Path, default=None, metavar="FILE",
        help="reuse the time limits' calibration in FILE where it was made for this suite, reference, Python, torch and machine; "
        "otherwise grade the reference build first, as without it, and write FILE (default: calibrate in every new OUT)",
    )


def run(args: argparse.Namespace) -> int:
    grader = None
    try:
        grader = ClassGrader(args)
        return grader.grade() if grader.sources else grader.calibrate_only()
    except (GradeError, ManifestError, SandboxError) as error:
        print(f"dlvc grade: {error}", file=sys.stderr)
        return 2
    finally:
        if grader is not None:
            grader.close()


class ClassGrader:
    """One grading run over a class: the steps of the module docstring."""

    def __init__(self, args: argparse.Namespace):
        if args.jobs < 1:
            raise GradeError(f"--jobs: expected at least 1, got {args.jobs}")
        self.manifest: Manifest = load_manifest(args.assignment)
        self.suite = REPOSITORY_ROOT / "tests" / "hidden" / f"assignment{args.assignment}"
        if not self.suite.is_dir():
            raise GradeError(f"assignment {args.assignment} has no graded suite at {self.suite}")
        self.args = args
        self._runner_lock = threading.Lock()
        self._idle_runners: list[SuiteRunner] = []
        self._all_runners: list[SuiteRunner] = []
        self.out = args.out.resolve()
        self.work = self.out / WORK_DIRNAME
        if not args.submissions and args.calibration is None:
            raise GradeError("no submissions given: name zips, folders holding dlvc/, or folders of those (or none, with --calibration FILE, to calibrate only)")
        self.sources = find_submissions(args.submissions) if args.submissions else []
        self.isolation, warning = choose_isolation(args.isolation, args.worker_user)
        if warning:
            print(f"dlvc grade: {warning}", file=sys.stderr)
        for folder, mode in WORK_FOLDERS.items():
            (self.work / folder).mkdir(parents=True, exist_ok=True)
            (self.work / folder).chmod(mode)
        self.work.chmod(0o711)
        self.out.chmod(self.out.stat().st_mode | stat.S_IXOTH)  # OUT itself may be a private temporary folder
        # Libraries' caches and settings (matplotlib's fonts, torch's) go under OUT too, for this process and its children.
        os.environ.update(self._caches())
        self.tests = self._collect()
        self.seed = self._seed()
        self.calibration = self.work / "calibration.json"

    # ----- set-up -------------------------------------------------------------------------

    def _collect(self) -> list[GradedTest]:
        """The suite's graded tests, and a check that their points add up to the manifest's."""
        listing = self.work / "graded-tests.json"
        log = self.work / "logs" / "collect.log"
        with self._runner() as runner:
            status = runner.run([*self._pytest(), "--collect-only", "--graded-list", str(listing)], self._environment("collect"), log, 600)
        if status["status"] != 0 or not listing.is_file():
            raise GradeError(f"could not collect the graded suite {self.suite}:\n{log.read_text()[-3000:]}")
        tests = [GradedTest.from_json(entry) for entry in json.loads(listing.read_text())]
        order = {part.id: index for index, part in enumerate(self.manifest.parts)}
        tests.sort(key=lambda test: order.get(test.part, len(order)))
        problems = suite_problems(tests, self.manifest)
        if problems:
            raise GradeError("the graded suite disagrees with its manifest:\n  " + "\n  ".join(problems))
        return tests

    def _seed(self) -> int:
        record = self.work / "run.json"
        nodeids = [test.nodeid for test in self.tests]
        if record.is_file():
            previous = json.loads(record.read_text())
            if previous["assignment"] != self.manifest.number:
                raise GradeError(f"{self.out} holds a grading run of assignment {previous['assignment']}; choose another --out")
            if self.args.seed is not None and self.args.seed != previous["seed"]:
                raise GradeError(f"{self.out} holds a grading run with seed {previous['seed']}; pass that seed or choose another --out")
            if previous["tests"] != nodeids:
                raise GradeError(f"the graded suite changed since {self.out} was graded; choose another --out")
            return int(previous["seed"])
        seed = self.args.seed if self.args.seed is not None else secrets.randbelow(2**31)
        record.write_text(json.dumps({"assignment": self.manifest.number, "seed": seed, "tests": nodeids}, indent=2) + "\n")
        return seed

    def _calibrate(self) -> None:
        """Grade the reference build once; its workers' times become the time limits.

        A calibration made for this suite, reference, Python, torch and machine is reused:
        this run's own (a restarted run), or ``--calibration FILE``'s. Otherwise the
        reference is graded. Both files end up holding the calibration used.
        """
        expected = calibration.fingerprint(REPOSITORY_ROOT, self.suite, self.manifest)
        given = self.args.calibration
        own, _ = calibration.load(self.calibration, expected)
        theirs, problem = calibration.load(given, expected) if given is not None else (None, None)
        if own is None and theirs is None and given is not None:
            print(f"dlvc grade: --calibration {given}: {problem}; grading the reference build to calibrate", file=sys.stderr)
        seconds = own if own is not None else theirs if theirs is not None else self._grade_reference()
        for path, current in ((self.calibration, own), (given, theirs)):
            if path is not None and current is None:
                calibration.save(path, expected, seconds)

    def _grade_reference(self) -> dict[str, float]:
        """Grade the reference build, uncalibrated; the seconds of each graded test's workers."""
        package = self.work / "reference"
        shutil.rmtree(package, ignore_errors=True)
        copy_package(REPOSITORY_ROOT, package)
        timings = self.work / "reference-timings.json"
        result = self._grade_package("reference", package, extra=["--timings", str(timings)], calibrated=False)
        failed = result.failed()
        if failed:
            listed = "\n  ".join(f"{verdict.test.nodeid}: {verdict.message.splitlines()[0] if verdict.message else ''}" for verdict in failed)
            raise GradeError(f"the graded suite fails on the reference build (fix the suite first):\n  {listed}")
        seconds = json.loads(timings.read_text())
        timings.unlink()
        shutil.rmtree(package, ignore_errors=True)
        return seconds

    def calibrate_only(self) -> int:
        """No submissions: grade the reference build (or find its calibration current) and write ``--calibration``'s file."""
        self._calibrate()
        print(f"dlvc grade: the calibration of assignment {self.manifest.number} is in {self.args.calibration}", file=sys.stderr)
        return 0

    # ----- grading --------------------------------------------------------------------------

    def grade(self) -> int:
        self._calibrate()
        pending = [source for source in self.sources if read_results(self.out / submission_name(source)) is None]
        print(
            f"dlvc grade: assignment {self.manifest.number}, {len(self.sources)} submission(s), "
            f"{len(self.sources) - len(pending)} already graded, seed {self.seed}, isolation {self.isolation}, {self.args.jobs} job(s)",
            file=sys.stderr,
        )
        graded = {}
        with ThreadPoolExecutor(max_workers=self.args.jobs) as pool:
            futures = [pool.submit(self.grade_submission, source) for source in pending]
            for future in tqdm(as_completed(futures), total=len(futures), desc="grading", unit="submission", file=sys.stderr):
                result = future.result()
                graded[result.name] = result
        # What this run graded comes from memory; only what an earlier run graded is read back from OUT.
        names = [submission_name(source) for source in self.sources]
        results = [graded[name] if name in graded else self._stored_result(name) for name in names]
        return report_class(self.out, results, self.manifest)

    def grade_submission(self, source: Path) -> SubmissionResult:
        """Stage, grade and report one submission."""
        name = submission_name(source)
        staging = self.work / "staging" / name
        wanted = [entry.path for entry in self.manifest.submission]
        try:
            staged = stage(source, staging, wanted, carried_files=self.manifest.notebooks)
        except SubmissionError as error:
            reason = f"the submission could not be graded: {error}"
            result = SubmissionResult(name, self.seed, [missing_verdict(test, reason) for test in self.tests], error=str(error), isolation=self.isolation)
        else:
            notes = [write_submitted_notebook_module(staged.root, notebook) for notebook in self.manifest.notebooks]
            result = self._grade_package(name, staged.root)
            result.missing = [entry for entry in self.manifest.submission if entry.path in staged.missing and not entry.optional]
            result.notes = list(staged.notes) + [note for note in notes if note is not None]
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._store_result(result)
        write_submission_reports(self.out / name, result, self.manifest)
        return result

    def _grade_package(self, name: str, package_root: Path, extra: tuple[str, ...] = (), calibrated: bool = True) -> SubmissionResult:
        """Run the suite on one staged package in its own pytest process; every test gets a verdict.

        The verdicts come only through the runner's pipe from that process (``--grading-results-fd``),
        never from a file, which a worker might reach.
        """
        command = [
            *self._pytest(),
            "--impl", str(package_root),
            "--grading-seed", str(self.seed),
            "--isolation", self.isolation,
            *(["--worker-user", self.args.worker_user] if self.args.worker_user else []),
            "--sandbox-hide", str(self.out),
            *(["--time-limits", str(self.calibration)] if calibrated else []),
            "--time-factor", str(self.args.time_factor),
            "--time-floor", str(self.args.time_floor),
            *extra,
        ]
        for source in self.sources:
            command += ["--sandbox-hide", str(source.resolve().parent)]
        seconds = self._submission_seconds(calibrated)
        with self._runner() as runner:
            outcome = runner.run(command, self._environment(name), self.work / "logs" / f"{name}.log", seconds, results_option=RESULTS_FD_OPTION)
        if outcome["timed_out"]:
            ended = f"the grader's process for this submission was stopped after {seconds:.0f} s"
        else:
            ended = f"the grader's process for this submission ended (status {outcome['status']}) before this test reported"
        reported = parse_verdicts(outcome.get("records", []))
        verdicts = [
            Verdict(test, bool(reported[test.nodeid]["passed"]), str(reported[test.nodeid]["message"]), reported[test.nodeid].get("seconds"))
            if test.nodeid in reported
            else missing_verdict(test, ended)
            for test in self.tests
        ]
        return SubmissionResult(name, self.seed, verdicts, isolation=self.isolation)

    def _submission_seconds(self, calibrated: bool) -> float:
        if not calibrated or not self.calibration.is_file():
            return STARTUP_SECONDS + 120.0 * len(self.tests)
        measured = calibration.seconds_per_test(self.calibration)
        limits = [max(self.args.time_floor, self.args.time_factor * seconds) for seconds in measured.values()]
        return STARTUP_SECONDS + sum(limits)

    def _pytest(self) -> list[str]:
        """pytest's arguments for the suite (the runner calls pytest.main with them)."""
        return [str(self.suite), "-p", "no:cacheprovider", "-q", "-rN", "--tb=short"]

    @contextmanager
    def _runner(self) -> Iterator["SuiteRunner"]:
        """A warm runner for this thread's next run: an idle one, or a new one. At most one per job exists,
        since each imports torch: collection, calibration and grading share them."""
        with self._runner_lock:
            runner = self._idle_runners.pop() if self._idle_runners else None
        if runner is None or not runner.alive():
            runner = SuiteRunner(self._environment("runner"), self.work / "logs" / "runner.log")
            with self._runner_lock:
                self._all_runners.append(runner)
        try:
            yield runner
        finally:
            with self._runner_lock:
                self._idle_runners.append(runner)

    def close(self) -> None:
        for runner in self._all_runners:
            runner.close()

    def _environment(self, name: str) -> dict[str, str]:
        temporary = self.work / "tmp" / name
        temporary.mkdir(parents=True, exist_ok=True)
        environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "DLVC_REFERENCE")}
        environment.update(
            TMPDIR=str(temporary),
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            PYTHONDONTWRITEBYTECODE="1",
            MPLBACKEND="Agg",
            **self._caches(),
        )
        return environment

    def _caches(self) -> dict[str, str]:
        return {
            "XDG_CACHE_HOME": str(self.work / "cache"),
            "XDG_CONFIG_HOME": str(self.work / "config"),
            "MPLCONFIGDIR": str(self.work / "config" / "matplotlib"),
        }

    # ----- the record that class reports are built from --------------------------------------

    def _store_result(self, result: SubmissionResult) -> None:
        record = {
            "name": result.name,
            "seed": result.seed,
            "verdicts": [verdict.to_json() for verdict in result.verdicts],
            "missing": [entry.path for entry in result.missing],
            "notes": result.notes,
            "error": result.error,
            "isolation": result.isolation,
        }
        path = self.work / "verdicts" / f"{result.name}.json"
        temporary = path.with_suffix(".partial")
        temporary.write_text(json.dumps(record, indent=1))
        os.replace(temporary, path)

    def _stored_result(self, name: str) -> SubmissionResult:
        record = json.loads((self.work / "verdicts" / f"{name}.json").read_text())
        tests = {test.nodeid: test for test in self.tests}
        verdicts = [Verdict(tests[entry["nodeid"]], entry["passed"], entry["message"], entry["seconds"]) for entry in record["verdicts"]]
        missing = [entry for entry in self.manifest.submission if entry.path in record["missing"]]
        return SubmissionResult(name, record["seed"], verdicts, missing, record["notes"], record["error"], record.get("isolation", ""))


class SuiteRunner:
    """A warm runner process (:mod:`dlvc.course.grader.runner`): runs the suite once per request, in a fork."""

    def __init__(self, environment: dict[str, str], log: Path, with_dlvc: bool = True):
        """``with_dlvc=False``: the runner imports the libraries only, so each run may import a dlvc of its own."""
        runner = Path(__file__).resolve().parent / "runner.py"
        command = [sys.executable, "-m", "dlvc.course.grader.runner"] if with_dlvc else [sys.executable, str(runner), "--without-dlvc"]
        with open(log, "a") as output:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=output,
                cwd=REPOSITORY_ROOT, env=environment, text=True,
            )
        if not self.process.stdout.readline():
            raise GradeError(f"the grader's runner did not start; see {log}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, argv: list[str], environment: dict[str, str], log: Path, seconds: float, results_option: str | None = None) -> dict:
        """Run pytest with ``argv``; ``{"status": exit code or None, "timed_out": bool, "records": [lines]}``.

        ``results_option`` (say ``--grading-results-fd``): pytest gets it with the descriptor of a
        pipe to the runner, and ``records`` holds the lines it wrote there.
        """
        request = {"argv": argv, "env": environment, "cwd": str(REPOSITORY_ROOT), "log": str(log), "seconds": seconds, "results_option": results_option}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        return json.loads(reply) if reply else {"status": None, "timed_out": False, "records": []}

    def close(self) -> None:
        if self.alive():
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def report_class(out: Path, results: list[SubmissionResult], manifest: Manifest) -> int:
    """Write the class files and print the summary: 0; or 1, naming each class file that could not be written and why."""
    try:
        write_class_reports(out, results, manifest)
    except ReportError as error:
        print(f"dlvc grade: the submissions were graded (their folders in {out} are complete), but {error}", file=sys.stderr)
        return 1
    for line in summary_lines(results, manifest):
        print(line)
    return 0


def find_submissions(arguments: list[Path]) -> list[Path]:
    """The submissions the arguments name: zips, folders holding dlvc/, and the entries of folders of those."""
    found = []
    for argument in arguments:
        if argument.is_file():
            found.append(argument)
        elif argument.is_dir() and _is_submission_folder(argument):
            found.append(argument)
        elif argument.is_dir():
            entries = [entry for entry in sorted(argument.iterdir()) if not entry.name.startswith((".", "__"))]
            found += [entry for entry in entries if entry.is_dir() or entry.suffix.lower() == ".zip"]
        else:
            raise GradeError(f"{argument}: no such file or folder")
    if not found:
        raise GradeError(f"no submissions found in {', '.join(map(str, arguments))}")
    names: dict[str, Path] = {}  # by the name case folded: some file systems fold case
    for source in found:
        name = submission_name(source)
        if name.casefold() in names:
            raise GradeError(f"two submissions are both named {name!r} (case aside): {names[name.casefold()]} and {source}; rename one")
        reserved = class_file_name(name)
        if reserved is not None:
            raise GradeError(
                f"{source}: a submission may not be named {name!r}: its folder in OUT would take the place of "
                f"{reserved!r}, which the grader writes for the class; rename it"
            )
        names[name.casefold()] = source
    return found


def _is_submission_folder(folder: Path) -> bool:
    try:
        find_package_root(folder)
    except SubmissionError:
        return False
    return True


def suite_problems(tests: list[GradedTest], manifest: Manifest) -> list[str]:
    """Where the graded tests and the manifest disagree: unknown parts, points that do not add up."""
    problems = [f"{test.nodeid}: part {test.part!r} is not in {manifest.path}" for test in tests if test.part not in {p.id for p in manifest.parts}]
    for part in manifest.parts:
        points = sum(test.points for test in tests if test.part == part.id)
        if abs(points - part.points) > 1e-9:
            problems.append(f"part {part.id!r}: its graded tests are worth {points:g} points, the manifest says {part.points:g}")
    return problems


def parse_verdicts(lines: list[str]) -> dict[str, dict]:
    """The verdicts a suite run reported (the last one per test); a torn last line is ignored."""
    reported = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("nodeid"), str):
            reported[entry["nodeid"]] = entry
    return reported
