"""Run a system tool with an argv list (never a shell), a hard timeout and a cancel token.

Every command is logged with secrets redacted. A tool that hangs is killed together with
its children (own process group on POSIX), so a stuck nmcli or netsh can never hang the
station's WiFi worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from station.wifi.errors import Cancelled, CommandTimeout, WifiUnavailable

log = logging.getLogger("station.wifi.run")

REDACTED = "***"


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]  # already redacted: safe to put in messages
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (self.stdout + "\n" + self.stderr).strip()

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def redact(argv: Iterable[str], secrets: Iterable[str]) -> tuple[str, ...]:
    """argv with every item that contains a secret replaced by ***."""
    hidden = [s for s in secrets if s]
    return tuple(REDACTED if any(s in a for s in hidden) else a for a in argv)


def redact_text(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, REDACTED)
    return text


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    secrets: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
) -> Result:
    """Run argv[0] (looked up on PATH) and return its exit code and output.

    Raises CommandTimeout when it runs longer than `timeout` seconds, Cancelled when
    `cancel` is set meanwhile, WifiUnavailable when the tool is not installed.
    A non-zero exit code is *not* an exception: callers classify the output.
    """
    secrets = [s for s in secrets if s]
    shown = redact(argv, secrets)
    exe = shutil.which(argv[0], path=(env or os.environ).get("PATH"))
    if exe is None:
        raise WifiUnavailable(f"The command '{argv[0]}' is not installed or not on PATH.")
    log.debug("run: %s", " ".join(shown))
    kwargs: dict = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True  # so a timeout kills the tool and its children
    elif sys.platform == "win32":
        kwargs["creationflags"] = subprocess.CREATE_NO_WINDOW  # no console flash in the GUI
    proc = subprocess.Popen(
        [exe, *argv[1:]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        **kwargs,
    )
    deadline = time.monotonic() + timeout
    out = err = b""
    while True:
        slice_ = min(0.1, max(0.0, deadline - time.monotonic()))
        try:
            out, err = proc.communicate(timeout=slice_)
            break
        except subprocess.TimeoutExpired:
            if cancel is not None and cancel.is_set():
                _kill(proc)
                raise Cancelled(f"Cancelled while running {argv[0]}.") from None
            if time.monotonic() >= deadline:
                _kill(proc)
                raise CommandTimeout(
                    f"'{argv[0]}' did not finish within {timeout:.0f} s and was stopped "
                    f"(command: {' '.join(shown)}).",
                    tool=argv[0],
                ) from None
        except BaseException:  # KeyboardInterrupt while waiting: never leave the tool behind
            _kill(proc)
            raise
    result = Result(
        argv=shown,
        returncode=proc.returncode,
        stdout=redact_text(out.decode(encoding, errors="replace"), secrets),
        stderr=redact_text(err.decode(encoding, errors="replace"), secrets),
    )
    if result.returncode != 0:
        log.debug("exit %d from %s: %s", result.returncode, argv[0], result.output[:500])
    return result


def _kill(proc: subprocess.Popen) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass
    with contextlib.suppress(subprocess.TimeoutExpired, ValueError, OSError):
        proc.communicate(timeout=5)


def tool_env(**overrides: str) -> dict[str, str]:
    """The current environment with a few variables overridden (read at call time, so a
    test's PATH applies)."""
    env = dict(os.environ)
    env.update(overrides)
    return env


def first_error_line(text: str) -> str:
    """The most telling line of a tool's output: its last 'Error…' line, else its last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith(("error", "** error"))]
    if errors:
        return errors[-1]
    return lines[-1] if lines else "(no output)"
