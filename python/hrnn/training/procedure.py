"""The training procedure's automatic settings: what ``None`` becomes for the data at hand.

The recipe's hyperparameters (``hidden_dimension``, ``bptt``, ``recency_mask``, the percentiles)
never change here. The training settings around them default to ``None`` and are resolved by the
rules below, from the shape of the training data (after selection and the percentile filter), so
that ``hrnn.train(data)`` fits both shapes of data a recommender meets (docs/training.md,
"Automatic settings"):

- **Rating-like data** — no user interacts with the same item twice (MovieLens ratings, purchases
  of durable goods). What matters is the *set* of items a user takes up next, and an item once
  taken is never recommended again (``exclude_seen``). Each input is trained on the user's next
  ``16`` items (``target_window``), already-seen items are left out of the softmax
  (``loss_exclude_seen``), each user's targets weigh ``n_u^-0.5`` (``user_weight_exponent``) so
  that the longest histories do not dominate, and training runs a fixed ``16`` epochs on every
  user (``validation_fraction`` 0: holding out the latest events of a third of the users would
  remove the most informative targets, and early stopping on so few users is noise).
- **Click-like data** — items repeat within users (sessions of clicks, views, plays). Next-item
  training (``target_window`` 1), seen items stay in the softmax, every event weighs the same, and
  training stops early on a 10% validation sample (at most ``30`` epochs), halving the learning rate
  after each epoch that does not improve it (``plateau_decay`` 0.5).

For both, dropout is 0.2 on the input vector and 0.4 on the read-out state (an UPDATE training
halves the FULL training's and changes a few more, :mod:`hrnn.training._update`), the mini-batch holds
``clamp(min(E // 1000, E // L), 16, 256)`` users in parallel (``E`` training events, ``L`` the
longest user history, so that every slot stays busy), and the learning rate grows with it as
``√(B / 16)``: ``0.01 · √(B / 16)`` on rating-like data (0.02 at 64 slots), ``0.015 · √(B / 16)``
on click-like data, where the plateau decay brings it down (0.03 at 64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from hrnn.sessions import Sessions
from hrnn.training.config import TrainingConfig

__all__ = ["DataShape", "resolve"]

DataKind = Literal["ratings", "clicks"]

#: Events per mini-batch slot at which the batch stops growing with the data.
_EVENTS_PER_SLOT = 1000
_MIN_SLOTS, _MAX_SLOTS = 16, 256

#: What ``None`` becomes, per kind of data.
_BY_KIND: dict[str, dict[str, Any]] = {
    "ratings": {
        "target_window": 16,
        "loss_exclude_seen": True,
        "user_weight_exponent": 0.5,
        "validation_fraction": 0.0,
        "epochs": 16,
        "plateau_decay": 1.0,
    },
    "clicks": {
        "target_window": 1,
        "loss_exclude_seen": False,
        "user_weight_exponent": 0.0,
        "validation_fraction": 0.1,
        "epochs": 30,
        "plateau_decay": 0.5,
    },
}
#: What ``None`` becomes whatever the data.
_ALWAYS: dict[str, Any] = {"dropout_embedding": 0.2, "dropout_hidden": 0.4}
#: Learning rate at 16 slots, per kind of data; it grows as the square root of the batch.
_BASE_LEARNING_RATE = {"ratings": 0.01, "clicks": 0.015}


@dataclass(frozen=True)
class DataShape:
    """What the automatic settings look at.

    Attributes:
        events: training events.
        users: users.
        longest_user: events of the longest user history.
        repeats: whether some user interacts with the same item more than once.
    """

    events: int
    users: int
    longest_user: int
    repeats: bool

    @classmethod
    def of(cls, sessions: Sessions) -> DataShape:
        """The shape of sessionized training data."""
        lengths = np.diff(sessions.user_offsets)
        pairs = sessions.user_index.astype(np.int64) * max(sessions.num_items, 1) + sessions.item_index
        return cls(
            events=len(sessions),
            users=sessions.num_users,
            longest_user=int(lengths.max(initial=0)),
            repeats=bool(np.unique(pairs).size < len(sessions)),
        )

    @property
    def kind(self) -> DataKind:
        """``"ratings"`` when no (user, item) pair repeats, else ``"clicks"``."""
        return "clicks" if self.repeats else "ratings"

    @property
    def batch_size(self) -> int:
        """User-parallel slots: ``clamp(min(E // 1000, E // L), 16, 256)``."""
        slots = min(self.events // _EVENTS_PER_SLOT, self.events // max(self.longest_user, 1))
        return int(min(max(slots, _MIN_SLOTS), _MAX_SLOTS))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (model.json's ``training.data_shape``)."""
        return {
            "events": self.events,
            "users": self.users,
            "longest_user": self.longest_user,
            "repeats": self.repeats,
            "kind": self.kind,
        }


def resolve(config: TrainingConfig, shape: DataShape) -> TrainingConfig:
    """``config`` with every ``None`` setting replaced by its rule for ``shape`` (module docstring).

    Settings the user gave are kept. ``validation_exclude_seen`` follows ``loss_exclude_seen``'s
    rule (on for rating-like data); a window is only chosen for the cross-entropy loss.

    Args:
        config: the settings as given.
        shape: the training data's shape.

    Returns:
        A config without ``None`` among the settings above.
    """
    rules = {**_ALWAYS, **_BY_KIND[shape.kind]}
    if config.loss != "cross-entropy":
        rules["target_window"] = 1
    chosen: dict[str, Any] = {name: value for name, value in rules.items() if getattr(config, name) is None}
    if config.validation_exclude_seen is None:
        chosen["validation_exclude_seen"] = shape.kind == "ratings"
    batch = config.batch_size if config.batch_size is not None else shape.batch_size
    chosen["batch_size"] = batch
    if config.learning_rate is None:
        base = _BASE_LEARNING_RATE[shape.kind]
        chosen["learning_rate"] = round(base * math.sqrt(batch / _MIN_SLOTS), 6)
    return replace(config, **chosen)
