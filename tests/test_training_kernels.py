"""hrnn's fused CPU training kernels against torch's autograd of the same equations."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hrnn  # noqa: E402
from hrnn import _hrnn  # noqa: E402
from hrnn._network import kernels  # noqa: E402
from hrnn._network.model import HRNN  # noqa: E402
from logs import synthetic_log  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _leaf(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def torch_softmax_loss(o, table, bias, items, weights, excluded):  # type: ignore[no-untyped-def]
    """The loss written with torch ops in float64: mask, log-softmax, weighted mean."""
    logits = o @ table.T + bias
    mask = torch.zeros(logits.shape, dtype=torch.bool)
    for m, row in enumerate(excluded):
        mask[m, row] = True
    for m in range(items.shape[0]):
        for j in range(items.shape[1]):
            if weights[m, j] > 0:
                mask[m, items[m, j]] = False
    log_p = torch.log_softmax(logits.masked_fill(mask, -torch.inf), dim=1)
    w = torch.tensor(weights, dtype=torch.float64)
    picked = log_p.gather(1, torch.from_numpy(items)).masked_fill(w == 0, 0.0)
    return -(picked * w).sum() / w.sum()


@pytest.mark.parametrize("width", [1, 3])
@pytest.mark.parametrize("exclude", [False, True])
def test_softmax_cross_entropy_matches_torch(width: int, exclude: bool) -> None:
    rng = np.random.default_rng(width)
    rows, n, h = 150, 57, 9  # 150 rows: more than two 64-row blocks
    o, table = rng.normal(size=(rows, h)), rng.normal(size=(n, h)) * 0.5
    bias = rng.normal(size=n)
    items = rng.integers(0, n, size=(rows, width))
    weights = rng.uniform(0.2, 1.5, size=(rows, width)) * (rng.random((rows, width)) > 0.2)
    # each row excludes a run of a shared item list (its "history"), which may hold its targets
    shared = rng.integers(0, n, size=rows + 20)
    starts = np.arange(rows)
    stops = starts + rng.integers(0, 20, size=rows)
    exclusions = (shared, starts, stops) if exclude else None
    excluded = [shared[a:b] if exclude else [] for a, b in zip(starts, stops, strict=True)]

    leaves = [_leaf(x) for x in (o, table, bias)]
    want = torch_softmax_loss(*leaves, items, weights, excluded)
    want.backward()
    inputs = [torch.tensor(x, dtype=torch.float32, requires_grad=True) for x in (o, table, bias)]
    got = kernels.softmax_cross_entropy(*inputs, items, weights.astype(np.float32), exclusions)
    (2.0 * got).backward()  # the upstream gradient scales every gradient
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    for mine, theirs in zip(inputs, leaves, strict=True):
        np.testing.assert_allclose(mine.grad.numpy(), 2.0 * theirs.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_softmax_cross_entropy_errors_name_the_argument() -> None:
    o, table, bias = np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32), np.zeros(4, np.float32)
    one = np.ones((2, 1), np.float32)
    with pytest.raises(ValueError, match=r"target_items: expected item indices in \[0, 4\), found 4 at row"):
        _hrnn.softmax_cross_entropy(o, table, bias, np.array([[0], [4]]), one)
    with pytest.raises(ValueError, match="target_weights: expected finite weights"):
        _hrnn.softmax_cross_entropy(o, table, bias, np.array([[0], [1]]), one * np.nan)
    with pytest.raises(ValueError, match="together"):
        _hrnn.softmax_cross_entropy(
            o, table, bias, np.array([[0], [1]]), np.ones((2, 1), np.float32), np.array([0])
        )


def _model(seed: int, cpu_kernels: bool) -> HRNN:
    torch.manual_seed(seed)
    model = HRNN(40, 3, 12, cpu_kernels=cpu_kernels)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.4)
    return model


def test_recurrence_kernel_matches_the_step_by_step_cell() -> None:
    """States and every parameter's gradient of HRNN.run, kernel against torch's loop."""
    steps, slots = 9, 37  # 37 slots: runs of slots on two threads when there are two
    gen = torch.Generator().manual_seed(3)
    item = torch.randint(0, 40, (steps, slots), generator=gen)
    event_type = torch.randint(-1, 3, (steps, slots), generator=gen)
    time_features = torch.rand(steps, slots, 2, generator=gen)
    initial = torch.randn(slots, 12, generator=gen)
    reset = torch.rand(steps, slots, generator=gen) < 0.2
    weight = torch.randn(steps, slots, 12, generator=gen)
    results = []
    for fused in (True, False):
        model = _model(5, fused)
        states, last = model.run(item, event_type, time_features, initial, reset)
        (states * weight).sum().backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results.append((states.detach(), last.detach(), grads))
    (fused_states, fused_last, fused_grads), (loop_states, loop_last, loop_grads) = results
    torch.testing.assert_close(fused_states, loop_states, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused_last, loop_last, rtol=1e-5, atol=1e-6)
    assert fused_grads.keys() == loop_grads.keys()
    for name, grad in loop_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_recurrence_errors_name_the_array() -> None:
    z = np.zeros
    with pytest.raises(ValueError, match=r"keep: expected 6 values for T = 2, B = 3, H = 4, found 4"):
        _hrnn.recurrence_forward(
            z((2, 3, 12), np.float32),
            z((2, 3, 4), np.float32),
            np.ones((2, 2), bool),
            z((3, 4), np.float32),
            z((12, 4), np.float32),
            z(12, np.float32),
            False,
        )


def test_the_kernels_release_the_gil() -> None:
    """Two threads in the softmax kernel at once: their time windows overlap."""
    rng = np.random.default_rng(0)
    o = rng.normal(size=(256, 43)).astype(np.float32)
    table = rng.normal(size=(20_000, 43)).astype(np.float32)
    bias = np.zeros(20_000, np.float32)
    items, weights = rng.integers(0, 20_000, (256, 1)), np.ones((256, 1), np.float32)
    barrier = threading.Barrier(2)
    spans: list[tuple[float, float]] = []

    def work() -> None:
        barrier.wait()
        began = time.perf_counter()
        _hrnn.softmax_cross_entropy(o, table, bias, items, weights)
        spans.append((began, time.perf_counter()))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1


def test_training_with_and_without_kernels_learns_the_same() -> None:
    log = synthetic_log()
    data = hrnn.Interactions.from_arrays(log["user_id"], log["item_id"], log["timestamp"])
    settings: dict[str, Any] = {
        "epochs": 2,
        "hidden_dimension": 32,
        "validation_fraction": 0.0,
        "progress": False,
        "dropout_embedding": 0.0,
        "dropout_hidden": 0.0,
    }
    fused = hrnn.train(data, **settings)
    plain = hrnn.train(data, **settings, cpu_kernels=False)
    for a, b in zip(fused.training["history"], plain.training["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
