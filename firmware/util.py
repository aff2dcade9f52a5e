# Small helpers shared by every mode: uptime, log lines, reconnect backoff, files.
import os
import random
import time

_up_ms = 0
_last = time.ticks_ms()


def uptime_s():
    # ticks_ms wraps (about 12 days on an ESP32): accumulate differences instead
    # of subtracting from the boot tick. Called at least every few seconds.
    global _up_ms, _last
    now = time.ticks_ms()
    _up_ms += time.ticks_diff(now, _last)
    _last = now
    return _up_ms // 1000


def log(*parts):
    # Never pass passwords or tokens here: this goes to the UART / the sim log.
    print("[%6d]" % uptime_s(), *parts)


class Backoff:
    # Exponential backoff with jitter: each delay is drawn from [d/2, d], d doubling
    # from lo to hi, so a fleet that lost its broker together does not return together.
    def __init__(self, lo_ms, hi_ms):
        self.lo = lo_ms
        self.hi = hi_ms
        self.cur = lo_ms

    def reset(self):
        self.cur = self.lo

    def next_ms(self):
        d = self.cur
        self.cur = min(self.cur * 2, self.hi)
        return d // 2 + (random.getrandbits(16) * (d - d // 2)) // 65535


def exists(path):
    # MicroPython has no os.path: a stat that fails is a missing file.
    try:
        os.stat(path)
        return True
    except OSError:
        return False
