"""What keeps other web pages and slow or hostile clients from using or holding the local server.

- **Host** (DNS rebinding): served on a loopback address, only requests addressed to a loopback name
  or address are answered (:func:`allowed_hosts`), for IPv4 and IPv6 alike.
- **Cross-site requests**: a request that changes state (POST, PUT, PATCH, DELETE) is refused when
  its ``Origin`` (or, without one, its ``Referer``) is another site than the server itself; a
  browser adds these headers to every such request, so any web page the user visits cannot make the
  browser upload to the server and read back the result. Clients that send neither (curl, scripts)
  are not browsers driven by a page, and are answered.
- **Slow clients** (:class:`Limits`): a connection that sends nothing, request headers that take too
  long, or a body that stalls or trickles, is cut off; connections past a cap are closed at once.
  Header and idle timeouts and the cap live in the HTTP protocol (:func:`server_config`), before any
  request exists; the body's in :class:`Guard`, which answers 408.
- **A client that leaves mid-upload** is one log line, not a traceback.

Refusals are the API's JSON errors: ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Limits:
    """How long the server waits for a client, and how many it keeps at once."""

    idle_timeout: float = 10.0
    """Seconds a connection may stay silent: after it opens, and between two requests."""
    header_timeout: float = 15.0
    """Seconds from a request's first byte until its headers are complete."""
    body_timeout: float = 30.0
    """Seconds the body may stall (no byte at all); a body is also cut off when, after this long, it
    has arrived at under ``min_body_rate`` on average."""
    min_body_rate: float = 10_000.0
    """Bytes per second, on average, a body must keep up after ``body_timeout`` seconds."""
    max_connections: int = 64
    """Connections held at once; one more is answered 503 and closed."""


DEFAULT_LIMITS = Limits()


# --------------------------------------------------------------------------- which host, which site


def allowed_hosts(bind_host: str) -> frozenset[str] | None:
    """The ``Host`` names a server bound to ``bind_host`` answers: every loopback name and address when it
    is a loopback one (127.0.0.1, ::1, localhost, ...), else None (no check: it is reachable by any name)."""
    name = bind_host.strip("[]").lower()
    if not is_loopback(name):
        return None
    return frozenset({"localhost", "127.0.0.1", "::1", name})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, IPv6 with or without brackets) is this computer only."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name in a ``Host`` header or URL authority, without the port: ``[::1]:8000`` -> ``::1``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _same_site(source: str, host_header: str) -> bool:
    """Whether an ``Origin`` or ``Referer`` value names this server (scheme http(s), host and port as asked)."""
    try:
        parts = urlsplit(source)
        authority = parts.netloc.rpartition("@")[2]
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and authority.lower() == host_header.strip().lower()


# --------------------------------------------------------------------------- the ASGI middleware


