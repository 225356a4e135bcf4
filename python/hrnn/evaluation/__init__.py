"""Offline evaluation as Amazon Personalize measures it: temporal splits, metrics, baselines.

``import hrnn.evaluation`` needs numpy only; training the model (``hrnn.evaluate``) needs torch.
"""

from hrnn.evaluation._hrnn_model import HrnnModel
from hrnn.evaluation.baselines import BASELINES, Baseline, Popularity, SessionKnn, make_baseline
from hrnn.evaluation.metrics import NEXT_ITEM_METRICS, PERSONALIZE_METRICS, conservative_ranks, metrics
from hrnn.evaluation.report import EvaluationReport, ModelResult, evaluate, evaluate_split
from hrnn.evaluation.splits import PROTOCOLS, Split, make_split

__all__ = [
    "BASELINES",
    "NEXT_ITEM_METRICS",
    "PERSONALIZE_METRICS",
    "PROTOCOLS",
    "Baseline",
    "EvaluationReport",
    "HrnnModel",
    "ModelResult",
    "Popularity",
    "SessionKnn",
    "Split",
    "conservative_ranks",
    "evaluate",
    "evaluate_split",
    "make_baseline",
    "make_split",
    "metrics",
]
