"""Two stations, one registry, one broker (issue 10 part 5): two installers' laptops
(two `station` processes) provision demo batches at the same time into one PostgreSQL
registry, their devices reporting to one real Mosquitto (dynamic security). Every
device gets a name of its own, each station runs and completes only its own jobs, and
all devices are online on the shared broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mosquitto import Mosquitto
from playhouse.db_url import connect
from support import station_env

pytestmark = pytest.mark.timeout(300)
ADMIN = ("admin", "admin-secret")


def start_station(tmp_path: Path, name: str, *args: str) -> subprocess.Popen[str]:
    env = station_env(tmp_path / name, STATION_ID=name)
    return subprocess.Popen(
        [sys.executable, "-m", "station", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_stations_provision_into_one_postgresql_registry_and_one_mosquitto(tmp_path, pg_url):
    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN) as mosq:
        url = f"mqtt://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:{mosq.port}"
        batch = ("--db", pg_url, "provision", "--demo", "3", "--broker", url)
        homes = {"laptop-a": "Smith", "laptop-b": "Jones"}  # two installers, two homes
        procs = {
            name: start_station(tmp_path, name, *batch, "--home", home)
            for name, home in homes.items()
        }
        out = {name: p.communicate(timeout=240) for name, p in procs.items()}
        for name, p in procs.items():
            stdout, stderr = out[name]
            assert p.returncode == 0, f"{name}:\n{stdout[-3000:]}\n{stderr[-3000:]}"
            assert "3 of 3 devices online" in stdout, stdout[-3000:]
            assert "Traceback" not in stderr
            assert ADMIN[1] not in stdout + stderr

        db = connect(pg_url)
        try:
            devices = db.execute_sql(
                "SELECT node_name, chip_id, is_provisioned, topic_prefix FROM device "
                "ORDER BY node_name"
            ).fetchall()
            jobs = db.execute_sql(
                "SELECT d.node_name, j.station, j.status FROM provisioning_job j "
                "JOIN device d ON d.id = j.device_id"
            ).fetchall()
            home_of = dict(
                db.execute_sql(
                    "SELECT d.node_name, h.name FROM device d JOIN home h ON h.id = d.home_id"
                ).fetchall()
            )
        finally:
            db.close()
        # Six devices: six names and six topic prefixes from one counter, six chips
        # (each station's demo has chips of its own).
        assert [d[0] for d in devices] == [f"esp32_dht11_00{n}" for n in range(1, 7)]
        assert len({d[3] for d in devices}) == 6
        assert len({d[1] for d in devices}) == 6 and all(d[2] for d in devices)
        # Each station ran and completed exactly its own three jobs.
        by_station: dict[str, list[str]] = {}
        for node, station, status in jobs:
            assert status == "done", (node, station, status)
            by_station.setdefault(station, []).append(node)
        assert sorted(by_station) == ["laptop-a", "laptop-b"]
        assert [len(nodes) for nodes in by_station.values()] == [3, 3]
        # What each station printed is its own devices, in its own home.
        for name, nodes in by_station.items():
            for node in nodes:
                assert node in out[name][0], (name, node)
                assert home_of[node] == homes[name]

        # Each station's device table shows the other's devices too.
        for name in homes:
            listed = start_station(tmp_path, name, "--db", pg_url, "devices", "--json")
            stdout, stderr = listed.communicate(timeout=60)
            assert listed.returncode == 0, stderr
            docs = [json.loads(line) for line in stdout.splitlines()]
            assert sorted(d["node_name"] for d in docs) == [d[0] for d in devices]

        # Every device logged in to the shared Mosquitto with its own login.
        log = mosq.log_path.read_text()
        for n in range(1, 7):
            assert f"as esp32_dht11_00{n} " in log
        dynsec = json.loads((mosq.workdir / "dynsec.json").read_text())
        usernames = {c["username"] for c in dynsec["clients"]}
        assert usernames >= {f"esp32_dht11_00{n}" for n in range(1, 7)}
        # Two station clients of their own (one per laptop), not one shared.
        assert len({u for u in usernames if u.startswith("esp32-station-")}) == 2
