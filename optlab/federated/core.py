r"""The shared simulation of federated clients: seeding, sampling, partitions, aggregation, the ledger.

``N`` clients hold data or objectives as stacked arrays (leading axis = client).  A round of
:func:`run_rounds`: sample clients, broadcast the state, run the *client update* of all sampled
clients at once, *aggregate* their messages (sorted by client id), count in a :class:`Ledger`.
Both are plain functions that a real engine (Flower) can run unchanged: ``client_update(view,
data, ids, rnd, seed) -> (messages, n_evals)`` is pure, its randomness from :func:`client_rng`
``(seed, rnd, client)`` only (a batch and one client at a time agree); ``aggregate(state,
messages, weights, rnd) -> (state, n_evals)``.

Book: chapters/federated/fzoos.ipynb
"""
from __future__ import annotations

import numbers

import numpy as np

from ..core import Trace, as_rng
from ..validate import check_array, check_callable, check_int, check_real, describe

__all__ = ["BYTES_PER_NUMBER", "as_seed", "client_rng", "sample_clients", "dirichlet_partition",
           "label_counts", "stack_clients", "take_clients", "stack_messages", "n_numbers",
           "weighted_mean", "mean_aggregate", "Ledger", "run_rounds"]

#: A float64 travels as 8 bytes.
BYTES_PER_NUMBER = 8


def as_seed(rng=None) -> int:
    """An int seed from ``rng`` (an int is kept; a Generator or None draws one), so clients can re-seed."""
    gen = as_rng(rng)  # validates rng
    return int(rng) if isinstance(rng, numbers.Integral) else int(gen.integers(2**62))


def client_rng(seed: int, rnd: int, client: int) -> np.random.Generator:
    r"""The generator of client ``client`` in round ``rnd``: ``SeedSequence([seed, rnd, client])``.

    >>> client_rng(0, 3, 1).random() == client_rng(0, 3, 1).random() != client_rng(0, 3, 2).random()
    True
    """
    key = [check_int(seed, "seed", low=0), check_int(rnd, "rnd", low=0), check_int(client, "client", low=0)]
    return np.random.default_rng(np.random.SeedSequence(key))


def sample_clients(n_clients: int, n_sampled: int, seed: int, rnd: int) -> np.ndarray:
    r"""``n_sampled`` distinct clients of ``n_clients``, uniformly, sorted; seeded by ``(seed, rnd)`` alone.

    >>> sample_clients(10, 3, seed=0, rnd=0).tolist() == sample_clients(10, 3, seed=0, rnd=0).tolist()
    True
    """
    n = check_int(n_clients, "n_clients", low=1)
    k = check_int(n_sampled, "n_sampled", low=1, high=n)
    key = np.random.SeedSequence([check_int(seed, "seed", low=0), check_int(rnd, "rnd", low=0)], spawn_key=(1,))
    return np.sort(np.random.default_rng(key).choice(n, size=k, replace=False))


def _labels(labels) -> np.ndarray:
    y = np.asarray(labels)  # class labels 0..C-1
    if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"labels must be a non-empty 1-D array of ints >= 0, got {describe(labels)}")
    return y


