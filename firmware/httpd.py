# A deliberately small HTTP/1.1 server for the setup API (JSON in, JSON out).
#
# Why not microdot: see README.md. In short, the setup API is six fixed JSON
# routes, and the device must survive hostile or broken clients on a ~100 KB heap:
# every read here is bounded in bytes and in time, and the number of open
# connections is capped, which microdot 2.7 does not do (no read timeout, no cap
# on header count or connections) at three times the heap cost.
import asyncio
import json

from util import log

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Reject(Exception):
    # A request answered with an error; handlers may raise it too.
    def __init__(self, status, code, detail, field=None, head=""):
        super().__init__(code)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.head = head  # extra header lines, each ending in \r\n

    def body(self):
        obj = {"error": self.code, "detail": self.detail}
        if self.field:
            obj["field"] = self.field
        return obj


class _Quiet(Exception):
    pass


def check_json(raw):
    # 400 bad_json unless raw is RFC 8259 JSON (json.loads is lenient: see
    # "Strict JSON" in README.md).
    try:
        _strict(raw)
    except (ValueError, IndexError) as e:
        raise Reject(400, "bad_json", "body is not JSON (RFC 8259): " + str(e))


def json_object(raw, checked=False):
    # The body of a POST as a dict, or 400 bad_json. checked: check_json ran already.
    if not checked:
        check_json(raw)
    try:
        obj = json.loads(raw)  # bytes or bytearray: no decoded copy of the body
    except (ValueError, UnicodeError, IndexError) as e:
        raise Reject(400, "bad_json", "body is not JSON (RFC 8259): " + str(e))
    if not isinstance(obj, dict):
        raise Reject(400, "bad_json", "body must be a JSON object")
    # Surrogates can only come from a \u escape or raw 0xED bytes: only then is each
    # string field encoded again (a copy) to look for them.
    if b"\\u" in raw or b"\xed" in raw:
        for k, v in obj.items():
            if isinstance(v, str) and b"\xed" in v.encode():
                obj[k] = _utf8(v, k)
    return obj


# --- RFC 8259, checked on the raw bytes without building anything ---------------
# MicroPython's json.loads takes what RFC 8259 refuses (no commas or colons,
# trailing commas, non-string keys, raw control characters, any \x escape, a
# leading zero) and its decode() takes overlong and surrogate UTF-8; deep nesting
# runs it out of heap. This scan runs first: a value grammar with an explicit
# stack of open containers (no recursion), so its cost is a few small objects.

MAX_DEPTH = 32  # open containers; a setup body is a flat object


def _bad(what, i):
    return ValueError("%s at byte %d" % (what, i))


def _ws(b, i):
    while i < len(b) and b[i] in b" \t\n\r":
        i += 1
    return i


def _strict(b):
    # Returns if b is exactly one JSON text, else raises ValueError.
    n = len(b)
    stack = bytearray(MAX_DEPTH)  # the closing byte of each open container
    d = 0  # how many are open
    i = 0
    while True:
        i = _ws(b, i)  # a value starts here
        c = b[i] if i < n else 0
        if c == 0x7B or c == 0x5B:  # { [
            if d == MAX_DEPTH:
                raise _bad("nested deeper than %d" % MAX_DEPTH, i)
            stack[d] = c + 2  # } ]
            d += 1
            i = _ws(b, i + 1)
            if i < n and b[i] == c + 2:
                d -= 1
                i += 1
            else:
                if c == 0x7B:
                    i = _key(b, i)
                continue
        elif c == 0x22:
            i = _string(b, i)
        elif c == 0x2D or 0x30 <= c <= 0x39:
            i = _number(b, i)
        elif b[i:i + 4] in (b"true", b"null"):
            i += 4
        elif b[i:i + 5] == b"false":
            i += 5
        else:
            raise _bad("expected a value", i)
        while True:  # after a value: a comma, a close, or the end of the text
            i = _ws(b, i)
            if not d:
                if i < n:
                    raise _bad("text after the end", i)
                return
            c = b[i] if i < n else 0
            if c == stack[d - 1]:
                d -= 1
                i += 1
            elif c == 0x2C:
                i += 1
                if stack[d - 1] == 0x7D:
                    i = _key(b, i)
                break
            else:
                raise _bad("expected , or " + chr(stack[d - 1]), i)


def _key(b, i):
    # A member's name and its colon; returns where the value starts.
    i = _ws(b, i)
    if i >= len(b) or b[i] != 0x22:
        raise _bad("expected a string key", i)
    i = _ws(b, _string(b, i))
    if i >= len(b) or b[i] != 0x3A:
        raise _bad("expected :", i)
    return i + 1


