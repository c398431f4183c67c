"""The store suite runs unchanged against every backend in BACKENDS: tests take the `store` fixture and use only
the `Store` interface (backend-specific tests, such as SQLite's file and schema, open their backend directly).

`sqlite`: a file under the test's tmp_path. `postgres`: a fresh database on the session's PostgreSQL server
(tests/postgres.py; skipped when none can be started, failed under CI=true)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from fluxroute.store import JobStore, Store
from tests.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_opener(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], JobStore]:
    """Opens a new handle on this test's database of `backend` (as another process would open it)."""
    if backend == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return lambda: JobStore.connect(url)
    return lambda: JobStore.open(tmp_path)


@pytest.fixture
def store_factory(store_opener: Callable[[], JobStore]) -> Iterator[Callable[[], Store]]:
    """Opens stores of one backend on one shared database (every call: a new handle, as another process has)."""
    opened: list[Store] = []

    def open_store() -> Store:
        opened.append(store_opener())
        return opened[-1]

    yield open_store
    for handle in opened:
        handle.close()


@pytest.fixture
def fresh_store(backend: str, request: pytest.FixtureRequest) -> Callable[[], AbstractContextManager[JobStore]]:
    """Makes a store on a new empty database of `backend` each time it is entered (for hypothesis examples)."""

    @contextmanager
    def fresh() -> Iterator[JobStore]:
        if backend == "postgres":
            server = request.getfixturevalue("postgres_server")
            name, url = server.create_database()
            try:
                with JobStore.connect(url) as store:
                    yield store
            finally:
                server.drop_database(name)
        else:
            with tempfile.TemporaryDirectory() as home, JobStore.open(Path(home)) as store:
                yield store

    return fresh


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Store:
    return store_factory()
