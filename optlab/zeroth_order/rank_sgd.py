r"""ZO-RankSGD: descent from a ranking oracle, which orders points but never reveals a value.

An :math:`(m, k)`-ranking oracle takes m points and returns the indices of the k best
(smallest f), best first (:func:`ranking_oracle`).  ZO-RankSGD ranks m Gaussian probes
:math:`x + \mu\xi_a` of the iterate, reads every comparison the answer implies (the pairs
of a directed acyclic graph, :func:`dag_pairs`) and steps along :math:`-g`, the mean of
:math:`\xi_j - \xi_i` over the pairs where i beat j (:func:`rank_direction`).  Only ranks
enter, so the iterates on f and on any strictly increasing transform of f are the same.
:func:`zo_rank_sgd` runs it with a step size (a number or a schedule) or with the official
code's rank-based line search; :func:`zo_sgd` is the value-based baseline at the same
number of queries, built on :mod:`optlab.zeroth_order.estimators`.

References
----------
Z. Tang, D. Rybin and T.-H. Chang, ICLR 2024, arXiv:2303.03751 (``tang2024zeroth``).

Book: chapters/zeroth_order/rank_sgd.ipynb
"""
from __future__ import annotations

import math

import numpy as np

from ..core import Trace, as_batch, as_rng, as_schedule, check_oracle, check_rowwise, step_at
from ..validate import check_array, check_bool, check_callable, check_int, check_positive, check_real, describe
from . import estimators

__all__ = ["ranking_oracle", "n_pairs", "dag_pairs", "rank_coefficients", "rank_direction",
           "line_search_step", "zo_rank_sgd", "zo_sgd", "mean_coefficient",
           "effective_directions"]


def n_pairs(m: int, k: int) -> int:
    r"""The number of comparisons an :math:`(m, k)` ranking implies: :math:`k(k-1)/2 + k(m-k)`.

    >>> n_pairs(10, 1), n_pairs(10, 10), n_pairs(2, 1)
    (9, 45, 1)
    """
    m = check_int(m, "m", low=2)
    k = check_int(k, "k", low=1, high=m)
    return k * (k - 1) // 2 + k * (m - k)


def ranking_oracle(f):
    r"""The :math:`(m, k)`-ranking oracle of f: ``rank(Y, k)``, the k best rows of Y, best first.

    ``Y`` is one candidate set ``(m, d)`` or one per replica ``(R, m, d)``; ``f`` maps
    ``(n, d)`` to n values.  The oracle returns only the indices of the k smallest values,
    ``(k,)`` or ``(R, k)`` (ties go to the lower index, NaN ranks last).

    >>> rank = ranking_oracle(lambda Y: np.sum(Y ** 2, axis=-1))
    >>> rank(np.array([[2.0], [0.5], [-1.0], [0.1]]), 2).tolist()
    [3, 1]
    """
    check_callable(f, "f", signature="(n, d) -> (n,)")

    def rank(Y, k):
        Y = check_array(Y, "Y", ndim=(2, 3))
        k = check_int(k, "k", low=1, high=Y.shape[-2])
        values = estimators.evaluate(f, Y.reshape(-1, Y.shape[-1])).reshape(Y.shape[:-1])
        return np.argsort(values, axis=-1, kind="stable")[..., :k]

    return rank


def dag_pairs(order, m: int) -> list:
    r"""The comparisons a ranking implies, as pairs ``(better, worse)``: the edges of its DAG.

    Every ordered pair inside the top k, and every top-k item against every unranked one.

    >>> dag_pairs([2, 0], 4)
    [(2, 0), (2, 1), (2, 3), (0, 1), (0, 3)]
    """
    order = [int(i) for i in order]
    rest = [j for j in range(check_int(m, "m", low=2)) if j not in order]
    return [(i, j) for r, i in enumerate(order) for j in order[r + 1:] + rest]


def _order(order, m, shape=None, name="rank"):
    """Indices that a ranking returned, checked: (..., k) distinct ints in [0, m), k <= m."""
    out = np.asarray(order)
    bad = out.ndim == 0 or not 1 <= out.shape[-1] <= m or (shape and out.shape != shape)
    bad = bad or out.dtype.kind not in "iu" or not 0 <= out.min() <= out.max() < m
    if not bad and out.shape[-1] > 1:
        ranked = np.sort(out, axis=-1)
        bad = bool((ranked[..., 1:] == ranked[..., :-1]).any())
    if bad:
        want = "(..., k)" if shape is None else str(shape)
        what = "must return" if name == "rank" else "must be"
        raise ValueError(f"{name} {what} {want} distinct int indices in [0, {m}), "
                         f"got {describe(out) if out.ndim else out!r}")
    return out


