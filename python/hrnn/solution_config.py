"""Personalize's CreateSolution configuration (``solutionConfig`` JSON) mapped onto hrnn's arguments.

Accepted shapes: the CreateSolution request (``{"performHPO": ..., "eventType": ...,
"solutionConfig": {...}}``) or the ``solutionConfig`` object alone. Personalize writes every value as
a string ("43", "true"); both strings and JSON numbers/booleans are accepted.

Every key is checked: a misspelt or unknown key is an error naming it (and the nearest known key),
never silently ignored. Keys of the CreateSolution API that have no meaning here (``name``,
``datasetGroupArn``, ``autoMLConfig``, …) are accepted with a logged warning naming them.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SolutionConfig", "load_solution_config", "parse_solution_config"]

logger = logging.getLogger(__name__)

_INT_PARAMS = {"hidden_dimension", "bptt"}
_BOOL_PARAMS = {"recency_mask"}
_FLOAT_PARAMS = {"min_user_history_length_percentile", "max_user_history_length_percentile"}

# The keys read below, and the CreateSolution keys that mean nothing for a local training (ignored
# with a warning). Anything else is an error.
_REQUEST_KEYS = {"performHPO", "eventType", "solutionConfig"}
_REQUEST_IGNORED = {
    "name",
    "datasetGroupArn",
    "recipeArn",
    "performAutoML",
    "performAutoTraining",
    "performIncrementalUpdate",
    "tags",
}
_SOLUTION_KEYS = {
    "eventValueThreshold",
    "algorithmHyperParameters",
    "featureTransformationParameters",
    "hpoConfig",
}
_SOLUTION_IGNORED = {"autoMLConfig", "autoTrainingConfig", "optimizationObjective", "trainingDataConfig"}
_HPO_KEYS = {"hpoObjective", "hpoResourceConfig", "algorithmHyperParameterRanges"}
_OBJECTIVE_KEYS = {"type", "metricName", "metricRegex"}
_RESOURCE_KEYS = {"maxNumberOfTrainingJobs", "maxParallelTrainingJobs"}
_RANGE_KEYS = {
    "integerHyperParameterRanges",
    "continuousHyperParameterRanges",
    "categoricalHyperParameterRanges",
}


def _check_keys(
    block: Any, where: str, known: set[str], ignored: frozenset[str] | set[str] = frozenset()
) -> None:
    """Raises on a key that is neither known nor ignorable; warns once about the ignorable ones."""
    if not isinstance(block, dict):
        raise ValueError(f"{where}: expected a JSON object, found {block!r}")
    unknown = [k for k in block if k not in known and k not in ignored]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(known | ignored), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(sorted(known))}"
        raise ValueError(f"{where}: unknown key {key!r}{hint}")
    skipped = [k for k in block if k in ignored]
    if skipped:
        logger.warning("%s: ignoring %s (no meaning for a local training)", where, ", ".join(skipped))


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
    where = "solutionConfig.hpoConfig.algorithmHyperParameterRanges"
    tunable = _INT_PARAMS | _BOOL_PARAMS
    for kind in _RANGE_KEYS:
        for entry in block.get(kind, []):
            name = entry.get("name") if isinstance(entry, dict) else None
            if name not in tunable:
                raise ValueError(
                    f"{where}.{kind}: unknown hyperparameter {name!r}; expected one of {sorted(tunable)}"
                )
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
        ValueError: an unknown key or parameter, or a value of the wrong type; names the JSON path
            (and the nearest known key for a misspelling).
    """
    if not isinstance(document, dict):
        raise ValueError("solution config: expected a JSON object")
    config = SolutionConfig()
    if "solutionConfig" in document:
        _check_keys(document, "solution config", _REQUEST_KEYS, _REQUEST_IGNORED)
        solution = document["solutionConfig"]
        _check_keys(solution, "solutionConfig", _SOLUTION_KEYS, _SOLUTION_IGNORED)
    else:  # the solutionConfig object alone, perhaps with the request's performHPO / eventType
        solution = document
        _check_keys(
            document, "solution config", _SOLUTION_KEYS | _REQUEST_KEYS, _SOLUTION_IGNORED | _REQUEST_IGNORED
        )
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
        _check_keys(hpo, "solutionConfig.hpoConfig", _HPO_KEYS)
        objective = hpo.get("hpoObjective", {})
        _check_keys(objective, "solutionConfig.hpoConfig.hpoObjective", _OBJECTIVE_KEYS)
        if "metricName" in objective:
            config.tune_kwargs["objective"] = str(objective["metricName"])
        resources = hpo.get("hpoResourceConfig", {})
        _check_keys(resources, "solutionConfig.hpoConfig.hpoResourceConfig", _RESOURCE_KEYS)
        if "maxNumberOfTrainingJobs" in resources:
            config.tune_kwargs["max_trials"] = _number(
                resources["maxNumberOfTrainingJobs"], "maxNumberOfTrainingJobs", int
            )
        if "maxParallelTrainingJobs" in resources:
            config.tune_kwargs["parallel_trials"] = _number(
                resources["maxParallelTrainingJobs"], "maxParallelTrainingJobs", int
            )
        if "algorithmHyperParameterRanges" in hpo:
            _check_keys(
                hpo["algorithmHyperParameterRanges"],
                "solutionConfig.hpoConfig.algorithmHyperParameterRanges",
                _RANGE_KEYS,
            )
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
