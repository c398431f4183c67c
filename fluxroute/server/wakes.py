"""Webhook wake-ups for the replica that follows the job.

A provider delivers a webhook to whichever replica its load balancer picks, but only one process follows each job
(it holds the attempt's lease, see fluxroute.store.leases) and only that process has a waiter to wake. The replica
that received the webhook wakes its own waiter when it has one; otherwise it publishes the wake on a `WakeBus` and
every replica's listener hands it to its own providers (`notify` answers False where nobody waits, a no-op).

The bus follows the store backend (`wake_bus`):

- PostgreSQL (`database_url`): `NOTIFY fluxroute_wakes, '<provider>:<job_id>'` (sent with pg_notify) on publish;
  each replica listens on a dedicated autocommit connection (`LISTEN fluxroute_wakes`) in a daemon thread, which
  reconnects with backoff when the connection drops and hands each wake to the event loop it was started for.
  NOTIFY is scoped to one database: replicas of one store hear each other, nothing else does. A wake sent while a
  listener reconnects is lost; the poller's own schedule (a check every 2 s at most) finds the job all the same.
- SQLite (one file on one machine, one or several processes): publishing does nothing. No wake table is kept: the
  process following the job checks it on its poll schedule (every 2 s at most), as soon as a webhook could have.

psycopg is imported only for a PostgreSQL bus (the `postgres` extra may be missing elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import SecretStr

if TYPE_CHECKING:
    from fluxroute.settings import Settings

log = logging.getLogger(__name__)

WAKE_CHANNEL = "fluxroute_wakes"
LISTEN_TIMEOUT_S = 0.5  # how often the listener looks up from its connection to see whether it should stop
CONNECT_TIMEOUT_S = 10
BACKOFF_FIRST_S = 0.2  # first pause before reconnecting a dropped listener; doubles up to BACKOFF_MAX_S
BACKOFF_MAX_S = 10.0
MAX_PAYLOAD = 7999  # NOTIFY's payload limit is 8000 bytes

Deliver = Callable[[str, str], object]  # (provider, provider job id): wake the waiter following it here


class WakeBus(Protocol):
    """Carries a webhook's wake-up from the replica that received it to the one that follows the job."""

    def publish(self, provider: str, job_id: str) -> bool:
        """Tell every replica to check `provider`'s job `job_id` now (blocking: call it off the event loop).
        True when the wake was sent."""
        ...

    def start(self, deliver: Deliver, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Hand every wake published from now on to `deliver` (on `loop` when given, else in the listener's
        thread) until `stop`."""
        ...

    def stop(self) -> None:
        """Stop listening and close the bus's connections (blocking, bounded: call it off the event loop)."""
        ...


class LocalWakeBus:
    """The bus on a SQLite store: publishing does nothing (see the module docstring: the poller's schedule, at
    most 2 s between checks, finds the job on whichever process follows it)."""

    def publish(self, provider: str, job_id: str) -> bool:
        return False

    def start(self, deliver: Deliver, loop: asyncio.AbstractEventLoop | None = None) -> None:
        return None

    def stop(self) -> None:
        return None


class PostgresWakeBus:
    """NOTIFY / LISTEN on channel `fluxroute_wakes` of the store's PostgreSQL database."""

    def __init__(self, url: SecretStr | str, *, channel: str = WAKE_CHANNEL) -> None:
        self._url = url if isinstance(url, SecretStr) else SecretStr(url)
        self.channel = channel
        self._publish_lock = threading.Lock()
        self._publisher: Any = None  # psycopg.Connection, made on the first publish
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: Any = None  # the listening psycopg.Connection, while connected
        self.listening = threading.Event()  # set while LISTEN is in effect (cleared while reconnecting)
        self.connections = 0  # how many times the listener connected (a reconnect counts again)

    # publishing

    def publish(self, provider: str, job_id: str) -> bool:
        """NOTIFY `<provider>:<job_id>` on the channel; False (logged) when the database cannot be reached or the
        payload is too long: the follower's poll schedule finds the job without it."""
        payload = f"{provider}:{job_id}"
        if len(payload.encode()) > MAX_PAYLOAD:
            log.warning("wake for %s job not published: its id is longer than NOTIFY carries", provider)
            return False
        import psycopg

        with self._publish_lock:
            for attempt in range(2):  # a connection the server dropped since the last wake is made again once
                try:
                    if self._publisher is None or self._publisher.closed:
                        self._publisher = self._connect("fluxroute-wake-publisher")
                    self._publisher.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))
                    return True
                except psycopg.Error as exc:
                    self._close_publisher()
                    if attempt:
                        log.warning("wake for %s job not published: %s", provider, self._redact(exc))
        return False

    def _close_publisher(self) -> None:
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                self._publisher.close()
            self._publisher = None

    # listening

    def start(self, deliver: Deliver, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Listen in a daemon thread; each wake is handed to `deliver(provider, job_id)`, on `loop` when given
        (`call_soon_threadsafe`: a poller's wake-up is an asyncio event, not thread-safe)."""
        if self._thread is not None:
            raise RuntimeError("this wake bus is listening already")
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._listen, args=(deliver, loop), name="fluxroute-wake-listener", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the listener (it looks up every LISTEN_TIMEOUT_S) and close the publishing connection."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
        with self._publish_lock:
            self._close_publisher()

    @property
    def listener_pid(self) -> int | None:
        """The server process (backend pid) of the listening connection while connected: what
        `pg_terminate_backend` takes to drop it (tests)."""
        conn = self._listener
        return None if conn is None else int(conn.info.backend_pid)

    def _listen(self, deliver: Deliver, loop: asyncio.AbstractEventLoop | None) -> None:
        import psycopg

        backoff = BACKOFF_FIRST_S
        while not self._stopping.is_set():
            try:
                with self._connect("fluxroute-wake-listener") as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self._listener = conn
                    self.connections += 1
                    self.listening.set()
                    backoff = BACKOFF_FIRST_S
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=LISTEN_TIMEOUT_S):
                            self._hand_over(note.payload, deliver, loop)
                            if self._stopping.is_set():
                                break
            except psycopg.Error as exc:
                if self._stopping.is_set():
                    break
                log.warning(
                    "wake listener: the database connection failed (%s); reconnecting in %.1f s",
                    self._redact(exc),
                    backoff,
                )
            except Exception:  # never let the thread die silently: wakes would stop for good
                log.exception("wake listener failed; reconnecting in %.1f s", backoff)
            finally:
                self._listener = None
                self.listening.clear()
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _hand_over(self, payload: str, deliver: Deliver, loop: asyncio.AbstractEventLoop | None) -> None:
        provider, sep, job_id = payload.partition(":")
        if not sep or not provider or not job_id:
            return  # not a wake of ours
        if loop is None:
            _deliver_quietly(deliver, provider, job_id)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: the server is stopping
            loop.call_soon_threadsafe(_deliver_quietly, deliver, provider, job_id)

    def _connect(self, application_name: str) -> Any:
        import psycopg

        return psycopg.connect(
            self._url.get_secret_value(),
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=application_name,
        )

    def _redact(self, exc: BaseException) -> str:
        from fluxroute.redact import redact, secret_values, url_password

        url = self._url.get_secret_value()
        return redact(str(exc), secret_values(url, url_password(url)))


def _deliver_quietly(deliver: Deliver, provider: str, job_id: str) -> None:
    try:
        deliver(provider, job_id)
    except Exception:
        log.exception("waking %s job %s failed", provider, job_id)


def wake_bus(settings: Settings, store: object = None) -> WakeBus:
    """The bus for the store a server runs on: PostgreSQL's NOTIFY / LISTEN when `settings.database_url` is set
    (or `store` is a JobStore opened on PostgreSQL), else the no-op bus of a SQLite store."""
    url: SecretStr | str | None = settings.database_url
    if url is None:
        # a store opened by the caller (JobStore.connect) rather than from the settings
        found = getattr(getattr(store, "_db", None), "url", None)
        url = found if isinstance(found, SecretStr) else None
    return LocalWakeBus() if url is None else PostgresWakeBus(url)
