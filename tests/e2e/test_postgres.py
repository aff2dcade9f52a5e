"""`station --db postgresql://…` as a user runs it, against a real PostgreSQL server:
a demo batch provisioned into the shared registry, read back by a second process, and
the clear messages for a refused login, a missing database and a missing driver."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from playhouse.db_url import connect
from support import station_env

pytestmark = pytest.mark.timeout(240)


def station(tmp_path, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "station", *args]
    return subprocess.run(
        argv, env=station_env(tmp_path), capture_output=True, text=True, timeout=200
    )


def test_demo_batch_on_postgresql_then_read_by_another_process(tmp_path, pg_url):
    proc = station(tmp_path, "--db", pg_url, "provision", "--demo", "3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3 of 3 devices online" in proc.stdout
    assert "Traceback" not in proc.stderr

    # The rows are in PostgreSQL, as the station left them.
    db = connect(pg_url)
    rows = db.execute_sql(
        "SELECT node_name, is_provisioned, chip_id IS NOT NULL FROM device ORDER BY node_name"
    ).fetchall()
    jobs = db.execute_sql("SELECT status FROM provisioning_job").fetchall()
    db.close()
    assert rows == [(f"esp32_dht11_00{i}", True, True) for i in (1, 2, 3)]
    assert sorted(j[0] for j in jobs) == ["done"] * 3

    listed = station(tmp_path, "--db", pg_url, "devices", "--json")
    assert listed.returncode == 0, listed.stderr
    docs = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [d["node_name"] for d in docs] == [
        "esp32_dht11_001",
        "esp32_dht11_002",
        "esp32_dht11_003",
    ]
    assert all(d["is_provisioned"] for d in docs)


def test_refused_login_and_missing_database_are_one_clear_line(tmp_path, pg_server):
    wrong = pg_server.url("postgres", password="not-the-password")
    proc = station(tmp_path, "--db", wrong, "devices")
    assert proc.returncode == 2
    assert 'password authentication failed for user "station"' in proc.stderr
    assert "not-the-password" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr

    proc = station(tmp_path, "--db", pg_server.url("no_such_db"), "devices")
    assert proc.returncode == 2
    assert 'database "no_such_db" does not exist' in proc.stderr
    assert pg_server.password not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_driver_names_the_install_extra(tmp_path, pg_url):
    # The station as a user without psycopg2 installed runs it.
    code = (
        "import sys; sys.modules['psycopg2'] = None; "
        "from station.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    proc = station(tmp_path, "--db", pg_url, "devices", code=code)
    assert proc.returncode == 2
    assert "pip install 'esp32-provisioning-station[postgres]'" in proc.stderr
    assert "Traceback" not in proc.stderr
