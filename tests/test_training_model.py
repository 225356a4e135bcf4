"""The torch network against a plain numpy transcription of docs/model.md."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hrnn._network.model import HRNN  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def reference_run(p: dict[str, np.ndarray], items, types, gaps, starts, dq, sq):  # type: ignore[no-untyped-def]
    """docs/model.md, literally, in float64: returns (states, o, softmax scores)."""
    h_dim = p["item_embedding"].shape[1]
    h = np.zeros(h_dim)
    states = []
    for i, k, gap, s in zip(items, types, gaps, starts, strict=True):
        c = np.log(1.0 + max(gap, 0) / 60.0)
        x = p["item_embedding"][i] + (p["event_type_embedding"][k] if k >= 0 else 0.0)
        u = np.concatenate([x, [c, s]])
        d = sigmoid(p["discount.weight"] @ u + p["discount.bias"])
        h_tilde = d * h
        a_r, a_z, a_n = np.split(p["gru.weight_ih"] @ u + p["gru.bias_ih"], 3)
        g_r, g_z, g_n = np.split(p["gru.weight_hh"] @ h_tilde + p["gru.bias_hh"], 3)
        r = sigmoid(a_r + g_r)
        z = sigmoid(a_z + g_z)
        n = np.tanh(a_n + r * g_n)
        h = (1 - z) * n + z * h_tilde
        states.append(h)
    tau_q = np.array([np.log(1.0 + max(dq, 0) / 60.0), sq])
    o = sigmoid(p["readout.weight"] @ tau_q + p["readout.bias"]) * h
    logits = p["output.weight"] @ o + p["output.bias"]
    scores = np.exp(logits - logits.max())
    return np.array(states), o, scores / scores.sum()


def randomized(model: HRNN, seed: int = 0) -> HRNN:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return model.eval()


def test_network_matches_the_equations() -> None:
    model = randomized(HRNN(11, 3, 8))
    p = {name: t.astype(np.float64) for name, t in model.export_tensors().items()}
    items = np.array([3, 7, 7, 0, 10])
    types = np.array([0, 2, -1, 1, 0])  # -1: an event type unknown to the model
    gaps = np.array([0, 30, 5000, 61, 0])
    starts = np.array([1.0, 0.0, 1.0, 0.0, 0.0])
    ref_states, ref_o, ref_scores = reference_run(p, items, types, gaps, starts, dq=7200, sq=1.0)

    time = np.stack([np.log1p(np.maximum(gaps, 0) / 60.0), starts], axis=-1)
    with torch.no_grad():
        states, last = model.run(
            torch.from_numpy(items)[:, None],
            torch.from_numpy(types)[:, None],
            torch.from_numpy(time).float()[:, None],
            torch.zeros(1, 8),
        )
        o = model.read_out(last, torch.tensor([[np.log1p(7200 / 60.0), 1.0]]))
        scores = torch.softmax(model.logits(o), dim=-1)
    np.testing.assert_allclose(states[:, 0].numpy(), ref_states, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(o[0].numpy(), ref_o, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores[0].numpy(), ref_scores, rtol=1e-5, atol=1e-7)


def test_open_discount_gate_reduces_to_torch_gru_cell() -> None:
    model = randomized(HRNN(5, 1, 6), seed=1)
    with torch.no_grad():
        model.discount.weight.zero_()
        model.discount.bias.fill_(60.0)  # σ(60) == 1 in float32
    u_items = torch.tensor([[1], [4], [2]])
    time = torch.rand(3, 1, 2)
    states, _ = model.run(u_items, torch.zeros(3, 1, dtype=torch.long), time, torch.zeros(1, 6))
    h = torch.zeros(1, 6)
    with torch.no_grad():
        for t in range(3):
            h = model.gru(model.inputs(u_items[t], torch.zeros(1, dtype=torch.long), time[t]), h)
            torch.testing.assert_close(states[t], h)


def test_reset_starts_the_next_user_from_zero_and_nothing_leaks() -> None:
    model = randomized(HRNN(9, 1, 6), seed=2)
    items = torch.tensor([[1], [2], [3], [4], [5]])
    types = torch.zeros(5, 1, dtype=torch.long)
    time = torch.rand(5, 1, 2)
    reset = torch.tensor([[True], [False], [False], [True], [False]])
    joint, _ = model.run(items, types, time, torch.randn(1, 6), reset)
    alone, _ = model.run(items[3:], types[3:], time[3:], torch.zeros(1, 6))
    torch.testing.assert_close(joint[3:], alone)

    # Gradients: the second user's outputs do not depend on the first user's inputs.
    model.train()
    model.dropout_embedding.p = model.dropout_hidden.p = 0.0
    model.zero_grad()
    states, _ = model.run(items, types, time, torch.zeros(1, 6), reset)
    states[3:].sum().backward()
    grad = model.item_embedding.weight.grad
    assert grad is not None
    assert torch.all(grad[[1, 2, 3]] == 0)
    assert torch.any(grad[[4, 5]] != 0)


def test_initialisation_is_sensible() -> None:
    torch.manual_seed(0)
    model = HRNN(100, 2, 32)
    log_frequency = torch.log1p(torch.arange(100, dtype=torch.float32))
    model.reset_parameters(log_frequency)
    assert torch.all(model.discount.bias == 2.0)
    assert torch.all(model.readout.bias == 2.0)
    torch.testing.assert_close(model.output_bias.detach(), log_frequency - log_frequency.mean())
    std = model.item_embedding.weight.std().item()
    assert 0.12 < std < 0.22  # ≈ 1/√32
    for param in model.parameters():
        assert torch.all(torch.isfinite(param))


def test_dropout_only_in_training_and_where_documented() -> None:
    torch.manual_seed(0)
    model = HRNN(20, 1, 32, dropout_embedding=0.5, dropout_hidden=0.5)
    items = torch.randint(0, 20, (4, 3))
    args = (items, torch.zeros(4, 3, dtype=torch.long), torch.rand(4, 3, 2), torch.zeros(3, 32))
    model.eval()
    a, _ = model.run(*args)
    b, _ = model.run(*args)
    torch.testing.assert_close(a, b)
    model.train()
    c, _ = model.run(*args)
    assert not torch.allclose(a, c)
    o_train = model.read_out(a[-1], torch.zeros(3, 2))
    assert (o_train == 0).float().mean() > 0.2  # dropout on o


def test_tied_embeddings_share_the_item_matrix() -> None:
    model = HRNN(10, 1, 32, tie_embeddings=True)
    assert model.output_embedding is model.item_embedding.weight
    exported = model.export_tensors()
    np.testing.assert_array_equal(exported["output.weight"], exported["item_embedding"])
    rebuilt = HRNN.from_tensors(exported)
    assert not rebuilt.tie_embeddings
    np.testing.assert_array_equal(rebuilt.export_tensors()["output.weight"], exported["output.weight"])


def test_block_diagonal_merge_averages_the_members_logits() -> None:
    members = [randomized(HRNN(13, 2, w), seed=10 + w) for w in (4, 6, 5)]
    merged = HRNN.block_diagonal(members)
    assert merged.hidden_dimension == 15 and not merged.training
    gen = torch.Generator().manual_seed(5)
    items = torch.randint(0, 13, (7, 3), generator=gen)
    types = torch.tensor([[0, 1, -1]] * 7)
    time = torch.rand(7, 3, 2, generator=gen) * 3
    reset = torch.zeros(7, 3, dtype=torch.bool)
    reset[4, 1] = True
    query = torch.rand(3, 2, generator=gen) * 3
    with torch.no_grad():
        states, last = merged.run(items, types, time, torch.zeros(3, 15), reset)
        logits = merged.logits(merged.read_out(last, query))
        parts, member_logits = [], []
        for m in members:
            s, last_m = m.run(items, types, time, torch.zeros(3, m.hidden_dimension), reset)
            parts.append(s)
            member_logits.append(m.logits(m.read_out(last_m, query)))
    # The merged state is the members' states side by side; its logits are their mean.
    torch.testing.assert_close(states, torch.cat(parts, dim=-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, torch.stack(member_logits).mean(0), rtol=1e-5, atol=1e-5)
    # Off-diagonal blocks are exactly zero: member 0's gates never read member 1's coordinates.
    assert torch.all(merged.gru.weight_hh[:4, 4:] == 0)
    assert torch.all(merged.discount.weight[:4, 4:15] == 0)
