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
projected gradient descent on :math:`\psi_\sigma` (the paper's deterministic double loop),
:func:`stochastic_penalty_method` its single-loop stochastic form with momentum-assisted (STORM)
estimators, :func:`ridge_oracles` minibatch oracles of the ridge problem, and :func:`toy_problem`
the closed-form problem with a non-unique lower level.

References
----------
J. Kwon, D. Kwon, S. Wright and R. Nowak, ICLR 2024, arXiv:2309.01753 (``kwon2024penalty``).

Book: chapters/bilevel/penalty.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Trace, as_rng, as_schedule, check_oracle, step_at
from ..validate import check_array, check_callable, check_int, check_output, check_positive, check_real
from .core import BilevelProblem, lower_solve

__all__ = ["penalty_grad", "penalty_value_and_grad", "landscape_gaps", "penalty_method", "toy_problem",
           "storm_update", "stochastic_penalty_method", "ridge_oracles"]


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
    steps inside; here the inner solver is accelerated and stops at a tolerance.  The stochastic
    single loop is :func:`stochastic_penalty_method`; the stochastic double loop is not implemented.

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


def storm_update(e_prev, c_new, c_old, beta: float):
    r"""The momentum-assisted (STORM) estimator :math:`e_t = c_t(w_t) + (1-\beta)(e_{t-1} - c_t(w_{t-1}))`.

    ``c_new`` and ``c_old`` are the same minibatch's gradients at the current and the previous
    point; the difference corrects the old estimate for the move, so with exact gradients
    :math:`e_t` is exact.  ``beta = 1`` is the plain stochastic gradient.

    >>> storm_update(np.array([1.0]), np.array([3.0]), np.array([2.0]), 0.5).tolist()
    [2.5]
    """
    return c_new + (1.0 - beta) * (e_prev - c_old)


def stochastic_penalty_method(sample, stoch_grads, x0, y0, *, lr, lr_y, lr_z, sigma,
                              beta: float = 1.0, n_iters: int, project=None, f=None,
                              n_log: int = 50, rng=None, callback=None):
    r"""The single-loop stochastic penalty method: one step in x, y and z per minibatch, STORM estimators.

    Parameters
    ----------
    sample : callable
        ``sample(rng) -> batch``: draws one minibatch (upper and lower samples).
    stoch_grads : callable
        ``stoch_grads(x, y, z, batch) -> (cx, cy)``: the minibatch estimates
        ``cx = [grad_x F(x, y), grad_x g(x, y), grad_x g(x, z)]`` (3, dx) and
        ``cy = [grad_y F(x, y), grad_y g(x, y), grad_y g(x, z)]`` (3, dy).
    x0, y0 : array_like
        Starts of x and of both y and z (not modified).
    lr, lr_y, lr_z : float or callable
        Steps :math:`\alpha_t, \gamma_t, \delta_t` (numbers or schedules); ``lr_y`` should scale like
        :math:`\sigma_t` (the penalized problem has curvature :math:`L_F + L_g/\sigma`).
    sigma : float or callable
        Penalty parameter :math:`\sigma_t > 0`.
    beta : float in (0, 1]
        Momentum weight of :func:`storm_update`; 1 is plain SGD (one gradient call per step, two
        otherwise: the same minibatch at the current and the previous points).
    n_iters, n_log : int
        Steps; logged rows (evenly spaced, plus the first).
    project, f : callable or None
        Projection onto the feasible x; ``f(x) -> float`` logged, not counted (a validation loss).
    rng, callback
        Minibatch randomness; ``callback(record) -> bool`` stops on True.

    Returns
    -------
    Result
        ``x``; ``f`` = ``f(x)`` when given.  Extras ``y``, ``z``.  History: ``t``, ``n_evals``,
        ``sigma`` and ``f`` when given.  ``n_evals``: ``stoch_grads`` (minibatch calls).

    Notes
    -----
    With :math:`w_t = (x_t, y_t, z_t)` and one minibatch :math:`\xi_t` per step, each component
    estimate (both arrays) follows :math:`e_t = c(w_t; \xi_t) + (1-\beta)(e_{t-1} - c(w_{t-1};
    \xi_t))`; then :math:`y_{t+1} = y_t - \gamma_t(e^{Fy} + e^{gy}/\sigma_t)`,
    :math:`z_{t+1} = z_t - \delta_t e^{gz}` and :math:`x_{t+1} = \Pi_X(x_t - \alpha_t[e^{Fx} +
    (e^{gx,y} - e^{gx,z})/\sigma_t])`, all from the estimates at :math:`w_t`.  The estimators are
    kept per component so that a changing :math:`\sigma_t` combines them at the current value.
    The paper's single-loop version (under mean-squared smoothness of the stochastic oracles)
    reaches an :math:`\epsilon`-stationary point of :math:`\psi_\sigma` with :math:`O(\epsilon^{-5})`
    stochastic oracle calls (:math:`O(\epsilon^{-3})` deterministic); its step, momentum and
    :math:`\sigma` schedules were not checked here, ours are tuned by hand in the chapter.

    Book: chapters/bilevel/penalty.ipynb

    Examples
    --------
    Full batches: the estimators are exact, the run is the deterministic single loop, and it
    reaches the minimizer :math:`1/(2+\sigma)` of :math:`\psi_\sigma` on the toy:

    >>> p = toy_problem()
    >>> def grads(x, y, z, batch):
    ...     return (np.stack([p.grad_Fx(x, y), p.grad_gx(x, y), p.grad_gx(x, z)]),
    ...             np.stack([p.grad_Fy(x, y), p.grad_gy(x, y), p.grad_gy(x, z)]))
    >>> res = stochastic_penalty_method(lambda rng: None, grads, [2.0], [0.0, 0.0], lr=0.2,
    ...                                 lr_y=0.005, lr_z=0.5, sigma=0.01, beta=0.5, n_iters=4000)
    >>> round(float(res.x[0]), 3), res.n_evals["stoch_grads"]
    (0.498, 7999)
    """
    check_callable(sample, "sample", signature="rng -> batch")
    check_callable(stoch_grads, "stoch_grads", signature="(x, y, z, batch) -> (cx, cy)")
    check_callable(project, "project", optional=True, signature="x -> x")
    check_callable(f, "f", optional=True, signature="x -> float")
    x, y = check_array(x0, "x0", ndim=1), check_array(y0, "y0", ndim=1)
    beta = check_real(beta, "beta", low=0.0, high=1.0, low_open=True)
    n_iters = check_int(n_iters, "n_iters", low=1)
    n_log = check_int(n_log, "n_log", low=1)
    steps = {k: as_schedule(v, k) for k, v in
             (("lr", lr), ("lr_y", lr_y), ("lr_z", lr_z), ("sigma", sigma))}
    for k, sch in steps.items():
        step_at(sch, 0, k)
    gen, z = as_rng(rng), y.copy()
    params = {**steps, "beta": beta, "n_iters": n_iters}
    trace = Trace("stochastic_penalty_method", params, callback)
    logged = set(np.linspace(0, n_iters, n_log + 1).round().astype(int).tolist())
    shapes = ((3,) + x.shape, (3,) + y.shape)

    def grads(x, y, z, batch):
        trace.count("stoch_grads")
        out = stoch_grads(x, y, z, batch)
        return tuple(check_output(c, "stoch_grads", sh) for c, sh in zip(out, shapes))

    def record(t, s):
        return trace.log(t, sigma=s, **({} if f is None else {"f": float(f(x))}))

    ex = ey = prev = None
    n_done, stopped = 0, record(0, step_at(steps["sigma"], 0, "sigma"))
    for t in range(0 if stopped else n_iters):
        s = step_at(steps["sigma"], t, "sigma")
        if s <= 0:
            raise ValueError(f"sigma must be > 0 at every step, got {s} at step {t}")
        batch = sample(gen)
        cx, cy = grads(x, y, z, batch)
        if ex is None or beta == 1.0:
            ex, ey = cx, cy
        else:                          # the same minibatch at the previous point
            ox, oy = grads(*prev, batch)
            ex, ey = storm_update(ex, cx, ox, beta), storm_update(ey, cy, oy, beta)
        prev = (x, y, z)
        y = y - step_at(steps["lr_y"], t, "lr_y") * (ey[0] + ey[1] / s)
        z = z - step_at(steps["lr_z"], t, "lr_z") * ey[2]
        x = x - step_at(steps["lr"], t) * (ex[0] + (ex[1] - ex[2]) / s)
        if project is not None:
            x = check_oracle(project, "project", x)
        n_done = t + 1
        if trace.diverged(np.concatenate([x, y, z]), n_done) or \
                (n_done in logged and record(n_done, s)):
            break
    f_end = None if f is None or trace.message is not None else float(f(x))
    return trace.result(x, f_end, n_iters=n_done, y=y, z=z)


def ridge_oracles(problem: BilevelProblem, batch_size=None):
    r"""Minibatch oracles ``(sample, stoch_grads)`` of :func:`~optlab.bilevel.core.ridge_problem`.

    ``sample(rng)`` draws ``batch_size`` validation and ``batch_size`` training rows without
    replacement (``None``: all rows, the exact gradients); ``stoch_grads`` averages
    :math:`F`'s data term over the validation rows and :math:`g`'s over the training rows (the
    penalty term :math:`\tfrac12\sum_j e^{x_j} y_j^2` is exact), in the layout of
    :func:`stochastic_penalty_method`.
    """
    A, b, Av, bv = (problem.info[k] for k in ("A", "b", "A_val", "b_val"))
    n, m = len(A), len(Av)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", low=1, high=min(n, m))

    def sample(rng):
        if batch_size is None:
            return slice(None), slice(None)
        return rng.choice(m, batch_size, replace=False), rng.choice(n, batch_size, replace=False)

    def stoch_grads(x, y, z, batch):
        iv, it = batch
        Ab, bb, Vb, vb = A[it], b[it], Av[iv], bv[iv]
        gy = (np.stack([y, z]) @ Ab.T - bb) @ Ab / len(bb) + np.exp(x) * np.stack([y, z])
        Fy = (y @ Vb.T - vb) @ Vb / len(vb)
        cx = np.stack([np.zeros_like(x), 0.5 * np.exp(x) * y ** 2, 0.5 * np.exp(x) * z ** 2])
        return cx, np.stack([Fy, gy[0], gy[1]])

    return sample, stoch_grads
