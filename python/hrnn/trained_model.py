"""A trained HRNN: its tensors and metadata, saving/loading (docs/format.md) and torch scoring.

Importing this module does not import torch; :meth:`TrainedModel.score` and
:attr:`TrainedModel.module` do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from hrnn import model_format as fmt

if TYPE_CHECKING:
    from hrnn._network.model import HRNN

__all__ = ["ScoredHistories", "TrainedModel"]

logger = logging.getLogger(__name__)

HistoryEvent = tuple[Any, int] | tuple[Any, int, str]
History = (
    Sequence[HistoryEvent] | tuple[npt.ArrayLike, npt.ArrayLike] | tuple[npt.ArrayLike, npt.ArrayLike, Any]
)


class ScoredHistories(NamedTuple):
    """What :meth:`TrainedModel.score` returns.

    Attributes:
        states: float32 ``[n, H]``: ``h_T`` after each history's last event (0 for an empty one).
        scores: float32 ``[n, N]``: softmax over the whole catalogue, columns in ``item_ids`` order.
    """

    states: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised in a subprocess test
        raise ImportError('this needs torch: pip install "hrnn[train]"') from e


class TrainedModel:
    """A trained model: every tensor of docs/format.md plus its ``model.json`` metadata.

    Built by :func:`hrnn.train` or :meth:`load`; written by :meth:`save` into the directory that
    ``hrnn.Recommender.load`` serves from.
    """

    def __init__(self, tensors: Mapping[str, npt.NDArray[Any]], meta: Mapping[str, Any]) -> None:
        self._tensors = dict(tensors)
        self._meta = dict(meta)
        self._module: HRNN | None = None
        self._item_index: dict[str, int] | None = None

    # ----- metadata -----------------------------------------------------------------------------
    @property
    def tensors(self) -> dict[str, npt.NDArray[Any]]:
        """Every tensor of the model directory, by its docs/format.md name (numpy, not copies)."""
        return self._tensors

    @property
    def meta(self) -> dict[str, Any]:
        """The ``model.json`` object."""
        return self._meta

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The recipe hyperparameters used."""
        return dict(self._meta["hyperparameters"])

    @property
    def training(self) -> dict[str, Any]:
        """Every training setting used, plus the per-epoch log (``history``) and ``best_epoch``."""
        return dict(self._meta["training"])

    @property
    def item_ids(self) -> list[str]:
        """Item id of each item index (the columns of :meth:`score`)."""
        return list(self._meta["item_ids"])

    @property
    def user_ids(self) -> list[str]:
        """Training user of each row of :attr:`user_states`."""
        return list(self._meta["user_ids"])

    @property
    def event_types(self) -> list[str]:
        """Event type of each event-type index."""
        return list(self._meta["event_types"])

    @property
    def session_timeout(self) -> int:
        """Seconds of inactivity after which a new session starts."""
        return int(self._meta["session_timeout"])

    @property
    def hidden_dimension(self) -> int:
        """``H``."""
        return int(self._meta["hyperparameters"]["hidden_dimension"])

    @property
    def user_states(self) -> npt.NDArray[np.float32]:
        """``[U, H]`` each training user's state after their last training event."""
        return self._tensors[fmt.USERS_STATE]

    def __repr__(self) -> str:
        return (
            f"TrainedModel(items={len(self._meta['item_ids'])}, users={len(self._meta['user_ids'])}, "
            f"hidden_dimension={self.hidden_dimension})"
        )

    # ----- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the model directory (docs/format.md) atomically: a crash at any instant leaves the
        old complete model or the new one at ``path`` (docs/format.md, "Durability").

        Args:
            path: the directory to create or replace.

        Returns:
            The directory written.

        Raises:
            ModelFormatError: the model does not satisfy the contract (e.g. non-finite weights).
            NotADirectoryError: ``path`` exists and is not a directory.
        """
        return fmt.write_model_dir(path, self._tensors, self._meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainedModel:
        """Reads a model directory written by :meth:`save`.

        Args:
            path: the model directory.

        Returns:
            The model (:attr:`module` rebuilds the torch network on first use).

        Raises:
            FileNotFoundError: a missing directory or file.
            ModelFormatError: files that do not match docs/format.md.
        """
        read = fmt.read_model_dir(path)
        return cls(read.tensors, read.meta)

    # ----- torch --------------------------------------------------------------------------------
    @property
    def module(self) -> HRNN:
        """The network as a torch module on CPU, in eval mode (needs torch)."""
        if self._module is None:
            _require_torch()
            from hrnn._network.model import HRNN

            self._module = HRNN.from_tensors(self._tensors)
        return self._module

    def _item(self, item_id: Any, history: int, event: int) -> int:
        if self._item_index is None:
            self._item_index = {item: i for i, item in enumerate(self._meta["item_ids"])}
        try:
            return self._item_index[str(item_id)]
        except KeyError:
            raise ValueError(f"histories[{history}][{event}]: unknown item id {item_id!r}") from None

    def _columns(self, history: Any, index: int) -> tuple[list[int], npt.NDArray[np.int64], list[int]]:
        type_index = {t: i for i, t in enumerate(self._meta["event_types"])}
        default_type = type_index.get("", -1)
        if (
            isinstance(history, tuple)
            and len(history) in (2, 3)
            and all(isinstance(c, np.ndarray) for c in history[:2])
        ):
            items_raw = list(np.asarray(history[0]).tolist())
            stamps = np.asarray(history[1], dtype=np.int64)
            types_raw = list(np.asarray(history[2]).tolist()) if len(history) == 3 else None
        else:
            events = list(history)
            for e, event in enumerate(events):
                if len(event) not in (2, 3):
                    raise ValueError(
                        f"histories[{index}][{e}]: expected (item_id, timestamp[, event_type]), "
                        f"found {event!r}"
                    )
            items_raw = [event[0] for event in events]
            stamps = np.asarray([int(event[1]) for event in events], dtype=np.int64)
            types_raw = [event[2] if len(event) == 3 else None for event in events]
        if len(stamps) != len(items_raw):
            raise ValueError(f"histories[{index}]: item ids and timestamps differ in length")
        items = [self._item(item, index, e) for e, item in enumerate(items_raw)]
        if types_raw is None:
            types = [default_type] * len(items)
        else:
            types = [default_type if t is None else type_index.get(str(t), -1) for t in types_raw]
        return items, stamps, types

    def score(
        self, user_histories: Sequence[History], at: Sequence[int | None] | None = None
    ) -> ScoredHistories:
        """Runs histories through the network (torch, CPU) exactly as docs/model.md writes it.

        Each history starts from ``h_0 = 0``; its events are taken in the order given. ``Δt`` is the
        gap to the previous event (0 for the first), ``s = 1`` at the first event and where
        ``Δt > session_timeout``. The read-out uses ``Δq = at − last timestamp`` (``Δq = 0`` when
        ``at`` is None), ``s_q = 1`` where ``Δq > session_timeout``.

        Args:
            user_histories: one history per user: a sequence of ``(item_id, timestamp)`` or
                ``(item_id, timestamp, event_type)`` tuples, or a tuple of arrays
                ``(item_ids, timestamps[, event_types])``. Without an event type, the type ``""``
                is used when the model has it, else the event-type vector is zero (as for event
                types unknown to the model).
            at: optional query time (Unix seconds) per history.

        Returns:
            The final states and the full softmax score matrix.

        Raises:
            ValueError: an unknown item id, a malformed event, or ``at`` of the wrong length.
            ImportError: torch is not installed.
        """
        _require_torch()
        import torch

        from hrnn._network.time_feature import log_minutes

        n = len(user_histories)
        if at is not None and len(at) != n:
            raise ValueError(f"at: expected {n} query times (one per history), found {len(at)}")
        columns = [self._columns(h, i) for i, h in enumerate(user_histories)]
        lengths = np.asarray([len(c[0]) for c in columns], dtype=np.int64)
        steps = int(lengths.max()) if n else 0
        item = np.zeros((steps, n), dtype=np.int64)
        etype = np.zeros((steps, n), dtype=np.int64)
        feats = np.zeros((steps, n, 2), dtype=np.float32)
        query = np.zeros((n, 2), dtype=np.float32)
        timeout = self.session_timeout
        for b, (items, stamps, types) in enumerate(columns):
            length = len(items)
            if length == 0:
                continue
            gap = np.zeros(length, dtype=np.int64)
            gap[1:] = np.diff(stamps)
            item[:length, b] = items
            etype[:length, b] = types
            feats[:length, b, 0] = log_minutes(gap)
            start = gap > timeout
            start[0] = True
            feats[:length, b, 1] = start
            when = None if at is None else at[b]
            dq = 0 if when is None else int(when) - int(stamps[-1])
            query[b] = (log_minutes(dq), float(dq > timeout))
        model = self.module
        with torch.no_grad():
            state0 = torch.zeros(n, self.hidden_dimension)
            states, _ = model.run(
                torch.from_numpy(item), torch.from_numpy(etype), torch.from_numpy(feats), state0
            )
            final = torch.zeros(n, self.hidden_dimension)
            nonempty = np.flatnonzero(lengths > 0)
            if nonempty.size:
                idx = torch.from_numpy(nonempty)
                final[idx] = states[torch.from_numpy(lengths[nonempty] - 1), idx]
            o = model.read_out(final, torch.from_numpy(query))
            scores = torch.softmax(model.logits(o), dim=-1)
        return ScoredHistories(states=final.numpy(), scores=scores.numpy())
