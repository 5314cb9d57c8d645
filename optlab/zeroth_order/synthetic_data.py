r"""The test bed of the Private-GSD chapter: correlated tables, query errors and two baselines.

* :func:`correlated_data`: categorical columns drawn along a Markov chain with peaked
  (Dirichlet) transitions, and numeric columns in ``[0, 1]`` whose Beta law depends on the
  category of the column before them: strongly correlated pairs that independent columns miss;
* :func:`query_errors`: max and average absolute errors, over categorical marginals and over
  range queries separately;
* :func:`independent`: the baseline that releases each column's 1-way histogram with the
  Gaussian mechanism and samples the columns independently;
* :func:`relaxed_projection`: the first-order baseline of the relaxed-projection family (RAP,
  Aydore et al., 2021; RAP++ for numeric columns, Vietri et al., 2022): rows relaxed to
  probability vectors (a softmax per categorical column) and numeric values kept real, bins
  replaced by sigmoid differences at a temperature :math:`\tau`, and Adam on
  :math:`\|\hat a - \tilde q(\tilde D)\|^2`.  At the end its range queries are answered with
  true bins: the gap between the relaxed and the true answers is the price of the relaxation.

References
----------
T. Liu, J. Tang, G. Vietri and Z. S. Wu, ICML 2023, arXiv:2306.03257 (``liu2023generating``).
S. Aydore et al., Differentially private query release through adaptive projection, ICML 2021,
arXiv:2103.06641 (``aydore2021differentially``).  G. Vietri, C. Archambeau, S. Aydore, W. Brown,
M. Kearns, A. Roth, A. Siva, S. Tang and Z. S. Wu, Private synthetic data for multitask learning
and marginal queries, NeurIPS 2022, arXiv:2209.07400 (``vietri2022private``).

Book: chapters/zeroth_order/private_gsd.ipynb
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from .. import privacy
from ..baselines import adam_state, adam_step
from ..core import Trace, as_rng, as_schedule, step_at
from ..validate import check_array, check_int, check_positive, check_real, describe
from .queries import Workload, _workload

__all__ = ["correlated_data", "query_errors", "independent", "relaxed_answers", "relaxed_projection"]


def correlated_data(n: int, cards, *, concentration: float = 0.3, rng=None) -> np.ndarray:
    r"""A table of ``n`` rows: a Markov chain of categorical columns, numeric columns that follow their left neighbour.

    Column 0 is categorical with Dirichlet(1) probabilities; a categorical column ``c`` given the
    code ``v`` of the column before it has law ``T_c[v]``, rows of ``T_c`` drawn from
    Dirichlet(``concentration``) (small: peaked, strongly dependent); a numeric column given ``v`` is
    Beta(``a_v``, ``b_v``) with ``a, b`` uniform on ``[0.5, 6]``.

    >>> X = correlated_data(5, (3, 0, 4), rng=0)
    >>> X.shape, bool(np.all(X[:, 1] <= 1))
    ((5, 3), True)
    """
    n, rng = check_int(n, "n", low=1), as_rng(rng)
    if isinstance(cards, (str, bytes, dict)) or not np.iterable(cards):
        raise TypeError(f"cards must be a sequence of ints (0 for a numeric column), got {describe(cards)}")
    cards = [check_int(k, "cards", low=0) for k in cards]
    concentration = check_positive(concentration, "concentration")
    if not cards or cards[0] < 2 or any(k == 1 for k in cards):
        raise ValueError("cards must start with a categorical column (>= 2 categories); 0 marks a numeric column")
    X = np.empty((n, len(cards)))
    X[:, 0] = rng.choice(cards[0], size=n, p=rng.dirichlet(np.ones(cards[0])))
    parent = 0                                    # the last categorical column, which the next one follows
    for c, k in enumerate(cards[1:], start=1):
        v = X[:, parent].astype(int)
        if k:
            T = rng.dirichlet(np.full(k, concentration), size=cards[parent])
            X[:, c] = (rng.random((n, 1)) > np.cumsum(T[v], axis=1)).sum(axis=1).clip(max=k - 1)
            parent = c
        else:
            a, b = rng.uniform(0.5, 6.0, size=(2, cards[parent]))
            X[:, c] = rng.beta(a[v], b[v])
    return X


def query_errors(w: Workload, true_answers, answers) -> dict:
    """Max and average absolute errors: ``{"max", "avg", "max_marginal", "avg_marginal", "max_range", "avg_range"}``."""
    m = _workload(w).n_queries
    err = np.abs(check_array(answers, "answers", shape=(m,)) - check_array(true_answers, "true_answers", shape=(m,)))
    is_range = w.is_range()
    out = {"max": float(err.max()), "avg": float(err.mean())}
    for name, mask in (("marginal", ~is_range), ("range", is_range)):
        out[f"max_{name}"] = float(err[mask].max()) if mask.any() else float("nan")
        out[f"avg_{name}"] = float(err[mask].mean()) if mask.any() else float("nan")
    return out


def independent(w: Workload, data, rho: float, n_rows: int, *, bins: int = 16, rng=None) -> np.ndarray:
    r"""Baseline: 1-way histograms released at :math:`\rho`-zCDP, columns sampled independently.

    Numeric columns are histogrammed in ``bins`` bins; the sensitivity is :math:`\sqrt{2d}/n`
    (replace-one, ``d`` histograms).  Each noisy histogram is clipped at 0 and normalized; numeric
    values are uniform within their sampled bin.  Returns the synthetic table ``(n_rows, d)``.
    """
    data = _workload(w).check(data, "data")
    rho = check_positive(rho, "rho")
    n_rows, bins, rng = check_int(n_rows, "n_rows", low=1), check_int(bins, "bins", low=2), as_rng(rng)
    sizes = [k or bins for k in w.cards]
    codes = [(data[:, c] if k else np.minimum(np.floor(data[:, c] * bins), bins - 1)).astype(int)
             for c, k in enumerate(w.cards)]
    hist = np.concatenate([np.bincount(v, minlength=s) / len(data) for v, s in zip(codes, sizes)])
    noisy, _ = privacy.gaussian_mechanism(hist, math.sqrt(2 * len(sizes)) / len(data), rho, rng)
    out, start = np.empty((n_rows, len(sizes))), 0
    for c, s in enumerate(sizes):
        p = np.clip(noisy[start:start + s], 0.0, None)
        p = p / p.sum() if p.sum() > 0 else np.full(s, 1.0 / s)
        v = rng.choice(s, size=n_rows, p=p)
        out[:, c] = v if w.cards[c] else (v + rng.random(n_rows)) / s
        start += s
    return out


@dataclass(frozen=True)
class _Layout:
    """Where each feature sits in the membership matrix ``M = [softmax blocks | numeric bins]``."""

    cat: tuple          # categorical columns, in order; their blocks fill M[:, :n_cat]
    starts: np.ndarray  # first column of each categorical block
    num: tuple          # numeric columns, in order
    edges: np.ndarray   # all inner bin edges, feature after feature
    hi: np.ndarray      # membership of bin k = S[:, hi[k]] - S[:, lo[k]], S = [1, sigmoid(edges), 0]
    lo: np.ndarray
    owner: np.ndarray   # for each numeric-bin column of M: the position of its column in ``num``
    edge_owner: np.ndarray  # the same for each edge
    rows: np.ndarray    # query k is entry (rows[k], cols[k]) of M^T M / N'
    cols: np.ndarray
    n_feat: int


@functools.lru_cache(maxsize=16)
def _layout(w: Workload) -> _Layout:
    cat = tuple(c for c, k in enumerate(w.cards) if k)
    num = tuple(c for c, k in enumerate(w.cards) if not k)
    num_feats = list(dict.fromkeys((c, b) for i, j, b in w.histograms for c in (i, j) if not w.cards[c]))
    start = {(c, 0): s for c, s in zip(cat, np.cumsum([0] + [w.cards[c] for c in cat[:-1]]))}
    offset, edges, hi, lo, owner, edge_owner = sum(w.cards), [], [], [], [], []
    for c, b in num_feats:                        # S has a leading 1 and a trailing 0 column
        start[(c, b)] = offset
        offset += b
        first = len(edges) + 1
        hi += [0] + list(range(first, first + b - 1))
        lo += list(range(first, first + b - 1)) + [-1]
        edges += list(np.arange(1, b) / b)
        owner += [num.index(c)] * b
        edge_owner += [num.index(c)] * (b - 1)
    rows, cols = [], []
    for i, j, b in w.histograms:                  # cell (v_i, v_j): entry (start_i + v_i, start_j + v_j)
        fi, fj = ((c, 0 if w.cards[c] else b) for c in (i, j))
        ni, nj = w.cards[i] or b, w.cards[j] or b
        rows.append(np.repeat(start[fi] + np.arange(ni), nj))
        cols.append(np.tile(start[fj] + np.arange(nj), ni))
    return _Layout(cat, np.array(list(start[(c, 0)] for c in cat), dtype=int), num, np.array(edges),
                   np.array(hi, dtype=int), np.array(lo, dtype=int), np.array(owner, dtype=int),
                   np.array(edge_owner, dtype=int), np.concatenate(rows), np.concatenate(cols), offset)


def _softmax_blocks(lay: _Layout, Z):
    """Softmax within each categorical block of the logits (one shift per row is enough)."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    sums = np.add.reduceat(E, lay.starts, axis=1)
    return E / np.repeat(sums, np.diff(np.append(lay.starts, Z.shape[1])), axis=1)


