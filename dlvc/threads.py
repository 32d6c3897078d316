"""How many CPU threads a training process uses, so that it shares a machine without oversubscribing it.

``--threads N`` is the process's budget of CPU threads, its DataLoader worker
processes included. Each worker runs one intra-op thread: PyTorch's worker loop calls
``torch.set_num_threads(1)`` in every worker (``torch/utils/data/_utils/worker.py``).
The main process gets the threads the workers leave, at least one, through
``torch.set_num_threads``. The default budget is the cores this process may use (its
CPU affinity where the system reports one, else every core), shared among the
processes that ``torchrun`` starts on the same machine (``LOCAL_WORLD_SIZE``).
:func:`load_warning` says when other work on the machine leaves fewer cores free:
threads that wait for a core slow every step down, so fewer threads are then faster.

The inter-op pool is left alone: it serves only explicit task parallelism
(``torch.jit.fork``), which eager training does not use, and its size can be set only
once per process, before any parallel work.
"""

import math
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ThreadPlan:
    """The CPU threads of one training process: ``main`` in the main process, one in each of ``workers``."""

    main: int
    workers: int

    @property
    def total(self) -> int:
        return self.main + self.workers

    def describe(self) -> str:
        return f"threads: {self.main} in the main process, {self.workers} in DataLoader workers (one each); {available_cores()} cores available"


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system has one, else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads() -> int:
    """The available cores shared among the processes torchrun started on this machine, at least 1."""
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, available_cores() // local_processes)


def plan_threads(threads: int | None, workers: int) -> ThreadPlan:
    """Share ``threads`` (None: :func:`default_threads`) between ``workers`` DataLoader workers and the main process.

    Raises:
        ValueError: ``threads`` is not a positive int, or ``workers`` a negative one.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"--threads: expected a positive number of threads, got {threads!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"--workers: expected a non-negative number of worker processes, got {workers!r}")
    budget = default_threads() if threads is None else threads
    return ThreadPlan(main=max(1, budget - workers), workers=workers)


def load_warning(plan: ThreadPlan) -> str | None:
    """One line when the machine's load leaves fewer free cores than ``plan`` asks for, else None.

    The load average over the last minute counts the whole machine, so it is
    compared with all its cores (``os.cpu_count()``); free cores are rounded to whole
    ones, and a plan is not asked to find more cores than the machine has.
    """
    if not hasattr(os, "getloadavg"):
        return None
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    free = max(0, math.floor(cores - load + 0.5))
    wanted = min(plan.total, cores)
    if free >= wanted:
        return None
    return (
        f"warning: the machine's load ({load:.1f} over the last minute, {cores} cores) leaves {free} cores free "
        f"for the {wanted} threads planned; threads that wait for a core slow training down, so try --threads {max(1, free)}"
    )


def apply_threads(plan: ThreadPlan) -> None:
    """Give the main process ``plan.main`` intra-op threads; each DataLoader worker sets its own one."""
    torch.set_num_threads(plan.main)
