"""`station provision` in a terminal: the seed's texts, progress figures and prompts.

- `ProgressPrinter`: one line per step change, starting with the seed's 20 % when step 1
  of a device starts (20 → 40 → 60 → 80 → 100); with `steps=True` (the manual flow) also
  the seed's step headings ("Step 2 of 5: Connect to device").
- `TerminalConfirm`: the manual WiFi backend's confirmation (the seed's step 2 and 4
  instructions, Enter for "I'm Connected to Device WiFi" / "Check Device Connection").
  On a simulated site (the demo) the person may type a network name to move the
  simulated laptop there, as they would pick it in the OS's WiFi settings.
- `device_scan_reporter`: a device client factory that asks the device which networks
  it hears (GET /api/scan) before sending it the home WiFi, and reports them.
- `run_one_by_one`: the manual flow, device after device through the seed's five steps.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Protocol, TextIO

from station.device_client import DeviceClient, DeviceError, HeardNetwork
from station.provisioning import BulkQueue, Progress, RunSummary, SetupTarget
from station.provisioning.steps import TITLES, Step
from station.registry import Home, ProvisioningJob, Registry
from station.registry.models import utcnow
from station.wifi.manual import Instruction

log = logging.getLogger("station.provision")

STEP_NUMBER = {step: i for i, step in enumerate(Step, start=1)}


# -- progress ---------------------------------------------------------------------------


class ProgressPrinter:
    """One line per step change; stable and readable in a log or a terminal."""

    def __init__(self, out: TextIO | None = None, *, steps: bool = False) -> None:
        self.out = out or sys.stdout
        self.steps = steps  # print the seed's step headings (one device at a time)
        self.lock = threading.Lock()
        self._step: dict[str, Step] = {}  # provisioning id -> last step shown

    def _print(self, text: str) -> None:
        with self.lock:
            print(text, file=self.out, flush=True)

    def last_step(self, pid: str) -> Step | None:
        return self._step.get(pid)

    def heading(self, step: Step) -> None:
        self._print(f"\nStep {STEP_NUMBER[step]} of 5: {TITLES[step]}")

    def preparing(self, target: SetupTarget) -> None:
        """Step 1 starts for `target` (the seed's 20 %); it has no node name yet."""
        if self.steps:
            self.heading(Step.PREPARE)
        self._print(f"[ 20%] {'':<16} {target.ssid:<25} registering the device")

    def __call__(self, p: Progress) -> None:
        if self.steps and p.step != self._step.get(p.provisioning_id, Step.PREPARE):
            self.heading(p.step)
        self._step[p.provisioning_id] = p.step
        line = f"[{p.progress:3d}%] {p.node_name:<16} {p.ap_ssid or '':<25} {p.message}"
        if p.error:
            line += f"\n       error: {p.error}"
        self._print(line)


def add_each(
    queue: BulkQueue, targets: Sequence[SetupTarget], home: Home, printer: ProgressPrinter
) -> list[ProvisioningJob]:
    """Step 1 for each target in turn, each announced at 20 % when it starts."""
    jobs: list[ProvisioningJob] = []
    for target in targets:
        printer.preparing(target)
        jobs += queue.add([target], home)
    return jobs


# -- the final table --------------------------------------------------------------------


def job_seconds(job: ProvisioningJob, since: dt.datetime | None = None) -> float:
    """Wall-clock seconds the job took in this run: from its start (or `since`, the run's
    start, for a job left open by an earlier run) to its last update — a 60 s wait for
    `online` included, which the per-step timings of a failed wait do not hold."""
    start = job.created_at if since is None else max(job.created_at, since)
    end = job.updated_at or start
    return max(0.0, (end - start).total_seconds(), sum((job.timings or {}).values()))


def final_table(
    registry: Registry, pids: list[str], since: dt.datetime | None = None
) -> tuple[str, bool]:
    jobs = [j for j in (registry.job(pid) for pid in dict.fromkeys(pids)) if j is not None]
    rows = [("node", "chip id", "setup AP", "result", "seconds", "error")]
    all_ok = bool(jobs)
    for job in jobs:
        ok = job.is_provisioned
        all_ok &= ok
        rows.append(
            (
                job.device.node_name,
                job.device.chip_id or "–",
                job.ap_ssid or "–",
                "online" if ok else job.status,
                f"{job_seconds(job, since):.1f}",
                job.error or "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for i, r in enumerate(rows):
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True))
            + ("  " + r[5] if r[5] else "")
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    done = sum(j.is_provisioned for j in jobs)
    lines.append(f"\n{done} of {len(jobs)} devices online")
    return "\n".join(lines), all_ok


# -- the manual backend's questions, in a terminal ----------------------------------------


class LaptopMover(Protocol):
    """Moves the simulated laptop to a network (the demo's stand-in for WiFi settings)."""

    def __call__(self, ssid: str, passphrase: str | None) -> object: ...


class TerminalConfirm:
    """`confirm(Instruction) -> bool` for the manual backend: the seed's text and button."""

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        move: LaptopMover | None = None,
        air_root: str | None = None,
        read: Callable[[str], str] = input,
    ) -> None:
        self.out = out or sys.stdout
        self.move = move
        self.air_root = air_root  # the simulated air (shown, so tools can move the laptop)
        self.read = read
        self.prompting = False  # Ctrl-C while waiting here cancels (see provision_cmd)
        # Called when the person does not confirm (end of input, Ctrl-C): the run stops
        # (the queue's cancel), it does not ask again for the next device.
        self.on_cancel: Callable[[], None] | None = None
        # Set by a cancel (Ctrl-C, end of input): later questions are "no" at once, except
        # step 4's "go back home", which is always asked.
        self.cancelled = threading.Event()

    def __call__(self, instruction: Instruction) -> bool:
        # From here on a Ctrl-C (provision_cmd's handler raises KeyboardInterrupt while
        # `prompting`) is the person's "no", wherever it lands: printing or reading.
        self.prompting = True
        try:
            if self.cancelled.is_set() and instruction.step != 4:
                raise KeyboardInterrupt  # cancelled just before this question: no
            return self._ask(instruction)
        except (EOFError, KeyboardInterrupt):
            print("\n(no answer: cancelled)", file=self.out, flush=True)
            self.cancelled.set()
            if self.on_cancel is not None:
                self.on_cancel()
            return False
        finally:
            self.prompting = False

    def _ask(self, instruction: Instruction) -> bool:
        # The GUI's "click “…”" is "press Enter for “…”" here.
        text = instruction.text.replace("click “", "press Enter for “")
        print(f"\n{instruction.title}\n{text}", file=self.out, flush=True)
        if self.move is not None:
            print(
                "(Demo: this laptop's WiFi is simulated. Type a network name and Enter to "
                "join it, as in the WiFi settings; Enter alone once connected."
                + (f" Air folder: {self.air_root})" if self.air_root else ")"),
                file=self.out,
                flush=True,
            )
        while True:
            line = self.read(f"Press Enter for “{instruction.action}” (Ctrl-C to cancel) ")
            name = line.strip()
            if not name or self.move is None:
                return True
            self._move(name, instruction)

    def _move(self, name: str, instruction: Instruction) -> None:
        assert self.move is not None
        passphrase = instruction.passphrase if name == instruction.ssid else None
        try:
            self.move(name, passphrase)
        except (LookupError, PermissionError) as exc:
            print(f"Cannot join {name}: {exc}", file=self.out, flush=True)
        else:
            print(f"(the simulated laptop is now on {name})", file=self.out, flush=True)


