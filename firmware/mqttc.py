# A small asyncio MQTT 3.1.1 client: what this device needs and nothing more.
#
# Why not umqtt.simple (frozen into ESP32 builds): it blocks, so a stalled broker
# would freeze the state loop, the LED and the command handling, and keep-alive
# would need hand-polling. mqtt_as is resilient but brings its own WiFi handling
# and hardware imports. This client: clean session, QoS 0/1 publish, QoS 0
# subscribe, keep-alive with dead-peer detection, bounded incoming packets.
import asyncio
import struct
import time

MAX_IN = 1024  # incoming packets larger than this are skipped, not buffered


class MQTTError(Exception):
    pass


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _head(kind, n):
    # Fixed header: packet type and the remaining length as a varint.
    head = bytearray([kind])
    while True:
        byte = n & 0x7F
        n >>= 7
        head.append(byte | 0x80 if n else byte)
        if not n:
            return head


def _packet(kind, body):
    return bytes(_head(kind, len(body))) + body


class Client:
    def __init__(self, client_id, username=None, password=None, keepalive_s=30, will=None):
        # will = (topic, message, retain, qos)
        self.client_id = client_id
        self.username = username
        self.password = password
        self.keepalive_ms = keepalive_s * 1000
        self.will = will
        self.stream = None
        self.dead = asyncio.Event()
        self._lock = asyncio.Lock()
        self._pid = 0
        self._unacked = {}  # packet id -> True until PUBACK/SUBACK
        self._suback = {}
        self._last_rx = time.ticks_ms()
        self._last_tx = time.ticks_ms()
        self._ping_at = None  # ticks of the PINGREQ not answered yet
        self._tasks = []

    async def connect(self, stream, timeout_ms, on_message):
        # stream: an open TCP stream to the broker (net.connect).
        self.stream = stream
        flags = 0x02  # clean session: commands queued while offline are not replayed
        payload = _str(self.client_id)
        if self.will:
            topic, msg, retain, qos = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _str(topic) + _str(msg)
        if self.username is not None:
            flags |= 0x80
            payload += _str(self.username)
            if self.password is not None:
                flags |= 0x40
                payload += _str(self.password)
        body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive_ms // 1000) + payload
        await self._send(_packet(0x10, body))
        head = await asyncio.wait_for_ms(stream.readexactly(4), timeout_ms)
        if head[0] != 0x20 or head[1] != 2:
            raise MQTTError("bad CONNACK")
        if head[3] != 0:
            raise MQTTError("connection refused, code %d" % head[3])
        self._last_rx = time.ticks_ms()
        self._tasks = [asyncio.create_task(self._reader(stream, on_message)),
                       asyncio.create_task(self._pinger())]

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    async def _send(self, data, tail=None):
        if self.dead.is_set():
            raise OSError("connection lost")
        stream = self.stream
        if stream is None:
            raise OSError("not connected")
        async with self._lock:
            stream.write(data)
            if tail:
                stream.write(tail)
            await stream.drain()
            self._last_tx = time.ticks_ms()

    async def publish(self, topic, msg, retain=False, qos=0, timeout_ms=5000):
        # Header and payload go out as two writes: no copy of a large payload.
        if isinstance(msg, str):
            msg = msg.encode()
        topic = _str(topic)
        pid = 0
        n = len(topic) + len(msg) + (2 if qos else 0)
        head = _head(0x30 | (qos << 1) | (1 if retain else 0), n)
        head.extend(topic)
        if qos:
            pid = self._next_pid()
            head.extend(struct.pack("!H", pid))
            self._unacked[pid] = True
        await self._send(head, msg)
        if qos:
            await self._wait_ack(self._unacked, pid, timeout_ms)

    async def subscribe(self, topic, timeout_ms=5000):
        pid = self._next_pid()
        self._suback[pid] = True
        await self._send(_packet(0x82, struct.pack("!H", pid) + _str(topic) + b"\x00"))
        await self._wait_ack(self._suback, pid, timeout_ms)

    async def _wait_ack(self, table, pid, timeout_ms):
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while table.get(pid) is True:
            if self.dead.is_set():
                raise OSError("connection lost")
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                table.pop(pid, None)
                raise OSError("no acknowledgement")
            await asyncio.sleep_ms(10)
        if table.pop(pid, None) == "refused":
            raise MQTTError("subscription refused")

    async def disconnect(self):
        try:
            await self._send(b"\xe0\x00")
        except Exception:
            pass
        await self.close()

    async def close(self):
        self.dead.set()
        me = asyncio.current_task()
        for t in self._tasks:
            if t is not me:
                t.cancel()
        self._tasks = []
        if self.stream:
            try:
                self.stream.close()
                await self.stream.wait_closed()
            except Exception:
                pass

    async def _pinger(self):
        # PINGREQ once nothing was sent OR received for half the keep-alive: a QoS 0
        # publisher hears nothing back from the broker, so outgoing traffic alone says
        # nothing about the broker. At most one ping is outstanding; only a ping left
        # unanswered for a whole keep-alive means the broker is gone (TCP may not know).
        half = self.keepalive_ms // 2
        try:
            while not self.dead.is_set():
                await asyncio.sleep_ms(half // 4 or 1)
                now = time.ticks_ms()
                if self._ping_at is not None:
                    if time.ticks_diff(now, self._ping_at) > self.keepalive_ms:
                        raise OSError("broker silent")
                elif time.ticks_diff(now, self._last_tx) >= half or time.ticks_diff(now, self._last_rx) >= half:
                    self._ping_at = now
                    await self._send(b"\xc0\x00")
        except asyncio.CancelledError:
            raise
        except Exception:
            await self.close()

    async def _reader(self, s, on_message):
        try:
            while True:
                kind = (await s.readexactly(1))[0]
                n, shift = 0, 0
                while True:
                    b = (await s.readexactly(1))[0]
                    n |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                    if shift > 21:
                        raise OSError("bad remaining length")
                self._last_rx = time.ticks_ms()
                self._ping_at = None  # any packet shows the broker is there
                if n > MAX_IN:
                    while n:  # skip it without holding it in RAM
                        n -= len(await s.readexactly(min(n, 256)))
                    continue
                body = await s.readexactly(n) if n else b""
                t = kind & 0xF0
                if t == 0x30:
                    await self._on_publish(kind, body, on_message)
                elif t == 0x40 and n >= 2:  # PUBACK
                    pid = struct.unpack("!H", body[:2])[0]
                    if pid in self._unacked:
                        self._unacked[pid] = False
                elif t == 0x90 and n >= 3:  # SUBACK
                    pid = struct.unpack("!H", body[:2])[0]
                    if pid in self._suback:
                        self._suback[pid] = "refused" if body[2] == 0x80 else False
                # PINGRESP and anything else: _last_rx is all we need
        except asyncio.CancelledError:
            raise
        except Exception:
            await self.close()

    async def _on_publish(self, kind, body, on_message):
        qos = (kind >> 1) & 3
        tlen = struct.unpack("!H", body[:2])[0]
        topic = body[2:2 + tlen].decode()
        pos = 2 + tlen
        if qos:
            pid = body[pos:pos + 2]
            pos += 2
            await self._send(_packet(0x40, pid))  # PUBACK (QoS 2 never arrives: we subscribe at 0)
        on_message(topic, body[pos:], kind & 1)  # kind & 1: a retained message
