"""Client for a device's setup API (PROTOCOL.md section 1), as the seed's step 3 uses it.

    client = DeviceClient(wifi.device_url(), ap_ssid="esp32-dht11-Setup-EF5678")
    info = client.info()
    client.send_wifi("MyHomeWiFi", password)
    client.wait_for_trial(30)          # raises WrongWifiPassword, HomeNetworkNotFound, ...
    client.send_mqtt("192.168.29.91", 1883, "home/esp32_dht11_001", "esp32_dht11_001",
                     username="esp32_dht11_001", password=token)
    client.restart()

The base URL comes from the WiFi backend ("http://192.168.4.1" on a real device's AP,
a loopback address for a simulated one); nothing here knows an address.

Retries, and why only these:
- GETs are resent after a connection failure, a timeout or a 503 (the firmware answers
  503 "busy" when five connections are open).
- POST /api/wifi and /api/mqtt are idempotent with an identical body (the device stores
  the same config again; /api/wifi restarts the same trial), so they are resent the same way.
- POST /api/restart is sent exactly once. If no connection could be made, nothing
  reached the device: DeviceUnreachable. If the response was lost after sending, the
  reboot is confirmed by watching the API go away (a reboot takes the AP and the HTTP
  server down with the chip); if it keeps answering, RestartUnconfirmed tells the caller,
  who may decide to restart again knowingly.

Every answer is checked against the protocol (status, content type, JSON shape, field
types, enumerations, chip id and MAC format). Secrets (WiFi password, MQTT token) are
never logged and never appear in an exception message, even if a device echoes them.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from urllib3.exceptions import ConnectTimeoutError

from station.errors import StationError

log = logging.getLogger(__name__)

T = TypeVar("T")

SEED_AP_PREFIX = "esp32-dht11-Setup"
CHIP_ID = re.compile(r"^[0-9A-Fa-f]{12}$")
MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
DEVICE_STATES = frozenset({"setup", "connecting", "running"})
WIFI_STATES = frozenset(
    {"idle", "connecting", "connected", "wrong_password", "no_ap_found", "failed"}
)
FINAL_WIFI = frozenset({"connected", "wrong_password", "no_ap_found", "failed"})
BROKER_STATES = frozenset({"unknown", "reachable", "unreachable"})
MAX_RESPONSE_BYTES = 64 * 1024  # the device's answers are a few hundred bytes
RETRY_PAUSE_S = 0.2
# How long wait_for_trial tolerates a silent API: an ESP32 in AP+STA mode may drop
# its AP clients for a moment while the station side hops channels.
UNREACHABLE_GRACE_S = 10.0


# --- errors ------------------------------------------------------------------------


class DeviceError(StationError):
    """Base of every device-client failure. `url` is where it happened (no secrets)."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class DeviceUnreachable(DeviceError):
    """No HTTP answer at all: not on the device's AP, device off or rebooting (seed scenario 2)."""


class DeviceBusy(DeviceError):
    """The device answered 503: it is serving too many connections."""


class DeviceRejected(DeviceError):
    """The device refused the request (4xx) with {"error", "detail"[, "field"]}."""

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status: int,
        code: str,
        detail: str,
        field: str | None = None,
    ) -> None:
        super().__init__(message, url=url)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field


class DeviceProtocolError(DeviceError):
    """Something answered, but not as the protocol says (wrong device, or a bug)."""


class RestartUnconfirmed(DeviceError):
    """POST /api/restart lost its response and the device kept answering afterwards."""


class Cancelled(DeviceError):
    """The caller's cancel event was set while waiting."""


class TrialError(DeviceError):
    """The device's trial connection to the home network did not succeed. `status` is
    the last /api/status answer."""

    def __init__(self, message: str, *, url: str = "", status: TrialStatus | None = None) -> None:
        super().__init__(message, url=url)
        self.status = status


class WrongWifiPassword(TrialError):
    pass


class HomeNetworkNotFound(TrialError):
    pass


class TrialFailed(TrialError):
    pass


