"""The seed's two backend endpoints (PROTOCOL.md section 3), served by the station so the
seed's mobile app can use a station as its backend.

    api = BackendApi(registry, broker_host="192.168.29.91", broker=embedded_broker)
    api.start()          # own thread and asyncio loop; raises BackendApiStartError
    ...
    api.stop()

POST /api/provision/register/  {"chip_id": "temp_1234567890", "home_id": 1,
                                "device_name": "Living Room Sensor"}
    -> {"provisioning_id": "...", "mqtt_config": {"broker_host", "broker_port",
        "topic_prefix", "node_name", "username", "password"}}
GET  /api/provision/status/{id}
    -> {"provisioning_id", "is_provisioned", "device_id", "connected_at"}

aiohttp serves it in its own thread and event loop (docs/DESIGN.md, "Seed backend API");
registry calls run on one worker thread, never on the loop. The issued token is in the
register response only; it is never logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from station.errors import StationError
from station.loop_thread import LoopThread
from station.registry import Registry, RegistryError

if TYPE_CHECKING:
    from broker import EmbeddedBroker

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PORT = 8000
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 16 * 1024
MAX_CHIP_ID = 64  # ProvisioningJob.requested_chip_id
MAX_DEVICE_NAME = 100  # Device.name


class BackendApiStartError(StationError):
    pass


class _FieldError(Exception):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(field, detail)
        self.field = field
        self.detail = detail


def iso_utc(ts: dt.datetime | None) -> str | None:
    """The registry's naive UTC time as the seed writes it: 2026-01-20T21:30:00Z."""
    if ts is None:
        return None
    if ts.tzinfo is not None:
        ts = ts.astimezone(dt.UTC).replace(tzinfo=None)
    return ts.replace(microsecond=0).isoformat() + "Z"


# --- request checking --------------------------------------------------------------


def parse_register(body: Any) -> tuple[int, str | None, str]:
    """(home_id, chip_id, device_name) from a register body, or _FieldError."""
    if not isinstance(body, dict):
        raise _FieldError("body", "the body must be a JSON object")
    home_id = body.get("home_id")
    if "home_id" not in body:
        raise _FieldError("home_id", "home_id is required")
    if not isinstance(home_id, int) or isinstance(home_id, bool) or home_id < 1:
        raise _FieldError("home_id", "home_id must be a positive integer")
    chip_id = body.get("chip_id")
    if chip_id is not None and (
        not isinstance(chip_id, str) or not 1 <= len(chip_id.strip()) <= MAX_CHIP_ID
    ):
        raise _FieldError("chip_id", f"chip_id must be a string of 1-{MAX_CHIP_ID} characters")
    name = body.get("device_name", "")
    if name is None:
        name = ""
    if not isinstance(name, str) or len(name.strip()) > MAX_DEVICE_NAME:
        raise _FieldError(
            "device_name", f"device_name must be a string of at most {MAX_DEVICE_NAME} characters"
        )
    return home_id, chip_id.strip() if chip_id else None, name.strip()


