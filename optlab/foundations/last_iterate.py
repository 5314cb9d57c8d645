r"""The last iterate of (projected, proximal) SGD, run on many replicas at once.

:func:`sgd` runs stochastic (sub)gradient descent with an optional proximal
step and projection, and keeps both the last iterate and the running average.
``x0`` is one point ``(d,)`` or ``R`` independent replicas ``(R, d)``; the
oracles act row-wise, so a thousand runs cost one vectorized loop, and the
history records the mean and quantiles of the objective over the replicas.
Also here: the paper's step-size rules (:func:`step_size`), soft-thresholding
and three test problems; noise models are in :mod:`optlab.foundations.noise`.

References
----------
Z. Liu and Z. Zhou, ICLR 2024, arXiv:2312.08531 (``liu2024revisiting``); see :func:`sgd`.

Book: chapters/foundations/last_iterate.ipynb
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..core import Problem, Result, Trace, as_array, as_rng, as_schedule
from ..schedules import constant, inverse_sqrt, inverse_time
from .noise import gaussian, get_noise

__all__ = ["sgd", "LastIterateResult", "step_size", "soft_threshold", "loglog_slope",
           "l1_norm_problem", "least_squares_problem", "composite_problem"]


@dataclass(repr=False)
class LastIterateResult(Result):
    """A :class:`~optlab.core.Result` that also carries the running average ``x_avg`` and ``f_avg``."""

    x_avg: Optional[np.ndarray] = None
    f_avg: float = float("nan")


def step_size(rule: str, *, eta: float = 1.0, n_iters: Optional[int] = None, mu: Optional[float] = None):
    r"""The paper's step-size rules as :mod:`optlab.schedules` objects.

    For steps :math:`t = 0, 1, \dots`: ``"constant"`` is :math:`\eta/\sqrt{T}` (needs
    ``n_iters`` = T), ``"decaying"`` :math:`\eta/\sqrt{t+1}`, ``"strongly_convex"``
    :math:`1/(\mu (t+1))` (needs ``mu``).

    >>> step_size("constant", eta=2.0, n_iters=100)(5), step_size("strongly_convex", mu=0.5)(0)
    (0.2, 2.0)
    """
    if rule == "constant":
        if isinstance(n_iters, bool) or not isinstance(n_iters, numbers.Integral) or n_iters < 1:
            raise ValueError(f"n_iters must be a positive int for rule 'constant', got {n_iters!r}")
        return constant(eta / math.sqrt(n_iters))
    if rule == "decaying":
        return inverse_sqrt(eta)
    if rule == "strongly_convex":
        if mu is None:
            raise ValueError("mu (> 0) is required for rule 'strongly_convex'")
        return inverse_time(mu)
    raise ValueError(f"rule must be 'constant', 'decaying' or 'strongly_convex', got {rule!r}")


def soft_threshold(v, tau):
    r"""Soft-thresholding, the prox of :math:`\tau\|\cdot\|_1`: :math:`\mathrm{sign}(v)\max(|v| - \tau, 0)`.

    >>> soft_threshold(np.array([-2.0, 0.3, 1.5]), 0.5).tolist()
    [-1.5, 0.0, 1.0]
    """
    v = np.asarray(v, dtype=float)
    return np.sign(v) * np.maximum(np.abs(v) - tau, 0.0)


def loglog_slope(t, y) -> float:
    r"""Least-squares slope of :math:`\log y` against :math:`\log t` (a rate :math:`t^{s}` has slope s).

    >>> round(loglog_slope([10, 100, 1000], [1.0, 0.1, 0.01]), 3)
    -1.0
    """
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    if t.shape != y.shape or t.ndim != 1 or t.size < 2 or np.any(t <= 0) or np.any(y <= 0):
        raise ValueError("t and y must be 1-D arrays of the same length >= 2 with positive entries")
    return float(np.polyfit(np.log(t), np.log(y), 1)[0])


def sgd(stoch_grad, x0, *, lr, n_iters: int, f=None, prox=None, project=None, n_log: int = 30,
        quantiles=(0.5, 0.95), rng=None, callback=None) -> LastIterateResult:
    r"""Projected/proximal SGD that keeps the last iterate and the running average.

    What practitioners deploy is the *last* iterate of SGD, while the classical
    guarantees are for the average.  This runs the chapter's composite step on
    one point or on ``R`` replicas at once and records how good both are, in
    mean and in quantiles over the replicas.

    Parameters
    ----------
    stoch_grad : callable
        ``stoch_grad(x, rng) -> array`` shaped like ``x``: an unbiased stochastic
        (sub)gradient of the smooth or Lipschitz part :math:`f`, row-wise for a batch.
    x0 : array_like, shape (d,) or (R, d)
        One feasible starting point, or one row per replica (not modified).
    lr : float or callable
        Step size :math:`\eta_t`, a number or a schedule ``t -> float``
        (``t = 0, 1, ...``), e.g. from :func:`step_size`.
    n_iters : int
        Number of steps T.
    f : callable or None
        Objective to log, ``f(x)`` -> float or ``(R,)`` array (the full
        :math:`F = f + h` in the composite case).
    prox : callable or None
        ``prox(v, lr)``, the proximal map of ``lr * h`` (row-wise).
    project : callable or None
        ``project(x)``, the Euclidean projection onto the domain X (row-wise).
    n_log : int
        About this many logged steps, geometrically spaced in ``[1, n_iters]``
        (plus step 0): cheap, and evenly spread on a log axis.
    quantiles : sequence of float in [0, 1]
        Quantiles of ``f`` over the replicas to log.
    rng : None, int or numpy.random.Generator
        The one source of randomness, passed to ``stoch_grad``.
    callback : callable or None
        ``callback(record) -> bool`` at each logged step; True stops the run.

    Returns
    -------
    LastIterateResult
        ``x``: the last iterate(s), shaped like ``x0``; ``x_avg``: the running
        average :math:`\bar x_T = \frac1T\sum_{t=1}^T x_t`; ``f``/``f_avg``: the
        mean of ``f`` over replicas at each.  History columns: ``t`` (steps
        done), ``n_evals``, ``lr`` (last step size), ``sparsity``/``sparsity_avg`` (share of
        exactly zero coordinates) and, with ``f``: ``f``, ``f_avg`` (means over
        replicas) and ``f_q50``, ``f_q95``, ``f_avg_q95``, ... (quantiles).

    Notes
    -----
    With :math:`\hat g_t` the stochastic gradient at :math:`x_t`, the step is
    :math:`x_{t+1} = \Pi_X(\mathrm{prox}_{\eta_t h}(x_t - \eta_t \hat g_t))`, the
    Euclidean case of the paper's composite stochastic mirror descent
    :math:`x_{t+1} = \arg\min_{x\in X} h(x) + \langle \hat g_t, x\rangle + \|x - x_t\|^2/(2\eta_t)`.
    Prox then projection solves it exactly when X is a box and h separable
    (the l1 norm); otherwise pass one ``prox`` that does.  Cost per step: one
    stochastic gradient, prox and projection per replica, O(Rd) in all.

    Guarantee (paper, Euclidean case, X may be unbounded; :math:`D = \|x_0 - x^\star\|`):
    for convex G-Lipschitz f and :math:`\eta_t = \eta/\sqrt T`, noise of conditional
    variance at most :math:`\sigma^2` gives
    :math:`\mathbb E F(x_T) - F^\star = O((D^2/\eta + \eta(G^2 + \sigma^2)\log T)/\sqrt T)`
    (the classical argument of the chapter proves this form); sub-Gaussian noise gives the
    same order with probability :math:`1-\delta`, up to factors logarithmic in :math:`1/\delta`.
    For :math:`\mu`-strongly convex F, steps of order :math:`1/(\mu t)` give
    :math:`O((G^2 + \sigma^2)\log T/(\mu T))` in expectation, and the same order with high
    probability.  The exact logarithmic factors of each variant are in the paper.  The paper
    also covers L-smooth f (steps capped at :math:`1/(2L)`), mirror maps and, in expectation,
    heavy-tailed noise; it indexes from :math:`x_1`.

    References
    ----------
    Z. Liu and Z. Zhou, Revisiting the last-iterate convergence of stochastic
    gradient methods, ICLR 2024, arXiv:2312.08531 (``liu2024revisiting``).
    O. Shamir and T. Zhang, ICML 2013 (``shamir2013stochastic``); N. Harvey,
    C. Liaw, Y. Plan and S. Randhawa, COLT 2019 (``harvey2019tight``).

    Book: chapters/foundations/last_iterate.ipynb

    Examples
    --------
    Deterministic steps on :math:`\tfrac12\|x\|^2` halve x; the average lags behind:

    >>> res = sgd(lambda x, rng: x, [4.0, -2.0], lr=0.5, n_iters=3, f=lambda x: 0.5 * x @ x)
    >>> res.x.tolist(), np.round(res.x_avg, 3).tolist(), round(res.f, 3), res.history["t"].tolist()
    ([0.5, -0.25], [1.167, -0.583], 0.156, [0, 1, 2, 3])
    """
    x = as_array(x0, "x0", ndim=None)
    if x.ndim not in (1, 2):
        raise ValueError(f"x0 must have shape (d,) or (R, d), got shape {x.shape}")
    for name, value, low in (("n_iters", n_iters, 1), ("n_log", n_log, 2)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    for name, fn in (("stoch_grad", stoch_grad), ("f", f), ("prox", prox), ("project", project)):
        if not callable(fn) and (fn is not None or name == "stoch_grad"):
            raise TypeError(f"{name} must be callable{'' if name == 'stoch_grad' else ' or None'}, "
                            f"got {type(fn).__name__}")
    qs = np.asarray(quantiles, dtype=float).ravel()
    if not np.all((qs >= 0) & (qs <= 1)):
        raise ValueError(f"quantiles must lie in [0, 1], got {list(quantiles)}")
    schedule, rng = as_schedule(lr), as_rng(rng)
    steps = {0, *np.unique(np.round(np.geomspace(1, n_iters, n_log)).astype(int)).tolist()}  # logged
    trace = Trace("sgd", {"lr": schedule, "n_iters": int(n_iters), "n_replicas": len(x) if x.ndim == 2 else 1,
                          "quantiles": qs.tolist(), "prox": prox is not None, "project": project is not None},
                  callback)
    x_avg, message, n_done = x.copy(), None, 0

    def record(t, eta):
        row = {"lr": eta, "sparsity": np.mean(x == 0), "sparsity_avg": np.mean(x_avg == 0)}
        if f is not None:
            fx, fa = np.atleast_1d(f(x)), np.atleast_1d(f(x_avg))
            row.update(f=fx.mean(), f_avg=fa.mean())
            row.update({f"f_q{100 * q:g}": v for q, v in zip(qs, np.quantile(fx, qs))})
            row.update({f"f_avg_q{100 * q:g}": v for q, v in zip(qs, np.quantile(fa, qs))})
        return trace.log(t, **row)

    stopped = record(0, float(schedule(0)))
    for t in range(0 if stopped else n_iters):
        eta = float(schedule(t))
        if not (math.isfinite(eta) and eta >= 0):
            raise ValueError(f"lr must give finite non-negative steps, got {eta} at step t={t}")
        g = np.asarray(stoch_grad(x, rng), dtype=float)
        trace.count("stoch_grad")
        if g.shape != x.shape:
            raise ValueError(f"stoch_grad returned shape {g.shape}, expected {x.shape}")
        x = x - eta * g
        if prox is not None:
            x = prox(x, eta)
            trace.count("prox")
        if project is not None:
            x = project(x)
            trace.count("project")
        x_avg += (x - x_avg) / (t + 1)
        n_done = t + 1
        if n_done in steps:
            if not np.all(np.isfinite(x)):
                message = f"iterates became non-finite by step {n_done}"
                break
            if record(n_done, eta):
                break
    f_last = float(np.mean(f(x))) if f is not None else None
    res = trace.result(x, f_last, n_iters=n_done, message=message)
    return LastIterateResult(**vars(res), x_avg=x_avg,
                             f_avg=float(np.mean(f(x_avg))) if f is not None else float("nan"))


def _dim(dim) -> int:
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    return int(dim)


def l1_norm_problem(dim: int = 5, noise=None) -> Problem:
    r"""Convex G-Lipschitz, unbounded domain: :math:`f(x) = \|x\|_1` on :math:`\mathbb R^d`.

    Stochastic subgradient ``sign(x) + noise``; ``x0 = 1``, ``f_star = 0``,
    :math:`G = \sqrt d`.  ``noise``: a noise model (default ``gaussian(1.0)``).
    """
    dim, noise = _dim(dim), gaussian(1.0) if noise is None else get_noise(noise)

    def f(x):
        return np.abs(np.asarray(x, dtype=float)).sum(axis=-1)

    def stoch_grad(x, rng):
        return np.sign(x) + noise(np.shape(x), rng)

    return Problem(f"l1_norm(d={dim})", f=f, grad=np.sign, x0=np.ones(dim), stoch_grad=stoch_grad,
                   x_star=np.zeros(dim), f_star=0.0, info={"lipschitz": math.sqrt(dim), "noise": noise})


def least_squares_problem(n_samples: int = 3, dim: int = 5, noise=None, rng=0) -> Problem:
    r"""Smooth convex, not strongly convex: :math:`f(x) = \|Ax - b\|^2/(2n)` with n < d, ``f_star = 0``.

    ``b = A 1`` is fitted exactly, so the minimizers form an affine subspace;
    stochastic gradient ``A^T (Ax - b)/n + noise``; ``x0 = 0``.
    """
    dim, noise = _dim(dim), gaussian(1.0) if noise is None else get_noise(noise)
    A = as_rng(rng).standard_normal((_dim(n_samples), dim))
    b = A @ np.ones(dim)

    def f(x):
        return 0.5 * np.sum((np.asarray(x, dtype=float) @ A.T - b) ** 2, axis=-1) / n_samples

    def grad(x):
        return (np.asarray(x, dtype=float) @ A.T - b) @ A / n_samples

    def stoch_grad(x, rng):
        return grad(x) + noise(np.shape(x), rng)

    return Problem(f"least_squares(n={n_samples}, d={dim})", f=f, grad=grad, x0=np.zeros(dim),
                   stoch_grad=stoch_grad, f_star=0.0, info={"A": A, "b": b, "noise": noise,
                                                            "smoothness": np.linalg.norm(A, 2) ** 2 / n_samples})


def composite_problem(dim: int = 5, lam: float = 1.0, noise=None) -> Problem:
    r"""Strongly convex composite: :math:`F(x) = \tfrac12\|x\|^2 + \lambda\|x\|_1`, minimum 0 at 0.

    ``stoch_grad`` is ``x + noise`` (the smooth part, :math:`\mu = 1`);
    ``info["prox"](v, lr)`` soft-thresholds at ``lr * lam``; ``x0 = 1``.
    """
    dim, noise = _dim(dim), gaussian(1.0) if noise is None else get_noise(noise)
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not lam >= 0:
        raise ValueError(f"lam must be a number >= 0, got {lam!r}")

    def f(x):
        x = np.asarray(x, dtype=float)
        return 0.5 * np.sum(x ** 2, axis=-1) + lam * np.abs(x).sum(axis=-1)

    def stoch_grad(x, rng):
        return x + noise(np.shape(x), rng)

    def prox(v, lr):
        return soft_threshold(v, lr * lam)

    return Problem(f"composite_l1(d={dim}, lam={lam:g})", f=f, grad=lambda x: np.asarray(x, dtype=float),
                   x0=np.ones(dim), stoch_grad=stoch_grad, x_star=np.zeros(dim), f_star=0.0,
                   info={"prox": prox, "mu": 1.0, "lam": float(lam), "noise": noise})
