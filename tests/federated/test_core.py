"""Tests of optlab.federated.core, the shared simulation of clients: partitions, seeding, aggregation, ledger."""
import numpy as np
import pytest

from optlab.federated import core as fc
from optlab.testing import check_bad_inputs


def labels(n_per_class=200, n_classes=4):
    return np.repeat(np.arange(n_classes), n_per_class)


# --- the Dirichlet partition -------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.05, 1.0, 100.0])
def test_partition_is_a_disjoint_cover(alpha):
    y = labels()
    parts = fc.dirichlet_partition(y, 5, alpha, rng=3)
    flat = np.concatenate(parts)
    assert len(parts) == 5 and np.array_equal(np.sort(flat), np.arange(len(y)))
    assert all(np.array_equal(p, np.sort(p)) and len(p) >= 1 for p in parts)
    counts = fc.label_counts(y, parts)
    assert counts.shape == (5, 4) and np.array_equal(counts.sum(axis=0), np.bincount(y))
    assert np.array_equal(counts.sum(axis=1), [len(p) for p in parts])


def test_partition_label_proportions_follow_alpha():
    y = labels(1000)
    mix = lambda a: fc.label_counts(y, fc.dirichlet_partition(y, 5, a, min_size=0, rng=0)) / 1000  # noqa: E731
    np.testing.assert_allclose(mix(1e5), 0.2, atol=0.02)  # large alpha: each client gets 1/N of each class
    skew = mix(1e-3)
    assert np.all(skew.max(axis=0) > 0.99), "tiny alpha: each class lives on (almost) one client"


def test_partition_split_points_equal_a_direct_computation():
    y = labels(100, 2)
    parts = fc.dirichlet_partition(y, 3, 0.5, min_size=0, rng=11)
    gen = np.random.default_rng(11)
    expected = np.zeros((3, 2), dtype=int)
    for c in range(2):
        gen.permutation(100)
        p = gen.dirichlet(np.full(3, 0.5))
        edges = np.r_[0, (np.cumsum(p)[:-1] * 100).astype(int), 100]
        expected[:, c] = np.diff(edges)
    np.testing.assert_array_equal(fc.label_counts(y, parts), expected)


def test_partition_min_size_and_stack_clients():
    y = labels(30, 3)
    parts = fc.dirichlet_partition(y, 4, 0.3, min_size=5, rng=1)
    assert min(map(len, parts)) >= 5
    X = np.arange(len(y), dtype=float)[:, None] * [1.0, -1.0]
    Xs, ys, mask = fc.stack_clients(parts, X, y)
    assert Xs.shape == (4, max(map(len, parts)), 2) and mask.sum() == len(y)
    for i, p in enumerate(parts):
        np.testing.assert_array_equal(Xs[i][mask[i]], X[p])
        np.testing.assert_array_equal(ys[i][mask[i]], y[p])
        assert np.all(Xs[i][~mask[i]] == 0)
    with pytest.raises(ValueError, match="min_size"):
        fc.dirichlet_partition(labels(5, 2), 3, 1e-3, min_size=3, rng=0, max_tries=2)


# --- seeding and sampling ----------------------------------------------------------------------

def test_client_seeding_is_a_function_of_seed_round_and_client():
    draw = lambda *key: fc.client_rng(*key).standard_normal(4)  # noqa: E731
    np.testing.assert_array_equal(draw(5, 2, 3), draw(5, 2, 3))
    others = [draw(6, 2, 3), draw(5, 3, 3), draw(5, 2, 4)]
    assert all(not np.allclose(draw(5, 2, 3), o) for o in others)
    np.testing.assert_array_equal(fc.client_rng(5, 2, 3).random(3),
                                  np.random.default_rng(np.random.SeedSequence([5, 2, 3])).random(3))


def test_sampler_is_sorted_distinct_uniform_and_deterministic():
    ids = fc.sample_clients(10, 4, seed=1, rnd=7)
    assert np.array_equal(ids, np.sort(ids)) and len(set(ids.tolist())) == 4
    assert np.array_equal(ids, fc.sample_clients(10, 4, seed=1, rnd=7))
    counts = np.bincount(np.concatenate([fc.sample_clients(10, 4, 0, r) for r in range(2000)]), minlength=10)
    np.testing.assert_allclose(counts / 2000, 0.4, atol=0.04)
    assert np.array_equal(fc.sample_clients(6, 6, 0, 0), np.arange(6))