def _string(b, i):
    # b[i] is the opening quote; returns the index after the closing one.
    n = len(b)
    i += 1
    while i < n:
        c = b[i]
        if c == 0x22:
            return i + 1
        if c < 0x20:
            raise _bad("control character in a string", i)
        if c == 0x5C:
            c = b[i + 1] if i + 1 < n else 0
            if c == 0x75:  # \\uXXXX
                h = b[i + 2:i + 6]
                if len(h) < 4:
                    raise _bad("bad \\u escape", i)
                for x in h:
                    if x not in b"0123456789abcdefABCDEF":
                        raise _bad("bad \\u escape", i)
                i += 6
            elif c and c in b'"\\/bfnrt':
                i += 2
            else:
                raise _bad("bad escape", i)
        elif c < 0x80:
            i += 1
        else:
            # RFC 3629: the lead byte fixes the length and the second byte's range,
            # which rules out overlong forms, surrogates and anything past U+10FFFF.
            if 0xC2 <= c <= 0xDF:
                k, lo, hi = 1, 0x80, 0xBF
            elif c == 0xE0:
                k, lo, hi = 2, 0xA0, 0xBF
            elif c == 0xED:
                k, lo, hi = 2, 0x80, 0x9F
            elif 0xE1 <= c <= 0xEF:
                k, lo, hi = 2, 0x80, 0xBF
            elif c == 0xF0:
                k, lo, hi = 3, 0x90, 0xBF
            elif 0xF1 <= c <= 0xF3:
                k, lo, hi = 3, 0x80, 0xBF
            elif c == 0xF4:
                k, lo, hi = 3, 0x80, 0x8F
            else:
                raise _bad("invalid UTF-8", i)
            if i + k >= n or not lo <= b[i + 1] <= hi:
                raise _bad("invalid UTF-8", i)
            for x in b[i + 2:i + k + 1]:
                if x & 0xC0 != 0x80:
                    raise _bad("invalid UTF-8", i)
            i += k + 1
    raise _bad("unterminated string", i)


def _number(b, i):
    # -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    if b[i] == 0x2D:
        i += 1
    j = _digits(b, i)
    if j == i or (b[i] == 0x30 and j > i + 1):
        raise _bad("bad number", i)
    if j < len(b) and b[j] == 0x2E:
        i = j + 1
        j = _digits(b, i)
        if j == i:
            raise _bad("bad number", i)
    if j < len(b) and b[j] in b"eE":
        i = j + 1
        if i < len(b) and b[i] in b"+-":
            i += 1
        j = _digits(b, i)
        if j == i:
            raise _bad("bad number", i)
    return j


def _digits(b, i):
    while i < len(b) and 0x30 <= b[i] <= 0x39:
        i += 1
    return i


def _utf8(v, field):
    # MicroPython's json turns an escaped pair like "\ud83d\ude00" into two 3-byte
    # surrogate halves (CESU-8: 0xED 0xA0-0xBF ..) and lets a lone one through: an
    # emoji SSID would be stored (and joined) as the wrong bytes, and counted as 6.
    # Rebuild pairs as real 4-byte UTF-8; a lone surrogate is not text at all.
    # (Here, not in validate.py: only setup mode needs it, home mode's heap is the tight one.)
    b = v.encode()
    out = bytearray()
    j = 0  # b[:j] is dealt with
    i = b.find(b"\xed")
    while i >= 0:
        nxt = i + 1
        if i + 2 < len(b) and b[i + 1] >= 0xA0:  # U+D800-DFFF; 0xED 0x80-0x9F is ordinary text
            if b[i + 1] >= 0xB0 or b[i + 3:i + 4] != b"\xed" or len(b) < i + 6 or b[i + 4] < 0xB0:
                raise Reject(400, "invalid_field", field + " holds a lone UTF-16 surrogate", field)
            hi = ((b[i + 1] & 0x0F) << 6) | (b[i + 2] & 0x3F)
            lo = ((b[i + 4] & 0x0F) << 6) | (b[i + 5] & 0x3F)
            cp = 0x10000 + (hi << 10) + lo
            out += b[j:i]
            out += bytes((0xF0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3F), 0x80 | ((cp >> 6) & 0x3F), 0x80 | (cp & 0x3F)))
            j = nxt = i + 6
        i = b.find(b"\xed", nxt)
    out += b[j:]
    return str(out, "utf-8")


