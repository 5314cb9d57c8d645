r"""TOPO: learning a DAG by local search over topological orders, guided by acyclicity.

The score is the least-squares score of a linear SEM (optionally with an l1 penalty),
minimized over weighted adjacency matrices that form a DAG.  For a fixed topological
order :math:`\pi` the problem is one regression per node on its predecessors
(:func:`fit_order`); :func:`topo` swaps pairs of nodes in the order, the candidate pairs
being the forbidden pairs with the smallest entries of the gradient of the log-det
acyclicity function with respect to :math:`|W|` (:func:`candidate_pairs`).  NOTEARS, the
continuous method TOPO improves on, is :mod:`optlab.constrained.notears`; the data and
the metrics are :mod:`optlab.constrained.dag_sem`.

References
----------
C. Deng, K. Bello, B. Aragam and P. Ravikumar, ICML 2023, arXiv:2305.17277
(``deng2023optimizing``); see :func:`topo`.

Book: chapters/constrained/dag_learning.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Trace, as_rng
from ..validate import check_array, check_int, check_real
from .dag_sem import gram

__all__ = ["grad_h_abs", "fit_order", "candidate_pairs", "topo"]


def _square(W, name):
    """A square float array argument."""
    W = check_array(W, name, ndim=2)
    if W.shape[0] != W.shape[1] or len(W) < 2:
        raise ValueError(f"{name} must be a square d x d array with d >= 2, got {W.shape}")
    return W


def grad_h_abs(W) -> np.ndarray:
    r"""The gradient :math:`(I - |W|)^{-\top}` of :math:`-\log\det(I - A)` at :math:`A = |W|`.

    For a DAG, :math:`(I - |W|)^{-1} = \sum_{k<d} |W|^k`; this sum, computed by repeated
    squaring, is *exactly* zero where no directed path exists: entry (i, j) of the
    result is zero exactly when the graph of ``W`` (a DAG) has no path from j to i.

    >>> grad_h_abs(np.array([[0.0, 0.5], [0.0, 0.0]])).tolist()
    [[1.0, 0.0], [0.5, 1.0]]
    """
    return _path_sums(_square(W, "W"))


def _path_sums(W):
    r""":math:`(\sum_{k<d} |W|^k)^\top` by repeated squaring."""
    A = np.abs(W)
    total, power = np.eye(len(A)) + A, A @ A
    for _ in range(int(np.ceil(np.log2(len(A))))):
        total = total + power @ total    # sum_{k<m} A^k (I + A^m) = sum_{k<2m} A^k
        power = power @ power
    return total.T


def _fit_column(S, j, parents, lam, max_sweeps=10_000):
    """Regress node j on ``parents``: OLS (``lam = 0``) or the Lasso.

    The Lasso by coordinate descent; every few sweeps the support and signs found are
    tried exactly (a linear solve on the support, accepted if it satisfies the Lasso's
    optimality conditions), so the answer is exact up to rounding.
    """
    A, b = S[np.ix_(parents, parents)], S[parents, j]
    if lam == 0 or parents.size == 0:
        w = np.linalg.solve(A, b) if parents.size else np.zeros(0)
        return w, 0.5 * (S[j, j] - b @ w)
    w = np.zeros(parents.size)
    for sweep in range(max_sweeps):
        for k in range(parents.size):
            rho = b[k] - A[k] @ w + A[k, k] * w[k]
            w[k] = np.sign(rho) * max(abs(rho) - lam, 0.0) / A[k, k]
        if sweep % 5 == 4 and _polish(A, b, lam, w):
            break
    return w, 0.5 * (S[j, j] - 2 * b @ w + w @ A @ w) + lam * np.abs(w).sum()


def _polish(A, b, lam, w, tol=1e-12):
    """Solve the Lasso exactly on the support and signs of ``w``; True (w updated) if optimal."""
    on = w != 0
    sign = np.sign(w[on])
    exact = np.zeros_like(w)
    if on.any():
        exact[on] = np.linalg.solve(A[np.ix_(on, on)], b[on] - lam * sign)
    residual = b - A @ exact                     # optimality: |residual_k| <= lam off the support
    ok = np.all(np.sign(exact[on]) == sign) and np.all(np.abs(residual[~on]) <= lam + tol)
    if ok:
        w[:] = exact
    return bool(ok)


def _column(S, j, predecessors, lam, cache):
    """Node j regressed on its predecessors, through the cache: ``(parents, w, score)``."""
    parents = np.sort(np.asarray(predecessors, dtype=int))
    key = (j, parents.tobytes())
    if key not in cache:
        cache[key] = _fit_column(S, j, parents, lam)
    return (parents, *cache[key])


def fit_order(S, order, lam: float = 0.0, cache=None):
    r"""The inner problem :math:`W^*(\pi) = \arg\min_{W \in \mathcal W(\pi)} Q(W) + \lambda\|W\|_1`.

    One regression per node on its predecessors in ``order``: OLS for ``lam = 0``,
    the Lasso otherwise.  Returns ``W`` and the per-node scores (their sum is the
    score).  ``cache`` (a dict) keeps the regressions done, so none is solved twice.

    >>> W, cols = fit_order(np.array([[1.0, 2.0], [2.0, 5.0]]), [0, 1])
    >>> W.tolist(), cols.tolist()
    ([[0.0, 2.0], [0.0, 0.0]], [0.5, 0.5])
    """
    S = _square(S, "S")
    order, lam = _check_order(order, len(S), None, "order"), check_real(lam, "lam", low=0.0)
    if cache is not None and not isinstance(cache, dict):
        raise TypeError(f"cache must be a dict or None, got {type(cache).__name__}")
    return _fit_order(S, order, lam, {} if cache is None else cache)


def _fit_order(S, order, lam, cache):
    """:func:`fit_order` without the checks (the search's inner loop)."""
    d = len(S)
    W, cols = np.zeros((d, d)), np.zeros(d)
    for pos, j in enumerate(order):
        parents, W[parents, j], cols[j] = _column(S, j, order[:pos], lam, cache)
    return W, cols


def candidate_pairs(W, order, size: int) -> np.ndarray:
    r"""Forbidden pairs (i after j in ``order``) with the ``size`` smallest :math:`G_{ij}`.

    :math:`G = \nabla h(|W|)` (:func:`grad_h_abs`).  Ties at the threshold are all kept,
    as in the official code, so every pair whose entry is zero (no path from j to i:
    the edge i -> j could be added) is a candidate.  Rows ``(i, j)``, smallest first.

    >>> candidate_pairs(np.array([[0.0, 0.5], [0.0, 0.0]]), [0, 1], 1).tolist()
    [[1, 0]]
    """
    W = _square(W, "W")
    order = _check_order(order, len(W), None, "order")
    return _candidates(W, order, check_int(size, "size", low=1))


def _candidates(W, order, size):
    """:func:`candidate_pairs` without the checks."""
    pos = np.empty(len(order), dtype=int)
    pos[list(order)] = np.arange(len(order))
    forbidden = pos[:, None] > pos[None, :]       # i after j: edge i -> j forbidden
    G = _path_sums(W)
    threshold = np.sort(G[forbidden])[min(size, forbidden.sum()) - 1]
    i, j = np.nonzero(forbidden & (G <= threshold))
    rank = np.lexsort((j, i, G[i, j]))
    return np.stack([i[rank], j[rank]], axis=1)


def _swap(order, i, j) -> list:
    """The order with the positions of nodes ``i`` and ``j`` exchanged.

    >>> _swap([3, 1, 0, 2], 1, 2)
    [3, 2, 0, 1]
    """
    new = list(order)
    a, b = new.index(i), new.index(j)
    new[a], new[b] = int(j), int(i)
    return new


def _swap_score(S, order, cols, i, j, lam, cache):
    r"""The score of ``order`` with i and j swapped, and that order.

    Only the nodes between the two positions get new predecessor sets; the others keep
    their regressions (``cols``, the per-node scores of ``order``).
    """
    new = _swap(order, i, j)
    lo, hi = sorted((new.index(i), new.index(j)))
    score = cols.sum()
    for pos in range(lo, hi + 1):
        node = new[pos]
        score += _column(S, node, new[:pos], lam, cache)[2] - cols[node]
    return float(score), new


def _apply_swaps(order, better):
    r"""Apply improving swaps ``(score, i, j)`` best first, on disjoint position intervals.

    Swaps whose intervals do not overlap change disjoint sets of regressions, so their
    gains add up: the new score is below the best candidate's.  Returns the new order
    and the number of swaps applied.

    >>> _apply_swaps([0, 1, 2, 3], [(1.0, 1, 0), (2.0, 2, 1), (3.0, 3, 2)])
    ([1, 0, 3, 2], 2)
    """
    pos = {v: p for p, v in enumerate(order)}
    taken, n_swaps = np.zeros(len(order), dtype=bool), 0
    for _, i, j in sorted(better):
        lo, hi = sorted((pos[i], pos[j]))
        if not taken[lo:hi + 1].any():
            taken[lo:hi + 1], order = True, _swap(order, i, j)
            n_swaps += 1
    return order, n_swaps


def _check_order(order0, d, rng, name="order0"):
    """A starting order: a permutation of 0..d-1 (None: a random one)."""
    if order0 is None and name == "order0":
        return [int(k) for k in as_rng(rng).permutation(d)]
    as_rng(rng)
    values = np.asarray(order0, dtype=object).ravel() if np.ndim(order0) else None
    ok = values is not None and all(isinstance(v, (int, np.integer)) for v in values)
    if not ok or sorted(int(v) for v in values) != list(range(d)):
        none = " or None" if name == "order0" else ""
        raise ValueError(f"{name} must be a permutation of 0..{d - 1}{none}, got {order0!r}")
    return [int(v) for v in values]


def topo(X, order0=None, *, lam: float = 0.0, size_small=None, size_large=None,
         n_large: int = 1, n_iters: int = 100, rng=None, callback=None):
    r"""TOPO: local search over topological orders by swaps, guided by the acyclicity gradient.

    Parameters
    ----------
    X : array_like, shape (n, d)
        The data (centred inside).
    order0 : sequence of int or None
        The starting order (a permutation of ``0..d-1``); None draws one from ``rng``.
    lam : float
        :math:`\lambda \ge 0`: 0 gives OLS inner problems, :math:`\lambda > 0` the Lasso.
    size_small, size_large : int or None
        Sizes of the small and the large candidate sets (defaults, as in the official
        code: :math:`\min(\lfloor 1.5d\rfloor, m)` and :math:`\max(\lfloor 1.5d\rfloor, m)`,
        :math:`m = \min(\lfloor\sqrt d (d-1)\log_{10} d\rfloor, d(d-1)/2)`).
    n_large : int
        How many times the large set may rescue a stalled search (official default:
        1 for d >= 10, else 0; ours is 1 for every d).
    n_iters : int
        At most this many outer iterations.
    rng : None, int or Generator
        Draws the starting order when ``order0`` is None.
    callback : callable or None
        ``callback(record) -> bool`` after each outer iteration; True stops.

    Returns
    -------
    Result
        ``x``: :math:`W^*(\pi)` of the final order; ``f``: its score.  Extras: ``order``
        (the final order), ``n_large_used``.  History columns: ``t``, ``f`` (the score),
        ``n_swaps`` (swaps applied), ``n_candidates`` (orders scored), ``n_evals``
        (regressions solved).  ``converged`` means no candidate swap lowers the score.

    Notes
    -----
    Outer step at :math:`W = W^*(\pi)`: :math:`G = (I - |W|)^{-\top}`; candidates are the
    forbidden pairs with the smallest :math:`G_{ij}`; each is scored by swapping i and j
    and refitting the nodes between them; the improving swaps are applied greedily, best
    first, as long as their position intervals do not overlap; then :math:`W^*(\pi)` is
    recomputed.  The score decreases strictly at every accepted step, so the search ends.
    Cost per step: at most ``size_large`` candidates, each up to d regressions on at most
    d - 1 variables (cached: a node's regression depends only on its predecessor set).
    Guarantee (the chapter): at the end, no swap of a pair with :math:`G_{ij} = 0` lowers
    the score.  As in the official code, :math:`G` is the gradient with respect to
    :math:`|W|` (the gradient with respect to W vanishes on every forbidden entry).
    Differences from the official code: :math:`G` is the exact path sum (exact zeros)
    rather than a numerical inverse; regressions are solved on the Gram matrix and cached.

    References
    ----------
    C. Deng, K. Bello, B. Aragam and P. Ravikumar, Optimizing NOTEARS objectives via
    topological swaps, ICML 2023, arXiv:2305.17277 (``deng2023optimizing``).

    Book: chapters/constrained/dag_learning.ipynb

    Examples
    --------
    >>> Z = np.random.default_rng(0).standard_normal((500, 2))
    >>> X = Z @ np.array([[1.0, 2.0], [0.0, 1.0]])        # x1 = 2 x0 + noise
    >>> res = topo(X, [1, 0])
    >>> res.order, res.converged, bool(res.history["f"][0] > res.f)
    ([0, 1], True, True)
    """
    S = gram(X)
    d = len(S)
    order, lam = _check_order(order0, d, rng), check_real(lam, "lam", low=0.0)
    m = max(1, int(min(np.sqrt(d) * (d - 1) * np.log10(d), d * (d - 1) // 2)))
    small = min(int(1.5 * d), m) if size_small is None else size_small
    large = max(int(1.5 * d), m) if size_large is None else size_large
    small = check_int(small, "size_small", low=1)
    large = check_int(large, "size_large", low=1)
    n_large = check_int(n_large, "n_large", low=0)
    n_iters = check_int(n_iters, "n_iters", low=1)
    params = {"lam": lam, "size_small": small, "size_large": large, "n_large": n_large}
    trace, cache, large_used, n_done = Trace("topo", params, callback), {}, 0, 0
    W, cols = _fit_order(S, order, lam, cache)
    trace.count("regressions", len(cache))
    stopped = trace.log(0, f=cols.sum(), n_swaps=0, n_candidates=0)
    converged = False
    for t in range(0 if stopped else n_iters):
        pairs, n_scored = _candidates(W, order, small), 0
        for use_large in (False, True):
            if use_large:            # the small set failed: the large one, if allowed
                if large_used >= n_large:
                    break
                seen = {tuple(p) for p in pairs}
                pairs = [p for p in _candidates(W, order, large)
                         if tuple(p) not in seen]
            scored = [(_swap_score(S, order, cols, i, j, lam, cache)[0], i, j)
                      for i, j in pairs]
            n_scored += len(scored)
            better = [c for c in scored if c[0] < cols.sum()]
            if better:
                large_used += use_large
                break
        if not better:
            converged = True
            break
        order, n_swaps = _apply_swaps(order, better)
        W, cols = _fit_order(S, order, lam, cache)
        n_done = t + 1
        trace.count("regressions", len(cache) - trace.n_evals["regressions"])
        if trace.log(n_done, f=cols.sum(), n_swaps=n_swaps, n_candidates=n_scored):
            break
    trace.count("regressions", len(cache) - trace.n_evals["regressions"])
    message = "no candidate swap lowers the score" if converged else None
    return trace.result(W, cols.sum(), n_iters=n_done, converged=converged,
                        message=message, order=order, n_large_used=large_used)
