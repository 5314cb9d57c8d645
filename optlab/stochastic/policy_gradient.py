r"""Stochastic policy gradient for Fisher-non-degenerate policies: N-PG-IGT and (N)-HARPG.

The methods minimize a cost :math:`C(\theta) = -J(\theta)` from sampled trajectories: vanilla policy gradient,
normalized momentum, and normalized momentum with implicit gradient transport (all :func:`n_pg_igt`), and the
Hessian-aided recursive estimator (:func:`n_harpg`), with their building blocks (:func:`extrapolate`,
:func:`normalized_step`, :func:`harpg_correction`).  They take any oracles ``stoch_grad(x, rng)`` and
``stoch_hvp(x, v, rng)``; the chapter's test problem, an exact LQR with a Gaussian policy, its gradient and
Hessian-vector estimators and the schedules are in :mod:`optlab.stochastic.lqr`.  ``x0`` is one parameter
vector ``(d,)`` or ``R`` replicas ``(R, d)``; ``n_evals`` counts oracle calls, each one sampled trajectory per
replica.

References
----------
I. Fatkhullin, A. Barakat, A. Kireeva and N. He, ICML 2023, arXiv:2302.01734 (``fatkhullin2023stochastic``).

Book: chapters/stochastic/policy_gradient.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import (
    Trace,
    as_batch,
    as_rng,
    as_schedule,
    check_oracle,
    check_rowwise,
    geometric_steps,
    quantile_names,
    replica_stats,
    step_at,
)
from ..validate import check_array, check_bool, check_callable, check_int, check_real

__all__ = ["n_pg_igt", "n_harpg", "harpg_correction", "extrapolate", "normalized_step"]


def _pair(x, y, names):  # non-finite entries pass: the methods end a diverged run with a message
    x, y = check_array(x, names[0], ndim=2, finite=False), check_array(y, names[1], ndim=2, finite=False)
    if x.shape != y.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape (R, d), got {x.shape} and {y.shape}")
    return x, y


def harpg_correction(stoch_hvp, x, x_prev, rng):
    r"""The correction :math:`v = B(\hat\tau, \hat\theta)(\theta - \theta_{\mathrm{prev}})` at the random interpolate
    :math:`\hat\theta = q\theta + (1 - q)\theta_{\mathrm{prev}}`, :math:`q \sim U[0, 1]`, one per row of ``(R, d)``.

    Its mean is exactly :math:`\nabla C(\theta) - \nabla C(\theta_{\mathrm{prev}})`: the Hessian averaged along
    the segment, applied to the segment.
    """
    check_callable(stoch_hvp, "stoch_hvp", signature="(x, v, rng) -> array")
    x, x_prev = _pair(x, x_prev, ("x", "x_prev"))
    q = as_rng(rng).uniform(size=(len(x), 1))
    x_hat = q * x + (1 - q) * x_prev                  # a random point of the last step
    return check_oracle(stoch_hvp, "stoch_hvp", x_hat, x - x_prev, rng)


def extrapolate(x, x_prev, beta):
    r"""The IGT point :math:`\tilde\theta = \theta + \frac{\beta}{1-\beta}(\theta - \theta_{\mathrm{prev}})`."""
    x, x_prev = _pair(x, x_prev, ("x", "x_prev"))
    beta = check_real(beta, "beta", low=0.0, high=1.0, high_open=True)
    return x + beta / (1.0 - beta) * (x - x_prev)


def normalized_step(x, d, lr):
    r""":math:`\theta - \eta\, d/\lVert d\rVert`, row-wise on ``(R, d)`` (no move where :math:`d = 0`)."""
    x, d = _pair(x, d, ("x", "d"))
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    return x - check_real(lr, "lr", low=0.0) * d / np.where(norm > 0, norm, 1.0)


def _start(name, params, x0, n_iters, n_log, f, grad, quantiles, callback, oracles):
    """The checks and the bookkeeping that the two methods share."""
    X, single = as_batch(x0)
    for key, fn in oracles.items():
        check_callable(fn, key, signature="(x, rng) -> array" if key == "stoch_grad" else "(x, v, rng) -> array")
    check_callable(f, "f", optional=True, signature="x -> (R,) values")
    check_callable(grad, "grad", optional=True, signature="x -> (R, d) gradients")
    n_iters = check_int(n_iters, "n_iters", low=1)
    steps, names = geometric_steps(n_iters, n_log), quantile_names(quantiles)
    trace = Trace(name, {**params, "n_iters": n_iters, "n_replicas": len(X)}, callback)

    def record(t, x, lr=np.nan, err=None):
        row = {"lr": lr} if err is None else {"lr": lr, "grad_err": err}
        if f is not None:
            row.update(replica_stats(check_rowwise(f, x), names, "f"))
        return trace.log(t, **row)

    def error(t, x, d):  # the mean squared error of the direction d at x, on logged steps only
        if grad is not None and t + 1 in steps:
            return float(np.mean(np.sum((d - check_oracle(grad, "grad", x)) ** 2, axis=1)))

    def finish(x, n_done, d):
        fx = float(np.mean(check_rowwise(f, x))) if f is not None and trace.message is None else None
        return trace.result(x[0] if single else x, fx, n_iters=n_done, d=d)

    return X, steps, trace, record, error, finish


def _beta_at(schedule, t):
    beta = step_at(schedule, t, "beta")
    if not beta < 1:
        raise ValueError(f"beta schedule must return momentum coefficients in [0, 1), got {beta:g} at step t={t}")
    return beta


def n_pg_igt(stoch_grad, x0, *, lr, beta, n_iters: int, transport: bool = True,
             normalize: bool = True, f=None, grad=None, n_log: int = 30,
             quantiles=(0.1, 0.5, 0.9), rng=None, callback=None):
    r"""N-PG-IGT, normalized policy gradient with implicit gradient transport, and the methods it improves on.

    Momentum averages gradients taken at old parameters, and lags behind them.  Implicit gradient transport
    samples each new gradient at an extrapolated point, so that the average is, up to second order, the gradient
    at the current parameters; the normalized step has length :math:`\eta_t` whatever the scale of the estimate.
    ``transport=False`` gives normalized momentum policy gradient; ``beta=0, transport=False, normalize=False``
    vanilla policy gradient (REINFORCE/GPOMDP with SGD).

    Parameters
    ----------
    stoch_grad : callable
        ``stoch_grad(x, rng)``: an unbiased estimate of the gradient of the cost, one trajectory per row.
    x0 : array_like, shape (d,) or (R, d)
        The policy parameters, one row per replica (not modified).
    lr : float or callable
        The step :math:`\eta_t` or a schedule ``t -> float``, e.g. :class:`~optlab.stochastic.lqr.power`.
    beta : float or callable
        The momentum :math:`\beta_t \in [0, 1)` or a schedule (e.g. :class:`~optlab.stochastic.lqr.momentum`),
        used from ``t = 1``: :math:`d_0 = g_0`.
    n_iters : int
        Iterations, one trajectory each.
    transport, normalize : bool
        Sample at the IGT point :math:`\tilde\theta_t` (else at :math:`\theta_t`); normalize the step.
    f, grad : callable or None
        The exact cost and its gradient, row-wise, only to log (not counted).
    n_log : int
        About this many logged steps, geometrically spaced in ``[1, n_iters]``.
    quantiles : sequence of float
        Quantiles of ``f`` over the replicas to log.
    rng : None, int or numpy.random.Generator
        The one source of randomness, passed to the oracles.
    callback : callable or None
        ``callback(record) -> bool`` at each logged step; True stops the run.

    Returns
    -------
    Result
        ``x``: the last parameters, shaped like ``x0``; ``f``: the mean cost there; extras: ``d``, the last
        direction.  History: ``t``, ``n_evals`` (trajectories per replica), ``lr`` (the step that reached the
        row); with ``f``: ``f`` (mean over replicas), ``f_q10``, ``f_q50``, ``f_q90``; with ``grad``:
        ``grad_err``, the mean of :math:`\lVert d_t - \nabla C(\theta_t)\rVert^2` for the :math:`d_t` of the step.

    Notes
    -----
    :math:`\tilde\theta_t = \theta_t + \frac{\beta_t}{1-\beta_t}(\theta_t - \theta_{t-1})`,
    :math:`d_t = \beta_t d_{t-1} + (1-\beta_t) g(\tau_t, \tilde\theta_t)` with :math:`\tau_t \sim
    \pi_{\tilde\theta_t}`, :math:`\theta_{t+1} = \theta_t - \eta_t d_t/\lVert d_t\rVert`: one trajectory and
    :math:`O(H(n^2 + d))` work per replica and iteration, no importance sampling.  For Fisher-non-degenerate
    policies the paper proves a sample complexity :math:`\tilde O(\varepsilon^{-2.5})` for a global
    :math:`\varepsilon`-optimal policy (for the return :math:`J = -C`, up to the term
    :math:`O(\sqrt{\varepsilon_{\mathrm{bias}}}/(1-\gamma))` of the policy class), against
    :math:`\tilde O(\varepsilon^{-3})` before; :math:`\eta_t \propto 1/t` and :math:`1 - \beta_t \propto t^{-4/5}`
    are the schedules the chapter's error recursion asks for this rate (not checked against the paper's theorems,
    whose constants are not used here).

    References
    ----------
    I. Fatkhullin, A. Barakat, A. Kireeva and N. He, Stochastic policy gradient methods: improved sample complexity
    for Fisher-non-degenerate policies, ICML 2023, arXiv:2302.01734 (``fatkhullin2023stochastic``); S. Arnold et
    al., NeurIPS 2019 (``arnold2019reducing``); A. Cutkosky and H. Mehta, ICML 2020 (``cutkosky2020momentum``);
    R. J. Williams, 1992 (``williams1992simple``); J. Baxter and P. L. Bartlett, 2001 (``baxter2001infinite``).

    Book: chapters/stochastic/policy_gradient.ipynb

    Examples
    --------
    >>> from optlab.stochastic.lqr import lqr_problem, momentum, power
    >>> p = lqr_problem()
    >>> res = n_pg_igt(p.stoch_grad, p.x0, lr=power(0.3, 1, 2), beta=momentum(1, 0.8), n_iters=200, f=p.f, rng=0)
    >>> res.n_evals, bool(p.gap(res.x) < 0.25 * p.gap(p.x0))
    ({'stoch_grad': 200}, True)
    """
    schedule, betas, rng = as_schedule(lr), as_schedule(beta, "beta"), as_rng(rng)
    if normalize:
        name = "n_pg_igt" if transport else "normalized_momentum"
    else:
        name = "pg_igt" if transport else "pg"
    params = {"lr": schedule, "beta": betas,
              "transport": check_bool(transport, "transport"),
              "normalize": check_bool(normalize, "normalize")}
    x, steps, trace, record, error, finish = _start(
        name, params, x0, n_iters, n_log, f, grad, quantiles, callback,
        {"stoch_grad": stoch_grad})
    d, x_prev, n_done = None, x, 0
    stopped = record(0, x)
    for t in range(0 if stopped else n_iters):
        eta = step_at(schedule, t)
        beta_t = 0.0 if t == 0 else _beta_at(betas, t)
        point = extrapolate(x, x_prev, beta_t) if transport else x
        g = check_oracle(stoch_grad, "stoch_grad", point, rng)
        trace.count("stoch_grad")
        d = g if d is None else beta_t * d + (1 - beta_t) * g
        err = error(t, x, d)
        x_prev, x = x, (normalized_step(x, d, eta) if normalize else x - eta * d)
        n_done = t + 1
        if trace.diverged(x, n_done):
            break
        if n_done in steps and record(n_done, x, eta, err):  # True: the callback stops
            break
    return finish(x, n_done, d)


def n_harpg(stoch_grad, stoch_hvp, x0, *, lr, beta, n_iters: int,
            normalize: bool = True, f=None, grad=None, n_log: int = 30,
            quantiles=(0.1, 0.5, 0.9), rng=None, callback=None):
    r"""(N)-HARPG, the Hessian-aided recursive policy gradient, normalized (N-HARPG) or not (HARPG).

    The momentum estimate is carried to the new parameters by a sampled Hessian-vector product along the last
    step, so it tracks the current gradient without the lag of plain momentum.

    Parameters
    ----------
    stoch_grad, x0, lr, beta, n_iters, normalize, f, grad, n_log, quantiles, rng, callback
        As in :func:`n_pg_igt`.
    stoch_hvp : callable
        ``stoch_hvp(x, v, rng)``: an unbiased estimate of :math:`\nabla^2 C(x) v`, one trajectory per row.

    Returns
    -------
    Result
        As in :func:`n_pg_igt`; ``n_evals`` counts both oracles.

    Notes
    -----
    With :math:`\hat\theta_t = q_t\theta_t + (1-q_t)\theta_{t-1}`, :math:`q_t \sim U[0, 1]`:
    :math:`v_t = B(\hat\tau_t, \hat\theta_t)(\theta_t - \theta_{t-1})` (:func:`harpg_correction`),
    :math:`d_t = \beta_t(d_{t-1} + v_t) + (1-\beta_t) g(\tau_t, \theta_t)`,
    :math:`\theta_{t+1} = \theta_t - \eta_t d_t/\lVert d_t\rVert`: two trajectories per iteration after the first,
    memory linear in d.  The paper proves the sample complexity :math:`\tilde O(\varepsilon^{-2})` (up to the bias
    term), with :math:`\eta_t, 1 - \beta_t \propto 1/t` in the chapter's derivation.
    :func:`~optlab.stochastic.lqr.lqr_problem` supplies :math:`B` in the per-time-step form with a value baseline
    (the paper states the trajectory form; both are unbiased).

    References
    ----------
    I. Fatkhullin, A. Barakat, A. Kireeva and N. He, ICML 2023, arXiv:2302.01734 (``fatkhullin2023stochastic``);
    Z. Shen et al., Hessian aided policy gradient, ICML 2019 (``shen2019hessian``).

    Book: chapters/stochastic/policy_gradient.ipynb

    Examples
    --------
    >>> from optlab.stochastic.lqr import lqr_problem, momentum, power
    >>> p = lqr_problem()
    >>> res = n_harpg(p.stoch_grad, p.info["stoch_hvp"], p.x0, lr=power(0.3, 1, 2), beta=momentum(2, 1),
    ...               n_iters=100, f=p.f, rng=0)
    >>> res.n_evals, bool(p.gap(res.x) < 0.25 * p.gap(p.x0))
    ({'stoch_grad': 100, 'stoch_hvp': 99}, True)
    """
    schedule, betas, rng = as_schedule(lr), as_schedule(beta, "beta"), as_rng(rng)
    params = {"lr": schedule, "beta": betas,
              "normalize": check_bool(normalize, "normalize")}
    x, steps, trace, record, error, finish = _start(
        "n_harpg" if normalize else "harpg", params, x0, n_iters, n_log, f, grad,
        quantiles, callback, {"stoch_grad": stoch_grad, "stoch_hvp": stoch_hvp})
    d, x_prev, n_done = None, x, 0
    stopped = record(0, x)
    for t in range(0 if stopped else n_iters):
        eta = step_at(schedule, t)
        g = check_oracle(stoch_grad, "stoch_grad", x, rng)
        trace.count("stoch_grad")
        if d is None:
            d = g
        else:
            beta_t = _beta_at(betas, t)
            v = harpg_correction(stoch_hvp, x, x_prev, rng)
            trace.count("stoch_hvp")
            d = beta_t * (d + v) + (1 - beta_t) * g
        err = error(t, x, d)
        x_prev, x = x, (normalized_step(x, d, eta) if normalize else x - eta * d)
        n_done = t + 1
        if trace.diverged(x, n_done):
            break
        if n_done in steps and record(n_done, x, eta, err):  # True: the callback stops
            break
    return finish(x, n_done, d)