class Guard:
    """ASGI middleware: the Host and cross-site checks, the body's timeout, and one line per dropped upload.

    ``hosts``: the accepted ``Host`` names (:func:`allowed_hosts`), None for any. ``log``: where the one
    line goes (the server's terminal).
    """

    def __init__(
        self,
        app,
        hosts: Iterable[str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        log: Callable[[str], None] | None = None,
    ):
        self.app = app
        self.hosts = None if hosts is None else frozenset(hosts)
        self.limits = limits
        self.log = log or (lambda line: None)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope["method"], headers)
        if refusal is not None:
            status, message = refusal
            return await _respond(send, status, message)
        await self._run(scope, receive, send)

    def _refusal(self, method: str, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.hosts is not None and host_name(host) not in self.hosts:
            shown = host[:80] or "(none)"
            return 400, (
                f"Host {shown}: this server answers only requests addressed to this computer "
                f"({', '.join(sorted(self.hosts))}); open the address patch2image serve printed"
            )
        if method not in SAFE_METHODS:
            source = headers.get("origin") or headers.get("referer")
            if source is not None and not _same_site(source, host):
                return 403, (
                    f"request from {source[:80]}: refused, it comes from another web page than this server's; "
                    "use the page this server serves, or a client that sends no Origin (curl)"
                )
        return None

    async def _run(self, scope, receive, send):
        answered = False  # by this middleware, when the body timed out
        started = False
        body_done = False
        timed_out = ""
        first = None
        received = 0
        limits = self.limits

        async def guarded_send(message):
            nonlocal started
            if answered:
                return  # the client has had its answer (408) and the connection is closing
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def timed_receive():
            nonlocal answered, body_done, first, received, timed_out
            if body_done:
                return await receive()  # past the body: a disconnect, however long the response takes
            now = time.monotonic()
            first = now if first is None else first
            try:
                message = await asyncio.wait_for(receive(), limits.body_timeout)
            except TimeoutError:
                timed_out = f"no byte for {limits.body_timeout:g} s"
            else:
                if message["type"] != "http.request" or not message.get("more_body", False):
                    body_done = True
                    return message
                received += len(message.get("body", b""))
                elapsed = time.monotonic() - first
                if elapsed <= limits.body_timeout or received / elapsed >= limits.min_body_rate:
                    return message
                timed_out = f"{received / elapsed:.0f} bytes/s after {elapsed:.0f} s"
            if not started and not answered:
                await _respond(send, 408, f"request: the body arrived too slowly ({timed_out}); send it again")
            answered = body_done = True
            return {"type": "http.disconnect"}

        try:
            await self.app(scope, timed_receive, guarded_send)
        except ClientDisconnect:
            path = scope.get("path", "")[:80]
            client = scope.get("client") or ("client", 0)
            why = f"too slow: {timed_out}" if timed_out else "the client closed the connection"
            request = f"{scope['method']} {path} from {client[0]}"
            part = "answer" if started and not answered else "request"  # a download cancelled, or an upload
            self.log(f"error: {request}: stopped before the {part} was complete ({why})")


async def _respond(send, status: int, message: str) -> None:
    body = json.dumps({"error": " ".join(message.split())}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if status == 408:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


# --------------------------------------------------------------------------- the HTTP protocol


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


def _guarded_protocol(limits: Limits) -> type:
    """uvicorn's h11 protocol with the idle and header timeouts and the connection cap."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._timer = None
            self._headers_started = False
            if len(self.connections) > limits.max_connections:
                message = f"this server holds at most {limits.max_connections} connections; try again shortly"
                transport.write(_raw_response(503, "Service Unavailable", message))
                transport.close()
                return
            self._arm(limits.idle_timeout)

        def data_received(self, data: bytes) -> None:
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self._headers_started:
                self._headers_started = True
                self._arm(limits.header_timeout)
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # the headers are in; the body has its own timeout (Guard)

        def on_response_complete(self) -> None:
            self._headers_started = False  # the next request's headers get their own time
            super().on_response_complete()  # uvicorn's keep-alive timeout closes a silent connection

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._time_out)

        def _disarm(self) -> None:
            if getattr(self, "_timer", None) is not None:
                self._timer.cancel()
                self._timer = None

        def _time_out(self) -> None:
            self._timer = None
            if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
                return
            if self._headers_started:
                message = f"request: the headers took over {limits.header_timeout:g} s; connection closed"
                self.transport.write(_raw_response(408, "Request Timeout", message))
            self.transport.close()

    return GuardedH11Protocol


def server_config(app, limits: Limits = DEFAULT_LIMITS, **options):
    """A ``uvicorn.Config`` for ``app`` with ``limits``; ``options`` go to uvicorn (log_level, ...)."""
    import uvicorn

    options = {"log_level": "warning", "access_log": False, "lifespan": "on", **options}
    return uvicorn.Config(
        app,
        http=_guarded_protocol(limits),
        timeout_keep_alive=max(1, round(limits.idle_timeout)),
        **options,
    )
