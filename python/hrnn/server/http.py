"""A small HTTP/1.1 server: keep-alive connections served by a bounded pool of threads.

Why not :mod:`http.server` or an ASGI stack: the engine releases the GIL, so what limits a Python
server's throughput is the Python work around each call — parsing the request and writing the
response while holding the GIL. ``http.server.BaseHTTPRequestHandler`` parses headers with
:mod:`email.parser` and writes through several buffered calls; uvicorn + FastAPI run an event loop,
pydantic and (for blocking handlers) a hop to a worker thread per request. This server parses the
request line and the few headers it needs with ``bytes.split``, answers with one ``sendall`` and
keeps each connection on one thread, so a request costs tens of microseconds of GIL time.

Measured on this project's 2-core machine with a random 100k-item model (benches/bench_server.py
``--variants``, five runs; the table is in docs/api.md, "HTTP server"): 2.2–2.8× the requests/s
of FastAPI + uvicorn for GetRecommendations and 2.8–3.8× for PutEvents, at 0.28–0.55× its p99;
1.1–1.5× the standard library's tuned ``ThreadingHTTPServer`` on the same routes. With the
clients on the same two cores, GetRecommendations is bound by CPU time: of the server process's,
the scan takes 67%, the interpreter (this module and the handlers) 14% and the kernel 11%. An HTTP
stack in Rust inside the extension (hyper, tiny_http) would take the interpreter's share out, at
the cost of a server in the binding crate; docs/api.md works out what it could gain.

What it does not do: TLS (put a proxy in front), chunked request bodies (the AWS SDKs always send
``Content-Length``), ``Expect: 100-continue``. A connection waits at most ``idle_timeout`` seconds
for its next request; at most ``max_connections`` connections are served at once (later ones wait
in the accept backlog).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

__all__ = ["HttpServer", "Request", "Response"]

logger = logging.getLogger("hrnn.server")
access_logger = logging.getLogger("hrnn.server.access")

_MAX_HEADER_BYTES = 64 * 1024
_MAX_BODY_BYTES = 1024 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Request(NamedTuple):
    """One parsed request: method, path, lower-cased header names, body, query string (no ``?``)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""


