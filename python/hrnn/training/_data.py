"""Training data preparation: selection, filter, sessions, automatic settings, recency weights and
the validation split (which users' latest events are held out for early stopping)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hrnn.interactions import Interactions
from hrnn.sessions import Sessions
from hrnn.training._batching import EventFeatures, recency_weights
from hrnn.training.config import Hyperparameters, TrainingConfig
from hrnn.training.procedure import DataShape, resolve

__all__ = ["TrainingData", "ValidationSplit", "prepare_data", "split_validation"]


@dataclass(frozen=True)
class TrainingData:
    """Sessionized training data with its validation split and per-event features.

    Attributes:
        interactions: the interactions after selection and the percentile filter.
        selected: the interactions after selection only (every user the model will serve).
        sessions: their sessions.
        features: per-event features; ``weight`` is the training target weight (recency, 0 for
            validation targets).
        train_stop: per user, one past the last *input* event used in training.
        validation_users: users whose latest events are held out.
        validation_start: per user, the first held-out position (= user end when none).
        validation_weight: per event, 1 for held-out targets, else 0.
        half_life: the recency half-life used, in seconds (``None`` when all weights are 1).
        config: the training settings with every automatic (``None``) one resolved for this
            data (:func:`hrnn.training.procedure.resolve`).
        shape: what the automatic settings were resolved from.
    """

    interactions: Interactions
    selected: Interactions
    sessions: Sessions
    features: EventFeatures
    train_stop: npt.NDArray[np.int64]
    validation_users: npt.NDArray[np.int64]
    validation_start: npt.NDArray[np.int64]
    validation_weight: npt.NDArray[np.float32]
    half_life: float | None
    config: TrainingConfig
    shape: DataShape

    @property
    def validation_exclude_seen(self) -> bool:
        """Whether validation excludes each user's earlier items from the ranking."""
        return bool(self.config.validation_exclude_seen)

    @property
    def loss_exclude_seen(self) -> bool:
        """Whether the full softmax leaves out each input's earlier items."""
        return bool(self.config.loss_exclude_seen)

    @property
    def starts(self) -> npt.NDArray[np.int64]:
        """First event position of each user."""
        return self.sessions.user_offsets[:-1]

    @property
    def ends(self) -> npt.NDArray[np.int64]:
        """One past the last event position of each user."""
        return self.sessions.user_offsets[1:]


@dataclass(frozen=True)
class ValidationSplit:
    """Which users' latest events are held out (see :func:`split_validation`).

    Attributes:
        users: the validation users, sorted.
        start: per user, the first held-out position (= the user's end when none is held out).
    """

    users: npt.NDArray[np.int64]
    start: npt.NDArray[np.int64]


def prepare_data(
    interactions: Interactions,
    hyper: Hyperparameters,
    config: TrainingConfig,
    event_type: str | None = None,
    event_value_threshold: float | None = None,
) -> TrainingData:
    """Selection, percentile filter, minimum check, sessionize, the automatic settings, recency
    weights, validation split.

    Args:
        interactions: the raw interactions.
        hyper: hyperparameters (percentiles, recency mask).
        config: training settings (session timeout, validation split, half-life, seed); ``None``
            settings are resolved for the data (:func:`hrnn.training.procedure.resolve`).
        event_type: keep only this EVENT_TYPE (``Interactions.select``).
        event_value_threshold: keep only rows with EVENT_VALUE ≥ this.

    Returns:
        The prepared data.

    Raises:
        InsufficientDataError: the filtered data is below Personalize's minimum.
    """
    selected = interactions.select(event_type, event_value_threshold)
    data = selected.filter_by_history_length(
        hyper.min_user_history_length_percentile, hyper.max_user_history_length_percentile
    )
    data.check_minimum()
    sessions = data.sessionize(config.session_timeout)
    shape = DataShape.of(sessions)
    config = resolve(config, shape)
    assert config.user_weight_exponent is not None
    weight, half_life = _recency(sessions, config, hyper.recency_mask)
    split = split_validation(sessions, config)
    starts = sessions.user_offsets[:-1]
    counts = split.start - starts  # training events per user
    user_of_event = sessions.user_index
    position_in_user = np.arange(len(sessions), dtype=np.int64) - starts[user_of_event]
    held_out = position_in_user >= counts[user_of_event]
    if config.user_weight_exponent > 0:
        # n_u ** −p per target (n_u = the user's training targets), so long histories dominate less
        targets = np.maximum(counts - 1, 1).astype(np.float64)
        weight = weight * np.power(targets, -config.user_weight_exponent)[user_of_event]
    train_weight = np.where(held_out, 0.0, weight).astype(np.float32)
    return TrainingData(
        interactions=data,
        selected=selected,
        sessions=sessions,
        features=EventFeatures.from_sessions(sessions, train_weight),
        train_stop=split.start - 1,
        validation_users=split.users,
        validation_start=split.start,
        validation_weight=held_out.astype(np.float32),
        half_life=half_life,
        config=config,
        shape=shape,
    )


def _recency(
    sessions: Sessions, config: TrainingConfig, recency_mask: bool
) -> tuple[npt.NDArray[np.float32], float | None]:
    """Per-event recency weights and the half-life used (``None`` when every weight is 1)."""
    ts = sessions.timestamp
    end_time, span = int(ts.max()), int(ts.max() - ts.min())
    half_life = config.recency_half_life
    if half_life is None:
        half_life = float(span) if span > 0 else None
    weight = recency_weights(ts, end_time, half_life, recency_mask)
    return weight, half_life if recency_mask else None


def split_validation(sessions: Sessions, config: TrainingConfig) -> ValidationSplit:
    """Chooses the validation users and holds out the latest ``validation_holdout`` of each one's
    events (at least one, and at least one kept).

    Args:
        sessions: the training sessions.
        config: resolved settings (``validation_fraction``, ``validation_max_users``,
            ``validation_holdout``, ``seed``).

    Returns:
        The split; no validation users when ``validation_fraction`` is 0.
    """
    assert config.validation_fraction is not None
    starts, ends = sessions.user_offsets[:-1], sessions.user_offsets[1:]
    lengths = ends - starts
    num_validation = 0
    if config.validation_fraction > 0:
        # Small data gets at least 200 users (a third at most): fewer make early stopping a coin toss.
        wanted = max(
            round(config.validation_fraction * sessions.num_users), min(200, sessions.num_users // 3)
        )
        num_validation = min(config.validation_max_users, wanted)
    eligible = np.flatnonzero(lengths >= 2)
    rng = np.random.default_rng([config.seed, 1])
    if num_validation >= 1 and eligible.size >= 2:
        chosen = np.sort(rng.choice(eligible, size=min(num_validation, eligible.size - 1), replace=False))
    else:
        chosen = np.zeros(0, dtype=np.int64)
    held = np.clip(np.floor(config.validation_holdout * lengths[chosen]).astype(np.int64), 1, None)
    held = np.minimum(held, lengths[chosen] - 1)
    start = ends.copy()
    start[chosen] = ends[chosen] - held
    return ValidationSplit(users=chosen.astype(np.int64), start=start)
