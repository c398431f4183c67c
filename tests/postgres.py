"""A real PostgreSQL server for the test session, and a fresh database on it for each test that asks.

`postgres_server` (session): FLUXROUTE_TEST_DATABASE_URL when set (a server where that user may CREATE DATABASE),
else a PostgreSQL 15 started from Debian's postgresql-15 binaries into a temporary directory: initdb and postgres
run as the `postgres` OS user when the tests run as root (initdb refuses root), as the current user otherwise,
listening on 127.0.0.1 on a free port with its unix socket in that directory; it is stopped at the session's end.
Without binaries (or as root without a `postgres` user) the tests that need it call `tests.needs.missing`: skipped
on a developer's machine, failed under CI=true.

`postgres_url` (per test): the URL of a new empty database on that server, dropped after the test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.needs import missing

URL_VARIABLE = "FLUXROUTE_TEST_DATABASE_URL"
START_TIMEOUT_S = 60


class PostgresServer:
    """A server the tests may create and drop databases on, through `admin_url`."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def create_database(self) -> tuple[str, str]:
        """(name, URL) of a new empty database."""
        import psycopg
        from psycopg.conninfo import make_conninfo

        name = f"fluxroute_test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
        if self.admin_url.startswith(("postgresql://", "postgres://")):  # a URL, as FLUXROUTE_DATABASE_URL takes
            return name, urlunsplit(urlsplit(self.admin_url)._replace(path=f"/{name}"))
        return name, make_conninfo(self.admin_url, dbname=name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def integrity_errors() -> tuple[type[Exception], ...]:
    """The exceptions a refused constraint raises, on every backend whose driver is installed."""
    import sqlite3

    errors: list[type[Exception]] = [sqlite3.IntegrityError]
    try:
        import psycopg
    except ImportError:
        pass
    else:
        errors.append(psycopg.IntegrityError)
    return tuple(errors)


def _binaries() -> Path | None:
    """The directory of PostgreSQL 15's initdb, pg_ctl and postgres (Debian's postgresql-15), if installed."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listing = subprocess.run(["dpkg", "-L", "postgresql-15"], capture_output=True, text=True, check=False).stdout
        for line in listing.splitlines():
            if line.endswith("/bin/initdb"):
                return Path(line).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user() -> dict[str, object] | None:
    """subprocess arguments that run a command as the user the server runs as; None when there is none."""
    if os.geteuid() != 0:
        return {}  # any user but root may run initdb and postgres
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        return None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "cwd": "/"}


def _start(binaries: Path, as_user: dict[str, object]) -> tuple[str, Path, Path]:
    """Start a throwaway server: (admin URL, its directory, its pg_ctl) once it accepts connections."""
    import psycopg

    root = Path(tempfile.mkdtemp(prefix="fluxroute-pg-"))
    if "user" in as_user:
        os.chown(root, int(str(as_user["user"])), int(str(as_user["group"])))
    os.chmod(root, 0o700)
    data = root / "data"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    subprocess.run(
        [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"],
        check=True,
        capture_output=True,
        env=env,
        **as_user,  # type: ignore[arg-type]
    )
    port = _free_port()
    options = (
        f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        " -c max_connections=200"
    )
    subprocess.run(
        [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "start"],
        check=True,
        capture_output=True,
        env=env,
        timeout=START_TIMEOUT_S,
        **as_user,  # type: ignore[arg-type]
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return url, root, binaries / "pg_ctl"
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        missing("PostgreSQL tests need psycopg: pip install -e '.[postgres]'")
    given = os.environ.get(URL_VARIABLE)
    if given:
        yield PostgresServer(given)
        return
    binaries = _binaries()
    if binaries is None:
        missing(
            "PostgreSQL tests need PostgreSQL 15's server (apt-get install postgresql-15)"
            " or FLUXROUTE_TEST_DATABASE_URL"
        )
    as_user = _as_server_user()
    if as_user is None:
        missing("PostgreSQL tests run as root need a `postgres` OS user to run the server (initdb refuses root)")
    try:
        url, root, pg_ctl = _start(binaries, as_user)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        missing(f"PostgreSQL could not be started: {exc} {detail.decode(errors='replace')[-500:]}")
    try:
        yield PostgresServer(url)
    finally:
        subprocess.run(
            [str(pg_ctl), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            check=False,
            timeout=START_TIMEOUT_S,
            **as_user,  # type: ignore[arg-type]
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A new empty database for this test, dropped after it."""
    name, url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(name)
