"""The HTTP/1.1 transport on its own (hrnn.server.http): malformed requests, pipelining, and a
stop() that lets the request in flight answer."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from hrnn.server.http import HttpServer, Request, Response


def _echo(request: Request) -> Response:
    if request.path == "/slow":
        time.sleep(0.5)
    body = f"{request.method} {request.path} {request.query} {len(request.body)}".encode()
    return Response(200, [("Content-Type", "text/plain")], body)


@pytest.fixture
def server() -> Iterator[HttpServer]:
    running = HttpServer(_echo, "127.0.0.1", 0)
    running.start()
    yield running
    running.stop()


def _exchange(server: HttpServer, raw: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_pipelined_requests_are_answered_in_order(server: HttpServer) -> None:
    raw = (
        b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    answer = _exchange(server, raw)
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert answer.index(b"POST /a x=1 3") < answer.index(b"GET /b  0")
    assert answer.endswith(b"GET /b  0")


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b"NONSENSE\r\n\r\n", b"400", b"malformed request line"),
        (b"POST / HTTP/1.1\r\nno colon here\r\n\r\n", b"400", b"malformed header line"),
        (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"400", b"Content-Length"),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", b"413", b"at most"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"411", b"chunked"),
    ],
)
def test_malformed_requests_are_refused(
    server: HttpServer, raw: bytes, status: bytes, message: bytes
) -> None:
    answer = _exchange(server, raw)
    assert answer.startswith(b"HTTP/1.1 " + status) and message in answer
    assert b"Connection: close" in answer


def test_http_1_0_closes_unless_asked_to_keep_alive(server: HttpServer) -> None:
    answer = _exchange(server, b"GET /x HTTP/1.0\r\n\r\nGET /y HTTP/1.0\r\n\r\n")
    assert answer.count(b"200 OK") == 1 and b"Connection: close" in answer


def test_stop_lets_the_request_in_flight_answer(server: HttpServer) -> None:
    idle = socket.create_connection((server.host, server.port), timeout=10)  # keep-alive, idle
    busy = socket.create_connection((server.host, server.port), timeout=10)
    busy.sendall(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
    time.sleep(0.2)  # the request is being handled
    stopper = threading.Thread(target=server.stop)
    began = time.perf_counter()
    stopper.start()
    answer = b""
    while chunk := busy.recv(65536):
        answer += chunk
    stopper.join(10)
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"GET /slow  0")
    assert b"Connection: close" in answer  # told the client this connection is done
    assert idle.recv(1) == b""  # the idle connection was closed, not left hanging
    assert not stopper.is_alive() and time.perf_counter() - began < 5
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=1).close()
    idle.close()
    busy.close()
