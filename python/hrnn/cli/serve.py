"""`hrnn serve`: the Personalize runtime's HTTP API over a model (:mod:`hrnn.server`)."""

from __future__ import annotations

import argparse

__all__ = ["cmd_serve"]


def cmd_serve(args: argparse.Namespace) -> int:
    """`hrnn serve`: serves until SIGTERM/SIGINT, then finishes requests in flight and exits 0."""
    if args.access_log:
        import logging

        logging.getLogger("hrnn.server.access").setLevel(logging.INFO)
    from hrnn.server import serve

    serve(
        args.model_dir,
        event_log=args.event_log,
        host=args.host,
        port=args.port,
        config=args.config,
        max_connections=args.max_connections,
        access_log=args.access_log,
    )
    return 0
