# TCP connect with a deadline, through the board's view of the network.
#
# asyncio.open_connection returns as soon as the socket is writable, which is
# also the case when the peer refused: poll() flags tell the two apart, so a
# refused or unreachable broker is known at once instead of on the first read.
import asyncio
import select
import socket
import time

_EINPROGRESS = 115
_ECONNREFUSED = 111
_ETIMEDOUT = 110
_BAD = select.POLLERR | select.POLLHUP


async def connect(board, host, port, timeout_ms):
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
    return asyncio.StreamReader(s)


async def probe(board, host, port, timeout_ms):
    try:
        stream = await connect(board, host, port, timeout_ms)
    except OSError:
        return False
    await close(stream)
    return True


async def close(stream):
    try:
        stream.close()
        await stream.wait_closed()
    except Exception:
        pass
