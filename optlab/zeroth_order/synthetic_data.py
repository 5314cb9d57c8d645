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

import numpy as np
from scipy.special import expit, softmax

from .. import privacy
from ..baselines import adam_state, adam_step
from ..core import Trace, as_rng, as_schedule, step_at
from ..validate import check_array, check_int, check_positive, check_real, describe
from .private_gsd import Workload, _workload

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


@functools.lru_cache(maxsize=16)
def _layout(w: Workload):
    """Features (a categorical column, or a numeric one at a resolution), their offsets, and each query's entry."""
    feats = list(dict.fromkeys((c, 0 if w.cards[c] else b) for i, j, b in w.histograms for c in (i, j)))
    widths = [w.cards[c] or b for c, b in feats]
    start = dict(zip(feats, np.concatenate([[0], np.cumsum(widths)[:-1]]).tolist()))
    rows, cols = [], []
    for i, j, b in w.histograms:                 # cell (v_i, v_j) of histogram h: entry (start_i + v_i, start_j + v_j)
        (fi, fj) = ((c, 0 if w.cards[c] else b) for c in (i, j))
        ni, nj = w.cards[i] or b, w.cards[j] or b
        rows.append(np.repeat(start[fi] + np.arange(ni), nj))
        cols.append(np.tile(start[fj] + np.arange(nj), ni))
    return feats, int(sum(widths)), np.concatenate(rows), np.concatenate(cols)


def _memberships(w: Workload, logits, u, tau):
    """Each row's membership in each cell of each feature, ``(N', F)``, and its derivative in ``u``."""
    feats = _layout(w)[0]
    blocks, derivs = [], []
    for c, b in feats:
        if w.cards[c]:
            blocks.append(softmax(logits[c], axis=1))
            derivs.append(None)
        elif tau > 0:                                # sigmoid differences; the outer edges at -inf and +inf
            s = expit((u[c][:, None] - np.arange(1, b) / b) / tau)
            one, zero = np.ones((len(s), 1)), np.zeros((len(s), 1))
            ds = s * (1 - s) / tau
            blocks.append(np.hstack([one, s]) - np.hstack([s, zero]))
            derivs.append(np.hstack([zero, ds]) - np.hstack([ds, zero]))
        else:                                        # true bins
            blocks.append(np.eye(b)[np.minimum(np.floor(u[c] * b), b - 1).astype(int)])
            derivs.append(None)
    return feats, blocks, derivs


def relaxed_answers(w: Workload, logits, u, tau: float = 0.0, target=None):
    r"""Answers of a relaxed data set; with ``target``, also the loss :math:`\|\tilde q - \hat a\|^2` and its gradients.

    ``logits[c]`` ``(N', k_c)`` for categorical columns, ``u[c]`` ``(N',)`` for numeric ones (dicts by
    column); ``tau = 0`` answers range queries with true bins.  With every feature's memberships
    side by side in :math:`M` ``(N', F)``, all 2-way answers are entries of :math:`M^\top M/N'` and the
    gradient is :math:`(2/N') M S`, with :math:`S` the residuals placed symmetrically.  Returns
    ``answers`` or ``(answers, loss, grad_logits, grad_u)``.
    """
    _workload(w)
    for name, blocks, want in (("logits", logits, [c for c, k in enumerate(w.cards) if k]),
                               ("u", u, [c for c, k in enumerate(w.cards) if not k])):
        if not isinstance(blocks, dict) or sorted(blocks) != want:
            raise TypeError(f"{name} must be a dict with one array per column in {want}, got {describe(blocks)}")
    lengths = {np.shape(v)[0] if np.ndim(v) else -1 for v in [*logits.values(), *u.values()]}
    logits = {c: check_array(v, "logits", shape=(None, w.cards[c])) for c, v in logits.items()}
    u = {c: check_array(v, "u", ndim=1) for c, v in u.items()}
    if any(np.any((v < 0) | (v > 1)) for v in u.values()):
        raise ValueError("u must hold numeric values in [0, 1]")
    if len(lengths) != 1:
        raise ValueError("logits and u must give every column for the same number of rows")
    tau = check_real(tau, "tau", low=0.0)
    if target is not None:
        target = check_array(target, "target", shape=(w.n_queries,))
    feats, blocks, derivs = _memberships(w, logits, u, tau)
    _, n_feat, rows, cols = _layout(w)
    M = np.hstack(blocks)
    n_rows = len(M)
    ans = (M.T @ M)[rows, cols] / n_rows
    if target is None:
        return ans
    resid = ans - target
    S = np.zeros((n_feat, n_feat))
    S[rows, cols] = resid
    G = np.split(2.0 / n_rows * (M @ (S + S.T)), np.cumsum([m.shape[1] for m in blocks])[:-1], axis=1)
    grad_logits, grad_u = {}, {c: np.zeros(n_rows) for c in u}
    for (c, _), m, dm, g in zip(feats, blocks, derivs, G):
        if w.cards[c]:                               # softmax Jacobian
            grad_logits[c] = m * (g - np.sum(g * m, axis=1, keepdims=True))
        else:
            grad_u[c] += np.sum(g * dm, axis=1)
    return ans, float(resid @ resid), grad_logits, grad_u


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
    cat = [c for c, k in enumerate(w.cards) if k]
    num = [c for c, k in enumerate(w.cards) if not k]
    sizes = [w.cards[c] for c in cat]
    theta = np.concatenate([0.1 * rng.standard_normal(n_rows * sum(sizes)), rng.random(n_rows * len(num))])
    cut = n_rows * sum(sizes)

    def unpack(z):
        blocks = np.split(z[:cut].reshape(n_rows, -1), np.cumsum(sizes)[:-1], axis=1) if cat else []
        return dict(zip(cat, blocks)), dict(zip(num, z[cut:].reshape(len(num), n_rows)))

    trace = Trace("relaxed_projection", {"lr": lr, "tau": schedule, "n_iters": n_iters, "n_rows": n_rows}, callback)
    state, best, done = adam_state(theta), (np.inf, theta, 0.0, 0), 0
    for t in range(n_iters):
        tau_t = step_at(schedule, t, "tau")
        logits, u = unpack(theta)
        _, loss, g_logits, g_u = relaxed_answers(w, logits, u, tau_t, target)
        hard = float(np.sum((relaxed_answers(w, logits, u) - target) ** 2))
        trace.count("grad")
        trace.count("f")
        if hard < best[0]:
            best = (hard, theta, tau_t, t)
        g = np.concatenate([np.hstack([g_logits[c] for c in cat]).ravel() if cat else np.zeros(0)]
                           + [g_u[c] for c in num])
        theta, state = adam_step(theta, g, state, lr=lr, beta1=0.9, beta2=0.999, eps=1e-8)
        theta[cut:] = np.clip(theta[cut:], 0.0, 1.0)
        done = t + 1
        if trace.diverged(theta, done) or trace.log(t, f=hard, f_relaxed=loss, tau=tau_t):
            break
    hard, theta, tau_best, t_best = best
    logits, u = unpack(theta)
    table = np.hstack([softmax(logits[c], axis=1) if w.cards[c] else u[c][:, None] for c in range(len(w.cards))])
    return trace.result(table, hard, n_iters=done, answers=relaxed_answers(w, logits, u),
                        answers_relaxed=relaxed_answers(w, logits, u, tau_best), best_iter=t_best)
