"""Hyperparameters (the recipe's names, defaults and ranges) and training settings, validated.

Nothing here imports torch, so :func:`hrnn.train` can validate its arguments (and fail fast with a
``ValueError`` naming the parameter and its range) before torch is even loaded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from hrnn.interactions import DEFAULT_SESSION_TIMEOUT

__all__ = ["LOSSES", "Hyperparameters", "TrainingConfig"]

#: Losses :class:`TrainingConfig` accepts.
LOSSES = ("cross-entropy", "bpr-max")

LossName = Literal["cross-entropy", "bpr-max"]


def _check_int(name: str, value: Any, lo: int | None, hi: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, found {type(value).__name__} {value!r}")
    _check_range(name, value, lo, hi)


def _check_float(name: str, value: Any, lo: float | None, hi: float | None, *, open_lo: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}: expected a number, found {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, found {value!r}")
    if open_lo and lo is not None and value <= lo:
        hi_text = "inf)" if hi is None else f"{hi}]"
        raise ValueError(f"{name}: expected a value in ({lo}, {hi_text}, found {value!r}")
    _check_range(name, value, lo, hi)


def _check_range(name: str, value: float, lo: float | None, hi: float | None) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_text = "-inf" if lo is None else str(lo)
        hi_text = "inf" if hi is None else str(hi)
        raise ValueError(f"{name}: expected a value in [{lo_text}, {hi_text}], found {value!r}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, found {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class Hyperparameters:
    """The aws-hrnn recipe's hyperparameters, with its names, defaults and ranges.

    Attributes:
        hidden_dimension: size ``H`` of the recurrent state and embeddings, in [32, 256].
        bptt: events per truncated back-propagation-through-time window, in [2, 32].
        recency_mask: weight each target's loss by its recency (docs/model.md).
        min_user_history_length_percentile: users with fewer events than this quantile of history
            lengths are dropped before training, in [0, 1].
        max_user_history_length_percentile: users with more events than this quantile are dropped,
            in [0, 1].
    """

    hidden_dimension: int = 43
    bptt: int = 32
    recency_mask: bool = True
    min_user_history_length_percentile: float = 0.0
    max_user_history_length_percentile: float = 0.99

    def __post_init__(self) -> None:
        _check_int("hidden_dimension", self.hidden_dimension, 32, 256)
        _check_int("bptt", self.bptt, 2, 32)
        _check_bool("recency_mask", self.recency_mask)
        _check_float("min_user_history_length_percentile", self.min_user_history_length_percentile, 0.0, 1.0)
        _check_float("max_user_history_length_percentile", self.max_user_history_length_percentile, 0.0, 1.0)
        if self.min_user_history_length_percentile > self.max_user_history_length_percentile:
            raise ValueError(
                "min_user_history_length_percentile: expected a value ≤ max_user_history_length_percentile "
                f"({self.max_user_history_length_percentile}), "
                f"found {self.min_user_history_length_percentile}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (the ``hyperparameters`` object of model.json)."""
        return asdict(self)


