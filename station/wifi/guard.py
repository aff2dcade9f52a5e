"""The guarantee that the laptop goes back to its home network.

    with Excursion(backend, journal, cancel=cancel_event) as trip:
        link = trip.connect("esp32-dht11-Setup-12AB34", "12345678", probe=api_answers)
        ...talk to the device at link.device...
        link = trip.connect("esp32-dht11-Setup-56CD78", "12345678", probe=api_answers)
        ...
    # here the laptop is home again and every temporary profile is gone: after success,
    # an exception, a cancel, or Ctrl-C.

A crash (or a kill) skips the `with` exit; the journal written before each join covers that:
`recover(backend, journal)` at the next start deletes the leftovers and goes home.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Literal

from station.wifi.base import HomeNetwork, Link, Probe, WifiBackend
from station.wifi.errors import Cancelled, ReturnHomeError, WifiError
from station.wifi.journal import Journal, JournalEntry

log = logging.getLogger("station.wifi.guard")


class Excursion:
    """Leave home for one or more device networks, and always come back.

    `home`: where to return; default is whatever the adapter is on when the block starts
    (pass it when the OS hides the current SSID, e.g. macOS without Location permission).
    """

    def __init__(
        self,
        backend: WifiBackend,
        journal: Journal | None = None,
        *,
        home: HomeNetwork | None = None,
        cancel: threading.Event | None = None,
        return_timeout: float = 30.0,
    ):
        self.backend = backend
        self.journal = journal
        self.home = home
        self.cancel = cancel
        self.return_timeout = return_timeout
        self.profiles: list[str] = []  # temporary profiles alive now
        self.left_home = False
        self._entry: JournalEntry | None = None

    def __enter__(self) -> Excursion:
        if self.home is None:
            self.home = self.backend.remember_home()
        log.info("home network: %s", self.home.describe() if self.home else "(none)")
        return self

    def connect(
        self,
        ssid: str,
        passphrase: str,
        *,
        bssid: str | None = None,
        timeout: float = 30.0,
        probe: Probe | None = None,
    ) -> Link:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("Cancelled before joining " + ssid + ".")
        self.left_home = True
        self._journal(target=ssid)
        link = self.backend.connect(
            ssid,
            passphrase,
            bssid=bssid,
            timeout=timeout,
            probe=probe,
            cancel=self.cancel,
            on_profile=self._add_profile,
        )
        # Hopping from one device straight to the next: the previous hop's profile is done.
        for old in [p for p in self.profiles if p != link.profile]:
            self._remove(old)
        self._journal(target=ssid)
        return link

    def _add_profile(self, profile: str) -> None:
        self.profiles.append(profile)
        self._journal()

    def _journal(self, target: str | None = None) -> None:
        if self.journal is None:
            return
        if self._entry is None:
            self._entry = JournalEntry(backend=self.backend.name, home=self.home)
        if target is not None:
            self._entry.target = target
        self._entry.profiles = list(self.profiles)
        self.journal.write(self._entry)

    def _remove(self, profile: str) -> bool:
        try:
            self.backend.remove_profile(profile)
        except WifiError as exc:
            log.warning("could not delete temporary WiFi profile %s: %s", profile, exc)
            return False
        self.profiles.remove(profile)
        return True

    def go_home(self) -> None:
        """Return home and delete temporary profiles (what the `with` exit does)."""
        home_error: BaseException | None = None
        try:
            if self.left_home:
                log.info("returning to %s", self.home.describe() if self.home else "home")
                self.backend.return_home(self.home, timeout=self.return_timeout)
                self.left_home = False
        except BaseException as exc:  # even Ctrl-C here: still delete the profiles below
            home_error = exc
        finally:
            for profile in list(self.profiles):
                self._remove(profile)
            if self.journal is not None and not self.profiles and home_error is None:
                self.journal.clear()  # otherwise recover() retries at the next start
                self._entry = None
        if home_error is not None:
            raise home_error

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        try:
            self.go_home()
        except Exception as home_exc:
            where = self.home.describe() if self.home else "your home WiFi network"
            message = (
                f"Could not get this computer back on {where}: {home_exc} "
                "Please connect to it by hand."
            )
            if exc is not None:
                message += f" (This happened after another problem: {exc})"
            if exc is not None and not isinstance(exc, Exception):
                # Ctrl-C / SystemExit: keep it propagating, but say what is wrong.
                log.error("%s", message)
                exc.add_note(message)
                return False
            raise ReturnHomeError(message) from home_exc
        return False


@dataclass
class RecoveryReport:
    found_journal: bool = False
    went_home: bool = False
    removed_profiles: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.found_journal and not self.removed_profiles:
            return "Nothing to recover."
        parts = []
        if self.removed_profiles:
            parts.append(f"deleted {len(self.removed_profiles)} leftover temporary WiFi profile(s)")
        if self.went_home:
            parts.append("went back to the home network")
        parts.extend(self.problems)
        return "; ".join(parts).capitalize() + "."


def recover(
    backend: WifiBackend,
    journal: Journal,
    *,
    home: HomeNetwork | None = None,
    timeout: float = 30.0,
) -> RecoveryReport:
    """Run at startup: undo what a crashed run left (temporary profiles, being away from home).

    Never raises for WiFi problems: it reports them, since the station must still start.
    `home` is used only when the journal does not say where home is.
    """
    report = RecoveryReport()
    entry = journal.read()
    if entry is not None:
        report.found_journal = True
        if entry.backend != backend.name:
            log.warning(
                "WiFi journal was written by backend %s, recovering with %s",
                entry.backend,
                backend.name,
            )
        try:
            backend.return_home(entry.home or home, timeout=timeout)
            report.went_home = True
        except WifiError as exc:
            report.problems.append(str(exc))
        for profile in entry.profiles:
            try:
                backend.remove_profile(profile)
                report.removed_profiles.append(profile)
            except WifiError as exc:
                report.problems.append(f"could not delete temporary profile {profile}: {exc}")
    try:
        for profile in backend.sweep_profiles():
            if profile not in report.removed_profiles:
                report.removed_profiles.append(profile)
    except WifiError as exc:
        report.problems.append(f"could not look for leftover temporary profiles: {exc}")
    if not report.problems:
        journal.clear()
    if report.found_journal or report.removed_profiles:
        log.info("WiFi recovery: %s", report)
    return report
