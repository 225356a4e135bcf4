"""The HTTP server through the real AWS clients (boto3's personalize-runtime and personalize-events),
as a user points them at it: endpoint_url, dummy credentials."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hrnn
from hrnn.server import Server, load_config

boto3 = pytest.importorskip("boto3")

TINY = Path(__file__).parent / "fixtures" / "tiny_model"
FILTERS = {
    "arn:aws:personalize:us-east-1:1:filter/unseen": {"exclude_seen": True},
    "arn:aws:personalize:us-east-1:1:filter/by-type": {"exclude_seen": "$TYPES"},
    "arn:aws:personalize:us-east-1:1:filter/blocked": {"exclude_items": ["item13", "$MORE"]},
    "arn:aws:personalize:us-east-1:1:filter/only": {"include_items": ["item1", "item2", "item3"]},
}
CAMPAIGN = "arn:aws:personalize:us-east-1:1:campaign/hrnn"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(
        TINY, event_log=tmp_path / "events.log", port=0, filters=FILTERS, campaign_arns=[CAMPAIGN]
    ) as running:
        yield running


def _clients(server: Server) -> tuple[Any, Any]:
    kw = dict(
        endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    return boto3.client("personalize-runtime", **kw), boto3.client("personalize-events", **kw)


def test_get_recommendations_matches_the_engine(server: Server) -> None:
    runtime, _ = _clients(server)
    answer = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="user0", numResults=7, itemId="x")
    expected = server.recommender.recommend("user0", 7)
    assert [p["itemId"] for p in answer["itemList"]] == [item for item, _ in expected]
    # Scores are the engine's f32 values, written with the 9 digits that give them back exactly.
    assert [np.float32(p["score"]) for p in answer["itemList"]] == [np.float32(s) for _, s in expected]
    assert answer["recommendationId"].startswith("RID-")
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    default = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="user0")
    assert len(default["itemList"]) == 25  # the service's default numResults


def test_unknown_users_get_the_popularity_list(server: Server) -> None:
    runtime, _ = _clients(server)
    answer = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="nobody", numResults=3)
    assert [p["itemId"] for p in answer["itemList"]] == [i for i, _ in server.recommender.recommend("x", 3)]


def test_put_events_then_recommendations_reflect_them(server: Server) -> None:
    runtime, events = _clients(server)
    before = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="user0", numResults=40)["itemList"]
    events.put_events(
        trackingId="tracking",
        userId="user0",
        sessionId="s1",
        eventList=[
            {
                "eventType": "click",
                "sentAt": T0,
                "itemId": "item5",
                "eventId": "e1",
                "properties": '{"a": 1}',
            },
            {
                "eventType": "buy",
                "sentAt": T0,
                "itemId": "item6",
                "eventValue": 2.5,
                "impression": ["item5"],
                "recommendationId": "RID-1",
            },
        ],
    )
    after = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="user0", numResults=40)["itemList"]
    assert after != before
    assert server.recommender.history("user0")[-2:] == ["item5", "item6"]
    stats = server.recommender.stats()
    assert stats["events_accepted"] == 2
    # The same event id again is a repeat, dropped as the service does, and still answered 200.
    events.put_events(
        trackingId="t",
        userId="user0",
        sessionId="s1",
        eventList=[{"eventType": "click", "sentAt": T0, "eventId": "e1"}],
    )
    assert server.recommender.stats()["events_duplicate"] == 1
    # Anonymous session: no userId, the session id is the key.
    events.put_events(
        trackingId="t",
        sessionId="anon-7",
        eventList=[{"eventType": "click", "sentAt": T0, "itemId": "item3"}],
    )
    assert server.recommender.history("anon-7") == ["item3"]


def test_filters_map_to_the_engine(server: Server) -> None:
    runtime, events = _clients(server)
    events.put_events(
        trackingId="t",
        userId="fresh",
        sessionId="s",
        eventList=[
            {"eventType": "click", "sentAt": T0, "itemId": "item5"},
            {"eventType": "buy", "sentAt": T0, "itemId": "item6"},
        ],
    )
    rec = server.recommender

    def items(**kw: Any) -> list[str]:
        answer = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="fresh", numResults=40, **kw)
        return [p["itemId"] for p in answer["itemList"]]

    arn = "arn:aws:personalize:us-east-1:1:filter/"
    assert {"item5", "item6"} <= set(items())
    assert items(filterArn=arn + "unseen") == [i for i, _ in rec.recommend("fresh", 40, exclude_seen=True)]
    by_type = items(filterArn=arn + "by-type", filterValues={"TYPES": '"buy"'})
    assert "item6" not in by_type and "item5" in by_type
    both = items(filterArn=arn + "by-type", filterValues={"TYPES": '"buy","click"'})
    assert "item6" not in both and "item5" not in both
    blocked = items(filterArn=arn + "blocked", filterValues={"MORE": '"item1","item2"'})
    assert not {"item13", "item1", "item2"} & set(blocked) and len(blocked) == 37
    assert sorted(items(filterArn=arn + "only")) == ["item1", "item2", "item3"]


def test_personalized_ranking_is_a_softmax_over_the_list(server: Server) -> None:
    runtime, _ = _clients(server)
    inputs = ["item3", "item1", "not-in-model", "item2", "item1"]
    answer = runtime.get_personalized_ranking(campaignArn=CAMPAIGN, userId="user2", inputList=inputs)
    ranking = answer["personalizedRanking"]
    assert [p["itemId"] for p in ranking][-1] == "not-in-model"
    assert ranking[-1]["score"] == 0.0
    known = ranking[:-1]
    assert sorted(p["itemId"] for p in known) == ["item1", "item2", "item3"]
    assert sum(p["score"] for p in known) == pytest.approx(1.0)
    full = dict(server.recommender.recommend("user2", 40))
    total = sum(full[p["itemId"]] for p in known)
    for p in known:
        assert p["score"] == pytest.approx(full[p["itemId"]] / total, rel=1e-5)
    assert [p["score"] for p in known] == sorted((p["score"] for p in known), reverse=True)
    assert answer["recommendationId"].startswith("RID-")


def test_invalid_input_raises_the_sdk_exception(server: Server) -> None:
    runtime, events = _clients(server)
    with pytest.raises(runtime.exceptions.InvalidInputException, match="numResults"):
        runtime.get_recommendations(campaignArn=CAMPAIGN, userId="user0", numResults=501)
    with pytest.raises(runtime.exceptions.InvalidInputException, match="userId: required"):
        runtime.get_recommendations(campaignArn=CAMPAIGN, numResults=5)
    with pytest.raises(runtime.exceptions.InvalidInputException, match="TYPES"):
        runtime.get_recommendations(
            campaignArn=CAMPAIGN, userId="user0", filterArn="arn:aws:personalize:us-east-1:1:filter/by-type"
        )
    with pytest.raises(runtime.exceptions.InvalidInputException, match="JSON strings"):
        runtime.get_recommendations(
            campaignArn=CAMPAIGN,
            userId="user0",
            filterArn="arn:aws:personalize:us-east-1:1:filter/by-type",
            filterValues={"TYPES": "buy"},
        )
    with pytest.raises(events.exceptions.InvalidInputException, match="sent_at") as caught:
        events.put_events(
            trackingId="t",
            userId="u",
            sessionId="s",
            eventList=[{"eventType": "click", "sentAt": datetime(2300, 1, 1, tzinfo=UTC)}],
        )
    assert caught.value.response["Error"]["Code"] == "InvalidInputException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(events.exceptions.InvalidInputException, match="properties"):
        events.put_events(
            trackingId="t",
            sessionId="s",
            eventList=[{"eventType": "click", "sentAt": T0, "properties": "{x"}],
        )
    assert server.recommender.stats()["events_accepted"] == 0  # nothing recorded


def test_unknown_resources_raise_resource_not_found(server: Server) -> None:
    runtime, _ = _clients(server)
    with pytest.raises(runtime.exceptions.ResourceNotFoundException, match="no such filter"):
        runtime.get_recommendations(campaignArn=CAMPAIGN, userId="user0", filterArn="arn:nope")
    with pytest.raises(runtime.exceptions.ResourceNotFoundException, match="campaignArn"):
        runtime.get_recommendations(campaignArn="arn:other", userId="user0")
    with pytest.raises(runtime.exceptions.ResourceNotFoundException, match="campaignArn"):
        runtime.get_personalized_ranking(campaignArn="arn:other", userId="user0", inputList=["item1"])


def _raw(server: Server, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_ping_metrics_and_unknown_routes(server: Server) -> None:
    runtime, events = _clients(server)
    assert _raw(server, "GET", "/ping")[0] == 200
    runtime.get_recommendations(campaignArn=CAMPAIGN, userId="user0")
    events.put_events(
        trackingId="t",
        userId="u",
        sessionId="s",
        eventList=[{"eventType": "click", "sentAt": T0, "itemId": "zz"}],
    )
    with pytest.raises(runtime.exceptions.InvalidInputException):
        runtime.get_recommendations(campaignArn=CAMPAIGN, userId="user0", numResults=501)
    status, headers, body = _raw(server, "GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'hrnn_requests_total{route="GetRecommendations",status="200"} 1' in text
    assert 'hrnn_requests_total{route="GetRecommendations",status="400"} 1' in text
    assert 'hrnn_requests_total{route="PutEvents",status="200"} 1' in text
    assert 'hrnn_request_duration_seconds_count{route="GetRecommendations"} 2' in text
    assert 'hrnn_request_duration_seconds_bucket{route="PutEvents",le="+Inf"} 1' in text
    assert "hrnn_events_accepted_total 1" in text
    assert "hrnn_events_unknown_item_total 1" in text
    status, headers, body = _raw(server, "GET", "/nothing")
    assert status == 404 and headers["x-amzn-errortype"] == "UnknownOperationException"
    assert _raw(server, "GET", "/recommendations")[0] == 405
    status, headers, body = _raw(server, "POST", "/recommendations", b"[1, 2]")
    assert status == 400 and headers["x-amzn-errortype"] == "InvalidInputException"
    assert "JSON object" in json.loads(body)["message"]
    assert _raw(server, "POST", "/recommendations", b"{not json")[0] == 400


def test_keep_alive_serves_many_requests_on_one_connection(server: Server) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    body = json.dumps({"userId": "user0", "numResults": 2})
    for _ in range(20):
        conn.request("POST", "/recommendations", body=body)
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Connection") == "keep-alive"
        assert len(json.loads(response.read())["itemList"]) == 2
    conn.close()


def test_concurrent_clients(server: Server) -> None:
    runtime, events = _clients(server)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(10):
                events.put_events(
                    trackingId="t",
                    userId=f"c{k}",
                    sessionId="s",
                    eventList=[
                        {"eventType": "click", "sentAt": T0, "itemId": f"item{i}", "eventId": f"{k}-{i}"}
                    ],
                )
                runtime.get_recommendations(campaignArn=CAMPAIGN, userId=f"c{k}", numResults=5)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert server.recommender.stats()["events_accepted"] == 40


def test_stop_closes_the_recommender_it_loaded(tmp_path: Path) -> None:
    server = Server(TINY, event_log=tmp_path / "events.log", port=0).start()
    _, events = _clients(server)
    events.put_events(trackingId="t", sessionId="s", eventList=[{"eventType": "click", "sentAt": T0}])
    server.stop()
    server.stop()  # idempotent
    # The log's writer lock was released: another recommender can open it and sees the event.
    with hrnn.Recommender.load(TINY, event_log=tmp_path / "events.log") as again:
        assert again.stats()["events_replayed"] == 1


def test_a_loaded_recommender_stays_open(tmp_path: Path) -> None:
    rec = hrnn.Recommender.load(TINY)
    with Server(rec, port=0):
        pass
    assert rec.recommend("user0", 1)
    with pytest.raises(ValueError, match="event_log"):
        Server(rec, event_log=tmp_path / "x.log", port=0)


def test_config_file(tmp_path: Path) -> None:
    path = tmp_path / "server.json"
    path.write_text(json.dumps({"filters": FILTERS, "campaign_arns": [CAMPAIGN]}))
    config = load_config(path)
    assert set(config["filters"]) == set(FILTERS) and config["campaign_arns"] == [CAMPAIGN]
    path.write_text(json.dumps({"credentials": {"AKID": "secret"}}))
    assert load_config(path)["credentials"] == {"AKID": "secret"}
    path.write_text(json.dumps({"credentials": ["AKID"]}))
    with pytest.raises(ValueError, match="credentials"):
        load_config(path)
    path.write_text(json.dumps({"filter": {}}))
    with pytest.raises(ValueError, match=r"unknown keys \['filter'\]"):
        load_config(path)
    path.write_text(json.dumps({"filters": {"arn:x": {"exclude_seen": "click"}}}))
    with pytest.raises(ValueError, match=r"filters\['arn:x'\].exclude_seen"):
        load_config(path)
    path.write_text(json.dumps({"filters": {"arn:x": {"exclude": ["a"]}}}))
    with pytest.raises(ValueError, match="unknown keys"):
        load_config(path)


def test_item_ids_are_json_escaped() -> None:
    from hrnn.server.personalize import PersonalizeService

    service = PersonalizeService(hrnn.Recommender.load(TINY))
    for item in ['a"b', "50%", "\\x", "é\n"]:
        entry = json.loads(service._item_template(item) % 0.25)
        assert entry == {"itemId": item, "score": 0.25}


def test_sigv4_is_verified_when_credentials_are_configured() -> None:
    credentials = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
    with Server(TINY, port=0, credentials=credentials) as server:

        def client(service: str, key: str, secret: str) -> Any:
            return boto3.client(
                service, endpoint_url=server.url, region_name="eu-west-1",
                aws_access_key_id=key, aws_secret_access_key=secret,
            )  # fmt: skip

        good = client("personalize-runtime", "AKIDEXAMPLE", credentials["AKIDEXAMPLE"])
        assert (
            len(good.get_recommendations(campaignArn=CAMPAIGN, userId="user0", numResults=3)["itemList"]) == 3
        )
        events = client("personalize-events", "AKIDEXAMPLE", credentials["AKIDEXAMPLE"])
        events.put_events(trackingId="t", sessionId="s", eventList=[{"eventType": "click", "sentAt": T0}])
        wrong_secret = client("personalize-runtime", "AKIDEXAMPLE", "not-the-secret")
        with pytest.raises(botocore_error(), match="InvalidSignatureException") as caught:
            wrong_secret.get_recommendations(campaignArn=CAMPAIGN, userId="user0")
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        unknown_key = client("personalize-runtime", "AKIDOTHER", "x")
        with pytest.raises(botocore_error(), match="UnrecognizedClientException"):
            unknown_key.get_recommendations(campaignArn=CAMPAIGN, userId="user0")
        status, headers, _ = _raw(server, "POST", "/recommendations", b'{"userId": "user0"}')
        assert status == 403 and headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
        assert _raw(server, "GET", "/ping")[0] == 200  # health checks need no signature


def test_sigv4_refuses_an_old_signature() -> None:
    from hrnn.server.sigv4 import SignatureError, verify_sigv4

    headers = {
        "host": "h",
        "x-amz-date": "20240101T000000Z",
        "authorization": "AWS4-HMAC-SHA256 Credential=K/20240101/us-east-1/personalize/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    }
    with pytest.raises(SignatureError, match="15 minutes") as caught:
        verify_sigv4({"K": "s"}, "POST", "/events", "", headers, b"{}")
    assert caught.value.code == "InvalidSignatureException"


def botocore_error() -> type[Exception]:
    from botocore.exceptions import ClientError

    return ClientError


def test_a_failed_start_releases_the_event_log(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    with Server(TINY, port=0) as first, pytest.raises(OSError, match="in use"):
        Server(TINY, event_log=log, port=first.port)
    with pytest.raises(ValueError, match="unknown keys"):
        Server(TINY, event_log=log, port=0, filters={"arn:x": {"exclude": True}})
    hrnn.Recommender.load(TINY, event_log=log).close()  # not locked by the failed servers
