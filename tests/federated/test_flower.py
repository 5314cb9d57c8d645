"""The plain client update and aggregation of a method give the same iterates under Flower as in the round loop.

Needs Flower's own environment (``pip install -r requirements-flower.txt`` in a separate venv, README
"Federated learning on Flower"); skipped where ``flwr`` is not installed, which includes the book's environment.
Run: ``make flower`` (this file and tests/federated/test_diff2.py; Ray starts in 10-60 s on two cores).
"""
import numpy as np
import pytest

from optlab.federated import core

flwr = pytest.importorskip("flwr")
pytestmark = pytest.mark.flower


def fedavg_client(x, data, ids, rnd, seed):
    """FedAvg's client: 3 local SGD steps on f_i(x) = |A_i x - b_i|^2 / (2m), minibatches of 4 rows,
    drawn from the generator of (seed, round, client): the same draws in a batch and one client at a time."""
    A, b = data["A"], data["b"]
    x = np.broadcast_to(x, (len(ids), x.size)).copy()
    for _ in range(3):
        rows = np.stack([core.client_rng(seed, rnd, int(i)).integers(0, A.shape[1], size=4) for i in ids])
        Ab = np.take_along_axis(A, rows[:, :, None], axis=1)
        bb = np.take_along_axis(b, rows, axis=1)
        x = x - 0.05 * np.einsum("kmd,km->kd", Ab, np.einsum("kmd,kd->km", Ab, x) - bb) / 4
    return {"x": x}, {"grad": 12 * len(ids)}


def test_fedavg_on_flower_gives_the_round_loops_iterates():
    gen = np.random.default_rng(0)
    n, m, d = 6, 20, 3
    data = {"A": gen.standard_normal((n, m, d)), "b": gen.standard_normal((n, m))}
    weights = gen.uniform(1, 3, size=n)
    loss = lambda x: float(np.mean((np.einsum("nmd,d->nm", data["A"], x) - data["b"]) ** 2))  # noqa: E731
    ours = core.run_rounds(fedavg_client, core.mean_aggregate, np.zeros(d), data, n_rounds=4, weights=weights,
                           n_sampled=3, f=loss, rng=7)
    flower = pytest.importorskip("optlab.federated.flower")
    theirs = flower.run_flower(fedavg_client, core.mean_aggregate, np.zeros(d), data, n_rounds=4, weights=weights,
                               n_sampled=3, f=loss, rng=7)
    assert [c.tolist() for c in theirs["clients"]] == [core.sample_clients(n, 3, 7, r).tolist() for r in range(4)]
    np.testing.assert_allclose(theirs["state"], ours.x, rtol=1e-12, atol=0)
    np.testing.assert_allclose(theirs["f"], ours.history["f"][1:], rtol=1e-12, atol=0)
    assert not np.allclose(ours.x, 0)
