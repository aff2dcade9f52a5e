"""Malformed, oversized, slow and cut connections: each closes its own connection,
the server keeps serving, and nothing stored changes."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from fw_helpers import raw_http


@pytest.fixture
def before(configured) -> dict:
    return configured[1]


@pytest.fixture
def addr(device, before) -> str:
    return device.wait_for_setup_ap().api


def _alive(api) -> None:
    assert api.get("/api/info").json()["chip_id"] == "A4CF12EF5678"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"garbage\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /api/info\r\n\r\n",
        b"GET /api/info HTTP/9.9\r\n\r\n",
        b"get /api/info HTTP/1.1\r\n\r\n",
        b"GET api/info HTTP/1.1\r\n\r\n",
        b"GET /api/info HTTP/1.1\r\nNoColonHeader\r\n\r\n",
        b"GET /api/info HTTP/1.1\r\n: empty-name\r\n\r\n",
        b"POST /api/wifi HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST /api/wifi HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"\xff\xfe\xfd /api/info HTTP/1.1\r\n\r\n",
        b"\x00" * 600 + b"\r\n\r\n",
    ],
)
def test_malformed_request_gets_400_and_server_keeps_serving(
    addr, api, device, before, request_bytes
):
    reply = raw_http(addr, request_bytes)
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:80]
    assert b'"error": "bad_request"' in reply
    _alive(api)
    assert device.config() == before


def test_huge_headers_get_431_and_close(addr, api, device, before):
    reply = raw_http(addr, b"GET /api/info HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 5000 + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431 ")
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(400))
    assert raw_http(addr, b"GET /api/info HTTP/1.1\r\n" + many + b"\r\n").startswith(
        b"HTTP/1.1 431 "
    )
    _alive(api)
    assert device.config() == before


def test_endless_line_without_newline_is_cut_off(addr, api, device, before):
    # No CRLF ever: the device stops reading at its limit and answers 431 instead
    # of buffering the stream until its heap runs out.
    host, _, port = addr.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        reply = b""
        try:
            for _ in range(200):
                s.sendall(b"A" * 1024)
        except OSError:
            pass  # the device closed on us: fine, if it answered first
        try:
            reply = s.recv(100)
        except OSError:
            reply = b"reset"
    assert reply.startswith(b"HTTP/1.1 431 ") or reply == b"reset"
    _alive(api)
    assert device.config() == before


def test_chunked_body_is_refused_with_411(addr, api, device, before):
    reply = raw_http(
        addr,
        b"POST /api/wifi HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 411 ")
    assert device.config() == before
    _alive(api)


def test_cut_connections_do_not_hurt(addr, api, device, before):
    for data in [
        b"",
        b"GET /api/in",
        b'POST /api/wifi HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"ssid":',
    ]:
        raw_http(addr, data, read=False)
    _alive(api)
    assert device.config() == before  # the half body never counted


def test_slow_client_is_dropped_while_others_are_served(addr, api):
    # slowloris: trickle bytes, never finish. The device times the request out
    # (5 s on the device) and serves other clients meanwhile.
    host, _, port = addr.rpartition(":")
    slow = socket.create_connection((host, int(port)), timeout=10)
    slow.sendall(b"GET /api/info HTTP/1.1\r\n")
    started = time.monotonic()
    for _ in range(3):
        _alive(api)
    slow.settimeout(10)
    closed_after = None
    try:
        while True:
            time.sleep(0.5)
            slow.sendall(b"X: y\r\n")
            if time.monotonic() - started > 9:
                break
    except OSError:
        closed_after = time.monotonic() - started
    else:
        with pytest.raises(OSError):
            slow.recv(1) or (_ for _ in ()).throw(OSError("closed"))
        closed_after = time.monotonic() - started
    finally:
        slow.close()
    assert closed_after is not None and closed_after < 9.5
    _alive(api)


def test_connection_flood_is_capped_and_the_server_recovers(addr, api):
    host, _, port = addr.rpartition(":")
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(12)]
    try:
        # Beyond its cap (5) the device answers 503 at once and closes, instead of
        # holding RAM for every idle connection.
        busy = 0
        for s in idle:
            s.settimeout(1.0)
            try:
                if s.recv(100).startswith(b"HTTP/1.1 503 "):
                    busy += 1
            except TimeoutError:
                pass
        assert busy == 12 - 5
    finally:
        for s in idle:
            s.close()
    _alive(api)


def test_parallel_clients_all_get_answers(api):
    results: list[int] = []

    def worker() -> None:
        for _ in range(5):
            results.append(api.__class__(api.base).get("/api/status").status_code)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count(200) == 15


def test_request_with_query_string_and_keepalive_header(addr):
    reply = raw_http(
        addr, b"GET /api/info?x=1 HTTP/1.1\r\nHost: 192.168.4.1\r\nConnection: keep-alive\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close" in reply
    assert b'"chip_id": "A4CF12EF5678"' in reply