# -- the device's own scan --------------------------------------------------------------


class ScanReport(Protocol):
    def __call__(
        self, ap_ssid: str, networks: list[HeardNetwork] | None, error: str | None
    ) -> None: ...


def device_scan_reporter(report: ScanReport) -> Callable[..., DeviceClient]:
    """A `Station.client_factory`: before the home WiFi goes to the device (step 3), ask
    the device which networks it hears and hand them to `report`. A device that cannot
    scan does not stop the flow."""

    class ScanningClient(DeviceClient):
        def send_wifi(self, ssid: str, password: str) -> None:
            try:
                heard: list[HeardNetwork] | None = self.scan()
                problem = None
            except DeviceError as exc:
                heard, problem = None, str(exc)
            report(self.ap_ssid or "", heard, problem)
            super().send_wifi(ssid, password)

    return ScanningClient


def print_device_networks(home_ssid: str, out: TextIO) -> ScanReport:
    """A ScanReport for the terminal: the networks the device hears, and a warning when
    the home network is not among them."""

    def report(ap_ssid: str, networks: list[HeardNetwork] | None, error: str | None) -> None:
        lines: list[str] = []
        if networks is None:
            lines.append(f"       (the device's network scan failed: {error})")
        else:
            lines.append(f"       Networks the device hears ({len(networks)}):")
            for n in networks:
                lock = "secured" if n.secure else "open"
                mark = "  <- home" if n.ssid == home_ssid else ""
                lines.append(f"         {n.ssid:<32} {n.rssi:>4} dBm  {lock}{mark}")
            if all(n.ssid != home_ssid for n in networks):
                lines.append(
                    f"       warning: {ap_ssid} does not hear the home network "
                    f"'{home_ssid}'. It may be out of range or 5 GHz only (an ESP32 "
                    "uses 2.4 GHz); the device will try it anyway."
                )
        print("\n".join(lines), file=out, flush=True)

    return report


# -- the manual flow: one device at a time ----------------------------------------------


def run_one_by_one(
    queue: BulkQueue,
    targets: Sequence[SetupTarget],
    home: Home,
    password: str,
    printer: ProgressPrinter,
    out: TextIO | None = None,
) -> tuple[list[str], RunSummary]:
    """The seed's five steps for each target in turn (the person switches WiFi for each).
    Returns the provisioning ids and the combined summary."""
    out = out or sys.stdout
    pids: list[str] = []
    total = RunSummary()
    for target in targets:
        jobs = add_each(queue, [target], home, printer)
        pids += [j.provisioning_id for j in jobs]
        summary = queue.run(home, password)
        total.done += summary.done
        total.failed += [p for p in summary.failed if p not in total.failed]
        for pid in summary.done:
            job = queue.station.registry.job(pid)
            if job is None:
                continue
            if printer.last_step(pid) is not Step.COMPLETE:
                printer.heading(Step.COMPLETE)
            print(
                f"✓ Device Connected\nDevice ID: {job.device.chip_id or 'unknown'}\n"
                f"Added to: {home.name}",
                file=out,
                flush=True,
            )
        if summary.cancelled or summary.paused:
            total.cancelled, total.paused = summary.cancelled, summary.paused
            break
    pids += [p for p in total.done + total.failed if p not in pids]
    return pids, total


def run_started() -> dt.datetime:
    return utcnow()