def _relaxed(w: Workload, lay: _Layout, Z, U, tau, target=None):
    """Answers (``tau > 0``: relaxed; ``0``: true bins) and, with ``target``, loss and gradients (no checks).

    ``Z`` ``(N', sum of k)``: the logits, block after block; ``U`` ``(n_numeric, N')``: the numeric values.
    """
    n_rows = len(Z) if Z.size else U.shape[1]
    blocks, dM = [], None
    if lay.cat:
        P = _softmax_blocks(lay, Z)
        blocks.append(P)
    if lay.num:
        x = U[lay.edge_owner].T                   # (N', n_edges): each edge's numeric value
        if tau > 0:
            s = expit((x - lay.edges) / tau)
            one, zero = np.ones((n_rows, 1)), np.zeros((n_rows, 1))
            S = np.hstack([one, s, zero])
            ds = np.hstack([zero, s * (1 - s) / tau, zero])
            blocks.append(S[:, lay.hi] - S[:, lay.lo])
            dM = ds[:, lay.hi] - ds[:, lay.lo]
        else:
            S = np.hstack([np.ones((n_rows, 1)), (x >= lay.edges).astype(float), np.zeros((n_rows, 1))])
            blocks.append(S[:, lay.hi] - S[:, lay.lo])
    M = np.hstack(blocks) if len(blocks) > 1 else blocks[0]
    ans = (M.T @ M)[lay.rows, lay.cols] / n_rows
    if target is None:
        return ans
    resid = ans - target
    R = np.zeros((lay.n_feat, lay.n_feat))
    R[lay.rows, lay.cols] = resid
    G = 2.0 / n_rows * (M @ (R + R.T))
    k = Z.shape[1]
    grad_Z = np.zeros_like(Z)
    if lay.cat:                                   # softmax Jacobian, block by block
        Gc = G[:, :k]
        inner = np.add.reduceat(Gc * P, lay.starts, axis=1)
        grad_Z = P * (Gc - np.repeat(inner, np.diff(np.append(lay.starts, k)), axis=1))
    grad_U = np.zeros_like(U)
    if lay.num and dM is not None:
        contrib = G[:, k:] * dM                   # (N', numeric bins)
        for pos in range(len(lay.num)):
            grad_U[pos] = contrib[:, lay.owner == pos].sum(axis=1)
    return ans, float(resid @ resid), grad_Z, grad_U


