"""hrnn: a session-aware hierarchical recurrent recommender (Amazon Personalize's aws-hrnn recipe).

Training runs in torch (``pip install hrnn[train]``); loading, filtering, sessionizing and scoring
run in Rust with numpy alone.
"""

from typing import TYPE_CHECKING

from hrnn._hrnn import __version__
from hrnn._threads import get_num_threads, set_num_threads
from hrnn.event_log import RepairReport, repair_event_log
from hrnn.exceptions import (
    EventError,
    EventLogError,
    EventLogLockedError,
    HrnnError,
    InsufficientDataError,
    ModelFormatError,
    SchemaError,
)
from hrnn.interactions import DEFAULT_SESSION_TIMEOUT, DataReport, DropRule, Interactions
from hrnn.recommender import BatchRecommendations, Recommendations, Recommender, SwapReport
from hrnn.sessions import Sessions
from hrnn.trained_model import TrainedModel
from hrnn.training import train

if TYPE_CHECKING:  # loaded lazily at run time, see __getattr__
    from hrnn import evaluation, server
    from hrnn.evaluation import evaluate
    from hrnn.server import serve
    from hrnn.tuning import tune

__all__ = [
    "DEFAULT_SESSION_TIMEOUT",
    "BatchRecommendations",
    "DataReport",
    "DropRule",
    "EventError",
    "EventLogError",
    "EventLogLockedError",
    "HrnnError",
    "InsufficientDataError",
    "Interactions",
    "ModelFormatError",
    "Recommendations",
    "Recommender",
    "RepairReport",
    "SchemaError",
    "Sessions",
    "SwapReport",
    "TrainedModel",
    "__version__",
    "evaluate",
    "evaluation",
    "get_num_threads",
    "repair_event_log",
    "serve",
    "server",
    "set_num_threads",
    "train",
    "tune",
]


def __getattr__(name: str) -> object:
    # evaluation and HPO load lazily: `import hrnn` stays numpy-only (no torch, no optuna)
    if name == "evaluation":
        import importlib

        return importlib.import_module("hrnn.evaluation")
    if name == "evaluate":
        from hrnn.evaluation import evaluate

        return evaluate
    if name in ("server", "serve"):  # the HTTP server (hrnn serve): loaded when first used
        import importlib

        module = importlib.import_module("hrnn.server")
        return module if name == "server" else module.serve
    if name == "tune":
        from hrnn.tuning import tune

        return tune
    raise AttributeError(f"module 'hrnn' has no attribute {name!r}")
