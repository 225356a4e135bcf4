"""Personalize's CreateSolution configuration (``solutionConfig`` JSON) mapped onto hrnn's arguments.

Accepted shapes: the CreateSolution request (``{"performHPO": ..., "eventType": ...,
"solutionConfig": {...}}``) or the ``solutionConfig`` object alone. Personalize writes every value as
a string ("43", "true"); both strings and JSON numbers/booleans are accepted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SolutionConfig", "load_solution_config"]

_INT_PARAMS = {"hidden_dimension", "bptt"}
_BOOL_PARAMS = {"recency_mask"}
_FLOAT_PARAMS = {"min_user_history_length_percentile", "max_user_history_length_percentile"}


@dataclass
class SolutionConfig:
    """What a solution configuration asks for, in hrnn's terms."""

    train_kwargs: dict[str, Any] = field(default_factory=dict)
    perform_hpo: bool = False
    tune_kwargs: dict[str, Any] = field(default_factory=dict)


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in {"true", "1", "yes"}:
        return True
    if str(value).strip().lower() in {"false", "0", "no"}:
        return False
    raise ValueError(f"{name}: expected true or false, found {value!r}")


def _number(value: Any, name: str, kind: type) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, found {value!r}") from None
    if kind is int:
        if number != int(number):
            raise ValueError(f"{name}: expected an integer, found {value!r}")
        return int(number)
    return number


def _parameters(block: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in block.items():
        key = f"{where}.{name}"
        if name in _INT_PARAMS:
            out[name] = _number(value, key, int)
        elif name in _BOOL_PARAMS:
            out[name] = _bool(value, key)
        elif name in _FLOAT_PARAMS:
            out[name] = _number(value, key, float)
        else:
            raise ValueError(f"{key}: unknown parameter for aws-hrnn")
    return out


def _ranges(block: dict[str, Any]) -> dict[str, Any]:
    ranges: dict[str, Any] = {}
    for entry in block.get("integerHyperParameterRanges", []):
        ranges[entry["name"]] = (int(entry["minValue"]), int(entry["maxValue"]))
    for entry in block.get("continuousHyperParameterRanges", []):
        ranges[entry["name"]] = (float(entry["minValue"]), float(entry["maxValue"]))
    for entry in block.get("categoricalHyperParameterRanges", []):
        ranges[entry["name"]] = [_bool(v, entry["name"]) for v in entry["values"]]
    return ranges


def parse_solution_config(document: dict[str, Any]) -> SolutionConfig:
    """Maps a CreateSolution request or ``solutionConfig`` object to hrnn arguments.

    Raises:
        ValueError: an unknown parameter or a value of the wrong type; names the JSON path.
    """
    if not isinstance(document, dict):
        raise ValueError("solution config: expected a JSON object")
    config = SolutionConfig()
    solution = document.get("solutionConfig", document)
    if "performHPO" in document:
        config.perform_hpo = _bool(document["performHPO"], "performHPO")
    if "eventType" in document:
        config.train_kwargs["event_type"] = str(document["eventType"])
    if "eventValueThreshold" in solution:
        config.train_kwargs["event_value_threshold"] = _number(
            solution["eventValueThreshold"], "solutionConfig.eventValueThreshold", float
        )
    config.train_kwargs.update(
        _parameters(solution.get("algorithmHyperParameters", {}), "solutionConfig.algorithmHyperParameters")
    )
    config.train_kwargs.update(
        _parameters(
            solution.get("featureTransformationParameters", {}),
            "solutionConfig.featureTransformationParameters",
        )
    )
    hpo = solution.get("hpoConfig")
    if hpo:
        objective = hpo.get("hpoObjective", {})
        if "metricName" in objective:
            config.tune_kwargs["objective"] = str(objective["metricName"])
        resources = hpo.get("hpoResourceConfig", {})
        if "maxNumberOfTrainingJobs" in resources:
            config.tune_kwargs["max_trials"] = _number(
                resources["maxNumberOfTrainingJobs"], "maxNumberOfTrainingJobs", int
            )
        if "maxParallelTrainingJobs" in resources:
            config.tune_kwargs["parallel_trials"] = _number(
                resources["maxParallelTrainingJobs"], "maxParallelTrainingJobs", int
            )
        if "algorithmHyperParameterRanges" in hpo:
            config.tune_kwargs["ranges"] = _ranges(hpo["algorithmHyperParameterRanges"])
    return config


def load_solution_config(path: str | os.PathLike[str]) -> SolutionConfig:
    """Reads and parses a solution configuration JSON file.

    Raises:
        ValueError: invalid JSON or contents; the message names the file.
        FileNotFoundError: the file does not exist.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: line {error.lineno}: invalid JSON: {error.msg}") from None
    try:
        return parse_solution_config(document)
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
