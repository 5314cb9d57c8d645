r"""Linear structural equation models on random DAGs, and how to score a learned graph.

The data of the DAG-learning chapter: a random DAG (Erdős–Rényi or scale-free), edge
weights, samples of the linear SEM :math:`X = XW + Z` with Gaussian noise, and the
usual accuracy measures of a learned graph (SHD, TPR, FDR).  Everything is vectorized:
the SEM is sampled in one solve, :math:`X = Z (I - W)^{-1}`.

References
----------
X. Zheng, B. Aragam, P. Ravikumar and E. P. Xing, DAGs with NO TEARS, NeurIPS 2018,
arXiv:1803.01422 (``zheng2018dags``): the simulation protocol and the metrics.

Book: chapters/constrained/dag_learning.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import as_rng
from ..validate import check_array, check_choice, check_int, check_real

__all__ = ["simulate_dag", "simulate_weights", "simulate_sem", "is_dag", "topological_order",
           "count_accuracy", "gram", "ls_score"]


def simulate_dag(d: int, n_edges: int, graph: str = "ER", rng=None) -> np.ndarray:
    r"""A random DAG on ``d`` nodes as a 0/1 adjacency matrix ``B`` (``B[i, j] = 1``: edge i -> j).

    ``"ER"``: ``n_edges`` distinct pairs drawn uniformly, oriented along a random order
    (ER2 means ``n_edges = 2 d``).  ``"SF"``: Barabási–Albert preferential attachment,
    each new node sending ``round(n_edges / d)`` edges to earlier nodes chosen with
    probability proportional to their degree plus one.  The nodes are then relabelled
    at random, so that the order of the labels says nothing about the graph.

    Examples
    --------
    >>> B = simulate_dag(6, 12, "ER", rng=0)
    >>> int(B.sum()), is_dag(B)
    (12, True)
    """
    d = check_int(d, "d", low=2)
    n_edges = check_int(n_edges, "n_edges", low=0, high=d * (d - 1) // 2)
    check_choice(graph, "graph", ("ER", "SF"))
    rng = as_rng(rng)
    B = np.zeros((d, d))
    if graph == "ER":
        rows, cols = np.tril_indices(d, k=-1)          # pairs i > j: edge i -> j in the order d-1, ..., 0
        pick = rng.choice(rows.size, size=n_edges, replace=False)
        B[rows[pick], cols[pick]] = 1.0
    else:
        m = max(1, int(round(n_edges / d)))
        degree = np.zeros(d)
        for k in range(1, d):                          # node k attaches to earlier nodes
            p = (degree[:k] + 1.0) / (degree[:k] + 1.0).sum()
            targets = rng.choice(k, size=min(m, k), replace=False, p=p)
            B[k, targets] = 1.0
            degree[targets] += 1.0
            degree[k] += targets.size
    perm = rng.permutation(d)
    return B[np.ix_(perm, perm)]


def simulate_weights(B, low: float = 0.5, high: float = 2.0, rng=None) -> np.ndarray:
    r"""Edge weights uniform on :math:`[-\mathrm{high}, -\mathrm{low}] \cup [\mathrm{low}, \mathrm{high}]`.

    >>> W = simulate_weights(np.array([[0.0, 1.0], [0.0, 0.0]]), rng=0)
    >>> bool(0.5 <= abs(W[0, 1]) <= 2.0), float(W[1, 0])
    (True, 0.0)
    """
    B = check_array(B, "B", ndim=2)
    low = check_real(low, "low", low=0.0)
    high = check_real(high, "high", low=low)
    rng = as_rng(rng)
    magnitude = rng.uniform(low, high, size=B.shape)
    sign = rng.choice([-1.0, 1.0], size=B.shape)
    return (B != 0) * sign * magnitude


def simulate_sem(W, n: int, noise_scale: float = 1.0, rng=None) -> np.ndarray:
    r"""``n`` samples of the linear SEM :math:`x_j = \sum_i W_{ij} x_i + z_j`, :math:`z \sim N(0, \sigma^2 I)`.

    In matrix form :math:`X = XW + Z`, so :math:`X = Z (I - W)^{-1}` (``W`` must be a DAG).

    >>> X = simulate_sem(np.array([[0.0, 2.0], [0.0, 0.0]]), 20000, rng=0)
    >>> np.round(np.cov(X.T), 1).tolist()
    [[1.0, 2.0], [2.0, 5.0]]
    """
    W = check_array(W, "W", ndim=2)
    if W.shape[0] != W.shape[1] or not is_dag(W):
        raise ValueError(f"W must be the square weighted adjacency matrix of a DAG, got shape {W.shape}")
    n = check_int(n, "n", low=1)
    noise_scale = check_real(noise_scale, "noise_scale", low=0.0, low_open=True)
    Z = noise_scale * as_rng(rng).standard_normal((n, W.shape[0]))
    return np.linalg.solve((np.eye(len(W)) - W).T, Z.T).T


def topological_order(W) -> list:
    r"""A topological order of the graph of ``W`` (Kahn's algorithm, smallest label first).

    Raises ``ValueError`` if the graph has a cycle.

    >>> topological_order(np.array([[0, 0, 0], [1, 0, 1], [1, 0, 0]]))
    [1, 2, 0]
    """
    order = _kahn(_adjacency(W))
    if order is None:
        raise ValueError("W has a cycle: it has no topological order")
    return order


def _adjacency(W):
    """The boolean adjacency matrix of a square ``W``."""
    A = check_array(W, "W", ndim=2) != 0
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"W must be a square d x d array, got shape {A.shape}")
    return A


def _kahn(A):
    """Kahn's algorithm on a boolean adjacency matrix; None if there is a cycle."""
    indegree = A.sum(axis=0)
    done = np.zeros(len(A), dtype=bool)
    order = []
    for _ in range(len(A)):
        free = np.flatnonzero((indegree == 0) & ~done)
        if free.size == 0:
            return None
        k = int(free[0])
        order.append(k)
        done[k] = True
        indegree = indegree - A[k]
    return order


def is_dag(W) -> bool:
    r"""Whether the graph of ``W`` (its nonzero entries) has no directed cycle.

    >>> is_dag(np.array([[0, 1], [0, 0]])), is_dag(np.array([[0, 1], [1, 0]]))
    (True, False)
    """
    return _kahn(_adjacency(W)) is not None


def count_accuracy(B_true, B_est) -> dict:
    r"""Structural Hamming distance, true positive rate and false discovery rate of a learned DAG.

    ``B_est`` (a weighted or 0/1 matrix; nonzero = edge) is compared with ``B_true``.
    A reversed edge counts once in the SHD (as in NOTEARS' evaluation): SHD = extra
    + missing + reversed, where extra and missing compare the skeletons.  TPR = correctly
    oriented edges / true edges; FDR = (reversed + extra) / predicted edges.

    Examples
    --------
    >>> B = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    >>> count_accuracy(B, np.array([[0, 1, 0], [0, 0, 0], [1, 1, 0]]))
    {'shd': 2, 'tpr': 0.3333, 'fdr': 0.6667, 'nnz': 3}
    """
    T = check_array(B_true, "B_true", ndim=2) != 0
    E = check_array(B_est, "B_est", ndim=2, shape=T.shape) != 0
    true_skeleton, est_skeleton = T | T.T, E | E.T
    correct = int((E & T).sum())
    reversed_ = int((E & T.T & ~T).sum())
    extra = int(np.triu(est_skeleton & ~true_skeleton).sum())
    missing = int(np.triu(true_skeleton & ~est_skeleton).sum())
    nnz = int(E.sum())
    return {"shd": extra + missing + reversed_, "tpr": round(correct / max(int(T.sum()), 1), 4),
            "fdr": round((nnz - correct) / max(nnz, 1), 4), "nnz": nnz}


def gram(X) -> np.ndarray:
    r"""The Gram matrix :math:`S = X_c^\top X_c / n` of the centred data: all the scores need."""
    X = check_array(X, "X", ndim=2)
    if X.shape[0] < 2 or X.shape[1] < 2:
        raise ValueError(f"X must have at least 2 samples and 2 variables, got shape {X.shape}")
    Xc = X - X.mean(axis=0)
    return Xc.T @ Xc / len(X)


def ls_score(W, S):
    r"""The least-squares score :math:`Q(W) = \frac1{2n}\|X - XW\|_F^2` and its gradient.

    With the Gram matrix S: :math:`Q(W) = \frac12 \mathrm{tr}((I-W)^\top S (I-W))` and
    :math:`\nabla Q(W) = -S(I-W)`.

    >>> ls_score(np.zeros((2, 2)), np.eye(2))[0]
    1.0
    """
    S = check_array(S, "S", ndim=2)
    if S.shape[0] != S.shape[1]:
        raise ValueError(f"S must be a square d x d array, got shape {S.shape}")
    return _ls_score(check_array(W, "W", shape=S.shape), S)


def _ls_score(W, S):
    """:func:`ls_score` without the checks (NOTEARS' inner loop)."""
    R = np.eye(len(S)) - W
    return 0.5 * float(np.sum(R * (S @ R))), -S @ R
