"""The export of a trained model: weights, every user's state, histories, seen sets, model.json.

Users are those of the training data after selection; the percentile filter decides what the
model learns from, not who it serves: users it kept out of training get their state, history and
seen set from their events here too (events of items the model does not know are skipped).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from hrnn import _hrnn
from hrnn import model_format as fmt
from hrnn._network.model import HRNN
from hrnn.sessions import Sessions
from hrnn.trained_model import TrainedModel
from hrnn.training._batching import EventFeatures
from hrnn.training._windows import states_after
from hrnn.training.config import Hyperparameters, TrainingConfig

if TYPE_CHECKING:
    from hrnn.training._data import TrainingData

__all__ = ["OUTSIDE_RULE", "export_model"]

logger = logging.getLogger(__name__)


#: The rule name, in the data report, of the rows that only give users outside training a state.
OUTSIDE_RULE = "served, not trained on (users the percentile filter kept out)"


@dataclass(frozen=True)
class _Users:
    """The ``users.*`` tensors of a group of users (CSR arrays start at 0)."""

    ids: list[str]
    state: npt.NDArray[np.float32]
    last_timestamp: npt.NDArray[np.int64]
    history_offsets: npt.NDArray[np.int64]
    history_items: npt.NDArray[np.int32]
    seen_offsets: npt.NDArray[np.int64]
    seen_items: npt.NDArray[np.int32]
    seen_event_types: npt.NDArray[np.int32]

    @classmethod
    def of(
        cls,
        model: HRNN,
        sessions: Sessions,
        features: EventFeatures,
        num_event_types: int,
        device: torch.device,
    ) -> _Users:
        """The group of ``sessions``' users; ``features`` holds their events in the model's item and
        event-type indices (event type −1: one the model does not know, left out of the seen set)."""
        starts, ends = sessions.user_offsets[:-1], sessions.user_offsets[1:]
        keep = np.minimum(ends - starts, fmt.HISTORY_LIMIT)
        history_offsets = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(keep, out=history_offsets[1:])
        within = np.arange(history_offsets[-1], dtype=np.int64) - np.repeat(history_offsets[:-1], keep)
        history = features.item[np.repeat(ends - keep, keep) + within].astype(np.int32)
        typed = features.event_type >= 0
        seen = fmt.seen_entries(
            sessions.user_index[typed],
            features.item[typed],
            features.event_type[typed],
            sessions.num_users,
            num_event_types,
        )
        return cls(
            ids=list(sessions.user_ids),
            state=states_after(model, features, starts, ends, device),
            last_timestamp=sessions.timestamp[ends - 1].astype(np.int64),
            history_offsets=history_offsets,
            history_items=history,
            seen_offsets=seen[0],
            seen_items=seen[1],
            seen_event_types=seen[2],
        )

    def then(self, other: _Users) -> _Users:
        """These users followed by ``other``."""
        return _Users(
            ids=self.ids + other.ids,
            state=np.concatenate([self.state, other.state]),
            last_timestamp=np.concatenate([self.last_timestamp, other.last_timestamp]),
            history_offsets=np.concatenate(
                [self.history_offsets, other.history_offsets[1:] + self.history_offsets[-1]]
            ),
            history_items=np.concatenate([self.history_items, other.history_items]),
            seen_offsets=np.concatenate([self.seen_offsets, other.seen_offsets[1:] + self.seen_offsets[-1]]),
            seen_items=np.concatenate([self.seen_items, other.seen_items]),
            seen_event_types=np.concatenate([self.seen_event_types, other.seen_event_types]),
        )


def _outside_training(data: TrainingData, model: HRNN, device: torch.device) -> tuple[_Users | None, int]:
    """The users of the selected data that the percentile filter kept out of training, and their
    event count (events of items the model does not know are skipped; so is a user left without
    any)."""
    sessions = data.sessions
    selected = data.selected
    trained = set(sessions.user_ids)
    outside_user = np.fromiter((u not in trained for u in selected.user_ids), dtype=bool)
    if not outside_user.any():
        return None, 0
    item_index = {item: j for j, item in enumerate(sessions.item_ids)}
    known_item = np.fromiter((i in item_index for i in selected.item_ids), dtype=bool)
    columns = selected.columns()
    rows = outside_user[columns["user"]] & known_item[columns["item"]]
    if not rows.any():
        return None, 0
    outside = selected.subset(rows, OUTSIDE_RULE).sessionize(data.config.session_timeout)
    to_item = np.asarray([item_index[i] for i in outside.item_ids], dtype=np.int64)
    type_index = {t: k for k, t in enumerate(sessions.event_types)}
    to_type = np.asarray([type_index.get(t, -1) for t in outside.event_types], dtype=np.int64)
    base = EventFeatures.from_sessions(outside, np.zeros(len(outside), dtype=np.float32))
    features = EventFeatures(
        item=to_item[outside.item_index],
        event_type=to_type[outside.event_type],
        time=base.time,
        user_end=base.user_end,
        weight=base.weight,
    )
    return _Users.of(model, outside, features, len(sessions.event_types), device), len(outside)


def export_model(
    model: HRNN,
    data: TrainingData,
    hyper: Hyperparameters,
    requested: TrainingConfig,
    device: torch.device,
    log: list[dict[str, float]],
    members: list[dict[str, int]],
) -> TrainedModel:
    """The trained model: weights, every user's state, history and seen set, and model.json
    (``training`` holds the settings used, which of them were automatic, and the data shape they
    were resolved from)."""
    from hrnn import __version__

    config = data.config
    sessions = data.sessions
    features = data.features.with_weight(np.zeros(len(sessions), dtype=np.float32))
    tensors: dict[str, Any] = model.export_tensors()
    num_items = sessions.num_items
    tensors[fmt.ITEMS_POPULARITY] = _hrnn.item_popularity(
        sessions.user_index, sessions.item_index.astype(np.int64), num_items
    )
    users = _Users.of(model, sessions, features, len(sessions.event_types), device)
    outside, outside_rows = _outside_training(data, model, device)
    if outside is not None:
        logger.info(
            "%d users the percentile filter kept out of training get a state from their %d events",
            len(outside.ids),
            outside_rows,
        )
        users = users.then(outside)
    tensors[fmt.USERS_STATE] = users.state
    tensors[fmt.USERS_LAST_TIMESTAMP] = users.last_timestamp
    tensors[fmt.USERS_HISTORY_OFFSETS] = users.history_offsets
    tensors[fmt.USERS_HISTORY_ITEMS] = users.history_items
    tensors[fmt.USERS_SEEN_OFFSETS] = users.seen_offsets
    tensors[fmt.USERS_SEEN_ITEMS] = users.seen_items
    tensors[fmt.USERS_SEEN_EVENT_TYPES] = users.seen_event_types
    training = config.to_dict()
    automatic = [name for name, value in requested.to_dict().items() if value is None]
    training.update(
        {
            "automatic": [name for name in automatic if training[name] is not None],
            "data_shape": data.shape.to_dict(),
            "resolved_batch_size": config.batch_size,
            "recency_half_life_used": data.half_life,
            "validation_exclude_seen_used": data.validation_exclude_seen,
            "loss_exclude_seen_used": data.loss_exclude_seen,
            # member 0's figures (the whole model's when ensemble_size = 1); every member's in
            # ``members``; ``history`` entries carry a ``member`` index when there are several
            "member_hidden_dimension": hyper.hidden_dimension,
            "epochs_trained": members[0]["epochs_trained"],
            "best_epoch": members[0]["best_epoch"],
            "members": members,
            "history": log,
        }
    )
    ts = sessions.timestamp
    meta = {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.FORMAT_VERSION,
        # the exported cell's width: ensemble_size × hidden_dimension for an ensemble
        "hyperparameters": {**hyper.to_dict(), "hidden_dimension": model.hidden_dimension},
        "training": training,
        "session_timeout": config.session_timeout,
        "history_limit": fmt.HISTORY_LIMIT,
        "item_ids": list(sessions.item_ids),
        "event_types": list(sessions.event_types),
        "user_ids": users.ids,
        "data_summary": {
            "rows": len(sessions),
            "users": sessions.num_users,
            "items": num_items,
            "sessions": sessions.num_sessions,
            "time_range": [int(ts.min()), int(ts.max())],
            "validation_users": len(data.validation_users),
            # served users without training events (the percentile filter's), and their events
            "users_outside_training": 0 if outside is None else len(outside.ids),
            "rows_outside_training": outside_rows,
            "report": data.interactions.report().to_dict(),
        },
        "hrnn_version": __version__,
    }
    return TrainedModel(tensors, meta)
