"""The load bench's baseline: the minimal FastAPI + uvicorn wrapper a user would write around the same
engine (pydantic request models, ``def`` handlers so FastAPI runs the blocking engine calls on its
thread pool, uvicorn with httptools + uvloop when installed, access log off).

Usage: python benches/fastapi_baseline.py MODEL_DIR [--event-log LOG] [--async-recommend]; prints ``URL http://...``
once listening, serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import socket
import sys
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import hrnn


class GetRecommendationsRequest(BaseModel):
    campaignArn: str | None = None  # noqa: N815 (the service's member names)
    userId: str  # noqa: N815
    itemId: str | None = None  # noqa: N815
    numResults: int = 25  # noqa: N815


class Event(BaseModel):
    eventType: str  # noqa: N815
    sentAt: float  # noqa: N815
    itemId: str | None = None  # noqa: N815
    eventValue: float | None = None  # noqa: N815
    eventId: str | None = None  # noqa: N815
    properties: str | None = None


class PutEventsRequest(BaseModel):
    trackingId: str  # noqa: N815
    userId: str | None = None  # noqa: N815
    sessionId: str  # noqa: N815
    eventList: list[Event]  # noqa: N815


def build_app(rec: hrnn.Recommender, async_recommend: bool = False) -> FastAPI:
    """The app; ``async_recommend`` serves GetRecommendations from an ``async def`` handler (the
    engine call then runs on the event loop's thread: no thread-pool hop, but one call at a time)."""
    app = FastAPI()

    def recommend(request: GetRecommendationsRequest) -> dict[str, Any]:
        try:
            items = rec.recommend(request.userId, request.numResults)
        except (ValueError, TypeError) as error:
            raise HTTPException(400, str(error)) from None
        return {
            "itemList": [{"itemId": item, "score": score} for item, score in items],
            "recommendationId": f"RID-{uuid.uuid4()}",
        }

    if async_recommend:

        @app.post("/recommendations")
        async def get_recommendations_async(request: GetRecommendationsRequest) -> dict[str, Any]:
            return recommend(request)
    else:

        @app.post("/recommendations")
        def get_recommendations(request: GetRecommendationsRequest) -> dict[str, Any]:
            return recommend(request)

    @app.post("/events")
    def put_events(request: PutEventsRequest) -> dict[str, Any]:
        events = [
            {
                "event_type": e.eventType,
                "sent_at": e.sentAt,
                "item_id": e.itemId,
                "event_value": e.eventValue,
                "event_id": e.eventId,
                "properties": e.properties,
            }
            for e in request.eventList
        ]
        try:
            rec.put_events(user_id=request.userId, session_id=request.sessionId, events=events)
        except (ValueError, TypeError) as error:
            raise HTTPException(400, str(error)) from None
        return {}

    return app


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--event-log", default=None)
    parser.add_argument("--async-recommend", action="store_true")
    args = parser.parse_args(argv)
    rec = hrnn.Recommender.load(args.model_dir, event_log=args.event_log)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"URL http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(build_app(rec, args.async_recommend), access_log=False, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
    rec.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
