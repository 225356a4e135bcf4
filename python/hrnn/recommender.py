"""In-process recommendations from a trained model (Amazon Personalize's GetRecommendations and
PutEvents, as a library): scoring and per-user state updates run in Rust with the GIL released."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from hrnn import _hrnn

__all__ = ["BatchRecommendations", "Recommendations", "Recommender", "SwapReport"]

logger = logging.getLogger(__name__)


class BatchRecommendations:
    """What :meth:`Recommender.recommend_batch` returns (unpacks as ``item_indices, scores``).

    Attributes:
        item_indices: int64 ``[n, k]``, item indices best first; ``-1`` pads rows that have fewer
            than ``k`` items left after exclusions. :meth:`item_ids` maps them.
        scores: float32 ``[n, k]``, the matching scores (``0`` in padded slots).
    """

    __slots__ = ("_ids", "_model_ids", "item_indices", "scores")

    def __init__(
        self,
        item_indices: npt.NDArray[np.int64],
        scores: npt.NDArray[np.float32],
        model_ids: _hrnn.ItemIds | None = None,
    ) -> None:
        self.item_indices = item_indices
        self.scores = scores
        self._model_ids = model_ids
        self._ids: npt.NDArray[np.object_] | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.item_indices, self.scores))

    def item_ids(self) -> npt.NDArray[np.object_]:
        """The item ids of :attr:`item_indices` (same shape; ``None`` for ``-1`` padding), taken
        from the model that answered — right even if the recommender swapped models since."""
        if self._ids is None:
            if self._model_ids is None:
                raise ValueError("item_ids: this batch was built without its model's item ids")
            table = np.asarray([*self._model_ids.tolist(), None], dtype=object)
            self._ids = table[self.item_indices]
        return self._ids


class SwapReport(NamedTuple):
    """What :meth:`Recommender.swap` did."""

    events_replayed: int
    """Logged events applied to the new model's states."""
    events_before_cutoff: int
    """Logged events left out as already in the new model's training data."""


class Recommendations(list[tuple[str, float]]):
    """What :meth:`Recommender.recommend` returns: ``(item_id, score)`` pairs, best first — a list,
    with one more fact.

    Attributes:
        personalized: ``True`` when the list was scored from the user's state; ``False`` when the
            user has no state (never seen in training or through events), so the list is the
            catalogue's popularity order, the same for every such user.
    """

    # A class attribute, not a slot set by an ``__init__``: the list is then built by ``list``'s own
    # constructor, with no Python frame (0.7 µs of a ~10 µs call on a small catalogue).
    __slots__ = ()
    personalized: ClassVar[bool] = True

    def __repr__(self) -> str:
        return f"Recommendations({list.__repr__(self)}, personalized={self.personalized})"


class _PopularityList(Recommendations):
    """A :class:`Recommendations` for a user without a state: the popularity list."""

    __slots__ = ()
    personalized: ClassVar[bool] = False


