"""A drop-in for the Amazon Personalize runtime: an HTTP server that the AWS SDKs talk to.

Point a ``personalize-runtime`` or ``personalize-events`` client's ``endpoint_url`` at it::

    server = hrnn.server.Server("model/", event_log="events.log", port=8080)
    server.start()
    ...
    server.stop()          # finishes the requests in flight, then closes the recommender

or from the shell, ``hrnn serve model/ --event-log events.log``. Routes, config and the transport's
design: docs/api.md ("HTTP server") and :mod:`hrnn.server.http`.

SigV4: by default requests are accepted whatever their ``Authorization`` header says (the SDKs
need credentials to sign with; dummy ones do), so bind to loopback or a private network (the
default host is 127.0.0.1). With ``credentials`` (access key → secret; the config file's
``"credentials"``) every Personalize request must be signed by one of those keys
(:mod:`hrnn.server.sigv4`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hrnn.recommender import Recommender
from hrnn.server.filters import NamedFilter, parse_filters
from hrnn.server.http import HttpServer
from hrnn.server.personalize import PersonalizeService

__all__ = ["Server", "load_config", "serve"]

logger = logging.getLogger("hrnn.server")


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a server config file: ``{"filters": {ARN: filter, ...}, "campaign_arns": [...],
    "credentials": {ACCESS_KEY_ID: SECRET, ...}}`` (each optional; :mod:`hrnn.server.filters`
    describes a filter).

    Returns:
        Keyword arguments of :class:`Server` (``filters``, ``campaign_arns``, ``credentials``).

    Raises:
        ValueError: the file is not that JSON shape; names the key.
        FileNotFoundError: no such file.
    """
    config = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(config).__name__}")
    unknown = sorted(set(config) - {"filters", "campaign_arns", "credentials"})
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown} (expected filters, campaign_arns, credentials)")
    out: dict[str, Any] = {"filters": parse_filters(config.get("filters", {}))}
    arns = config.get("campaign_arns")
    if arns is not None:
        if not isinstance(arns, list) or not all(isinstance(a, str) for a in arns):
            raise ValueError(f"{path}: campaign_arns: expected a list of strings, found {arns!r:.100}")
        out["campaign_arns"] = arns
    credentials = config.get("credentials")
    if credentials is not None:
        if not isinstance(credentials, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in credentials.items()
        ):
            raise ValueError(f"{path}: credentials: expected an object of access key id -> secret")
        out["credentials"] = credentials
    return out


class Server:
    """The Personalize runtime's routes over one recommender, on a background thread.

    Args:
        recommender: a loaded :class:`hrnn.Recommender`, or a model directory to load (then
            ``event_log`` is its log, and :meth:`stop` closes it).
        event_log: the event log, when ``recommender`` is a directory.
        host: address to listen on (default loopback).
        port: TCP port; 0 picks a free one (read it back from :attr:`port`).
        filters: filter ARN → filter, as parsed objects or the config's JSON object.
        campaign_arns: if given, the only campaign/recommender ARNs accepted.
        credentials: access key id → secret access key; when given, requests must carry a valid
            SigV4 signature by one of them (default: any signature is accepted).
        max_connections: connections served at once, one thread each.
        access_log: log each request to the ``hrnn.server.access`` logger.
    """

    def __init__(
        self,
        recommender: Recommender | str | os.PathLike[str],
        *,
        event_log: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 8080,
        filters: Mapping[str, NamedFilter] | Mapping[str, Any] | None = None,
        campaign_arns: Iterable[str] | None = None,
        credentials: Mapping[str, str] | None = None,
        max_connections: int = 64,
        access_log: bool = False,
    ) -> None:
        if isinstance(recommender, Recommender):
            if event_log is not None:
                raise ValueError("event_log: give it to Recommender.load, not with a loaded recommender")
            self.recommender, self._owns = recommender, False
        else:
            self.recommender, self._owns = Recommender.load(recommender, event_log=event_log), True
        try:
            parsed = {
                arn: f if isinstance(f, NamedFilter) else next(iter(parse_filters({arn: f}).values()))
                for arn, f in (filters or {}).items()
            }
            self.service = PersonalizeService(
                self.recommender,
                filters=parsed,
                campaign_arns=None if campaign_arns is None else frozenset(campaign_arns),
                credentials=credentials,
            )
            self._http = HttpServer(
                self.service, host, port, max_connections=max_connections, access_log=access_log
            )
        except BaseException:
            if self._owns:  # a bad filter or a port in use: release the event log's lock now
                self.recommender.close()
            raise
        self._stopped = False

    @property
    def host(self) -> str:
        """The address listened on."""
        return str(self._http.host)

    @property
    def port(self) -> int:
        """The TCP port listened on (the chosen one when constructed with port 0)."""
        return int(self._http.port)

    @property
    def url(self) -> str:
        """``http://host:port``, for a client's ``endpoint_url``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Server:
        """Starts serving on a background thread; returns ``self``."""
        self._http.start()
        logger.info("serving %s at %s", self.recommender, self.url)
        return self

    def stop(self) -> None:
        """Stops accepting, finishes the requests in flight, and closes the recommender when this
        server loaded it (its event log is synced and unlocked). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._http.stop()
        if self._owns:
            self.recommender.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    model_dir: str | os.PathLike[str],
    *,
    event_log: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    config: str | os.PathLike[str] | None = None,
    max_connections: int = 64,
    access_log: bool = False,
) -> None:
    """Serves a model until SIGTERM or SIGINT (Ctrl-C), then stops gracefully (:meth:`Server.stop`)
    and returns. Must run on the main thread (it installs the signal handlers)."""
    options = load_config(config) if config is not None else {}
    server = Server(
        model_dir,
        event_log=event_log,
        host=host,
        port=port,
        max_connections=max_connections,
        access_log=access_log,
        **options,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        logger.info("%s: finishing requests in flight", signal.Signals(signum).name)
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        while not done.wait(1.0):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("stopped")
