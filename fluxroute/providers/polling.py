"""Adaptive polling: check soon, back off, poll densely around the expected finish, then settle at the cap."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from fluxroute.errors import ProviderError, ProviderTimeout, RateLimited

MAX_BACKOFF_S = 10.0


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

    def __init__(self, provider: str, job_id: str, expected_s: float, timeout_s: float, backoff_s: float = 0.5) -> None:
        self.provider = provider
        self.job_id = job_id
        self.started = time.monotonic()
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.failures = 0
        self.schedule = PollSchedule(expected_s=expected_s)
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
        await self.wakeup.wait(self.schedule.next_delay(elapsed))

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


class Poller:
    """The jobs one provider is following; a webhook for one of them ends its pause early."""

    def __init__(self, provider: str, backoff_s: float = 0.5) -> None:
        self.provider = provider
        self.backoff_s = backoff_s
        self._paces: dict[str, Pace] = {}

    @contextlib.contextmanager
    def follow(self, job_id: str, expected_s: float, timeout_s: float) -> Iterator[Pace]:
        pace = Pace(self.provider, job_id, expected_s, timeout_s, self.backoff_s)
        self._paces[job_id] = pace
        try:
            yield pace
        finally:
            self._paces.pop(job_id, None)

    def notify(self, job_id: str) -> bool:
        """Check `job_id` now. False when no one here is following it (a webhook for someone else)."""
        pace = self._paces.get(job_id)
        if pace is None:
            return False
        pace.wakeup.set()
        return True
