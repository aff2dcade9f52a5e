"""The device commands of PROTOCOL.md section 2, as one declarative table.

One entry per command: its name, its arguments (type and range), what the firmware
answers on `<prefix>/event`, and the words a person sees (button label, help text, the
question asked before a command that cannot be undone). The table drives:

- the GUI's command controls (station/ui/device_detail.py: labels, tool tips, the
  interval spin box's range, the confirmation questions);
- the broker's `send_command` check (broker/server.py): nothing the firmware would
  refuse is ever published;
- the CLI (`station devices command NODE …`: sub-commands and argument parsing);
- a test that holds it against the firmware (firmware/validate.py and the command
  handler in firmware/homemode.py).

The idea comes from tdm's `tdmgr/tasmota/commands.py`: describe the commands once and
let every surface read the description, rather than each surface knowing them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from station.errors import StationError


class CommandError(StationError):
    """A command or argument the device would refuse; the message says which and why."""


@dataclass(frozen=True)
class Arg:
    """One integer argument (the only kind the firmware takes today)."""

    name: str
    help: str
    minimum: int
    maximum: int
    unit: str = ""
    # A credential: sent to the device, never written to a history or a log (redacted()).
    secret: bool = False

    def check(self, value: Any) -> int:
        # bool is an int in Python; the firmware refuses it (validate._is_int).
        if isinstance(value, bool) or not isinstance(value, int):
            raise CommandError(f"{self.name} must be a whole number, got {value!r}")
        if not self.minimum <= value <= self.maximum:
            unit = f" {self.unit}" if self.unit else ""
            raise CommandError(
                f"{self.name} must be {self.minimum} to {self.maximum}{unit}, got {value}"
            )
        return value


@dataclass(frozen=True)
class TextArg(Arg):
    """One text argument: minimum/maximum bound its length, pattern its whole form."""

    pattern: str = ""

    def check(self, value: Any) -> str:  # type: ignore[override]
        if not isinstance(value, str):
            raise CommandError(f"{self.name} must be text, got {value!r}")
        if not self.minimum <= len(value) <= self.maximum or not re.fullmatch(self.pattern, value):
            raise CommandError(f"{self.name}: {self.help}, got {value!r}")
        return value


@dataclass(frozen=True)
class DeviceCommand:
    name: str  # the wire name: {"cmd": name}
    label: str  # button text
    help: str  # one sentence: what the device does
    args: tuple[Arg, ...] = ()
    # Fields of the device's reply on <prefix>/event besides cmd and ok.
    replies: tuple[str, ...] = ()
    # Asked before sending (commands that end the device's current life); None: no question.
    confirm: str | None = None
    # After it, the device leaves the broker for a while (reboot) or for good (reset).
    disconnects: bool = False

    def payload(self, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON object to publish, with every argument checked; unknown ones refused."""
        values = dict(values or {})
        unknown = set(values) - {a.name for a in self.args}
        if unknown:
            raise CommandError(
                f"{self.name} takes no argument {', '.join(sorted(unknown))}"
                + (f" (it takes {', '.join(a.name for a in self.args)})" if self.args else "")
            )
        doc: dict[str, Any] = {"cmd": self.name}
        for arg in self.args:
            if arg.name not in values:
                raise CommandError(f"{self.name} needs {arg.name}: {arg.help}")
            doc[arg.name] = arg.check(values[arg.name])
        return doc


# firmware/validate.py INTERVAL_MIN / INTERVAL_MAX (a DHT11 cannot be read faster than
# once a second); tests/core/test_commands.py keeps the two equal.
INTERVAL = Arg("value", "seconds between readings", 1, 3600, "s")

# firmware/ota.py check(): what the device accepts in an ota command (docs/OTA.md).
OTA_ARGS = (
    TextArg(
        "url",
        "the manifest's http:// URL (http://host[:port]/digest/manifest.json)",
        8,
        200,
        pattern=r"http://[^/\s:]+(:[0-9]{1,5})?/[\x21-\x7e]*",
    ),
    TextArg(
        "sha256", "the manifest's SHA-256, 64 lower-case hex digits", 64, 64, pattern="[0-9a-f]{64}"
    ),
    TextArg(
        "version",
        "dotted numbers such as 1.1.0",
        3,
        40,
        pattern=r"\d{1,4}(\.\d{1,4}){1,3}([-+][0-9A-Za-z.]{1,20})?",
    ),
)

