"""WiFi errors. Each message is meant to be shown to an installer as it is: what happened
and what to do. Secrets never appear in them (the backends redact before formatting)."""

from __future__ import annotations

from station.errors import StationError


class WifiError(StationError):
    """Base of every WiFi control failure."""


class WifiUnavailable(WifiError):
    """This backend cannot work on this machine (tool missing, daemon not running, no adapter)."""


class WifiNotSupported(WifiError):
    """The backend works but cannot do this (e.g. the manual backend cannot scan)."""


class InvalidNetworkSettings(WifiError):
    """An SSID or passphrase no access point could accept (checked before any radio work)."""


class CommandError(WifiError):
    """A system tool (nmcli, netsh, networksetup, a DHCP client) failed in a way we do not know."""

    def __init__(self, message: str, *, tool: str = "", returncode: int | None = None):
        super().__init__(message)
        self.tool = tool
        self.returncode = returncode


class CommandTimeout(CommandError):
    """A system tool did not finish in time and was killed."""


class DaemonTimeout(WifiError):
    """The WiFi daemon (wpa_supplicant) did not answer on its control socket."""


class JoinError(WifiError):
    """Joining the target network failed; `ssid` says which one."""

    def __init__(self, message: str, *, ssid: str = ""):
        super().__init__(message)
        self.ssid = ssid


class NetworkNotFound(JoinError):
    """The access point is not in range (or not powered, or not in setup mode)."""


class WrongPassphrase(JoinError):
    """The access point rejected the passphrase."""


class JoinTimeout(JoinError):
    """The join did not complete within the timeout, without a more precise reason."""


class NoAddress(JoinError):
    """Associated, but the laptop got no IP address / gateway on that network (DHCP)."""


class DeviceUnreachable(JoinError):
    """Joined the network, but the device did not answer at the gateway address."""


class Cancelled(WifiError):
    """The operation was cancelled by the user (cancel token or a declined manual step)."""


class ReturnHomeError(WifiError):
    """The laptop could not be put back on its home network; the person must do it by hand."""
