# Setup mode: SoftAP up, the JSON API of PROTOCOL.md section 1 served on port 80.
#
# Left only by a reboot: POST /api/restart, or the periodic retry of a stored
# home network (after a fallback) finding it working again.
import asyncio
import sys
import time

import devconfig
import factory
import httpd
import validate
from trial import Trial
from util import log


class SetupMode:
    def __init__(self, dev, last=None, reserve=None):
        self.dev = dev
        # After a fallback, /api/status tells the station why the home network failed.
        self.trial = Trial(dev, last)
        self.last_request = None
        self.server = httpd.Server({
            "/api/info": {"GET": self.info},
            "/api/scan": {"GET": self.scan},
            "/api/wifi": {"POST": self.wifi},
            "/api/status": {"GET": self.status},
            "/api/mqtt": {"POST": self.mqtt},
            "/api/restart": {"POST": self.restart},
        }, on_request=self._touch, limits={"/api/mqtt": factory.MQTT_BODY_MAX}, buf=reserve)

    async def run(self):
        dev = self.dev
        await dev.board.serve(self.server.handle)
        dev.board.ap_up(dev.ap_ssid, factory.AP_PASSPHRASE)
        dev.board.led(True)  # solid LED: waiting for setup
        log("setup: AP", dev.ap_ssid, "up, API served")
        retry_ms = dev.timing["retry_s"] * 1000
        while True:
            await asyncio.sleep_ms(retry_ms)
            if self._should_retry():
                await self._retry()

    def _touch(self):
        self.last_request = time.ticks_ms()

    def _should_retry(self):
        # Retry only a complete stored config, and never under a person's hands.
        if not devconfig.configured(self.dev.cfg) or self.trial.running():
            return False
        if self.last_request is not None:
            if time.ticks_diff(time.ticks_ms(), self.last_request) <= self.dev.timing["busy_s"] * 1000:
                return False
            # Forget it: ticks_diff wraps after ~6.2 days on an ESP32, and a stale
            # tick would then look recent and stall the retries for days.
            self.last_request = None
        return True

    async def _retry(self):
        log("setup: retrying the stored home network")
        started = time.ticks_ms()
        self.trial.start()
        while self.trial.running():
            await asyncio.sleep_ms(100)
        if self.last_request is not None and time.ticks_diff(self.last_request, started) >= 0:
            return  # someone started using the API meanwhile: theirs to finish
        # A config that has reached the broker before only needs the WiFi back;
        # a new one must also show that its broker answers.
        cfg = self.dev.cfg
        if self.trial.wifi == "connected" and (self.trial.broker == "reachable" or cfg.get("proven")):
            log("setup: home network is back, restarting into it")
            self.dev.reboot()

    # --- endpoints -------------------------------------------------------

    def info(self, _):
        dev = self.dev
        return 200, {
            "chip_id": dev.chip_id,
            "model": factory.MODEL,
            "firmware": factory.FIRMWARE,
            "mac": dev.board.mac(),
            "state": "setup",
            "wifi_configured": "wifi" in dev.cfg,
            "mqtt_configured": "mqtt" in dev.cfg,
            "mqtt_tls": bool(dev.cfg.get("mqtt", {}).get("tls")),  # never the CA or a password
        }

    def scan(self, _):
        best = {}  # type: dict
        for ssid, rssi, secure in self.dev.board.scan():
            if ssid and (ssid not in best or rssi > best[ssid][0]):
                best[ssid] = (rssi, secure)
        nets = [{"ssid": s, "rssi": v[0], "secure": v[1]} for s, v in best.items()]
        nets.sort(key=lambda n: n["rssi"], reverse=True)
        return 200, {"networks": nets}

    def wifi(self, raw):
        clean = _checked(validate.wifi, httpd.json_object(raw))
        self._store("wifi", clean)
        log("setup: wifi stored for", repr(clean["ssid"]))
        self.trial.start()
        return 200, {"ok": True}

    def status(self, _):
        return 200, self.trial.status()

    def mqtt(self, raw):
        # raw: httpd's reserved buffer (MQTT_BODY_MAX). The PEM CA is taken out of it
        # before json.loads, as DER (pem.py says why).
        httpd.check_json(raw)
        ca = None
        if b'"ca"' in raw:  # pem.py is loaded only for a body that may hold a CA
            if not isinstance(raw, bytearray):
                raw = bytearray(raw)  # the buffer was busy: a short body, read the old way
            import pem

            try:
                ca = _checked(pem.take, raw)
            finally:
                sys.modules.pop("pem", None)  # ~3 KB of heap back once this returns
        body = httpd.json_object(raw, checked=True)
        if ca is not None:
            body["ca"] = ca
        clean = _checked(validate.mqtt, body)
        store = self.dev.store
        if "ca" in clean:  # DER bytes: into a file of its own, before config.json names it
            clean["ca_id"] = store.save_ca(clean.pop("ca"))
        self._store("mqtt", clean)
        store.drop_other_cas(clean.get("ca_id"))
        log("setup: mqtt stored for", clean["node_name"], "at", clean["broker"], clean["port"],
            "over TLS" if clean.get("tls") else "")
        self.trial.broker_changed()
        return 200, {"ok": True}

    def restart(self, _):
        log("setup: restart requested")
        return 200, {"ok": True}, self.dev.reboot_soon

    def _store(self, key, clean):
        # Save first, then adopt: a failed write leaves the old config in force.
        cfg = dict(self.dev.cfg)
        cfg[key] = clean
        cfg.pop("proven", None)  # a changed config has not reached a broker yet
        self.dev.store.save(cfg)
        self.dev.cfg = cfg


def _checked(check, body):
    try:
        return check(body)
    except validate.Invalid as e:
        raise httpd.Reject(400, "invalid_field", e.detail, e.field)
