r"""Consensus-based optimization (CBO) and consensus hopping: particles that agree on a Gibbs-weighted mean.

:func:`cbo` moves ``N`` interacting particles towards their *consensus point*, the mean
weighted by :math:`e^{-\alpha f}` (:func:`consensus_point`, computed stably by shifting the
exponent), plus noise proportional to each particle's distance from it.  :func:`consensus_hopping`
resamples a Gaussian cloud around the consensus point at every step.  The chapter reads both as
stochastic relaxations of gradient descent: the *exact* consensus point of the Gaussian
:math:`N(x, (\tau/\alpha) I)` tends to the proximal point :math:`\operatorname{prox}_{\tau f}(x)`
as :math:`\alpha \to \infty` (:func:`consensus_step_quadrature` against :func:`prox_on_grid`).
Also here: :func:`gd_from_starts` (gradient descent from many starts at once) and the test problem
:func:`shifted_rastrigin`.

References
----------
K. Riedl, T. Klock, C. Geldhauser and M. Fornasier, Gradient is all you need? How consensus-based
optimization can be interpreted as a stochastic relaxation of gradient descent, arXiv:2306.09778
(``riedl2023gradient``); see :func:`cbo`.

Book: chapters/zeroth_order/consensus.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Problem, Trace, as_rng, check_oracle
from ..problems import rastrigin
from ..validate import check_array, check_callable, check_choice, check_int, check_positive, check_real
from .estimators import evaluate

__all__ = ["consensus_point", "cbo_step", "cbo", "consensus_hopping", "consensus_step_quadrature",
           "prox_on_grid", "gd_from_starts", "shifted_rastrigin"]

NOISE = ("isotropic", "anisotropic")


def consensus_point(X, values, alpha):
    r"""The Gibbs-weighted mean :math:`v_\alpha = \sum_i w_i X^i / \sum_i w_i`, :math:`w_i = e^{-\alpha f(X^i)}`.

    ``X`` has shape ``(..., N, d)`` and ``values`` (the :math:`f(X^i)`) shape ``(..., N)``; the
    result has shape ``(..., d)``.  The exponent is shifted by its minimum over the particles
    (the log-sum-exp trick), which cancels in the ratio and keeps the best weight at 1.

    >>> consensus_point(np.array([[0.0], [1.0]]), np.array([1000.0, 1001.0]), 1.0).round(4).tolist()
    [0.2689]
    """
    X = check_array(X, "X", finite=False)
    values = check_array(values, "values", finite=False)
    alpha = check_positive(alpha, "alpha")
    if X.ndim < 2 or values.ndim < 1 or values.shape[-1] != X.shape[-2]:
        raise ValueError(f"values must have shape (..., N) for X of shape (..., N, d), "
                         f"got {values.shape} and {X.shape}")
    shifted = values - np.min(values, axis=-1, keepdims=True)
    w = np.exp(-alpha * shifted)
    return np.einsum("...n,...nd->...d", w, X) / np.sum(w, axis=-1)[..., None]


def cbo_step(X, v, xi, *, lam, sigma, dt, noise):
    r"""One Euler-Maruyama step of CBO, :math:`X^i - \lambda\,dt\,(X^i - v) + \sigma\sqrt{dt}\,D^i\xi^i`.

    ``D^i`` is :math:`\lVert X^i - v\rVert I` (``"isotropic"``) or :math:`\operatorname{diag}(X^i - v)`
    (``"anisotropic"``); ``xi`` are standard normal draws shaped like ``X``.

    >>> cbo_step(np.array([[2.0, 0.0]]), np.zeros(2), np.ones((1, 2)), lam=1.0, sigma=1.0, dt=0.25,
    ...          noise="isotropic").tolist()
    [[2.5, 1.0]]
    """
    X, v = check_array(X, "X", finite=False), check_array(v, "v", finite=False)
    xi = check_array(xi, "xi", finite=False)
    if X.ndim < 2 or v.shape != X.shape[:-2] + X.shape[-1:]:
        raise ValueError(f"v must have shape (..., d) for X of shape (..., N, d), "
                         f"got {v.shape}")
    if xi.size != 1 and xi.shape != X.shape:
        raise ValueError(f"xi must be a number or have the shape of X, {X.shape}, "
                         f"got {xi.shape}")
    lam, sigma = check_positive(lam, "lam"), check_real(sigma, "sigma", low=0.0)
    dt = check_real(dt, "dt", low=0.0, low_open=True)
    noise = check_choice(noise, "noise", NOISE)
    diff = X - v[..., None, :]
    if noise == "isotropic":
        scale = np.sqrt(np.einsum("...i,...i->...", diff, diff))[..., None]
    else:
        scale = diff
    return X - lam * dt * diff + sigma * np.sqrt(dt) * scale * xi


def _swarm(particles, name="particles"):
    X = check_array(particles, name, ndim=(2, 3))
    return (X[None], True) if X.ndim == 2 else (X, False)


def cbo(f, particles, *, alpha: float, sigma: float, lam: float = 1.0, dt: float = 0.01,
        noise: str = "isotropic", n_iters: int = 1000, log_every: int = 10,
        keep_particles: bool = False, rng=None, callback=None):
    r"""Consensus-based optimization: N particles drift to their consensus point and explore around it.

    Each particle only queries :math:`f`; the swarm communicates through one point, the
    :math:`e^{-\alpha f}`-weighted mean, which for large :math:`\alpha` sits near the best particle.
    The noise shrinks with a particle's distance to it, so the swarm explores while it disagrees
    and concentrates as it agrees.

    Parameters
    ----------
    f : callable
        Row-wise objective, ``(n, d) -> (n,)``.
    particles : array_like, shape (N, d) or (R, N, d)
        The initial swarm, or ``R`` independent swarms run at once (not modified).
    alpha : float
        Inverse temperature :math:`\alpha > 0` of the weights.
    sigma : float
        Noise strength :math:`\sigma \ge 0` (``0``: noise-free CBO).
    lam : float
        Drift rate :math:`\lambda > 0` towards the consensus point.
    dt : float
        Time step of the Euler-Maruyama scheme, in ``(0, 1]``.
    noise : {"isotropic", "anisotropic"}
        :math:`D^i = \lVert X^i - v\rVert I` or :math:`\operatorname{diag}(X^i - v)`.
    n_iters : int
        Number of steps.
    log_every : int
        Log every this many steps (and the last one).
    keep_particles : bool
        Also store the particles in the history (column ``"particles"``).
    rng : None, int or numpy.random.Generator
        The source of the noise.
    callback : callable or None
        ``callback(record) -> bool`` at each logged step; True stops the run.

    Returns
    -------
    Result
        ``x``: the final consensus point(s), ``(d,)`` or ``(R, d)``; ``f``: the mean of ``f`` there
        (a logging evaluation).  ``n_evals["f"]`` counts every query, ``N (n_iters + 1)`` per swarm.
        Extras: ``particles`` (the final swarm(s)), ``spread`` (final root mean square distance of
        the particles to the consensus point, per swarm).  History columns: ``t``, ``n_evals``,
        ``f``, ``spread`` (means over swarms), ``v`` (the consensus points) and, with
        ``keep_particles``, ``particles``.

    Notes
    -----
    The step, for every particle :math:`i` and standard normal :math:`\xi^i`:
    :math:`X^i \leftarrow X^i - \lambda\,dt\,(X^i - v_\alpha) + \sigma\sqrt{dt}\,D^i\xi^i` with
    :math:`v_\alpha = \sum_j X^j e^{-\alpha f(X^j)} / \sum_j e^{-\alpha f(X^j)}`.  Cost per step: N
    queries of f and O(Nd) arithmetic per swarm.  Guarantee (mean-field analyses cited by the paper;
    see the chapter for what we could verify): for the law of the particles, the squared distance to
    the global minimizer decays exponentially up to an error that vanishes as :math:`\alpha \to
    \infty`, when :math:`2\lambda > d\sigma^2` (isotropic) or :math:`2\lambda > \sigma^2`
    (anisotropic).  The finite-N, finite-dt algorithm run here has no such guarantee.

    References
    ----------
    K. Riedl, T. Klock, C. Geldhauser and M. Fornasier, arXiv:2306.09778 (``riedl2023gradient``).
    R. Pinnau, C. Totzeck, O. Tse and S. Martin, M3AS 27(1), 2017 (``pinnau2017consensus``);
    M. Fornasier, T. Klock and K. Riedl, arXiv:2103.15130 (``fornasier2021consensus``).

    Book: chapters/zeroth_order/consensus.ipynb

    Examples
    --------
    >>> sphere = lambda X: np.sum((X - 1.0) ** 2, axis=-1)
    >>> start = np.random.default_rng(0).uniform(-3, 3, size=(20, 2))
    >>> res = cbo(sphere, start, alpha=100.0, sigma=0.7, n_iters=500, rng=0)
    >>> res.n_evals, bool(np.abs(res.x - 1).max() < 0.05), res.history["t"][[0, -1]].tolist()
    ({'f': 10020}, True, [0, 500])
    """
    check_callable(f, "f", signature="(n, d) -> (n,)")
    X, single = _swarm(particles)
    alpha, lam = check_positive(alpha, "alpha"), check_positive(lam, "lam")
    sigma = check_real(sigma, "sigma", low=0.0)
    dt = check_real(dt, "dt", low=0.0, high=1.0, low_open=True)
    noise = check_choice(noise, "noise", NOISE)
    n_iters = check_int(n_iters, "n_iters", low=1)
    log_every = check_int(log_every, "log_every", low=1)
    rng, (R, N, d) = as_rng(rng), X.shape
    params = {"alpha": alpha, "sigma": sigma, "lam": lam, "dt": dt, "noise": noise,
              "n_iters": n_iters, "n_particles": N, "n_swarms": R}
    trace = Trace("cbo", params, callback)
    query = trace.counted("f", f, per_row=True)       # N queries per swarm and step
    out = (lambda a: a[0]) if single else (lambda a: a)

    def consensus(X):
        values = evaluate(query, X.reshape(-1, d)).reshape(R, N)
        return consensus_point(X, values, alpha)

    def spread_of(X, v):
        return np.sqrt(np.mean(np.sum((X - v[:, None, :]) ** 2, axis=-1), axis=-1))

    def record(t, v):                                   # logging: not counted
        row = {"f": np.mean(evaluate(f, v)), "spread": np.mean(spread_of(X, v)),
               "v": out(v).copy()}
        if keep_particles:
            row["particles"] = out(X).copy()
        return trace.log(t, **row)

    v = consensus(X)
    n_done, stopped = 0, record(0, v)
    for t in range(0 if stopped else n_iters):
        xi = rng.standard_normal(X.shape) if sigma > 0 else 0.0
        X = cbo_step(X, v, xi, lam=lam, sigma=sigma, dt=dt, noise=noise)
        n_done = t + 1
        if trace.diverged(X, n_done):
            break
        v = consensus(X)
        logged = n_done % log_every == 0 or n_done == n_iters
        if logged and record(n_done, v):
            break
    f_v = np.mean(evaluate(f, v)) if trace.message is None else np.nan
    return trace.result(out(v), f_v, n_iters=n_done, particles=out(X),
                        spread=out(spread_of(X, v)))


def consensus_hopping(f, x0, *, alpha: float, sigma: float, n_samples: int,
                      n_iters: int, rng=None, callback=None):
    r"""Consensus hopping: :math:`x_{k+1} = v_\alpha(\text{a sample of } N(x_k, \sigma^2 I))`.

    Parameters
    ----------
    f : callable
        Row-wise objective, ``(n, d) -> (n,)``.
    x0 : array_like, shape (d,) or (R, d)
        The start, or one row per independent run (not modified).
    alpha, sigma : float
        Inverse temperature and sampling width (> 0).
    n_samples : int
        Samples per hop (each one query of f).
    n_iters : int
        Number of hops.
    rng, callback
        As in :func:`cbo`.

    Returns
    -------
    Result
        ``x``: the last hop(s), shaped like ``x0``; history columns ``t``, ``n_evals``, ``f`` (mean
        over runs, a logging evaluation) and ``x`` (every hop).

    Notes
    -----
    Per hop: ``n_samples`` queries.  With :math:`\sigma^2 = \tau/\alpha` and infinitely many samples
    the hop is :func:`consensus_step_quadrature`, which tends to :math:`\operatorname{prox}_{\tau f}`.

    >>> res = consensus_hopping(lambda X: np.sum(X ** 2, axis=-1), [2.0, -2.0], alpha=100.0, sigma=0.3,
    ...                         n_samples=50, n_iters=30, rng=0)
    >>> res.n_evals, bool(np.abs(res.x).max() < 0.1)
    ({'f': 1500}, True)
    """
    check_callable(f, "f", signature="(n, d) -> (n,)")
    x = check_array(x0, "x0", ndim=(1, 2))
    alpha, sigma = check_positive(alpha, "alpha"), check_positive(sigma, "sigma")
    n_samples = check_int(n_samples, "n_samples", low=1)
    n_iters = check_int(n_iters, "n_iters", low=1)
    rng, X = as_rng(rng), np.atleast_2d(x)
    (R, d), shaped = X.shape, (lambda a: a[0]) if x.ndim == 1 else (lambda a: a)
    params = {"alpha": alpha, "sigma": sigma, "n_samples": n_samples,
              "n_iters": n_iters}
    trace = Trace("consensus_hopping", params, callback, keep_x=True)
    query = trace.counted("f", f, per_row=True)       # n_samples queries per hop
    n_done = 0
    if not trace.log(0, x=shaped(X), f=np.mean(evaluate(f, X))):
        for k in range(n_iters):
            Y = X[:, None, :] + sigma * rng.standard_normal((R, n_samples, d))
            values = evaluate(query, Y.reshape(-1, d)).reshape(R, n_samples)
            X, n_done = consensus_point(Y, values, alpha), k + 1
            if trace.log(n_done, x=shaped(X), f=np.mean(evaluate(f, X))):
                break
    return trace.result(shaped(X), np.mean(evaluate(f, X)), n_iters=n_done)


def _energies(f, x, tau, grid):
    x = check_array(x, "x", ndim=1)
    tau = check_positive(tau, "tau")
    y = check_array(grid, "grid", ndim=1, min_size=3)
    if np.any(np.diff(y) <= 0):
        raise ValueError("grid must be strictly increasing")
    check_callable(f, "f", signature="(n, 1) -> (n,)")
    quadratic = (y[None, :] - x[:, None]) ** 2 / (2 * tau)   # (len(x), len(grid))
    return y, evaluate(f, y[:, None])[None, :] + quadratic


def consensus_step_quadrature(f, x, *, tau: float, alpha: float, grid):
    r"""The exact consensus point of :math:`N(x, (\tau/\alpha) I)` in 1-D, for each entry of ``x``.

    :math:`\int y\, e^{-\alpha f(y)} \varphi(y)\,dy / \int e^{-\alpha f(y)} \varphi(y)\,dy` with
    :math:`\varphi` the Gaussian density, by quadrature on the uniform ``grid``: the weights
    :math:`e^{-\alpha(f(y) + (y - x)^2/(2\tau))}` go through :func:`consensus_point`.  The grid
    spacing must resolve :math:`1/\sqrt{\alpha(f'' + 1/\tau)}`.

    >>> grid = np.linspace(-3, 3, 6001)
    >>> consensus_step_quadrature(lambda Y: Y[:, 0] ** 2, [1.0], tau=0.5, alpha=50.0, grid=grid).round(4)
    array([0.5])
    """
    alpha = check_positive(alpha, "alpha")
    y, E = _energies(f, x, tau, grid)
    return consensus_point(y[:, None], E, alpha)[:, 0]


def prox_on_grid(f, x, *, tau: float, grid):
    r"""The proximal point :math:`\arg\min_y f(y) + (y - x)^2/(2\tau)` in 1-D, for each entry of ``x``.

    The grid minimizer, refined by the vertex of the parabola through it and its two neighbours.

    >>> prox_on_grid(lambda Y: Y[:, 0] ** 2, [2.0, -1.0], tau=0.5, grid=np.linspace(-3, 3, 601)).round(4)
    array([ 1. , -0.5])
    """
    y, E = _energies(f, x, tau, grid)
    j = np.clip(np.argmin(E, axis=1), 1, y.size - 2)
    rows = np.arange(len(E))
    e0, e1, e2 = E[rows, j - 1], E[rows, j], E[rows, j + 1]
    curv = e0 - 2 * e1 + e2
    shift = np.where(curv > 0, 0.5 * (e0 - e2) / np.where(curv > 0, curv, 1.0), 0.0)
    return y[j] + np.clip(shift, -1.0, 1.0) * (y[1] - y[0])


def gd_from_starts(grad, X0, *, lr: float, n_iters: int, rng=None, callback=None):
    r"""Gradient descent :math:`x \leftarrow x - \eta \nabla f(x)` from every row of ``X0`` at once.

    Returns a Result with ``x`` the final points ``(R, d)`` and ``n_evals["grad"]`` one per start
    and step (the baseline of the chapter: GD from the particles' starting points).  ``rng`` is
    accepted for the common signature (the method is deterministic).

    >>> gd_from_starts(lambda X: 2 * X, [[1.0], [-2.0]], lr=0.25, n_iters=3).x.tolist()
    [[0.125], [-0.25]]
    """
    check_callable(grad, "grad", signature="(n, d) -> (n, d)")
    X = check_array(X0, "X0", ndim=2)
    lr, n_iters, _ = check_positive(lr, "lr"), check_int(n_iters, "n_iters", low=1), as_rng(rng)
    trace = Trace("gd_from_starts", {"lr": lr, "n_iters": n_iters, "n_starts": len(X)}, callback)
    n_done = 0
    if not trace.log(0):
        for t in range(n_iters):
            X = X - lr * check_oracle(grad, "grad", X)
            trace.count("grad", len(X))
            n_done = t + 1
            if trace.diverged(X, n_done) or (n_done == n_iters and trace.log(n_done)):
                break
    return trace.result(X, None, n_iters=n_done)


def shifted_rastrigin(dim: int = 2, shift: float = 1.0) -> Problem:
    r"""Rastrigin moved to :math:`x^\star = (s, \dots, s)`: a bowl with a grid of local minima.

    :math:`f(x) = 10d + \sum_i (y_i^2 - 10\cos 2\pi y_i)` with :math:`y = x - s`.
    Row-wise ``f`` and ``grad``; ``x0 = x* + 2``; ``bounds`` the box ``[-3, 5]^d`` around it.

    >>> p = shifted_rastrigin(2)
    >>> p.f(p.x_star), p.f(np.array([[1.0, 1.0], [2.0, 2.0]])).tolist()
    (0.0, [0.0, 2.0])
    """
    dim, shift = check_int(dim, "dim", low=1), check_real(shift, "shift")
    base, ones = rastrigin(dim), np.ones(dim)

    def f(x):  # the zoo's Rastrigin, written with a product instead of a short sum: faster on batches
        y = np.asarray(x, dtype=float) - shift
        if y.shape[-1:] != (dim,) or y.ndim > 2:
            raise ValueError(f"x must have shape ({dim},) or (n, {dim}), got {y.shape}")
        value = 10.0 * dim + (y * y - 10.0 * np.cos(2 * np.pi * y)) @ ones
        return float(value) if y.ndim == 1 else value

    return Problem(f"shifted_rastrigin(d={dim}, shift={shift:g})", f=f,
                   grad=lambda x: base.grad(np.asarray(x) - shift), x0=np.full(dim, shift + 2.0),
                   x_star=np.full(dim, shift), f_star=0.0, bounds=np.tile([-3.0, 5.0], (dim, 1)),
                   L=base.L, info={"shift": shift})
