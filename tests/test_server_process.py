"""`hrnn serve` as a process: SIGTERM drains and exits 0, kill -9 loses no acknowledged event."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hrnn import _hrnn

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402  (after the importorskip)

TINY = Path(__file__).parent / "fixtures" / "tiny_model"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


class _Process:
    def __init__(self, proc: subprocess.Popen[str], url: str, stderr: list[str]) -> None:
        self.proc, self.url, self.stderr = proc, url, stderr
        # Keep draining stderr so the server never blocks on a full pipe.
        self.drain = threading.Thread(target=lambda: stderr.extend(proc.stderr or ()), daemon=True)
        self.drain.start()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    procs: list[_Process] = []

    def start(*flags: str) -> _Process:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hrnn", "serve", str(TINY), "--port", "0", *flags],
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            found = re.search(r"at (http://\S+)", line)
            if found:
                break
        else:
            proc.kill()
            proc.wait()
            proc.stderr.close()
            raise AssertionError(f"the server did not start: {''.join(lines)}")
        procs.append(_Process(proc, found.group(1), lines))
        return procs[-1]

    yield start
    for server in procs:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait()
        server.drain.join(10)
        assert server.proc.stderr is not None
        server.proc.stderr.close()


def _events_client(url: str) -> Any:
    return boto3.client(
        "personalize-events",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=10),
    )


def _send_until_stopped(url: str, senders: int) -> tuple[list[tuple[str, str]], threading.Event, list[Any]]:
    """Threads sending PutEvents (one event each, a unique item id) until a request fails; returns
    the (user, item) pairs acknowledged, an event set once each thread got at least 5 answers, and
    the threads."""
    acked: list[tuple[str, str]] = []
    warmed = threading.Event()
    counts = [0] * senders

    def send(k: int) -> None:
        client = _events_client(url)
        for i in range(100_000):
            item = f"ack-{k}-{i}"
            try:
                client.put_events(
                    trackingId="t",
                    userId=f"u{k}",
                    sessionId="s",
                    eventList=[{"eventType": "click", "sentAt": T0, "itemId": item, "eventId": item}],
                )
            except Exception:
                return
            acked.append((f"u{k}", item))
            counts[k] += 1
            if min(counts) >= 5:
                warmed.set()

    threads = [threading.Thread(target=send, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    return acked, warmed, threads


def _logged(path: Path) -> set[tuple[str, str]]:
    users, items, *_ = _hrnn.read_event_log(os.fspath(path))
    return set(zip(list(users), list(items), strict=True))


def test_sigterm_finishes_in_flight_requests_and_exits_0(serve: Any, tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    server = serve("--event-log", str(log))
    acked, warmed, threads = _send_until_stopped(server.url, senders=3)
    assert warmed.wait(30), "".join(server.stderr)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0, "".join(server.stderr)
    for t in threads:
        t.join(30)
    assert acked and set(acked) <= _logged(log)
    # The log was closed cleanly (no torn tail) and its writer lock released.
    with _hrnn_recommender(log) as rec:
        assert rec.stats()["event_log_dropped_bytes"] == 0
        assert rec.stats()["events_replayed"] >= len(acked)


def test_kill_9_loses_no_acknowledged_event(serve: Any, tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    server = serve("--event-log", str(log))
    acked, warmed, threads = _send_until_stopped(server.url, senders=4)
    assert warmed.wait(30), "".join(server.stderr)
    time.sleep(0.2)
    server.proc.kill()
    server.proc.wait(10)
    for t in threads:
        t.join(30)
    assert len(acked) >= 20
    assert set(acked) <= _logged(log)
    with _hrnn_recommender(log) as rec:
        assert rec.stats()["events_replayed"] >= len(acked)


def test_access_log_flag(serve: Any) -> None:
    server = serve("--access-log")
    client = boto3.client(
        "personalize-runtime",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )
    client.get_recommendations(campaignArn="arn:c", userId="user0", numResults=2)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    server.drain.join(10)
    assert any("POST /recommendations 200" in line for line in server.stderr), "".join(server.stderr)


def test_no_access_log_by_default(serve: Any) -> None:
    server = serve()
    client = _events_client(server.url)
    client.put_events(trackingId="t", sessionId="s", eventList=[{"eventType": "click", "sentAt": T0}])
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(30) == 0
    server.drain.join(10)
    assert not any("POST /events" in line for line in server.stderr), "".join(server.stderr)


def _hrnn_recommender(log: Path) -> Any:
    import hrnn

    return hrnn.Recommender.load(TINY, event_log=log)
