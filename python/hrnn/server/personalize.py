"""The Personalize runtime's routes on an :class:`hrnn.Recommender`: request JSON in, the service's
response or error JSON out.

Routes, methods, member names and error shapes follow botocore's service models
(``personalize-runtime`` 2018-05-22 and ``personalize-events`` 2018-03-22, both ``rest-json``):

- ``POST /recommendations`` GetRecommendations
- ``POST /personalize-ranking`` GetPersonalizedRanking
- ``POST /events`` PutEvents
- ``GET /ping`` and ``GET /metrics`` (Prometheus), which the service does not have.

Errors carry the code in the ``x-amzn-ErrorType`` header and ``{"message": ...}`` in the body, which
is where botocore's rest-json parser looks, so the SDKs raise ``InvalidInputException`` (400) and
``ResourceNotFoundException`` (404) as they did against the service.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import uuid
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

from hrnn._api_events import event_from_api
from hrnn.recommender import Recommender
from hrnn.server.filters import FilterError, NamedFilter
from hrnn.server.http import Request, Response
from hrnn.server.metrics import Metrics
from hrnn.server.sigv4 import SignatureError, verify_sigv4

__all__ = ["PersonalizeService", "ServiceError"]

_JSON = ("Content-Type", "application/json")


class _Ids:
    """Request and recommendation ids shaped like the service's (``RID-`` + a UUID): a random
    per-process prefix and a counter, unique without a ``uuid4()`` (an ``os.urandom`` system call)
    per request. ``next()`` on :func:`itertools.count` is atomic under the GIL."""

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFF_FFFF_FFFF:012x}"


_ids = _Ids()


class ServiceError(Exception):
    """An error answered in the service's shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _invalid(message: str) -> ServiceError:
    return ServiceError(400, "InvalidInputException", message)


