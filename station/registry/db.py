"""Late-bound database: models use `database_proxy`, bound by `open_database()`.

SQLite file in the user's data dir by default (WAL, so the GUI can read while the
broker's writer commits), ":memory:" for tests, or any peewee URL (PostgreSQL) for
a registry shared by several stations.
"""

from __future__ import annotations

import logging
from pathlib import Path

import peewee
from playhouse.db_url import connect as connect_url

from station.errors import ConfigError

log = logging.getLogger(__name__)

database_proxy = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    # First (peewee applies them in order): switching a new file to WAL takes a lock,
    # and without a busy timeout a second station opening it then fails at once.
    "busy_timeout": 5000,
    "journal_mode": "wal",
    "foreign_keys": 1,
    # WAL + NORMAL is durable against application crashes, and much faster than FULL.
    "synchronous": "normal",
}


# playhouse.db_url's names for PostgreSQL (postgresext: with playhouse extensions).
POSTGRES_SCHEMES = ("postgres", "postgresql", "postgres+pool", "postgresext", "postgresqlext")
POSTGRES_EXTRA = "pip install 'esp32-provisioning-station[postgres]'"


def _need_postgres_driver() -> None:
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        raise ConfigError(
            "a PostgreSQL registry needs the psycopg2 driver, which is not installed: "
            f"{POSTGRES_EXTRA} (the `postgres` extra), or pip install psycopg2-binary"
        ) from None


def open_database(db: peewee.Database) -> None:
    """Connect, turning the server's refusals into one clear sentence (no password)."""
    try:
        db.connect(reuse_if_open=True)
    except peewee.ImproperlyConfigured as exc:  # a driver peewee could not load
        raise ConfigError(f"cannot open the registry {describe(db)}: {exc}") from None
    except peewee.OperationalError as exc:
        reason = " ".join(str(exc).split())
        # libpq: 'connection to server at "h", port p failed: FATAL:  <reason>'
        reason = reason.split("FATAL:", 1)[-1].strip() or reason
        raise ConfigError(f"cannot open the registry {describe(db)}: {reason}") from None


def default_path() -> Path:
    from station.settings import data_dir

    return data_dir() / "registry.sqlite3"


def make_database(url: str | None = None) -> peewee.Database:
    """A peewee Database for a path, ":memory:" or URL (None = the default file)."""
    if url is None:
        path = default_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return peewee.SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS)
    if url == ":memory:":
        # One shared connection: a per-thread connection would give each thread its own
        # empty in-memory database.
        return peewee.SqliteDatabase(
            ":memory:", pragmas={"foreign_keys": 1}, thread_safe=False, check_same_thread=False
        )
    if "://" in url:
        scheme = url.partition("://")[0].lower()
        if scheme in POSTGRES_SCHEMES:
            _need_postgres_driver()
        try:
            db = connect_url(url)
        except Exception as exc:
            raise ConfigError(f"cannot use registry database URL: {exc}") from exc
        if isinstance(db, peewee.SqliteDatabase):
            db.init(db.database, pragmas=SQLITE_PRAGMAS)
        return db
    path = Path(url).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return peewee.SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS)


def describe(db: peewee.Database) -> str:
    """Where the registry lives, without credentials (for logs and the status bar)."""
    if isinstance(db, peewee.SqliteDatabase):
        return f"sqlite:{db.database}"
    params = getattr(db, "connect_params", {}) or {}
    if isinstance(db, peewee.PostgresqlDatabase):
        user = f"{params['user']}@" if params.get("user") else ""
        host = params.get("host") or "localhost"
        port = f":{params['port']}" if params.get("port") else ""
        return f"postgresql://{user}{host}{port}/{db.database}"  # never the password
    return f"{type(db).__name__}:{db.database}"


def write_transaction(db: peewee.Database):
    """A transaction that will write: on SQLite it takes the write lock at BEGIN
    (IMMEDIATE). A deferred transaction that reads first and then writes can fail at
    once with "database is locked" when another thread committed in between (SQLite
    does not wait there, busy_timeout or not); IMMEDIATE waits for the lock instead."""
    if isinstance(db, peewee.SqliteDatabase):
        return db.atomic(lock_type="IMMEDIATE")
    return db.atomic()
