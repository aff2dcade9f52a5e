"""An asyncio event loop in a thread of its own, driven from synchronous code.

The embedded broker and the seed backend API are asyncio servers inside a program
whose other threads (GUI, CLI, provisioning workers) are not: each runs its server
here, so nothing else ever waits on, or blocks, its loop.

    lt = LoopThread("mqtt-broker")
    lt.start(setup)              # runs `await setup()` in the loop; raises what it raises
    lt.call(some_coroutine())    # from any thread, waits for the result
    lt.stop(cleanup)             # `await cleanup()`, then the loop ends
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)


class LoopThread:
    def __init__(
        self,
        name: str,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
    ) -> None:
        self.name = name
        self.loop_factory = loop_factory
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def started(self) -> bool:
        """start() succeeded and stop() has not been called yet."""
        return self._thread is not None

    def start(self, setup: Callable[[], Awaitable[None]], timeout: float) -> None:
        """Start the thread and run `setup` in its loop; its exception is re-raised here
        (and the thread ended) so a caller gets e.g. "port already in use" at once."""
        started: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._main, args=(setup, started), name=self.name, daemon=True
        )
        self._thread.start()
        try:
            started.result(timeout)
        except BaseException:
            self._thread.join(timeout)
            self._thread = None
            raise

    def _main(self, setup: Callable[[], Awaitable[None]], started: Future[None]) -> None:
        loop = self.loop_factory()
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            loop.run_until_complete(setup())
        except BaseException as exc:
            started.set_exception(exc)
            loop.close()
            self.loop = None
            return
        started.set_result(None)
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
            self.loop = None

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
        """Run a coroutine in the loop from another thread and wait for its result."""
        if self.loop is None:
            if asyncio.iscoroutine(coro):
                coro.close()  # never awaited: close it rather than leak a warning
            raise RuntimeError(f"{self.name}: the loop is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, cleanup: Callable[[], Coroutine[Any, Any, None]] | None, timeout: float) -> None:
        """Run `cleanup` in the loop (logged, not raised, if it fails), then end it."""
        loop, thread = self.loop, self._thread
        if thread is None:
            return
        if loop is not None:
            if cleanup is not None:
                try:
                    asyncio.run_coroutine_threadsafe(cleanup(), loop).result(timeout)
                except Exception:
                    log.exception("%s: shutdown did not finish cleanly", self.name)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None
