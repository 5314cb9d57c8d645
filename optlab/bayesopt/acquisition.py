r"""Acquisition functions for minimization, and their maximization over refreshed, polished candidates.

Everything minimizes: the tutorial's formulas (written for :math:`\max f`) are applied to :math:`-f`.
Two kinds of functions live here:

* **formulas** of the posterior at the candidates: :func:`expected_improvement` (closed form),
  :func:`upper_confidence_bound`, :func:`max_value_entropy` (max-value entropy search), and, from the
  joint posterior of a model, :func:`knowledge_gradient` (exact on a discrete set) and
  :func:`noisy_expected_improvement` (the tutorial's generalization of EI to noisy evaluations), both
  built on :func:`expected_max_of_lines`;
* **acquisitions** for the loop, ``make(model, X_obs, y_obs, rng) -> score`` where
  ``score(X) -> (m,)`` is to be maximized (:data:`ACQUISITIONS`), and :func:`maximize_acquisition`.

A model is a fitted surrogate (see :mod:`optlab.bayesopt.loop`): ``model.predict(X)`` gives the
posterior mean and variance of :math:`f`, ``model.predict(X, full_cov=True)`` the mean and covariance,
``model.noise_var`` the observation-noise variance.

References
----------
P. I. Frazier, A tutorial on Bayesian optimization, arXiv:1807.02811, 2018 (``frazier2018tutorial``),
sections 4.1 (EI), 4.2 (KG), 4.3 (entropy search) and 5 (noisy EI); P. Frazier, W. Powell and
S. Dayanik, INFORMS J. Computing 21(4), 2009 (``frazier2009knowledge``), exact KG on a discrete set;
Z. Wang and S. Jegelka, ICML 2017, arXiv:1703.01968 (``wang2017max``), max-value entropy search;
N. Srinivas, A. Krause, S. Kakade and M. Seeger, ICML 2010, arXiv:0912.3995 (``srinivas2010gaussian``), UCB.

Book: chapters/bayesopt/gp_bo.ipynb
"""
from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr, ndtr
from scipy.stats import qmc

from ..core import as_rng
from ..validate import check_array, check_callable, check_int, check_real

__all__ = ["expected_improvement", "upper_confidence_bound", "max_value_entropy", "expected_max_of_lines",
           "knowledge_gradient", "noisy_expected_improvement", "ACQUISITIONS", "sobol_design",
           "maximize_acquisition"]


def _pdf(z):
    return np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)


def expected_improvement(mean, sd, best):
    r"""Closed-form EI for minimization, :math:`E[(f^*_n - f(x))^+]` with :math:`f(x) \sim N(\mu, \sigma^2)`.

    With :math:`\Delta = f^*_n - \mu`:
    :math:`[\Delta]^+ + \sigma\varphi(\Delta/\sigma) - |\Delta|\Phi(-|\Delta|/\sigma)`
    (the tutorial's form, exact also at :math:`\sigma = 0`).

    >>> round(float(expected_improvement(0.0, 1.0, 0.0)), 6), float(expected_improvement(1.0, 0.0, 3.0))
    (0.398942, 2.0)
    """
    mean, sd = np.asarray(mean, dtype=float), np.asarray(sd, dtype=float)
    delta = best - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, np.abs(delta) / sd, np.inf)
    return np.maximum(delta, 0.0) + sd * _pdf(z) - np.abs(delta) * ndtr(-z)


def upper_confidence_bound(mean, sd, beta=4.0):
    r"""UCB of :math:`-f`, :math:`-\mu + \sqrt\beta\,\sigma` (to maximize): the lower confidence bound, negated."""
    return -np.asarray(mean, dtype=float) + np.sqrt(beta) * np.asarray(sd, dtype=float)


def max_value_entropy(mean, sd, f_min_samples):
    r"""Max-value entropy search: the expected entropy reduction of :math:`f(x)` from learning :math:`f^*`.

    For minimization, with :math:`\gamma_k = (\mu - f^*_k)/\sigma` for samples :math:`f^*_k` of the
    minimum value: :math:`\frac1K\sum_k \big[\gamma_k\varphi(\gamma_k)/(2\Phi(\gamma_k)) - \log\Phi(\gamma_k)\big]`
    (noise-free observations).  Shapes: ``mean``, ``sd`` ``(m,)``; ``f_min_samples`` ``(K,)``.

    >>> bool(max_value_entropy(np.array([0.0, 0.0]), np.array([1.0, 0.1]), np.array([-1.0]))[0] > 0)
    True
    """
    gamma = (np.asarray(mean, dtype=float)[:, None] - np.asarray(f_min_samples)[None, :]) \
        / np.maximum(np.asarray(sd, dtype=float)[:, None], 1e-12)
    log_cdf = log_ndtr(gamma)
    ratio = np.exp(-0.5 * gamma**2 - 0.5 * np.log(2 * np.pi) - log_cdf)  # phi / Phi, stable in the tails
    return np.mean(0.5 * gamma * ratio - log_cdf, axis=1)


