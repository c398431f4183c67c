"""Machinery shared by the provider fakes: server lifecycle, job clock, billing ledger, webhooks, files."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Self

from tests.fakes.faults import Fault, FaultLayer, Faults, RequestRecord
from tests.fakes.images import FileStore
from tests.fakes.jobs import Job, JobBoard, Outcome
from tests.fakes.server import ASGIApp, LoopbackServer
from tests.fakes.webhooks import WebhookAttempt, deliver

logger = logging.getLogger(__name__)


class FakeService:
    """Base of ``KreaFake`` and ``FalFake``.

    State is guarded by ``lock`` because the server thread and the test thread both touch it.
    Jobs advance lazily on every request (exact, by time since creation) and from a ticker
    task on the server loop, so terminal effects (billing, webhooks) happen even when
    nobody polls. Config attributes are plain and may be changed at any time; ``reset()``
    restores them and forgets every job, fault (and ``faults.fired``), charge and counted request.
    Shared config: ``manual``, ``image_scale``, ``file_expiry_s`` (None = files never expire),
    ``concurrency_limit``, ``webhook_max_attempts``, ``webhook_retry_delay``.
    """

    name: ClassVar[str] = "fake"
    accept_route: ClassVar[str] = "create"
    waiting_status: ClassVar[str] = "waiting"
    terminal_status: ClassVar[Mapping[Outcome, str]] = {o: o.value for o in Outcome}
    request_id_header: ClassVar[str | None] = None
    port_count: ClassVar[int] = 1

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.faults = Faults(accept_route=self.accept_route, lock=self.lock)
        self.request_counts: Counter[str] = Counter()
        self.request_log: list[RequestRecord] = []
        self.charges: list[tuple[str, Decimal]] = []
        # called (on the fake's thread) with the route of every request as it arrives, before faults apply,
        # and with "billed" right after a job is billed: a test checks its invariants, or arms a fault, at
        # the moment a provider acts
        self.observers: list[Callable[[str], None]] = []
        self.webhook_attempts: list[WebhookAttempt] = []
        self.files = FileStore()
        self.board = JobBoard(
            lock=self.lock,
            waiting_status=self.waiting_status,
            terminal_status=self.terminal_status,
            on_terminal=self._terminal,
            on_change=self._changed_threadsafe,
        )
        self._webhook_tasks: set[concurrent.futures.Future[Any]] = set()
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        layer = FaultLayer(
            self.build_app(),
            faults=self.faults,
            classify=self.classify,
            counts=self.request_counts,
            log=self.request_log,
            error_body=self.error_body,
            request_id_header=self.request_id_header,
            observe=self._observe,
        )
        self.server = LoopbackServer(layer, ports=self.port_count, name=self.name)
        self.configure()

    # --- hooks for subclasses -------------------------------------------------------------
    def build_app(self) -> ASGIApp:
        raise NotImplementedError

    def classify(self, method: str, path: str, port: int) -> str:
        raise NotImplementedError

    def error_body(self, status: int) -> Any:
        raise NotImplementedError

    def configure(self) -> None:
        """Set every config attribute to its default (called at construction and by ``reset``)."""
        self.manual = False
        self.webhook_max_attempts = 3
        self.webhook_retry_delay = 0.05
        self.files.scale = 1.0
        self.files.expiry_s = None
        self.board.concurrency_limit = None

    def on_terminal(self, job: Job) -> None:
        """Provider-specific effects of a job ending (results, balance, webhooks); runs under the lock."""

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> Self:
        self._wake, self._changed = asyncio.Event(), asyncio.Event()  # bound to the new server loop on use
        self.server.start()
        self.server.submit(self._ticker())
        return self

    def stop(self) -> None:
        self._cancel_webhooks()
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget all jobs, faults, charges, requests, files and webhook attempts; restore config."""
        self._cancel_webhooks()
        with self.lock:
            self.board.jobs.clear()
            self.faults.clear()
            self.request_counts.clear()
            self.request_log.clear()
            self.charges.clear()
            self.observers.clear()
            self.webhook_attempts = []  # late attempts of cancelled deliveries land in the old list
            self.files.clear()
            self.configure()
        self._kick()

    @property
    def base_url(self) -> str:
        return self.server.base_urls[0]

    # --- config shortcuts -------------------------------------------------------------------
    @property
    def image_scale(self) -> float:
        """Served image bytes are this fraction of the logical size (1.0 = true size)."""
        return self.files.scale

    @image_scale.setter
    def image_scale(self, value: float) -> None:
        self.files.scale = value

    @property
    def file_expiry_s(self) -> float | None:
        """Files at ``/files/{name}`` answer 404 once this many seconds old (None = never expire)."""
        return self.files.expiry_s

    @file_expiry_s.setter
    def file_expiry_s(self, value: float | None) -> None:
        self.files.expiry_s = value

    @property
    def concurrency_limit(self) -> int | None:
        return self.board.concurrency_limit

    @concurrency_limit.setter
    def concurrency_limit(self, value: int | None) -> None:
        with self.lock:
            self.board.concurrency_limit = value
            self.board.admit_waiting(time.monotonic())
        self._kick()

    # --- billing ------------------------------------------------------------------------------
    @property
    def billed(self) -> Decimal:
        """Exact USD total charged so far (completed jobs only)."""
        with self.lock:
            return sum((amount for _, amount in self.charges), Decimal("0"))

    # --- jobs, for tests -------------------------------------------------------------------------
    @property
    def jobs(self) -> list[Job]:
        self.sync()
        with self.lock:
            return list(self.board.jobs.values())

    def job(self, job_id: str) -> Job:
        self.sync()
        with self.lock:
            return self.board.jobs[job_id]

    def sync(self) -> None:
        """Apply every timed transition due by now."""
        self.board.advance(time.monotonic())

    def advance(self, job_id: str) -> Job:
        """Move a job one status forward now (the way to drive ``manual`` jobs)."""
        job = self.job(job_id)
        self.board.step(job, time.monotonic())
        self._kick()
        return job

    def complete(self, job_id: str) -> Job:
        """Finish a job successfully now (billed), whatever status it was in."""
        job = self.job(job_id)
        with self.lock:
            job.error = None
            self.board.finish(job, Outcome.COMPLETED, time.monotonic())
        self._kick()
        return job

    def fail(self, job_id: str, error: str = "Injected failure", **details: Any) -> Job:
        """Finish a job as failed now (not billed)."""
        job = self.job(job_id)
        with self.lock:
            job.failure = dict(details)
            self.board.finish(job, Outcome.FAILED, time.monotonic(), error=error)
        self._kick()
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a job from the provider side now (not billed)."""
        job = self.job(job_id)
        self.board.finish(job, Outcome.CANCELLED, time.monotonic())
        self._kick()
        return job

    def create_job(
        self,
        *,
        model: str,
        input: dict[str, Any],
        price: Decimal,
        phases: list[tuple[str, float]],
        meta: dict[str, Any] | None = None,
        failure: Fault | None = None,
    ) -> Job:
        """Register a job accepted by the API (used by the route handlers)."""
        now = time.monotonic()
        job = Job(
            id=str(uuid.uuid4()),
            model=model,
            input=input,
            price=price,
            phases=phases,
            created_at=now,
            created_wall=datetime.now(UTC),
            manual=self.manual,
            meta=meta or {},
        )
        if failure is not None:
            job.error = failure.error
            job.failure = dict(failure.details)
        with self.lock:
            self.board.advance(now)
            self.board.add(job)
        self._kick()
        return job

    # --- internals --------------------------------------------------------------------------------
    def _observe(self, event: str) -> None:
        for observer in list(self.observers):
            observer(event)

    def _terminal(self, job: Job) -> None:
        if job.outcome is Outcome.COMPLETED:
            job.billed = job.price
            self.charges.append((job.id, job.price))
            self._observe("billed")
        self.on_terminal(job)

    def send_webhook(self, job: Job, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Deliver a webhook from the server loop (retried per ``webhook_max_attempts``)."""
        future = self.server.submit(
            deliver(
                url,
                body,
                headers,
                job_id=job.id,
                attempts=self.webhook_attempts,
                max_attempts=self.webhook_max_attempts,
                retry_delay=self.webhook_retry_delay,
            )
        )
        self._webhook_tasks.add(future)
        future.add_done_callback(self._webhook_tasks.discard)

    def _cancel_webhooks(self) -> None:
        for future in list(self._webhook_tasks):
            future.cancel()

    def _kick(self) -> None:
        self.server.call_soon(self._wake.set)

    def _changed_threadsafe(self) -> None:
        self.server.call_soon(self._notify_changed)

    def _notify_changed(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        self._wake.set()

    async def wait_changed(self, event: asyncio.Event, timeout: float | None) -> None:
        """Wait (on the server loop) until ``event`` — taken from ``changed_event`` — fires or ``timeout``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    @property
    def changed_event(self) -> asyncio.Event:
        """The event the next job transition will set; grab it before reading state."""
        return self._changed

    async def wait_terminal(self, job: Job, timeout: float | None = None) -> None:
        """Wait (on the server loop) until ``job`` ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self._changed
            self.sync()
            if job.terminal:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError
            await self.wait_changed(event, None if deadline is None else deadline - time.monotonic())

    async def _ticker(self) -> None:
        """Apply timed transitions as they fall due, so terminal effects happen without polling."""
        while True:
            self._wake.clear()
            try:
                self.sync()
            except Exception:  # a bug in a terminal hook must not stop the clock; requests surface it too
                logger.exception("%s fake: job transition failed", self.name)
            deadline = self.board.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
