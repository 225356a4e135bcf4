"""Training an HRNN in torch (``pip install "hrnn[train]"``).

This package's ``__init__`` does not import torch: :func:`train` validates its arguments, then
imports torch and the trainer.
"""

from __future__ import annotations

import os
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from hrnn.training.config import Hyperparameters, TrainingConfig

if TYPE_CHECKING:
    from hrnn.interactions import Interactions
    from hrnn.trained_model import TrainedModel

__all__ = ["Hyperparameters", "TrainingConfig", "train"]


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
    config: TrainingConfig | None = None,
    hyperparameters: Hyperparameters | None = None,
    event_type: str | None = None,
    event_value_threshold: float | None = None,
    device: Any = "auto",
    amp: bool = False,
    progress: bool = True,
    init_from: str | os.PathLike[str] | TrainedModel | None = None,
    training_mode: str = "full",
    keep_absent_items: bool = True,
    **settings: Any,
) -> TrainedModel:
    """Trains an HRNN on interactions (the aws-hrnn recipe).

    Every setting is declared and documented once: the recipe's hyperparameters on
    :class:`Hyperparameters`, the training settings on :class:`TrainingConfig`. Pass them as
    objects, or by name as keywords (``hrnn.train(data, epochs=5, hidden_dimension=64)``), which
    override the fields of ``config`` / ``hyperparameters`` when both are given.

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
        config: training settings (default: ``TrainingConfig()``).
        hyperparameters: the recipe's hyperparameters (default: ``Hyperparameters()``).
        event_type: train only on this EVENT_TYPE.
        event_value_threshold: train only on rows with EVENT_VALUE ≥ this.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, a ``torch.device``.
        amp: bfloat16 autocast on CUDA (ignored on CPU).
        progress: show a tqdm progress bar.
        init_from: the base model of an UPDATE (a model directory or a :class:`TrainedModel`).
        training_mode: ``"full"`` (train from scratch) or ``"update"`` (Personalize's names,
            any case): continue from ``init_from``'s weights (new items' rows fitted to their
            occurrences) with a short schedule over the whole history (a tenth of FULL's epochs
            unless ``epochs`` is given, half the FULL training's dropout and 1.25× its learning
            rate unless given, no validation hold-out unless ``validation_fraction`` is given,
            warm-up, full rate for half the steps, then linear decay, the last weights kept), then
            recompute every user's state (docs/operations.md; :mod:`hrnn.training._update`). The recipe's
            hyperparameters are the base's; a different explicit value is an error.
        keep_absent_items: in an UPDATE, keep the base's items that ``interactions`` no longer
            has (their rows and popularity from the base); ``False`` drops them.
        **settings: fields of :class:`TrainingConfig` or :class:`Hyperparameters` by name.

    Returns:
        The trained model.

    Raises:
        ValueError: a hyperparameter or setting out of range (the message names it and its range).
        TypeError: a hyperparameter or setting of the wrong type, or an unknown setting name.
        InsufficientDataError: too little data after selection and filtering.
        ImportError: torch (the ``train`` extra) is not installed.
    """
    hyper, config = _settings(config, hyperparameters, settings)
    if not isinstance(amp, bool):
        raise TypeError(f"amp: expected True or False, found {type(amp).__name__} {amp!r}")
    mode = training_mode.lower() if isinstance(training_mode, str) else training_mode
    if mode not in ("full", "update"):
        raise ValueError(f'training_mode: expected "full" or "update", found {training_mode!r}')
    if (mode == "update") != (init_from is not None):
        raise ValueError(
            "init_from: UPDATE training continues from a base model: pass both init_from and "
            "training_mode='update' (FULL training starts from scratch and takes no init_from)"
        )
    _require_training_extra()
    from hrnn.training._trainer import fit

    base = None
    if init_from is not None:
        from hrnn.training._update import base_hyperparameters, load_base

        base = load_base(init_from)
        explicit = {k for k in settings if k in _HYPERPARAMETER_FIELDS}
        if hyperparameters is not None:
            explicit |= set(_HYPERPARAMETER_FIELDS)
        hyper = base_hyperparameters(base, hyper, explicit)

    return fit(
        interactions,
        hyper,
        config,
        event_type=event_type,
        event_value_threshold=event_value_threshold,
        device=device,
        amp=amp,
        progress=progress,
        base=base,
        keep_absent_items=keep_absent_items,
    )


_CONFIG_FIELDS = tuple(f.name for f in fields(TrainingConfig))
_HYPERPARAMETER_FIELDS = tuple(f.name for f in fields(Hyperparameters))


def _settings(
    config: TrainingConfig | None, hyperparameters: Hyperparameters | None, settings: dict[str, Any]
) -> tuple[Hyperparameters, TrainingConfig]:
    """``hyperparameters`` and ``config`` (or their defaults) with the named ``settings`` applied."""
    if config is not None and not isinstance(config, TrainingConfig):
        raise TypeError(f"config: expected a TrainingConfig, found {type(config).__name__}")
    if hyperparameters is not None and not isinstance(hyperparameters, Hyperparameters):
        raise TypeError(f"hyperparameters: expected Hyperparameters, found {type(hyperparameters).__name__}")
    unknown = sorted(set(settings) - set(_CONFIG_FIELDS) - set(_HYPERPARAMETER_FIELDS))
    if unknown:
        raise TypeError(
            f"train() got unknown setting(s) {', '.join(map(repr, unknown))}; expected fields of "
            f"Hyperparameters ({', '.join(_HYPERPARAMETER_FIELDS)}) or TrainingConfig "
            f"({', '.join(_CONFIG_FIELDS)})"
        )
    hyper_settings = {k: v for k, v in settings.items() if k in _HYPERPARAMETER_FIELDS}
    config_settings = {k: v for k, v in settings.items() if k in _CONFIG_FIELDS}
    hyper = replace(hyperparameters or Hyperparameters(), **hyper_settings)
    return hyper, replace(config or TrainingConfig(), **config_settings)