class Server:
    max_head = 1024  # request line + headers, bytes
    max_body = 1024  # PROTOCOL.md: larger bodies get 413 too_large
    max_clients = 5  # further connections get 503 at once (sockets and RAM are scarce)
    timeout_ms = 5000  # a whole request must arrive within this (slowloris)
    chunk = 256

    def __init__(self, routes, on_request=None, limits=None, buf=None):
        # routes: {path: {method: handler}}; handler(raw_body) -> (status, obj[, after])
        # where `after` is called once the response has been sent and closed.
        # limits: {path: max body bytes} for routes that take more than max_body.
        # Bodies are read into one buffer reserved while the heap still had a large
        # free block (later it has none: see pem.py), padded with blanks (JSON allows
        # trailing whitespace) and handed to the handler as it is; buf: that buffer,
        # if the caller reserved it (app.py does). A second body arriving while it is
        # in use is read the old way if it is short (max_body), else gets 503.
        self.routes = routes
        self.on_request = on_request
        self.limits = limits or {}
        self._size = max([self.max_body] + list(self.limits.values()))
        self._big = buf if buf is not None and len(buf) >= self._size else None
        self._big_busy = False
        if self._big is None:
            try:
                self._big = bytearray(self._size)
            except MemoryError:
                pass  # no room: short bodies the old way, long ones get 503
        if self._big is not None:
            _blank(self._big, len(self._big))
        self.active = 0

    async def handle(self, reader, writer):
        if self.active >= self.max_clients:
            try:
                await _respond(writer, 503, {"error": "busy", "detail": "too many connections"})
            except Exception:
                pass
            await _close(writer)
            return
        self.active += 1
        after = None
        try:
            after = await asyncio.wait_for_ms(self._serve(reader, writer), self.timeout_ms)
        except _Quiet:
            pass  # connected and left without a word (a port check)
        except Exception as e:  # timeout, reset, garbage: this connection only
            log("http: connection dropped:", type(e).__name__)
        finally:
            self.active -= 1
            await _close(writer)
        if after:
            after()

    async def _serve(self, reader, writer):
        try:
            method, path, headers, rest = await self._read_head(reader)
            status, obj, after = await self._dispatch(reader, method, path, headers, rest)
        except Reject as r:
            await _respond(writer, r.status, r.body(), r.head)
            await _discard(reader)
            return None
        await _respond(writer, status, obj)
        return after

    async def _read_head(self, reader):
        buf = b""
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(buf) > self.max_head:
                raise Reject(431, "headers_too_large", "request line and headers exceed %d bytes" % self.max_head)
            data = await reader.read(self.chunk)
            if not data:
                raise _Quiet() if not buf else OSError("closed before the headers ended")
            buf += data
        if end > self.max_head:
            raise Reject(431, "headers_too_large", "request line and headers exceed %d bytes" % self.max_head)
        rest = buf[end + 4:]
        try:
            lines = buf[:end].decode().split("\r\n")
        except UnicodeError:
            raise Reject(400, "bad_request", "headers are not valid UTF-8")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[0].isalpha() or not parts[0].isupper() \
                or not parts[1].startswith("/") or not parts[2].startswith("HTTP/1."):
            raise Reject(400, "bad_request", "malformed request line")
        headers = {}
        for line in lines[1:]:
            i = line.find(":")
            if i <= 0:
                raise Reject(400, "bad_request", "malformed header line")
            headers[line[:i].strip().lower()] = line[i + 1:].strip()
        path = parts[1].split("?", 1)[0]
        return parts[0], path, headers, rest

    async def _dispatch(self, reader, method, path, headers, rest):
        if self.on_request:
            self.on_request()
        if "transfer-encoding" in headers:
            raise Reject(411, "length_required", "send the body with Content-Length")
        length = headers.get("content-length", "0")
        if not length.isdigit():
            raise Reject(400, "bad_request", "bad Content-Length")
        length = int(length)
        limit = self.limits.get(path, self.max_body)
        if length > limit:
            raise Reject(413, "too_large", "body exceeds %d bytes" % limit)
        methods = self.routes.get(path)
        if methods is None:
            raise Reject(404, "not_found", "no such endpoint: " + path)
        handler = methods.get(method)
        if handler is None:
            raise Reject(405, "method_not_allowed", "use " + " or ".join(methods),
                         head="Allow: " + ", ".join(methods) + "\r\n")  # RFC 9110 requires it
        big = length > 0 and self._big is not None and not self._big_busy
        if not big and length > self.max_body:
            raise Reject(503, "busy", "another long body is being read: try again in a second")
        if big:
            self._big_busy = True
            buf = self._big
        try:
            if big:
                body = await _read_big_into(buf, reader, rest, length)
            else:
                body = rest[:length]
                if len(body) < length:
                    body += await reader.readexactly(length - len(body))
            try:
                res = handler(body)
            except Reject:
                raise
            except Exception as e:
                log("http: handler failed:", repr(e))
                raise Reject(500, "internal", "internal error")
        finally:
            if big:
                _blank(buf, length)  # for the next request
                self._big_busy = False
        if len(res) == 2:
            return res[0], res[1], None
        return res



def _blank(buf, n):
    for i in range(n):
        buf[i] = 0x20


async def _read_big_into(buf, reader, rest, length):
    got = min(len(rest), length)
    buf[0:got] = rest[:got]
    mv = memoryview(buf)
    while got < length:
        n = await reader.readinto(mv[got:length])
        if not n:
            raise OSError("closed before the body ended")
        got += n
    return buf


async def _respond(writer, status, obj, extra=""):
    body = json.dumps(obj)
    head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n" % (
        status, _REASONS.get(status, "Error"), len(body.encode()), extra)
    writer.write(head.encode() + body.encode())
    await writer.drain()


async def _discard(reader):
    # Closing a socket with unread input makes the kernel send RST, and a client
    # can then lose the error response it has not read yet. Swallow a little.
    try:
        for _ in range(8):
            if not await asyncio.wait_for_ms(reader.read(256), 100):
                break
    except Exception:
        pass


async def _close(writer):
    try:
        writer.close()
        await writer.wait_closed()
    except Exception:
        pass