def expected_max_of_lines(a, b):
    r""":math:`E\max_i (a_i + b_i Z)`, :math:`Z \sim N(0, 1)`, exactly, over the last axis (leading axes batch).

    Line :math:`i` is the maximum on the interval :math:`[l_i, u_i]` bounded by its crossings with
    the steeper lines (:math:`u_i`) and the flatter ones (:math:`l_i`); a line tied in slope with a
    higher one never is.  Then :math:`E\max = \sum_i a_i(\Phi(u_i) - \Phi(l_i)) + b_i(\varphi(l_i) - \varphi(u_i))`.
    Cost :math:`O(M^2)` per batch row.

    >>> round(float(expected_max_of_lines(np.array([0.0, 0.0]), np.array([1.0, -1.0]))), 6)  # E|Z|
    0.797885
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ai, aj, bi, bj = a[..., :, None], a[..., None, :], b[..., :, None], b[..., None, :]
    slope = bj - bi
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = (ai - aj) / slope                                # where lines i and j meet
    upper = np.where(slope > 0, cross, np.inf).min(axis=-1)     # a steeper line j overtakes i
    lower = np.where(slope < 0, cross, -np.inf).max(axis=-1)    # a flatter line j is above i before
    idx = np.arange(a.shape[-1])
    tied = (slope == 0) & ((aj > ai) | ((aj == ai) & (idx[None, :] < idx[:, None])))
    upper = np.where(tied.any(axis=-1) | (upper < lower), lower, upper)  # empty intervals
    return np.sum(a * (ndtr(upper) - ndtr(lower)) + b * (_pdf(lower) - _pdf(upper)), axis=-1)


def _chunks(m, width, budget=2_000_000):
    """Slices of range(m) whose rows times width**2 stay within the budget (bounds the memory of O(M^2) work)."""
    step = max(1, budget // max(1, width * width))
    return [slice(i, min(i + step, m)) for i in range(0, m, step)]


def knowledge_gradient(model, X, A):
    r"""Exact knowledge gradient on the discrete set ``A`` at each row of ``X``.

    :math:`\mathrm{KG}_n(x) = \min_A\mu_n - E_n[\min_A\mu_{n+1} \mid x_{n+1} = x]` (minimization).

    After observing :math:`y` at :math:`x`, :math:`\mu_{n+1}(a) = \mu_n(a) + \tilde\sigma(a, x) Z` with
    :math:`\tilde\sigma(a, x) = \Sigma_n(a, x)/\sqrt{\Sigma_n(x, x) + \lambda^2}` and :math:`Z \sim N(0,1)`,
    so KG is :func:`expected_max_of_lines` of :math:`-\mu_n(a)` with slopes :math:`\tilde\sigma(a, x)`,
    minus :math:`\max_a -\mu_n(a)`.  Cost: the joint posterior of ``A`` and ``X``, then :math:`O(|X||A|^2)`.
    """
    A, X = check_array(A, "A", ndim=2), check_array(X, "X", ndim=2)
    M = len(A)
    mean, cov = model.predict(np.vstack([A, X]), full_cov=True)
    # (M, m): the slopes sigma~(a, x) = Sigma_n(a, x) / sqrt(Sigma_n(x, x) + lambda^2)
    sig = cov[:M, M:] / np.sqrt(np.diag(cov)[M:] + model.noise_var)
    out = np.empty(len(X))
    for rows in _chunks(len(X), M):
        out[rows] = expected_max_of_lines(-mean[None, :M], sig[:, rows].T)
    return out - np.max(-mean[:M])


def noisy_expected_improvement(model, X, X_obs):
    r"""The tutorial's EI for noisy evaluations: :math:`\min_{i \le n}\mu_n(x_i) - E_n\min_{i \le n+1}\mu_{n+1}(x_i)`.

    The improvement is measured on the posterior mean at the *evaluated* points, ``X_obs`` and then
    :math:`x_{n+1} = x`: KG on :math:`\{x_1, \dots, x_n, x\}`, plus :math:`(\min_i \mu_n(x_i) - \mu_n(x))^+`
    because the baseline excludes :math:`x`.  It tends to closed-form EI as the noise goes to 0.
    """
    X, X_obs = check_array(X, "X", ndim=2), check_array(X_obs, "X_obs", ndim=2)
    n = len(X_obs)
    mean, cov = model.predict(np.vstack([X_obs, X]), full_cov=True)
    var_x = np.diag(cov)[n:]
    scale = np.sqrt(var_x + model.noise_var)
    # (m, n + 1): the lines of -mu_{n+1} at x_1, ..., x_n and at x
    a = -np.hstack([np.tile(mean[:n], (len(X), 1)), mean[n:, None]])
    b = np.hstack([cov[:n, n:].T, var_x[:, None]]) / scale[:, None]
    out = np.empty(len(X))
    for rows in _chunks(len(X), n + 1):
        out[rows] = expected_max_of_lines(a[rows], b[rows])
    return out - np.max(-mean[:n])


def _ei(model, X_obs, y_obs, rng):
    """EI against the best observed value (noise-free evaluations)."""
    best = float(np.min(y_obs))

    def score(X):
        mean, var = model.predict(X)
        return expected_improvement(mean, np.sqrt(var), best)
    return score


def _noisy_ei(model, X_obs, y_obs, rng):
    return lambda X: noisy_expected_improvement(model, X, X_obs)


def _ucb(model, X_obs, y_obs, rng, beta=4.0):
    def score(X):
        mean, var = model.predict(X)
        return upper_confidence_bound(mean, np.sqrt(var), beta)
    return score


def _mes(model, X_obs, y_obs, rng, n_grid=512, n_samples=64):
    """MES with samples of the minimum from joint posterior draws on a fresh Sobol grid."""
    grid = np.vstack([X_obs, sobol_design(n_grid, X_obs.shape[1], rng)])
    f_min = model.sample(grid, n_samples, rng).min(axis=1)

    def score(X):
        mean, var = model.predict(X)
        return max_value_entropy(mean, np.sqrt(var), f_min)
    return score


#: The acquisitions :func:`optlab.bayesopt.loop.bayes_opt` knows by name: ``make(model, X_obs, y_obs, rng) -> score``.
ACQUISITIONS = {"ei": _ei, "noisy_ei": _noisy_ei, "ucb": _ucb, "mes": _mes}


def sobol_design(n, d, rng=None):
    r"""The first ``n`` points of a scrambled Sobol sequence in :math:`[0, 1]^d` (``(n, d)``).

    >>> sobol_design(5, 2, rng=0).shape
    (5, 2)
    """
    n, d = check_int(n, "n", low=1), check_int(d, "d", low=1)
    m = int(np.ceil(np.log2(n)))
    return qmc.Sobol(d, scramble=True, seed=as_rng(rng)).random_base2(m)[:n]


def maximize_acquisition(score, dim, rng=None, *, n_candidates=1024, n_top=8, n_local=32,
                         scales=(0.1, 0.03, 0.01, 0.003), anchors=None):
    r"""Maximize ``score`` over :math:`[0, 1]^d`: a fresh Sobol set, then local polishing of the best points.

    The ``n_candidates`` scrambled Sobol points (new ones at every call), plus ``anchors`` (e.g. the
    evaluated points), are scored; the ``n_top`` best are polished in rounds, one per entry of
    ``scales``: ``n_local`` Gaussian perturbations of each, of that standard deviation (clipped to the
    cube), replace it where they score higher.  ``scales=()`` switches polishing off.

    Returns
    -------
    (ndarray, float)
        The best point ``(dim,)`` and its score.
    """
    check_callable(score, "score", signature="X -> (m,) scores")
    rng = as_rng(rng)
    U = sobol_design(check_int(n_candidates, "n_candidates", low=1), check_int(dim, "dim", low=1), rng)
    if anchors is not None and len(anchors):
        U = np.vstack([U, check_array(anchors, "anchors", shape=(None, dim))])
    values = np.asarray(score(U), dtype=float)
    top = np.argsort(-values)[:check_int(n_top, "n_top", low=1)]
    P, best = U[top], values[top]
    for scale in scales:
        scale = check_real(scale, "scales", low=0.0, low_open=True)
        trial = np.clip(P[:, None, :] + scale * rng.standard_normal((len(P), n_local, dim)), 0.0, 1.0)
        s = np.asarray(score(trial.reshape(-1, dim)), dtype=float).reshape(len(P), n_local)
        j = np.argmax(s, axis=1)
        better = s[np.arange(len(P)), j] > best
        P[better], best[better] = trial[better, j[better]], s[better, j[better]]
    k = int(np.argmax(best))
    return P[k].copy(), float(best[k])