# firmware/homemode.py _set_broker: the new broker's address and the device's login there
# (validate.mqtt's rules; the device keeps its topic prefix and node name).
BROKER_ARGS = (
    TextArg(
        "broker",
        "the broker's host name or IPv4 address on the home network",
        1,
        253,
        pattern=r"[A-Za-z0-9.-]+",
    ),
    Arg("port", "the broker's MQTT port", 1, 65535),
    TextArg("username", "the device's MQTT user name there", 1, 128, pattern=r"[^\x00]+"),
    TextArg(
        "password",
        "the device's MQTT password (token) there",
        1,
        256,
        pattern=r"[^\x00]+",
        secret=True,
    ),
)

COMMANDS: dict[str, DeviceCommand] = {
    c.name: c
    for c in (
        DeviceCommand("identify", "Identify", "Blink the device's LED so you can find it."),
        DeviceCommand(
            "set_interval",
            "Set interval",
            "Set how often the device sends its readings (kept across reboots).",
            args=(INTERVAL,),
            replies=("value",),
        ),
        DeviceCommand(
            "reboot",
            "Reboot",
            "Restart the device; it reconnects with the settings it has.",
            disconnects=True,
        ),
        DeviceCommand(
            "factory_reset",
            "Factory reset",
            "Erase the device's WiFi and MQTT settings; it returns to setup mode.",
            confirm=(
                "The device erases its WiFi and MQTT settings and returns to setup mode "
                "(its setup network appears again)."
            ),
            disconnects=True,
        ),
        DeviceCommand(
            "ota",
            "Update firmware",
            "Download, verify and boot a new firmware (events: downloading, verifying, "
            "rebooting, failed).",
            args=OTA_ARGS,
            disconnects=True,
        ),
        DeviceCommand(
            "set_broker",
            "Move to broker",
            "Try another broker; stay there once it takes the login, else keep the old "
            "one (event: set_broker failed, with the reason).",
            args=BROKER_ARGS,
            disconnects=True,
        ),
    )
}


def redacted(doc: Mapping[str, Any]) -> dict[str, Any]:
    """`doc` with every secret argument of its command replaced, for a history or a log."""
    spec = COMMANDS.get(str(doc.get("cmd")))
    secret = {a.name for a in spec.args if a.secret} if spec is not None else set()
    return {k: ("<hidden>" if k in secret else v) for k, v in doc.items()}


# What the firmware answers when it refuses (firmware/homemode.py _on_message).
REFUSALS = ("bad_json", "bad_value", "unknown_cmd")


def command(name: str) -> DeviceCommand:
    try:
        return COMMANDS[name]
    except KeyError:
        raise CommandError(
            f"unknown device command {name!r} (known: {', '.join(COMMANDS)})"
        ) from None


def build(name: str, **values: Any) -> dict[str, Any]:
    """The checked payload for `name`: build("set_interval", value=5)."""
    return command(name).payload(values)


def check(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Check a payload built elsewhere ({"cmd": ..., ...}); returns a clean copy."""
    name = doc.get("cmd")
    if not isinstance(name, str):
        raise CommandError("a device command needs a 'cmd' name")
    return build(name, **{k: v for k, v in doc.items() if k != "cmd"})


def describe_reply(doc: Mapping[str, Any]) -> str:
    """One line for a reply on <prefix>/event, in the table's words."""
    name = doc.get("cmd")
    cmd = COMMANDS.get(name) if isinstance(name, str) else None
    label = cmd.label if cmd else str(name)
    if doc.get("ok"):
        extra = ", ".join(f"{k} {doc[k]}" for k in (cmd.replies if cmd else ()) if k in doc)
        return f"{label}: done" + (f" ({extra})" if extra else "")
    why = doc.get("detail") or doc.get("error") or "no reason given"
    return f"{label}: refused by the device ({why})"
