"""Scoring, side by side: hrnn's Rust engine vs torch eager, onnxruntime and numpy on the same
weights (H = 43, 100k items, top-25 when run by ``python benches/ratios.py -k recommend``; a tiny
catalogue inside the normal test run). Every competitor computes the same thing from the user's
state: the readout gate, logits over the whole catalogue, softmax and the top 25.

Single queries are measured on one thread for everyone, and again on two (hrnn splits a large
catalogue's scan into chunks, onnxruntime and torch parallelize their matmul); batches of 256 use
two threads for everyone.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import hrnn
from hrnn import model_format as fmt
from hrnn._testing import random_model
from hrnn.model_format import write_model_dir

H, K, BATCH = 43, 25, 256
SESSION_TIMEOUT = 1800  # random_model's


def _timed_run(config: pytest.Config) -> bool:
    """Whether pytest-benchmark times this run (otherwise each benchmark runs once, as a test)."""
    return bool(config.getoption("benchmark_enable", default=False)) or bool(
        config.getoption("benchmark_only", default=False)
    )


@pytest.fixture(scope="module")
def weights(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A random model directory plus its numpy weights (100k items when benchmarking)."""
    n = 100_000 if _timed_run(request.config) else 2_000
    model = random_model(n, H, num_users=BATCH, event_types=["click"], output_scale=0.5)
    path = write_model_dir(tmp_path_factory.mktemp("recommend") / "model", model.tensors, model.meta)
    tensors, meta = model.tensors, model.meta
    return {"path": path, "tensors": tensors, "users": meta["user_ids"]}


@pytest.fixture
def hrnn_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """Runs the test with hrnn on as many threads as its benchmark group says."""
    group = request.node.get_closest_marker("benchmark").kwargs["group"]
    before = hrnn.get_num_threads()
    hrnn.set_num_threads(1 if "(1 thread)" in group else 2)
    yield
    hrnn.set_num_threads(before)


@pytest.fixture(scope="module")
def rec(weights: dict[str, Any]) -> hrnn.Recommender:
    return hrnn.Recommender.load(weights["path"])


@pytest.fixture(scope="module")
def rec_bf16(weights: dict[str, Any]) -> hrnn.Recommender:
    """The same model with its item table held in bfloat16 (a load-time choice)."""
    return hrnn.Recommender.load(weights["path"], precision="bf16")


def _overlap(a: Any, b: Any) -> float:
    """Mean share of the top-K item sets two batches have in common."""
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b, strict=True)]))


def _gate(t: dict[str, np.ndarray]) -> np.ndarray:
    """σ(W_q τ_q + b_q) at Δq = 0 (the `at=None` query), as every competitor applies it."""
    return 1.0 / (1.0 + np.exp(-t["readout.bias"]))


# ----- batch of 1 ---------------------------------------------------------------------------------
@pytest.mark.benchmark(group="recommend: 1 user, top-25 (1 thread)")
def test_hrnn_recommend(
    benchmark: Any, rec: hrnn.Recommender, weights: dict[str, Any], hrnn_threads: None
) -> None:
    top = benchmark(rec.recommend, "user7", K)
    assert len(top) == min(K, rec.num_items)


@pytest.mark.benchmark(group="recommend: 1 user, top-25 (1 thread)")
def test_hrnn_bf16_recommend(
    benchmark: Any,
    rec: hrnn.Recommender,
    rec_bf16: hrnn.Recommender,
    weights: dict[str, Any],
    hrnn_threads: None,
) -> None:
    top = benchmark(rec_bf16.recommend, "user7", K)
    assert len(top) == min(K, rec.num_items)
    # Agreement with f32 over all users (top-25 overlap; ~99.5% on these random weights).
    users = weights["users"]
    overlap = _overlap(
        rec.recommend_batch(users, K).item_indices, rec_bf16.recommend_batch(users, K).item_indices
    )
    benchmark.extra_info["top25_overlap_with_fp32"] = overlap
    assert overlap >= 0.97


