"""What isolation costs: grading copies of the reference build in sandboxed workers, against plain in-process pytest.

Both sides run the same graded suite (``tests/hidden/assignment<N>``) with the same
seed on ``--copies`` copies of the reference build, in one run, for each value of
``--jobs``:

- isolated: ``dlvc grade`` as a TA runs it: each submission staged, its suite run
  forked from a warm runner, every graded test in a fresh sandboxed worker (a
  fork of the submission's fork server). Its once-per-run set-up (collecting the
  suite, grading the reference build to calibrate the time limits) is timed and
  printed on its own, and not counted per submission;
- in-process: ``pytest tests/hidden/assignment<N> --isolation in-process``, one
  pytest process per submission, as graders that run student code in the test
  process do: the graded tests call the package directly, nothing is sandboxed.

It prints the seconds per submission of each, their ratio (isolated / in-process)
and, when several ``--jobs`` are given, the speed-up of more jobs. Run it with
``python benchmarks/bench_grading.py --copies 4 --jobs 1 2``.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dlvc.course import grade
from dlvc.course.isolation import choose_isolation
from dlvc.course.stubs import copy_package

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=4, help="copies of the reference build to grade (default: %(default)s)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="values of --jobs to measure (default: %(default)s)")
    parser.add_argument("--assignment", type=int, default=1, help="the assignment whose suite runs (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1234, help="grading seed of both sides (default: %(default)s)")
    parser.add_argument("--folder", type=Path, default=None, help="where to put the copies and outputs (default: a temporary folder)")
    return parser.parse_args(argv)


def isolated_seconds(submissions: Path, out: Path, args: argparse.Namespace, jobs: int) -> tuple[float, float]:
    """(set-up seconds, grading seconds) of one ``dlvc grade`` run."""
    grade_args = argparse.Namespace(
        submissions=[submissions], assignment=args.assignment, out=out, jobs=jobs, seed=args.seed, isolation=None, time_factor=10.0, time_floor=10.0,
        calibration=None,
    )
    started = time.perf_counter()
    grader = grade.ClassGrader(grade_args)
    try:
        grader._calibrate()
        ready = time.perf_counter()
        grader.grade()
        return ready - started, time.perf_counter() - ready
    finally:
        grader.close()


def in_process_seconds(count: int, args: argparse.Namespace, jobs: int, folder: Path) -> float:
    """Seconds to run the suite in-process once per submission, ``jobs`` pytest processes at a time."""
    suite = REPOSITORY_ROOT / "tests" / "hidden" / f"assignment{args.assignment}"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}

    def one(index: int) -> int:
        results = folder / f"in-process-{jobs}-{index}.jsonl"
        command = [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider", "--isolation", "in-process", "--grading-seed", str(args.seed), "--grading-results", str(results)]
        result = subprocess.run(command, cwd=REPOSITORY_ROOT, env=environment, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"the in-process suite failed on the reference build:\n{result.stdout[-3000:]}")
        return result.returncode

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - started


def main(argv=None) -> int:
    args = parse_args(argv)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="dlvc-bench-grading-"))
    submissions = folder / "submissions"
    shutil.rmtree(submissions, ignore_errors=True)
    for index in range(args.copies):
        copy_package(REPOSITORY_ROOT, submissions / f"copy-{index}")
    isolation = choose_isolation()[0]
    print(f"grading {args.copies} copies of the reference build, assignment {args.assignment}, isolation {isolation}, seed {args.seed}")
    per_submission = {}
    for jobs in args.jobs:
        out = folder / f"grades-jobs-{jobs}"
        shutil.rmtree(out, ignore_errors=True)
        setup, grading = isolated_seconds(submissions, out, args, jobs)
        baseline = in_process_seconds(args.copies, args, jobs, folder)
        isolated, plain = grading / args.copies, baseline / args.copies
        per_submission[jobs] = (isolated, plain)
        print(f"jobs {jobs}: set-up once per run {setup:.1f} s (collect the suite, calibrate on the reference)")
        print(f"jobs {jobs}: isolated {isolated:.2f} s per submission, in-process pytest {plain:.2f} s per submission, ratio {isolated / plain:.2f}")
    if len(per_submission) > 1:
        fewest, most = min(per_submission), max(per_submission)
        (isolated_few, plain_few), (isolated_many, plain_many) = per_submission[fewest], per_submission[most]
        print(f"speed-up of {most} jobs over {fewest}: isolated {isolated_few / isolated_many:.2f}x, in-process {plain_few / plain_many:.2f}x")
    if args.folder is None:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
