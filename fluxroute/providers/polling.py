"""Adaptive polling: check soon, back off, poll densely around the expected finish, then settle at the cap.

Two schedules. `PollSchedule` serves a job whose length is only the catalog's guess: it checks soon, backs off,
and polls densely around the guess. `WindowSchedule` serves a job whose offer has a learned finish time (a
log-normal fitted to earlier jobs): it spends no more status checks than a naive poll every `NAIVE_INTERVAL_S`
would on a job of any length, saving them up before the finish is likely and placing them where it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Protocol

from fluxroute.errors import ProviderError, ProviderTimeout, RateLimited

MAX_BACKOFF_S = 10.0
# the naive client's rhythm whose status-check count a learned schedule never exceeds (one check at once, then one
# every NAIVE_INTERVAL_S)
NAIVE_INTERVAL_S = 2.0
# before the learned window, a check at least this often: failures and queue moves are not left unseen for long
MAX_SILENCE_S = 10.0
# the learned window spans the expected finish x/÷ exp(WINDOW_K x spread) (log-normal, spread = log-space deviation)
WINDOW_K = 3.0
MIN_GAP_S = 0.05  # two planned checks never come closer than this
MIN_SPREAD = 0.01  # the narrowest learned window: exp(±3 x 1%) around the estimate


@dataclass
class Expectation:
    """When a job is expected to finish, and what the poller following it saw; shared by whoever chooses the
    estimate (the executor) and the poller (through `EXPECTED` and `expected()`).

    `expected_s` and `since_submit_s` count from the job's submission; `spread` is the log-space deviation of a
    learned finish time (None: the catalog's figure, nothing learned). The poller fills `running_s` (the last
    check that saw the job unfinished) and `seen_s` (the check after it), both counted from submission.
    """

    expected_s: float
    spread: float | None = None
    since_submit_s: float = 0.0
    running_s: float | None = None
    seen_s: float | None = None

    def finished_s(self) -> float | None:
        """When the job finished, seconds after submission, as the checks bracket it; None when no check saw the
        job unfinished. The middle of the bracket (unbiased for a finish anywhere in it), except when a learned
        window's first check already saw it done: then only "before that check" is known, and that check moved down
        by the window's half-width is taken (below the estimate whenever the check was, so an estimate that is too
        late keeps moving down; the bracket's middle, from the check at submission, would throw the estimate far
        off for one early job). A window of one check (jobs under 4 s) learns nothing from such a job."""
        if self.running_s is None or self.seen_s is None:
            return None
        if self.spread is not None and self.running_s <= self.since_submit_s:
            return self.seen_s * math.exp(-WINDOW_K * self.spread)
        return (self.running_s + self.seen_s) / 2


# The expectation for the job the current task is about to follow (set by the executor around provider.wait).
EXPECTED: contextvars.ContextVar[Expectation | None] = contextvars.ContextVar("fluxroute_expected", default=None)


def expected(catalog_s: float) -> Expectation:
    """The expectation set for this task's job, or the catalog's figure `catalog_s` when none is."""
    return EXPECTED.get() or Expectation(catalog_s)


def learned(catalog_s: float, log_ratio: float, abs_dev: float, n: int, since_submit_s: float = 0.0) -> Expectation:
    """The expectation for a job of an offer that `n` completed jobs taught: the planner's estimate `catalog_s`
    times exp(`log_ratio`), with a spread from the mean absolute deviation (0.8 sigma for a normal, and
    understated by few observations), never below MIN_SPREAD."""
    spread = max(1.25 * abs_dev * (1 + 1 / n), MIN_SPREAD)
    return Expectation(catalog_s * math.exp(log_ratio), spread=spread, since_submit_s=since_submit_s)


class Schedule(Protocol):
    def next_delay(self, elapsed_s: float) -> float: ...


@dataclass
class PollSchedule:
    """Delays between status checks for a job expected to take `expected_s` seconds.

    Before the expected finish the delay grows geometrically from `first_s`; around it (from 80% to
    200% of the estimate) checks come every `near_s`, so a finished job is noticed within ~`near_s`;
    after that the delay backs off toward `cap_s` (the 2-5 s providers ask for on long jobs).
    """

    expected_s: float
    first_s: float = 0.05
    near_s: float = 0.1
    cap_s: float = 2.0
    growth: float = 1.6
    _delay: float = 0.0

    def next_delay(self, elapsed_s: float) -> float:
        if self._delay == 0.0:
            self._delay = self.first_s
            return self._delay
        near_start, near_end = 0.8 * self.expected_s, 2.0 * self.expected_s
        if near_start <= elapsed_s <= near_end:
            return self.near_s
        self._delay = min(self._delay * self.growth, self.cap_s)
        if elapsed_s < near_start:
            return max(self.first_s, min(self._delay, near_start - elapsed_s))
        return self._delay


@dataclass
class WindowSchedule:
    """Checks for a job whose finish time is learned: log-normal around `expected_s` with log-space deviation
    `spread`; `since_submit_s` had passed when following began (elapsed times count from then).

    A naive client checks at once and then every `interval_s`: a job that ends at T costs it 1 + ceil(T /
    interval_s) checks. The j-th check planned here (after the one at once) comes no earlier than j x interval_s,
    so no job of any length costs more checks than that. Checks are saved up before the window where the finish
    is likely (expected x/÷ exp(k x spread)) and spent inside it, spaced as 1/sqrt(density) (the spacing that
    minimises the mean delay for a given number of checks: quantiles of the log-normal with sqrt(2) x spread);
    after the window they fall back to the naive rhythm.
    """

    expected_s: float
    spread: float
    since_submit_s: float = 0.0
    interval_s: float = NAIVE_INTERVAL_S
    k: float = WINDOW_K
    min_gap_s: float = MIN_GAP_S
    times: list[float] = field(default_factory=list, init=False)
    _next: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.times = self.plan()

    def plan(self) -> list[float]:
        """The planned check times, in seconds after following began: one every MAX_SILENCE_S before the window
        (a job that fails early, or a queue that moves, is seen within that), the rest inside it."""
        mu, sd = math.log(self.expected_s), max(self.spread, 1e-6)
        end = math.exp(mu + self.k * sd) - self.since_submit_s
        n = int(end // self.interval_s)  # checks the naive client would have made by the window's end
        if n < 1:
            return []
        start = math.exp(mu - self.k * sd) - self.since_submit_s
        times = [MAX_SILENCE_S * j for j in range(1, n) if MAX_SILENCE_S * j < start]  # paid from the same n
        root2 = NormalDist(0.0, math.sqrt(2))
        lo, hi = root2.cdf(-self.k), root2.cdf(self.k)
        inside = n - len(times)
        previous = times[-1] if times else 0.0
        floor = (len(times) + 1) * self.interval_s  # the earliest the next check may come
        if self.expected_s - self.since_submit_s <= floor < end:
            # the job is more likely than not done by the earliest allowed check: check then, and spread the rest
            # over what is left of the window (a lone check at the window's end would find most jobs later)
            times.append(floor)
            previous, inside = floor, inside - 1
            lo = max(lo, root2.cdf((math.log(floor + self.since_submit_s) - mu) / sd))
        for i in range(1, inside + 1):
            at = math.exp(mu + sd * root2.inv_cdf(lo + (hi - lo) * i / inside)) - self.since_submit_s
            at = max(at, (len(times) + 1) * self.interval_s, previous + self.min_gap_s)
            times.append(at)
            previous = at
        return times

    def at(self, index: int) -> float:
        """The `index`-th planned check (0-based), the window's then the naive rhythm's after it."""
        if index < len(self.times):
            return self.times[index]
        last = self.times[-1] if self.times else 0.0
        return max((index + 1) * self.interval_s, last + self.min_gap_s)

    def next_delay(self, elapsed_s: float) -> float:
        # a planned check already past (a slow answer) is skipped, never made up: that only saves checks
        while self.at(self._next) <= elapsed_s:
            self._next += 1
        at = self.at(self._next)
        self._next += 1
        return at - elapsed_s


def schedule_for(expectation: Expectation) -> Schedule:
    """The learned window when the expectation has a spread, the catalog schedule otherwise."""
    if expectation.spread is None:
        return PollSchedule(expected_s=max(expectation.expected_s - expectation.since_submit_s, 0.0))
    return WindowSchedule(expectation.expected_s, expectation.spread, expectation.since_submit_s)


class Wakeup:
    """Lets a webhook end a poll wait early: `wait(delay)` returns at the delay or when `set()` is called."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), timeout=delay)
        except TimeoutError:
            return
        self._event.clear()