@pytest.mark.benchmark(group="recommend: 1 user, top-25 (1 thread)")
def test_numpy_recommend(benchmark: Any, weights: dict[str, Any], rec: hrnn.Recommender) -> None:
    t = weights["tensors"]
    gate, out_w, out_b, h = _gate(t), t["output.weight"], t["output.bias"], t["users.state"][7]

    def score() -> tuple[np.ndarray, np.ndarray]:
        logits = out_w @ (gate * h) + out_b
        e = np.exp(logits - logits.max())
        scores = e / e.sum()
        top = np.argpartition(-scores, K)[:K]
        top = top[np.argsort(-scores[top])]
        return top, scores[top]

    top, _ = benchmark(score)
    assert [f"item{j}" for j in top] == [i for i, _ in rec.recommend("user7", K)]


def _torch_recommend(benchmark: Any, weights: dict[str, Any], num_threads: int) -> None:
    torch = pytest.importorskip("torch")
    t = weights["tensors"]
    threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        out_w, out_b = torch.from_numpy(t["output.weight"]), torch.from_numpy(t["output.bias"])
        read_w, read_b = torch.from_numpy(t["readout.weight"]), torch.from_numpy(t["readout.bias"])
        h, tau = torch.from_numpy(t["users.state"][7]), torch.zeros(2)

        def score() -> Any:
            with torch.inference_mode():
                o = torch.sigmoid(read_w @ tau + read_b) * h
                return torch.topk(torch.softmax(out_w @ o + out_b, dim=0), K)

        benchmark(score)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.benchmark(group="recommend: 1 user, top-25 (1 thread)")
def test_torch_eager_recommend(benchmark: Any, weights: dict[str, Any]) -> None:
    _torch_recommend(benchmark, weights, 1)


