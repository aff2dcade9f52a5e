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
        self._task = None

    def status(self):
        return {"wifi": self.wifi, "ip": self.ip, "broker": self.broker}

    def running(self):
        return self._task is not None

    def start(self):
        # A new POST /api/wifi replaces a trial still in progress.
        if self._task:
            self._task.cancel()
        self.wifi, self.ip, self.broker = "connecting", None, "unknown"
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
        self.broker = "unknown"
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
        mqtt = self.dev.cfg.get("mqtt")
        if not mqtt:
            self.broker = "unknown"
            return
        self.broker = "unknown"
        ok = await net.probe(self.dev.board, mqtt["broker"], mqtt["port"], self.dev.timing["probe_ms"])
        self.broker = "reachable" if ok else "unreachable"
        log("trial: broker", self.broker)