def rank_coefficients(order, m: int) -> np.ndarray:
    r"""The weight :math:`c_a` of each probe in :math:`g = \frac1{|E|}\sum_a c_a \xi_a`.

    Counting the pairs a point wins and loses: rank :math:`r = 0, \dots, k-1` gets
    :math:`c = 2r - (m - 1)`, an unranked point :math:`c = k`.  ``order`` is ``(..., k)``,
    the result ``(..., m)``.

    >>> rank_coefficients([2, 0], 4).tolist()
    [-1.0, 2.0, -3.0, 2.0]
    """
    order = _order(order, check_int(m, "m", low=2), name="order")
    k = order.shape[-1]
    c = np.full(order.shape[:-1] + (m,), float(k))
    ranked = 2.0 * np.arange(k) - (m - 1) + np.zeros(order.shape)
    np.put_along_axis(c, order, ranked, axis=-1)
    return c


def rank_direction(xi, order) -> np.ndarray:
    r"""The rank-based direction :math:`g = \frac1{|E|}\sum_{(i \succ j) \in E} (\xi_j - \xi_i)`.

    ``xi`` has shape ``(..., m, d)``, ``order`` ``(..., k)``; batched over leading axes.

    >>> xi = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> rank_direction(xi, [2]).tolist()
    [1.5, 0.5]
    """
    xi, order = np.asarray(xi, dtype=float), np.asarray(order)
    if xi.ndim < 2 or xi.shape[:-2] != order.shape[:-1]:
        raise ValueError(f"xi must be (..., m, d) with the leading axes of order "
                         f"{order.shape}, got {xi.shape}")
    m, k = xi.shape[-2], order.shape[-1]
    c = rank_coefficients(order, m)
    return np.einsum("...m,...md->...d", c, xi) / n_pairs(m, k)


def line_search_step(rank, x, d, probe, lr, n_trials):
    r"""Rank-based line search: per row, the best of x, :math:`x - \eta 2^{-i} d` and the probe.

    ``x``, ``d``, ``probe`` are ``(R, d)``, ``i < n_trials``.  Returns the winners and which
    rows moved (x comes first, so a tie keeps it).
    """
    x, n_trials = check_array(x, "x", ndim=2), check_int(n_trials, "n_trials", low=1)
    d = check_array(d, "d", shape=x.shape)
    probe = check_array(probe, "probe", shape=x.shape)
    steps = check_real(lr, "lr", low=0.0) * 0.5 ** np.arange(n_trials)
    Y = np.concatenate([x[:, None], x[:, None] - steps[:, None] * d[:, None],
                        probe[:, None]], axis=1)
    winner = _order(rank(Y, 1), n_trials + 2, (len(x), 1))[:, 0]
    return Y[np.arange(len(x)), winner], winner != 0


