r"""Baselines every chapter can compare against: gradient descent, heavy ball, Nesterov and Adam.

They also show the house style in its simplest form: check the arguments once,
write the loop, let a :class:`~optlab.core.Trace` do the bookkeeping, return a
:class:`~optlab.core.Result`.  Heavy ball and Adam write their update once as a
pure step function (:func:`heavy_ball_step`, :func:`adam_step`) that serves both
the numpy loop here and a ``torch.optim.Optimizer`` (:func:`torch_optimizer`):
the pattern of every method of the book that trains networks.

Book: chapters/toolkit.ipynb

References
----------
Nesterov, Lectures on Convex Optimization, 2nd ed., Springer 2018 (``nesterov2018lectures``),
sections 2.1-2.2: the rates of gradient descent and of the fast gradient method.
B. T. Polyak, Some methods of speeding up the convergence of iteration methods, USSR
Computational Mathematics and Mathematical Physics 4(5), 1964 (heavy ball).
D. P. Kingma and J. Ba, Adam: a method for stochastic optimization, ICLR 2015, arXiv:1412.6980
(``kingma2015adam``).
"""
from __future__ import annotations

import numpy as np

from .core import Result, Trace, array_namespace, as_array, as_rng, as_schedule, check_oracle, step_at
from .validate import check_callable, check_int, check_positive, check_probability, check_real

__all__ = ["gradient_descent", "heavy_ball", "nesterov", "adam", "heavy_ball_step", "heavy_ball_state",
           "adam_step", "adam_state", "torch_optimizer"]


def _common(f, grad, n_iters, tol, project=None):
    check_callable(f, "f", optional=True, signature="x -> float")
    check_callable(grad, "grad", signature="x -> array")
    check_callable(project, "project", optional=True, signature="x -> x")
    n_iters = check_int(n_iters, "n_iters", low=0)
    tol = None if tol is None else check_real(tol, "tol", low=0.0)
    return n_iters, tol


def _f(f, x):
    return float(f(x)) if f is not None else np.nan


