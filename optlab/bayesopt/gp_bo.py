r"""The chapter's checks of the acquisition functions: quadrature, Monte Carlo, simulation, entropy.

The tutorial gives each acquisition function twice: as an expectation under the GP posterior, and
as a formula.  This module computes the expectations independently of the formulas of
:mod:`optlab.bayesopt.acquisition`, so that the chapter (and its claim) can check one against the
other:

* :func:`ei_quadrature` and :func:`ei_monte_carlo`: :math:`E_n[(f^*_n - f(x))^+]` by quadrature and
  by sampling, against the closed form :func:`~optlab.bayesopt.acquisition.expected_improvement`;
* :func:`kg_simulation`: the knowledge gradient by the tutorial's simulation (Algorithm 2: draw
  :math:`y_{n+1}`, refit, minimize the new mean, average), against the exact discrete
  :func:`~optlab.bayesopt.acquisition.knowledge_gradient`;
* :func:`entropy_search`: entropy search on a grid, :math:`H(P_n(x^*)) - E_n H(P_{n+1}(x^*))`, by
  Monte Carlo over posterior paths conditioned on fantasized observations;
* :func:`one_d_example`: the chapter's 1-D objective and data.

The GP is :mod:`optlab.bayesopt.gp`, the loop :mod:`optlab.bayesopt.loop`; both are shared with the
next chapter.

References
----------
P. I. Frazier, A tutorial on Bayesian optimization, arXiv:1807.02811, 2018 (``frazier2018tutorial``);
P. Hennig and C. J. Schuler, Entropy search for information-efficient global optimization, JMLR 13,
2012 (``hennig2012entropy``).

Book: chapters/bayesopt/gp_bo.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import as_rng
from ..validate import check_array, check_int, check_real

__all__ = ["ei_quadrature", "ei_monte_carlo", "kg_simulation", "entropy_search", "one_d_example"]


def _ei_args(mean, sd, best):
    mean = check_array(mean, "mean", ndim=1)
    sd = check_array(sd, "sd", shape=mean.shape)
    if np.any(sd <= 0):
        raise ValueError("sd must be > 0 at every point")
    return mean, sd, check_real(best, "best")


def ei_quadrature(mean, sd, best, n_nodes=128):
    r"""EI (minimization) by Gauss-Legendre quadrature up to the kink.

    :math:`\mathrm{EI} = \sigma\int_{-\infty}^{c}(c - z)\varphi(z)\,dz`.

    With :math:`\Delta = f^*_n - \mu` and :math:`c = \Delta/\sigma`, the improvement is positive only
    for :math:`z < c`; the integral runs over :math:`[\min(c, 0) - 12, c]` (the Gaussian mass below
    is under :math:`10^{-32}`).  Integrating up to the kink keeps the integrand smooth: Gauss-Hermite
    on the whole line, whose integrand has a kink at :math:`c`, only reaches about :math:`10^{-3}`.

    >>> round(float(ei_quadrature([0.0], [1.0], 0.0)[0]), 8)   # 1/sqrt(2 pi)
    0.39894228
    """
    mean, sd, best = _ei_args(mean, sd, best)
    t, w = np.polynomial.legendre.leggauss(check_int(n_nodes, "n_nodes", low=2))
    c = (best - mean) / sd
    lo = np.minimum(c, 0.0) - 12.0
    half = 0.5 * (c - lo)[:, None]
    z = lo[:, None] + half * (t + 1.0)                            # nodes on [lo, c]
    phi = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    return sd * np.sum((c[:, None] - z) * phi * w * half, axis=1)


def ei_monte_carlo(mean, sd, best, n_samples, rng=None):
    r"""EI by Monte Carlo, :math:`\frac1S\sum_s (f^*_n - \mu - \sigma Z_s)^+`, and its standard error.

    Returns
    -------
    (ndarray, ndarray)
        The estimate and its standard error at each point.

    >>> est, se = ei_monte_carlo([0.0], [1.0], 0.0, 100_000, rng=0)
    >>> bool(abs(est[0] - 0.398942) < 4 * se[0])
    True
    """
    mean, sd, best = _ei_args(mean, sd, best)
    S = check_int(n_samples, "n_samples", low=2)
    Z = as_rng(rng).standard_normal((len(mean), S))
    gain = np.maximum(best - (mean[:, None] + sd[:, None] * Z), 0.0)
    return gain.mean(axis=1), gain.std(axis=1, ddof=1) / np.sqrt(S)


def kg_simulation(model, X, A, n_fantasies, rng=None):
    r"""The knowledge gradient by simulation (the tutorial's Algorithm 2) on the discrete set ``A``.

    For each row :math:`x` of ``X``: draw :math:`y^{(j)} \sim N(\mu_n(x), \sigma^2_n(x) + \lambda^2)`,
    :math:`j = 1..J`, refit the posterior mean with :math:`(x, y^{(j)})` added (``model.fantasy_means``),
    and average :math:`\min_A \mu_n - \min_A \mu^{(j)}_{n+1}`.  No rank-one formula is used, so this
    checks :func:`optlab.bayesopt.acquisition.knowledge_gradient` from first principles.

    Parameters
    ----------
    model : GP
        A fitted :class:`optlab.bayesopt.gp.GP` (needs ``predict``, ``noise_var`` and ``fantasy_means``).
    X : array_like, shape (m, d)
    A : array_like, shape (M, d)
    n_fantasies : int
        :math:`J`.
    rng : None, int or Generator

    Returns
    -------
    (ndarray, ndarray)
        The estimates ``(m,)`` and their standard errors.

    >>> from optlab.bayesopt.gp import GP
    >>> gp = GP([[0.2], [0.7]], [0.0, 1.0], lengthscales=[0.3], noise_var=0.01)
    >>> est, se = kg_simulation(gp, [[0.5]], np.linspace(0, 1, 11)[:, None], 4000, rng=0)
    >>> bool(0 < est[0] and se[0] < 0.01)
    True
    """
    X, A = check_array(X, "X", ndim=2), check_array(A, "A", ndim=2)
    J = check_int(n_fantasies, "n_fantasies", low=2)
    mean_x, var_x = model.predict(X)
    Z = as_rng(rng).standard_normal((len(X), J))
    Y = mean_x[:, None] + np.sqrt(var_x + model.noise_var)[:, None] * Z  # y_{n+1} draws
    mu_next = model.fantasy_means(X, Y, A)                    # (m, J, |A|), refitted
    gain = model.predict(A)[0].min() - mu_next.min(axis=2)                # (m, J)
    return gain.mean(axis=1), gain.std(axis=1, ddof=1) / np.sqrt(J)


def _argmin_entropy(F):
    """Entropy of the empirical distribution of argmin over the last axis of F (..., S, G)."""
    G = F.shape[-1]
    idx = np.argmin(F, axis=-1)                                        # (..., S)
    rows = idx.reshape(-1, idx.shape[-1])
    offset = G * np.arange(len(rows))[:, None]                         # one bincount for all rows
    p = np.bincount((rows + offset).ravel(), minlength=G * len(rows)).reshape(len(rows), G) / rows.shape[1]
    ent = -np.sum(p * np.log(np.where(p > 0, p, 1.0)), axis=-1)
    return ent.reshape(idx.shape[:-1])


def entropy_search(model, X, grid, *, n_paths=256, n_fantasies=8, rng=None):
    r"""Entropy search on a grid: :math:`H(P_n(x^*)) - E_n[H(P_{n+1}(x^*)) \mid x_{n+1} = x]`, at each row of ``X``.

    :math:`P_n(x^*)` is the law of the grid point where a posterior path is smallest, estimated
    from ``n_paths`` joint draws.  A fantasized observation :math:`y = \mu_n(x) + \sqrt{\sigma_n^2(x) +
    \lambda^2}\,q_j` (Gauss-Hermite nodes :math:`q_j`, ``n_fantasies`` of them) conditions each path
    :math:`F` exactly (pathwise, Matheron's rule):
    :math:`F_{n+1} = F + \Sigma_n(\cdot, x)\,(y - F(x) - \varepsilon)/(\sigma_n^2(x) + \lambda^2)`,
    :math:`\varepsilon \sim N(0, \lambda^2)`.  The same draws serve every :math:`x` (common random
    numbers), which makes the curve smooth in :math:`x`.  Cost :math:`O(|X| J S |G|)`.

    Returns
    -------
    ndarray, shape (m,)
        The expected reduction of the entropy (nats) of the minimizer's location.

    >>> from optlab.bayesopt.gp import GP
    >>> gp = GP([[0.1], [0.9]], [0.0, 0.0], lengthscales=[0.2], noise_var=1e-6)
    >>> es = entropy_search(gp, [[0.1], [0.5]], np.linspace(0, 1, 21)[:, None], rng=0)
    >>> bool(es[1] > es[0] + 0.1)      # nothing to learn at an observed point
    True
    """
    X, grid = check_array(X, "X", ndim=2), check_array(grid, "grid", ndim=2)
    S, J = check_int(n_paths, "n_paths", low=2), check_int(n_fantasies, "n_fantasies", low=1)
    rng = as_rng(rng)
    G = len(grid)
    mean, cov = model.predict(np.vstack([grid, X]), full_cov=True)
    F = model.sample(np.vstack([grid, X]), S, rng)                   # (S, G + m) joint paths
    s2 = np.diag(cov)[G:] + model.noise_var                           # (m,)
    gain = cov[:G, G:] / s2                                           # (G, m): Sigma_n(g, x) / s2
    q, w = np.polynomial.hermite_e.hermegauss(J)
    w = w / w.sum()
    eps = np.sqrt(model.noise_var) * rng.standard_normal(S)
    h_now = _argmin_entropy(F[:, :G])
    out = np.empty(len(X))
    for rows in [slice(i, i + 8) for i in range(0, len(X), 8)]:       # chunks bound the memory
        y = mean[G:][rows, None] + np.sqrt(s2[rows])[:, None] * q     # (b, J) fantasized values
        resid = y[:, :, None] - F[:, G:][:, rows].T[:, None, :] - eps           # (b, J, S): y - F(x) - eps
        paths = F[:, :G] + resid[..., None] * gain[:, rows].T[:, None, None, :]   # (b, J, S, G)
        out[rows] = h_now - _argmin_entropy(paths) @ w
    return out


def one_d_example():
    r"""The chapter's 1-D objective :math:`f(x) = \sin 3x + 0.1x^2` on :math:`[-2, 2]` and seven data points.

    Returns
    -------
    (callable, ndarray, ndarray, ndarray)
        ``f`` (row-wise on ``(n, 1)``), the bounds ``(1, 2)``, ``X`` ``(7, 1)`` and ``y = f(X)``
        (two close pairs let the marginal likelihood see the correlation: with five spread-out
        points ML-II prefers a vanishing lengthscale, i.e. independent values).

    >>> f, bounds, X, y = one_d_example()
    >>> X.shape, round(float(f(np.array([[0.0]]))[0]), 3)
    ((7, 1), 0.0)
    """
    def f(X):
        x = np.asarray(X, dtype=float)[..., 0]
        return np.sin(3.0 * x) + 0.1 * x**2

    X = np.array([[-1.6], [-1.3], [-0.9], [0.1], [0.4], [0.8], [1.7]])
    return f, np.array([[-2.0, 2.0]]), X, f(X)