@dataclass(frozen=True)
class TrainingConfig:
    """Training settings. The defaults work on the shared data without tuning (docs/training.md).

    A setting documented with "``None``: automatic" is resolved from the shape of the training data
    by :func:`hrnn.training.procedure.resolve` (rating-like data, where no user interacts with an
    item twice, against click-like data); model.json records what it became.

    Attributes:
        epochs: most passes over the training data (early stopping may end sooner), in [1, 10000].
            ``None``: automatic (16 for rating-like data, 30 for click-like; an UPDATE training a
            tenth of that, at least 2).
        batch_size: user-parallel slots per mini-batch and process (each optimizer step sees
            ``batch_size × bptt`` events per process), in [1, 65536]. ``None``: automatic
            (``clamp(min(E // 1000, E // L), 16, 256)`` for ``E`` events and a longest history of
            ``L``).
        learning_rate: Adam's step size, in (0, 10]. ``None``: automatic,
            ``0.01 · √(batch_size / 16)`` for rating-like data, ``0.015 · √(batch_size / 16)`` for
            click-like; an UPDATE training 1.25× that.
        weight_decay: L2 penalty (Adam's ``weight_decay``), in [0, 1].
        loss: ``"cross-entropy"`` (softmax; full or sampled, see ``full_softmax_max_items``) or
            ``"bpr-max"`` (always over the sampled candidates).
        full_softmax_max_items: catalogues up to this many items train with the full softmax;
            larger ones with the sampled softmax, in [0, 2**31).
        num_negatives: extra negatives drawn ∝ popularity^``sample_alpha``, shared by a mini-batch,
            in [0, 1_000_000].
        sample_alpha: exponent of the popularity sampling distribution, in [0, 1].
        bpr_max_regularization: score regularisation of BPR-max, in [0, 100].
        tie_embeddings: use the input item embedding as the output embedding.
        dropout_embedding: dropout on the input vector ``x_t``, in [0, 1). ``None``: automatic,
            0.2; an UPDATE training half the FULL training's.
        dropout_hidden: dropout on the read-out state ``o``, in [0, 1). ``None``: automatic, 0.4;
            an UPDATE training half the FULL training's.
        recency_half_life: seconds; ``None`` = the training time span (the oldest target weighs ½ of
            the newest). In (0, inf).
        target_window: each input is trained to predict the items of the user's next
            ``target_window`` events (its own later events only; held-out ones excluded), every
            (input, target) pair a target of the loss with the later target's own weight — a
            "future window" objective for set-valued predictions (the next 10% of a user's ratings);
            ``1``: the next event only. Cross-entropy only (full or sampled). In [1, 1024].
            ``None``: automatic (16 for rating-like data, 1 for click-like).
        target_window_decay: the ``j``-th next event of the window weighs ``decay ** (j − 1)``
            (``1``: uniform), in (0, 1].
        shuffle_ties: each epoch, the events of a user that share a timestamp are put in a random
            order for training (bulk ratings have no order within a second; the input order, e.g.
            by item id, is otherwise learnt as if it were one). Validation and export keep the
            input order.
        user_weight_exponent: each target's loss weight is multiplied by ``n_u ** −p`` for a user
            with ``n_u`` training targets (``0``: every event counts the same, so the longest
            histories dominate; ``1``: every user counts the same in total). In [0, 1]. ``None``:
            automatic (0.5 for rating-like data, 0 for click-like).
        max_grad_norm: gradient clipping threshold (``0`` = none), in [0, inf).
        weight_average_decay: validation and the export use an exponential moving average of the
            weights over optimizer steps, ``ā ← d·ā + (1 − d)·w`` after each step with
            ``d = min(weight_average_decay, (1 + t) / (10 + t))`` at step ``t``; ``0`` = the raw
            weights. In [0, 1).
        validation_fraction: share of users whose latest events are held out for early stopping
            (at least ``min(200, users // 3)``, at most ``validation_max_users``); ``0`` disables
            early stopping. In [0, 0.5]. ``None``: automatic (0 for rating-like data: a fixed
            number of epochs on every user; 0.1 for click-like; 0 for an UPDATE training, which
            keeps its last weights).
        validation_max_users: cap on validation users, in [1, 10**9].
        validation_holdout: share of a validation user's events held out (at least one), in (0, 0.5].
        validation_exclude_seen: validation drops the items of a user's earlier events from the
            ranking, as ``hrnn.evaluate(exclude_seen=True)`` does. ``None``: automatic, on exactly
            for rating-like data (no (user, item) pair occurs twice: ratings, purchases of durable
            goods), off otherwise (clicks, where repeats are common).
        loss_exclude_seen: the full softmax of each training input leaves out the items of the
            user's events up to that input (its targets excepted), as the ranking does with
            ``exclude_seen``. ``None``: automatic, on exactly for rating-like data. The sampled
            losses ignore it.
        patience: epochs without improvement of the validation MRR@25 before stopping, in [1, 1000].
        plateau_decay: the learning rate is multiplied by this after each epoch without
            improvement, in (0, 1]. ``None``: automatic (0.5 for click-like data, 1 — a constant
            rate, the weight average taking the place of a decay — for rating-like data, which
            trains without validation).
        session_timeout: seconds; a longer gap starts a new session, in [0, 10**10].
        seed: seed of every random choice (init, order, dropout, negatives, validation sample).
        cpu_kernels: on a CPU, run the recurrent cell's BPTT and the full-softmax loss through
            hrnn's fused kernels (``hrnn._network.kernels``; the same results as torch's ops up to
            rounding, several times faster). False: torch's ops only, as on a GPU.
        num_threads: threads of torch's own ops during training (restored afterwards); the fused
            kernels use hrnn's threads (``hrnn.set_num_threads``, default: every core). ``None``:
            1 when the fused kernels carry the step (CPU, full softmax: torch's remaining ops are
            small, and more threads spin-wait at every op, which on shared cores costs many times
            the work), else torch's current setting.
        ensemble_size: ``M`` independently trained members (seeds from ``seed``), each an HRNN of
            width ``hidden_dimension``, exported as one block-diagonal model of width
            ``M × hidden_dimension`` whose logits are the mean of the members' (docs/model.md):
            ``M`` times the training and the inference cost of one model of that width. ``1``: one
            model. In [1, 32].
    """

    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    weight_decay: float = 0.0
    loss: LossName = "cross-entropy"
    full_softmax_max_items: int = 50_000
    num_negatives: int = 2048
    sample_alpha: float = 0.5
    bpr_max_regularization: float = 1.0
    tie_embeddings: bool = True
    dropout_embedding: float | None = None
    dropout_hidden: float | None = None
    recency_half_life: float | None = None
    target_window: int | None = None
    target_window_decay: float = 1.0
    shuffle_ties: bool = False
    user_weight_exponent: float | None = None
    max_grad_norm: float = 5.0
    weight_average_decay: float = 0.99
    validation_fraction: float | None = None
    validation_max_users: int = 2000
    validation_holdout: float = 0.1
    validation_exclude_seen: bool | None = None
    loss_exclude_seen: bool | None = None
    patience: int = 3
    plateau_decay: float | None = None
    session_timeout: int = DEFAULT_SESSION_TIMEOUT
    seed: int = 0
    ensemble_size: int = 1
    cpu_kernels: bool = True
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.epochs is not None:
            _check_int("epochs", self.epochs, 1, 10_000)
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1, 65_536)
        if self.learning_rate is not None:
            _check_float("learning_rate", self.learning_rate, 0.0, 10.0, open_lo=True)
        _check_float("weight_decay", self.weight_decay, 0.0, 1.0)
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {', '.join(LOSSES)}, found {self.loss!r}")
        _check_int("full_softmax_max_items", self.full_softmax_max_items, 0, 2**31 - 1)
        _check_int("num_negatives", self.num_negatives, 0, 1_000_000)
        _check_float("sample_alpha", self.sample_alpha, 0.0, 1.0)
        _check_float("bpr_max_regularization", self.bpr_max_regularization, 0.0, 100.0)
        _check_bool("tie_embeddings", self.tie_embeddings)
        if self.dropout_embedding is not None:
            _check_float("dropout_embedding", self.dropout_embedding, 0.0, 0.999)
        if self.dropout_hidden is not None:
            _check_float("dropout_hidden", self.dropout_hidden, 0.0, 0.999)
        if self.recency_half_life is not None:
            _check_float("recency_half_life", self.recency_half_life, 0.0, None, open_lo=True)
        if self.target_window is not None:
            _check_int("target_window", self.target_window, 1, 1024)
        _check_float("target_window_decay", self.target_window_decay, 0.0, 1.0, open_lo=True)
        if self.target_window is not None and self.target_window > 1 and self.loss != "cross-entropy":
            raise ValueError(f"target_window: expected 1 with loss={self.loss!r}, found {self.target_window}")
        _check_bool("shuffle_ties", self.shuffle_ties)
        if self.user_weight_exponent is not None:
            _check_float("user_weight_exponent", self.user_weight_exponent, 0.0, 1.0)
        _check_float("max_grad_norm", self.max_grad_norm, 0.0, None)
        _check_float("weight_average_decay", self.weight_average_decay, 0.0, 0.9999)
        if self.validation_fraction is not None:
            _check_float("validation_fraction", self.validation_fraction, 0.0, 0.5)
        _check_int("validation_max_users", self.validation_max_users, 1, 10**9)
        _check_float("validation_holdout", self.validation_holdout, 0.0, 0.5, open_lo=True)
        if self.validation_exclude_seen is not None:
            _check_bool("validation_exclude_seen", self.validation_exclude_seen)
        if self.loss_exclude_seen is not None:
            _check_bool("loss_exclude_seen", self.loss_exclude_seen)
        _check_int("patience", self.patience, 1, 1000)
        if self.plateau_decay is not None:
            _check_float("plateau_decay", self.plateau_decay, 0.0, 1.0, open_lo=True)
        _check_int("session_timeout", self.session_timeout, 0, 10**10)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("ensemble_size", self.ensemble_size, 1, 32)
        _check_bool("cpu_kernels", self.cpu_kernels)
        if self.num_threads is not None:
            _check_int("num_threads", self.num_threads, 1, 1024)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (the ``training`` object of model.json)."""
        return asdict(self)
