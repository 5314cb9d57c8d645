r"""Baselines every chapter can compare against: gradient descent and Nesterov's method.

They also show the house style in its simplest form: validate the inputs, write
the loop, let a :class:`~optlab.core.Trace` do the bookkeeping, return a
:class:`~optlab.core.Result`.

Book: chapters/toolkit.ipynb

References
----------
Nesterov, Lectures on Convex Optimization, 2nd ed., Springer 2018 (``nesterov2018lectures``),
sections 2.1-2.2: the rates of gradient descent and of the fast gradient method.
"""
from __future__ import annotations

import numpy as np

from .core import Result, Trace, as_array, as_schedule

__all__ = ["gradient_descent", "nesterov"]


def _check_common(n_iters, tol, project):
    if isinstance(n_iters, bool) or not isinstance(n_iters, (int, np.integer)) or n_iters < 0:
        raise ValueError(f"n_iters must be a non-negative int, got {n_iters!r}")
    if tol is not None and not tol >= 0:
        raise ValueError(f"tol must be None or >= 0, got {tol!r}")
    if project is not None and not callable(project):
        raise TypeError(f"project must be callable x -> x or None, got {type(project).__name__}")


def gradient_descent(f, grad, x0, *, lr, n_iters: int = 100, tol=None, project=None,
                     keep_x: bool = False, rng=None, callback=None) -> Result:
    r"""(Projected) gradient descent, :math:`x_{t+1} = \Pi(x_t - \eta_t \nabla f(x_t))`.

    The steepest-descent step of length :math:`\eta_t`, then a projection back
    onto the feasible set when ``project`` is given.

    Parameters
    ----------
    f : callable or None
        ``f(x) -> float``, used only to log progress (not counted as an oracle call).
    grad : callable
        ``grad(x) -> ndarray``.
    x0 : array_like
        Starting point (not modified).
    lr : float or callable
        Step size or schedule ``t -> float``; ``1/L`` for an ``L``-smooth ``f``.
    n_iters : int
        Maximum number of iterations.
    tol : float or None
        Stop when ``||grad(x_t)|| <= tol``.
    project : callable or None
        Euclidean projection onto the feasible set.
    keep_x : bool
        Record every iterate in history column ``"x"``.
    rng : ignored
        Accepted for the common signature; the method is deterministic.
    callback : callable or None
        ``callback(record) -> bool``; True stops the run.

    Returns
    -------
    Result
        History columns ``t``, ``n_evals``, ``f``, ``grad_norm``, ``lr`` (and ``x``).

    Notes
    -----
    One gradient per iteration. For convex :math:`L`-smooth :math:`f` and
    :math:`\eta = 1/L`, :math:`f(x_T) - f^\star \le L\lVert x_0 - x^\star\rVert^2 / (2T)`;
    if :math:`f` is also :math:`\mu`-strongly convex,
    :math:`f(x_T) - f^\star \le (1 - \mu/L)^T (f(x_0) - f^\star)`.

    References
    ----------
    Nesterov 2018, Theorem 2.1.14 and Theorem 2.1.15 (``nesterov2018lectures``).

    Examples
    --------
    >>> res = gradient_descent(lambda x: float(x @ x), lambda x: 2 * x, [1.0, -1.0], lr=0.25, n_iters=20)
    >>> res.n_evals["grad"], f"{res.f:.2e}"
    (20, '1.82e-12')
    """
    x = as_array(x0)
    lr_at = as_schedule(lr)
    _check_common(n_iters, tol, project)
    tr = Trace("gd", {"lr": lr, "n_iters": n_iters, "tol": tol}, callback, keep_x)
    fx = f(x) if f is not None else np.nan
    converged, message = False, None
    for t in range(n_iters):
        g = grad(x)
        tr.count("grad")
        gnorm = float(np.linalg.norm(g))
        if tr.log(t, x=x, f=fx, grad_norm=gnorm, lr=lr_at(t)):
            break
        if tol is not None and gnorm <= tol:
            converged, message = True, f"gradient norm {gnorm:.2e} <= tol"
            break
        x = x - lr_at(t) * g
        if project is not None:
            x = project(x)
        fx = f(x) if f is not None else np.nan
    else:
        t = n_iters
        tr.log(t, x=x, f=fx, lr=np.nan)
    return tr.result(x, fx, n_iters=t, converged=converged, message=message)


def nesterov(f, grad, x0, *, lr, mu: float = 0.0, n_iters: int = 100, tol=None,
             keep_x: bool = False, rng=None, callback=None) -> Result:
    r"""Nesterov's fast gradient method (constant step, with momentum).

    .. math:: y_t = x_t + \beta_t (x_t - x_{t-1}), \qquad x_{t+1} = y_t - \eta \nabla f(y_t)

    with :math:`\beta_t = t/(t+3)` for convex :math:`f` (``mu = 0``) and the
    constant :math:`\beta = (1-\sqrt{\mu\eta})/(1+\sqrt{\mu\eta})` when
    ``mu > 0`` is a strong-convexity constant.

    Parameters
    ----------
    f, grad, x0, lr, n_iters, tol, keep_x, rng, callback
        As in :func:`gradient_descent`; ``lr`` must be a constant, ``1/L``.
    mu : float
        Strong-convexity constant, ``0 <= mu``, with ``mu * lr <= 1``.

    Returns
    -------
    Result
        History columns ``t``, ``n_evals``, ``f``, ``grad_norm``.

    Notes
    -----
    One gradient per iteration. For convex :math:`L`-smooth :math:`f` and
    :math:`\eta = 1/L`: :math:`f(x_T) - f^\star = O(L\lVert x_0 - x^\star\rVert^2/T^2)`;
    with strong convexity, :math:`O((1 - \sqrt{\mu/L})^T)`. Both rates match the
    lower bounds for first-order methods up to constants.

    References
    ----------
    Nesterov 2018, section 2.2 (``nesterov2018lectures``).

    Examples
    --------
    >>> A = np.diag([1.0, 100.0])
    >>> res = nesterov(lambda x: 0.5 * x @ A @ x, lambda x: A @ x, [1.0, 1.0], lr=0.01, mu=1.0, n_iters=200)
    >>> res.f < 1e-12
    True
    """
    x = as_array(x0)
    if callable(lr) or not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ValueError(f"lr must be a positive constant (1/L), got {lr!r}")
    if not 0 <= mu or mu * lr > 1:
        raise ValueError(f"mu must satisfy 0 <= mu <= 1/lr, got mu={mu!r} with lr={lr!r}")
    _check_common(n_iters, tol, None)
    q = np.sqrt(mu * lr)
    tr = Trace("nesterov", {"lr": lr, "mu": mu, "n_iters": n_iters, "tol": tol}, callback, keep_x)
    x_prev = x.copy()
    fx = f(x) if f is not None else np.nan
    converged, message = False, None
    for t in range(n_iters):
        beta = (1 - q) / (1 + q) if mu > 0 else t / (t + 3)
        y = x + beta * (x - x_prev)
        g = grad(y)
        tr.count("grad")
        gnorm = float(np.linalg.norm(g))
        if tr.log(t, x=x, f=fx, grad_norm=gnorm):
            break
        if tol is not None and gnorm <= tol:
            converged, message = True, f"gradient norm {gnorm:.2e} <= tol"
            break
        x_prev, x = x, y - lr * g
        fx = f(x) if f is not None else np.nan
    else:
        t = n_iters
        tr.log(t, x=x, f=fx)
    return tr.result(x, fx, n_iters=t, converged=converged, message=message)