def _onnx_session(t: dict[str, np.ndarray], threads: int) -> Any:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    n = t["output.weight"].shape[0]
    nodes = [
        helper.make_node("MatMul", ["tau", "readout_wt"], ["pre"]),
        helper.make_node("Add", ["pre", "readout_b"], ["pre_b"]),
        helper.make_node("Sigmoid", ["pre_b"], ["gate"]),
        helper.make_node("Mul", ["gate", "h"], ["o"]),
        helper.make_node("MatMul", ["o", "output_wt"], ["logits0"]),
        helper.make_node("Add", ["logits0", "output_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=-1),
        helper.make_node("TopK", ["scores", "k"], ["top_scores", "top_items"], axis=-1),
    ]
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(t["readout.weight"].T), "readout_wt"),
        numpy_helper.from_array(t["readout.bias"], "readout_b"),
        numpy_helper.from_array(np.ascontiguousarray(t["output.weight"].T), "output_wt"),
        numpy_helper.from_array(t["output.bias"], "output_b"),
        numpy_helper.from_array(np.array([K], dtype=np.int64), "k"),
    ]
    graph = helper.make_graph(
        nodes,
        "hrnn_scoring",
        [
            helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", H]),
            helper.make_tensor_value_info("tau", TensorProto.FLOAT, ["batch", 2]),
        ],
        [
            helper.make_tensor_value_info("top_scores", TensorProto.FLOAT, ["batch", K]),
            helper.make_tensor_value_info("top_items", TensorProto.INT64, ["batch", K]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert n > K
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _onnx_recommend(benchmark: Any, weights: dict[str, Any], rec: hrnn.Recommender, threads: int) -> None:
    t = weights["tensors"]
    session = _onnx_session(t, threads=threads)
    feeds = {"h": t["users.state"][7:8], "tau": np.zeros((1, 2), dtype=np.float32)}
    scores, items = benchmark(session.run, None, feeds)
    assert [f"item{j}" for j in items[0]] == [i for i, _ in rec.recommend("user7", K)]
    np.testing.assert_allclose(scores[0], [s for _, s in rec.recommend("user7", K)], rtol=1e-4)


@pytest.mark.benchmark(group="recommend: 1 user, top-25 (1 thread)")
def test_onnxruntime_recommend(benchmark: Any, weights: dict[str, Any], rec: hrnn.Recommender) -> None:
    _onnx_recommend(benchmark, weights, rec, 1)


# ----- batch of 1, two threads --------------------------------------------------------------------
@pytest.mark.benchmark(group="recommend: 1 user, top-25 (2 threads)")
def test_hrnn_recommend_2_threads(benchmark: Any, rec: hrnn.Recommender, hrnn_threads: None) -> None:
    top = benchmark(rec.recommend, "user7", K)
    assert len(top) == min(K, rec.num_items)


@pytest.mark.benchmark(group="recommend: 1 user, top-25 (2 threads)")
def test_hrnn_bf16_recommend_2_threads(
    benchmark: Any, rec_bf16: hrnn.Recommender, hrnn_threads: None
) -> None:
    top = benchmark(rec_bf16.recommend, "user7", K)
    assert len(top) == min(K, rec_bf16.num_items)


@pytest.mark.benchmark(group="recommend: 1 user, top-25 (2 threads)")
def test_onnxruntime_recommend_2_threads(
    benchmark: Any, weights: dict[str, Any], rec: hrnn.Recommender
) -> None:
    _onnx_recommend(benchmark, weights, rec, 2)


@pytest.mark.benchmark(group="recommend: 1 user, top-25 (2 threads)")
def test_torch_eager_recommend_2_threads(benchmark: Any, weights: dict[str, Any]) -> None:
    _torch_recommend(benchmark, weights, 2)


# ----- batch of 256 -------------------------------------------------------------------------------
@pytest.mark.benchmark(group="recommend: 256 users, top-25 (2 threads)")
def test_hrnn_recommend_batch(
    benchmark: Any, rec: hrnn.Recommender, weights: dict[str, Any], hrnn_threads: None
) -> None:
    batch = benchmark(rec.recommend_batch, weights["users"], K)
    assert batch.item_indices.shape == (BATCH, K)


@pytest.mark.benchmark(group="recommend: 256 users, top-25 (2 threads)")
def test_hrnn_bf16_recommend_batch(
    benchmark: Any, rec_bf16: hrnn.Recommender, weights: dict[str, Any], hrnn_threads: None
) -> None:
    batch = benchmark(rec_bf16.recommend_batch, weights["users"], K)
    assert batch.item_indices.shape == (BATCH, K)


@pytest.mark.benchmark(group="recommend: 256 users, top-25 (2 threads)")
def test_onnxruntime_recommend_batch(benchmark: Any, weights: dict[str, Any], rec: hrnn.Recommender) -> None:
    t = weights["tensors"]
    session = _onnx_session(t, threads=2)
    feeds = {"h": t["users.state"], "tau": np.zeros((BATCH, 2), dtype=np.float32)}
    _, items = benchmark(session.run, None, feeds)
    np.testing.assert_array_equal(items[:4], rec.recommend_batch(weights["users"][:4], K).item_indices)


@pytest.mark.benchmark(group="recommend: 256 users, top-25 (2 threads)")
def test_torch_eager_recommend_batch(benchmark: Any, weights: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    t = weights["tensors"]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out_w, out_b = torch.from_numpy(t["output.weight"]), torch.from_numpy(t["output.bias"])
        gate = torch.from_numpy(_gate(t))
        h = torch.from_numpy(t["users.state"])

        def score() -> Any:
            with torch.inference_mode():
                return torch.topk(torch.softmax((gate * h) @ out_w.T + out_b, dim=1), K, dim=1)

        benchmark(score)
    finally:
        torch.set_num_threads(threads)


# ----- real-time events ---------------------------------------------------------------------------
def fresh_calls(user_id: str, per_call: int) -> Any:
    """A pedantic-benchmark setup giving each round new events (a repeat would be dropped)."""
    counter = iter(range(1 << 62))

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        base = 1_700_000_100 + per_call * next(counter)
        events = [
            {"event_type": "click", "sent_at": base + i, "item_id": f"item{(base + i) % 1000}"}
            for i in range(per_call)
        ]
        return (), {"user_id": user_id, "session_id": "s", "events": events}

    return setup


@pytest.mark.benchmark(group="put_events: 10 events per call, Personalize's maximum (per call)")
def test_hrnn_put_events(benchmark: Any, rec: hrnn.Recommender) -> None:
    accepted = benchmark.pedantic(rec.put_events, setup=fresh_calls("user3", 10), rounds=200)
    assert accepted == 10


# ----- real-time events on an ensemble's block-diagonal cell ----------------------------------------
ENSEMBLE_MEMBERS, MEMBER_WIDTH = 4, 128


def _cut_between_blocks(matrix: np.ndarray, width: int) -> np.ndarray:
    """``matrix`` (``[rows, H (+ time columns)]``) with every weight between two blocks of ``width``
    set to 0, as ``ensemble_size`` exports it."""
    h = ENSEMBLE_MEMBERS * width
    rows = np.arange(matrix.shape[0]) % h // width
    cols = np.arange(matrix.shape[1])
    between = (cols[None, :] < h) & (rows[:, None] != cols[None, :] // width)
    return np.where(between, np.float32(0), matrix).astype(np.float32)


@pytest.fixture(scope="module", params=["dense", "blocks"])
def wide_rec(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> hrnn.Recommender:
    """A width-512 model: a dense cell, or the same weights cut into 4 blocks of 128 (which the
    engine finds at load and steps block by block)."""
    model = random_model(2_000, ENSEMBLE_MEMBERS * MEMBER_WIDTH, num_users=4, event_types=["click"])
    tensors = dict(model.tensors)
    if request.param == "blocks":
        for name in (fmt.DISCOUNT_WEIGHT, fmt.GRU_WEIGHT_IH, fmt.GRU_WEIGHT_HH):
            tensors[name] = _cut_between_blocks(tensors[name], MEMBER_WIDTH)
    path = write_model_dir(tmp_path_factory.mktemp(f"wide-{request.param}") / "model", tensors, model.meta)
    return hrnn.Recommender.load(path)


@pytest.mark.benchmark(group="put_events on H = 512: 4 × 128 ensemble cell vs dense (per call of 10)")
def test_hrnn_put_events_wide_cell(benchmark: Any, wide_rec: hrnn.Recommender) -> None:
    accepted = benchmark.pedantic(wide_rec.put_events, setup=fresh_calls("user1", 10), rounds=200)
    assert accepted == 10


# ----- how the score distribution moves the single-query cost -----------------------------------


@pytest.fixture(scope="module")
def spread_cases(spread_models: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per model: its tensors, the user scored (the one whose logits vary most), both precisions."""
    from hrnn.model_format import read_model_dir

    cases = {}
    for name, path in spread_models.items():
        model = read_model_dir(path)
        t = model.tensors
        states = t["users.state"] * _gate(t)
        user = int(np.argmax(np.linalg.norm(states, axis=1)))
        cases[name] = {
            "tensors": t,
            "user": model.meta["user_ids"][user],
            "row": user,
            "fp32": hrnn.Recommender.load(path),
            "bf16": hrnn.Recommender.load(path, precision="bf16"),
        }
    return cases


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = hrnn.get_num_threads()
    hrnn.set_num_threads(1)
    yield
    hrnn.set_num_threads(before)


@pytest.mark.parametrize("model", range(6))
@pytest.mark.benchmark(group="scoring spread")
def test_scoring_spread(
    benchmark: Any, spread_cases: dict[str, dict[str, Any]], model: int, one_thread: None
) -> None:
    """One user's top-25 on one thread, per model (trained and random), every engine timed in
    turn within each round (hrnn fp32, hrnn bf16, onnxruntime, the read floor, and the same call
    for a user without a state, which builds a list of 25 without a scan): on a shared machine,
    load from other processes then falls on all of them alike. The read floor sums the same fp32
    table, in the same pages, with the kernel's loads. Medians per engine and the paired ratios
    (hrnn fp32 / floor, onnxruntime / hrnn fp32, and the scan's share — hrnn fp32 less the call
    without a scan — over the floor, within each round) go to
    ``extra_info``; ``python benches/ratios.py -k spread`` prints them as one table."""
    names = sorted(spread_cases)
    if model >= len(names):
        pytest.skip("fewer models in this run (shared data absent, or the test suite)")
    name = names[model]
    case = spread_cases[name]
    benchmark.group = f"scoring spread: {name} (1 thread)"
    rec, user, t = case["fp32"], case["user"], case["tensors"]
    session = _onnx_session(t, threads=1)
    feeds = {"h": t["users.state"][case["row"] : case["row"] + 1], "tau": np.zeros((1, 2), dtype=np.float32)}
    exact = rec.recommend(user, K)
    scores, _ = session.run(None, feeds)
    np.testing.assert_allclose(scores[0], [s for _, s in exact], rtol=1e-4)
    bf16 = case["bf16"].recommend(user, K)
    assert rec.recommend(NO_STATE, K).personalized is False
    engines = {
        "hrnn fp32": lambda: rec.recommend(user, K),
        "hrnn bf16": lambda: case["bf16"].recommend(user, K),
        "onnxruntime": lambda: session.run(None, feeds),
        "read floor": rec._inner._read_floor,
        # the same call for a user without a state: id lookup, 25 results built, no scan
        "call, no scan": lambda: rec.recommend(NO_STATE, K),
    }
    times: dict[str, list[float]] = {e: [] for e in engines}

    def one_round() -> None:
        for engine, call in engines.items():
            call()  # the previous engine's memory may have evicted this one's from the caches
            start = time.perf_counter()
            call()
            times[engine].append(time.perf_counter() - start)

    benchmark.pedantic(one_round, rounds=SPREAD_ROUNDS if _benchmarking(benchmark) else 2)

    def per_round(over: str, under: str) -> float:
        return statistics.median(a / b for a, b in zip(times[over], times[under], strict=True))

    paired = {
        "hrnn fp32 / read floor": per_round("hrnn fp32", "read floor"),
        "onnxruntime / hrnn fp32": per_round("onnxruntime", "hrnn fp32"),
        # the scan's share of a call: hrnn fp32 less the call without a scan, over the floor
        "scan / read floor": statistics.median(
            (a - c) / f
            for a, c, f in zip(times["hrnn fp32"], times["call, no scan"], times["read floor"], strict=True)
        ),
    }
    benchmark.extra_info.update(
        {
            "spread_model": name,
            "spread_items": rec.num_items,
            "spread_median_us": {e: statistics.median(v) * 1e6 for e, v in times.items()},
            "spread_paired": paired,
            "top25_overlap_with_fp32": len({i for i, _ in exact} & {i for i, _ in bf16}) / len(exact),
        }
    )


#: A user id no model of the bench knows: its recommendations are the popularity list.
NO_STATE = "\x00no such user"

#: Rounds of the scoring-spread benchmark (each times every engine once).
SPREAD_ROUNDS = 300


def _benchmarking(benchmark: Any) -> bool:
    return not getattr(benchmark, "disabled", False)


# ----- fixed cost of a call through Python ---------------------------------------------------------
@pytest.fixture(scope="module")
def small_rec(tmp_path_factory: pytest.TempPathFactory) -> hrnn.Recommender:
    """A 1k-item model: scoring is ~1 µs, so a call's time is the binding's fixed cost."""
    model = random_model(1_000, H, num_users=4, event_types=["click"])
    return hrnn.Recommender.load(
        write_model_dir(tmp_path_factory.mktemp("small") / "model", model.tensors, model.meta)
    )


@pytest.mark.benchmark(group="recommend: fixed cost of a call, 1k items, top-25 (1 thread)")
def test_hrnn_recommend_fixed_cost(benchmark: Any, small_rec: hrnn.Recommender, one_thread: None) -> None:
    top = benchmark(small_rec.recommend, "user1", K, exclude_seen=True)
    assert len(top) == K


# ----- a catalogue of two scan chunks: 2 threads against 1 ------------------------------------------
@pytest.fixture(scope="module")
def two_chunk_rec(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> hrnn.Recommender:
    """50k items: a full scan chunk of 32,768 and a partial one (when benchmarking; 2k otherwise)."""
    model = random_model(
        50_000 if _timed_run(request.config) else 2_000, H, num_users=4, event_types=["click"]
    )
    return hrnn.Recommender.load(
        write_model_dir(tmp_path_factory.mktemp("two_chunks") / "model", model.tensors, model.meta)
    )


@pytest.mark.parametrize("threads", [2, 1])
@pytest.mark.benchmark(group="recommend: 1 user, 50k items (two scan chunks), top-25: 2 threads vs 1")
def test_hrnn_recommend_two_chunks(benchmark: Any, two_chunk_rec: hrnn.Recommender, threads: int) -> None:
    """On 2 threads the other would take less than a whole chunk, so the call stays on the caller's."""
    before = hrnn.get_num_threads()
    hrnn.set_num_threads(threads)
    try:
        top = benchmark(two_chunk_rec.recommend, "user1", K)
    finally:
        hrnn.set_num_threads(before)
    assert len(top) == K
