"""How long ``make demo`` takes to reach a validation mIoU of 0.90, and where its time goes.

Runs ``train.py`` with the demo's flags in a subprocess, ``--repeats`` times, each
into a fresh temporary run folder. The flags are read from ``DEMO_FLAGS`` in the
Makefile, the one definition that ``make demo`` runs too. Flags after ``--`` are
appended to them, and later flags win:

    python benchmarks/bench_demo.py                            # the demo, three times
    python benchmarks/bench_demo.py --repeats 1 -- --threads 1  # once, with one thread

For each run it prints the seconds from the start of the process to the end of the
first epoch whose validation mIoU (read from the run's ``metrics.csv``) reaches
``--target``, the total seconds, the final validation mIoU, and where the time went:
start-up (imports, building the data sets and the model, until the first epoch
begins), the epochs themselves (training and validation, as ``metrics.csv`` counts
their seconds; the synthetic samples are drawn during the first epoch that reads
them) and the work between epochs (checkpoint, CSV, TensorBoard, the plots). The
machine's load average (``os.getloadavg()``: 1, 5 and 15 minutes) is printed before
and after each run: on a shared machine the figures are only comparable at a
similar load.
"""

import argparse
import csv
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dlvc.threads import available_cores

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = REPOSITORY_ROOT / "Makefile"
EPOCH_LINE = re.compile(r"^epoch +(\d+)/\d+ ")
"""The line the trainer prints at the end of every epoch, after writing metrics.csv."""


@dataclass
class DemoRun:
    """One timed run: seconds since the process started at the end of each epoch, and its metrics.csv rows."""

    epoch_ends: dict[int, float]
    total_seconds: float
    rows: list[dict]

    def first_epoch_reaching(self, target: float) -> int | None:
        """The first epoch whose validation mIoU is at least ``target``; None if none is."""
        for row in self.rows:
            if row["val_miou"] and float(row["val_miou"]) >= target:
                return int(row["epoch"])
        return None

    def seconds_to(self, target: float) -> float | None:
        """Seconds from the start of the process to the end of the first epoch reaching ``target``."""
        epoch = self.first_epoch_reaching(target)
        return None if epoch is None else self.epoch_ends[epoch]

    def final_miou(self) -> float | None:
        validated = [float(row["val_miou"]) for row in self.rows if row["val_miou"]]
        return validated[-1] if validated else None

    def epoch_seconds(self) -> float:
        """Training and validation, as the trainer counts each epoch's seconds."""
        return sum(float(row["seconds"]) for row in self.rows)

    def startup_seconds(self) -> float:
        """From the start of the process to the beginning of the first epoch."""
        first = self.rows[0]
        return self.epoch_ends[int(first["epoch"])] - float(first["seconds"])

    def between_epochs_seconds(self) -> float:
        """What the process spent outside start-up and the epochs: checkpoints, CSV, TensorBoard, plots, exit."""
        return self.total_seconds - self.startup_seconds() - self.epoch_seconds()


def demo_flags(makefile: Path = MAKEFILE) -> list[str]:
    """The flags ``make demo`` passes to train.py: the Makefile's ``DEMO_FLAGS``."""
    text = makefile.read_text().replace("\\\n", " ")
    match = re.search(r"^DEMO_FLAGS\s*:?=(.*)$", text, flags=re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{makefile}: no DEMO_FLAGS variable, so the demo's flags are unknown")
    return shlex.split(match.group(1))


def run_demo(flags: list[str], out: Path) -> DemoRun:
    """Run train.py with ``flags`` into ``out``, noting when each epoch's line is printed."""
    command = [sys.executable, "train.py", *flags, "--out", str(out), "--overwrite"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    epoch_ends = {}
    started = time.perf_counter()
    with subprocess.Popen(command, cwd=REPOSITORY_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        for line in process.stdout:
            match = EPOCH_LINE.match(line)
            if match:
                epoch_ends[int(match.group(1))] = time.perf_counter() - started
        errors = process.stderr.read()
    total = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed with exit status {process.returncode}:\n{errors[-3000:]}")
    with open(out / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    missing = sorted({int(row["epoch"]) for row in rows} - epoch_ends.keys())
    if missing:
        raise RuntimeError(f"train.py printed no line for epochs {missing} of metrics.csv, so their times are unknown")
    return DemoRun(epoch_ends, total, rows)


def load_text() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def report(index: int, repeats: int, run: DemoRun, target: float, load_before: str, load_after: str) -> str:
    """One line of figures for one run."""
    epoch = run.first_epoch_reaching(target)
    reached = f"epoch {epoch} after {run.seconds_to(target):.1f} s" if epoch is not None else "not reached"
    final = run.final_miou()
    return (
        f"run {index}/{repeats}: load {load_before} -> {load_after} | val mIoU >= {target:.2f}: {reached} | "
        f"total {run.total_seconds:.1f} s | final val mIoU {'-' if final is None else f'{final:.4f}'} | "
        f"start-up {run.startup_seconds():.1f} s, epochs {run.epoch_seconds():.1f} s, between epochs {run.between_epochs_seconds():.1f} s"
    )


def summary(runs: list[DemoRun], target: float) -> str:
    """The medians over all runs."""
    reached = [seconds for seconds in (run.seconds_to(target) for run in runs) if seconds is not None]
    to_target = f"{statistics.median(reached):.1f} s" if reached else "not reached"
    return (
        f"median of {len(runs)} runs: val mIoU >= {target:.2f} after {to_target} ({len(reached)} of {len(runs)} reached it), "
        f"total {statistics.median(run.total_seconds for run in runs):.1f} s"
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the demo (default: %(default)s)")
    parser.add_argument("--target", type=float, default=0.90, help="validation mIoU to time (default: %(default)s)")
    parser.add_argument("extra", nargs="*", metavar="-- FLAG", help="train.py flags appended to the demo's, after --")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> list[DemoRun]:
    flags = demo_flags() + args.extra
    print(f"python train.py {shlex.join(flags)}")
    print(f"cores this process may use: {available_cores()} of the machine's {os.cpu_count()}")
    runs = []
    for index in range(1, args.repeats + 1):
        load_before = load_text()
        with tempfile.TemporaryDirectory() as folder:
            run = run_demo(flags, Path(folder) / "demo")
        runs.append(run)
        print(report(index, args.repeats, run, args.target, load_before, load_text()), flush=True)
    print(summary(runs, args.target))
    return runs


if __name__ == "__main__":
    main(parse_args())
