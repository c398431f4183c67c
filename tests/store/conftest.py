"""The store suite runs unchanged against every backend in BACKENDS: tests take the `store` fixture and use only
the `Store` interface (backend-specific tests, such as SQLite's file and schema, open their backend directly)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fluxroute.store import JobStore, Store

BACKENDS: dict[str, Callable[[Path], Store]] = {
    "sqlite": JobStore.open,
}


@pytest.fixture(params=sorted(BACKENDS))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens stores of one backend on one shared database (every call: a new handle, as another process has)."""
    opened: list[Store] = []

    def open_store() -> Store:
        opened.append(BACKENDS[request.param](tmp_path))
        return opened[-1]

    yield open_store
    for handle in opened:
        handle.close()


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Store:
    return store_factory()
