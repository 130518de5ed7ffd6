"""The node loops' harness (vcapp/node/harness.py): the throttle, the worker thread (period,
last error, back-off, wake, stop, one log line per distinct error) and the one-shot job."""

from __future__ import annotations

import logging
import sys
import threading
import time

import pytest

from vcapp.node.harness import Every, Job, Worker


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_for(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


class Script:
    """A sync that fails while `failing` is set and records when each call started."""

    def __init__(self, failing: bool = False, error: str = "etcd unreachable") -> None:
        self.failing, self.error = failing, error
        self.calls: list[float] = []

    def __call__(self) -> None:
        self.calls.append(time.monotonic())
        if self.failing:
            raise RuntimeError(self.error)

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.calls, self.calls[1:])]


@pytest.fixture
def workers():
    made: list[Worker] = []

    def make(*args, **kwargs) -> Worker:
        w = Worker(*args, **kwargs)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop(2)


# ---- Every --------------------------------------------------------------------------------

def test_every_is_due_at_once_then_once_per_period():
    clock = Clock()
    every = Every(10.0, clock)
    assert every.due()
    assert not every.due()
    clock.now += 9.9
    assert not every.due()
    clock.now += 0.1
    assert every.due()  # a full period since the last due
    assert not every.due()


def test_every_ready_does_not_begin_a_period_and_mark_does():
    clock = Clock()
    every = Every(5.0, clock)
    assert every.ready() and every.ready()  # asking twice changes nothing
    every.mark()
    assert not every.ready()
    clock.now += 5.0
    assert every.ready()
    every.mark()
    clock.now += 4.0
    assert not every.due()
    assert every.age() == pytest.approx(4.0)


def test_every_soon_makes_the_next_check_due_and_keeps_the_age_finite():
    clock = Clock()
    every = Every(10.0, clock)
    assert every.age() == float("inf")  # nothing happened yet
    every.due()
    clock.now += 1.0
    every.soon()
    assert every.age() == pytest.approx(10.0)
    assert every.due()
    assert not every.due()


def test_every_takes_now_from_the_caller():
    every = Every(2.0, clock=lambda: pytest.fail("the clock is not read when `now` is given"))
    assert every.due(now=100.0)
    assert not every.due(now=101.9)
    assert every.due(now=102.0)


# ---- Worker -------------------------------------------------------------------------------

def test_worker_runs_its_sync_every_period_on_a_named_thread(workers):
    names = []
    script = Script()
    w = workers("vcapp-test", lambda: (names.append(threading.current_thread().name), script()), 0.03)
    w.start()
    w.start()  # idempotent: still one thread
    wait_for(lambda: len(script.calls) >= 4)
    assert set(names) == {"vcapp-test"}
    assert [t.name for t in threading.enumerate()].count("vcapp-test") == 1
    assert all(0.02 <= g < 0.2 for g in script.gaps()), script.gaps()
    assert w.last_error is None and w.last_ok is not None


def test_a_gap_worker_waits_a_period_before_its_first_call(workers):
    script = Script()
    began = time.monotonic()
    w = workers("vcapp-test", script, 0.1, gap=True)
    w.start()
    wait_for(lambda: script.calls)
    assert script.calls[0] - began >= 0.09


def test_worker_keeps_the_last_error_and_clears_it_on_success(workers):
    script = Script(failing=True)
    w = workers("vcapp-test", script, 0.01, log=logging.getLogger("test.harness"), failed=lambda e: None)
    w.start()
    wait_for(lambda: w.failures >= 2)
    assert w.last_error == "etcd unreachable" and w.last_ok is None
    assert w.alive()  # a failing sync does not end the thread
    script.failing = False
    wait_for(lambda: w.last_error is None)
    assert w.failures == 0 and w.last_ok is not None


def backoffs(w: Worker, failures: tuple[int, ...]) -> list[float]:
    out = []
    for n in failures:
        w.failures = n
        out.append(w.backoff())
    return out


