"""Fault injection for the fakes: queued HTTP errors, delays, dropped connections, garbled bodies, failing jobs."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.fakes.server import ASGIApp, Message, Receive, Scope, Send, drop_connection

FaultKind = Literal["http_error", "delay", "drop", "garble", "fail_job", "drop_metrics"]
# faults that apply to the jobs a fake creates, not to the HTTP answers its routes give
JOB_FAULTS: frozenset[str] = frozenset({"fail_job", "drop_metrics"})

NGINX_BODY = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
    429: "Too Many Requests",
}


@dataclass
class Fault:
    """One queued fault; it applies to the next ``times`` requests that match it.

    Matching: ``route`` is the fake's route name ("create", "submit", "status", ...),
    ``method`` an HTTP method, ``path`` a path prefix; ``None`` matches anything.
    ``after_accept`` faults let the request be handled (a job is created and will be
    billed) and then replace the response the client sees. ``hits`` counts the requests
    (or, for the job faults ``fail_job`` and ``drop_metrics``, the jobs) it applied to; it stays readable
    after the fault is used up.
    """

    kind: FaultKind
    route: str | None = None
    method: str | None = None
    path: str | None = None
    times: int = 1
    after_accept: bool = False
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    ingress: bool = False
    seconds: float = 0.0
    error: str = "Injected failure"
    details: dict[str, Any] = field(default_factory=dict)
    hits: int = 0

    @property
    def remaining(self) -> int:
        return self.times - self.hits

    def matches(self, route: str, method: str, path: str) -> bool:
        return (
            (self.route is None or self.route == route)
            and (self.method is None or self.method.upper() == method)
            and (self.path is None or path.startswith(self.path))
        )


class Faults:
    """The queue of faults a test has armed on one fake (thread-safe; FIFO per phase).

    ``fired`` counts every time a fault applied, even after a used-up fault left the queue:
    keys are ``f"{kind}:{route}"`` with the route the request actually took (for the job faults
    ``fail_job`` and ``drop_metrics``, the route that created the job), plus ``":after"`` for
    ``after_accept`` faults, e.g. ``"drop:create:after"``, ``"http_error:status"``, ``"fail_job:submit"``,
    ``"drop_metrics:submit"``. ``clear()`` resets it.
    """

    def __init__(self, *, accept_route: str, lock: threading.RLock) -> None:
        self._accept_route = accept_route
        self._lock = lock
        self.queued: list[Fault] = []
        self.fired: Counter[str] = Counter()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.queued.append(fault)
        return fault

    def http_error(
        self,
        status: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        route: str | None = None,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        ingress: bool = False,
        after_accept: bool = False,
    ) -> Fault:
        """Answer with ``status``. ``ingress=True`` mimics an nginx error page without a request id
        (fal-client retries those on 502/503/504); otherwise the body is the provider's JSON error."""
        return self.add(
            Fault(
                "http_error",
                route,
                method,
                path,
                times,
                after_accept,
                status=status,
                body=body,
                headers=dict(headers or {}),
                ingress=ingress,
            )
        )

    def delay(
        self,
        seconds: float,
        *,
        route: str | None = None,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        after_accept: bool = False,
    ) -> Fault:
        """Hold the response for ``seconds`` (before handling, or after it with ``after_accept``)."""
        return self.add(Fault("delay", route, method, path, times, after_accept, seconds=seconds))

    def drop(
        self,
        *,
        route: str | None = None,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        after_accept: bool = False,
    ) -> Fault:
        """Close the connection without any response."""
        return self.add(Fault("drop", route, method, path, times, after_accept))

    def redirect(self, location: str, *, route: str | None = None, status: int = 302, times: int = 1) -> Fault:
        """Answer ``status`` with ``Location: location`` (a CDN that sends the client elsewhere)."""
        return self.http_error(status, b"", {"location": location}, route=route, times=times)

    def drop_after_accept(self, *, route: str | None = None, times: int = 1) -> Fault:
        """Create the job (it runs and is billed) but drop the connection instead of answering."""
        return self.drop(route=route or self._accept_route, times=times, after_accept=True)

    def garble(
        self,
        *,
        route: str | None = None,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        after_accept: bool = False,
        status: int = 200,
        body: bytes = b'{"job_id": "',
    ) -> Fault:
        """Answer ``status`` with a malformed ``application/json`` body (default: truncated JSON).

        Before acceptance nothing is created; with ``after_accept`` the request is handled first
        (the job is created and will be billed) and the garbled body replaces the real answer.
        """
        return self.add(Fault("garble", route, method, path, times, after_accept, status=status, body=body))

    def fail_job(self, error: str = "Injected failure", *, times: int = 1, **details: Any) -> Fault:
        """The next ``times`` created jobs end failed with ``error`` (never billed).

        ``details`` are provider-specific (fal: ``status_code``, ``error_type``, ``detail``).
        """
        return self.add(Fault("fail_job", times=times, error=error, details=details))

    def drop_metrics(self, *, times: int = 1) -> Fault:
        """The next ``times`` created jobs that run end COMPLETED with a status that has no ``metrics``
        at all (fal-client: "legacy apps might not return metrics"), so no ``inference_time`` is reported;
        they are billed as usual. A fal fault (the Krea fake has no metrics)."""
        return self.add(Fault("drop_metrics", times=times))

    def clear(self) -> None:
        """Disarm every queued fault and forget ``fired``."""
        with self._lock:
            self.queued.clear()
            self.fired.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [fault for fault in self.queued if fault.remaining > 0]

    def take(self, route: str, method: str, path: str, *, after_accept: bool) -> Fault | None:
        with self._lock:
            for fault in self.queued:
                if (
                    fault.kind not in JOB_FAULTS
                    and fault.after_accept == after_accept
                    and fault.remaining > 0
                    and fault.matches(route, method, path)
                ):
                    return self._hit(fault, route)
        return None

    def take_job_failure(self, route: str | None = None) -> Fault | None:
        """The next armed ``fail_job`` fault, if any, for a job created through ``route``
        (default: the fake's accept route)."""
        return self.take_job_fault("fail_job", route)

    def take_job_fault(self, kind: FaultKind, route: str | None = None) -> Fault | None:
        """The next armed job fault of ``kind`` (``fail_job``, ``drop_metrics``), if any, for a job
        created through ``route`` (default: the fake's accept route)."""
        with self._lock:
            for fault in self.queued:
                if fault.kind == kind and fault.remaining > 0:
                    return self._hit(fault, route or self._accept_route)
        return None

    def _hit(self, fault: Fault, route: str) -> Fault:
        fault.hits += 1
        self.fired[f"{fault.kind}:{route}" + (":after" if fault.after_accept else "")] += 1
        if fault.remaining <= 0:
            self.queued.remove(fault)
        return fault