class PersonalizeService:
    """Answers HTTP requests with one recommender.

    Args:
        recommender: the engine (shared by every request thread).
        filters: filter ARN → filter (:func:`hrnn.server.filters.parse_filters`); a request naming
            another ``filterArn`` gets ResourceNotFoundException.
        campaign_arns: when given, the only ``campaignArn``/``recommenderArn`` values accepted
            (others: ResourceNotFoundException); ``None`` accepts any, since one server serves one
            model.
        metrics: where requests are counted.
        credentials: access key id → secret: when given, the service's routes need a valid SigV4
            signature by one of these keys (:mod:`hrnn.server.sigv4`); ``None`` accepts any.
    """

    def __init__(
        self,
        recommender: Recommender,
        *,
        filters: Mapping[str, NamedFilter] | None = None,
        campaign_arns: frozenset[str] | None = None,
        metrics: Metrics | None = None,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self._rec = recommender
        self._filters = dict(filters or {})
        self._campaign_arns = campaign_arns
        self.metrics = metrics or Metrics()
        self._credentials = dict(credentials) if credentials else None
        self._catalogue = frozenset(recommender.item_ids)
        self._templates: dict[str, str] = {}  # grows to at most the catalogue's size
        self._routes = {
            ("POST", "/recommendations"): ("GetRecommendations", self.get_recommendations),
            ("POST", "/personalize-ranking"): ("GetPersonalizedRanking", self.get_personalized_ranking),
            ("POST", "/events"): ("PutEvents", self.put_events),
        }

    def __call__(self, request: Request) -> Response:
        began = time.perf_counter()
        route, response = self._dispatch(request)
        self.metrics.observe(route, response.status, time.perf_counter() - began)
        return response

    def _dispatch(self, request: Request) -> tuple[str, Response]:
        if request.method == "GET" and request.path == "/ping":
            return "ping", Response(200, [_JSON], b'{"status":"ok"}')
        if request.method == "GET" and request.path == "/metrics":
            text = self.metrics.render(self._rec.stats())
            return "metrics", Response(200, [("Content-Type", "text/plain; version=0.0.4")], text.encode())
        found = self._routes.get((request.method, request.path))
        if found is None:
            known = any(path == request.path for _, path in self._routes)
            status = 405 if known else 404
            return "other", _error(
                ServiceError(
                    status, "UnknownOperationException", f"no operation {request.method} {request.path}"
                )
            )
        name, operation = found
        try:
            if self._credentials is not None:
                try:
                    verify_sigv4(
                        self._credentials, request.method, request.path, request.query,
                        request.headers, request.body,
                    )  # fmt: skip
                except SignatureError as error:
                    raise ServiceError(403, error.code, str(error)) from None
            try:
                body = json.loads(request.body) if request.body else {}
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise _invalid(f"request body: expected JSON, found an error: {error}") from None
            if not isinstance(body, dict):
                raise _invalid(f"request body: expected a JSON object, found {type(body).__name__}")
            result: Any = operation(body)
        except ServiceError as error:
            return name, _error(error)
        except (ValueError, TypeError) as error:  # the engine's checks (EventError is a ValueError)
            return name, _error(_invalid(str(error)))
        except OSError as error:  # the event log could not be written: nothing was recorded
            return name, _error(ServiceError(500, "InternalFailure", f"{type(error).__name__}: {error}"))
        payload = b"" if result is None else result if isinstance(result, bytes) else _dumps(result)
        return name, Response(200, [_JSON, ("x-amzn-RequestId", _ids.next())], payload)

    # ----- operations ---------------------------------------------------------------------------
    def get_recommendations(self, body: dict[str, Any]) -> bytes:
        """GetRecommendations: ``userId``, ``numResults`` (25; 1–500), ``filterArn``/``filterValues``;
        ``itemId`` and ``context`` are accepted and ignored."""
        self._check_campaign(body)
        user = _required(body, "userId")
        num = body.get("numResults", 25)
        if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= 500:
            raise _invalid(f"numResults: expected an integer in 1–500, found {num!r:.100}")
        items = self._rec.recommend(user, num, **self._filter_kwargs(body))
        # The response is written directly: json.dumps costs several times the engine's own time
        # for 25 items (float repr's shortest round trip dominates). Scores are f32 in the engine,
        # so 9 significant digits give them back exactly; one %-format call formats them all.
        if not items:
            return f'{{"itemList":[],"recommendationId":"RID-{_ids.next()}"}}'.encode()
        template = ",".join([self._item_template(item) for item, _ in items])
        entries = template % tuple([score for _, score in items])
        return f'{{"itemList":[{entries}],"recommendationId":"RID-{_ids.next()}"}}'.encode()

    def _item_template(self, item: str) -> str:
        """``{"itemId":"<item>","score":%.9g}``, the id JSON-escaped and ``%``-escaped (cached)."""
        cached = self._templates.get(item)
        if cached is None:
            escaped = _json_string(item).replace("%", "%%")
            cached = self._templates[item] = f'{{"itemId":{escaped},"score":%.9g}}'
        return cached

    def get_personalized_ranking(self, body: dict[str, Any]) -> dict[str, Any]:
        """GetPersonalizedRanking: ``inputList`` (1–500 item ids) ordered for ``userId``.

        Scores are the engine's renormalised over the ranked items (a softmax over the list). Items
        the model does not know follow, in input order, with score 0; filtered items are left out.
        """
        self._check_campaign(body)
        user = _required(body, "userId")
        inputs = body.get("inputList")
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= 500:
            raise _invalid(f"inputList: expected a list of 1–500 item ids, found {inputs!r:.100}")
        if not all(isinstance(item, str) for item in inputs):
            raise _invalid("inputList: expected item ids (strings)")
        unique = list(dict.fromkeys(inputs))
        kwargs = self._filter_kwargs(body)
        allowed = kwargs.pop("include_items", None)
        excluded = set(kwargs.get("exclude_items") or ())
        if allowed is not None:
            allowed_set = set(allowed)
            unique = [item for item in unique if item in allowed_set]
        known = [item for item in unique if item in self._catalogue]
        ranked = self._rec.recommend(user, len(known), include_items=known, **kwargs) if known else []
        total = math.fsum(score for _, score in ranked)
        ranking = [
            {"itemId": item, "score": score / total if total > 0 else 1.0 / len(ranked)}
            for item, score in ranked
        ]
        ranking += [
            {"itemId": item, "score": 0.0}
            for item in unique
            if item not in self._catalogue and item not in excluded
        ]
        return {"personalizedRanking": ranking, "recommendationId": f"RID-{_ids.next()}"}

    def put_events(self, body: dict[str, Any]) -> None:
        """PutEvents: ``trackingId`` (accepted), ``userId``, ``sessionId``, ``eventList`` (1–10)."""
        _required(body, "trackingId")
        session = _required(body, "sessionId")
        user = _optional(body, "userId")
        events = body.get("eventList")
        if not isinstance(events, list) or not events:
            raise _invalid(f"eventList: expected a list of 1 or more events, found {events!r:.100}")
        converted = [_event(event, i) for i, event in enumerate(events)]
        self._rec.put_events(user_id=user, session_id=session, events=converted)

    # ----- request parts ------------------------------------------------------------------------
    def _check_campaign(self, body: dict[str, Any]) -> None:
        if self._campaign_arns is None:
            return
        for key in ("campaignArn", "recommenderArn"):
            arn = body.get(key)
            if arn is not None and arn not in self._campaign_arns:
                raise ServiceError(404, "ResourceNotFoundException", f"{key}: no such resource {arn!r:.300}")

    def _filter_kwargs(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = body.get("filterArn")
        values = body.get("filterValues")
        if arn is None:
            if values:
                raise _invalid("filterValues: given without a filterArn")
            return {}
        named = self._filters.get(arn) if isinstance(arn, str) else None
        if named is None:
            raise ServiceError(404, "ResourceNotFoundException", f"filterArn: no such filter {arn!r:.300}")
        if values is not None and not (
            isinstance(values, dict) and all(isinstance(v, str) for v in values.values())
        ):
            raise _invalid("filterValues: expected an object of strings")
        try:
            return named.engine_kwargs(values)
        except FilterError as error:
            raise _invalid(str(error)) from None


def _optional(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise _invalid(f"{key}: expected a non-empty string, found {value!r:.100}")
    return value


def _required(body: dict[str, Any], key: str) -> str:
    value = _optional(body, key)
    if value is None:
        raise _invalid(f"{key}: required")
    return value


def _event(event: Any, index: int) -> dict[str, Any]:
    """One ``eventList`` entry as the engine's snake_case dict (the service's errors on failure)."""
    try:
        return event_from_api(event, index)
    except (TypeError, ValueError) as error:
        raise _invalid(str(error)) from None


def _error(error: ServiceError) -> Response:
    body = json.dumps({"message": str(error)}).encode()
    headers = [_JSON, ("x-amzn-ErrorType", error.code), ("x-amzn-RequestId", _ids.next())]
    return Response(error.status, headers, body)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
