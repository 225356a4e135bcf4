"""The model-directory contract (docs/format.md): writer validation, atomic replace, reader errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hrnn import ModelFormatError
from hrnn import model_format as fmt

DOCS = Path(__file__).resolve().parents[1] / "docs" / "format.md"


def make_model(
    h: int = 4, n: int = 5, k: int = 2, u: int = 3
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A small, valid model directory's tensors and metadata."""
    rng = np.random.default_rng(0)

    def f32(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(np.float32)

    lengths = np.array([2, 0, 3])[:u]
    tensors = {
        fmt.ITEM_EMBEDDING: f32(n, h),
        fmt.EVENT_TYPE_EMBEDDING: f32(k, h),
        fmt.DISCOUNT_WEIGHT: f32(h, h + 2),
        fmt.DISCOUNT_BIAS: f32(h),
        fmt.GRU_WEIGHT_IH: f32(3 * h, h + 2),
        fmt.GRU_WEIGHT_HH: f32(3 * h, h),
        fmt.GRU_BIAS_IH: f32(3 * h),
        fmt.GRU_BIAS_HH: f32(3 * h),
        fmt.READOUT_WEIGHT: f32(h, 2),
        fmt.READOUT_BIAS: f32(h),
        fmt.OUTPUT_WEIGHT: f32(n, h),
        fmt.OUTPUT_BIAS: f32(n),
        fmt.ITEMS_POPULARITY: np.arange(n, dtype=np.int64),
        fmt.USERS_STATE: f32(u, h),
        fmt.USERS_LAST_TIMESTAMP: np.arange(u, dtype=np.int64) + 1_600_000_000,
        fmt.USERS_HISTORY_OFFSETS: np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        fmt.USERS_HISTORY_ITEMS: np.array([1, 4, 0, 2, 2], dtype=np.int32)[: int(lengths.sum())] % n,
    }
    user = np.repeat(np.arange(u), lengths)
    item = tensors[fmt.USERS_HISTORY_ITEMS]
    seen = fmt.seen_entries(user, item, np.arange(item.size) % k, u, k)
    tensors[fmt.USERS_SEEN_OFFSETS], tensors[fmt.USERS_SEEN_ITEMS], tensors[fmt.USERS_SEEN_EVENT_TYPES] = seen
    meta = {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.FORMAT_VERSION,
        "hyperparameters": {
            "hidden_dimension": h,
            "bptt": 32,
            "recency_mask": True,
            "min_user_history_length_percentile": 0.0,
            "max_user_history_length_percentile": 0.99,
        },
        "training": {"epochs": 1},
        "session_timeout": 1800,
        "history_limit": 100,
        "item_ids": [f"i{j}" for j in range(n)],
        "event_types": [f"t{j}" for j in range(k)],
        "user_ids": [f"u{j}" for j in range(u)],
        "data_summary": {"rows": 10},
        "hrnn_version": "0.0.0",
    }
    return tensors, meta


def test_tensor_names_match_the_documented_table() -> None:
    documented = re.findall(r"^\| `([a-z_.]+)` \| (F32|I64|I32) \|", DOCS.read_text(), flags=re.MULTILINE)
    assert [name for name, _ in documented] == list(fmt.TENSOR_NAMES)
    kinds = {"F32": np.float32, "I64": np.int64, "I32": np.int32}
    tensors, _ = make_model()
    for name, kind in documented:
        assert tensors[name].dtype == kinds[kind], name


def test_round_trip(tmp_path: Path) -> None:
    tensors, meta = make_model()
    path = fmt.write_model_dir(tmp_path / "model", tensors, meta)
    assert sorted(p.name for p in path.iterdir()) == [fmt.METADATA_FILE, fmt.TENSORS_FILE]
    read = fmt.read_model_dir(path)
    assert read.meta == meta
    for name in fmt.TENSOR_NAMES:
        np.testing.assert_array_equal(read.tensors[name], tensors[name])
        assert read.tensors[name].dtype == tensors[name].dtype


def test_existing_directory_is_replaced_and_no_temporaries_remain(tmp_path: Path) -> None:
    tensors, meta = make_model()
    target = tmp_path / "model"
    fmt.write_model_dir(target, tensors, meta)
    meta2 = {**meta, "session_timeout": 60}
    fmt.write_model_dir(target, tensors, meta2)
    assert fmt.read_model_dir(target).meta["session_timeout"] == 60
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_invalid_model_leaves_existing_directory_untouched(tmp_path: Path) -> None:
    tensors, meta = make_model()
    target = tmp_path / "model"
    fmt.write_model_dir(target, tensors, meta)
    bad = {**tensors, fmt.OUTPUT_BIAS: np.full(5, np.nan, dtype=np.float32)}
    with pytest.raises(
        ModelFormatError, match=r"model\.safetensors: output\.bias: every value must be finite, found NaN"
    ):
        fmt.write_model_dir(target, bad, meta)
    np.testing.assert_array_equal(
        fmt.read_model_dir(target).tensors[fmt.OUTPUT_BIAS], tensors[fmt.OUTPUT_BIAS]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (fmt.GRU_WEIGHT_IH, np.zeros((12, 5), dtype=np.float32), r"gru\.weight_ih: expected shape \[12, 6\]"),
        (
            fmt.ITEM_EMBEDDING,
            np.zeros((5, 4), dtype=np.float64),
            r"item_embedding: expected dtype F32, found F64",
        ),
        (fmt.USERS_HISTORY_ITEMS, np.array([0, 1, 9, 2, 3], dtype=np.int32), r"history_items: item indices"),
        (
            fmt.USERS_HISTORY_OFFSETS,
            np.array([0, 3, 2, 5], dtype=np.int64),
            r"users\.history_offsets: offsets must be non-decreasing",
        ),
        (fmt.USERS_STATE, np.zeros((2, 4), dtype=np.float32), r"users\.state: expected shape \[3, 4\]"),
        (fmt.USERS_SEEN_EVENT_TYPES, np.array([0, 1, 2, 0, 1], dtype=np.int32), r"event-type indices"),
        (fmt.USERS_SEEN_ITEMS, np.array([4, 1, 0, 2, 2], dtype=np.int32), r"strictly increasing"),
        (
            fmt.USERS_SEEN_OFFSETS,
            np.array([0, 2, 1, 5], dtype=np.int64),
            r"users\.seen_offsets: offsets must be non-decreasing",
        ),
    ],
)
def test_writer_rejects_tensors_that_break_the_contract(
    tmp_path: Path, name: str, value: np.ndarray, message: str
) -> None:
    tensors, meta = make_model()
    tensors[name] = value
    with pytest.raises(ModelFormatError, match=message):
        fmt.write_model_dir(tmp_path / "m", tensors, meta)
    assert not (tmp_path / "m").exists()