@dataclass(frozen=True)
class RequestRecord:
    """One request as the fake saw it (headers lower-cased)."""

    route: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    at: float
    fault: FaultKind | None


class FaultLayer:
    """ASGI middleware: names the route, counts and logs the request, applies armed faults."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        faults: Faults,
        classify: Callable[[str, str, int], str],
        counts: Counter[str],
        log: list[RequestRecord],
        error_body: Callable[[int], Any],
        request_id_header: str | None = None,
        observe: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.faults = faults
        self.classify = classify
        self.counts = counts
        self.log = log
        self.error_body = error_body
        self.request_id_header = request_id_header
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        route = self.classify(method, path, scope["server"][1])
        if self.observe is not None:  # before any fault is taken: an observer may arm one for this request
            self.observe(route)
        before = self.faults.take(route, method, path, after_accept=False)
        after = None if before else self.faults.take(route, method, path, after_accept=True)
        fault = before or after
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.counts[route] += 1
        self.log.append(
            RequestRecord(
                route,
                method,
                path,
                scope.get("query_string", b"").decode(),
                headers,
                time.monotonic(),
                fault.kind if fault else None,
            )
        )
        outer = self._with_request_id(send)
        if before is not None:
            if before.kind == "delay":
                await asyncio.sleep(before.seconds)
            elif before.kind == "drop":
                # Read the whole request first: closing while body bytes are still in flight
                # makes the kernel answer them with RST (httpx.ReadError instead of a clean drop).
                while (await receive()).get("more_body"):
                    pass
                await drop_connection(send)
                return
            else:  # http_error, garble
                await self._send_error(before, outer, send)
                return
        if after is None:
            await self.app(scope, receive, outer)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        if after.kind == "drop":
            await drop_connection(send)
        elif after.kind in ("http_error", "garble"):
            await self._send_error(after, outer, send)
        else:
            await asyncio.sleep(after.seconds)
            for message in held:
                await outer(message)

    def _with_request_id(self, send: Send) -> Send:
        header = self.request_id_header
        if header is None:
            return send
        name = header.encode()

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == name for k, _ in headers):
                    headers.append((name, str(uuid.uuid4()).encode()))
                message = {**message, "headers": headers}
            await send(message)

        return wrapped

    async def _send_error(self, fault: Fault, outer: Send, raw: Send) -> None:
        if fault.ingress:
            reason = _REASONS.get(fault.status, "Error")
            body = NGINX_BODY.format(status=fault.status, reason=reason).encode()
            content_type, send = b"text/html", raw  # ingress errors carry no request id
        else:
            payload = fault.body if fault.body is not None else self.error_body(fault.status)
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            content_type, send = b"application/json", outer
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in fault.headers.items()]
        await send({"type": "http.response.start", "status": fault.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