def zo_rank_sgd(rank, x0, *, m: int = 10, k: int = 10, mu: float = 1e-4, lr,
                n_iters: int, line_search: bool = False, n_trials: int = 8, f=None,
                log_every: int = 1, rng=None, callback=None):
    r"""ZO-RankSGD: Gaussian probes, the best k of m ranked, a step along the ranks' direction.

    Parameters
    ----------
    rank : callable
        The :math:`(m, k)`-ranking oracle ``rank(Y, k)``: for ``Y`` of shape ``(R, n, d)``
        (one candidate set per replica), the ``(R, k)`` int indices of each set's k best
        points, best first; e.g. :func:`ranking_oracle`, or a person.
    x0 : array_like, shape (d,) or (R, d)
        The start, or one per independent replica (not modified).
    m, k : int
        Points per ranking query (``m >= 2``) and how many are ranked (``1 <= k <= m``).
    mu : float
        The probe radius :math:`\mu > 0`.
    lr : float or callable
        The step :math:`\eta_t`, a number or a schedule ``t -> float``; with
        ``line_search``, the longest trial step.
    n_iters : int
        Iterations T.
    line_search : bool
        After each estimate, rank x, :math:`x - \eta_t 2^{-i} d` (``i < n_trials``) and the
        best probe, and move to the winner; while x wins, d is the mean of the estimates
        since the last move (the variant of the paper's code).
    n_trials : int
        Trial steps of the line search.
    f : callable or None
        A row-wise function ``(R, d) -> (R,)`` to log, usually the objective (never used by
        the method, not counted).
    log_every : int
        Log every this many iterations (and the last).
    rng : None, int or numpy.random.Generator
        Draws the probes.
    callback : callable or None
        ``callback(record) -> bool`` at each logged step; True stops the run.

    Returns
    -------
    Result
        ``x``: the last iterate(s), shaped like ``x0``; ``f``: the mean of f at x (NaN
        without f).  ``n_evals["rank"]``: points ranked per replica (m per estimate,
        ``n_trials + 2`` per line search).  Extras: ``n_moves``, the iterations that moved
        x (per replica).  History columns: ``t``, ``n_evals``, ``lr``, ``moved`` (share of
        replicas) and, with f, ``f`` (mean over replicas).

    Notes
    -----
    With :math:`\xi_1, \dots, \xi_m \sim N(0, I_d)` and the oracle's answer on
    :math:`x_t + \mu\xi_a`, the DAG E holds :math:`k(k-1)/2 + k(m-k)` pairs
    :math:`i \succ j` (i ranked better) and

    .. math:: g_t = \frac1{|E|}\sum_{(i \succ j) \in E} (\xi_j - \xi_i), \qquad
              x_{t+1} = x_t - \eta_t g_t .

    For :math:`\mu \to 0`, :math:`\mathbb E g_t = c_{m,k}\nabla f(x_t)/\|\nabla f(x_t)\|`
    (:func:`mean_coefficient`): a noisy *normalized* gradient step.  Cost per iteration: m
    queries (plus ``n_trials + 2`` with the line search), :math:`O(md)` arithmetic.
    Guarantee (derived in the chapter for :math:`\mu \to 0`; the paper's theorem, which we
    could not read, covers :math:`\mu > 0`): for L-smooth f bounded below and
    :math:`\eta = \eta_0/\sqrt{dT}`, :math:`\min_{t<T}\mathbb E\|\nabla f(x_t)\| =
    O(\sqrt{d/T})`.  Differences from the paper's code: unit-scale probes (its
    ``stepsize * smoothing_para`` is our :math:`\eta`); its weights add 1 to ranked points.

    References
    ----------
    Z. Tang, D. Rybin and T.-H. Chang, Zeroth-order optimization meets human feedback:
    provable learning via ranking oracles, ICLR 2024, arXiv:2303.03751 (``tang2024zeroth``).

    Book: chapters/zeroth_order/rank_sgd.ipynb

    Examples
    --------
    >>> f = lambda X: np.sum(np.asarray(X) ** 2, axis=-1)
    >>> res = zo_rank_sgd(ranking_oracle(f), np.ones(5), m=6, k=3, lr=0.02, n_iters=200,
    ...                   f=f, rng=0)
    >>> bool(res.f < 0.1 * f(np.ones(5))), res.n_evals
    (True, {'rank': 1200})
    """
    check_callable(rank, "rank", signature="(Y, k) -> indices")
    check_callable(f, "f", optional=True)
    X, single = as_batch(x0)
    m, k = check_int(m, "m", low=2), check_int(k, "k", low=1, high=m)
    mu, n_iters = check_positive(mu, "mu"), check_int(n_iters, "n_iters", low=1)
    line_search = check_bool(line_search, "line_search")
    n_trials = check_int(n_trials, "n_trials", low=1)
    log_every = check_int(log_every, "log_every", low=1)
    schedule, rng, (R, dim) = as_schedule(lr), as_rng(rng), X.shape
    params = {"m": m, "k": k, "mu": mu, "lr": schedule, "n_iters": n_iters,
              "line_search": line_search, "n_trials": n_trials, "n_replicas": R}
    trace = Trace("zo_rank_sgd", params, callback)

    def record(t, eta, moved):
        row = {"lr": eta, "moved": float(np.mean(moved))}
        if f is not None:
            values = check_rowwise(f, X) if t == 0 else estimators.evaluate(f, X)
            row["f"] = float(np.mean(values))
        return trace.log(t, **row)

    d_acc, n_acc = np.zeros_like(X), np.zeros((R, 1))
    n_moves, n_done = np.zeros(R, int), 0
    stopped = record(0, np.nan, False)
    for t in range(0 if stopped else n_iters):
        eta = step_at(schedule, t)
        xi = rng.standard_normal((R, m, dim))
        order = _order(rank(X[:, None] + mu * xi, k), m, (R, k))
        trace.count("rank", m)
        g = rank_direction(xi, order)
        if line_search:
            d_acc, n_acc = d_acc + (g - d_acc) / (n_acc + 1), n_acc + 1
            probe = X + mu * xi[np.arange(R), order[:, 0]]
            X, moved = line_search_step(rank, X, d_acc, probe, eta, n_trials)
            trace.count("rank", n_trials + 2)
            keep = ~moved[:, None]
            d_acc, n_acc = d_acc * keep, n_acc * keep
        else:
            X, moved = X - eta * g, np.ones(R, bool)
        n_moves, n_done = n_moves + moved, t + 1
        if trace.diverged(X, n_done):
            break
        if n_done % log_every == 0 or n_done == n_iters:
            if record(n_done, eta, moved):
                break
    f_last = None
    if f is not None and trace.message is None:
        f_last = float(np.mean(estimators.evaluate(f, X)))
    return trace.result(X[0] if single else X, f_last, n_iters=n_done,
                        n_moves=int(n_moves[0]) if single else n_moves)


