"""--threads: how a training process shares its CPU threads between DataLoader workers and the main process."""

import os

import pytest
import torch

from dlvc import threads
from dlvc.threads import ThreadPlan, apply_threads, load_warning, plan_threads
from top_level_scripts import import_script


@pytest.fixture
def eight_cores(monkeypatch):
    """A process that may use 8 cores of an 8-core machine, outside torchrun."""
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)


def test_available_cores_are_the_process_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert threads.available_cores() == 3


def test_default_gives_the_main_process_the_cores_the_workers_leave(eight_cores):
    assert plan_threads(None, workers=3) == ThreadPlan(main=5, workers=3)


def test_default_without_workers_gives_every_core_to_the_main_process(eight_cores):
    assert plan_threads(None, workers=0) == ThreadPlan(main=8, workers=0)


def test_default_shares_the_cores_among_torchrun_processes(eight_cores, monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert plan_threads(None, workers=1) == ThreadPlan(main=3, workers=1), "2 processes on 8 cores: 4 threads each"


def test_explicit_threads_are_shared_the_same_way(eight_cores):
    assert plan_threads(3, workers=1) == ThreadPlan(main=2, workers=1)


def test_main_process_keeps_one_thread_when_the_workers_take_them_all(eight_cores):
    assert plan_threads(2, workers=4) == ThreadPlan(main=1, workers=4)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_threads_that_are_not_a_positive_int_are_refused(bad):
    with pytest.raises(ValueError, match=rf"--threads: expected a positive number of threads, got {bad!r}"):
        plan_threads(bad, workers=0)


def test_negative_workers_are_refused():
    with pytest.raises(ValueError, match="--workers: expected a non-negative number"):
        plan_threads(2, workers=-1)


def test_threads_flag_refuses_zero_and_negative_values():
    train = import_script("train")
    for bad in ("0", "-3"):
        with pytest.raises(SystemExit) as exit:
            train.parse_args(["--threads", bad])
        assert exit.value.code == 2, f"--threads {bad} must be a usage error (exit status 2)"


def test_threads_flag_default_is_resolved_from_the_cores(eight_cores):
    from dlvc.experiment import resolve

    args = resolve(import_script("train").parse_args(["--dataset", "synthetic-pets", "--workers", "2"]))
    assert args.threads == 8, "the resolved configuration must hold the thread count the run uses"


def test_no_warning_when_the_machine_is_idle(eight_cores, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.2, 0.1))
    assert load_warning(ThreadPlan(main=6, workers=2)) is None


def test_warning_when_the_load_leaves_fewer_free_cores_than_planned(eight_cores, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 4.0, 3.0))
    warning = load_warning(ThreadPlan(main=6, workers=2))
    assert warning is not None, "a load of 5 on 8 cores leaves 3 free, fewer than the 8 threads planned"
    assert "\n" not in warning and "load (5.0" in warning and "3 cores free" in warning and "8 threads" in warning, warning
    assert "--threads 3" in warning, f"the warning must suggest a thread count that fits the free cores: {warning}"


def test_no_warning_when_the_free_cores_suffice_for_a_small_plan(eight_cores, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 4.0, 3.0))
    assert load_warning(ThreadPlan(main=2, workers=1)) is None, "3 free cores are enough for 3 threads"


def test_apply_sets_the_main_process_threads():
    before = torch.get_num_threads()
    try:
        apply_threads(ThreadPlan(main=1, workers=3))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
