r"""The last iterate of (projected, proximal) SGD, run on many replicas at once.

:func:`sgd` runs stochastic (sub)gradient descent with an optional proximal
step and projection, and keeps both the last iterate and the running average.
``x0`` is one point ``(d,)`` or ``R`` independent replicas ``(R, d)``; the
oracles act row-wise, so a thousand runs cost one vectorized loop, and the
history records the mean and quantiles of the objective over the replicas.
Also here: the paper's step-size rules (:func:`step_size`), a sweep over
horizons (:func:`horizon_sweep`) and three test problems.  Soft-thresholding,
rate fitting and the noise models live in :mod:`optlab.prox`,
:mod:`optlab.rates` and :mod:`optlab.noise` (re-exported here).

References
----------
Z. Liu and Z. Zhou, ICLR 2024, arXiv:2312.08531 (``liu2024revisiting``); see :func:`sgd`.

Book: chapters/foundations/last_iterate.ipynb
"""
from __future__ import annotations

import math

import numpy as np

from ..core import (
    Problem,
    Result,
    Trace,
    as_rng,
    as_schedule,
    check_oracle,
    check_rowwise,
    geometric_steps,
    quantile_names,
    replica_stats,
    step_at,
)
from ..noise import gaussian, get_noise
from ..prox import l1_prox, soft_threshold
from ..rates import loglog_slope
from ..schedules import capped, constant, inverse_sqrt, inverse_time, linear_decay
from ..validate import check_array, check_callable, check_choice, check_int, check_positive, check_real

__all__ = ["sgd", "step_size", "horizon_sweep", "soft_threshold", "loglog_slope",
           "l1_norm_problem", "least_squares_problem", "composite_problem"]

_RULES = {"horizon": {"eta", "n_iters", "L"}, "anytime": {"eta", "L"}, "linear_decay": {"eta", "n_iters", "L"},
          "strongly_convex": {"mu", "L"}}


def step_size(rule: str, *, eta=None, n_iters=None, mu=None, L=None):
    r"""The paper's step-size rules as :mod:`optlab.schedules` objects (``t = 0, 1, ...``).

    * ``"horizon"``: :math:`\eta/\sqrt T` at every step (needs the horizon ``n_iters`` = T);
    * ``"anytime"``: :math:`\eta/\sqrt{t+1}` (no horizon needed);
    * ``"linear_decay"``: :math:`\eta (T - t)/T^{3/2}`, the known-horizon schedule of
      Zamani and Glineur that removes the :math:`\log T` of the last iterate (nonsmooth case);
    * ``"strongly_convex"``: :math:`1/(\mu (t+1))` (needs ``mu``).

    ``eta`` defaults to 1.  With ``L`` (an L-smooth ``f``), every rule is capped at
    :math:`1/(2L)`, as in the paper's smooth case.  An argument a rule does not use
    is an error, not silently ignored.

    >>> step_size("horizon", eta=2.0, n_iters=100)(5), step_size("strongly_convex", mu=0.5)(0)
    (0.2, 2.0)
    >>> step_size("anytime", L=2.0)(0)
    0.25
    """
    check_choice(rule, "rule", _RULES)
    given = {k for k, v in {"eta": eta, "n_iters": n_iters, "mu": mu, "L": L}.items() if v is not None}
    unused = sorted(given - _RULES[rule])
    if unused:
        raise ValueError(f"rule {rule!r} does not use {', '.join(unused)}; it takes {sorted(_RULES[rule])}")
    if rule in ("horizon", "linear_decay") and n_iters is None:
        raise ValueError(f"rule {rule!r} needs the horizon n_iters (an int >= 1)")
    if rule == "strongly_convex" and mu is None:
        raise ValueError("rule 'strongly_convex' needs mu, the strong-convexity constant (> 0)")
    eta = 1.0 if eta is None else check_positive(eta, "eta")
    if rule == "horizon":
        schedule = constant(eta / math.sqrt(check_int(n_iters, "n_iters", low=1)))
    elif rule == "linear_decay":
        T = check_int(n_iters, "n_iters", low=1)
        schedule = linear_decay(eta / math.sqrt(T), n_iters=T)
    elif rule == "anytime":
        schedule = inverse_sqrt(eta)
    else:
        schedule = inverse_time(check_positive(mu, "mu"))
    return schedule if L is None else capped(schedule, 1.0 / (2.0 * check_positive(L, "L")))


