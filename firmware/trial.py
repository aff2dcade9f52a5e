# A trial connection to the home network while the setup AP stays up (AP+STA),
# and the TCP check of the broker: the answers behind GET /api/status.
import asyncio
import time

import net
from util import log

FINAL = ("connected", "wrong_password", "no_ap_found", "failed")


class Trial:
    def __init__(self, dev, last=None):
        # last: the home-network result that caused a fallback, reported until a new trial.
        last = last or {}
        self.dev = dev
        self.wifi = last.get("wifi", "idle")  # idle connecting connected wrong_password no_ap_found failed
        self.ip = last.get("ip")
        self.broker = last.get("broker", "unknown")  # unknown reachable unreachable
        # Why the broker is "unreachable", when more is known than "no TCP answer":
        # tls_* (see net.py) or login_refused / mqtt_refused (home mode's fallback).
        self.broker_error = last.get("broker_error")
        self.broker_detail = last.get("broker_detail")
        self._task = None

    def status(self):
        s = {"wifi": self.wifi, "ip": self.ip, "broker": self.broker}
        if self.broker_error:
            s["broker_error"] = self.broker_error
            s["broker_detail"] = self.broker_detail
        return s

    def _broker(self, state, error=None, detail=None):
        self.broker, self.broker_error, self.broker_detail = state, error, detail

    def running(self):
        return self._task is not None

    def start(self):
        # A new POST /api/wifi replaces a trial still in progress.
        if self._task:
            self._task.cancel()
        self.wifi, self.ip = "connecting", None
        self._broker("unknown")
        self._task = asyncio.create_task(self._run())

    async def _run(self):
        board, t = self.dev.board, self.dev.timing
        wifi = self.dev.cfg["wifi"]
        log("trial: joining", repr(wifi["ssid"]))
        try:
            board.sta_connect(wifi["ssid"], wifi["password"])
            deadline = time.ticks_add(time.ticks_ms(), t["trial_s"] * 1000)
            status = "connecting"
            while time.ticks_diff(deadline, time.ticks_ms()) > 0:
                status = board.sta_status()
                if status in FINAL:
                    break
                await asyncio.sleep_ms(100)
            if status not in FINAL:
                status = "failed"
            if status == "connected":
                self.ip = board.sta_ip()
            else:
                # A STA that keeps retrying hops channels and drops the AP's clients.
                board.sta_disconnect()
            self.wifi = status
            log("trial:", status)
            if status == "connected":
                await self._check_broker()
        finally:
            self._done()

    def broker_changed(self):
        # POST /api/mqtt: check the new broker once WiFi is up. A trial still joining
        # checks the config it finds when joined; a check already under way may be
        # for the old address, so it is cancelled and started over (no stale result).
        if self.wifi != "connected":
            return
        if self._task:
            self._task.cancel()
        self._broker("unknown")
        self._task = asyncio.create_task(self._recheck())

    async def _recheck(self):
        try:
            await self._check_broker()
        finally:
            self._done()

    def _done(self):
        # A cancelled trial ends after its replacement started: leave that one be.
        if self._task is asyncio.current_task():
            self._task = None

    async def _check_broker(self):
        # A TCP connect; with TLS configured, the TLS handshake too, so a wrong CA or
        # host name is known while the station is still on the device's AP.
        self._broker("unknown")
        mqtt = self.dev.cfg.get("mqtt")
        if not mqtt:
            return
        ca = None
        if mqtt.get("tls"):
            ca = self.dev.store.ca(mqtt["ca_id"])
            if ca is None:  # never plain instead: TLS was asked for
                self._broker("unreachable", "tls_no_ca", "the stored CA certificate is missing: send /api/mqtt again")
                return
        failed = await net.probe(self.dev.board, mqtt["broker"], mqtt["port"], self.dev.timing["probe_ms"], ca)
        ca = None
        if failed is None:
            self._broker("reachable")
        elif isinstance(failed, net.TLSError):
            self._broker("unreachable", failed.code, failed.detail)
        else:
            self._broker("unreachable")
        log("trial: broker", self.broker, self.broker_detail or "")
