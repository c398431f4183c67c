"""The learned window schedule: never more status checks than a naive 2 s poll, for a job of any length."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from fluxroute.providers.polling import MAX_SILENCE_S, NAIVE_INTERVAL_S, Expectation, WindowSchedule, schedule_for


def checks_until(length_s: float, expectation: Expectation) -> int:
    """Status checks provider.wait makes on a job ending `length_s` after following began: one at once, then one
    after each delay the schedule gives (answers taken as instant)."""
    schedule = schedule_for(expectation)
    at, checks = 0.0, 1
    while at < length_s:
        at += schedule.next_delay(at)
        checks += 1
    return checks


def naive_checks(length_s: float) -> int:
    return 1 + math.ceil(length_s / NAIVE_INTERVAL_S)


@settings(max_examples=400, deadline=None)
@given(
    expected_s=st.floats(0.5, 120),
    spread=st.floats(0.0, 1.0),
    since_s=st.floats(0.0, 5.0),
    length_s=st.floats(0.01, 300),
)
def test_no_job_costs_more_checks_than_a_naive_2_s_poll(
    expected_s: float, spread: float, since_s: float, length_s: float
) -> None:
    expectation = Expectation(expected_s, spread=spread, since_submit_s=since_s)
    assert checks_until(length_s, expectation) <= naive_checks(length_s)


@settings(max_examples=200, deadline=None)
@given(expected_s=st.floats(1.0, 60), spread=st.floats(0.01, 0.3))
def test_every_length_on_a_fine_grid_stays_within_the_naive_count(expected_s: float, spread: float) -> None:
    expectation = Expectation(expected_s, spread=spread)
    for tenth in range(1, 1200):
        assert checks_until(tenth / 10, expectation) <= naive_checks(tenth / 10)


def test_checks_are_placed_around_the_learned_finish_with_a_bounded_silence_before() -> None:
    plan = WindowSchedule(35.0, 0.02).times
    start, end = 35.0 * math.exp(-3 * 0.02), 35.0 * math.exp(3 * 0.02)
    assert len(plan) == int(end // NAIVE_INTERVAL_S)  # the naive count at the window's end
    before = [at for at in plan if at < start]
    assert before == [MAX_SILENCE_S * j for j in range(1, len(before) + 1)] and before[-1] > start - MAX_SILENCE_S
    assert all(start <= at <= end + 1e-9 for at in plan[len(before) :])
    assert plan == sorted(plan)


def test_the_bracket_of_the_checks_is_the_observed_finish() -> None:
    expectation = Expectation(20.0, spread=0.02)
    schedule = schedule_for(expectation)
    at = 0.0
    while at < 19.9:
        expectation.running_s = at
        at += schedule.next_delay(at)
        expectation.seen_s = at
    finished = expectation.finished_s()
    assert finished is not None and expectation.running_s is not None
    assert expectation.running_s < finished <= expectation.seen_s


def test_the_catalog_figure_keeps_the_catalog_schedule() -> None:
    # no spread: nothing learned yet, the schedule that checks soon and backs off (short jobs are found fast)
    assert checks_until(0.08, Expectation(7.0)) <= 3


def test_a_job_likely_done_before_the_first_allowed_check_is_checked_then_not_at_the_window_end() -> None:
    # learned: about 1 s (jobs of 0.1-3 s); the naive count allows the first check at 2 s, and most jobs are done
    plan = WindowSchedule(1.0, 0.4).times
    assert plan[0] == NAIVE_INTERVAL_S
    assert plan == sorted(plan) and len(plan) == int(math.exp(3 * 0.4) // NAIVE_INTERVAL_S)
    # a job whose finish is well past the first allowed check keeps the checks inside its window
    late = WindowSchedule(35.0, 0.02).times
    assert all(at > 30 for at in late if at > MAX_SILENCE_S * 3)
