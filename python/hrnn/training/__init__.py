"""Training an HRNN in torch (``pip install "hrnn[train]"``).

This package's ``__init__`` does not import torch: :func:`train` validates its arguments, then
imports torch and the trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hrnn.interactions import DEFAULT_SESSION_TIMEOUT
from hrnn.training.config import Hyperparameters, LossName, TrainingConfig

if TYPE_CHECKING:
    from hrnn.interactions import Interactions
    from hrnn.trained_model import TrainedModel

__all__ = ["Hyperparameters", "TrainingConfig", "train"]

_DEFAULTS = TrainingConfig()


def _require_training_extra() -> None:
    missing = []
    for module in ("torch", "safetensors", "tqdm"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(
            f'hrnn.train needs {", ".join(missing)}, which is not installed: pip install "hrnn[train]"'
        )


def train(
    interactions: Interactions,
    *,
    hidden_dimension: int = 43,
    bptt: int = 32,
    recency_mask: bool = True,
    min_user_history_length_percentile: float = 0.0,
    max_user_history_length_percentile: float = 0.99,
    event_type: str | None = None,
    event_value_threshold: float | None = None,
    session_timeout: int = DEFAULT_SESSION_TIMEOUT,
    epochs: int | None = _DEFAULTS.epochs,
    batch_size: int | None = _DEFAULTS.batch_size,
    learning_rate: float | None = _DEFAULTS.learning_rate,
    weight_decay: float = _DEFAULTS.weight_decay,
    loss: LossName = _DEFAULTS.loss,
    full_softmax_max_items: int = _DEFAULTS.full_softmax_max_items,
    num_negatives: int = _DEFAULTS.num_negatives,
    sample_alpha: float = _DEFAULTS.sample_alpha,
    bpr_max_regularization: float = _DEFAULTS.bpr_max_regularization,
    tie_embeddings: bool = _DEFAULTS.tie_embeddings,
    dropout_embedding: float = _DEFAULTS.dropout_embedding,
    dropout_hidden: float = _DEFAULTS.dropout_hidden,
    recency_half_life: float | None = _DEFAULTS.recency_half_life,
    target_window: int | None = _DEFAULTS.target_window,
    target_window_decay: float = _DEFAULTS.target_window_decay,
    shuffle_ties: bool = _DEFAULTS.shuffle_ties,
    user_weight_exponent: float | None = _DEFAULTS.user_weight_exponent,
    max_grad_norm: float = _DEFAULTS.max_grad_norm,
    weight_average_decay: float = _DEFAULTS.weight_average_decay,
    validation_fraction: float | None = _DEFAULTS.validation_fraction,
    validation_max_users: int = _DEFAULTS.validation_max_users,
    validation_holdout: float = _DEFAULTS.validation_holdout,
    validation_exclude_seen: bool | None = _DEFAULTS.validation_exclude_seen,
    loss_exclude_seen: bool | None = _DEFAULTS.loss_exclude_seen,
    patience: int = _DEFAULTS.patience,
    plateau_decay: float | None = _DEFAULTS.plateau_decay,
    ensemble_size: int = _DEFAULTS.ensemble_size,
    cpu_kernels: bool = _DEFAULTS.cpu_kernels,
    num_threads: int | None = _DEFAULTS.num_threads,
    device: Any = "auto",
    amp: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> TrainedModel:
    """Trains an HRNN on interactions (the aws-hrnn recipe).

    Data preparation, in this order: ``interactions.select(event_type, event_value_threshold)``,
    the history-length percentile filter, ``check_minimum()``, then ``sessionize(session_timeout)``.
    Each user's events form one time-ordered sequence; training uses user-parallel truncated BPTT
    windows of ``bptt`` events and Adam. Settings left at ``None`` are automatic: they follow the
    shape of the data (rating-like data, where no user interacts with an item twice, against
    click-like data; :mod:`hrnn.training.procedure`), and model.json's ``training`` records what
    they became. Progress is one tqdm bar (epoch, loss, events/s, validation MRR@25, ETA) when
    stderr is a terminal; each epoch is logged through ``logging``. docs/training.md explains every
    setting.

    Args:
        interactions: the training interactions.
        hidden_dimension: recipe hyperparameter, in [32, 256].
        bptt: recipe hyperparameter, events per BPTT window, in [2, 32].
        recency_mask: recipe hyperparameter: weight targets by recency.
        min_user_history_length_percentile: recipe featurization, in [0, 1].
        max_user_history_length_percentile: recipe featurization, in [0, 1].
        event_type: train only on this EVENT_TYPE.
        event_value_threshold: train only on rows with EVENT_VALUE ≥ this.
        session_timeout: seconds of inactivity that start a new session.
        epochs: most epochs (``None``: 16 on rating-like data, 30 with early stopping otherwise).
        batch_size: user-parallel slots per process (``None``: ``clamp(min(E // 1000, E // L), 16,
            256)`` for ``E`` events and a longest user history of ``L``).
        learning_rate: Adam step size (``None``: ``0.01 · √(batch_size / 16)`` on rating-like data,
            ``0.015 · √(batch_size / 16)`` otherwise).
        weight_decay: Adam weight decay.
        loss: ``"cross-entropy"`` or ``"bpr-max"``.
        full_softmax_max_items: larger catalogues use the sampled softmax.
        num_negatives: extra popularity-sampled negatives per batch (sampled losses).
        sample_alpha: popularity exponent of the negative sampler.
        bpr_max_regularization: BPR-max score regularisation.
        tie_embeddings: share the input and output item embeddings.
        dropout_embedding: dropout on the input vector.
        dropout_hidden: dropout on the read-out state.
        recency_half_life: seconds (default: the training time span, so the oldest target weighs ½).
        target_window: train each input on the user's next ``target_window`` events (1 = next only;
            ``None``: 16 on rating-like data, else 1).
        target_window_decay: weight ``decay ** (j − 1)`` of the ``j``-th event of the window.
        shuffle_ties: each epoch, train on a random order of a user's events with equal timestamps.
        user_weight_exponent: target weights × ``n_u ** −p`` for a user with ``n_u`` training targets
            (``None``: 0.5 on rating-like data, else 0).
        max_grad_norm: gradient-norm clipping (0 = off).
        weight_average_decay: validate and export a moving average of the weights (0 = off).
        validation_fraction: share of users used for early stopping (0 = no early stopping;
            ``None``: 0 on rating-like data, else 0.1).
        validation_max_users: cap on validation users.
        validation_holdout: share of a validation user's latest events held out.
        validation_exclude_seen: validation ranks without the user's earlier items (``None``: on
            rating-like data).
        loss_exclude_seen: the full softmax leaves out each input's earlier items (``None``: on
            rating-like data).
        patience: epochs without validation improvement before stopping.
        plateau_decay: learning-rate factor applied after each epoch without improvement
            (``None``: 0.5 on click-like data, 1 on rating-like).
        ensemble_size: train this many members of width ``hidden_dimension`` (seeds derived from
            ``seed``) and export them as one block-diagonal model of width
            ``ensemble_size × hidden_dimension`` that averages their logits (1 = a single model).
        cpu_kernels: on CPU, hrnn's fused kernels for the cell's BPTT and the full softmax (False:
            torch's ops only).
        num_threads: torch's threads during training (``None``: 1 when hrnn's fused CPU kernels
            carry the step; they use ``hrnn.set_num_threads``).
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, a ``torch.device``.
        amp: bfloat16 autocast on CUDA (ignored on CPU).
        seed: seed of every random choice; the same seed gives the same weights on CPU.
        progress: show a tqdm progress bar.

    Returns:
        The trained model.

    Raises:
        ValueError: a hyperparameter or setting out of range (the message names it and its range).
        TypeError: a hyperparameter or setting of the wrong type.
        InsufficientDataError: too little data after selection and filtering.
        ImportError: torch (the ``train`` extra) is not installed.
    """
    hyper = Hyperparameters(
        hidden_dimension=hidden_dimension,
        bptt=bptt,
        recency_mask=recency_mask,
        min_user_history_length_percentile=min_user_history_length_percentile,
        max_user_history_length_percentile=max_user_history_length_percentile,
    )
    config = TrainingConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        loss=loss,
        full_softmax_max_items=full_softmax_max_items,
        num_negatives=num_negatives,
        sample_alpha=sample_alpha,
        bpr_max_regularization=bpr_max_regularization,
        tie_embeddings=tie_embeddings,
        dropout_embedding=dropout_embedding,
        dropout_hidden=dropout_hidden,
        recency_half_life=recency_half_life,
        target_window=target_window,
        target_window_decay=target_window_decay,
        shuffle_ties=shuffle_ties,
        user_weight_exponent=user_weight_exponent,
        max_grad_norm=max_grad_norm,
        weight_average_decay=weight_average_decay,
        validation_fraction=validation_fraction,
        validation_max_users=validation_max_users,
        validation_holdout=validation_holdout,
        validation_exclude_seen=validation_exclude_seen,
        loss_exclude_seen=loss_exclude_seen,
        patience=patience,
        plateau_decay=plateau_decay,
        session_timeout=session_timeout,
        seed=seed,
        ensemble_size=ensemble_size,
        cpu_kernels=cpu_kernels,
        num_threads=num_threads,
    )
    if not isinstance(amp, bool):
        raise TypeError(f"amp: expected True or False, found {type(amp).__name__} {amp!r}")
    _require_training_extra()
    from hrnn.training._trainer import fit

    return fit(
        interactions,
        hyper,
        config,
        event_type=event_type,
        event_value_threshold=event_value_threshold,
        device=device,
        amp=amp,
        progress=progress,
    )