def test_as_seed():
    assert fc.as_seed(12) == 12
    assert fc.as_seed(np.random.default_rng(0)) == fc.as_seed(np.random.default_rng(0))


# --- aggregation and the round loop ------------------------------------------------------------

def test_weighted_mean_against_a_direct_computation():
    rng = np.random.default_rng(0)
    V, w = rng.standard_normal((5, 3, 2)), rng.uniform(0.1, 2.0, 5)
    direct = sum(w[i] * V[i] for i in range(5)) / w.sum()
    np.testing.assert_allclose(fc.weighted_mean(V, w), direct, rtol=1e-14)
    state, evals = fc.mean_aggregate(None, {"x": V}, w, 0)
    np.testing.assert_allclose(state, direct, rtol=1e-14)
    assert evals == {}


def local_sgd(x, data, ids, rnd, seed):
    """Noisy local GD on f_i(x) = |x - b_i|^2 / 2; noise from the clients' own generators."""
    noise = np.stack([fc.client_rng(seed, rnd, i).standard_normal(x.shape) for i in ids])
    xs = np.broadcast_to(x, noise.shape)
    for _ in range(3):
        xs = xs - 0.2 * (xs - data["b"] + 0.1 * noise)
    return {"x": xs}, {"grad": 3 * len(ids)}


def test_round_loop_fedavg_ledger_and_counts():
    b = np.arange(12.0).reshape(6, 2)
    w = np.arange(1.0, 7.0)
    res = fc.run_rounds(local_sgd, fc.mean_aggregate, np.zeros(2), {"b": b}, n_rounds=8, weights=w,
                        n_sampled=3, f=lambda x: float(x.sum()), rng=4)
    led = res.ledger
    assert led.rounds == res.n_iters == 8 and len(res.history) == 9
    assert led.numbers_up == led.numbers_down == 8 * 3 * 2
    assert (led.bytes_up, led.bytes_down) == (8 * 48, 8 * 48) and res.history["bytes_up"][-1] == 8 * 48
    assert res.n_evals == {"grad": 8 * 3 * 3} and res.history["n_evals"][-1] == 72
    # the same iterates, computed client by client (as a real engine would) and aggregated by id
    x = np.zeros(2)
    for rnd in range(8):
        ids = fc.sample_clients(6, 3, 4, rnd)
        msgs = [local_sgd(x, {"b": b[[i]]}, np.array([i]), rnd, 4)[0] for i in ids[::-1]]
        msgs = [{"x": m["x"][0]} for m in msgs]
        sorted_ids, stacked = fc.stack_messages(ids[::-1], msgs)
        assert np.array_equal(sorted_ids, ids)
        x = fc.weighted_mean(stacked["x"], w[sorted_ids])
    np.testing.assert_allclose(res.x, x, rtol=1e-12)
    assert res.f == pytest.approx(float(x.sum()))


def test_round_loop_client_view_and_dict_state():
    def update(view, data, ids, rnd, seed):
        assert set(view) == {"x"}
        return view["x"] + data, {"f": len(ids)}

    def aggregate(state, messages, weights, rnd):
        return {"x": fc.weighted_mean(messages, weights), "server_only": state["server_only"] + 1}, {"f": 1}

    state0 = {"x": np.zeros(3), "server_only": np.zeros(1)}
    res = fc.run_rounds(update, aggregate, state0, np.ones((4, 3)), n_rounds=5,
                        client_view=lambda s: {"x": s["x"]}, rng=0)
    np.testing.assert_allclose(res.x["x"], 5.0)
    assert res.x["server_only"].tolist() == [5.0]
    assert res.n_evals == {"f": 5 * 4 + 5} and res.ledger.numbers_down == 5 * 4 * 3
    assert state0["x"].tolist() == [0.0, 0.0, 0.0], "state0 not mutated"
    stopped = fc.run_rounds(update, aggregate, state0, np.ones((4, 3)), n_rounds=5,
                            client_view=lambda s: {"x": s["x"]}, callback=lambda rec: rec["t"] >= 2)
    assert stopped.n_iters == 2 and stopped.message == "stopped by callback"


