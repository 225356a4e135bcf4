"""Serving commands: ``recommend``, ``batch-recommend`` (Personalize's batch inference job format),
``put-events`` (PutEvents payloads, camelCase as the API sends them) and ``repair-log``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hrnn._api_events import event_from_api

__all__ = ["cmd_batch_recommend", "cmd_put_events", "cmd_recommend", "cmd_repair_log", "event_from_api"]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _load(args: argparse.Namespace) -> Any:
    from hrnn.recommender import Recommender

    return Recommender.load(args.model_dir, event_log=getattr(args, "event_log", None))


def cmd_recommend(args: argparse.Namespace) -> int:
    """`hrnn recommend`: one user's recommendations, as text or GetRecommendations JSON."""
    rec = _load(args)
    items = rec.recommend(
        args.user_id, num_results=args.num_results, item_id=args.item_id, exclude_seen=args.exclude_seen
    )
    if args.json:
        response = {
            "itemList": [{"itemId": item, "score": round(float(score), 7)} for item, score in items],
            "recommendationId": f"RID-{uuid.uuid4()}",
            # Not in Personalize's response: false when the user has no state (popularity list).
            "personalized": items.personalized,
        }
        print(json.dumps(response, indent=2, ensure_ascii=False))
    else:
        if not items.personalized:
            print(f"# user {args.user_id!r} is unknown to the model: the popularity list, not a personal one")
        for rank, (item, score) in enumerate(items, 1):
            print(f"{rank:>4}  {item}  {score:.6f}")
    return 0


def _progress(total: int | None, quiet: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="user", disable=quiet, file=sys.stderr)


def _chunks(path: str, size: int) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                chunk.append((number, line))
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _parse_batch_line(line: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return None, f"invalid JSON: {error.msg}"
    if not isinstance(record, dict):
        return None, "expected a JSON object"
    user = record.get("userId")
    if not isinstance(user, str) or not user:
        return record, 'expected a non-empty string "userId"'
    return record, None


def cmd_batch_recommend(args: argparse.Namespace) -> int:
    """`hrnn batch-recommend`: a batch inference job, streamed in chunks, output written atomically."""
    if not 1 <= args.num_results <= 500:
        raise ValueError(f"num_results: expected a value in [1, 500], found {args.num_results}")
    rec = _load(args)
    out_path = Path(args.output)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent or ".")
    total = errors = 0
    bar = _progress(None, args.quiet)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            for chunk in _chunks(args.input, args.chunk_size):
                parsed = [(_parse_batch_line(line), number) for number, line in chunk]
                users = [
                    record["userId"] for (record, err), _ in parsed if err is None and record is not None
                ]
                batch = rec.recommend_batch(users, num_results=args.num_results) if users else None
                ids = batch.item_ids().tolist() if batch is not None else []
                scores = batch.scores.tolist() if batch is not None else []
                k = 0
                for (record, err), number in parsed:
                    if err is not None:
                        errors += 1
                        out.write(
                            _dumps({"input": record, "output": None, "error": f"line {number}: {err}"}) + "\n"
                        )
                        continue
                    kept = [i for i, item in enumerate(ids[k]) if item is not None]  # drop -1 padding
                    result = {
                        "recommendedItems": [ids[k][i] for i in kept],
                        "scores": [round(scores[k][i], 7) for i in kept],
                    }
                    out.write(_dumps({"input": record, "output": result, "error": None}) + "\n")
                    k += 1
                total += len(parsed)
                if bar is not None:
                    bar.update(len(parsed))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, out_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    print(f"{total} lines: {total - errors} recommended, {errors} with errors -> {out_path}", file=sys.stderr)
    return 0


def cmd_put_events(args: argparse.Namespace) -> int:
    """`hrnn put-events`: replays PutEvents requests; exit 1 if any request was rejected."""
    rec = _load(args)
    before = rec.stats()
    failed = 0
    with open(args.input, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("expected a JSON object")
                events = [event_from_api(e, i) for i, e in enumerate(request.get("eventList", []))]
                rec.put_events(
                    user_id=request.get("userId"), session_id=request.get("sessionId"), events=events
                )
            except (ValueError, TypeError) as error:
                failed += 1
                print(f"{args.input}: line {number}: {type(error).__name__}: {error}", file=sys.stderr)
    after = rec.stats()
    delta = {key: int(after[key]) - int(before[key]) for key in before}
    print(
        f"{delta['events_accepted']} events accepted into {args.event_log} "
        f"({delta['events_unknown_item']} for items the model does not know, "
        f"{delta['events_without_item']} without an item); "
        f"{delta['events_duplicate']} repeats dropped; {failed} requests rejected"
    )
    return 1 if failed else 0


def cmd_repair_log(args: argparse.Namespace) -> int:
    """`hrnn repair-log`: salvage every intact record of a damaged event log, keeping a copy."""
    from hrnn.event_log import repair_event_log

    report = repair_event_log(args.event_log)
    lost = sum(end - start for start, end in report.skipped)
    print(
        f"{args.event_log}: kept {report.events} events in {report.records} records; "
        f"left out {lost} damaged bytes in {len(report.skipped)} ranges"
        + (" (converted from format 1)" if report.converted else "")
        + f"; the original is kept as {report.backup}"
    )
    for start, end in report.skipped:
        print(f"  damaged bytes {start}–{end}")
    return 0
