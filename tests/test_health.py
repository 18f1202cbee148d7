"""ros2_fed.health: per-kind log throttle and input/engine watchdog, driven by a fake clock."""

from __future__ import annotations

import math
import threading

import pytest

from ros2_fed import health
from ros2_fed.health import ERROR, OK, WARN, InputWatchdog, KindThrottle


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --------------------------------------------------------------------------------------
# KindThrottle
# --------------------------------------------------------------------------------------


def test_each_kind_gets_its_own_first_line() -> None:
    """Issue 15: a zero_size line hid a step_mismatch line 0.5 s later."""
    clock = FakeClock()
    throttle = KindThrottle(2.0, clock)
    assert throttle.allow("zero_size").log
    clock.advance(0.5)
    assert throttle.allow("step_mismatch").log
    assert not throttle.allow("zero_size").log
    assert not throttle.allow("step_mismatch").log
    assert throttle.suppressed() == {"zero_size": 1, "step_mismatch": 1}


def test_later_lines_of_a_kind_wait_for_the_period_and_report_what_was_held_back() -> None:
    clock = FakeClock()
    throttle = KindThrottle(2.0, clock)
    assert throttle.allow("truncated") == health.LogDecision(True, 0)
    for _ in range(7):
        clock.advance(0.25)
        assert not throttle.allow("truncated").log  # 0.25 .. 1.75 s
    clock.advance(0.2499)
    assert not throttle.allow("truncated").log  # 1.9999 s
    clock.advance(0.0001)
    decision = throttle.allow("truncated")  # 2.0 s: the period has passed
    assert decision == health.LogDecision(True, 8)
    assert decision.suffix() == " (8 more like this since the last line)"
    assert throttle.allow("truncated") == health.LogDecision(False, 0)
    assert throttle.suppressed() == {"truncated": 9}  # totals are not reset by a logged line
    clock.advance(2.0)
    assert throttle.allow("truncated") == health.LogDecision(True, 1)


def test_zero_period_logs_everything_and_infinite_period_logs_once() -> None:
    clock = FakeClock()
    every, once = KindThrottle(0.0, clock), KindThrottle(math.inf, clock)
    assert all(every.allow("x").log for _ in range(5)) and every.suppressed() == {}
    assert once.allow("format_mismatch").log
    clock.advance(1e9)
    assert not once.allow("format_mismatch").log
    assert once.allow("generic_encoding").log
    assert once.suppressed() == {"format_mismatch": 1}
    assert (
        health.LogDecision(True, 0).suffix() == "" and health.LogDecision(False, 3).suffix() == ""
    )


def test_throttle_rejects_a_negative_period() -> None:
    for bad in (-1.0, math.nan):
        with pytest.raises(ValueError):
            KindThrottle(bad)


def test_throttle_counts_are_exact_across_threads() -> None:
    throttle = KindThrottle(math.inf)
    logged = []

    def hammer(kind: str) -> None:
        for _ in range(2000):
            if throttle.allow(kind).log:
                logged.append(kind)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in ("a", "b", "a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(logged) == ["a", "b"]
    assert throttle.suppressed() == {"a": 3999, "b": 3999}


# --------------------------------------------------------------------------------------
# InputWatchdog
# --------------------------------------------------------------------------------------


def test_no_input_warns_after_the_timeout_and_the_next_frame_clears_it() -> None:
    clock = FakeClock()
    dog = InputWatchdog(1.0, 5.0, clock)
    assert dog.check() is None and dog.state().level == OK
    dog.frame_received()
    dog.frame_finished(more_pending=False)
    clock.advance(0.999)
    assert dog.check() is None
    clock.advance(0.001)
    state = dog.check()
    assert state is not None and state.level == WARN and state.message == "no input for 1.0 s"
    assert dog.check() is None  # reported once per change, not once per timer tick
    clock.advance(2.0)
    # the text keeps counting
    assert dog.check() is None and dog.state().message == "no input for 3.0 s"
    dog.frame_received()
    state = dog.check()
    assert state is not None and state.level == OK and state.message == ""
    assert state.seconds_since_input == 0.0


def test_a_camera_that_never_starts_is_no_input_too() -> None:
    clock = FakeClock()
    dog = InputWatchdog(1.0, 5.0, clock)
    clock.advance(1.5)
    state = dog.check()
    assert state is not None and state.level == WARN
    assert state.message == "no input for 1.5 s (none since start)"


def test_engine_that_does_not_finish_a_pending_frame_is_an_error() -> None:
    clock = FakeClock()
    dog = InputWatchdog(1.0, 3.0, clock)
    for _ in range(40):  # 10 Hz camera, the engine stuck on the first frame since t=0
        dog.frame_received()
        clock.advance(0.1)
        if clock.now < 102.95:
            assert dog.check() is None, clock.now
    state = dog.check()
    assert state is not None and state.level == ERROR
    assert state.message.startswith("engine has not finished a frame for 4.0 s")
    dog.frame_finished(more_pending=True)  # it finished one and the next is waiting: progress
    state = dog.check()
    assert state is not None and state.level == OK
    clock.advance(2.9)
    dog.frame_received()
    assert dog.check() is None
    clock.advance(0.1)
    assert dog.check().level == ERROR  # the waiting frame counts from the last finish


def test_idle_engine_without_pending_work_is_no_engine_error() -> None:
    clock = FakeClock()
    dog = InputWatchdog(0.0, 1.0, clock)  # input check off
    dog.frame_received()
    dog.frame_finished(more_pending=False)
    clock.advance(100.0)
    assert dog.check() is None and dog.state() == health.WatchdogState(OK, "", 100.0, 0.0)


def test_engine_error_outranks_no_input_and_both_are_said() -> None:
    clock = FakeClock()
    dog = InputWatchdog(1.0, 2.0, clock)
    dog.frame_received()
    clock.advance(1.0)
    assert dog.check().level == WARN
    clock.advance(1.0)
    state = dog.check()
    assert state.level == ERROR
    assert state.message == "engine has not finished a frame for 2.0 s"
    dog.frame_finished(more_pending=False)
    state = dog.check()
    assert state.level == WARN and state.message == "no input for 2.0 s"


def test_zero_timeouts_disable_the_checks() -> None:
    clock = FakeClock()
    dog = InputWatchdog(0.0, 0.0, clock)
    dog.frame_received()
    clock.advance(1e6)
    assert dog.check() is None and dog.state().level == OK
    for bad in ((-1.0, 1.0), (1.0, math.nan)):
        with pytest.raises(ValueError):
            InputWatchdog(*bad)


def test_worst_status() -> None:
    assert health.worst_status((OK, "ready"), (WARN, "no input for 1.2 s")) == (
        WARN,
        "no input for 1.2 s",
    )
    assert health.worst_status((WARN, "a"), (ERROR, "b"), (ERROR, "c")) == (ERROR, "b; c")
    assert health.worst_status((OK, "ready")) == (OK, "ready")
    with pytest.raises(ValueError):
        health.worst_status()
