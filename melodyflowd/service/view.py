"""The live view: a page in the browser, served by aiohttp in a thread of its own.

The main loop publishes (`publish`, `set_chart`) what viewstate.Watcher read from the
engine; the server thread pushes it to the open pages as server-sent events (GET
/events). Buttons on the page POST /action; the server thread only queues the action,
and the main loop drains the queue (`actions`) and does it the way the control CCs do
(daemon._view_action). Nothing here runs in, or shares a lock with, the MIDI callback.

Who may do what:
- It listens on 127.0.0.1 unless the user names another address (view.address).
- Every request must name this server by an IP address or `localhost` in its Host header
  (a page on another site that rebinds its DNS name to 127.0.0.1 sends its own name).
- A request that carries an Origin (browsers do, on fetches and event streams) must come
  from the page's own origin; a cross-site fetch (Sec-Fetch-Site) is refused as well.
- Actions need the token made at start-up, which is printed in the page's address
  (`?token=`); the page sends it back in the X-Melodyflowd-Token header. Without it the
  page still shows the song, with the buttons off.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import ipaddress
import json
import logging
import queue
import secrets
import threading
from importlib import resources
from typing import Any

from melodyflowd.errors import UserError

log = logging.getLogger("melodyflowd")

ACTIONS = ("regenerate", "next", "previous", "panic")
TOKEN_HEADER = "X-Melodyflowd-Token"
HEARTBEAT_SECONDS = 15.0          # an SSE comment this often finds pages that went away
STATIC = {                        # path -> (package file, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/view.js": ("view.js", "text/javascript; charset=utf-8"),
    "/view.css": ("view.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def control_message(controls: Any, action: str) -> list[int] | None:
    """The control change that does `action` (next, previous, panic) with these control
    settings (ControlMap), or None when that control is off. Panic falls back to All Notes
    Off (CC 123), which also ends every note the engine started."""
    number = {"next": controls.next_variation, "previous": controls.previous_variation,
              "panic": controls.panic}.get(action)
    if action == "panic" and number is None:
        number = 123
    if number is None:
        return None
    channel = controls.channel if controls.channel is not None else 0
    return [0xB0 | channel, number, 127]


def host_allowed(host: str | None, port: int) -> bool:
    """Host header names this server: an IP address or localhost, with our port."""
    if not host:
        return False
    name, sep, tail = host.rpartition(":")
    if not sep or tail != str(port):
        return False
    name = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """No Origin (not a browser's cross-origin request), or exactly the page's own."""
    return origin is None or (host is not None and origin == f"http://{host}")


class ViewServer:
    """ViewServer(address, port).start() -> the page's URL; stop() when done."""

    def __init__(self, address: str = "127.0.0.1", port: int = 8765,
                 token: str | None = None) -> None:
        self.address = address
        self.port = port
        self.token = token or secrets.token_urlsafe(18)
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._state = "{}"
        self._chart = "{}"
        self._version = 0                     # of _state and _chart, bumped by publish
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._wakers: set[asyncio.Event] = set()
        self._closing = False
        self._files = {path: (resources.files("melodyflowd.service").joinpath("view", name)
                              .read_bytes(), kind) for path, (name, kind) in STATIC.items()}

    # -- the main loop's side ------------------------------------------------------------
    def start(self) -> str:
        """Bind and serve in a thread; the URL with the token. A port in use or an address
        that is not this machine's: UserError (exit 2)."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="melodyflowd view",
                                        daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)
        except OSError as exc:
            self.stop()
            where = f"{self.address} port {self.port}"
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"view: {where} is already in use (another melodyflowd?); "
                                "pick another with --view PORT") from None
            raise UserError(f"view: cannot listen on {where}: {exc.strerror or exc}; "
                            "use an address of this machine (--view-address)") from None
        except BaseException:
            self.stop()
            raise
        return self.url

    @property
    def url(self) -> str:
        host = self.address
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/?token={self.token}"

    @property
    def clients(self) -> int:
        """Pages connected to the event stream now."""
        return len(self._wakers)

    def publish(self, state: dict[str, Any]) -> None:
        """A new state for the pages (from the main loop). Pages that are behind get only
        the latest."""
        self._state = json.dumps(state, separators=(",", ":"))
        self._bump()

    def set_chart(self, layout: dict[str, Any]) -> None:
        self._chart = json.dumps(layout, separators=(",", ":"))
        self._bump()

    def actions(self) -> list[str]:
        """The actions asked for since the last call, oldest first (for the main loop)."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        self._closing = True
        if self._runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not loop.is_running():
            loop.close()
        self._loop = None
        self._thread = None

    def _bump(self) -> None:
        self._version += 1
        loop = self._loop
        if loop is not None and self._wakers:
            with contextlib.suppress(RuntimeError):        # the loop is closing
                loop.call_soon_threadsafe(self._wake_all)

    # -- the server thread ---------------------------------------------------------------
    def _wake_all(self) -> None:
        for event in self._wakers:
            event.set()

    async def _serve(self) -> None:
        from aiohttp import web

        @web.middleware
        async def guard(request: Any, handler: Any) -> Any:
            return await self._guard(request, handler)

        app = web.Application(middlewares=[guard])
        app.router.add_get("/", self._static)
        app.router.add_get("/view.js", self._static)
        app.router.add_get("/view.css", self._static)
        app.router.add_get("/events", self._events)
        app.router.add_post("/action", self._action)
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.address, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0:
            server = site._server                     # the port the system chose
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _shutdown(self) -> None:
        self._wake_all()
        await self._runner.cleanup()
        self._runner = None

    async def _guard(self, request: Any, handler: Any) -> Any:
        from aiohttp import web

        host = request.headers.get("Host")
        if not host_allowed(host, self.port):
            return web.Response(status=403, text="this server is reached by its IP address "
                                                 "or localhost only\n")
        if not origin_allowed(request.headers.get("Origin"), host) \
                or request.headers.get("Sec-Fetch-Site") == "cross-site":
            return web.Response(status=403, text="requests from other sites are refused\n")
        response = await handler(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _static(self, request: Any) -> Any:
        from aiohttp import web

        body, kind = self._files[request.path]
        return web.Response(body=body, headers={"Content-Type": kind})

    async def _action(self, request: Any) -> Any:
        from aiohttp import web

        token = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            return web.json_response({"error": "a wrong or missing token: open the address "
                                      "melodyflowd printed"}, status=403)
        try:
            action = (await request.json()).get("action")
        except (ValueError, AttributeError):
            action = None
        if action not in ACTIONS:
            return web.json_response({"error": "unknown action; accepted: "
                                      + ", ".join(ACTIONS)}, status=400)
        self._queue.put(action)
        return web.json_response({"queued": action}, status=202)

    async def _events(self, request: Any) -> Any:
        from aiohttp import web

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        await response.prepare(request)
        wake = asyncio.Event()
        self._wakers.add(wake)
        sent_chart = None
        sent_state = None
        try:
            while not self._closing:
                chart, state = self._chart, self._state
                if chart is not sent_chart:
                    await response.write(f"event: chart\ndata: {chart}\n\n".encode())
                    sent_chart = chart
                if state is not sent_state:
                    await response.write(f"event: state\ndata: {state}\n\n".encode())
                    sent_state = state
                wake.clear()
                if self._chart is not sent_chart or self._state is not sent_state:
                    continue
                try:
                    await asyncio.wait_for(wake.wait(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    await response.write(b": still here\n\n")
        except ConnectionResetError:
            pass
        finally:
            self._wakers.discard(wake)
        return response


class DaemonView:
    """The view as the daemon runs it: the server, the watcher that reads the engine each
    main-loop turn, and the control port the buttons send their CCs through."""

    def __init__(self, view_settings: Any) -> None:
        from melodyflowd.service.viewstate import Watcher

        self.server = ViewServer(view_settings.address, view_settings.port)
        self.watcher = Watcher()
        self.control_port: Any = None
        self._chart: Any = None

    def start(self) -> str:
        url = self.server.start()
        log.info("live view: %s", url)
        if self.server.address in ("0.0.0.0", "::"):
            log.info("live view: listening on every interface (%s); other machines use this "
                     "machine's address", self.server.address)
        return url

    def attach(self, port_settings: Any) -> None:
        """Once the ports are open: the control port into our input, for the buttons."""
        from melodyflowd.live.ports import ControlPort

        self.control_port = ControlPort(port_settings, f"{port_settings.in_name} view")

    def turn(self, daemon: Any) -> list[str]:
        """Publish what changed since the last turn; the actions the pages asked for."""
        import time

        from melodyflowd.service.viewstate import chart_layout

        engine = daemon.engine
        chart = engine.chart if engine is not None else daemon.chart
        if chart is not self._chart and chart is not None:
            self._chart = chart
            self.server.set_chart(chart_layout(chart))
        if engine is None:
            status = f"starting: {daemon.progress or 'loading'}"
        elif daemon.pending is not None:
            status = f"playing; new phrases: {daemon.progress or 'generating'}"
        else:
            status = "playing"
        ready = engine is not None and self.control_port is not None
        controls = engine.settings.controls if engine is not None else None
        if not self.server.clients:          # nobody looks: only count the notes played
            self.watcher.sample(engine)
            return self.server.actions()
        state = self.watcher.look(
            engine, time.perf_counter(), chart=chart, status=status,
            bank_age=time.monotonic() - daemon.bank_since, bank_source=daemon.bank_source,
            controls={"regenerate": engine is not None,
                      **{action: ready and control_message(controls, action) is not None
                         for action in ("next", "previous", "panic")}})
        if state is not None:
            self.server.publish(state)
        return self.server.actions()

    def send_control(self, controls: Any, action: str) -> bool:
        """Send the CC that does `action` into our input; False when that control is off."""
        message = control_message(controls, action)
        if message is None or self.control_port is None:
            return False
        self.control_port.send(message)
        return True

    def close(self) -> None:
        if self.control_port is not None:
            self.control_port.close()
            self.control_port = None
        self.server.stop()
