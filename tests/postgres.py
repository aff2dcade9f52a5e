"""A real PostgreSQL server (Debian's `postgresql`) in a throwaway cluster on a free
127.0.0.1 port, with password (SCRAM) authentication, for the registry's tests:

    with PostgresServer() as pg:
        url = pg.create_database("t1")     # postgresql://station:...@127.0.0.1:PORT/t1

PostgreSQL refuses to run as root, so as root (CI) the cluster belongs to the `postgres`
user the Debian package creates. `make test` installs the package first
(.ci/os-packages); a missing server here is an error with the install command.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = "sudo apt-get install postgresql (or run `make test`)"
SUPERUSER = "station"


def bindir() -> Path:
    """Where initdb and pg_ctl live (Debian: /usr/lib/postgresql/<major>/bin)."""
    if shutil.which("initdb"):
        return Path(shutil.which("initdb") or "").parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if not found:
        raise RuntimeError(f"PostgreSQL's initdb is not installed: {INSTALL_HINT}")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        self.port = _free_port()
        self.password = secrets.token_urlsafe(16)
        self.root = Path(tempfile.mkdtemp(prefix="station-pg-"))
        self.data = self.root / "data"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = list(cmd)
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)

    def start(self, timeout: float = 30.0) -> PostgresServer:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        b = bindir()
        self._run(
            str(b / "initdb"),
            *("-D", str(self.data), "-U", SUPERUSER, "--pwfile", str(pwfile)),
            *("--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C.UTF-8"),
        )
        pwfile.unlink()
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(b / "pg_ctl"),
            *("-D", str(self.data), "-l", str(self.root / "log"), "-o", opts, "-w"),
            *("-t", str(int(timeout)), "start"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL did not listen on {self.port}: {self.log()}")

    def log(self) -> str:
        path = self.root / "log"
        return path.read_text() if path.exists() else ""

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{SUPERUSER}:{pw}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg2

        con = psycopg2.connect(self.url(database))
        con.autocommit = True
        try:
            with con.cursor() as cur:
                cur.execute(sql)
        finally:
            con.close()

    def create_database(self, name: str) -> str:
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.data.exists():
            self._run(
                str(bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop", check=False
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