def _converged(tr, gnorm, tol) -> bool:
    """The stopping test ``||grad|| <= tol``; sets the run's message when it holds."""
    if tol is not None and gnorm <= tol:
        tr.message = f"gradient norm {gnorm:.2e} <= tol={tol:g}"
        return True
    return False


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
        History columns ``t``, ``n_evals``, ``f``, ``grad_norm``, ``lr`` (the step that
        reached the row's iterate; NaN on row 0) and, with ``keep_x``, ``x``.  The run ends
        early with a message when the iterates become non-finite.

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
    >>> res.n_evals["grad"], f"{res.f:.2e}", res.history["lr"][:2].tolist()
    (20, '1.82e-12', [nan, 0.25])
    """
    x = as_array(x0)
    n_iters, tol = _common(f, grad, n_iters, tol, project)
    schedule, _ = as_schedule(lr), as_rng(rng)
    tr = Trace("gd", {"lr": lr, "n_iters": n_iters, "tol": tol}, callback, keep_x)
    converged, eta = False, np.nan     # eta: the step that reached x_t (none for x_0)
    for t in range(n_iters + 1):
        g = check_oracle(grad, "grad", x)
        gnorm = float(np.linalg.norm(g))
        if tr.log(t, x=x, f=_f(f, x), grad_norm=gnorm, lr=eta):
            break
        if _converged(tr, gnorm, tol) or t == n_iters:
            converged = tr.message is not None
            break
        tr.count("grad")
        eta = step_at(schedule, t)
        x = x - eta * g
        if project is not None:
            x = check_oracle(project, "project", x)
        if tr.diverged(x, t + 1):
            t += 1
            break
    return tr.result(x, _f(f, x), n_iters=t, converged=converged)


# --------------------------------------------------------------------------- heavy ball

def heavy_ball_state(x) -> dict:
    """The heavy-ball state before the first step: zero velocity."""
    return {"v": x * 0}


def heavy_ball_step(x, g, state, *, lr, beta):
    r"""One heavy-ball step: :math:`v \leftarrow \beta v - \eta g`, :math:`x \leftarrow x + v`.

    Pure (inputs are not modified); works on numpy arrays and torch tensors alike.
    """
    v = beta * state["v"] - lr * g
    return x + v, {"v": v}


def heavy_ball(f, grad, x0, *, lr, beta: float = 0.9, n_iters: int = 100, tol=None, keep_x: bool = False,
               rng=None, callback=None) -> Result:
    r"""Polyak's heavy-ball method, :math:`x_{t+1} = x_t - \eta_t \nabla f(x_t) + \beta (x_t - x_{t-1})`.

    Parameters
    ----------
    f, grad, x0, lr, n_iters, tol, keep_x, rng, callback
        As in :func:`gradient_descent`.
    beta : float
        Momentum in ``[0, 1)``.

    Returns
    -------
    Result
        History columns as in :func:`gradient_descent`.

    Notes
    -----
    One gradient per iteration.  On a quadratic with eigenvalues in
    :math:`[\mu, L]`, :math:`\eta = 4/(\sqrt L + \sqrt\mu)^2` and
    :math:`\beta = ((\sqrt\kappa - 1)/(\sqrt\kappa + 1))^2` give the accelerated
    linear rate :math:`(1 - 2/(\sqrt\kappa + 1))^t`; on general strongly convex
    functions heavy ball with these constants may fail to converge.

    References
    ----------
    Polyak 1964; Nesterov 2018, section 2.2.

    Examples
    --------
    >>> res = heavy_ball(None, lambda x: x, [1.0], lr=0.5, beta=0.1, n_iters=30)
    >>> bool(abs(res.x[0]) < 1e-8)
    True
    """
    x = as_array(x0)
    n_iters, tol = _common(f, grad, n_iters, tol)
    beta = check_probability(beta, "beta", open_right=True)
    schedule, _ = as_schedule(lr), as_rng(rng)
    tr = Trace("heavy ball", {"lr": lr, "beta": beta, "n_iters": n_iters, "tol": tol}, callback, keep_x)
    state, converged, eta = heavy_ball_state(x), False, np.nan
    for t in range(n_iters + 1):
        g = check_oracle(grad, "grad", x)
        gnorm = float(np.linalg.norm(g))
        if tr.log(t, x=x, f=_f(f, x), grad_norm=gnorm, lr=eta):
            break
        if _converged(tr, gnorm, tol) or t == n_iters:
            converged = tr.message is not None
            break
        tr.count("grad")
        eta = step_at(schedule, t)
        x, state = heavy_ball_step(x, g, state, lr=eta, beta=beta)
        if tr.diverged(x, t + 1):
            t += 1
            break
    return tr.result(x, _f(f, x), n_iters=t, converged=converged)


# --------------------------------------------------------------------------- Nesterov

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
        History columns ``t``, ``n_evals``, ``f``, ``grad_norm`` (at the extrapolated point
        :math:`y_t`) and ``lr``.

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
    if callable(lr):
        raise TypeError("lr must be a constant step (1/L) for nesterov, got a schedule")
    lr = check_positive(lr, "lr")
    mu = check_real(mu, "mu", low=0.0)
    if mu * lr > 1:
        raise ValueError(f"mu must satisfy mu <= 1/lr, got mu={mu:g} with lr={lr:g}")
    n_iters, tol = _common(f, grad, n_iters, tol)
    as_rng(rng)
    q = np.sqrt(mu * lr)
    tr = Trace("nesterov", {"lr": lr, "mu": mu, "n_iters": n_iters, "tol": tol}, callback, keep_x)
    x_prev, converged, eta = x.copy(), False, np.nan
    for t in range(n_iters + 1):
        beta = (1 - q) / (1 + q) if mu > 0 else t / (t + 3)
        y = x + beta * (x - x_prev)
        g = check_oracle(grad, "grad", y)
        gnorm = float(np.linalg.norm(g))
        if tr.log(t, x=x, f=_f(f, x), grad_norm=gnorm, lr=eta):
            break
        if _converged(tr, gnorm, tol) or t == n_iters:
            converged = tr.message is not None
            break
        tr.count("grad")
        eta = lr
        x_prev, x = x, y - lr * g
        if tr.diverged(x, t + 1):
            t += 1
            break
    return tr.result(x, _f(f, x), n_iters=t, converged=converged)


# --------------------------------------------------------------------------- Adam

def adam_state(x) -> dict:
    """The Adam state before the first step: zero moments, step counter 0."""
    return {"m": x * 0, "v": x * 0, "k": 0}


def adam_step(x, g, state, *, lr, beta1, beta2, eps):
    r"""One Adam step, with bias correction (pure; numpy arrays or torch tensors).

    .. math::
        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2, \quad
        x \leftarrow x - \eta\, \frac{m/(1-\beta_1^k)}{\sqrt{v/(1-\beta_2^k)} + \epsilon}

    with :math:`k` the number of steps taken, this one included.
    """
    xp = array_namespace(x)
    k = state["k"] + 1
    m = beta1 * state["m"] + (1 - beta1) * g
    v = beta2 * state["v"] + (1 - beta2) * g * g
    m_hat, v_hat = m / (1 - beta1 ** k), v / (1 - beta2 ** k)
    return x - lr * m_hat / (xp.sqrt(v_hat) + eps), {"m": m, "v": v, "k": k}


def adam(f, grad, x0, *, lr, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, n_iters: int = 100,
         tol=None, keep_x: bool = False, rng=None, callback=None) -> Result:
    r"""Adam (Kingma and Ba), coordinate-wise adaptive steps with momentum.

    Parameters
    ----------
    f, grad, x0, lr, n_iters, tol, keep_x, rng, callback
        As in :func:`gradient_descent` (``grad`` may be stochastic: any callable ``x -> array``).
    beta1, beta2 : float
        Decay rates of the first and second moment estimates, in ``[0, 1)``.
    eps : float
        Added to the root of the second moment, ``> 0``.

    Returns
    -------
    Result
        History columns as in :func:`gradient_descent`.

    Notes
    -----
    The update is :func:`adam_step`, the same function the torch optimizer
    ``torch_optimizer("adam")`` applies; its steps are in units of :math:`x`
    (about :math:`\eta` per coordinate and step, whatever the gradient's scale).

    References
    ----------
    Kingma and Ba 2015, arXiv:1412.6980, Algorithm 1 (``kingma2015adam``).

    Examples
    --------
    >>> res = adam(None, lambda x: 2 * x, [1.0, -2.0], lr=0.1, n_iters=300)
    >>> bool(np.abs(res.x).max() < 1e-2)
    True
    """
    x = as_array(x0)
    n_iters, tol = _common(f, grad, n_iters, tol)
    hp = {"beta1": check_probability(beta1, "beta1", open_right=True),
          "beta2": check_probability(beta2, "beta2", open_right=True), "eps": check_positive(eps, "eps")}
    schedule, _ = as_schedule(lr), as_rng(rng)
    tr = Trace("adam", {"lr": lr, **hp, "n_iters": n_iters, "tol": tol}, callback, keep_x)
    state, converged, eta = adam_state(x), False, np.nan
    for t in range(n_iters + 1):
        g = check_oracle(grad, "grad", x)
        gnorm = float(np.linalg.norm(g))
        if tr.log(t, x=x, f=_f(f, x), grad_norm=gnorm, lr=eta):
            break
        if _converged(tr, gnorm, tol) or t == n_iters:
            converged = tr.message is not None
            break
        tr.count("grad")
        eta = step_at(schedule, t)
        x, state = adam_step(x, g, state, lr=eta, **hp)
        if tr.diverged(x, t + 1):
            t += 1
            break
    return tr.result(x, _f(f, x), n_iters=t, converged=converged)


def torch_optimizer(name: str, params, **hyperparameters):
    r"""A torch optimizer that runs this module's step function: ``"heavy_ball"`` or ``"adam"``.

    >>> import torch
    >>> w = torch.nn.Parameter(torch.zeros(3))
    >>> type(torch_optimizer("adam", [w], lr=1e-3)).__name__
    'Adam'
    """
    from .torch_interop import make_optimizer
    from .validate import check_choice

    check_choice(name, "name", ["heavy_ball", "adam"])
    if name == "adam":
        cls = make_optimizer(adam_step, adam_state, {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, "Adam")
    else:
        cls = make_optimizer(heavy_ball_step, heavy_ball_state, {"lr": 1e-2, "beta": 0.9}, "HeavyBall")
    return cls(params, **hyperparameters)