class TrialTimeout(TrialError):
    pass


class BrokerUnreachable(TrialError):
    """The device joined the home network but could not open a TCP connection to the broker."""


# --- answers -----------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    chip_id: str  # 12 upper-case hex digits
    model: str
    firmware: str
    mac: str  # upper-case AA:BB:CC:DD:EE:FF
    state: str  # setup | connecting | running
    wifi_configured: bool
    mqtt_configured: bool

    @property
    def ap_ssid(self) -> str:
        """The setup AP this device announces (PROTOCOL.md section 1)."""
        return f"{SEED_AP_PREFIX}-{self.chip_id[-6:]}"


@dataclass(frozen=True)
class HeardNetwork:
    ssid: str
    rssi: int
    secure: bool


@dataclass(frozen=True)
class TrialStatus:
    wifi: str  # idle | connecting | connected | wrong_password | no_ap_found | failed
    ip: str | None
    broker: str  # unknown | reachable | unreachable
    # Why the broker check failed, when the firmware knows more than "unreachable"
    # (firmware/README.md): a code such as tls_untrusted, and a sentence for a person.
    broker_error: str | None = None
    broker_detail: str | None = None

    @property
    def final(self) -> bool:
        return self.wifi in FINAL_WIFI


# --- the client --------------------------------------------------------------------


class _NotSent(Exception):
    """The request provably never reached the device (no connection was made)."""


class _Lost(Exception):
    """The request may have reached the device, but no usable response came back."""