def test_round_loop_stops_on_divergence():
    def blow_up(x, data, ids, rnd, seed):
        return {"x": np.full((len(ids), 1), np.inf)}, {}

    res = fc.run_rounds(blow_up, fc.mean_aggregate, np.zeros(1), np.zeros((2, 1)), n_rounds=3, rng=0)
    assert "non-finite" in res.message and res.n_iters == 1


def test_ledger():
    led = fc.Ledger()
    led.record(up=3, down=5)
    led.record(up=1, down=0)
    assert led.as_dict() == {"rounds": 2, "bytes_up": 32, "bytes_down": 40}
    assert fc.n_numbers({"a": np.ones((2, 3)), "b": [np.ones(2), 1.0]}) == 9


# --- bad input ---------------------------------------------------------------------------------

UPD = lambda x, d, ids, r, s: ({"x": np.broadcast_to(x, (len(ids),) + x.shape)}, {})  # noqa: E731
BAD_INPUT = {
    "run_rounds": (fc.run_rounds, dict(client_update=UPD, aggregate=fc.mean_aggregate, state0=np.zeros(2),
                                       data=np.zeros((3, 2)), n_rounds=2, weights=np.ones(3), n_sampled=2, rng=0),
                   {"client_update": [3, (lambda x, d, ids, r, s: ({"x": np.zeros((1, 2))}, {}), "client_update")],
                    "aggregate": [None], "state0": [[np.nan, 0.0], []], "data": [np.zeros(()), {"a": np.zeros((3, 1)),
                                                                                           "b": np.zeros((2, 1))}],
                    "n_rounds": [0, 1.5], "weights": [np.ones(2), [1.0, 0.0, 1.0], [1.0, np.nan, 1.0]],
                    "n_sampled": [0, 4], "rng": [-1, "seed"], "client_view": [3], "f": [3], "callback": [3]},
                   ("state0", "data")),
    "dirichlet_partition": (fc.dirichlet_partition, dict(labels=labels(10, 2), n_clients=3, alpha=0.5, rng=0),
                            {"labels": [[0.5, 1.5], np.zeros((2, 2), dtype=int), [-1, 0], []],
                             "n_clients": [0, 2.5], "alpha": [0.0, -1.0, np.nan], "rng": [-1]}, ("labels",)),
    "dirichlet_partition/min_size": (fc.dirichlet_partition, dict(labels=labels(10, 2), n_clients=3, alpha=0.5,
                                                                  min_size=1, max_tries=5, rng=0),
                                     {"min_size": [-1, 7], "max_tries": [0]}, ("labels", "n_clients", "alpha")),
    "label_counts": (fc.label_counts, dict(labels=[0, 1, 1], parts=[[0], [1, 2]], n_classes=3),
                     {"labels": [[0.5, 1.0, 1.0]], "n_classes": [1]}, ("labels", "parts")),
    "client_rng": (fc.client_rng, dict(seed=0, rnd=0, client=0), {"seed": [-1, 1.5], "rnd": [-1], "client": [-2]},
                   ()),
    "sample_clients": (fc.sample_clients, dict(n_clients=4, n_sampled=2, seed=0, rnd=0),
                       {"n_clients": [0], "n_sampled": [0, 5], "seed": [-1], "rnd": [1.5]}, ()),
    "weighted_mean": (fc.weighted_mean, dict(values=np.ones((3, 2)), weights=np.ones(3)),
                      {"weights": [np.ones(2), [-1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]}, ("values",)),
    "as_seed": (fc.as_seed, dict(rng=0), {"rng": [-1, 1.5, True]}, ()),
    "ledger": (lambda up, down: fc.Ledger().record(up, down), dict(up=1, down=1), {"up": [-1], "down": [0.5]}, ()),
}


@pytest.mark.parametrize("row", BAD_INPUT)
def test_bad_input_gives_clear_errors(row):
    fn, good, bad, skip = BAD_INPUT[row]
    assert check_bad_inputs(fn, good, bad, skip_generic=skip) > 0
