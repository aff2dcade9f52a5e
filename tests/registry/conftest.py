"""The registry suite runs on both databases the station supports: a SQLite file (the
default) and a real PostgreSQL server (a registry shared by several stations)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from station.registry import Registry


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """An empty registry database of each kind: a SQLite file path, a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "registry.sqlite3")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def registry(db_url) -> Iterator[Registry]:
    reg = Registry(db_url)
    yield reg
    reg.close()