def test_worker_backs_off_on_failures_in_a_row(workers):
    script = Script(failing=True)
    w = workers("vcapp-test", script, 0.02, backoff_max_s=0.16, failed=lambda e: None)
    w.start()
    wait_for(lambda: len(script.calls) >= 6)
    gaps = script.gaps()[:5]  # waits of 0.02, 0.04, 0.08, 0.16, 0.16
    assert gaps[0] < gaps[2] < gaps[3], gaps
    assert gaps[3] >= 0.15 and gaps[4] < 0.4, gaps  # capped at backoff_max_s
    assert backoffs(w, (1, 2, 3, 4, 5, 1000)) == [0.02, 0.04, 0.08, 0.16, 0.16, 0.16]


def test_the_period_resumes_after_a_success(workers):
    script = Script(failing=True)
    w = workers("vcapp-test", script, 0.02, backoff_max_s=10.0, failed=lambda e: None)
    w.start()
    wait_for(lambda: w.failures >= 3)
    script.failing = False
    wait_for(lambda: w.last_error is None, timeout=1.0)
    count = len(script.calls)
    wait_for(lambda: len(script.calls) >= count + 3, timeout=0.5)  # every 0.02 s again, not 0.16 s and up


def test_worker_without_backoff_max_retries_at_retry_s():
    assert backoffs(Worker("vcapp-test", lambda: None, 5.0, retry_s=2.0), (1, 2, 10)) == [2.0, 2.0, 2.0]
    assert backoffs(Worker("vcapp-test", lambda: None, 1.0), (0, 1, 3)) == [1.0, 1.0, 1.0]


def test_stop_ends_the_thread(workers):
    script = Script()
    w = workers("vcapp-test", script, 10.0)
    w.start()
    wait_for(lambda: script.calls)
    began = time.monotonic()
    w.stop(2)
    assert not w.alive() and time.monotonic() - began < 1.0  # not after the 10 s period
    count = len(script.calls)
    time.sleep(0.05)
    assert len(script.calls) == count


def test_wake_runs_the_next_sync_at_once(workers):
    script = Script()
    w = workers("vcapp-test", script, 10.0)
    w.start()
    wait_for(lambda: len(script.calls) == 1)
    w.wake()
    wait_for(lambda: len(script.calls) == 2, timeout=1.0)
    assert script.calls[1] - script.calls[0] < 1.0


def test_a_repeated_error_is_logged_once_and_the_recovery_once(workers, caplog):
    logger = logging.getLogger("test.harness")
    script = Script(failing=True)
    w = workers("vcapp-test", script, 0.01, log=logger)
    with caplog.at_level(logging.INFO, logger="test.harness"):
        w.start()
        wait_for(lambda: len(script.calls) >= 5)
        script.error = "a different error"
        wait_for(lambda: w.last_error == "a different error")
        wait_for(lambda: len(script.calls) >= 8)
        script.failing = False
        wait_for(lambda: w.last_error is None)
        wait_for(lambda: len(script.calls) >= 11)
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == ["vcapp-test failed; trying again"] * 2
    assert [str(r.exc_info[1]) for r in failures] == ["etcd unreachable", "a different error"]
    recovered = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert recovered == ["vcapp-test works again (it failed: a different error)"]


def test_failed_is_called_once_per_distinct_error_inside_the_handler(workers):
    seen = []
    script = Script(failing=True)
    w = workers("vcapp-test", script, 0.01, failed=lambda e: seen.append((str(e), sys.exc_info()[1] is e)))
    w.start()
    wait_for(lambda: len(script.calls) >= 4)
    assert seen == [("etcd unreachable", True)]


# ---- Job ----------------------------------------------------------------------------------

def test_job_runs_one_work_at_a_time_on_a_named_thread():
    job = Job("vcapp-test-job")
    release = threading.Event()
    ran = []

    def work(tag: str) -> None:
        ran.append((tag, threading.current_thread().name))
        release.wait(2)

    assert not job.running()
    assert job.start(work, "first")
    assert not job.start(work, "second")  # the first still runs
    assert job.running()
    release.set()
    job.join(2)
    assert not job.running()
    assert job.start(work, "third")
    job.join(2)
    assert ran == [("first", "vcapp-test-job"), ("third", "vcapp-test-job")]