def zo_sgd(f, x0, *, n_dirs: int, mu: float = 1e-4, lr, n_iters: int, f_log=None,
           log_every: int = 1, rng=None, callback=None):
    r"""Value-based ZO-SGD, the baseline: Gaussian-smoothing differences, ``n_dirs + 1`` queries.

    :math:`x_{t+1} = x_t - \eta_t \hat g_t` with :math:`\hat g_t` from
    :func:`optlab.zeroth_order.estimators.gaussian_smoothing`; ``n_dirs = m - 1`` spends the
    m queries per step of ZO-RankSGD with m probes.  ``f`` maps ``(n, d)`` to n values;
    ``f_log`` (default f) is what the history logs (not counted).  Returns a ``Result`` with
    ``n_evals["f"]`` and history columns ``t``, ``n_evals``, ``lr``, ``f``.

    >>> f = lambda X: np.sum(np.asarray(X) ** 2, axis=-1)
    >>> res = zo_sgd(f, np.ones(5), n_dirs=5, lr=0.1, n_iters=100, rng=0)
    >>> bool(res.f < 1e-3), res.n_evals
    (True, {'f': 600})
    """
    check_callable(f, "f", signature="(n, d) -> (n,)")
    check_callable(f_log, "f_log", optional=True)
    x = check_array(x0, "x0", ndim=1)
    n_dirs, mu = check_int(n_dirs, "n_dirs", low=1), check_positive(mu, "mu")
    n_iters = check_int(n_iters, "n_iters", low=1)
    log_every = check_int(log_every, "log_every", low=1)
    schedule, rng, f_log = as_schedule(lr), as_rng(rng), f if f_log is None else f_log
    params = {"n_dirs": n_dirs, "mu": mu, "lr": schedule, "n_iters": n_iters}
    trace = Trace("zo_sgd", params, callback)

    def record(t, eta):
        return trace.log(t, lr=eta, f=float(check_oracle(f_log, "f_log", x, shape=())))

    n_done = 0
    stopped = record(0, np.nan)
    for t in range(0 if stopped else n_iters):
        eta = step_at(schedule, t)
        g, n_queries = estimators.gaussian_smoothing(f, x, mu=mu, n_dirs=n_dirs, rng=rng)
        trace.count("f", n_queries)
        x, n_done = x - eta * g, t + 1
        if trace.diverged(x, n_done):
            break
        if (n_done % log_every == 0 or n_done == n_iters) and record(n_done, eta):
            break
    return trace.result(x, float(check_oracle(f_log, "f_log", x, shape=())), n_iters=n_done)


def mean_coefficient(m: int, k: int) -> float:
    r"""The :math:`c_{m,k}` of :math:`\mathbb E g = c_{m,k}\, \nabla f/\|\nabla f\|` (limit :math:`\mu \to 0`).

    The probes' components :math:`z_a` along :math:`\nabla f/\|\nabla f\|` decide the ranking,
    so :math:`c_{m,k} = \frac1{|E|}\sum_{r<k}(2r - (m-1) - k)\,\mathbb E z_{(r)}`, with
    :math:`z_{(r)}` the order statistics of m standard normals (by quadrature, with scipy's
    ``log_ndtr``).

    >>> bool(abs(mean_coefficient(2, 1) - 2 / np.sqrt(np.pi)) < 1e-9)
    True
    """
    from scipy import special

    E, z = n_pairs(m, k), np.linspace(-12.0, 12.0, 24001)  # a uniform grid: the densities vanish at
    # both ends, so the trapezoid rule is a plain sum, and it is spectrally accurate for them
    r = np.arange(k)[:, None]
    log_c = special.gammaln(m + 1) - special.gammaln(r + 1) - special.gammaln(m - r)
    log_density = (log_c + r * special.log_ndtr(z) + (m - 1 - r) * special.log_ndtr(-z)
                   - 0.5 * z ** 2 - 0.5 * math.log(2 * math.pi))
    means = (z * np.exp(log_density)).sum(axis=1) * (z[1] - z[0])  # E z_(r), r-th smallest of m
    return float((2 * np.arange(k) - (m - 1) - k) @ means / E)


def effective_directions(m: int, k: int) -> float:
    r""":math:`\rho_{m,k} = c_{m,k}^2 |E|^2 / \sum_a c_a^2`: a step's worth in value-based directions.

    With its best step, one step of ZO-RankSGD decreases an L-smooth f by about
    :math:`\rho_{m,k}\|\nabla f\|^2/(2Ld)` for large d, as ZO-SGD with :math:`\rho` Gaussian
    directions would (derived in the chapter).

    >>> bool(abs(effective_directions(2, 1) - 2 / np.pi) < 1e-9)
    True
    """
    E, c = n_pairs(m, k), rank_coefficients(np.arange(k), m)
    return float(mean_coefficient(m, k) ** 2 * E ** 2 / np.sum(c ** 2))