def sgd(stoch_grad, x0, *, lr, n_iters: int, f=None, prox=None, project=None,
        n_log: int = 30, quantiles=(0.5, 0.95), rng=None, callback=None) -> Result:
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
        Objective to log, ``f(x)`` -> float, or ``(R,)`` values for ``(R, d)``
        replicas (checked to be row-wise); the whole :math:`F = f + h` in the
        composite case (``Problem.F``).
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
    Result
        ``x``: the last iterate(s), shaped like ``x0``; ``f``: the mean of ``f`` over
        the replicas at ``x``.  Extras: ``x_avg``, the running average
        :math:`\bar x_T = \frac1T\sum_{t=1}^T x_t`, and ``f_avg``, the mean of ``f`` at
        it.  History columns: ``t`` (steps done), ``n_evals``, ``lr`` (the step that
        reached the row), ``sparsity``/``sparsity_avg`` (share of exactly zero
        coordinates) and, with ``f``: ``f``, ``f_avg`` (means over replicas) and
        ``f_q50``, ``f_q95``, ``f_avg_q95``, ... (quantiles).

    Notes
    -----
    With :math:`\hat g_t` the stochastic gradient at :math:`x_t`, the step is
    :math:`x_{t+1} = \Pi_X(\mathrm{prox}_{\eta_t h}(x_t - \eta_t \hat g_t))`, the
    Euclidean case of the paper's composite stochastic mirror descent
    :math:`x_{t+1} = \arg\min_{x\in X} h(x) + \langle \hat g_t, x\rangle + \|x - x_t\|^2/(2\eta_t)`.
    Prox then projection solves it exactly when X is a box and h separable
    (the l1 norm); otherwise pass one ``prox`` that does.  Cost per step: one
    stochastic gradient, prox and projection per replica, O(Rd) in all.

    Guarantee (the paper, Euclidean case, X may be unbounded; :math:`D = \|x_0 - x^\star\|`):
    for convex G-Lipschitz f and :math:`\eta_t = \eta/\sqrt T`, noise of conditional
    variance at most :math:`\sigma^2` gives
    :math:`\mathbb E F(x_T) - F^\star = \tilde O((D^2/\eta + \eta(G^2 + \sigma^2))/\sqrt T)`;
    sub-Gaussian noise gives the same order with probability :math:`1-\delta`, with a
    factor polylogarithmic in :math:`1/\delta`.  With strong convexity (of the smooth part
    f or of h) and steps of order :math:`1/(\mu t)` the rate is :math:`\tilde O(1/(\mu T))`.
    The paper also covers L-smooth f (steps capped at :math:`1/(2L)`), mirror maps and,
    in expectation, heavy-tailed noise; it indexes from :math:`x_1`.  The exact powers of
    the logarithms are in the paper and were not verified for this book (see the chapter).

    References
    ----------
    Z. Liu and Z. Zhou, Revisiting the last-iterate convergence of stochastic
    gradient methods, ICLR 2024, arXiv:2312.08531 (``liu2024revisiting``).
    O. Shamir and T. Zhang, ICML 2013 (``shamir2013stochastic``); N. Harvey,
    C. Liaw, Y. Plan and S. Randhawa, COLT 2019 (``harvey2019tight``); M. Zamani and
    F. Glineur, arXiv:2307.11134 (``zamani2023exact``).

    Book: chapters/foundations/last_iterate.ipynb

    Examples
    --------
    Deterministic steps on :math:`\tfrac12\|x\|^2` halve x; the average lags behind:

    >>> res = sgd(lambda x, rng: x, [4.0, -2.0], lr=0.5, n_iters=3, f=lambda x: 0.5 * x @ x)
    >>> res.x.tolist(), np.round(res.x_avg, 3).tolist(), round(res.f, 3), res.history["t"].tolist()
    ([0.5, -0.25], [1.167, -0.583], 0.156, [0, 1, 2, 3])
    """
    x = check_array(x0, "x0", ndim=(1, 2))
    n_iters = check_int(n_iters, "n_iters", low=1)
    steps = geometric_steps(n_iters, n_log)
    check_callable(stoch_grad, "stoch_grad", signature="(x, rng) -> array")
    for name, fn in (("f", f), ("prox", prox), ("project", project)):
        check_callable(fn, name, optional=True)
    names, schedule, rng = quantile_names(quantiles), as_schedule(lr), as_rng(rng)
    params = {"lr": schedule, "n_iters": n_iters, "quantiles": list(names),
              "n_replicas": len(x) if x.ndim == 2 else 1,
              "prox": prox is not None, "project": project is not None}
    trace = Trace("sgd", params, callback)

    def objective(z):
        if z.ndim == 2:
            return check_rowwise(f, z)
        return np.atleast_1d(check_oracle(f, "f", z, shape=()))

    def record(t, eta):
        row = {"lr": eta, "sparsity": np.mean(x == 0),
               "sparsity_avg": np.mean(x_avg == 0)}
        if f is not None:
            row.update(replica_stats(objective(x), names, "f"))
            row.update(replica_stats(objective(x_avg), names, "f_avg"))
        return trace.log(t, **row)

    x_avg, n_done = x.copy(), 0
    stopped = record(0, np.nan)
    for t in range(0 if stopped else n_iters):
        eta = step_at(schedule, t)
        g = check_oracle(stoch_grad, "stoch_grad", x, rng)
        trace.count("stoch_grad")
        x = x - eta * g
        if prox is not None:
            x = check_oracle(prox, "prox", x, eta)
            trace.count("prox")
        if project is not None:
            x = check_oracle(project, "project", x)
            trace.count("project")
        x_avg += (x - x_avg) / (t + 1)        # running average of x_1, ..., x_{t+1}
        n_done = t + 1
        if n_done in steps and (trace.diverged(x, n_done) or record(n_done, eta)):
            break
    finite = f is not None and trace.message is None
    f_last = float(np.mean(objective(x))) if finite else None
    f_avg = float(np.mean(objective(x_avg))) if finite else float("nan")
    return trace.result(x, f_last, n_iters=n_done, x_avg=x_avg, f_avg=f_avg)


def horizon_sweep(problem: Problem, horizons, *, lr, n_replicas: int, rng=None, x0=None, prox=None,
                  project=None, columns=("f", "f_q95", "f_avg", "sparsity")) -> dict:
    r"""One run of :func:`sgd` per horizon T, each from ``n_replicas`` copies of ``x0``: final statistics.

    Parameters
    ----------
    problem : Problem
        Gives ``stoch_grad`` and the logged objective ``problem.F``.
    horizons : sequence of int
        The horizons T.
    lr : callable
        ``lr(T)``: the schedule for horizon T, e.g. ``lambda T: step_size("horizon", n_iters=T)``.
    n_replicas : int
        Replicas per horizon.
    rng : None, int or Generator
        One stream shared by the runs, in order.
    x0 : array_like or None
        The start (default ``problem.x0``), copied to every replica.
    prox, project : callable or None
        Passed to :func:`sgd` (default: the problem's ``prox``).
    columns : sequence of str
        History columns to report at the end of each run.

    Returns
    -------
    dict
        ``{column: array over horizons}`` and ``"x"``: the final replicas ``(R, d)`` of each run.

    Examples
    --------
    >>> p = l1_norm_problem(dim=2)
    >>> out = horizon_sweep(p, [10, 100], lr=lambda T: step_size("horizon", n_iters=T), n_replicas=50, rng=0)
    >>> out["f"].shape, len(out["x"]), out["x"][0].shape
    ((2,), 2, (50, 2))
    """
    check_callable(lr, "lr", signature="T -> schedule")
    horizons = [check_int(T, "horizons", low=1) for T in horizons]
    n_replicas, rng = check_int(n_replicas, "n_replicas", low=1), as_rng(rng)
    start = np.tile(check_array(problem.x0 if x0 is None else x0, "x0", ndim=1), (n_replicas, 1))
    out = {c: [] for c in columns} | {"x": []}
    for T in horizons:
        res = sgd(problem.stoch_grad, start, lr=lr(T), n_iters=T, f=problem.F,
                  prox=problem.prox if prox is None else prox, project=project, n_log=2, rng=rng)
        for c in columns:
            out[c].append(res.history.last(c))
        out["x"].append(res.x)
    return {c: (v if c == "x" else np.array(v)) for c, v in out.items()}


# --------------------------------------------------------------------------- the chapter's problems

def l1_norm_problem(dim: int = 5, noise=None) -> Problem:
    r"""Convex G-Lipschitz, unbounded domain: :math:`f(x) = \|x\|_1` on :math:`\mathbb R^d`.

    Stochastic subgradient ``sign(x) + noise``; ``x0 = 1``, ``f_star = 0``,
    :math:`G = \sqrt d`.  ``noise``: a noise model (default ``gaussian(1.0)``).
    """
    dim, noise = check_int(dim, "dim", low=1), gaussian(1.0) if noise is None else get_noise(noise)

    def f(x):
        return np.abs(np.asarray(x, dtype=float)).sum(axis=-1)

    def stoch_grad(x, rng):
        return np.sign(x) + noise(np.shape(x), rng)

    return Problem(f"l1_norm(d={dim})", f=f, grad=np.sign, x0=np.ones(dim), stoch_grad=stoch_grad,
                   x_star=np.zeros(dim), f_star=0.0, G=math.sqrt(dim), info={"noise": noise})


def least_squares_problem(n_samples: int = 3, dim: int = 5, noise=None, rng=0) -> Problem:
    r"""Smooth convex, not strongly convex: :math:`f(x) = \|Ax - b\|^2/(2n)` with n < d, ``f_star = 0``.

    ``b = A 1`` is fitted exactly, so the minimizers form an affine subspace;
    stochastic gradient ``A^T (Ax - b)/n + noise``; ``x0 = 0``; ``L`` the largest
    eigenvalue of ``A^T A / n``.
    """
    n_samples, dim = check_int(n_samples, "n_samples", low=1), check_int(dim, "dim", low=1)
    noise = gaussian(1.0) if noise is None else get_noise(noise)
    A = as_rng(rng).standard_normal((n_samples, dim))
    b = A @ np.ones(dim)

    def f(x):
        return 0.5 * np.sum((np.asarray(x, dtype=float) @ A.T - b) ** 2, axis=-1) / n_samples

    def grad(x):
        return (np.asarray(x, dtype=float) @ A.T - b) @ A / n_samples

    def stoch_grad(x, rng):
        return grad(x) + noise(np.shape(x), rng)

    return Problem(f"least_squares(n={n_samples}, d={dim})", f=f, grad=grad, x0=np.zeros(dim),
                   stoch_grad=stoch_grad, f_star=0.0, L=float(np.linalg.norm(A, 2) ** 2 / n_samples), mu=0.0,
                   info={"A": A, "b": b, "noise": noise})


def composite_problem(dim: int = 5, lam: float = 1.0, noise=None) -> Problem:
    r"""Strongly convex composite: :math:`F(x) = \tfrac12\|x\|^2 + \lambda\|x\|_1`, minimum 0 at 0.

    The split is explicit: the smooth part :math:`f = \tfrac12\|x\|^2` (``f``, ``grad``,
    ``stoch_grad = x + noise``; :math:`L = \mu = 1`), the non-smooth part
    :math:`h = \lambda\|x\|_1` (``h``, and ``prox(v, lr)``: soft-thresholding at
    ``lr * lam``), and ``F = f + h`` the whole objective; ``x0 = 1``.
    """
    dim, noise = check_int(dim, "dim", low=1), gaussian(1.0) if noise is None else get_noise(noise)
    lam = check_real(lam, "lam", low=0.0)

    def f(x):
        return 0.5 * np.sum(np.asarray(x, dtype=float) ** 2, axis=-1)

    def h(x):
        return lam * np.abs(np.asarray(x, dtype=float)).sum(axis=-1)

    def stoch_grad(x, rng):
        return np.asarray(x, dtype=float) + noise(np.shape(x), rng)

    return Problem(f"composite_l1(d={dim}, lam={lam:g})", f=f, grad=lambda x: np.asarray(x, dtype=float),
                   h=h, prox=l1_prox(lam), x0=np.ones(dim), stoch_grad=stoch_grad, x_star=np.zeros(dim),
                   f_star=0.0, L=1.0, mu=1.0, info={"lam": lam, "noise": noise})
