# Home-network mode: STA only, MQTT session per PROTOCOL.md section 2.
#
# run() comes back only to fall back to setup mode; it returns the last known
# trial result so /api/status can say why (wrong_password, no_ap_found, ...).
import asyncio
import gc
import json
import sys
import time

import factory
import mqttc
import net
import validate
from util import Backoff, exists, log, uptime_s

_WIFI_RETRY_MS = 1000


class HomeMode:
    def __init__(self, dev):
        self.dev = dev
        m = dev.cfg["mqtt"]
        self.m = m
        p = m["topic_prefix"]
        self.t_status = p + "/status"
        self.t_info = p + "/info"
        self.t_state = p + "/state"
        self.t_cmd = p + "/cmd"
        self.t_event = p + "/event"
        self.interval = dev.cfg.get("interval", dev.timing["interval_s"])
        self.next_at = time.ticks_ms()
        self.client = None
        self.ip = None
        self.blinking = False
        self.client_connected = False
        self.leaving = False  # reboot/factory_reset under way: do not reconnect
        self.updating = False  # an ota command is running
        self.failure = None  # (broker_error, broker_detail) of the last failed session start
        # The connect burst (online, info, discovery) is the heap's peak: an update a
        # station sends as soon as it sees "online" waits until it is over.
        self.burst = False
        # set_broker: the new broker's section while it is tried, then the old one to go
        # back to if the try fails, and the event to report there (docs/FLEET.md)
        self.trying = None
        self.note = None

    async def run(self):
        dev, board, t = self.dev, self.dev.board, self.dev.timing
        board.ap_down()  # STA only: no open door to the device while it runs
        board.led(False)
        backoff = Backoff(t["backoff_min_ms"], t["backoff_max_ms"])
        fallback_ms = t["fallback_s"] * 1000
        wifi_fail_since = None
        broker_fail_since = None
        while True:
            # The fallback clock starts when the first failing attempt starts: one
            # attempt alone may take trial_s (20 s) of the 60.
            attempt_at = time.ticks_ms()
            status = await self._join_wifi()
            if status != "connected":
                # Spec: a home network failing for ~60 s sends the device back to setup.
                if wifi_fail_since is None:
                    wifi_fail_since = attempt_at
                if time.ticks_diff(time.ticks_ms(), wifi_fail_since) > fallback_ms:
                    log("home: network failing for", t["fallback_s"], "s, back to setup mode")
                    board.sta_disconnect()
                    return {"wifi": status}
                await asyncio.sleep_ms(_WIFI_RETRY_MS)
                continue
            wifi_fail_since = None
            started = time.ticks_ms()
            old = self.m
            if self.trying:
                self.m, self.trying = self.trying, None
            try:
                await self._session()
            except Exception as e:  # refused, unreachable, TLS, lost: all end in a retry
                why = _why(e)
                if not self.client_connected:
                    self.failure = _failure(e)
                    why = self.failure[1]
                if not self.leaving:  # a reboot's own disconnect races a publish: no news
                    log("mqtt: session ended:", why)
            if self.m is not old and self.m is not self.dev.cfg["mqtt"]:
                # The new broker never took the device: back to the old one at once,
                # which hears why (the config on flash never changed).
                log("set_broker: kept the old broker:", why)
                self.m = old
                self.note = json.dumps({"event": "set_broker", "state": "failed", "reason": why})
                continue
            while self.leaving:
                await asyncio.sleep_ms(1000)
            if self.trying:
                continue  # set_broker left the old session: try the new broker now
            if self.client_connected:
                broker_fail_since = None
            lasted = time.ticks_diff(time.ticks_ms(), started)
            if lasted > t["keepalive_s"] * 1000:
                backoff.reset()  # it was a working session, not a flapping one
            if not self.client_connected and not dev.cfg.get("proven"):
                # A config that never reached its broker (typo, wrong token) must not
                # strand the device on the home network without its setup AP.
                if broker_fail_since is None:
                    broker_fail_since = started
                elif time.ticks_diff(time.ticks_ms(), broker_fail_since) > fallback_ms:
                    log("home: broker never reached, back to setup mode")
                    board.sta_disconnect()
                    last = {"wifi": "connected", "ip": self.ip, "broker": "unreachable"}
                    if self.failure and self.failure[0]:
                        last["broker_error"], last["broker_detail"] = self.failure
                    return last
            delay = backoff.next_ms()
            if not dev.cfg.get("proven"):
                delay = min(delay, t["unproven_retry_ms"])
            log("mqtt: reconnecting in", delay, "ms")
            await asyncio.sleep_ms(delay)

    async def _join_wifi(self):
        board, t = self.dev.board, self.dev.timing
        if board.sta_status() == "connected":
            return "connected"
        w = self.dev.cfg["wifi"]
        log("home: joining", repr(w["ssid"]))
        board.sta_connect(w["ssid"], w["password"])
        deadline = time.ticks_add(time.ticks_ms(), t["trial_s"] * 1000)
        status = "connecting"
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            status = board.sta_status()
            if status in ("connected", "wrong_password", "no_ap_found", "failed"):
                break
            await asyncio.sleep_ms(100)
        if status == "connecting":
            status = "failed"
        if status == "connected":
            self.ip = board.sta_ip()
            log("home: connected, ip", self.ip)
        else:
            log("home: wifi", status)
        return status

    async def _session(self):
        dev, t, m = self.dev, self.dev.timing, self.m
        self.client_connected = False
        ca = None
        if m.get("tls"):
            ca = dev.store.ca(m["ca_id"])
            if ca is None:  # never plain instead: TLS was asked for
                raise net.TLSError("tls_no_ca", "the stored CA certificate is missing")
            dev.board.sync_clock()  # certificates are checked against the clock
        stream = await net.connect(dev.board, m["broker"], m["port"], t["probe_ms"], ca)
        ca = None
        client = mqttc.Client(m["node_name"], m.get("username"), m.get("password"),
                              t["keepalive_s"], will=(self.t_status, "offline", True, 1))
        self.client = client
        try:
            await client.connect(stream, t["probe_ms"], self._on_message)
            self.client_connected = True
            self.failure = None
            if self.m is not self.dev.cfg["mqtt"]:  # set_broker: the new broker took it
                cfg = dict(self.dev.cfg)
                cfg["mqtt"] = self.m
                self.dev.store.save(cfg)  # atomic: the old or the new broker, never half
                self.dev.cfg = cfg
                log("set_broker: moved to", m["broker"], m["port"])
            log("mqtt: connected to", m["broker"], m["port"], "as", m["node_name"], "over TLS" if m.get("tls") else "")
            self._prove()
            if dev.trial:  # new firmware on trial reached its broker: keep it (OTA)
                import otaboot

                otaboot.commit(dev)
                sys.modules.pop("otaboot", None)  # freed once its deadline task ends
            # Subscribe first: a station that reacts to "online" with a command must be heard.
            self.burst = True
            await client.subscribe(self.t_cmd)
            await client.publish(self.t_status, "online", retain=True, qos=1)
            await client.publish(self.t_info, self._info(), retain=True, qos=1)
            for topic, doc in self._discovery():
                await client.publish(topic, doc, retain=True, qos=1)
            if exists(dev.board.flash_dir.rstrip("/") + "/fw/rollback"):
                import otaboot  # a trial was dropped: say so once

                note = otaboot.take_note(dev)
                sys.modules.pop("otaboot", None)
                if note:
                    await client.publish(self.t_event, note)
            if self.note:
                note, self.note = self.note, None
                await client.publish(self.t_event, note)
            self.burst = False
            await self._state_loop(client)
        finally:
            self.burst = False
            await client.close()
            self.client = None

    def _prove(self):
        cfg = self.dev.cfg
        if not cfg.get("proven"):
            cfg = dict(cfg)
            cfg["proven"] = True
            self.dev.store.save(cfg)
            self.dev.cfg = cfg

    async def _state_loop(self, client):
        board = self.dev.board
        self.next_at = time.ticks_ms()
        checked = time.ticks_ms()
        while not client.dead.is_set():
            now = time.ticks_ms()
            if time.ticks_diff(now, self.next_at) >= 0:
                self.next_at = time.ticks_add(now, self.interval * 1000)
                # Not while an update downloads: its blocks come from the same thin heap
                # (a reading's garbage left the MQTT session a MemoryError, 1 run in 3
                # under load); the device reboots right after it anyway.
                if not self.updating:
                    await client.publish(self.t_state, self._state())
            if time.ticks_diff(now, checked) >= 1000:
                checked = now
                if board.sta_status() != "connected":
                    log("home: wifi lost")
                    return
            await asyncio.sleep_ms(100)

    # --- payloads ----------------------------------------------------------

    def _state(self):
        board = self.dev.board
        try:
            temp, hum = board.read_dht()
            doc = {"temperature": float(temp), "humidity": float(hum)}  # type: dict
        except Exception:  # the DHT11 timed out or sent garbage: report, never crash
            doc = {"temperature": None, "humidity": None, "error": "sensor_timeout"}
        gc.collect()
        doc["rssi"] = board.sta_rssi()
        doc["uptime"] = uptime_s()
        doc["heap_free"] = gc.mem_free()
        return json.dumps(doc)

    def _info(self):
        return json.dumps({
            "chip_id": self.dev.chip_id,
            "model": factory.MODEL,
            "firmware": factory.FIRMWARE,
            "ip": self.ip,
            "node_name": self.m["node_name"],
            "broker": "%s:%d" % (self.m["broker"], self.m["port"]),
            "interval": self.interval,
        })

    def _discovery(self):
        node = self.m["node_name"]
        device = {
            "identifiers": [self.dev.chip_id],
            "name": node,
            "model": factory.MODEL,
            "manufacturer": "Espressif",
            "sw_version": factory.FIRMWARE,
        }
        for kind, name, unit in (("temperature", "Temperature", "°C"), ("humidity", "Humidity", "%")):
            uid = node + "_" + kind
            yield "homeassistant/sensor/" + uid + "/config", json.dumps({
                "name": name,
                "unique_id": uid,
                "device_class": kind,
                "state_class": "measurement",
                "unit_of_measurement": unit,
                "state_topic": self.t_state,
                "value_template": "{{ value_json.%s }}" % kind,
                "availability_topic": self.t_status,
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": device,
            })

    # --- commands ----------------------------------------------------------

    def _on_message(self, topic, payload, retained=False):
        if topic != self.t_cmd:
            return
        if retained:
            # A retained command would run again on every connect: a retained
            # reboot or factory_reset would loop forever. Commands are live only.
            log("cmd: retained message ignored")
            return
        try:
            doc = json.loads(payload.decode())
        except (ValueError, UnicodeError):
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("cmd"), str):
            self._reply({"cmd": None, "ok": False, "error": "bad_json"})
            return
        cmd = doc["cmd"]
        log("cmd:", cmd)
        if cmd == "identify":
            if not self.blinking:
                asyncio.create_task(self._identify())
            self._reply({"cmd": cmd, "ok": True})
        elif cmd == "set_interval":
            value = doc.get("value")
            if value is None or not validate.is_interval(value):
                self._reply({"cmd": cmd, "ok": False, "error": "bad_value",
                             "detail": "value must be an integer %d-%d" % (validate.INTERVAL_MIN, validate.INTERVAL_MAX)})
                return
            self.interval = value
            self.next_at = time.ticks_add(time.ticks_ms(), value * 1000)
            if self.dev.cfg.get("interval") != value:  # spare the flash a needless write
                cfg = dict(self.dev.cfg)
                cfg["interval"] = value
                self.dev.store.save(cfg)  # survives a reboot
                self.dev.cfg = cfg
            self._reply({"cmd": cmd, "ok": True, "value": value})
            # info carries the interval: what confirms a fleet's change (docs/FLEET.md)
            asyncio.create_task(self._publish_quietly(self.t_info, self._info(), True))
        elif cmd == "reboot":
            self._reply({"cmd": cmd, "ok": True})
            asyncio.create_task(self._leave(False))
        elif cmd == "factory_reset":
            self._reply({"cmd": cmd, "ok": True})
            asyncio.create_task(self._leave(True))
        elif cmd == "set_broker":
            import rehome  # only now, as ota: a running device does not carry it

            rehome.start(self, doc)
            sys.modules.pop("rehome", None)
        elif cmd == "ota":
            asyncio.create_task(self._ota(doc))
        else:
            self._reply({"cmd": cmd, "ok": False, "error": "unknown_cmd"})

    async def _ota(self, doc):
        # Not inside the connect burst: loading the update code and downloading next to
        # the discovery documents ran the session out of heap (MemoryError in
        # _discovery at 90 KB, and under load at 96 KB).
        while self.burst:
            await asyncio.sleep_ms(20)
        # Only now: a running device does not carry the update code. Collected first:
        # loading it and its buffer need blocks that a heap full of garbage does not
        # have (a MemoryError here failed 1 update in 3).
        gc.collect()
        import ota

        bad = ota.check(doc)
        if bad or self.updating or self.leaving:
            if not self.updating:
                sys.modules.pop("ota", None)
            self._reply({"cmd": "ota", "ok": False, "error": "bad_value",
                         "detail": bad or "an update or a reboot is already under way"})
            return
        self.updating = True
        # Awaited, not a task: the answer goes out before the update's first report.
        await self._publish_quietly(self.t_event, json.dumps({"cmd": "ota", "ok": True}))
        await ota.start(self, doc)

    def _reply(self, doc):
        asyncio.create_task(self._publish_quietly(self.t_event, json.dumps(doc)))

    async def _publish_quietly(self, topic, msg, retain=False):
        client = self.client
        try:
            if client:
                await client.publish(topic, msg, retain=retain, qos=1 if retain else 0)
        except Exception as e:
            log("mqtt: event not sent:", _why(e))

    async def _identify(self):
        board = self.dev.board
        self.blinking = True
        try:
            for _ in range(self.dev.timing["identify_s"] * 4):
                board.led(True)
                await asyncio.sleep_ms(125)
                board.led(False)
                await asyncio.sleep_ms(125)
        finally:
            self.blinking = False

    async def _leave(self, erase):
        # A planned exit says "offline" itself: a clean DISCONNECT sends no will.
        self.leaving = True
        client = self.client
        await asyncio.sleep_ms(50)  # let the event reply go out first
        if client:
            try:
                if erase:  # Home Assistant removes entities whose config is emptied
                    for topic, _ in self._discovery():
                        await client.publish(topic, b"", retain=True, qos=1)
                await client.publish(self.t_status, "offline", retain=True, qos=1)
            except Exception as e:
                log("mqtt: goodbye not sent:", _why(e))
            await client.disconnect()
        if erase:
            self.dev.store.erase()
            log("factory reset: config erased")
        await asyncio.sleep_ms(self.dev.timing["restart_delay_ms"])
        self.dev.reboot()



def _why(e):
    return type(e).__name__ + (" " + str(e) if str(e) else "")


def _failure(e):
    # (broker_error, broker_detail) for a session that never got its CONNACK; a
    # plain TCP failure has no code (the station sees "unreachable", as before).
    if isinstance(e, net.TLSError):
        return e.code, e.detail
    if isinstance(e, mqttc.MQTTError):
        text = str(e)
        if text.endswith("code 4") or text.endswith("code 5"):
            return "login_refused", "the broker refused the login (" + text + "): wrong username or token"
        return "mqtt_refused", "the broker refused the connection (" + text + ")"
    return None, _why(e)
