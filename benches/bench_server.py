"""Loopback load bench: ``hrnn serve`` against a minimal FastAPI + uvicorn wrapper of the same engine
(benches/fastapi_baseline.py), GetRecommendations (top 25) and PutEvents (one event per call,
fsynced to an event log), in one run, reported side by side with ratios.

Usage (full size: a random model of 100k items, H = 43)::

    python benches/bench_server.py [--items 100000] [--seconds 10] [--clients 4] [--load-client socket]

Each server runs in its own process; the load comes from ``--clients`` client processes, each
with one keep-alive connection sending the JSON body boto3 would send, back to back (closed loop):
a bare socket by default, which reads each answer's status and ``Content-Length`` and no more, or
``--load-client http.client``, whose header parsing costs the shared cores about three times the CPU per
request. Each run is split into rounds that take the servers in turn, so a change in the
machine's background load falls on all of them. On a small machine the load generator shares the
cores with the server, as it would in a co-located deployment. Inside the test suite,
``test_server_load`` runs the same code on a tiny model for a fraction of a second and only checks
that every request succeeded.

Beside latency and throughput it reports the CPU time each request cost the server process (all its
threads; Linux's ``/proc``, blank elsewhere) and the client processes, in µs. On a machine whose
cores the two share, those set the ceiling: no server in front of the same engine can answer more
than ``cores / (server + client CPU per request)`` requests per second.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
USERS = 1_000


def _cpu_seconds() -> float:
    """CPU time this process has used, all threads, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_seconds(pid: int) -> float:
    """CPU time process ``pid`` has used, all threads (Linux's ``/proc``; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _SocketClient:
    """A keep-alive HTTP/1.1 client on a bare socket, for load generation: the request written in
    one ``sendall``, the answer's status and ``Content-Length`` read with ``bytes`` methods.
    :mod:`http.client` parses every answer's headers with :mod:`email.parser`: ~470 µs of CPU per
    request on the 2-core VM, against ~150 µs here, taken from the cores the server shares."""

    def __init__(self, host: str, port: int) -> None:
        self._sock = socket.create_connection((host, port), timeout=30)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._head = f"Host: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: "
        self._buffer = b""

    def post(self, path: str, body: bytes) -> int:
        """Sends one POST and reads its whole answer; returns the status."""
        self._sock.sendall(f"POST {path} HTTP/1.1\r\n{self._head}{len(body)}\r\n\r\n".encode() + body)
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._buffer += self._recv()
        head, rest = self._buffer[:end].lower(), self._buffer[end + 4 :]
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            raise ConnectionError(f"an answer without Content-Length: {head[:200]!r}")
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop > 0 else len(head)])
        while len(rest) < length:
            rest += self._recv()
        self._buffer = rest[length:]
        return int(head[9:12])

    def _recv(self) -> bytes:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self._sock.close()


def _client(url: str, op: str, start: float, seconds: float, seed: int, kind: str) -> dict[str, Any]:
    """One closed-loop client: requests back to back from ``start`` for ``seconds``, through
    :mod:`http.client` (``kind`` "http.client") or a bare socket ("socket")."""
    host, port = url.removeprefix("http://").split(":")
    if kind == "socket":
        raw = _SocketClient(host, int(port))
        post = raw.post
        close = raw.close
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        headers = {"Content-Type": "application/json"}

        def post(path: str, body: bytes) -> int:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status

        close = conn.close
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    sequence = 0
    while time.time() < start:
        time.sleep(0.001)
    end = start + seconds
    cpu = _cpu_seconds()
    while True:
        now = time.perf_counter()
        if time.time() >= end:
            break
        if op == "recommend":
            path = "/recommendations"
            body = {"campaignArn": "arn:c", "userId": f"user{rng.randrange(USERS)}", "numResults": 25}
        else:
            sequence += 1
            path = "/events"
            body = {
                "trackingId": "t",
                "userId": f"user{rng.randrange(USERS)}",
                "sessionId": f"s{seed}",
                "eventList": [
                    {
                        "eventType": "click",
                        "sentAt": 1_700_000_000 + sequence,
                        "itemId": f"item{rng.randrange(1000)}",
                        "eventId": f"{seed}-{sequence}-{start}",
                    }
                ],
            }
        if post(path, json.dumps(body).encode()) != 200:
            errors += 1
        latencies.append(time.perf_counter() - now)
    cpu = _cpu_seconds() - cpu
    close()
    return {"latencies": latencies, "errors": errors, "cpu": cpu}


def _engine(model: str, log: str, op: str, start: float, seconds: float, threads: int) -> dict[str, Any]:
    """The engine alone, no HTTP: ``threads`` threads calling it back to back in one process (the
    most any server in front of it could reach on this machine)."""
    import threading

    import hrnn

    rec = hrnn.Recommender.load(model, event_log=log)
    per_thread: list[list[float]] = [[] for _ in range(threads)]

    def work(k: int) -> None:
        rng = random.Random(k)
        sequence = 0
        while time.time() < start:
            time.sleep(0.001)
        end = start + seconds
        while time.time() < end:
            began = time.perf_counter()
            if op == "recommend":
                rec.recommend(f"user{rng.randrange(USERS)}", 25)
            else:
                sequence += 1
                rec.put_events(
                    user_id=f"user{rng.randrange(USERS)}",
                    session_id=f"s{k}",
                    events=[
                        {
                            "event_type": "click",
                            "sent_at": 1_700_000_000 + sequence,
                            "item_id": f"item{rng.randrange(1000)}",
                            "event_id": f"e{k}-{sequence}-{start}",
                        }
                    ],
                )
            per_thread[k].append(time.perf_counter() - began)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    cpu = _cpu_seconds()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    cpu = _cpu_seconds() - cpu
    rec.close()
    return {"latencies": [t for ts in per_thread for t in ts], "errors": 0, "cpu": cpu}


class _Run(NamedTuple):
    """One run of one (server, operation): every request's latency, the count of non-200 answers,
    and the CPU seconds the server process and the client processes used during it."""

    latencies: list[float]
    errors: int
    server_cpu: float
    client_cpu: float

    def merged(self, other: _Run) -> _Run:
        """This run and ``other`` as one."""
        return _Run(
            self.latencies + other.latencies,
            self.errors + other.errors,
            self.server_cpu + other.server_cpu,
            self.client_cpu + other.client_cpu,
        )


def _engine_load(model: str, log: str, op: str, clients: int, seconds: float) -> _Run:
    start = time.time() + 1.0  # the model is loaded before the clock starts
    command = [sys.executable, __file__, "--engine", model, log, op, repr(start), repr(seconds), str(clients)]
    result = json.loads(subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout)
    # the engine's threads are the "server"; there are no client processes
    return _Run(result["latencies"], result["errors"], result["cpu"], 0.0)


def _start_server(command: list[str], marker: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"(http://\S+)", line) if marker in line else None
        if found:
            return proc, found.group(1)
    proc.wait()
    raise RuntimeError(f"server did not start: {' '.join(command)}")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _load(url: str, server: int, op: str, clients: int, seconds: float, kind: str) -> _Run:
    """One run of ``clients`` client processes against the server at ``url`` (process ``server``)."""
    start = time.time() + 0.5  # every client process is up before the clock starts
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--client", url, op, repr(start), repr(seconds), str(k), kind],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(clients)
    ]
    while time.time() < start:
        time.sleep(0.001)
    server_cpu = _process_cpu_seconds(server)
    latencies: list[float] = []
    errors = 0
    client_cpu = 0.0
    for proc in procs:
        out, _ = proc.communicate()
        result = json.loads(out)
        latencies += result["latencies"]
        errors += result["errors"]
        client_cpu += result["cpu"]
    # the clients have all stopped sending; the last answers left the server before they stopped
    server_cpu = _process_cpu_seconds(server) - server_cpu
    return _Run(latencies, errors, server_cpu, client_cpu)


def _summary(run: _Run, seconds: float) -> dict[str, Any]:
    latencies = sorted(run.latencies)
    n = len(latencies)
    per_request = (lambda cpu: cpu / n * 1e6) if n else (lambda cpu: float("nan"))
    return {
        "requests": n,
        "errors": run.errors,
        "rps": n / seconds,
        "p50_ms": latencies[n // 2] * 1e3 if n else float("nan"),
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1e3 if n else float("nan"),
        "server_cpu_us": per_request(run.server_cpu),
        "client_cpu_us": per_request(run.client_cpu),
    }


def run(
    items: int,
    seconds: float,
    clients: int,
    baseline: bool = True,
    variants: bool = False,
    rounds: int = 1,
    engine: bool = False,
    client: str = "socket",
) -> dict[str, dict[str, Any]]:
    """Runs every (server, operation) pair for ``seconds`` in all, split into ``rounds`` rounds that
    take the servers in turn (so a change in the machine's background load hits all of them);
    returns their stats keyed ``"server op"``. ``engine`` adds the engine alone, called from as
    many threads in one process as there are clients (no HTTP); ``client`` is the client processes'
    HTTP stack, ``"http.client"`` or ``"socket"`` (see :class:`_SocketClient`)."""
    from hrnn._testing import random_model
    from hrnn.model_format import write_model_dir

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = random_model(items, 43, num_users=USERS, event_types=["click"], output_scale=0.5)
        path = write_model_dir(Path(tmp) / "model", model.tensors, model.meta)
        servers = {
            "hrnn serve": (
                [sys.executable, "-m", "hrnn", "serve", str(path), "--port", "0", "--event-log",
                 str(Path(tmp) / "hrnn.log")],
                "serving",
            ),
        }  # fmt: skip
        if baseline:
            servers["fastapi+uvicorn"] = (
                [sys.executable, str(HERE / "fastapi_baseline.py"), str(path), "--event-log",
                 str(Path(tmp) / "fastapi.log")],
                "URL ",
            )  # fmt: skip
        if variants:
            servers["fastapi (async def)"] = (
                [sys.executable, str(HERE / "fastapi_baseline.py"), str(path), "--async-recommend",
                 "--event-log", str(Path(tmp) / "fastapi-async.log")],
                "URL ",
            )  # fmt: skip
            servers["stdlib http.server"] = (
                [sys.executable, str(HERE / "stdlib_server.py"), str(path), "--event-log",
                 str(Path(tmp) / "stdlib.log")],
                "URL ",
            )  # fmt: skip
        running: dict[str, tuple[subprocess.Popen[str], str]] = {}
        try:
            for name, (command, marker) in servers.items():
                running[name] = _start_server(command, marker)
            raw: dict[str, _Run] = {}
            nothing = _Run([], 0, 0.0, 0.0)  # what a pair's first round is merged into
            for _ in range(rounds):
                if engine:
                    for op in ("recommend", "put_events"):
                        log = str(Path(tmp) / "engine.log")
                        run = _engine_load(str(path), log, op, clients, seconds / rounds)
                        raw[f"engine alone {op}"] = raw.get(f"engine alone {op}", nothing).merged(run)
                for name, (proc, url) in running.items():
                    for op in ("recommend", "put_events"):
                        run = _load(url, proc.pid, op, clients, seconds / rounds, client)
                        raw[f"{name} {op}"] = raw.get(f"{name} {op}", nothing).merged(run)
        finally:
            for proc, _ in running.values():
                _stop(proc)
    for key, run in raw.items():
        results[key] = _summary(run, seconds)
    return results


def report(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{'server':20s} {'operation':12s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s} "
        f"{'server CPU us/req':>17s} {'client CPU us/req':>17s}"
    ]
    for key, r in results.items():
        server, op = key.rsplit(" ", 1)
        lines.append(
            f"{server:20s} {op:12s} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['errors']:6d} "
            f"{r['server_cpu_us']:17.0f} {r['client_cpu_us']:17.0f}"
        )
    for op in ("recommend", "put_events"):
        ours = results.get(f"hrnn serve {op}")
        for other in ("fastapi+uvicorn", "fastapi (async def)", "stdlib http.server", "engine alone"):
            base = results.get(f"{other} {op}")
            if ours and base:
                lines.append(
                    f"{op}: hrnn serve / {other}: req/s x{ours['rps'] / base['rps']:.2f}, "
                    f"p99 x{ours['p99_ms'] / base['p99_ms']:.2f} (lower is better)"
                )
    return "\n".join(lines)


def test_server_load() -> None:
    """The bench's code path on a tiny model, briefly (no timing assertions)."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        baseline = True
    except ImportError:
        baseline = False
    results = run(items=500, seconds=0.3, clients=2, baseline=baseline, engine=True)
    # http.client against every server too
    results |= {
        f"{key} (http.client)": r
        for key, r in run(items=500, seconds=0.3, clients=2, baseline=baseline, client="http.client").items()
    }
    for key, r in results.items():
        assert r["requests"] > 0 and r["errors"] == 0, key
        # client processes: getrusage, to the microsecond
        assert r["client_cpu_us"] > 0 or key.startswith("engine alone"), key
    if Path("/proc/self/stat").exists():
        # servers: /proc counts in clock ticks (10 ms), so one short run may read 0
        server_cpu = [r["server_cpu_us"] for r in results.values()]
        assert min(server_cpu) >= 0 and sum(server_cpu) > 0, server_cpu
    assert "req/s" in report(results)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--engine":
        model, log, op, start, seconds, threads = argv[1:7]
        print(json.dumps(_engine(model, log, op, float(start), float(seconds), int(threads))))
        return 0
    if argv and argv[0] == "--client":
        url, op, start, seconds, seed, kind = argv[1:7]
        print(json.dumps(_client(url, op, float(start), float(seconds), int(seed), kind)))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="rounds taking the servers in turn")
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also FastAPI with an async def GetRecommendations handler, the same routes on the "
        "standard library's ThreadingHTTPServer (the transport hrnn.server.http replaced), and the "
        "engine alone without HTTP (the ceiling of any server on this machine)",
    )
    parser.add_argument(
        "--load-client",
        choices=["socket", "http.client"],
        default="socket",
        help="the client processes' HTTP stack: a bare keep-alive socket (the default), or the "
        "standard library's http.client, which costs the cores the servers share about three times as much "
        "CPU per request",
    )
    args = parser.parse_args(argv)
    print(
        f"{args.items} items x H=43, {args.clients} keep-alive client processes, {args.seconds:g} s per run, "
        f"in {args.rounds} rounds taking the servers in turn, "
        f"{os.cpu_count()} cores shared by servers and clients ({args.load_client})"
    )
    print(
        report(
            run(
                args.items,
                args.seconds,
                args.clients,
                variants=args.variants,
                rounds=args.rounds,
                engine=args.variants,
                client=args.load_client,
            )
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
