"""Adaptive polling: check soon, back off, poll densely around the expected finish, then settle at the cap."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


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
