"""Replicas: N `python -m fluxroute serve --http` processes sharing one store, each on its own loopback port,
pointed at the Krea and fal fakes.

The store is either one SQLite file (every replica gets the same FLUXROUTE_HOME: one machine only) or a PostgreSQL
database (FLUXROUTE_DATABASE_URL; each replica then has a home of its own, for its images). Settings that have no
environment variable (webhook_base_url, the short retry pauses) go in one fluxroute.toml that FLUXROUTE_CONFIG
names. The processes start in parallel; `start` returns once each answers /health. `kill` stops one with SIGKILL
(and reaps it, so its pid is gone: another replica on this host then takes its leases at once); `stop` ends all.

Used by tests/replicas/test_replicas.py and benchmarks/scale_out.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import httpx

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Decimal):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Fakes:
    """Where the provider fakes listen and the credentials they accept."""

    krea_token: str
    krea_base_url: str
    fal_key: str
    fal_base_url: str
    fal_jwks_url: str

    @classmethod
    def of(cls, krea: Any, fal: Any) -> Fakes:
        """From a running KreaFake and FalFake (tests/fakes)."""
        return cls(krea.token, krea.base_url, fal.key, fal.base_url, fal.jwks_url)

    def env(self) -> dict[str, str]:
        return {
            "KREA_API_TOKEN": self.krea_token,
            "FLUXROUTE_KREA_BASE_URL": self.krea_base_url,
            "FAL_KEY": self.fal_key,
            "FLUXROUTE_FAL_BASE_URL": self.fal_base_url,
            "FLUXROUTE_FAL_REST_URL": self.fal_base_url,
            "FLUXROUTE_FAL_CDN_URL": self.fal_base_url,
            "FLUXROUTE_FAL_JWKS_URL": self.fal_jwks_url,
        }


@dataclass
class Replica:
    """One `fluxroute serve --http` process."""

    name: str
    port: int
    home: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Replicas:
    """N replicas on one store. `database_url` None: SQLite, one FLUXROUTE_HOME for all of them."""

    root: Path
    fakes: Fakes
    count: int = 3
    database_url: str | None = None
    settings: Mapping[str, object] = field(default_factory=dict)  # fluxroute.toml keys (Settings fields)
    env: Mapping[str, str] = field(default_factory=dict)  # more environment variables
    # webhook_base_url: this replica's URL for every replica (one public address, as behind a load balancer), or
    # "self": each replica its own URL; None: unset (jobs are polled)
    webhook_replica: int | Literal["self"] | None = None
    replicas: list[Replica] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shared = self.root / "home"
        for i in range(self.count):
            name = "ABCDEFGH"[i] if i < 8 else f"R{i}"
            home = shared if self.database_url is None else self.root / f"home-{name}"
            self.replicas.append(Replica(name, free_port(), home, self.root / f"replica-{name}.log"))

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]

    def __len__(self) -> int:
        return len(self.replicas)

    @property
    def backend(self) -> str:
        return "sqlite" if self.database_url is None else "postgres"

    def config_file(self, replica: Replica | None = None) -> Path:
        """The fluxroute.toml `replica` reads (one for all, unless each has its own webhook URL)."""
        values: dict[str, object] = {
            "provider_timeout_s": 60,
            "retry_backoff_s": 0.02,
            "reconcile_delay_s": 0.05,
            "cancel_settle_s": 2.0,
        }
        if self.webhook_replica == "self":
            assert replica is not None
            values["webhook_base_url"] = replica.base_url
        elif self.webhook_replica is not None:
            values["webhook_base_url"] = self.replicas[self.webhook_replica].base_url
        values |= dict(self.settings)
        path = self.root / ("fluxroute.toml" if self.webhook_replica != "self" else f"fluxroute-{replica.name}.toml")
        path.write_text("".join(f"{key} = {toml_value(value)}\n" for key, value in values.items()))
        return path

    def environment(self, replica: Replica) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if k not in ("FAL_KEY", "KREA_API_TOKEN") and not k.startswith("FLUXROUTE_")
        }
        config = self.config_file(replica)
        env = base | self.fakes.env() | {"FLUXROUTE_HOME": str(replica.home), "FLUXROUTE_CONFIG": str(config)}
        if self.database_url is not None:
            env["FLUXROUTE_DATABASE_URL"] = self.database_url
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
        return env | dict(self.env)

    def start(self, timeout: float = START_TIMEOUT_S) -> Replicas:
        """Start every replica at once; return when each answers /health (else stop them all and raise)."""
        for replica in self.replicas:
            self._spawn(replica)
        try:
            self.wait_ready(self.replicas, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, index: int, timeout: float = START_TIMEOUT_S) -> Replica:
        """Start replica `index` again (after `kill`), on the same port."""
        replica = self.replicas[index]
        assert not replica.alive
        self._spawn(replica)
        self.wait_ready([replica], timeout)
        return replica

    def _spawn(self, replica: Replica) -> None:
        replica.home.mkdir(parents=True, exist_ok=True)
        with replica.log_path.open("ab") as log:
            replica.process = subprocess.Popen(
                [sys.executable, "-m", "fluxroute", "serve", "--http", "--port", str(replica.port)],
                env=self.environment(replica),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def wait_ready(self, replicas: list[Replica], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(replicas)
        with httpx.Client(timeout=1) as client:
            while waiting:
                for replica in list(waiting):
                    if not replica.alive:
                        raise RuntimeError(f"replica {replica.name} exited at start:\n{replica.log()[-3000:]}")
                    with contextlib.suppress(httpx.TransportError):
                        if client.get(f"{replica.base_url}/health").status_code == 200:
                            waiting.remove(replica)
                if waiting:
                    if time.monotonic() > deadline:
                        names = ", ".join(r.name for r in waiting)
                        raise RuntimeError(f"replicas {names} did not answer /health in {timeout:g} s")
                    time.sleep(0.05)

    def kill(self, index: int) -> Replica:
        """SIGKILL replica `index` and reap it (its pid is gone, not a zombie)."""
        replica = self.replicas[index]
        assert replica.process is not None
        replica.process.send_signal(signal.SIGKILL)
        replica.process.wait(10)
        return replica

    def stop(self) -> None:
        """SIGTERM every live replica (a clean shutdown leaves its jobs in flight for the others), SIGKILL any that
        does not stop within 10 s."""
        live = [r for r in self.replicas if r.alive]
        for replica in live:
            assert replica.process is not None
            replica.process.terminate()
        for replica in live:
            assert replica.process is not None
            try:
                replica.process.wait(10)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait(10)

    def __enter__(self) -> Replicas:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self) -> str:
        return "\n".join(f"--- replica {r.name} ---\n{r.log()[-4000:]}" for r in self.replicas)

    def open_store(self) -> Any:
        """The replicas' store, opened in this process (close it after use)."""
        from fluxroute.store import JobStore

        if self.database_url is not None:
            return JobStore.connect(self.database_url, max_connections=4)
        return JobStore.open(self.replicas[0].home)


@contextlib.asynccontextmanager
async def mcp_client(replica: Replica, timeout: float = 120.0) -> AsyncIterator[Any]:
    """The official MCP SDK client over Streamable HTTP to `replica` (no bearer token: loopback)."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(timeout=timeout)
    async with http, Client(streamable_http_client(replica.mcp_url, http_client=http)) as client:
        yield client