def relaxed_answers(w: Workload, logits, u, tau: float = 0.0, target=None):
    r"""Answers of a relaxed data set; with ``target``, also the loss :math:`\|\tilde q - \hat a\|^2` and its gradients.

    ``logits[c]`` ``(N', k_c)`` for categorical columns, ``u[c]`` ``(N',)`` for numeric ones (dicts by
    column); ``tau = 0`` answers range queries with true bins.  With every feature's memberships
    side by side in :math:`M` ``(N', F)``, all 2-way answers are entries of :math:`M^\top M/N'` and the
    gradient is :math:`(2/N') M S`, with :math:`S` the residuals placed symmetrically.  Returns
    ``answers`` or ``(answers, loss, grad_logits, grad_u)``.
    """
    lay = _layout(_workload(w))
    for name, blocks, want in (("logits", logits, list(lay.cat)), ("u", u, list(lay.num))):
        if not isinstance(blocks, dict) or sorted(blocks) != want:
            raise TypeError(f"{name} must be a dict with one array per column in {want}, got {describe(blocks)}")
    lengths = {np.shape(v)[0] if np.ndim(v) else -1 for v in [*logits.values(), *u.values()]}
    logits = {c: check_array(v, "logits", shape=(None, w.cards[c])) for c, v in logits.items()}
    u = {c: check_array(v, "u", ndim=1) for c, v in u.items()}
    if len(lengths) != 1:
        raise ValueError("logits and u must give every column for the same number of rows")
    if any(np.any((v < 0) | (v > 1)) for v in u.values()):
        raise ValueError("u must hold numeric values in [0, 1]")
    tau = check_real(tau, "tau", low=0.0)
    if target is not None:
        target = check_array(target, "target", shape=(w.n_queries,))
    n_rows = lengths.pop()
    Z = np.hstack([logits[c] for c in lay.cat]) if lay.cat else np.zeros((n_rows, 0))
    U = np.array([u[c] for c in lay.num]).reshape(len(lay.num), n_rows)
    out = _relaxed(w, lay, Z, U, tau, target)
    if target is None:
        return out
    ans, loss, grad_Z, grad_U = out
    splits = np.split(grad_Z, lay.starts[1:], axis=1) if lay.cat else []
    return ans, loss, dict(zip(lay.cat, splits)), dict(zip(lay.num, grad_U))


