# The simulated board for the MicroPython unix port (station sim-device).
#
# Environment (set by the launcher, station/sim/device.py):
#   ESP32SIM_AIR      the shared air folder (format: station/sim/air.py)
#   ESP32SIM_CHIP_ID  12 upper-case hex digits, this device's identity
#   ESP32SIM_FLASH    the device's flash folder (config.json lives here)
#   ESP32SIM_TIMING   JSON object overriding factory.TIMING, plus "assoc_ms":
#                     how long joining a network takes (default 1500)
#   ESP32SIM_API_HOST loopback address serving the "192.168.4.1" API (127.0.0.1)
#   ESP32SIM_API_PORT fixed port for it; default: a free random one
# A reboot is the process exiting with REBOOT_EXIT; the launcher starts it again.
import asyncio
import json
import math
import os
import random
import time

from board import host_air as air

REBOOT_EXIT = 3
_EADDRINUSE = 98
_EHOSTUNREACH = 113
_ETIMEDOUT = 110


def _hex_ssid(ssid):
    return "".join("%02x" % b for b in ssid.encode())


class Board:
    platform = "host"

    def __init__(self):
        where = os.getenv("ESP32SIM_AIR") or ""
        chip = os.getenv("ESP32SIM_CHIP_ID") or ""
        if not where or len(chip) != 12:
            raise ValueError("host board needs ESP32SIM_AIR and a 12-digit ESP32SIM_CHIP_ID")
        self.air = where
        self._chip = chip.upper()
        self.dev_dir = self.air + "/devices/" + self._chip
        self.flash_dir = os.getenv("ESP32SIM_FLASH") or self.dev_dir + "/flash"
        for d in (self.dev_dir, self.flash_dir, self.air + "/aps", self.air + "/networks"):
            air.makedirs(d)
        self._timing = json.loads(os.getenv("ESP32SIM_TIMING") or "{}")
        self._assoc_ms = self._timing.pop("assoc_ms", 1500)
        self._api_host = os.getenv("ESP32SIM_API_HOST") or "127.0.0.1"
        self._api_port = int(os.getenv("ESP32SIM_API_PORT") or "0")
        self._api = None
        self._ap_file = self.air + "/aps/" + self._chip + ".json"
        self._led = None
        self._led_changes = 0
        self._sta = None  # (ssid, password, ticks when joining began)
        # (ssid, ticks, network) keeps file reads rare
        self._cache = (None, time.ticks_ms(), None)  # type: tuple

    # --- identity, time, randomness ----------------------------------------

    def timing(self):
        return self._timing

    def chip_id(self):
        return self._chip

    def mac(self):
        c = self._chip
        return ":".join(c[i:i + 2] for i in range(0, 12, 2))

    def bssid(self):
        # An ESP32's SoftAP MAC is its base (station) MAC plus one.
        n = (int(self._chip, 16) + 1) & 0xFFFFFFFFFFFF
        h = "%012X" % n
        return ":".join(h[i:i + 2] for i in range(0, 12, 2))

    def seed_random(self):
        # The unix port starts every process with the same seed: jitter would not jitter.
        random.seed(int.from_bytes(os.urandom(4), "big"))

    def reset(self):
        self.ap_down()
        raise SystemExit(REBOOT_EXIT)

    # RTC memory survives a reset, not a power cut: a file the launcher deletes
    # when it powers the device on, and keeps across reboots.
    def rtc_read(self):
        try:
            with open(self.dev_dir + "/rtc_memory", "rb") as f:
                return f.read()
        except OSError:
            return b""

    def rtc_write(self, data):
        with open(self.dev_dir + "/rtc_memory", "wb") as f:
            f.write(data)
        return True

    # --- LED, button, sensor -------------------------------------------------

    def _control(self):
        return air.read(self.dev_dir + "/control.json") or {}

    def led(self, on):
        on = bool(on)
        if on != self._led:
            self._led = on
            self._led_changes += 1
            air.write(self.dev_dir + "/led.json", {"on": on, "changes": self._led_changes})

    def button_held(self):
        return bool(self._control().get("button_held"))

    def read_dht(self):
        if self._control().get("dht_fail"):
            raise OSError(_ETIMEDOUT)
        seed = int(self._chip[-4:], 16)
        t = time.time() + seed % 1000
        temp = 21.5 + 1.5 * math.sin(t / 900) + (seed % 21 - 10) / 10
        hum = 42 + 6 * math.sin(t / 1300) + (seed % 11 - 5)
        return round(temp, 1), round(hum, 1)

    # --- setup AP and its HTTP server -----------------------------------------

    async def serve(self, handler):
        # The unix port cannot report the port it bound (no getsockname), so pick
        # random ports until one binds: the bind itself proves the port is ours.
        for _ in range(50):
            port = self._api_port or 20000 + random.getrandbits(16) % 40000
            try:
                server = await asyncio.start_server(handler, self._api_host, port, backlog=8)
            except OSError as e:
                if e.errno != _EADDRINUSE or self._api_port:
                    raise
                continue
            self._api = "%s:%d" % (self._api_host, port)
            return server
        raise OSError(_EADDRINUSE)

    def ap_up(self, ssid, passphrase):
        air.write(self._ap_file, {
            "ssid": ssid,
            "bssid": self.bssid(),
            "security": "WPA2-PSK",
            "passphrase": passphrase,
            "chip_id": self._chip,
            "api": self._api,
        })

    def ap_down(self):
        air.remove(self._ap_file)

    # --- station interface -------------------------------------------------------

    def _network(self, ssid):
        c_ssid, c_at, c_net = self._cache
        now = time.ticks_ms()
        if c_ssid == ssid and time.ticks_diff(now, c_at) < 250:
            return c_net
        net = air.read(self.air + "/networks/" + _hex_ssid(ssid) + ".json")
        self._cache = (ssid, now, net)
        return net

    def sta_connect(self, ssid, password):
        self._sta = (ssid, password, time.ticks_ms())
        self._cache = (None, time.ticks_ms(), None)

    def sta_disconnect(self):
        self._sta = None

    def sta_status(self):
        if self._sta is None:
            return "idle"
        ssid, password, since = self._sta
        if time.ticks_diff(time.ticks_ms(), since) < self._assoc_ms:
            return "connecting"
        net = self._network(ssid)
        if net is None:
            return "no_ap_found"
        if net.get("password", "") != password:
            return "wrong_password"
        return "connected"

    def sta_ip(self):
        sta = self._sta
        if sta is None or self.sta_status() != "connected":
            return None
        net = self._network(sta[0])
        return net.get("ip_prefix", "192.168.29.") + str(100 + int(self._chip[-2:], 16) % 150)

    def sta_rssi(self):
        sta = self._sta
        if sta is None or self.sta_status() != "connected":
            return None
        net = self._network(sta[0])
        return net.get("rssi", -55) + random.getrandbits(2) - 2

    def scan(self):
        found = []
        for name in air.listdir(self.air + "/networks"):
            net = air.read(self.air + "/networks/" + name)
            if net and net.get("ssid"):
                found.append((net["ssid"], net.get("rssi", -55), bool(net.get("password"))))
        for name in air.listdir(self.air + "/aps"):
            ap = air.read(self.air + "/aps/" + name)
            if ap and ap.get("chip_id") != self._chip and ap.get("ssid"):
                # Other devices' setup APs: a made-up but stable signal strength.
                found.append((ap["ssid"], -45 - int(ap["chip_id"][-2:], 16) % 35, True))
        return found

    def sync_clock(self):
        return True  # the host's clock is right already (TLS checks certificates against it)

    def route(self, host, port):
        # Where a TCP connection to host:port lands, seen from the joined home network.
        sta = self._sta
        if sta is None or self.sta_status() != "connected":
            raise OSError(_EHOSTUNREACH)
        net = self._network(sta[0])
        dest = "%s:%d" % (host, port)
        target = (net.get("reach") or {}).get(dest)
        if not target:
            # The cached copy may predate a destination just added (the bundle server
            # of an update starting now): unknown means read the file again.
            self._cache = (None, time.ticks_ms(), None)
            net = self._network(sta[0])
            target = (net.get("reach") or {}).get(dest)
        if not target:
            raise OSError(_EHOSTUNREACH)
        if dest in (net.get("laptop") or ()):
            # Served by the station's laptop: there only while the laptop is on this
            # network, not while it visits a device's setup AP.
            laptop = air.read(self.air + "/laptop.json") or {}
            if laptop.get("ssid") != net.get("ssid"):
                raise OSError(_EHOSTUNREACH)
        h, p = target.rsplit(":", 1)
        return h, int(p)
