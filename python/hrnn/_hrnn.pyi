# Type stubs of the private extension module hrnn._hrnn (checked with `python -m mypy.stubtest hrnn._hrnn`).
from os import PathLike
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "Interactions",
    "ItemIds",
    "Recommender",
    "SessionKnnIndex",
    "__version__",
    "get_num_threads",
    "item_popularity",
    "read_event_log",
    "recurrence_backward",
    "recurrence_forward",
    "repair_event_log",
    "set_num_threads",
    "softmax_cross_entropy",
    "validate_model_dir",
]

__version__: str

# ---- interactions (rust/hrnn-py/src/interactions.rs) ----------------------------------------------
@final
class Interactions:
    @staticmethod
    def from_csv(path: str | PathLike[str], timestamp_unit: str = "s") -> Interactions: ...
    @staticmethod
    def from_arrays(
        user_id: list[str],
        item_id: list[str],
        timestamp: npt.NDArray[np.int64],
        event_type: list[str] | None = None,
        event_value: npt.NDArray[np.float64] | None = None,
    ) -> Interactions: ...
    def __len__(self) -> int: ...
    @property
    def num_users(self) -> int: ...
    @property
    def num_items(self) -> int: ...
    @property
    def user_ids(self) -> list[str]: ...
    @property
    def item_ids(self) -> list[str]: ...
    @property
    def event_types(self) -> list[str]: ...
    @property
    def has_event_type(self) -> bool: ...
    @property
    def has_event_value(self) -> bool: ...
    @property
    def ignored_columns(self) -> list[str]: ...
    @property
    def rows_read(self) -> int: ...
    @property
    def source(self) -> str: ...
    @property
    def drops(self) -> list[tuple[str, str, int, int, int]]: ...
    def columns(
        self,
    ) -> tuple[
        npt.NDArray[np.uint32],
        npt.NDArray[np.uint32],
        npt.NDArray[np.int64],
        npt.NDArray[np.uint32],
        npt.NDArray[np.float32],
    ]: ...
    def history_lengths(self) -> npt.NDArray[np.uint32]: ...
    def history_length_bounds(self, min_percentile: float, max_percentile: float) -> tuple[float, float]: ...
    def select(
        self, event_type: str | None = None, event_value_threshold: float | None = None
    ) -> Interactions: ...
    def filter_by_history_length(self, min_percentile: float, max_percentile: float) -> Interactions: ...
    def subset(self, mask: npt.NDArray[np.bool_], rule: str) -> Interactions: ...
    def check_minimum(self) -> None: ...
    def sessionize(self, session_timeout: int) -> tuple[dict[str, Any], int]: ...

# ---- baselines (rust/hrnn-py/src/baselines.rs) ---------------------------------------------------
@final
class SessionKnnIndex:
    def __new__(
        cls,
        session_offsets: npt.NDArray[np.int64],
        items: npt.NDArray[np.uint32],
        timestamps: npt.NDArray[np.int64],
        num_items: int,
    ) -> SessionKnnIndex: ...
    @property
    def num_items(self) -> int: ...
    @property
    def num_sessions(self) -> int: ...
    def recommend(
        self,
        history_offsets: npt.NDArray[np.int64],
        history_items: npt.NDArray[np.int64],
        query_time: npt.NDArray[np.int64],
        num_results: int,
        *,
        exclude_seen: bool,
        neighbours: int,
        sample_size: int,
        context_length: int,
        position_decay: float,
        recency_half_life: float,
        neighbour_position_decay: float,
        idf: bool,
        popularity_backfill: float,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]: ...

def item_popularity(
    user: npt.NDArray[np.int64], item: npt.NDArray[np.int64], num_items: int
) -> npt.NDArray[np.int64]: ...

# ---- recommender (rust/hrnn-py/src/recommender.rs) ------------------------------------------------
@final
class ItemIds:
    def __len__(self) -> int: ...
    def tolist(self) -> list[str]: ...