class Pace:
    """The rhythm of following one job: elapsed time, the next pause, and the deadline."""

    def __init__(
        self,
        provider: str,
        job_id: str,
        expected_s: float | Expectation,
        timeout_s: float,
        backoff_s: float = 0.5,
    ) -> None:
        self.provider = provider
        self.job_id = job_id
        self.started = time.monotonic()
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.failures = 0
        self.expectation = expected_s if isinstance(expected_s, Expectation) else Expectation(expected_s)
        self.schedule: Schedule = schedule_for(self.expectation)
        self.wakeup = Wakeup()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def pause(self, state: str) -> None:
        """Wait until the next check (or a webhook).

        Raises:
            ProviderTimeout: the job, last seen in `state`, is past its deadline.
        """
        elapsed = self.elapsed
        if elapsed > self.timeout_s:
            raise ProviderTimeout(
                f"job {self.job_id} still {state} after {self.timeout_s:g} s",
                provider=self.provider,
                provider_job_id=self.job_id,
            )
        since = self.expectation.since_submit_s
        self.expectation.running_s = since + elapsed
        await self.wakeup.wait(self.schedule.next_delay(elapsed))
        self.expectation.seen_s = since + self.elapsed  # the next check leaves now

    async def retry(self, what: str, error: ProviderError) -> None:
        """Wait before trying a failed status check or download of an accepted job again: the job may be
        billed, so it is never given up before its deadline. Retry-After is honoured; otherwise the delay
        doubles from `backoff_s` up to MAX_BACKOFF_S.

        Raises:
            ProviderTimeout: the next try would fall past the deadline; it carries the last failure.
        """
        self.failures += 1
        delay = min(self.backoff_s * 2 ** (self.failures - 1), MAX_BACKOFF_S)
        if isinstance(error, RateLimited) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        if self.elapsed + delay > self.timeout_s:
            raise ProviderTimeout(
                f"job {self.job_id}: {what} kept failing for {self.elapsed:.1f} s (last: {error})",
                provider=self.provider,
                provider_job_id=self.job_id,
            ) from error
        await self.wakeup.wait(delay)

    def recovered(self) -> None:
        """A check worked again: the next failure starts the backoff afresh."""
        self.failures = 0