def test_writer_rejects_missing_and_unknown_tensors(tmp_path: Path) -> None:
    tensors, meta = make_model()
    del tensors[fmt.READOUT_BIAS]
    with pytest.raises(ModelFormatError, match=r"missing tensor\(s\) readout\.bias"):
        fmt.write_model_dir(tmp_path / "m", tensors, meta)
    tensors, meta = make_model()
    tensors["extra"] = np.zeros(1, dtype=np.float32)
    with pytest.raises(ModelFormatError, match="unknown tensor"):
        fmt.write_model_dir(tmp_path / "m", tensors, meta)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 3}, "model.json: format_version: version 3 is newer than this hrnn reads"),
        ({"format": "other"}, 'model.json: format: expected "hrnn-model", found "other"'),
        ({"item_ids": ["a", "a", "b", "c", "d"]}, 'model.json: item_ids: ids must be distinct: "a"'),
        ({"hyperparameters": {"hidden_dimension": 4}}, "model.json: hyperparameters.bptt"),
        ({"session_timeout": "1800"}, "model.json: session_timeout: expected an integer"),
    ],
)
def test_reader_rejects_bad_metadata(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    tensors, meta = make_model()
    path = fmt.write_model_dir(tmp_path / "m", tensors, meta)
    (path / fmt.METADATA_FILE).write_text(json.dumps({**meta, **change}))
    with pytest.raises(ModelFormatError, match=re.escape(message)):
        fmt.read_model_dir(path)


def test_reader_errors_name_the_file(tmp_path: Path) -> None:
    tensors, meta = make_model()
    path = fmt.write_model_dir(tmp_path / "m", tensors, meta)
    (path / fmt.TENSORS_FILE).write_bytes(b"garbage")
    with pytest.raises(ModelFormatError, match=r"model\.safetensors: <header>: not a valid safetensors file"):
        fmt.read_model_dir(path)
    (path / fmt.METADATA_FILE).write_text("{not json")
    with pytest.raises(ModelFormatError, match=r"model\.json: <json>: not valid JSON"):
        fmt.read_model_dir(path)
    with pytest.raises(FileNotFoundError, match=r"model\.json"):
        fmt.read_model_dir(tmp_path / "absent")


def test_unknown_extra_fields_are_ignored(tmp_path: Path) -> None:
    tensors, meta = make_model()
    path = fmt.write_model_dir(tmp_path / "m", tensors, {**meta, "later_addition": [1, 2]})
    assert fmt.read_model_dir(path).meta["later_addition"] == [1, 2]


def test_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    tensors, meta = make_model()
    (tmp_path / "m").write_text("x")
    with pytest.raises(NotADirectoryError):
        fmt.write_model_dir(tmp_path / "m", tensors, meta)


def test_seen_entries_are_each_users_distinct_item_and_type_pairs() -> None:
    user = np.array([2, 0, 2, 2, 0, 2])
    item = np.array([5, 1, 3, 5, 1, 5])
    kind = np.array([1, 0, 0, 1, 0, 0])
    offsets, items, types = fmt.seen_entries(user, item, kind, num_users=4, num_event_types=2)
    np.testing.assert_array_equal(offsets, [0, 1, 1, 4, 4])
    np.testing.assert_array_equal(items, [1, 3, 5, 5])
    np.testing.assert_array_equal(types, [0, 0, 0, 1])


def test_a_version_one_directory_still_reads(tmp_path: Path) -> None:
    tensors, meta = make_model()
    for name in (fmt.USERS_SEEN_OFFSETS, fmt.USERS_SEEN_ITEMS, fmt.USERS_SEEN_EVENT_TYPES):
        del tensors[name]
    path = fmt.write_model_dir(tmp_path / "m", tensors, {**meta, "format_version": 1})
    assert fmt.USERS_SEEN_ITEMS not in fmt.read_model_dir(path).tensors
