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


# network.WLAN.status() codes -> PROTOCOL.md /api/status words (docs/HARDWARE.md).
# Checked against MicroPython's ESP32 port at 1.29 (v1.29.0-preview-731, unchanged
# since v1.28.0) and ESP-IDF v5.3-v5.5:
# - 1000/1001/1010 are MicroPython's (ports/esp32/modnetwork.h:62-68); every other
#   STAT_ is an ESP-IDF wifi_err_reason_t under another name
#   (modnetwork_globals.h:79-94; esp_wifi_types_generic.h).
# - status() (ports/esp32/network_wlan.c:375-410) returns 201, 210-212 and 202 as soon
#   as one attempt ends with them, even while retrying; it folds 205 CONNECTION_FAIL
#   into 202, so 205 itself never comes out. Other reasons (15, 204, 2, 200, 203)
#   show as 1001 while retries remain, then as the raw number.
# - A wrong WPA2 password is normally 15 (4-way handshake timeout: the supplicant
#   gives up after 3 resent EAPOL 1/4, components/wpa_supplicant/src/rsn_supp/
#   wpa.c:2053, v5.5.2), sometimes 204 or 202 (ESP-IDF's "reason code related to
#   wrong password" table, docs/en/api-guides/wifi.rst:1228-1251, v5.5.2, lists
#   15, 201, 204); 202 is what WPA3-SAE gives.
# - 210-212: no AP with compatible security / within the authmode or RSSI threshold
#   (ESP-IDF >= 5.0; MicroPython 1.29 needs ESP-IDF >= 5.3, so they always exist).
_STATUS = {
    _code("STAT_IDLE", 1000): "idle",
    _code("STAT_CONNECTING", 1001): "connecting",
    _code("STAT_GOT_IP", 1010): "connected",
}
# 4WAY_HANDSHAKE_TIMEOUT, AUTH_FAIL, HANDSHAKE_TIMEOUT; 205 CONNECTION_FAIL too, should
# a later MicroPython pass it through instead of folding it into 202.
for _c in (15, 202, 204, 205):
    _STATUS[_c] = "wrong_password"
for _c in (201, 210, 211, 212):  # NO_AP_FOUND and its three variants
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
            # MicroPython's default is to retry forever, and status() then stays at
            # STAT_CONNECTING for reasons such as 15 (a wrong password): after 2
            # retries (3 attempts, network_wlan.c:156-170, 632-639) it says the reason.
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
