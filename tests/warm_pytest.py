"""Helpers for the tests that run the public tests on many packages (every mutant, every stub).

A fresh ``python -m pytest`` per package spends most of its time importing torch.
:func:`warm_pytest` starts the grader's warm runner without a ``dlvc`` of its own
(:mod:`dlvc.course.grader.runner`, ``--without-dlvc``), and each run is a fork of it that
imports the package under test, exactly as a fresh process would. :func:`run_all`
calls many jobs, as many at a time as there are runners.
"""

import os
import queue
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from dlvc.course.grader.grade import SuiteRunner

Run = Callable[[list[str], str], tuple[int | None, str]]
Result = TypeVar("Result")


@contextmanager
def warm_pytest(logs: Path, runners: int = 2) -> Iterator[Run]:
    """``run(argv, name)``: pytest with ``argv`` from the repository root, in a fork of one of ``runners`` warm runners.

    Returns the exit status (None when it outlived 600 s) and the output; safe to call
    from ``runners`` threads at a time. The output of each run stays in ``logs/<name>.log``.
    """
    logs.mkdir(parents=True, exist_ok=True)
    environment = os.environ.copy()
    idle: queue.Queue[SuiteRunner] = queue.Queue()
    started = [SuiteRunner(environment, logs / f"runner-{index}.log", with_dlvc=False) for index in range(runners)]
    for runner in started:
        idle.put(runner)

    def run(argv: list[str], name: str) -> tuple[int | None, str]:
        runner = idle.get()
        try:
            log = logs / f"{name}.log"
            outcome = runner.run(argv, environment, log, seconds=600)
            return outcome["status"], log.read_text() if log.is_file() else ""
        finally:
            idle.put(runner)

    try:
        yield run
    finally:
        for runner in started:
            runner.close()


def run_all(logs: Path, jobs: Mapping[Hashable, Callable[[Run], Result]], runners: int = 2) -> dict[Hashable, Result]:
    """Call every job with a ``run`` of :func:`warm_pytest`, ``runners`` jobs at a time; the results by key."""
    with warm_pytest(logs, runners) as run, ThreadPoolExecutor(max_workers=runners) as pool:
        futures = {key: pool.submit(job, run) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}