def _error(status: int, code: str, detail: str | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": code}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return web.json_response(body, status=status)


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


@web.middleware
async def _json_errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    """aiohttp's own errors (404, 405, 413) as JSON, like everything else here."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        resp = _error(exc.status, _HTTP_CODES.get(exc.status, "error"))
        if "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except Exception:
        log.exception("backend API: %s %s failed", request.method, request.path)
        return _error(500, "internal", "internal error")


# --- the server --------------------------------------------------------------------


class BackendApi:
    """The seed's backend API over a Registry, in its own thread and event loop.

    broker_host: the address devices are told to dial (the station's LAN address).
    broker_port: defaults to the running `broker`'s port. With `broker`, a newly
    registered device can log in at once (its credentials are pushed to the broker).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        broker_host: str,
        broker_port: int | None = None,
        broker: EmbeddedBroker | None = None,
        bind_host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        seed_app_devices: bool | None = None,
    ) -> None:
        if broker_port is None and broker is None:
            raise ValueError("give broker_port, or the broker whose port to advertise")
        self.registry = registry
        self.broker = broker
        # Seed-app mode (default: the broker's setting): devices registered now may log
        # in without a token, as the seed's app sends none (broker/access.py).
        if seed_app_devices is None:
            seed_app_devices = broker is not None and broker.settings.seed_app_devices
        self.seed_app_devices = seed_app_devices
        self.broker_host = broker_host
        self._broker_port = broker_port
        self.bind_host = bind_host
        self._requested_port = port
        self._port: int | None = None
        self._lt = LoopThread("backend-api")
        self._runner: web.AppRunner | None = None
        self._db: ThreadPoolExecutor | None = None

    # -- facts -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._lt.running

    @property
    def port(self) -> int:
        return self._port if self._port is not None else self._requested_port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.bind_host in ("0.0.0.0", "") else self.bind_host
        return f"http://{host}:{self.port}"

    @property
    def broker_port(self) -> int:
        if self._broker_port is not None:
            return self._broker_port
        assert self.broker is not None
        return self.broker.port

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        # One worker: registry calls are short, and SQLite has one writer anyway.
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backend-api-db")
        try:
            self._lt.start(self._serve, START_TIMEOUT_S)
        except BaseException as exc:
            self._shutdown_db()
            if isinstance(exc, Exception):
                raise self._start_error(exc) from exc
            raise
        log.info(
            "seed backend API on %s:%d (devices are told broker %s:%d)",
            self.bind_host,
            self.port,
            self.broker_host,
            self.broker_port,
        )

    def stop(self) -> None:
        if not self._lt.started:
            return
        self._lt.stop(self._runner.cleanup if self._runner is not None else None, STOP_TIMEOUT_S)
        self._runner = None
        self._shutdown_db()
        log.info("seed backend API stopped")

    def __enter__(self) -> BackendApi:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _shutdown_db(self) -> None:
        if self._db is None:
            return
        db = self.registry.db
        # Per-thread connections (SQLite file): close the worker's own. A shared one
        # (":memory:") belongs to the whole registry and stays open.
        if getattr(db, "thread_safe", False):
            self._db.submit(lambda: db.is_closed() or db.close()).result(STOP_TIMEOUT_S)
        self._db.shutdown(wait=True)
        self._db = None

    async def _serve(self) -> None:
        app = web.Application(middlewares=[_json_errors], client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/api/provision/register/", self._register)
        app.router.add_post("/api/provision/register", self._register)
        app.router.add_get("/api/provision/status/{provisioning_id}", self._status)
        app.router.add_get("/api/provision/status/{provisioning_id}/", self._status)
        # access_log=None: our own log line per request says what matters, without bodies.
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.bind_host, self._requested_port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server  # the bound port when port=0
        sockets = getattr(server, "sockets", None)
        assert sockets
        self._port = sockets[0].getsockname()[1]

    def _start_error(self, exc: BaseException) -> BackendApiStartError:
        where = f"{self.bind_host}:{self._requested_port}"
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            return BackendApiStartError(
                f"cannot start the seed backend API: port {self._requested_port} on "
                f"{self.bind_host} is already in use. Stop the other server or choose "
                "another port with --port."
            )
        if isinstance(exc, OSError):
            return BackendApiStartError(
                f"cannot start the seed backend API on {where}: {exc.strerror or exc}"
            )
        return BackendApiStartError(f"cannot start the seed backend API on {where}: {exc}")

    async def _in_db(self, fn: Callable[[], T]) -> T:
        assert self._db is not None
        return await asyncio.get_running_loop().run_in_executor(self._db, fn)

    # -- handlers ----------------------------------------------------------------------

    async def _register(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeError, ValueError):
            return _error(400, "bad_json", "the body must be a JSON object")
        try:
            home_id, chip_id, name = parse_register(body)
        except _FieldError as exc:
            code = "bad_json" if exc.field == "body" else "invalid_field"
            extra = {} if exc.field == "body" else {"field": exc.field}
            return _error(400, code, exc.detail, **extra)
        try:
            answer = await self._in_db(lambda: self._do_register(home_id, chip_id, name))
        except _FieldError as exc:
            return _error(400, "invalid_field", exc.detail, field=exc.field)
        except RegistryError as exc:  # e.g. no free node name: the station's problem
            log.error("backend API: registration failed: %s", exc)
            return _error(500, "registration_failed", str(exc))
        log.info(
            "backend API: registered %s (%s) for home %d as %s",
            chip_id or "?",
            name or "unnamed",
            home_id,
            answer["mqtt_config"]["node_name"],
        )
        return web.json_response(answer)

    def _do_register(self, home_id: int, chip_id: str | None, name: str) -> dict[str, Any]:
        try:
            home = self.registry.home(home_id)
        except RegistryError:
            raise _FieldError("home_id", f"no home with id {home_id} on this station") from None
        issued = self.registry.register_device(
            home=home,
            name=name,
            requested_chip_id=chip_id,
            seed_app_login=self.seed_app_devices,
        )
        device = issued.device
        if self.broker is not None:
            self.broker.device_registered(device)
        return {
            "provisioning_id": issued.job.provisioning_id,
            "mqtt_config": {
                "broker_host": self.broker_host,
                "broker_port": self.broker_port,
                "topic_prefix": device.topic_prefix,
                "node_name": device.node_name,
                "username": device.mqtt_username,
                "password": issued.token,
            },
        }

    async def _status(self, request: web.Request) -> web.Response:
        pid = request.match_info["provisioning_id"]
        answer = await self._in_db(lambda: self._do_status(pid))
        if answer is None:
            return web.json_response({"error": "not_found"}, status=404)
        return web.json_response(answer)

    def _do_status(self, provisioning_id: str) -> dict[str, Any] | None:
        job = self.registry.job(provisioning_id)
        if job is None:
            return None
        done = bool(job.is_provisioned)
        return {
            "provisioning_id": job.provisioning_id,
            "is_provisioned": done,
            # The registry row exists from step 1, but the seed's app reads device_id as
            # "the device that came online": null until then.
            "device_id": job.device_id if done else None,
            "connected_at": iso_utc(job.connected_at) if done else None,
        }