# a webhook for a job not followed yet (a fast job can end before its submission is even recorded) is kept this long,
# for at most this many jobs: if this process then follows that job, its first check comes at once
EARLY_WAKE_TTL_S = 120.0
EARLY_WAKES = 1024


class Poller:
    """The jobs one provider is following; a webhook for one of them ends its pause early. A webhook that comes
    before its job is followed here is remembered a while, and ends the job's first pause."""

    def __init__(self, provider: str, backoff_s: float = 0.5) -> None:
        self.provider = provider
        self.backoff_s = backoff_s
        self._paces: dict[str, Pace] = {}
        self._early: dict[str, float] = {}  # job id -> when its early webhook expires (monotonic)

    @contextlib.contextmanager
    def follow(self, job_id: str, expected_s: float | Expectation, timeout_s: float) -> Iterator[Pace]:
        pace = Pace(self.provider, job_id, expected_s, timeout_s, self.backoff_s)
        self._paces[job_id] = pace
        expires = self._early.pop(job_id, None)
        if expires is not None and expires > time.monotonic():
            pace.wakeup.set()  # it ended (a webhook said so) before anyone here followed it: check now
        try:
            yield pace
        finally:
            self._paces.pop(job_id, None)

    def notify(self, job_id: str) -> bool:
        """Check `job_id` now. False when no one here is following it (a webhook for someone else, or one that
        came before its job is followed: remembered for EARLY_WAKE_TTL_S, see `follow`)."""
        pace = self._paces.get(job_id)
        if pace is None:
            now = time.monotonic()
            if len(self._early) >= EARLY_WAKES:  # bounded: expired entries go first, then the oldest
                self._early = {k: v for k, v in self._early.items() if v > now}
                while len(self._early) >= EARLY_WAKES:
                    del self._early[next(iter(self._early))]
            self._early[job_id] = now + EARLY_WAKE_TTL_S
            return False
        pace.wakeup.set()
        return True
