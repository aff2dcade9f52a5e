from __future__ import annotations

import asyncio
import threading

import pytest

from station.loop_thread import LoopThread


def test_runs_setup_call_and_cleanup_in_its_own_thread():
    seen = {}

    async def setup():
        seen["setup"] = threading.current_thread().name

    async def work(x):
        await asyncio.sleep(0)
        return x * 2, threading.current_thread().name

    async def cleanup():
        seen["cleanup"] = True

    lt = LoopThread("test-loop")
    lt.start(setup, 5)
    assert lt.running and lt.started and seen["setup"] == "test-loop"
    assert lt.call(work(21), 5) == (42, "test-loop")
    lt.stop(cleanup, 5)
    assert seen["cleanup"] and not lt.running and not lt.started and lt.loop is None


def test_a_failing_setup_raises_in_the_caller_and_ends_the_thread():
    async def setup():
        raise OSError(98, "Address already in use")

    lt = LoopThread("test-loop-fail")
    with pytest.raises(OSError, match="already in use"):
        lt.start(setup, 5)
    assert not lt.running and not lt.started
    with pytest.raises(RuntimeError, match="not running"):
        lt.call(asyncio.sleep(0), 1)
    lt.stop(None, 1)  # stopping what never started is a no-op


def test_a_failing_cleanup_is_logged_and_the_loop_still_ends(caplog):
    async def setup():
        pass

    async def cleanup():
        raise RuntimeError("boom")

    lt = LoopThread("test-loop-cleanup")
    lt.start(setup, 5)
    lt.stop(cleanup, 5)
    assert not lt.running
    assert "shutdown did not finish cleanly" in caplog.text
