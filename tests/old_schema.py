"""Turn a current SQLite registry back into what an older schema left, to test the
upgrade from it: each version's additions, undone newest first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from station.registry import migrations

# version -> SQL undoing what the step from version - 1 added
UNDO: dict[int, list[str]] = {
    2: [],  # 1 -> 2 rewrote a word in rows; the tables stayed as they were
    3: ["ALTER TABLE device DROP COLUMN seed_app_login"],
    4: ["DROP TABLE account"],
    5: ["ALTER TABLE home DROP COLUMN broker_url"],
    6: [
        "DROP INDEX provisioning_job_station",
        "ALTER TABLE provisioning_job DROP COLUMN station",
        "ALTER TABLE home DROP COLUMN broker_ca",
    ],
    7: ["ALTER TABLE device DROP COLUMN location"],
    8: ["ALTER TABLE device DROP COLUMN broker_address"],
}


def downgrade(path: Path, version: int, *extra: str) -> None:
    """Make the database at `path` look like schema `version` (then run `extra` SQL)."""
    assert set(UNDO) == set(range(2, migrations.SCHEMA_VERSION + 1)), "UNDO is out of date"
    con = sqlite3.connect(path)
    try:
        for undone in range(migrations.SCHEMA_VERSION, version, -1):
            for sql in UNDO[undone]:
                con.execute(sql)
        con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
        for sql in extra:
            con.execute(sql)
        con.commit()
    finally:
        con.close()
