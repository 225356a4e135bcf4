"""hrnn: a session-aware hierarchical recurrent recommender (Amazon Personalize's aws-hrnn recipe).

Training runs in torch (``pip install hrnn[train]``); loading, filtering, sessionizing and scoring
run in Rust with numpy alone.
"""

from hrnn._hrnn import __version__
from hrnn.exceptions import (
    EventError,
    HrnnError,
    InsufficientDataError,
    ModelFormatError,
    SchemaError,
)
from hrnn.interactions import DEFAULT_SESSION_TIMEOUT, DataReport, DropRule, Interactions
from hrnn.sessions import Sessions

__all__ = [
    "DEFAULT_SESSION_TIMEOUT",
    "DataReport",
    "DropRule",
    "EventError",
    "HrnnError",
    "InsufficientDataError",
    "Interactions",
    "ModelFormatError",
    "SchemaError",
    "Sessions",
    "__version__",
]
