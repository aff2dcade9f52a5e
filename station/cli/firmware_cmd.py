"""`station firmware build|bundle|deploy|probe`: the firmware's file set, an update
bundle of it, putting it on a board, and measuring one."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from station.errors import StationError
from station.sim import firmware

DEFAULT_OUT = Path("firmware-build")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "firmware", help="build the ESP32 firmware or deploy it to a board"
    )
    sub = parser.add_subparsers(dest="firmware_command", metavar="ACTION", required=True)

    build = sub.add_parser("build", help="compile the deployable file set (.mpy + boot.py/main.py)")
    build.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    build.add_argument(
        "--board",
        choices=firmware.BOARDS,
        default="esp32",
        help="esp32 (default) or host (adds the simulated board for the unix port)",
    )
    _passphrase_option(build)
    build.set_defaults(func=run_build)

    bundle = sub.add_parser(
        "bundle",
        help="build a firmware bundle for `station fleet update --bundle` (docs/OTA.md)",
        description="Build the firmware as VERSION into OUT/VERSION/ with its manifest (each "
        "file's size and SHA-256) and the manifest's own hash: a release to check once "
        "and roll out to many homes.",
    )
    bundle.add_argument("out", type=Path, metavar="OUT", help="folder to build it in")
    bundle.add_argument("--version", required=True, metavar="X.Y.Z", help="its version")
    bundle.add_argument(
        "--board",
        choices=firmware.BOARDS,
        default="esp32",
        help="esp32 (default) or host (the simulated fleet of `station sim`)",
    )
    bundle.add_argument(
        "--ap-passphrase",
        help="WPA2 passphrase of the setup AP (default: the station's setting, which the "
        "devices it provisioned run)",
    )
    bundle.set_defaults(func=run_bundle)

    deploy = sub.add_parser(
        "deploy", help="copy the firmware to a board with mpremote and reset it"
    )
    deploy.add_argument(
        "--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB0 or COM3"
    )
    deploy.add_argument(
        "--build-dir", type=Path, help="an existing build (default: build now into a temp folder)"
    )
    _passphrase_option(deploy)
    deploy.add_argument(
        "--erase-config", action="store_true", help="also delete the stored WiFi/MQTT config"
    )
    deploy.add_argument(
        "--no-reset", dest="reset", action="store_false", help="do not reset the board afterwards"
    )
    deploy.add_argument(
        "--mpremote", help="path of the mpremote program (default: the one installed)"
    )
    deploy.set_defaults(func=run_deploy)

    probe = sub.add_parser(
        "probe",
        help="measure a real board (the firmware deployed on it): heap free, start-up "
        "time, a WiFi trial's result and its raw status codes (docs/HARDWARE.md)",
    )
    probe.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB0")
    probe.add_argument("--ssid", help="a WiFi network for the trial (none: no trial)")
    probe.add_argument(
        "--password-stdin", action="store_true", help="read the trial's WiFi password from stdin"
    )
    probe.add_argument("--json", action="store_true", help="the raw figures as one JSON object")
    probe.add_argument(
        "--mpremote", help="path of the mpremote program (default: the one installed)"
    )
    probe.set_defaults(func=run_probe)


def _passphrase_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ap-passphrase",
        default=firmware.DEFAULT_PASSPHRASE,
        help="WPA2 passphrase of the setup AP (default: %(default)s, the seed's)",
    )


def run_build(args: argparse.Namespace) -> int:
    result = firmware.build(args.out, board=args.board, ap_passphrase=args.ap_passphrase)
    print(f"built {len(result.files)} files for {args.board} in {result.out}")
    for f in result.files:
        print(f"  {f.as_posix()}")
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    from station.cli.common import load_settings
    from station.fleet.bundle import make_bundle

    firmware.check_version(args.version)
    passphrase = args.ap_passphrase or load_settings(args).provisioning.setup_passphrase
    made = make_bundle(args.out, version=args.version, board=args.board, ap_passphrase=passphrase)
    print(
        f"firmware {made.version} for {args.board}: {len(made.manifest['files'])} files, "
        f"{made.size} bytes, manifest sha256 {made.digest}\nin {made.root}\n"
        f"roll it out: station fleet update --bundle {made.root} --home NAME"
    )
    return 0


def run_deploy(args: argparse.Namespace) -> int:
    if args.build_dir is not None:
        return _deploy(args, args.build_dir)
    with tempfile.TemporaryDirectory(prefix="station-fw-") as tmp:
        firmware.build(Path(tmp), board="esp32", ap_passphrase=args.ap_passphrase)
        return _deploy(args, Path(tmp))


def _deploy(args: argparse.Namespace, build_dir: Path) -> int:
    firmware.deploy(
        args.port,
        build_dir,
        reset=args.reset,
        erase_config=args.erase_config,
        mpremote=args.mpremote,
    )
    print(f"deployed {build_dir} to {args.port}" + (" and reset it" if args.reset else ""))
    return 0


def run_probe(args: argparse.Namespace) -> int:
    import sys

    from station.sim import board_probe

    password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else ""
    if args.password_stdin and not args.ssid:
        raise StationError("--password-stdin is for the trial: give the network with --ssid")
    found = board_probe.run(args.port, args.ssid, password, args.mpremote)
    print(board_probe.as_json(found) if args.json else board_probe.report(found))
    return 0
