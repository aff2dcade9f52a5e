# TCP connect with a deadline, through the board's view of the network, and TLS
# on top of it when the config says so (issue 10).
#
# asyncio.open_connection returns as soon as the socket is writable, which is
# also the case when the peer refused: poll() flags tell the two apart, so a
# refused or unreachable broker is known at once instead of on the first read.
#
# TLS: MicroPython's ssl (Mbed TLS) verifies the broker's chain against the one CA
# from /api/mqtt and its name against the `broker` field (server_hostname). The
# handshake runs blocking, on a socket with a timeout, before the socket goes to
# asyncio: with do_handshake_on_connect=False (what asyncio.open_connection(ssl=)
# does) the handshake only advances inside the first write of application data,
# and the trial's broker check must learn the TLS verdict without sending MQTT.
# It blocks the loop for one handshake (56 ms on the unix port; the ESP32 has no
# ECC accelerator, so expect well under a second), each read bounded by timeout_ms.
import asyncio
import gc
import select
import socket
import time

_EINPROGRESS = 115
_ECONNREFUSED = 111
_ETIMEDOUT = 110
_BAD = select.POLLERR | select.POLLHUP


class TLSError(OSError):
    # The TCP connection was made but TLS failed: code is a short word for
    # /api/status ("broker_error"), detail the sentence a person reads.
    def __init__(self, code, detail):
        super().__init__(code)
        self.code = code
        self.detail = detail


# An SSLContext is one 2.8 KB object (unix port, 64-bit), and setup mode's heap
# is in pieces once its modules are in: the trial's check failed with MemoryError
# (allocating 3048 bytes) while 20 KB were free. app.py keeps one block free from
# boot (keep_spare):
# tls_context hands it over just before making the context, and probe takes it
# back as soon as the check is over, before anything else can settle in it. Home
# mode starts on a fresh heap and keeps none.
SPARE = 3072
_spare = None
_lent = False


def keep_spare():
    global _spare, _lent
    _lent = False
    if _spare is None:
        gc.collect()
        try:
            _spare = bytearray(SPARE)
        except MemoryError:
            _spare = None  # the next check may run out of memory, and will say so


def tls_context(ca_der):
    global _spare, _lent
    import ssl

    if _spare is not None:
        _spare = None
        _lent = True
        gc.collect()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Current modtls_mbedtls.c makes a client context CERT_REQUIRED already; set it
    # anyway, so no MicroPython release's default decides whether the broker is
    # verified. (setattr: the ESP32 stubs do not declare verify_mode.)
    setattr(ctx, "verify_mode", ssl.CERT_REQUIRED)  # noqa: B010
    ctx.load_verify_locations(cadata=ca_der)
    return ctx


async def connect(board, host, port, timeout_ms, ca=None):
    # ca: the DER of the broker's CA for TLS, or None for plain MQTT.
    name, dport = host, port  # what the certificate must name (server_hostname); for messages
    host, port = board.route(host, port)  # raises OSError if not reachable
    ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    s = socket.socket(ai[0], ai[1], ai[2])
    s.setblocking(False)
    try:
        try:
            s.connect(ai[-1])
        except OSError as e:
            if e.errno not in (_EINPROGRESS, 119):  # 119: EINPROGRESS on lwIP
                raise
        poller = select.poll()
        poller.register(s, select.POLLOUT)
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            ready = poller.poll(0)
            if ready:
                if ready[0][1] & _BAD:
                    raise OSError(_ECONNREFUSED)
                break
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise OSError(_ETIMEDOUT)
            await asyncio.sleep_ms(20)
    except BaseException:
        s.close()
        raise
    if ca is not None:
        s = _handshake(s, ca, name, dport, timeout_ms)
    return asyncio.StreamReader(s)


def _handshake(s, ca, name, port, timeout_ms):
    try:
        s.setblocking(True)
        s.settimeout(timeout_ms / 1000)
        t = tls_context(ca).wrap_socket(s, server_hostname=name)
        t.setblocking(False)
        return t
    except Exception as e:  # ValueError (verification), OSError (I/O, Mbed TLS), MemoryError
        s.close()
        import tlsfail  # only now: the wording costs heap

        raise tlsfail.error(e, name, port)


async def probe(board, host, port, timeout_ms, ca=None):
    # None if host:port answers (and, with ca, passes TLS), else why not: a
    # TLSError, or the OSError of the TCP connect.
    err = None
    try:
        stream = await connect(board, host, port, timeout_ms, ca)
    except OSError as e:
        err = e
    else:
        await close(stream)
        stream = None
    if _lent:
        keep_spare()  # the SSLContext is garbage now: its block, back at once
    return err


async def close(stream):
    try:
        stream.close()
        await stream.wait_closed()
    except Exception:
        pass