def dirichlet_partition(labels, n_clients: int, alpha: float, *, min_size: int = 1, rng=None, max_tries: int = 100):
    r"""Split a labelled dataset over clients with Dirichlet label skew.

    For each class ``c``, ``p_c ~ Dirichlet(alpha 1_N)`` splits its shuffled indices over the ``N``
    clients (small ``alpha``: few classes per client; large: the global mix).  Draws again, up to
    ``max_tries`` times, until every client holds ``min_size`` samples.

    Returns ``N`` sorted, disjoint index arrays covering ``range(len(labels))``.  The partition of
    Hsu, Qi and Brown (2019), arXiv 1909.06335.

    >>> parts = dirichlet_partition(np.repeat([0, 1], 50), 4, alpha=0.5, rng=0)
    >>> sum(len(p) for p in parts), len(parts)
    (100, 4)
    """
    y = _labels(labels)
    n = check_int(n_clients, "n_clients", low=1)
    a = check_real(alpha, "alpha", low=0.0, low_open=True)
    m = check_int(min_size, "min_size", low=0, high=len(y) // n)
    gen = as_rng(rng)
    for _ in range(check_int(max_tries, "max_tries", low=1)):
        owner = np.empty(len(y), dtype=int)
        for c in np.unique(y):  # one Dirichlet draw per class
            idx = gen.permutation(np.flatnonzero(y == c))
            cuts = (np.cumsum(gen.dirichlet(np.full(n, a)))[:-1] * len(idx)).astype(int)
            owner[idx] = np.repeat(np.arange(n), np.diff(np.r_[0, cuts, len(idx)]))
        if np.bincount(owner, minlength=n).min() >= m:
            return [np.flatnonzero(owner == i) for i in range(n)]
    raise ValueError(f"min_size={m} not reached in max_tries draws: raise alpha or lower min_size")


def label_counts(labels, parts, n_classes=None) -> np.ndarray:
    """The ``(N, C)`` table of how many samples of each class each client holds."""
    y = _labels(labels)
    c = int(y.max()) + 1 if n_classes is None else check_int(n_classes, "n_classes", low=int(y.max()) + 1)
    owner = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
    flat = np.concatenate([np.asarray(p, dtype=int) for p in parts])
    return np.bincount(owner * c + y[flat], minlength=len(parts) * c).reshape(len(parts), c)


def stack_clients(parts, *arrays):
    r"""Ragged client datasets as padded stacked arrays ``(N, m_max, ...)`` plus a ``(N, m_max)`` mask.

    >>> X, mask = stack_clients([np.array([0, 2]), np.array([1])], np.arange(3.0))
    >>> X.tolist(), mask.tolist()
    ([[0.0, 2.0], [1.0, 0.0]], [[True, True], [True, False]])
    """
    mask = np.arange(max(map(len, parts))) < np.array([len(p) for p in parts])[:, None]
    idx = np.zeros(mask.shape, dtype=int)
    idx[mask] = np.concatenate([np.asarray(p, dtype=int) for p in parts])
    out = [np.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a[idx], 0) for a in map(np.asarray, arrays)]
    return (*out, mask)


def take_clients(data, ids):
    """The clients ``ids`` of stacked data (an array or a dict of arrays, leading axis = clients)."""
    return {k: v[ids] for k, v in data.items()} if isinstance(data, dict) else data[ids]


def stack_messages(ids, messages):
    """Messages of single clients (dicts of arrays, any order) stacked in increasing client id."""
    order = np.argsort(ids, kind="stable")
    return np.asarray(ids)[order], {k: np.stack([messages[i][k] for i in order]) for k in messages[0]}


def n_numbers(tree) -> int:
    """How many numbers an array, or a dict/list/tuple of arrays, holds (what travels)."""
    tree = list(tree.values()) if isinstance(tree, dict) else tree
    return sum(map(n_numbers, tree)) if isinstance(tree, (list, tuple)) else int(np.size(tree))


def weighted_mean(values, weights) -> np.ndarray:
    r"""``sum_i w_i v_i / sum_i w_i`` over the leading axis (clients).

    >>> weighted_mean(np.array([[0.0], [3.0]]), [1.0, 2.0]).tolist()
    [2.0]
    """
    v = np.asarray(values, dtype=float)
    w = check_array(weights, "weights", shape=(len(v),))
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be >= 0 with a positive sum")
    return np.tensordot(w / w.sum(), v, axes=1)


def mean_aggregate(state, messages, weights, rnd):
    """FedAvg's server: the new state is the weighted mean of the clients' ``messages["x"]``."""
    return weighted_mean(messages["x"], weights), {}


class Ledger:
    r"""Communication counts: rounds, and numbers (bytes at 8 per float64) uploaded and downloaded.

    >>> led = Ledger(); led.record(up=10, down=20); led.bytes_up, led.bytes_down, led.rounds
    (80, 160, 1)
    """

    def __init__(self):
        self.rounds, self.numbers_up, self.numbers_down = 0, 0, 0  # numbers, not bytes

    def record(self, up: int, down: int) -> None:
        """One round that moved ``up`` numbers to the server and ``down`` numbers to the clients."""
        self.rounds += 1
        self.numbers_up += check_int(up, "up", low=0)
        self.numbers_down += check_int(down, "down", low=0)

    bytes_up = property(lambda self: BYTES_PER_NUMBER * self.numbers_up)
    bytes_down = property(lambda self: BYTES_PER_NUMBER * self.numbers_down)

    def as_dict(self) -> dict:  # noqa: D102
        return {"rounds": self.rounds, "bytes_up": self.bytes_up, "bytes_down": self.bytes_down}


