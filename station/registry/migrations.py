"""Schema versions: create a new database, or bring an older one up to date.

Each release that changes the tables adds one function to MIGRATIONS taking the
database from version N to N+1 (playhouse.migrate operations) and bumps
SCHEMA_VERSION. All pending steps run in one transaction, so a failed upgrade leaves
the old database untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import peewee
from playhouse.migrate import SchemaMigrator

from station.errors import ConfigError
from station.registry.db import write_transaction
from station.registry.models import ALL_MODELS, Account, Meta, ProvisioningJob
from station.registry.status import Status

log = logging.getLogger(__name__)

SCHEMA_VERSION = 8
# pg_advisory_xact_lock key held while a station creates or upgrades the schema.
MIGRATION_LOCK = 0x45535033  # "ESP3"


def _pending_to_registered(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """1 -> 2: the job status default was "pending", a word no reader knows; a job row
    exists once its device is registered, so such rows are `registered`."""
    rows = (
        ProvisioningJob.update(status=Status.REGISTERED)
        .where(ProvisioningJob.status == "pending")
        .execute()
    )
    if rows:
        log.info("registry: %d job(s) with status 'pending' are now 'registered'", rows)


def _seed_app_login(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """2 -> 3: Device.seed_app_login (every existing device proves its token).

    Plain SQL, not playhouse's add_column: for a NOT NULL column that adds it nullable
    and then rebuilds the table on SQLite (copy, DROP, rename), and dropping `device`
    cascades to every provisioning job, reading and event of every device. One ALTER
    with a default is atomic on both SQLite and PostgreSQL."""
    db.execute_sql("ALTER TABLE device ADD COLUMN seed_app_login BOOLEAN NOT NULL DEFAULT FALSE")


def _accounts(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """3 -> 4: the `account` table (integration logins); nothing existing changes."""
    db.create_tables([Account])


def _home_broker(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """4 -> 5: Home.broker_url, NULL for every existing home (the embedded broker)."""
    db.execute_sql("ALTER TABLE home ADD COLUMN broker_url VARCHAR(255)")


def _tls_and_job_owner(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """5 -> 6: Home.broker_ca (an mqtts:// broker's CA) and ProvisioningJob.station
    (the station running the job), both NULL for what exists: no CA, no owner."""
    db.execute_sql("ALTER TABLE home ADD COLUMN broker_ca TEXT")
    db.execute_sql("ALTER TABLE provisioning_job ADD COLUMN station VARCHAR(64)")
    db.execute_sql(
        'CREATE INDEX IF NOT EXISTS "provisioning_job_station" ON provisioning_job (station)'
    )


def _device_location(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """6 -> 7: Device.location (a room/location note for the handover report), NULL
    for every existing device (not noted)."""
    db.execute_sql("ALTER TABLE device ADD COLUMN location VARCHAR(100)")


def _device_broker(db: peewee.Database, migrator: SchemaMigrator) -> None:
    """7 -> 8: Device.broker_address (host:port of the broker the device last reported
    being on, its info's `broker`), NULL until it next reports."""
    db.execute_sql("ALTER TABLE device ADD COLUMN broker_address VARCHAR(270)")


# from-version -> step that upgrades to from-version + 1
MIGRATIONS: dict[int, Callable[[peewee.Database, SchemaMigrator], None]] = {
    1: _pending_to_registered,
    2: _seed_app_login,
    3: _accounts,
    4: _home_broker,
    5: _tls_and_job_owner,
    6: _device_location,
    7: _device_broker,
}


def schema_version(db: peewee.Database) -> int | None:
    """The stored version, or None for an empty database."""
    if not db.table_exists(Meta._meta.table_name):
        return None
    with db.bind_ctx([Meta]):
        row = Meta.get_or_none(Meta.key == "schema_version")
    return int(row.value) if row else None


def _set_version(version: int) -> None:
    Meta.put("schema_version", str(version))


def migrate(db: peewee.Database, target: int | None = None) -> int:
    """Create or upgrade the schema; returns the version now in the database."""
    target = SCHEMA_VERSION if target is None else target
    with db.bind_ctx(ALL_MODELS), write_transaction(db):
        if isinstance(db, peewee.PostgresqlDatabase):
            # Stations sharing a database may start at the same moment, and PostgreSQL's
            # CREATE TABLE IF NOT EXISTS is not safe against a concurrent one (a unique
            # violation on pg_class): one migrates at a time, until its commit. SQLite's
            # IMMEDIATE transaction already is that lock.
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        current = schema_version(db)
        if current is None:
            db.create_tables(ALL_MODELS)
            _set_version(target)
            log.info("registry: created schema version %d", target)
            return target
        if current > target:
            raise ConfigError(
                f"the registry database has schema version {current}, newer than this "
                f"station understands ({target}); update the station or use another database"
            )
        migrator = SchemaMigrator.from_database(db)
        while current < target:
            step = MIGRATIONS.get(current)
            if step is None:
                raise ConfigError(f"no migration from registry schema version {current}")
            log.info("registry: migrating schema %d -> %d", current, current + 1)
            step(db, migrator)
            current += 1
            _set_version(current)
    return current
