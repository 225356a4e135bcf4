"""Recommender.load: a valid directory loads; every mismatch with docs/format.md raises
ModelFormatError naming the file and the tensor or field; hostile bytes never crash."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import hrnn

TINY = Path(__file__).parent / "fixtures" / "tiny_model"


def tampered(
    tmp_path: Path,
    meta_edit: Callable[[dict[str, Any]], None] | None = None,
    tensor_edit: Callable[[dict[str, np.ndarray]], None] | None = None,
) -> Path:
    out = tmp_path / "model"
    shutil.copytree(TINY, out)
    if meta_edit is not None:
        meta = json.loads((out / "model.json").read_text())
        meta_edit(meta)
        (out / "model.json").write_text(json.dumps(meta))
    if tensor_edit is not None:
        tensors = load_file(out / "model.safetensors")
        tensor_edit(tensors)
        save_file(tensors, out / "model.safetensors")
    return out


def test_loads_the_fixture() -> None:
    rec = hrnn.Recommender.load(TINY)
    assert (rec.num_items, rec.hidden_dimension, rec.session_timeout) == (40, 6, 1800)
    assert rec.item_ids[:2] == ["item0", "item1"]
    assert rec.event_types == ["click", "buy"]
    assert rec.isa in {"avx2+fma", "portable"}
    assert "Recommender(items=40" in repr(rec)


def _drop(name: str) -> Callable[[dict[str, np.ndarray]], None]:
    def edit(t: dict[str, np.ndarray]) -> None:
        del t[name]

    return edit


def _set(name: str, value: Any) -> Callable[[dict[str, np.ndarray]], None]:
    def edit(t: dict[str, np.ndarray]) -> None:
        t[name] = value(t[name])

    return edit


def _nan(t: dict[str, np.ndarray]) -> None:
    t["gru.weight_hh"] = t["gru.weight_hh"].copy()
    t["gru.weight_hh"][2, 3] = np.inf


CASES: list[tuple[str, Any, Any, str]] = [
    ("missing tensor", None, _drop("readout.bias"), "model.safetensors: readout.bias: missing tensor"),
    (
        "wrong shape",
        None,
        _set("gru.weight_ih", lambda a: a[:, :-1].copy()),
        "gru.weight_ih: expected shape [18, 8]",
    ),
    (
        "wrong dtype",
        None,
        _set("output.bias", lambda a: a.astype(np.float64)),
        "output.bias: expected dtype F32, found F64",
    ),
    (
        "non-finite weight",
        None,
        _nan,
        "gru.weight_hh: every value must be finite, found inf at flat index 15",
    ),
    (
        "item index out of range",
        None,
        _set("users.history_items", lambda a: np.full_like(a, 40)),
        "users.history_items: item indices must lie in [0, 40)",
    ),
    (
        "negative popularity",
        None,
        _set("items.popularity", lambda a: a - 100),
        "items.popularity: counts must be ≥ 0",
    ),
    (
        "future format version",
        lambda m: m.update(format_version=3),
        None,
        "model.json: format_version: version 3 is newer than this hrnn reads",
    ),
    (
        "wrong format name",
        lambda m: m.update(format="other"),
        None,
        'model.json: format: expected "hrnn-model"',
    ),
    (
        "item count differs from the id list",
        lambda m: m["item_ids"].append("extra"),
        None,
        "item_embedding: expected shape [41, 6]",
    ),
    (
        "duplicate ids",
        lambda m: m["item_ids"].__setitem__(1, "item0"),
        None,
        "item_ids: ids must be distinct",
    ),
    ("missing field", lambda m: m.pop("session_timeout"), None, "session_timeout: missing required field"),
    (
        "wrong field type",
        lambda m: m["hyperparameters"].update(hidden_dimension=6.5),
        None,
        "hyperparameters.hidden_dimension: expected an integer, found 6.5",
    ),
    (
        "history longer than the limit",
        lambda m: m.update(history_limit=2),
        None,
        "users.history_offsets: user 0 has 3 history items, more than history_limit = 2",
    ),
]


@pytest.mark.parametrize(
    ("meta_edit", "tensor_edit", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_every_mismatch_is_a_model_format_error(
    tmp_path: Path, meta_edit: Any, tensor_edit: Any, message: str
) -> None:
    path = tampered(tmp_path, meta_edit, tensor_edit)
    with pytest.raises(hrnn.ModelFormatError, match="^" + str(path).replace("\\", "\\\\")) as info:
        hrnn.Recommender.load(path)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_and_lying_files(tmp_path: Path) -> None:
    path = tampered(tmp_path)
    good = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(
        hrnn.ModelFormatError, match=r"model\.safetensors: <header>: not a valid safetensors file"
    ):
        hrnn.Recommender.load(path)
    # A header whose offsets point past the data.
    (header_len,) = struct.unpack("<Q", good[:8])
    header = json.loads(good[8 : 8 + header_len])
    header["output.bias"]["data_offsets"][1] += 4096
    text = json.dumps(header).encode()
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + good[8 + header_len :])
    with pytest.raises(hrnn.ModelFormatError, match=r"<header>"):
        hrnn.Recommender.load(path)
    (path / "model.json").write_bytes(b"{not json")
    with pytest.raises(hrnn.ModelFormatError, match=r"model\.json: <json>: not valid JSON"):
        hrnn.Recommender.load(path)


def test_missing_files_are_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.json"):
        hrnn.Recommender.load(tmp_path)


def test_random_corruption_never_crashes(tmp_path: Path) -> None:
    path = tampered(tmp_path)
    good = (path / "model.safetensors").read_bytes()
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(150):
        bad = bytearray(good)
        for at in rng.integers(0, len(bad), size=3):
            bad[at] = int(rng.integers(0, 256))
        (path / "model.safetensors").write_bytes(bytes(bad))
        try:
            hrnn.Recommender.load(path)
            outcomes.add("loaded")
        except hrnn.ModelFormatError:
            outcomes.add("rejected")
    assert "rejected" in outcomes


def _bf16(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even f32 → bfloat16 → f32, in numpy (the obviously-correct reference)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return rounded.astype(np.uint32).view(np.float32)


def test_bf16_precision_scores_the_rounded_weights() -> None:
    exact = hrnn.Recommender.load(TINY)
    rec = hrnn.Recommender.load(TINY, precision="bf16")
    assert (exact.precision, rec.precision) == ("fp32", "bf16")
    assert "precision='bf16'" in repr(rec)
    tensors = load_file(TINY / "model.safetensors")
    out_w, out_b = _bf16(tensors["output.weight"]).astype(np.float64), tensors["output.bias"]
    for user in ["user0", "user1", "user2", "user3"]:
        state, exact_state = rec.state(user), exact.state(user)
        assert state is not None and exact_state is not None
        assert np.array_equal(state[0], exact_state[0])
        # The softmax of logits over bf16-rounded weights (biases and the cell stay f32).
        gate = 1.0 / (1.0 + np.exp(-tensors["readout.bias"].astype(np.float64)))
        logits = out_w @ (gate * state[0]) + out_b
        want = np.exp(logits - logits.max())
        want /= want.sum()
        scores = rec.scores(user)
        assert scores is not None
        np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-9)
        top = rec.recommend(user, 25)
        assert len({i for i, _ in top} & {i for i, _ in exact.recommend(user, 25)}) >= 24


def test_unknown_precision_is_a_value_error() -> None:
    with pytest.raises(ValueError, match='precision: expected "fp32" or "bf16", found "fp16"'):
        hrnn.Recommender.load(TINY, precision="fp16")  # type: ignore[arg-type]