class Response(NamedTuple):
    """One response: status, extra headers (``Content-Length`` is added), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


Handler = Callable[[Request], Response]


class _BadRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Connection:
    """A client connection and whether a request on it is being handled (``busy``)."""

    __slots__ = ("busy", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.busy = False


class HttpServer:
    """Serves ``handler`` on ``(host, port)``; port 0 picks a free one (see :attr:`port`).

    Args:
        handler: called once per request, on a pool thread; must not raise (an exception becomes a
            bare 500 and is logged).
        host: the address to listen on.
        port: the TCP port; 0 = any free one.
        max_connections: connections served at once (the pool's size).
        idle_timeout: seconds a keep-alive connection may wait for its next request.
        access_log: log one line per request to the ``hrnn.server.access`` logger (INFO).
    """

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        max_connections: int = 64,
        idle_timeout: float = 30.0,
        access_log: bool = False,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections: expected at least 1, found {max_connections}")
        self._handler = handler
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._access_log = access_log
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(1024)
        except OSError:
            self._listener.close()
            raise
        self._listener.settimeout(0.2)  # how often the accept loop notices stop()
        self.host, self.port = self._listener.getsockname()[:2]
        self._pool = ThreadPoolExecutor(max_connections, thread_name_prefix="hrnn-http")
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._stopping = False
        self._acceptor: threading.Thread | None = None

    def start(self) -> None:
        """Starts accepting connections on a background thread."""
        if self._acceptor is not None:
            raise RuntimeError("the server was already started")
        self._acceptor = threading.Thread(target=self._accept_loop, name="hrnn-http-accept", daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        """Stops accepting, lets the requests in flight finish and answer, closes every connection,
        and returns once all connection threads are done."""
        with self._lock:
            self._stopping = True
            for conn in self._connections:
                if not conn.busy:
                    # Wakes the thread blocked reading its next request; only the read side, so a
                    # request read in full just now can still be answered.
                    _shutdown(conn.sock, socket.SHUT_RD)
        if self._acceptor is not None:
            self._acceptor.join()
        self._listener.close()
        self._pool.shutdown(wait=True)

    # ----- connections --------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping:
                    return
                logger.exception("accept failed")
                time.sleep(0.05)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock)
            with self._lock:
                if self._stopping:
                    sock.close()
                    return
                self._connections.add(conn)
            self._pool.submit(self._serve, conn)

    def _serve(self, conn: _Connection) -> None:
        sock = conn.sock
        sock.settimeout(self._idle_timeout)
        buffer = bytearray()
        try:
            while True:
                try:
                    request, keep_alive = _read_request(sock, buffer)
                except _BadRequestError as error:
                    sock.sendall(_serialize(Response(error.status, [], str(error).encode()), False))
                    return
                except (TimeoutError, ConnectionError, OSError):
                    return
                if request is None:
                    return  # the client closed the connection (or stop() did)
                with self._lock:
                    conn.busy = True
                    keep_alive = keep_alive and not self._stopping
                began = time.perf_counter()
                try:
                    response = self._handler(request)
                except Exception:
                    logger.exception("handler failed on %s %s", request.method, request.path)
                    response = Response(500, [], b"internal error")
                keep_alive = keep_alive and not self._stopping  # stop() may have come meanwhile
                try:
                    sock.sendall(_serialize(response, keep_alive))
                except OSError:
                    return
                finally:
                    with self._lock:
                        conn.busy = False
                        keep_alive = keep_alive and not self._stopping
                if self._access_log:
                    access_logger.info(
                        "%s %s %s %d %.3fms",
                        _peer(sock),
                        request.method,
                        request.path,
                        response.status,
                        (time.perf_counter() - began) * 1e3,
                    )
                if not keep_alive:
                    return
        finally:
            with self._lock:
                self._connections.discard(conn)
            _shutdown(sock)
            sock.close()


def _read_request(sock: socket.socket, buffer: bytearray) -> tuple[Request | None, bool]:
    """The next request on the connection (``None`` at a clean end) and whether to keep it open.

    ``buffer`` holds bytes already received past the previous request (pipelining)."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(buffer) > _MAX_HEADER_BYTES:
            raise _BadRequestError(400, "request headers too large")
        chunk = sock.recv(65536)
        if not chunk:
            if buffer:
                raise ConnectionError("connection closed mid-request")
            return None, False
        buffer += chunk
    head = bytes(buffer[:end]).decode("latin-1")
    del buffer[: end + 4]
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequestError(400, f"malformed request line {lines[0][:100]!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequestError(400, f"malformed header line {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _BadRequestError(411, "chunked request bodies are not supported; send Content-Length")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _BadRequestError(400, "Content-Length: expected an integer") from None
    if not 0 <= length <= _MAX_BODY_BYTES:
        raise _BadRequestError(413, f"request body: expected at most {_MAX_BODY_BYTES} bytes, found {length}")
    while len(buffer) < length:
        chunk = sock.recv(max(65536, length - len(buffer)))
        if not chunk:
            raise ConnectionError("connection closed mid-body")
        buffer += chunk
    body = bytes(buffer[:length])
    del buffer[:length]
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    path, _, query = target.partition("?")
    return Request(method, path, headers, body, query), keep_alive


def _serialize(response: Response, keep_alive: bool) -> bytes:
    status = response.status
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    head.extend(f"{name}: {value}" for name, value in response.headers)
    head.append(f"Content-Length: {len(response.body)}")
    head.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body


def _shutdown(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(how)


def _peer(sock: socket.socket) -> str:
    try:
        return str(sock.getpeername()[0])
    except OSError:
        return "-"
