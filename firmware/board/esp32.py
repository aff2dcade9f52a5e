# The real board: ESP32 DevKit (WROOM-32) with a DHT11.
#
# Wiring (change here for another board): DHT11 data on GPIO4 (10k pull-up to
# 3V3), the DevKit's blue LED on GPIO2, the BOOT button on GPIO0 (pressed = 0).
import asyncio
import binascii

import dht
import machine
import network

PIN_DHT = 4
PIN_LED = 2
PIN_BUTTON = 0


def _code(name, default):
    return getattr(network, name, default)


# network.WLAN.status() codes -> PROTOCOL.md /api/status words. Once the STA has
# given up (see sta_connect), status() is ESP-IDF's last disconnect reason. A wrong
# WPA2 password usually shows up as a 4-way handshake timeout (15) or a connection
# failure (205), rarely as AUTH_FAIL (202); 210-212 are "no AP found" variants
# (none with compatible security / within the authmode or RSSI threshold).
_STATUS = {
    _code("STAT_IDLE", 1000): "idle",
    _code("STAT_CONNECTING", 1001): "connecting",
    _code("STAT_GOT_IP", 1010): "connected",
}
for _c in (15, 202, 204, 205):
    _STATUS[_c] = "wrong_password"
for _c in (201, 210, 211, 212):
    _STATUS[_c] = "no_ap_found"


def _ssid(raw):
    try:
        return raw.decode()
    except UnicodeError:
        return None  # not UTF-8: it could not be sent back as JSON text anyway


def _mac(raw):
    return ":".join("%02X" % b for b in raw)


class Board:
    platform = "esp32"
    flash_dir = "/"

    def __init__(self):
        self._sta = network.WLAN(network.STA_IF)
        self._ap = network.WLAN(network.AP_IF)
        self._led = machine.Pin(PIN_LED, machine.Pin.OUT, value=0)
        self._button = machine.Pin(PIN_BUTTON, machine.Pin.IN, machine.Pin.PULL_UP)
        self._dht = dht.DHT11(machine.Pin(PIN_DHT))
        self._joining = False

    def timing(self):
        return {}

    def chip_id(self):
        # unique_id() is the factory base MAC: stable, printed on the module's label.
        return binascii.hexlify(machine.unique_id()).decode().upper()

    def mac(self):
        return _mac(self._sta.config("mac"))

    def seed_random(self):
        pass  # MicroPython seeds random from the ESP32's hardware RNG

    def reset(self):
        machine.reset()

    # RTC user memory survives machine.reset() (a software reset), not a power cut.
    def rtc_read(self):
        try:
            return machine.RTC().memory()
        except Exception:
            return b""

    def rtc_write(self, data):
        try:
            machine.RTC().memory(data)
            return True
        except Exception:
            return False

    def led(self, on):
        self._led.value(1 if on else 0)

    def button_held(self):
        return self._button.value() == 0

    def read_dht(self):
        self._dht.measure()  # OSError(ETIMEDOUT) when the sensor does not answer
        return self._dht.temperature(), self._dht.humidity()

    async def serve(self, handler):
        return await asyncio.start_server(handler, "0.0.0.0", 80, backlog=4)

    def ap_up(self, ssid, passphrase):
        # The SoftAP is 192.168.4.1 by default, which is what the station expects.
        self._ap.active(True)
        self._ap.config(essid=ssid, password=passphrase, authmode=network.AUTH_WPA2_PSK, max_clients=4)

    def ap_down(self):
        self._ap.active(False)

    def sta_connect(self, ssid, password):
        self._sta.active(True)
        try:
            self._sta.disconnect()
        except OSError:
            pass
        try:
            # MicroPython's default is to retry forever with status() stuck at
            # STAT_CONNECTING, hiding the reason; after 2 retries it reports it.
            self._sta.config(reconnects=2)
        except Exception:
            pass  # firmware without the option: the trial times out as "failed"
        self._sta.connect(ssid, password)
        self._joining = True

    def sta_disconnect(self):
        self._joining = False
        try:
            self._sta.disconnect()
        except OSError:
            pass

    def sta_status(self):
        if not self._joining:
            return "idle"
        if self._sta.isconnected():
            return "connected"
        return _STATUS.get(self._sta.status(), "failed")

    def sta_ip(self):
        return self._sta.ifconfig()[0] if self._sta.isconnected() else None

    def sta_rssi(self):
        try:
            return self._sta.status("rssi")
        except OSError:
            return None

    def scan(self):
        # Blocks for about 2 s; the AP stays up meanwhile.
        self._sta.active(True)
        return [(_ssid(r[0]), r[3], r[4] != 0) for r in self._sta.scan()]

    def sync_clock(self):
        # TLS checks the broker's certificate dates against the RTC, which starts at
        # 2000-01-01 after a power cut: set it by NTP (ntptime is frozen into ESP32
        # builds; a blocking UDP query, 1 s timeout) unless it is plausible already.
        # Without NTP the handshake then fails as tls_not_yet_valid, which says so.
        import time

        if time.gmtime()[0] >= 2025:
            return True
        try:
            import ntptime

            ntptime.settime()
            return True
        except Exception:
            return False

    def route(self, host, port):
        return host, port  # a real network: connect where asked
