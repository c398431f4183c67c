"""The fleet's job board: every job the fleet's ingress accepted, by id, with its progress, its outcome and the
replica that ran it, so that a router can follow a job by id, also after its own restart (a Serve handle's
response object cannot be picked up again by another process).

Plain Python on one event loop (the ingress replica's); no Ray here, so it is tested on its own. Bounded: a result's
images are kept RESULT_TTL_S after the job ends (then the job answers "expired", as a hosted provider's result
does), and all results together hold at most `max_result_bytes` (past it, the oldest results already fetched expire
first, then the oldest of all); the record itself is kept TOMBSTONE_TTL_S, and at most MAX_JOBS records (the oldest
ended ones dropped first).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from typing import Any, Literal

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ENDED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

RESULT_TTL_S = 3600.0
# the images of all results kept, together (a fleet of 8 GPUs makes about 10 GB of PNGs an hour)
MAX_RESULT_BYTES = 2 * 1024**3
TOMBSTONE_TTL_S = 24 * 3600.0
MAX_JOBS = 20_000
# a job keeps at most this many progress events (a 100-step job makes about 105)
MAX_EVENTS = 1000
# a submission key (the router's own retry key) answers with the same job for this long
KEY_TTL_S = 3600.0
# jobs waiting for a replica, and the bytes of their submissions, at most (then: 429, try again later)
MAX_QUEUED = 1000
MAX_QUEUED_BYTES = 1024**3
# how often a status request may walk the whole board to drop what expired
SWEEP_EVERY_S = 5.0


@dataclasses.dataclass
class FleetJob:
    """One job: queued until a replica takes it, then running, then ended."""

    id: str
    key: str
    model_id: str
    created: float = dataclasses.field(default_factory=time.time)
    status: Status = "queued"
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    replica: str | None = None
    gpu_seconds: float | None = None
    # {"kind": "job_failed" | "unavailable" | "cancelled" | "lost", "message": ..., "retryable": bool}
    error: dict[str, Any] | None = None
    # the finished job's images and what the replica reported (ProviderResult's fields), until it expires
    result: dict[str, Any] | None = None
    result_bytes: int = 0
    fetched: bool = False  # its result was read at least once
    ended: float | None = None
    expired: bool = False
    # the submission's size while the job waits for a replica (the queue is bounded by it)
    queued_bytes: int = 0
    # set (and replaced) at each change: long polls of this job wait on it
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event, repr=False)

    def touch(self) -> None:
        """Wake whoever waits on this job, and start a fresh event for the next change."""
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def status_view(self, after: int) -> dict[str, Any]:
        """What GET /v1/jobs/{id} answers: the state, and the progress events from index `after` on."""
        return {
            "id": self.id,
            "status": self.status,
            "events": self.events[after:],
            "next": len(self.events),
            "replica": self.replica,
            "gpu_seconds": self.gpu_seconds,
            "error": self.error,
            "expired": self.expired,
            "created": self.created,
            "ended": self.ended,
        }


class QueueFull(Exception):
    """The fleet holds as many waiting jobs (or bytes of them) as it takes: try again later."""


class JobBoard:
    """The jobs of one fleet. Every method runs on the ingress's event loop; a job's long polls are woken at each
    of its changes."""

    def __init__(
        self,
        *,
        result_ttl_s: float = RESULT_TTL_S,
        max_result_bytes: int = MAX_RESULT_BYTES,
        max_queued: int = MAX_QUEUED,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        clock: Any = time.time,
    ) -> None:
        self.result_ttl_s = result_ttl_s
        self.max_result_bytes = max_result_bytes
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.jobs: dict[str, FleetJob] = {}
        self._by_key: dict[str, str] = {}
        self._clock = clock
        self._swept_at = float("-inf")

    def create(self, key: str, model_id: str, size: int = 0) -> tuple[FleetJob, bool]:
        """The job for submission `key` (of `size` bytes): a new one, or (same key again: a retried submission) the
        one it made; the flag says whether it is new.

        Raises:
            QueueFull: max_queued jobs, or max_queued_bytes of them, already wait for a replica.
        """
        self.sweep()
        known = self._by_key.get(key)
        if known is not None and known in self.jobs:
            return self.jobs[known], False
        waiting = [job for job in self.jobs.values() if job.status == "queued"]
        if len(waiting) >= self.max_queued or sum(j.queued_bytes for j in waiting) + size > self.max_queued_bytes:
            raise QueueFull(f"{len(waiting)} jobs already wait for a replica of this fleet")
        job = FleetJob(f"ray-{uuid.uuid4().hex}", key, model_id, created=self._clock(), queued_bytes=size)
        self.jobs[job.id] = job
        self._by_key[key] = job.id
        self._bound()
        return job, True

    def get(self, job_id: str) -> FleetJob | None:
        """The job, aged to now (its result expired, or the job forgotten, exactly on time)."""
        self.sweep()
        job = self.jobs.get(job_id)
        return job if job is not None and self._age(job, self._clock()) else None

    async def wait_for_change(self, job: FleetJob, after: int, wait_s: float) -> None:
        """Return once `job` has events past index `after` or another status (a replica took it, it ended), or
        after `wait_s` seconds."""
        status = job.status
        deadline = asyncio.get_running_loop().time() + wait_s
        while len(job.events) <= after and job.status == status:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.changed.wait(), remaining)

    def record(self, job: FleetJob, item: dict[str, Any]) -> None:
        """Apply one item a replica streamed for `job` ({"kind": "started" | "progress" | "result" | "failed"})."""
        kind = item.get("kind")
        if job.status in ENDED:
            return
        if kind == "started":
            job.status = "running"
            job.replica = str(item.get("replica"))
            job.queued_bytes = 0
        elif kind == "progress":
            job.events.extend(dict(event) for event in item["events"][: max(0, MAX_EVENTS - len(job.events))])
        elif kind == "result":
            job.result = dict(item["result"])
            job.result_bytes = sum(len(image["data"]) for image in job.result.get("images", []))
            job.gpu_seconds = job.result.get("compute_seconds")
            self._end(job, "succeeded")
            self._bound_results()
        elif kind == "failed":
            self._fail(job, dict(item["error"]))
        job.touch()

    def fail(self, job: FleetJob, kind: str, message: str, *, retryable: bool) -> None:
        """End `job` with an error that did not come from its replica (cancelled at the ingress, the replica died,
        the request was lost); nothing when it has ended already."""
        if job.status in ENDED:
            return
        self._fail(job, {"kind": kind, "message": message, "retryable": retryable})
        job.touch()

    def _fail(self, job: FleetJob, error: dict[str, Any]) -> None:
        job.error = error
        self._end(job, "cancelled" if error.get("kind") == "cancelled" else "failed")

    def _end(self, job: FleetJob, status: Status) -> None:
        job.status = status
        job.ended = self._clock()
        job.queued_bytes = 0

    def sweep(self) -> None:
        """Drop expired results, then old records, then the oldest ended records past MAX_JOBS (at most once every
        SWEEP_EVERY_S: every status request calls it)."""
        now = self._clock()
        if now - self._swept_at < SWEEP_EVERY_S:
            return
        self._swept_at = now
        for job in list(self.jobs.values()):
            self._age(job, now)
        self._bound()
        for key, job_id in list(self._by_key.items()):
            keyed = self.jobs.get(job_id)
            if keyed is None or now - keyed.created > KEY_TTL_S:
                del self._by_key[key]

    def _age(self, job: FleetJob, now: float) -> bool:
        """Expire `job`'s result after result_ttl_s and forget the job after TOMBSTONE_TTL_S; whether it is kept."""
        if job.ended is None:
            return True
        if job.result is not None and now - job.ended > self.result_ttl_s:
            self._expire(job)
        if now - job.ended > TOMBSTONE_TTL_S:
            self._drop(job)
            return False
        return True

    def _expire(self, job: FleetJob) -> None:
        job.result, job.result_bytes, job.expired = None, 0, True

    def _bound_results(self) -> None:
        """Results over max_result_bytes together: the oldest already fetched expire first, then the oldest."""
        held = [job for job in self.jobs.values() if job.result is not None]
        total = sum(job.result_bytes for job in held)
        for job in sorted(held, key=lambda j: (not j.fetched, j.ended or 0.0)):
            if total <= self.max_result_bytes:
                break
            total -= job.result_bytes
            self._expire(job)

    def _bound(self) -> None:
        """At most MAX_JOBS records: the oldest ended ones go first (a job not ended is never dropped)."""
        if len(self.jobs) > MAX_JOBS:
            ended = sorted((j for j in self.jobs.values() if j.ended is not None), key=lambda j: j.ended or 0.0)
            for job in ended[: len(self.jobs) - MAX_JOBS]:
                self._drop(job)

    def _drop(self, job: FleetJob) -> None:
        self.jobs.pop(job.id, None)
        if self._by_key.get(job.key) == job.id:
            del self._by_key[job.key]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state now."""
        counts: dict[str, int] = {}
        for job in self.jobs.values():
            counts[job.status] = counts.get(job.status, 0) + 1
        return counts
