"""A real Mosquitto (Debian's `mosquitto`) on a free 127.0.0.1 port with a throwaway
config: the reference broker tests and benchmarks compare the station's broker with.

    with Mosquitto(tmp_path, users={"alice": "pw"}, acl=ACL) as m:
        paho.connect("127.0.0.1", m.port)

`make test` installs the package first (.ci/os-packages); a missing binary here is an
error with the install command, never a skipped test.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

INSTALL_HINT = "sudo apt-get install mosquitto mosquitto-clients (or run `make test`)"


def binary(name: str = "mosquitto") -> str:
    """The path of a Mosquitto program; Debian puts the broker in /usr/sbin."""
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if found is None:
        raise RuntimeError(f"{name} is not installed: {INSTALL_HINT}")
    return found


def version() -> str:
    out = subprocess.run([binary(), "-h"], capture_output=True, text=True, check=False).stdout
    first = out.splitlines()[0] if out else ""
    return first.rsplit(" ", 1)[-1] if "version" in first else "unknown"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """Mosquitto in the foreground; `users` makes a password file (allow_anonymous off),
    `acl` is the text of an ACL file, `extra` more config lines, `tls` a
    (certificate, key) pair for a TLS-only listener (see tests/tls_ca.py)."""

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        extra: list[str] | None = None,
        port: int | None = None,
        dynsec_admin: tuple[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.users = users
        self.acl = acl
        self.extra = extra or []
        # (username, password) of the dynamic-security plugin's admin client, or None.
        self.dynsec_admin = dynsec_admin
        # (certificate, key) PEM files: the listener speaks TLS only (MQTT over TLS).
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "mosquitto.log"

    def _config(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            # As root, Mosquitto would switch to user `mosquitto`, who cannot read
            # the throwaway files; stay who we are.
            f"user {getpass.getuser()}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if self.tls is not None:
            cert, key = self.tls
            lines += [f"certfile {cert}", f"keyfile {key}", "tls_version tlsv1.2"]
        if self.users is not None:
            pwfile = self.workdir / "passwd"
            pwfile.write_text("")
            pwfile.chmod(0o600)
            for user, password in self.users.items():
                subprocess.run(
                    [binary("mosquitto_passwd"), "-b", str(pwfile), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        elif self.dynsec_admin is None:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            aclfile = self.workdir / "acl"
            aclfile.write_text(self.acl)
            lines.append(f"acl_file {aclfile}")
        if self.dynsec_admin is not None:
            lines += self._dynsec_lines(*self.dynsec_admin)
        lines += self.extra
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _dynsec_lines(self, admin: str, password: str) -> list[str]:
        """The dynamic-security plugin Debian ships, with a fresh config whose only
        client is the admin (as `mosquitto_ctrl dynsec init` makes it)."""
        found = sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so")) + sorted(
            Path("/usr/lib").glob("mosquitto_dynamic_security.so")
        )
        if not found:
            raise RuntimeError(f"Mosquitto's dynamic-security plugin is missing: {INSTALL_HINT}")
        config = self.workdir / "dynsec.json"
        config.unlink(missing_ok=True)
        subprocess.run(
            [binary("mosquitto_ctrl"), "dynsec", "init", str(config), admin, password],
            check=True,
            capture_output=True,
        )
        return [
            "allow_anonymous false",
            f"plugin {found[0]}",
            f"plugin_opt_config_file {config}",
        ]

    def start(self, timeout: float = 10.0) -> Mosquitto:
        conf = self._config()
        self.proc = subprocess.Popen(
            [binary(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                log = self.log_path.read_text() if self.log_path.exists() else ""
                raise RuntimeError(f"mosquitto exited at start: {err}{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
