"""The fakes' job state machine: timed or manual phases, a concurrency-limited wait line, outcomes."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any


def iso(moment: datetime) -> str:
    """UTC timestamp as the APIs print it: ``2025-01-01T12:00:00.000Z``."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class Job:
    """One provider job. Times are ``time.monotonic()`` seconds; walls are UTC datetimes.

    ``phases`` are the non-terminal statuses the job passes through once admitted, each
    with its duration; ``waiting`` means it has not been admitted yet (over the
    concurrency limit). ``finished_at`` is the exact simulated moment the job reached its
    terminal state, independent of when anyone polled.
    """

    id: str
    model: str
    input: dict[str, Any]
    price: Decimal
    phases: list[tuple[str, float]]
    created_at: float
    created_wall: datetime
    manual: bool = False
    waiting: bool = False
    phase_index: int = 0
    entered_at: float = 0.0
    outcome: Outcome | None = None
    finished_at: float | None = None
    error: str | None = None
    failure: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[str, float]] = field(default_factory=list)
    billed: Decimal = Decimal("0")
    result: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.outcome is not None

    @property
    def phase(self) -> str | None:
        """Current non-terminal phase name (None while waiting or once terminal)."""
        if self.terminal or self.waiting:
            return None
        return self.phases[self.phase_index][0]

    @property
    def status(self) -> str:
        """Last status recorded in the history (provider vocabulary)."""
        return self.history[-1][0]

    @property
    def finished_wall(self) -> datetime | None:
        if self.finished_at is None:
            return None
        return self.created_wall + timedelta(seconds=self.finished_at - self.created_at)

    def wall(self, at: float) -> datetime:
        return self.created_wall + timedelta(seconds=at - self.created_at)

    def deadline(self) -> float:
        """When the current phase ends on its own (inf if it never does)."""
        if self.terminal or self.waiting or self.manual:
            return math.inf
        return self.entered_at + self.phases[self.phase_index][1]


class JobBoard:
    """All jobs of one fake and the rules that move them.

    Every mutation happens under ``lock``. ``on_terminal`` runs (under the lock) exactly
    once per job when it reaches its outcome; ``on_change`` after any transition.
    """

    def __init__(
        self,
        *,
        lock: threading.RLock,
        waiting_status: str,
        terminal_status: Mapping[Outcome, str],
        on_terminal: Callable[[Job], None],
        on_change: Callable[[], None],
    ) -> None:
        self.lock = lock
        self.waiting_status = waiting_status
        self.terminal_status = dict(terminal_status)
        self.on_terminal = on_terminal
        self.on_change = on_change
        self.jobs: dict[str, Job] = {}
        self.concurrency_limit: int | None = None

    def active_count(self) -> int:
        return sum(1 for job in self.jobs.values() if not job.terminal and not job.waiting)

    def waiting_jobs(self) -> list[Job]:
        return [job for job in self.jobs.values() if job.waiting and not job.terminal]

    def has_capacity(self) -> bool:
        return self.concurrency_limit is None or self.active_count() < self.concurrency_limit

    def add(self, job: Job) -> Job:
        """Register a new job: admitted into its first phase, or waiting if over the limit."""
        with self.lock:
            job.waiting = not self.has_capacity() or bool(self.waiting_jobs())
            job.entered_at = job.created_at
            job.history.append((self.waiting_status if job.waiting else job.phases[0][0], job.created_at))
            self.jobs[job.id] = job
            self.on_change()
            return job

    def advance(self, now: float) -> None:
        """Apply every timed transition due by ``now``, in the order they happened."""
        with self.lock:
            while True:
                due = min(self.jobs.values(), key=Job.deadline, default=None)
                if due is None or due.deadline() > now:
                    return
                self._step(due, due.deadline())

    def next_deadline(self) -> float | None:
        with self.lock:
            soonest = min((job.deadline() for job in self.jobs.values()), default=math.inf)
        return None if math.isinf(soonest) else soonest

    def step(self, job: Job, now: float) -> None:
        """Move ``job`` one phase forward now (admitting it if it was waiting)."""
        with self.lock:
            if job.terminal:
                raise ValueError(f"job {job.id} is already {job.outcome}")
            if job.waiting:
                self._admit(job, now)
                self.on_change()
            else:
                self._step(job, now)

    def finish(self, job: Job, outcome: Outcome, now: float, error: str | None = None) -> None:
        """End ``job`` now with ``outcome`` (no-op if it already ended)."""
        with self.lock:
            if job.terminal:
                return
            if error is not None:
                job.error = error
            self._end(job, outcome, now)

    def _step(self, job: Job, at: float) -> None:
        if job.phase_index + 1 < len(job.phases):
            job.phase_index += 1
            job.entered_at = at
            job.history.append((job.phases[job.phase_index][0], at))
            self.on_change()
        else:
            self._end(job, Outcome.FAILED if job.error is not None else Outcome.COMPLETED, at)

    def _end(self, job: Job, outcome: Outcome, at: float) -> None:
        job.outcome = outcome
        job.finished_at = at
        job.entered_at = at
        job.history.append((self.terminal_status[outcome], at))
        self.on_terminal(job)
        self.admit_waiting(at)
        self.on_change()

    def admit_waiting(self, at: float) -> None:
        """Admit waiting jobs, oldest first, while there is capacity (after a job ends or the limit rises)."""
        with self.lock:
            for waiting in self.waiting_jobs():
                if not self.has_capacity():
                    break
                self._admit(waiting, at)

    def _admit(self, job: Job, at: float) -> None:
        job.waiting = False
        job.phase_index = 0
        job.entered_at = at
        if job.phases[0][0] != self.waiting_status:
            job.history.append((job.phases[0][0], at))