def _require_id(value: object, name: str) -> str:
    """An id argument: a ``str`` (numpy's ``str_`` included), never coerced from another type."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str, found {type(value).__name__} {value!r:.80}")
    return value


def _id_list(values: Iterable[Any] | None, name: str) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        raise TypeError(f"{name}: expected a list of ids, found a single str {values!r}")
    try:
        items = list(values)
    except TypeError:
        raise TypeError(f"{name}: expected a list of ids, found {type(values).__name__}") from None
    for i, v in enumerate(items):
        _require_id(v, f"{name}[{i}]")
    return items


class Recommender:
    """A trained model serving recommendations, with per-user state kept current by events.

    The model is immutable and shared; each user's recurrent state lives in a sharded, locked map
    in Rust, so any number of Python threads may call :meth:`recommend`, :meth:`recommend_batch`
    and :meth:`put_events` at once — every call releases the GIL.

    Users are looked up by id: a training user starts from the state stored in the model, a user or
    anonymous session seen only through :meth:`put_events` starts from ``h_0 = 0``, and anyone
    without a state gets the popularity list.
    """

    __slots__ = ("_inner", "_item_ids")

    def __init__(self, inner: _hrnn.Recommender) -> None:
        self._inner = inner
        self._item_ids: npt.NDArray[np.object_] | None = None

    @classmethod
    def load(
        cls,
        model_dir: str | os.PathLike[str],
        *,
        event_log: str | os.PathLike[str] | None = None,
        precision: Literal["fp32", "bf16"] = "fp32",
        max_events_per_call: int = 10,
        max_event_bytes: int = 10_240,
        dedup_window: int = 1_000_000,
    ) -> Recommender:
        """Loads a model directory written by :meth:`hrnn.TrainedModel.save` (docs/format.md).

        Args:
            model_dir: the directory holding ``model.json`` and ``model.safetensors``.
            event_log: an append-only log of accepted events (docs/format.md, "Durability").
                Created when missing; when present, its events are replayed so a restarted process
                has the same state. A torn tail (a crash mid-write) is dropped with a logged
                warning; damage anywhere else is an :class:`EventLogError` (``hrnn repair-log``
                salvages every intact record). The recommender holds the log's writer lock until
                :meth:`close` (or garbage collection): a second writer gets
                :class:`EventLogLockedError`. Events recorded for another model (a log kept across
                a retrain) are replayed only if newer than this model's training data — older ones
                are in it already (``stats()["events_before_cutoff"]``).
            precision: how the item table (the output layer, by far the largest tensor) is held
                in memory; the model file is unchanged. ``"fp32"`` (default) scores exactly as
                trained. ``"bf16"`` rounds each output weight to bfloat16 (nearest, ties to even;
                biases and the recurrent cell stay f32): half the memory and memory traffic, so a
                single query runs about twice as fast, while each logit moves by ~0.1–0.4% —
                scores then differ from f32 by that much and near-ties in the top-K may swap
                (on trained models: top-25 overlap 99.7–99.9%, metrics within 0.001; when to
                choose it: docs/api.md, "Item-table precision").
            max_events_per_call: most events one :meth:`put_events` call may carry (Personalize:
                10); raise it for bulk loads.
            max_event_bytes: most bytes one event may take as JSON (Personalize: 10 KB).
            dedup_window: how many accepted events' identities are remembered to drop repeats
                (~50 bytes each); a repeat is caught if fewer newer events were accepted between.

        Returns:
            The recommender.

        Raises:
            ModelFormatError: a file that does not match docs/format.md; names the file and the
                tensor or field.
            FileNotFoundError: the directory or one of its files is missing.
            EventLogError: the event log is corrupt before its end, or not a regular file.
            EventLogLockedError: another process or recommender holds the event log.
            OSError: the event log cannot be read or written.
            ValueError: a limit out of range.
        """
        inner = _hrnn.Recommender.load(
            os.fspath(model_dir),
            None if event_log is None else os.fspath(event_log),
            precision,
            _check_int(max_events_per_call, "max_events_per_call"),
            _check_int(max_event_bytes, "max_event_bytes"),
            _check_int(dedup_window, "dedup_window"),
        )
        stats = inner.stats()
        if stats["event_log_dropped_bytes"]:
            logger.warning(
                "event log %s: dropped a torn tail (%d bytes); every earlier event was replayed",
                os.fspath(event_log or ""),
                stats["event_log_dropped_bytes"],
            )
        if stats["event_log_other_model"]:
            logger.warning(
                "event log %s was last written for another model: replayed %d of its events, left "
                "out %d recorded for other models and not newer than this model's training data",
                os.fspath(event_log or ""),
                stats["events_replayed"],
                stats["events_before_cutoff"],
            )
        if stats["events_replayed_duplicate"]:
            logger.warning(
                "event log %s: skipped %d repeated events",
                os.fspath(event_log or ""),
                stats["events_replayed_duplicate"],
            )
        return cls(inner)

    def __repr__(self) -> str:
        return (
            f"Recommender(items={self.num_items}, hidden_dimension={self.hidden_dimension}, "
            f"isa={self._inner.isa!r}, precision={self._inner.precision!r})"
        )

    # ----- recommendations ----------------------------------------------------------------------
    def recommend(
        self,
        user_id: str,
        num_results: int = 25,
        *,
        item_id: str | None = None,
        exclude_seen: bool | Iterable[str] = False,
        exclude_items: Iterable[str] | None = None,
        include_items: Iterable[str] | None = None,
        at: float | None = None,
    ) -> Recommendations:
        """The best items for one user (Personalize's GetRecommendations).

        Args:
            user_id: the user id, or the session id of an anonymous session. Users without a state
                (never seen) get the popularity list — never an error.
            num_results: how many items, 1–500.
            item_id: accepted for Personalize compatibility and ignored.
            exclude_seen: ``True``: drop every item the user has interacted with — in the
                training data and through :meth:`put_events` (Personalize's filter
                ``EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN (…)`` over every type). A list of
                event types: drop only the items the user had events of those types with (types
                never seen match nothing). ``False``: drop nothing.
            exclude_items: item ids never to return (unknown ids are ignored).
            include_items: when given, return only these items (unknown ids are ignored).
            at: query time in Unix seconds: the state is discounted by the time elapsed since the
                user's last event (the readout gate of docs/model.md). ``None`` = no extra
                elapsed time.

        Returns:
            ``(item_id, score)`` pairs, best first; scores are softmax probabilities over the
            whole catalogue (for users without a state: shares of the popularity counts, and
            ``personalized`` is ``False``).

        Raises:
            TypeError: an id that is not a ``str``.
            ValueError: ``num_results`` outside 1–500 or a non-finite ``at``.
        """
        del item_id  # Personalize's related-item parameter; this recipe does not use it
        if (
            type(user_id) is str
            and type(num_results) is int
            and 1 <= num_results <= 500
            and type(exclude_seen) is bool
            and exclude_items is None
            and include_items is None
            and at is None
        ):
            # The common call, whose arguments need no conversion: straight to the engine (the
            # checks below cost ~1 µs of a ~10 µs call on a small catalogue).
            items, personalized = self._inner.recommend(user_id, num_results, exclude_seen)
        else:
            exclude, types = _seen_filter(exclude_seen)
            items, personalized = self._inner.recommend(
                _require_id(user_id, "user_id"),
                _check_num_results(num_results),
                exclude_seen=exclude,
                exclude_items=_id_list(exclude_items, "exclude_items"),
                include_items=_id_list(include_items, "include_items"),
                at=_check_time(at),
                seen_event_types=types,
            )
        return Recommendations(items) if personalized else _PopularityList(items)

    def recommend_batch(
        self,
        user_ids: Sequence[str],
        num_results: int = 25,
        *,
        exclude_seen: bool | Iterable[str] = False,
        exclude_items: Iterable[str] | None = None,
        at: float | None = None,
    ) -> BatchRecommendations:
        """The best items for many users at once (a blocked matrix product on every core).

        Same meaning as :meth:`recommend` per user; ``exclude_items`` and ``at`` apply to every
        user.

        Args:
            user_ids: the users (or anonymous session ids).
            num_results: how many items per user, 1–500.
            exclude_seen: drop what each user has interacted with (``True``, or a list of event
                types, as in :meth:`recommend`).
            exclude_items: item ids never to return.
            at: query time in Unix seconds (``None`` = no extra elapsed time).

        Returns:
            Item indices and scores, ``[len(user_ids), min(num_results, num_items)]`` each.

        Raises:
            ValueError: ``num_results`` outside 1–500 or a non-finite ``at``.
        """
        exclude, types = _seen_filter(exclude_seen)
        users = _id_list(user_ids, "user_ids")
        assert users is not None
        indices, scores, model_ids = self._inner.recommend_batch(
            users,
            _check_num_results(num_results),
            exclude_seen=exclude,
            exclude_items=_id_list(exclude_items, "exclude_items"),
            at=_check_time(at),
            seen_event_types=types,
        )
        return BatchRecommendations(indices, scores, model_ids)

    def item_ids_of(self, item_indices: npt.ArrayLike) -> npt.NDArray[np.object_]:
        """Maps item indices (any shape) of the current model to item ids; ``-1`` padding maps to
        ``None``. For a batch's indices, :meth:`BatchRecommendations.item_ids` is right across a
        :meth:`swap` too."""
        ids = self._inner.item_ids
        if self._item_ids is None or len(self._item_ids) != len(ids) + 1 or self._item_ids[-2] != ids[-1]:
            self._item_ids = np.asarray([*ids, None], dtype=object)
        indices = np.asarray(item_indices, dtype=np.int64)
        if indices.size and (indices.min() < -1 or indices.max() >= self.num_items):
            raise ValueError(
                f"item_indices: expected values in [-1, {self.num_items}), found out-of-range values"
            )
        return self._item_ids[indices]

    def scores(self, user_id: str, *, at: float | None = None) -> npt.NDArray[np.float32] | None:
        """Every item's score for the user (float32 ``[num_items]``), or None without a state."""
        return self._inner.scores(_require_id(user_id, "user_id"), _check_time(at))

    # ----- events -------------------------------------------------------------------------------
    def put_events(
        self, *, user_id: str | None = None, session_id: str, events: Sequence[Mapping[str, Any]]
    ) -> int:
        """Records real-time events (Personalize's PutEvents) and updates the user's state.

        Each event is a dict with Personalize's fields in snake_case: ``event_type`` (required,
        1–256 characters), ``sent_at`` (required: Unix seconds from 1970 to 2199, or a
        timezone-aware ``datetime``; milliseconds are rejected with a message saying so),
        ``item_id``, ``event_value``, ``event_id``, ``impression`` (a list of item ids) and
        ``properties`` (a JSON string or a dict, strict JSON). Each event with a known item is one
        gated-cell step (``O(H²)``), so the next recommendation reflects it. An event whose item
        the model does not know, or without an item, is kept (logged, counted in :meth:`stats`)
        but cannot move the state.

        Repeats are dropped, as Personalize does: an event whose ``event_id`` was accepted before,
        or — without an ``event_id`` — one with the same user, time, type, item, value, impression
        and properties as an accepted one (within the last ``dedup_window`` events).

        A call is all or nothing: it is checked whole, written to the event log as one record and
        fsynced (concurrent callers share one fsync), and only then applied. If it raises, nothing
        was recorded, so retrying it is safe.

        Args:
            user_id: the user; without it the events belong to the anonymous session
                ``session_id``, which is then served as a user of that id.
            session_id: the session (1–256 characters).
            events: the events, in the order they happened (1 to ``max_events_per_call``).

        Returns:
            How many events were accepted (not repeats).

        Raises:
            EventError: an invalid event; names its index and field. Nothing is recorded then.
            TypeError: an id that is not a ``str``, or ``events`` not a list of dicts.
            ValueError: an invalid ``user_id`` or ``session_id``, or too many events.
            OSError: the event log could not be written (a full disk): nothing was recorded; the
                log recovers by itself when the write succeeds again.
        """
        if isinstance(events, str | bytes | Mapping):
            raise TypeError(f"events: expected a list of event dicts, found {type(events).__name__}")
        return self._inner.put_events(
            _require_id(session_id, "session_id"),
            events,
            None if user_id is None else _require_id(user_id, "user_id"),
        )

    def swap(self, model_dir: str | os.PathLike[str]) -> SwapReport:
        """Replaces the model with the one in ``model_dir`` while requests are served.

        The new model is read and checked while the old one keeps serving (one that fails to load
        raises and leaves the old one in place). Then, with :meth:`put_events` paused for the
        moment it takes: each user's real-time state is rebuilt from the new model's stored state
        plus the logged events it has not learnt from — every event logged after its training
        cut-off (the latest timestamp in its training data), and every event recorded for it — and
        the event log records the new model and keeps running. Queries that started before the
        swap finish on the old model. No event is lost or applied twice. Without an event log the
        new model starts from its stored states (nothing recorded the events since the old one).

        Returns:
            How many logged events were replayed onto the new model, and how many were left out
            as already in its training data.

        Raises:
            ModelFormatError, FileNotFoundError: the new model cannot be loaded (the old one
                keeps serving).
        """
        replayed, before_cutoff = self._inner.swap(os.fspath(model_dir))
        self._item_ids = None
        return SwapReport(replayed, before_cutoff)

    def close(self) -> None:
        """Closes the event log, releasing its writer lock, once the calls in flight are done.

        Queries keep working; :meth:`put_events` then raises, since events could no longer be made
        durable. Also what leaving a ``with Recommender.load(...) as rec:`` block does. Without an
        event log it does nothing.
        """
        self._inner.close()

    def __enter__(self) -> Recommender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def history(self, user_id: str) -> list[str]:
        """The item ids the engine holds for the user, most recent last (``[]`` if none)."""
        return self._inner.history(_require_id(user_id, "user_id"))

    def state(self, user_id: str) -> tuple[npt.NDArray[np.float32], float | None] | None:
        """The user's hidden state ``h`` (float32 ``[H]``) and last event time, or None."""
        return self._inner.state(_require_id(user_id, "user_id"))

    def stats(self) -> dict[str, int | bool]:
        """Counters: ``events_accepted``, ``events_duplicate`` (repeats dropped),
        ``events_unknown_item``, ``events_without_item``, ``events_replayed``,
        ``events_replayed_duplicate``, ``events_before_cutoff`` (logged events left out as already
        in the model's training data), ``event_log_dropped_bytes`` (a torn tail cut at load),
        ``event_log_events`` (events in the log), ``users_with_events``; and
        ``event_log_other_model`` (the log was last written for another model)."""
        return self._inner.stats()

    # ----- model facts --------------------------------------------------------------------------
    @property
    def item_ids(self) -> list[str]:
        """Item id of each item index."""
        return self._inner.item_ids

    @property
    def event_types(self) -> list[str]:
        """Event type of each event-type index."""
        return self._inner.event_types

    @property
    def num_items(self) -> int:
        """Number of items in the catalogue."""
        return self._inner.num_items

    @property
    def hidden_dimension(self) -> int:
        """The hidden dimension ``H``."""
        return self._inner.hidden_dimension

    @property
    def session_timeout(self) -> int:
        """Seconds of inactivity after which an event starts a new session."""
        return self._inner.session_timeout

    @property
    def precision(self) -> str:
        """How the item table is held in memory (``"fp32"`` or ``"bf16"``), chosen at load time."""
        return self._inner.precision

    @property
    def isa(self) -> str:
        """The instruction set chosen at load time (``"avx2+fma"`` or ``"portable"``)."""
        return self._inner.isa


def _seen_filter(exclude_seen: bool | Iterable[str]) -> tuple[bool, list[str] | None]:
    """``(exclude_seen, seen_event_types)`` of the engine for ``recommend``'s ``exclude_seen``."""
    if isinstance(exclude_seen, bool | np.bool_):
        return bool(exclude_seen), None
    if isinstance(exclude_seen, str):
        raise TypeError(
            "exclude_seen: expected True, False or a list of event types, "
            f"found a single str {exclude_seen!r}"
        )
    try:
        types = [str(t) for t in exclude_seen]
    except TypeError:
        raise TypeError(
            "exclude_seen: expected True, False or a list of event types, "
            f"found {type(exclude_seen).__name__}"
        ) from None
    return True, types


def _check_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name}: expected an int, found {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name}: expected at least 1, found {value}")
    return int(value)


def _check_time(at: float | None) -> float | None:
    if at is None:
        return None
    if isinstance(at, bool) or not isinstance(at, int | float | np.integer | np.floating):
        raise TypeError(f"at: expected Unix seconds (a number), found {type(at).__name__}")
    return float(at)


def _check_num_results(num_results: int) -> int:
    if isinstance(num_results, bool) or not isinstance(num_results, int | np.integer):
        raise TypeError(f"num_results: expected an int, found {type(num_results).__name__}")
    if not 1 <= num_results <= 500:
        raise ValueError(f"num_results: expected 1–500, found {num_results}")
    return int(num_results)
