"""Peak memory and wall time of the Gradescope autograder grading one submission, in a container-sized cgroup.

For each ``--assignment`` it builds the autograder zip (``dlvc autograder``), lays out a
temporary root as Gradescope does (``source/`` from the zip, ``submission/`` a copy of
the reference build) and runs ``source/run_autograder`` there, as
``tests/test_autograder.py`` does (``DLVC_AUTOGRADER_ROOT``, ``DLVC_AUTOGRADER_PYTHON``:
this Python), in a fresh cgroup v1 memory cgroup (``/sys/fs/cgroup/memory/<name>``),
optionally with a memory limit (``--memory-mb``) and a CPU quota (``--cpus 0.5``: a CFS
quota of 50 ms per 100 ms in ``/sys/fs/cgroup/cpu/<name>``, Gradescope's default of
0.5 vCPU). It prints, per assignment, one line::

    assignment 1: peak 1234 MB (anon+shmem 567 MB), wall 123.4 s, score 30/30, oom kills 0, limit none, cpus all

- peak: the cgroup's ``memory.max_usage_in_bytes``: everything charged to it, page
  cache of the files it read first included (files another cgroup read earlier stay
  charged there, so this figure varies a little with what the machine cached);
- anon+shmem: the largest sum of ``total_rss`` and ``total_shmem`` of ``memory.stat``,
  sampled every 0.1 s: the memory that cannot be dropped under a limit;
- score: from ``results/results.json``; a run that failed shows its first output line.

``--submission hanging`` grades the stubs with every TODO spinning forever instead of the
reference: each graded test must then be stopped by its calibrated time limit, and the
whole run still finish within Gradescope's timeout (10 minutes by default).

Where the autograder calibrates when its image is built (``setup.sh`` runs
``run_autograder --calibrate``), that step runs first, in a cgroup of its own, and is
printed as ``assignment N setup: ...``; the submission's line is what every student's
run costs. Run it as root on a machine with cgroup v1's memory and cpu controllers::

    sudo .venv/bin/python benchmarks/bench_autograder_memory.py --assignment 1 2 3
    sudo .venv/bin/python benchmarks/bench_autograder_memory.py --assignment 1 2 3 --cpus 0.5
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dlvc.course.authoring.autograder import build_autograder
from dlvc.course.authoring.stubs import copy_package
from dlvc.course.student.submit import clean_environment

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory")
CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")
CFS_PERIOD_US = 100_000
MB = 2**20


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", type=int, nargs="+", default=[1], help="assignments to measure, one after the other (default: %(default)s)")
    parser.add_argument("--cpus", type=float, default=None, help="CPU quota in cores, e.g. 0.5 for Gradescope's default (default: no quota)")
    parser.add_argument("--memory-mb", type=int, default=None, help="memory limit of the cgroup in MB (default: none, to measure the peak)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before a run is killed (default: %(default)s)")
    parser.add_argument(
        "--submission", choices=("reference", "hanging"), default="reference",
        help="what is graded: the reference build, or the stubs with every TODO spinning forever (default: %(default)s)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the autograder roots in this folder (default: a temporary folder, removed)")
    return parser.parse_args(argv)


@dataclass
class Measurement:
    """What one run in a cgroup cost, and how it ended."""

    peak_bytes: int
    anon_bytes: int
    seconds: float
    returncode: int | None
    oom_kills: int
    output: str

    def describe(self, score: str | None = None) -> str:
        scored = f", score {score}" if score is not None else f", status {self.returncode}"
        return (
            f"peak {self.peak_bytes / MB:.0f} MB (anon+shmem {self.anon_bytes / MB:.0f} MB), "
            f"wall {self.seconds:.1f} s{scored}, oom kills {self.oom_kills}"
        )


def cgroups_available(cpus: float | None = None) -> str | None:
    """Why cgroup v1 control is missing here (not root, no memory or cpu controller), or None."""
    if os.geteuid() != 0:
        return "creating cgroups needs root"
    if not (MEMORY_CGROUPS / "memory.max_usage_in_bytes").is_file():
        return f"no cgroup v1 memory controller at {MEMORY_CGROUPS}"
    if cpus is not None and not (CPU_CGROUPS / "cpu.cfs_quota_us").is_file():
        return f"no cgroup v1 cpu controller at {CPU_CGROUPS}"
    return None


def run_in_cgroup(command: list[str], environment: dict[str, str], memory_bytes: int | None = None, cpus: float | None = None,
                  timeout: float = 1800.0) -> Measurement:
    """Run ``command`` in a fresh memory cgroup (and cpu cgroup where ``cpus`` is given); the cgroups are removed after."""
    name = f"dlvc-bench-{os.getpid()}-{time.monotonic_ns()}"
    memory, cpu = MEMORY_CGROUPS / name, CPU_CGROUPS / name
    folders = [memory] + ([cpu] if cpus is not None else [])
    for folder in folders:
        folder.mkdir()
    try:
        if memory_bytes is not None:
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
        if cpus is not None:
            (cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(round(cpus * CFS_PERIOD_US)))
        # The shell joins the cgroups, then becomes the command: nothing of it runs outside them.
        joins = " && ".join(f"echo $$ > {folder / 'cgroup.procs'}" for folder in folders)
        sampler = _AnonSampler(memory / "memory.stat")
        started = time.perf_counter()
        process = subprocess.Popen(["sh", "-c", f'{joins} && exec "$@"', "sh", *command], env=environment,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        sampler.start()
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        seconds = time.perf_counter() - started
        _stop_leftovers(memory)
        sampler.stop()
        return Measurement(int((memory / "memory.max_usage_in_bytes").read_text()), sampler.peak, seconds, process.returncode,
                           _oom_kills(memory), output)
    finally:
        for folder in folders:
            _stop_leftovers(folder)
            folder.rmdir()


def _stop_leftovers(cgroup: Path) -> None:
    """Kill what the run left in its cgroup (its own processes only) and wait until the cgroup is empty."""
    deadline = time.monotonic() + 30
    while pids := [int(pid) for pid in (cgroup / "cgroup.procs").read_text().split()]:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} stay in {cgroup}")
        time.sleep(0.1)


def _oom_kills(memory: Path) -> int:
    for line in (memory / "memory.oom_control").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0


class _AnonSampler:
    """The largest ``total_rss + total_shmem`` of a memory cgroup, read every 0.1 s from another thread."""

    def __init__(self, stat: Path):
        self.stat, self.peak = stat, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(0.1):
            with contextlib.suppress(OSError):
                fields = dict(line.split() for line in self.stat.read_text().splitlines())
                self.peak = max(self.peak, int(fields.get("total_rss", 0)) + int(fields.get("total_shmem", 0)))


def lay_out_root(assignment: int, root: Path, submission: str = "reference") -> Path:
    """``root`` laid out as Gradescope's ``/autograder``: the autograder in ``source/``, the submission in ``submission/``.

    submission: ``reference`` (the reference build) or ``hanging`` (the stubs, each TODO an endless loop).
    """
    archive = build_autograder(assignment, root / "dist")
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(root / "source")
    for script in ("run_autograder", "setup.sh"):
        (root / "source" / script).chmod(0o755)  # zipfile does not restore modes
    copy_package(REPOSITORY_ROOT, root / "submission", reference=submission == "reference")
    if submission == "hanging":
        for path in (root / "submission").rglob("*.py"):
            text = path.read_text()
            path.write_text(re.sub(r"^( *)raise NotImplementedError\b", r"\1while True:\n\1    pass\n\1raise NotImplementedError", text, flags=re.MULTILINE))
    return root / "source" / "run_autograder"


def autograder_environment(root: Path) -> dict[str, str]:
    return {**clean_environment(), "DLVC_AUTOGRADER_ROOT": str(root), "DLVC_AUTOGRADER_PYTHON": sys.executable}


def calibrates_at_setup(root: Path) -> bool:
    """Whether this autograder's ``setup.sh`` grades the reference when the image is built."""
    return "run_autograder\" --calibrate" in (root / "source" / "setup.sh").read_text()