def relaxed_projection(w: Workload, target, n_rows: int, *, lr: float = 0.05, tau=0.05, n_iters: int = 1000,
                       rng=None, callback=None):
    r"""Baseline: Adam on the relaxed objective; the iterate whose *true* answers fit best is returned.

    ``tau`` is a temperature or a schedule ``t -> tau``; numeric values are clipped to ``[0, 1]``
    after each step.  Every iterate is also scored with true bins,
    :math:`\|\hat a - q(\tilde D_t)\|^2` (as the official RAP++ code does with a near-hard
    sigmoid), and the best one is kept.  Returns a :class:`~optlab.core.Result`: ``x`` the relaxed
    table ``(N', sum of widths)`` (a probability block per categorical column, the value of each
    numeric one), ``f`` its true-bin loss; extras ``answers`` (true bins), ``answers_relaxed`` (at
    its temperature) and ``best_iter``.  ``n_evals``: ``grad`` (relaxed gradients) and ``f``
    (true-bin losses).  History: ``t``, ``n_evals``, ``f`` (true-bin loss), ``f_relaxed``, ``tau``.
    """
    target = check_array(target, "target", shape=(_workload(w).n_queries,))
    n_rows, n_iters, rng = check_int(n_rows, "n_rows", low=1), check_int(n_iters, "n_iters", low=1), as_rng(rng)
    lr, schedule = check_positive(lr, "lr"), as_schedule(tau, "tau")
    lay = _layout(w)
    width = sum(w.cards)
    theta = np.concatenate([0.1 * rng.standard_normal(n_rows * width), rng.random(n_rows * len(lay.num))])
    cut = n_rows * width

    def unpack(z):
        return z[:cut].reshape(n_rows, width), z[cut:].reshape(len(lay.num), n_rows)

    trace = Trace("relaxed_projection", {"lr": lr, "tau": schedule, "n_iters": n_iters, "n_rows": n_rows}, callback)
    state, best, done = adam_state(theta), (np.inf, theta, 0.0, 0), 0
    for t in range(n_iters):
        tau_t = step_at(schedule, t, "tau")
        Z, U = unpack(theta)
        _, loss, grad_Z, grad_U = _relaxed(w, lay, Z, U, tau_t, target)
        hard = float(np.sum((_relaxed(w, lay, Z, U, 0.0) - target) ** 2))
        trace.count("grad")
        trace.count("f")
        if hard < best[0]:
            best = (hard, theta, tau_t, t)
        g = np.concatenate([grad_Z.ravel(), grad_U.ravel()])
        theta, state = adam_step(theta, g, state, lr=lr, beta1=0.9, beta2=0.999, eps=1e-8)
        theta[cut:] = np.clip(theta[cut:], 0.0, 1.0)
        done = t + 1
        if trace.diverged(theta, done) or trace.log(t, f=hard, f_relaxed=loss, tau=tau_t):
            break
    hard, theta, tau_best, t_best = best
    Z, U = unpack(theta)
    probs = np.split(_softmax_blocks(lay, Z), lay.starts[1:], axis=1) if lay.cat else []
    parts, values = dict(zip(lay.cat, probs)), dict(zip(lay.num, U))
    table = np.hstack([parts[c] if w.cards[c] else values[c][:, None] for c in range(len(w.cards))])
    return trace.result(table, hard, n_iters=done, answers=_relaxed(w, lay, Z, U, 0.0),
                        answers_relaxed=_relaxed(w, lay, Z, U, tau_best), best_iter=t_best)
