"""`station report HOME --csv F --pdf F`: a home's handover report (station/handover.py,
the PDF by station/ui/handover_pdf.py), for the installer to hand to the customer."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from station.cli.common import existing_registry, load_settings, open_registry
from station.errors import StationError
from station.handover import HandoverReport, check_writable, file_stem, gather, write_csv

if TYPE_CHECKING:
    from station.registry import Home, Registry


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="a home's handover report: devices, where they are, that they work (CSV, PDF)",
        description="Write HOME's handover report: every device with its name, location, "
        "node name, chip id, MAC, firmware, signal, first and last reading, broker, "
        "provisioning time and attempts, failures and their reasons. The PDF (A4) adds a "
        "page of QR labels, one per device (chip id + node name). No secret is included.",
    )
    p.add_argument("home", metavar="HOME", help="the home's name or id (see `station homes`)")
    p.add_argument("--csv", metavar="FILE", help="write the CSV (UTF-8, one row per device)")
    p.add_argument("--pdf", metavar="FILE", help="write the printable PDF with QR labels")
    p.set_defaults(func=run, log_level=logging.WARNING)


def station_broker_address(settings) -> str:
    """What devices are told for this station's broker: the advertised host (or this
    computer's LAN address) and the broker port; "address not detected" without one."""
    host = settings.broker.advertise_host
    if not host:
        from station.netinfo import lan_address

        try:
            host = lan_address()
        except StationError:
            return f"port {settings.broker.port}, address not detected"
    return f"{host}:{settings.broker.port}"


def run(args: argparse.Namespace) -> int:
    if not args.csv and not args.pdf:
        raise StationError("say what to write: --csv FILE and/or --pdf FILE")
    paths = [check_writable(p) for p in (args.csv, args.pdf) if p]
    if len(paths) == 2 and paths[0].resolve() == paths[1].resolve():
        raise StationError("--csv and --pdf name the same file")
    settings = load_settings(args)
    if not existing_registry(args, settings):
        raise StationError(
            f"no home {args.home!r}: there is no registry yet (nothing provisioned here)"
        )
    registry = open_registry(args, settings)
    try:
        home = _home(registry, args.home)
        report = gather(registry, home, station_broker=station_broker_address(settings))
        for path in write(report, csv_path=args.csv, pdf_path=args.pdf):
            print(path)
        print(f"{report.home}: {report.summary}")
        return 0
    finally:
        registry.close()


def _home(registry: Registry, key: str) -> Home:
    """A home by name, else by id (a name that is digits wins over the id)."""
    from station.registry import RegistryError

    try:
        return registry.home(key)
    except RegistryError:
        if key.isdigit():
            try:
                return registry.home(int(key))
            except RegistryError:
                pass
    names = ", ".join(h.name for h in registry.homes()) or "none yet"
    raise StationError(f"no home {key!r} (by name or id); the homes are: {names}")


def write(
    report: HandoverReport,
    *,
    csv_path: str | Path | None = None,
    pdf_path: str | Path | None = None,
) -> list[Path]:
    """Write the CSV and/or the PDF; returns the paths written."""
    written = []
    if csv_path:
        written.append(write_csv(report, check_writable(csv_path)))
    if pdf_path:
        from station.ui.handover_pdf import write_pdf

        path = check_writable(pdf_path)
        write_pdf(report, path)
        written.append(path)
    return written


def write_home_report(registry: Registry, home: Home, folder: str, station_broker: str) -> None:
    """`station provision --demo N --report DIR`: DIR/<home>-handover.csv and .pdf of the
    demo batch, paths printed (written before the demo's own registry goes away)."""
    out = Path(folder).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StationError(f"cannot make the report folder {out}: {exc.strerror}") from None
    report = gather(registry, home, station_broker=station_broker)
    stem = file_stem(report.home)
    paths = write(report, csv_path=out / f"{stem}.csv", pdf_path=out / f"{stem}.pdf")
    print("Handover report: " + ", ".join(str(p) for p in paths), flush=True)


def report_dir(text: str) -> str:
    """argparse type of `provision --report DIR`: a folder that exists or can be made,
    checked before the batch starts (not after it)."""
    path = Path(text).expanduser()
    parent = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    import os

    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {parent}: permission denied")
    return text