def score_of(root: Path, measurement: Measurement) -> str:
    results = root / "results" / "results.json"
    if not results.is_file():
        lines = measurement.output.strip().splitlines()
        return f"no results.json (status {measurement.returncode}: {lines[-1] if lines else 'no output'})"
    data = json.loads(results.read_text())
    maximum = sum(test.get("max_score", 0) for test in data.get("tests", []))
    note = "" if data["score"] or "fault" not in data.get("output", "") else f" ({data['output'].splitlines()[0]})"
    return f"{data['score']:g}/{maximum:g}{note}"


def measure(assignment: int, folder: Path, args: argparse.Namespace) -> None:
    root = folder / f"assignment{assignment}"
    run_autograder = lay_out_root(assignment, root, args.submission)
    environment = autograder_environment(root)
    limit = f"{args.memory_mb} MB" if args.memory_mb else "none"
    cpus = f"{args.cpus:g}" if args.cpus else "all"
    memory_bytes = args.memory_mb * MB if args.memory_mb else None
    if calibrates_at_setup(root):
        setup = run_in_cgroup([str(run_autograder), "--calibrate"], environment, memory_bytes, args.cpus, args.timeout)
        print(f"assignment {assignment} setup: {setup.describe()}, limit {limit}, cpus {cpus}", flush=True)
    run = run_in_cgroup([str(run_autograder)], environment, memory_bytes, args.cpus, args.timeout)
    print(f"assignment {assignment}{'' if args.submission == 'reference' else ' (hanging submission)'}: "
          f"{run.describe(score_of(root, run))}, limit {limit}, cpus {cpus}", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = cgroups_available(args.cpus)
    if problem is not None:
        print(f"bench_autograder_memory: {problem}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        folder = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dlvc-bench-autograder-")))
        for assignment in args.assignment:
            measure(assignment, folder, args)
            if args.keep is None:
                shutil.rmtree(folder / f"assignment{assignment}", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