class DeviceClient:
    def __init__(
        self,
        base_url: str,
        *,
        ap_ssid: str | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        session: requests.Session | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if timeout <= 0 or retries < 0:
            raise ValueError("timeout must be positive and retries non-negative")
        self.base_url = base_url.rstrip("/")
        self.ap_ssid = ap_ssid
        self.timeout = timeout
        self.retries = retries
        self._own_session = session is None
        if session is None:
            session = requests.Session()
            # The device is on a link-local AP: an HTTP(S)_PROXY from the environment
            # (common on company laptops) would send 192.168.4.1 to the proxy instead.
            session.trust_env = False
        self.session = session
        # Remembered (never the secrets) so trial errors can name the network and broker.
        self._ssid: str | None = None
        self._broker: tuple[str, int] | None = None

    def __repr__(self) -> str:
        return f"DeviceClient({self.base_url!r}, ap_ssid={self.ap_ssid!r})"

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoints ---------------------------------------------------------------------

    def info(self) -> DeviceInfo:
        """GET /api/info (seed step 3: the real chip id)."""
        obj = self._call("GET", "/api/info")
        chip = self._field(obj, "chip_id", str, "/api/info")
        mac = self._field(obj, "mac", str, "/api/info")
        state = self._field(obj, "state", str, "/api/info")
        if not CHIP_ID.match(chip):
            raise self._malformed("/api/info", f"chip_id {chip!r} is not 12 hex digits")
        if not MAC.match(mac):
            raise self._malformed("/api/info", f"mac {mac!r} is not AA:BB:CC:DD:EE:FF")
        if state not in DEVICE_STATES:
            raise self._malformed("/api/info", f"unknown state {state!r}")
        info = DeviceInfo(
            chip_id=chip.upper(),
            model=self._field(obj, "model", str, "/api/info"),
            firmware=self._field(obj, "firmware", str, "/api/info"),
            mac=mac.upper(),
            state=state,
            wifi_configured=self._field(obj, "wifi_configured", bool, "/api/info"),
            mqtt_configured=self._field(obj, "mqtt_configured", bool, "/api/info"),
        )
        if self.ap_ssid is None:
            self.ap_ssid = info.ap_ssid  # better "cannot reach" messages from now on
        return info

    def scan(self) -> list[HeardNetwork]:
        """GET /api/scan: the networks the device itself hears, strongest first."""
        obj = self._call("GET", "/api/scan")
        nets = obj.get("networks")
        if not isinstance(nets, list):
            raise self._malformed("/api/scan", "'networks' is not a list")
        out: list[HeardNetwork] = []
        for i, n in enumerate(nets):
            if not isinstance(n, dict):
                raise self._malformed("/api/scan", f"network {i} is not an object")
            ssid = self._field(n, "ssid", str, "/api/scan")
            if not 1 <= len(ssid.encode("utf-8")) <= 32:
                raise self._malformed("/api/scan", f"network {i} has an SSID of bad length")
            out.append(
                HeardNetwork(
                    ssid=ssid,
                    rssi=self._field(n, "rssi", int, "/api/scan"),
                    secure=self._field(n, "secure", bool, "/api/scan"),
                )
            )
        return out

    def send_wifi(self, ssid: str, password: str) -> None:
        """POST /api/wifi: store the home network and start the trial connection.

        Values are checked by the device (DeviceRejected with `field` when refused).
        """
        _require_str(ssid=ssid, password=password)
        self._ssid = ssid
        self._call_ok("POST", "/api/wifi", {"ssid": ssid, "password": password}, secrets=[password])

    def status(self) -> TrialStatus:
        """GET /api/status: the trial connection and broker check as they stand."""
        obj = self._call("GET", "/api/status")
        wifi = self._field(obj, "wifi", str, "/api/status")
        broker = self._field(obj, "broker", str, "/api/status")
        if "ip" not in obj:
            raise self._malformed("/api/status", "'ip' is missing")
        ip = obj["ip"]
        if wifi not in WIFI_STATES:
            raise self._malformed("/api/status", f"unknown wifi state {wifi!r}")
        if broker not in BROKER_STATES:
            raise self._malformed("/api/status", f"unknown broker state {broker!r}")
        if ip is not None:
            if not isinstance(ip, str):
                raise self._malformed("/api/status", "'ip' is neither a string nor null")
            try:
                ipaddress.IPv4Address(ip)
            except ValueError:
                raise self._malformed("/api/status", f"ip {ip!r} is not an IPv4 address") from None
        error, detail = obj.get("broker_error"), obj.get("broker_detail")
        return TrialStatus(
            wifi=wifi,
            ip=ip,
            broker=broker,
            broker_error=_printable(error, 40),
            broker_detail=_printable(detail, 300),
        )

    def wait_for_trial(
        self,
        timeout: float,
        poll: float = 0.5,
        cancel: threading.Event | None = None,
        *,
        broker: bool | None = None,
    ) -> TrialStatus:
        """Poll /api/status until the trial result is final, and when the device is
        connected, until its broker check has settled.

        broker: wait for the broker check (True), do not (False), or ask /api/info
        whether an MQTT config is stored (None). Returns the connected status with the
        broker reachable (or unknown when not waited for); raises WrongWifiPassword,
        HomeNetworkNotFound, TrialFailed, BrokerUnreachable, TrialTimeout, Cancelled.
        """
        deadline = time.monotonic() + timeout
        silent_since: float | None = None
        last: TrialStatus | None = None
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled(
                    "Cancelled while waiting for the device's WiFi test.", url=self.base_url
                )
            try:
                last = self.status()
                silent_since = None
            except (DeviceUnreachable, DeviceBusy):
                now = time.monotonic()
                silent_since = silent_since or now
                if now - silent_since > UNREACHABLE_GRACE_S or now > deadline:
                    raise
                last = None
            if last is not None:
                if last.wifi == "idle":
                    raise TrialError(
                        "The device has no home WiFi settings yet, so it is not testing a "
                        "network. Send the WiFi settings first.",
                        url=self.base_url,
                        status=last,
                    )
                if last.final:
                    if last.wifi != "connected":
                        raise self._trial_error(last)
                    if broker is None:
                        broker = self.info().mqtt_configured
                    if not broker or last.broker == "reachable":
                        return last
                    if last.broker == "unreachable":
                        raise self._broker_error(last)
            if time.monotonic() > deadline:
                raise TrialTimeout(
                    f"The device was still testing {self._network()} after {timeout:g} s"
                    + (" (checking the MQTT broker)" if last and last.final else "")
                    + ". Check that the network is in range of the device, then try again.",
                    url=self.base_url,
                    status=last,
                )
            if cancel is not None:
                cancel.wait(poll)
            else:
                time.sleep(poll)

    def send_mqtt(
        self,
        broker: str,
        port: int,
        topic_prefix: str,
        node_name: str,
        username: str | None = None,
        password: str | None = None,
        *,
        ca: str | None = None,
    ) -> None:
        """POST /api/mqtt: the seed's body, plus username/password when given, and
        `tls: true` with the CA certificate (PEM) the device checks the broker with."""
        _require_str(broker=broker, topic_prefix=topic_prefix, node_name=node_name)
        if not isinstance(port, int) or isinstance(port, bool):
            raise TypeError("port must be an int")
        body: dict[str, Any] = {
            "broker": broker,
            "port": port,
            "topic_prefix": topic_prefix,
            "node_name": node_name,
        }
        if username is not None:
            _require_str(username=username)
            body["username"] = username
        if password is not None:
            _require_str(password=password)
            body["password"] = password
        if ca is not None:
            _require_str(ca=ca)
            body["tls"], body["ca"] = True, ca
        self._broker = (broker, port)
        self._call_ok("POST", "/api/mqtt", body, secrets=[password] if password else [])

    def restart(self, *, confirm_timeout: float = 5.0) -> None:
        """POST /api/restart, exactly once (see the module docstring).

        Returns when the device said {"ok": true} (it reboots about 1 s later) or,
        if that answer was lost, once the API has gone away within confirm_timeout.
        """
        path = "/api/restart"
        try:
            resp = self._send("POST", path, None)
        except _NotSent:
            raise self._unreachable(path) from None
        except _Lost as lost:
            log.info(
                "device %s: restart sent, answer lost (%s); watching it go", self.base_url, lost
            )
            self._confirm_reboot(confirm_timeout)
            return
        self._check_ok(path, self._decode(path, resp, []), [])

    # -- restart confirmation ----------------------------------------------------------

    def _confirm_reboot(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe_timeout = min(self.timeout, 1.0)
        while time.monotonic() < deadline:
            try:
                self.session.get(self._url("/api/info"), timeout=probe_timeout).close()
            except requests.RequestException:
                log.info("device %s: API gone after restart: rebooting", self.base_url)
                return
            time.sleep(0.1)
        raise RestartUnconfirmed(
            f"The device did not confirm the restart: its answer was lost and it kept "
            f"answering for {timeout:g} s afterwards. It may not have received the "
            "request. Restart it again, or unplug it for a moment.",
            url=self._url("/api/restart"),
        )

    # -- transport ---------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _call_ok(self, method: str, path: str, body: Any, *, secrets: Iterable[str]) -> None:
        secrets = [s for s in secrets if s]
        self._check_ok(path, self._call(method, path, body, secrets=secrets), secrets)

    def _check_ok(self, path: str, obj: dict[str, Any], secrets: list[str]) -> None:
        if obj.get("ok") is not True:
            raise self._malformed(path, 'the answer is not {"ok": true}', secrets)

    def _call(
        self, method: str, path: str, body: Any = None, *, secrets: Iterable[str] = ()
    ) -> dict[str, Any]:
        """One idempotent request with retries; returns the decoded JSON object."""
        secrets = list(secrets)
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                resp = self._send(method, path, body)
            except (_NotSent, _Lost) as exc:
                log.debug("device %s%s: attempt %d failed: %s", self.base_url, path, attempt, exc)
                if attempt == attempts:
                    raise self._unreachable(path) from None
                time.sleep(RETRY_PAUSE_S * attempt)
                continue
            try:
                return self._decode(path, resp, secrets)
            except DeviceBusy:
                if attempt == attempts:
                    raise
                time.sleep(RETRY_PAUSE_S * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, path: str, body: Any) -> requests.Response:
        """One HTTP exchange. The body is read here, within MAX_RESPONSE_BYTES."""
        url = self._url(path)
        # Raw UTF-8, not \u escapes: MicroPython's json turns an escaped surrogate pair
        # (an emoji in an SSID) into CESU-8 bytes, i.e. the wrong network name.
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            resp = self.session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=(self.timeout, self.timeout),
                stream=True,
                allow_redirects=False,
            )
        except requests.ConnectTimeout as exc:
            raise _NotSent(type(exc).__name__) from None
        except requests.ConnectionError as exc:
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            if isinstance(reason, ConnectTimeoutError):  # includes NewConnectionError (refused)
                raise _NotSent(type(reason).__name__) from None
            raise _Lost(type(exc).__name__) from None
        except requests.RequestException as exc:  # read timeout and the like: maybe sent
            raise _Lost(type(exc).__name__) from None
        try:
            content = b""
            for chunk in resp.iter_content(4096):
                content += chunk
                if len(content) > MAX_RESPONSE_BYTES:
                    raise self._malformed(
                        path, f"the answer is larger than {MAX_RESPONSE_BYTES} bytes"
                    )
            resp._content = content
        except requests.RequestException as exc:
            raise _Lost(type(exc).__name__) from None
        finally:
            resp.close()
        log.debug("device %s %s -> %d", method, url, resp.status_code)
        return resp

    def _decode(self, path: str, resp: requests.Response, secrets: list[str]) -> dict[str, Any]:
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        obj: Any = None
        if ctype == "application/json":
            try:
                obj = json.loads(resp.content.decode("utf-8"))
            except (UnicodeError, ValueError):
                obj = None
        status = resp.status_code
        if status == 200:
            if not isinstance(obj, dict):
                what = "JSON" if ctype == "application/json" else f"{ctype or 'no content type'}"
                raise self._malformed(
                    path, f"HTTP 200 with {what} that is not a JSON object", secrets
                )
            return obj
        error = _error_body(obj)
        if status == 503 and error:
            raise DeviceBusy(
                "The device is busy serving other connections. Wait a moment and try again.",
                url=self._url(path),
            )
        if 400 <= status < 500 and error:
            code, detail = _redact(error[0], secrets), _redact(error[1], secrets)
            field = _redact(error[2], secrets) if error[2] else error[2]
            raise DeviceRejected(
                _rejected_message(path, status, code, detail, field),
                url=self._url(path),
                status=status,
                code=code,
                detail=detail,
                field=field,
            )
        raise self._malformed(path, f"unexpected HTTP {status}", secrets)

    # -- messages ----------------------------------------------------------------------

    def _ap_name(self) -> str:
        return self.ap_ssid or f"{SEED_AP_PREFIX}-…"

    def _unreachable(self, path: str) -> DeviceUnreachable:
        return DeviceUnreachable(
            f"Cannot reach device. Make sure you're connected to {self._ap_name()} "
            f"(the device's own WiFi; its LED is solid while it waits for setup), then try "
            f"again. (No answer from {self.base_url}.)",
            url=self._url(path),
        )

    def _malformed(self, path: str, what: str, secrets: Iterable[str] = ()) -> DeviceProtocolError:
        return DeviceProtocolError(
            f"Something answered at {self.base_url}, but not like an esp32-dht11 in setup "
            f"mode ({path}: {_redact(what, secrets)}). Make sure you're connected to "
            f"{self._ap_name()} and that the device runs the station's firmware.",
            url=self._url(path),
        )

    def _field(self, obj: Mapping[str, Any], name: str, kind: type[T], path: str) -> T:
        value = obj.get(name)
        # bool is an int subclass: an int field must not take true/false.
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        got = "missing" if name not in obj else type(value).__name__
        raise self._malformed(path, f"'{name}' should be {kind.__name__}, got {got}")

    def _network(self) -> str:
        return repr(self._ssid) if self._ssid else "the home network"

    def _trial_error(self, s: TrialStatus) -> TrialError:
        net, url = self._network(), self.base_url
        if s.wifi == "wrong_password":
            return WrongWifiPassword(
                f"The device could not join {net}: the WiFi password is wrong. "
                "Check the home network's password and send it again.",
                url=url,
                status=s,
            )
        if s.wifi == "no_ap_found":
            return HomeNetworkNotFound(
                f"The device cannot find {net}. Check the network name (it is case-sensitive), "
                "that it is a 2.4 GHz network, and that the device is in its range.",
                url=url,
                status=s,
            )
        return TrialFailed(
            f"The device could not connect to {net} (no address, or the access point refused "
            "it). Check the router, move the device closer, and try again.",
            url=url,
            status=s,
        )

    def _broker_error(self, s: TrialStatus) -> BrokerUnreachable:
        where = f"{self._broker[0]}:{self._broker[1]}" if self._broker else "the MQTT broker"
        if s.broker_error and s.broker_error.startswith("tls_"):
            what = s.broker_detail or f"TLS to {where} failed ({s.broker_error})"
            return BrokerUnreachable(
                f"The device joined {self._network()} and reached the MQTT broker, but its "
                f"TLS connection failed: {what}. {TLS_ADVICE.get(s.broker_error, TLS_ADVICE[''])}",
                url=self.base_url,
                status=s,
            )
        return BrokerUnreachable(
            f"The device joined {self._network()} but cannot reach the station's MQTT broker "
            f"at {where} from there. Check that this computer is on that network with this "
            "address and that its firewall lets the broker's port through.",
            url=self.base_url,
            status=s,
        )


# --- helpers -----------------------------------------------------------------------

# What to do about a TLS failure the device reports (firmware/tlsfail.py's codes).
TLS_ADVICE = {
    "tls_untrusted": "Give the home the CA that signed the broker's certificate "
    "(`station homes edit HOME --ca FILE`).",
    "tls_hostname": "The broker's certificate must name the address the devices are given; "
    "use that name in the home's broker URL, or a certificate that names it.",
    "tls_expired": "Renew the broker's certificate.",
    "tls_not_yet_valid": "Check the broker's certificate dates, and that the device can "
    "reach an NTP server (its clock starts at 2000).",
    "tls_bad_ca": "The CA certificate the home holds cannot be read by the device; give "
    "it again (`station homes edit HOME --ca FILE`).",
    "tls_handshake": "Check that the broker speaks TLS on that port (mqtts://, usually 8883).",
    "": "Check the broker's certificate and the CA the home holds.",
}


def _printable(value: object, limit: int) -> str | None:
    """An optional text field of the device's, kept only if it is a short plain line."""
    if not isinstance(value, str) or not value:
        return None
    text = "".join(c for c in value if c.isprintable())[:limit]
    return text or None


_FIELD_WORDS = {
    "ssid": "home WiFi name",
    "password": "password",
    "broker": "broker address",
    "port": "broker port",
    "topic_prefix": "topic prefix",
    "node_name": "node name",
    "username": "MQTT user name",
}


def _rejected_message(path: str, status: int, code: str, detail: str, field: str | None) -> str:
    if field:
        what = _FIELD_WORDS.get(field, field)
        if field == "password":
            what = "home WiFi password" if path == "/api/wifi" else "MQTT password"
        return f"The device refused the {what}: {detail}. Correct it and send it again."
    if status == 413:
        return f"The device refused the request as too large ({detail})."
    return f"The device refused {path} (HTTP {status} {code}: {detail})."


def _error_body(obj: Any) -> tuple[str, str, str | None] | None:
    if not isinstance(obj, dict):
        return None
    code, detail, field = obj.get("error"), obj.get("detail", ""), obj.get("field")
    if not isinstance(code, str) or not code or not isinstance(detail, str):
        return None
    if field is not None and not isinstance(field, str):
        return None
    return code, detail, field


def _require_str(**values: object) -> None:
    for name, value in values.items():
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str")


def _redact(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text