@final
class Recommender:
    @staticmethod
    def load(
        model_dir: str | PathLike[str],
        event_log: str | PathLike[str] | None = None,
        precision: str = "fp32",
        max_events_per_call: int = 10,
        max_event_bytes: int = 10240,
        dedup_window: int = 1000000,
    ) -> Recommender: ...
    def recommend(
        self,
        user_id: str,
        num_results: int = 25,
        exclude_seen: bool = False,
        exclude_items: list[str] | None = None,
        include_items: list[str] | None = None,
        at: float | None = None,
        seen_event_types: list[str] | None = None,
    ) -> tuple[list[tuple[str, float]], bool]: ...
    def recommend_batch(
        self,
        user_ids: list[str],
        num_results: int = 25,
        exclude_seen: bool = False,
        exclude_items: list[str] | None = None,
        at: float | None = None,
        seen_event_types: list[str] | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], ItemIds]: ...
    def put_events(self, session_id: str, events: object, user_id: str | None = None) -> int: ...
    def close(self) -> None: ...
    def swap(self, model_dir: str | PathLike[str]) -> tuple[int, int]: ...
    def history(self, user_id: str) -> list[str]: ...
    def _read_floor(self) -> float: ...
    def state(self, user_id: str) -> tuple[npt.NDArray[np.float32], float | None] | None: ...
    def scores(self, user_id: str, at: float | None = None) -> npt.NDArray[np.float32] | None: ...
    def stats(self) -> dict[str, int | bool]: ...
    @property
    def item_ids(self) -> list[str]: ...
    @property
    def event_types(self) -> list[str]: ...
    @property
    def num_items(self) -> int: ...
    @property
    def hidden_dimension(self) -> int: ...
    @property
    def session_timeout(self) -> int: ...
    @property
    def precision(self) -> str: ...
    @property
    def isa(self) -> str: ...

def validate_model_dir(path: str | PathLike[str]) -> None: ...

# ---- events (rust/hrnn-py/src/events.rs) --------------------------------------------------------------
def read_event_log(
    path: str | PathLike[str],
) -> tuple[
    list[str],
    list[str],
    npt.NDArray[np.int64],
    list[str],
    npt.NDArray[np.float64],
    tuple[tuple[str, int], tuple[str, int], tuple[str, int], tuple[str, int]],
]: ...
def repair_event_log(path: str | PathLike[str]) -> tuple[int, int, list[tuple[int, int]], str, bool]: ...

# ---- threads (rust/hrnn-py/src/threads.rs) -----------------------------------------------------------
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...

# ---- training kernels (rust/hrnn-py/src/training.rs) -------------------------------------------------
def softmax_cross_entropy(
    input: npt.NDArray[np.float32],
    table: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    target_items: npt.NDArray[np.int64],
    target_weights: npt.NDArray[np.float32],
    exclusion_items: npt.NDArray[np.int64] | None = None,
    exclusion_starts: npt.NDArray[np.int64] | None = None,
    exclusion_stops: npt.NDArray[np.int64] | None = None,
) -> tuple[float, npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
def recurrence_forward(
    input_gates: npt.NDArray[np.float32],
    discount: npt.NDArray[np.float32],
    keep: npt.NDArray[np.bool_],
    initial: npt.NDArray[np.float32],
    weight_hh: npt.NDArray[np.float32],
    bias_hh: npt.NDArray[np.float32],
    save: bool,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]: ...
def recurrence_backward(
    discount: npt.NDArray[np.float32],
    keep: npt.NDArray[np.bool_],
    initial: npt.NDArray[np.float32],
    weight_hh: npt.NDArray[np.float32],
    bias_hh: npt.NDArray[np.float32],
    states: npt.NDArray[np.float32],
    saved: npt.NDArray[np.float32],
    grad_states: npt.NDArray[np.float32],
) -> tuple[
    npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]
]: ...