def run_rounds(client_update, aggregate, state0, data, *, n_rounds: int, weights=None, n_sampled=None,
               client_view=None, f=None, rng=None, callback=None, method: str = "federated"):
    r"""The round loop: sample, broadcast, update the clients (one vectorized call), aggregate, count.

    Parameters
    ----------
    client_update : callable
        ``(view, data, ids, rnd, seed) -> (messages, n_evals)``: ``messages`` an array or dict of
        arrays with leading axis ``len(ids)``, ``n_evals`` the oracle calls, e.g. ``{"grad": 10}``.
    aggregate : callable
        ``(state, messages, weights, rnd) -> (state, n_evals)``, messages sorted by id.
    state0 : ndarray or dict of ndarray
        The server's initial state (not mutated).
    data : ndarray or dict of ndarray
        The clients' data or objective parameters, leading axis ``N``.
    n_rounds : int
    weights : array of shape (N,) or None
        Aggregation weights (default equal), e.g. the clients' sample counts.
    n_sampled : int or None
        Clients per round (default all ``N``), drawn by :func:`sample_clients`.
    client_view, f : callable or None
        ``state -> view`` (what is broadcast, default all of it); ``state -> float`` (logged only).
    rng : int, Generator or None
        Seed of the sampler and of every client (via :func:`as_seed`).

    Returns
    -------
    Result
        ``x`` the final state; history columns ``t`` (round), ``f``, ``n_evals``, ``bytes_up``,
        ``bytes_down``; extras ``ledger`` (a :class:`Ledger`) and ``seed``.

    Examples
    --------
    FedAvg on two clients with local least squares ``f_i(x) = |x - b_i|^2 / 2``:

    >>> def client_update(x, b, ids, rnd, seed):
    ...     for _ in range(5):                     # 5 local gradient steps, all clients at once
    ...         x = x - 0.1 * (x - b)
    ...     return {"x": x}, {"grad": 5 * len(ids)}
    >>> b = np.array([[0.0, 0.0], [2.0, 4.0]])
    >>> res = run_rounds(client_update, mean_aggregate, np.zeros(2), b, n_rounds=30, rng=0)
    >>> np.round(res.x, 6).tolist(), res.n_evals, res.ledger.as_dict()
    ([1.0, 2.0], {'grad': 300}, {'rounds': 30, 'bytes_up': 960, 'bytes_down': 960})
    """
    check_callable(client_update, "client_update", signature="(view, data, ids, rnd, seed)")
    check_callable(aggregate, "aggregate", signature="(state, messages, weights, rnd)")
    view_of = check_callable(client_view, "client_view", optional=True) or (lambda s: s)
    check_callable(f, "f", optional=True, signature="state -> float")
    sizes = {np.shape(v)[:1] for v in (data.values() if isinstance(data, dict) else [data])}
    if len(sizes) != 1 or sizes == {()} or sizes == {(0,)}:
        raise ValueError(f"data must be an array or dict of arrays with one leading client axis, got {sizes}")
    (n,), T = sizes.pop(), check_int(n_rounds, "n_rounds", low=1)  # n clients, T rounds
    w = np.ones(n) if weights is None else check_array(weights, "weights", shape=(n,))
    if np.any(w <= 0):
        raise ValueError("weights must be > 0")
    k = n if n_sampled is None else check_int(n_sampled, "n_sampled", low=1, high=n)
    seed = as_seed(rng)
    state = {key: check_array(v, f"state0[{key!r}]") for key, v in state0.items()} \
        if isinstance(state0, dict) else check_array(state0, "state0")
    tr, ledger = Trace(method, {"n_rounds": T, "n_sampled": k, "n_clients": n}, callback), Ledger()
    log = lambda s: float(f(s)) if f is not None else np.nan  # noqa: E731
    stopped = tr.log(0, f=log(state), bytes_up=0, bytes_down=0)  # a callback may stop before the first round
    for rnd in range(0 if stopped else T):
        ids = sample_clients(n, k, seed, rnd)
        messages, evals = client_update(view := view_of(state), take_clients(data, ids), ids, rnd, seed)
        if any(np.shape(m)[:1] != (k,) for m in (messages.values() if isinstance(messages, dict) else [messages])):
            raise ValueError(f"client_update must return messages with a leading axis of {k} clients")
        ledger.record(up=n_numbers(messages), down=k * n_numbers(view))
        state, server_evals = aggregate(state, messages, w[ids], rnd)
        for name, cnt in [*evals.items(), *server_evals.items()]:
            tr.count(name, cnt)
        if tr.diverged(state, rnd + 1) or tr.log(rnd + 1, f=log(state), bytes_up=ledger.bytes_up,
                                                  bytes_down=ledger.bytes_down):
            break
    return tr.result(state, tr.history.last("f"), n_iters=ledger.rounds, ledger=ledger, seed=seed)
