r"""The penalty method for bilevel optimization: first-order, and right when the lower level has many solutions.

The penalty function replaces the constraint :math:`y \in S(x) = \arg\min_y g(x, y)` by a
weighted term:

.. math:: \psi_\sigma(x) = \min_y \Big[F(x, y) + \frac{g(x, y) - g^*(x)}{\sigma}\Big],
          \qquad g^*(x) = \min_z g(x, z).

Its gradient needs only first derivatives at two inner solutions, :math:`y_\sigma` (of the
penalized problem) and :math:`z` (of the lower level):
:math:`\nabla\psi_\sigma(x) = \nabla_x F(x, y_\sigma) + (\nabla_x g(x, y_\sigma) - \nabla_x g(x, z))/\sigma`
(:func:`penalty_grad`).  :func:`penalty_value_and_grad` computes both on a batch of points,
:func:`landscape_gaps` compares them with the hyper-objective, :func:`penalty_method` runs
projected gradient descent on :math:`\psi_\sigma` (the paper's deterministic double loop), and
:func:`toy_problem` is the closed-form problem with a non-unique lower level.

References
----------
J. Kwon, D. Kwon, S. Wright and R. Nowak, ICLR 2024, arXiv:2309.01753 (``kwon2024penalty``).

Book: chapters/bilevel/penalty.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Trace, as_rng, as_schedule, check_oracle, step_at
from ..validate import check_array, check_int, check_positive
from .core import BilevelProblem, lower_solve

__all__ = ["penalty_grad", "penalty_value_and_grad", "landscape_gaps", "penalty_method", "toy_problem"]


def penalty_grad(problem: BilevelProblem, x, y, z, sigma):
    r"""The penalty gradient :math:`\nabla_x F(x, y) + (\nabla_x g(x, y) - \nabla_x g(x, z))/\sigma`.

    Row-wise: ``x`` (n, dx), ``y`` and ``z`` (n, dy), ``sigma`` a number or (n,).
    """
    x, y, z = (check_array(v, n, ndim=(1, 2)) for v, n in ((x, "x"), (y, "y"),
                                                           (z, "z")))
    sigma = check_array(sigma, "sigma", ndim=(0, 1), finite=False)
    if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
        raise ValueError("sigma must be finite and > 0")
    s = np.reshape(sigma, np.shape(sigma) + (1,) * (np.ndim(x) - np.ndim(sigma)))
    return problem.grad_Fx(x, y) + (problem.grad_gx(x, y) - problem.grad_gx(x, z)) / s


def penalty_value_and_grad(problem: BilevelProblem, x, sigma, *, y0=None, z0=None,
                           tol: float = 1e-10, max_iters: int = 100_000) -> dict:
    r"""The penalty function :math:`\psi_\sigma(x)` and its gradient, from two first-order inner solves.

    The penalized inner problem :math:`y \mapsto F + g/\sigma` has Hessian between
    :math:`\mu` and :math:`L_F + L_g/\sigma`: condition number about :math:`(1+\sigma)/\sigma`
    for a unit-curvature lower level, so it is solved to a *tolerance* (:func:`lower_solve`,
    accelerated with restarts), never with a fixed number of steps.

    Parameters
    ----------
    problem : BilevelProblem
    x : array_like, shape (dx,) or (n, dx)
        One point or a batch.
    sigma : float or array of shape (n,)
        The penalty parameter(s), > 0.
    y0, z0 : array_like or None
        Warm starts of the two inner solves (default ``problem.y0``).
    tol, max_iters : float, int
        The inner stopping rule: gradient norm at most ``tol`` (or ``max_iters`` steps).

    Returns
    -------
    dict
        ``value`` (n,) or float, ``grad`` shaped like ``x``, the inner solutions ``y`` and ``z``,
        ``n_grad`` (inner gradient calls of both solves).

    Examples
    --------
    >>> p = toy_problem()
    >>> out = penalty_value_and_grad(p, [0.0], 0.5)
    >>> round(float(out["value"]), 6), round(float(out["grad"][0]), 6)    # 1/(2(1+s)), -1/(1+s)
    (0.333333, -0.666667)
    """
    x = check_array(x, "x", ndim=(1, 2))
    sig = check_array(sigma, "sigma", ndim=(0, 1), finite=False)
    rows = sig.ndim == 0 or (x.ndim == 2 and len(sig) == len(x))
    if not np.all(np.isfinite(sig)) or np.any(sig <= 0) or not rows:
        raise ValueError("sigma must be a finite number > 0, or one per row of x")
    shape_y = x.shape[:-1] + np.shape(problem.y0)
    start = np.broadcast_to(problem.y0, shape_y)
    y = start if y0 is None else check_array(y0, "y0", shape=shape_y)
    z = start if z0 is None else check_array(z0, "z0", shape=shape_y)
    s = sig[:, None] if sig.ndim == 1 else sig
    # y_sigma: argmin_y F + g / sigma, Hessian up to L_Fy + L_gy / sigma
    y, n1 = lower_solve(lambda w: problem.grad_Fy(x, w) + problem.grad_gy(x, w) / s, y,
                        lr=1.0 / (problem.L_Fy + problem.L_gy / sig), tol=tol,
                        max_iters=max_iters)
    # z: argmin_z g, so that g*(x) = g(x, z)
    z, n2 = lower_solve(lambda w: problem.grad_gy(x, w), z, lr=1.0 / problem.L_gy,
                        tol=tol, max_iters=max_iters)
    value = problem.F(x, y) + (problem.g(x, y) - problem.g(x, z)) / sig
    grad = penalty_grad(problem, x, y, z, sig)
    return {"value": value, "grad": grad, "y": y, "z": z, "n_grad": n1 + n2}


def landscape_gaps(problem: BilevelProblem, xs, sigmas, *, tol: float = 1e-12) -> dict:
    r"""Value and gradient gaps :math:`|\psi_\sigma - \psi|`, :math:`\|\nabla\psi_\sigma - \nabla\psi\|` on a grid.

    ``xs`` (n, dx) are the points, ``sigmas`` (k,) the penalty parameters; one vectorized call of
    :func:`penalty_value_and_grad` on the n k pairs.  ``problem.hyper`` and ``problem.hypergrad``
    (row-wise) are the reference.  Returns ``{"value_gap", "grad_gap"}``, each of shape (k, n).
    """
    xs = check_array(xs, "xs", ndim=2)
    sigmas = check_array(sigmas, "sigmas", ndim=1)
    if np.any(sigmas <= 0):
        raise ValueError("sigmas must be > 0")
    k, n = len(sigmas), len(xs)
    X, S = np.tile(xs, (k, 1)), np.repeat(sigmas, n)
    out = penalty_value_and_grad(problem, X, S, tol=tol)
    value_gap = np.abs(out["value"] - problem.hyper(X)).reshape(k, n)
    grad_gap = np.linalg.norm(out["grad"] - problem.hypergrad(X), axis=-1).reshape(k, n)
    return {"value_gap": value_gap, "grad_gap": grad_gap}


def penalty_method(problem: BilevelProblem, x0, *, lr, sigma, n_iters: int,
                   inner_tol: float = 1e-10, max_inner: int = 100_000, rng=None,
                   callback=None):
    r"""Projected gradient descent on the penalty function :math:`\psi_{\sigma_k}`: first-order bilevel optimization.

    Each step solves the penalized problem and the lower level to ``inner_tol``, warm-started
    from the previous step's solutions, and moves along :func:`penalty_grad`.  No second
    derivatives are used.

    Parameters
    ----------
    problem : BilevelProblem
    x0 : array_like, shape (dx,)
        Start (not modified).
    lr : float or callable
        Outer step :math:`\alpha_k` (number or schedule).
    sigma : float or callable
        Penalty parameter :math:`\sigma_k > 0` (number or schedule ``k -> float``).
    n_iters : int
        Outer steps K.
    inner_tol, max_inner : float, int
        Stopping rule of both inner solves (:func:`~optlab.bilevel.core.lower_solve`).
    rng : None, int or Generator
        Accepted for the common signature (the method is deterministic).
    callback : callable or None
        ``callback(record) -> bool``; True stops.

    Returns
    -------
    Result
        ``x``; ``f`` = :math:`F(x, z)`, the upper objective at the lower-level solution ``z`` (the
        hyper-objective when that solution is unique).  Extras: ``y`` (penalized solution) and
        ``z``.  History columns: ``f``, ``penalty`` (:math:`\psi_\sigma` at ``x``), ``sigma``,
        ``grad_norm``, ``inner_steps``.  ``n_evals`` counts first-order calls: ``grad_y``
        (inner gradients of both solves), ``grad_Fx`` and ``grad_gx`` (two per step).

    Notes
    -----
    Step k: :math:`y_k \approx \arg\min_y F(x_k, y) + g(x_k, y)/\sigma_k`,
    :math:`z_k \approx \arg\min_z g(x_k, z)`, then
    :math:`x_{k+1} = \Pi_X\big(x_k - \alpha_k[\nabla_x F(x_k, y_k)
    + (\nabla_x g(x_k, y_k) - \nabla_x g(x_k, z_k))/\sigma_k]\big)`.
    Cost per step: the inner gradient calls (about :math:`\sqrt{\kappa}\log(1/\mathrm{tol})` from a
    cold start, far fewer warm) plus three gradient calls in x.  The paper's guarantee: with
    :math:`\sigma = O(\epsilon)` and the proximal error-bound condition, an
    :math:`\epsilon`-stationary point of :math:`\psi_\sigma` in :math:`O(\epsilon^{-3})`
    first-order oracle calls (deterministic).  Differences: the paper runs (projected) gradient
    steps inside; here the inner solver is accelerated and stops at a tolerance; the stochastic
    and single-loop versions are not implemented.

    References
    ----------
    J. Kwon, D. Kwon, S. Wright and R. Nowak, On penalty methods for nonconvex bilevel
    optimization and first-order stochastic approximation, ICLR 2024, arXiv:2309.01753
    (``kwon2024penalty``); the predecessor F2SA, ICML 2023, arXiv:2301.10945 (``kwon2023fully``).

    Book: chapters/bilevel/penalty.ipynb

    Examples
    --------
    On the toy problem the iterates reach the minimizer :math:`1/(2+\sigma)` of :math:`\psi_\sigma`,
    within :math:`\sigma/4` of the minimizer 1/2 of the hyper-objective:

    >>> res = penalty_method(toy_problem(), [2.0], lr=0.4, sigma=1e-3, n_iters=40)
    >>> round(float(res.x[0]), 5), int(res.history["t"][-1]), res.n_evals["grad_Fx"]
    (0.49975, 40, 40)
    """
    x = check_array(x0, "x0", ndim=1)
    n_iters = check_int(n_iters, "n_iters", low=1)
    inner_tol = check_positive(inner_tol, "inner_tol")
    max_inner = check_int(max_inner, "max_inner", low=1)
    schedule = as_schedule(lr)
    sigmas = as_schedule(sigma, "sigma")
    as_rng(rng)
    params = {"lr": schedule, "sigma": sigmas, "n_iters": n_iters,
              "inner_tol": inner_tol}
    trace = Trace("penalty_method", params, callback)
    y = z = np.array(problem.y0, dtype=float)
    t = 0
    for t in range(n_iters + 1):
        s = step_at(sigmas, min(t, n_iters - 1), "sigma")
        if s <= 0:
            raise ValueError(f"sigma must be > 0 at every step, got {s} at step {t}")
        out = penalty_value_and_grad(problem, x, s, y0=y, z0=z, tol=inner_tol,
                                     max_iters=max_inner)  # warm starts
        y, z, d = out["y"], out["z"], out["grad"]
        trace.count("grad_y", out["n_grad"])
        if trace.log(t, f=problem.F(x, z), penalty=out["value"], sigma=s,
                     grad_norm=np.linalg.norm(d), inner_steps=out["n_grad"]) \
                or t == n_iters:
            break
        trace.count("grad_Fx"), trace.count("grad_gx", 2)
        x = x - step_at(schedule, t) * d
        if problem.project is not None:
            x = check_oracle(problem.project, "project", x)
        if trace.diverged(x, t + 1):
            break
    f = problem.F(x, z) if trace.message is None else None
    return trace.result(x, f, n_iters=t, y=y, z=z)


def toy_problem() -> BilevelProblem:
    r"""The closed-form toy with a whole line of lower-level solutions (x in R, y in R^2).

    :math:`g = \tfrac12(y_1 - x)^2`, so :math:`S(x) = \{(x, y_2)\}`;
    :math:`F = \tfrac12(y_1 - 1)^2 + \tfrac12(y_2 - x)^2 + \tfrac12 x^2`.  The optimistic choice
    is :math:`y_2 = x`, so :math:`\psi(x) = \tfrac12(x-1)^2 + \tfrac12 x^2`, :math:`\nabla\psi = 2x - 1`,
    and :math:`\psi_\sigma(x) = (x-1)^2/(2(1+\sigma)) + \tfrac12 x^2` (``info["penalty"]``,
    ``info["penalty_grad"]``).  Oracles are row-wise on (n, 1) and (n, 2) batches.
    """
    def F(x, y):
        return 0.5 * (y[..., 0] - 1) ** 2 + 0.5 * (y[..., 1] - x[..., 0]) ** 2 + 0.5 * x[..., 0] ** 2

    return BilevelProblem(
        "penalty_toy", F=F, g=lambda x, y: 0.5 * (y[..., 0] - x[..., 0]) ** 2,
        grad_Fx=lambda x, y: 2 * x - y[..., 1:],
        grad_Fy=lambda x, y: np.concatenate([y[..., :1] - 1, y[..., 1:] - x], -1),
        grad_gx=lambda x, y: x - y[..., :1], grad_gy=lambda x, y: np.concatenate([y[..., :1] - x, 0 * x], -1),
        hvp_yy=lambda x, y, v: np.concatenate([v[..., :1], 0 * v[..., 1:]], -1), jvp_xy=lambda x, y, v: -v[..., :1],
        x0=np.array([2.0]), y0=np.zeros(2), L_Fy=1.0, L_gy=1.0,
        hyper=lambda x: 0.5 * (x[..., 0] - 1) ** 2 + 0.5 * x[..., 0] ** 2, hypergrad=lambda x: 2 * x - 1,
        y_star=lambda x: np.concatenate([x, x], -1),
        info={"penalty": lambda x, s: (x[..., 0] - 1) ** 2 / (2 * (1 + s)) + 0.5 * x[..., 0] ** 2,
              "penalty_grad": lambda x, s: (x - 1) / (1 + s) + x})
