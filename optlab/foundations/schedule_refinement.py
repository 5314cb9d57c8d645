r"""Learning-rate schedules by refinement: a last-iterate bound, its minimizer, and the refined schedule.

SGD :math:`x_{t+1} = x_t - \eta_t g_t`, :math:`t = 0, \dots, T-1`, on a convex problem, with
:math:`G_t = \lVert g_t\rVert` (or :math:`\sqrt{\mathbb E\lVert g_t\rVert^2}`), :math:`D = \lVert x_0 - x^\star\rVert`.
Two bounds on the last point :math:`x_{T-1}` at which a gradient is taken:

* :func:`last_iterate_bound`, the bound the paper minimizes numerically (:func:`optimal_schedule`), with
  :math:`S_k = \sum_{t \ge k}\eta_t` and :math:`V_k = \sum_{t \ge k}\eta_t^2 G_t^2`,

  .. math:: B(\eta) = \frac{D^2 + V_0}{2 S_0} + \frac12\sum_{k=0}^{T-2}\frac{\eta_k V_k}{S_k S_{k+1}};

* :func:`refinement_bound`: SGD with :math:`\eta_t = \gamma w_t W_{t+1}/W_0` (:func:`weights_to_steps`,
  :math:`W_k = \sum_{t \ge k} w_t`) satisfies :math:`\mathbb E f(x_{T-1}) - f^\star \le (D^2/\gamma + \gamma\sum_t
  w_t^2 G_t^2)/(2W_0)`; its minimizer :math:`w_t = G_t^{-2}` gives :func:`refine`,
  :math:`\eta_t \propto G_t^{-2}\sum_{p>t} G_p^{-2}`: linear decay for constant :math:`G_t`.

:func:`two_stage` is the recipe: run once and record the gradient norms, smooth them with a median filter
(:func:`smooth_grad_norms`), refine, rerun; its runs are the SGD of :mod:`optlab.foundations.schedule_refinement_sgd`.

References
----------
A. Defazio, A. Cutkosky, H. Mehta and K. Mishchenko, When, why and how much? Adaptive learning rate scheduling
by refinement, arXiv:2310.07831, 2023 (``defazio2023when``); official code: facebookresearch/adaptive_scheduling.

Book: chapters/foundations/schedule_refinement.ipynb
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter
from scipy.optimize import minimize

from ..core import Result, Trace, as_rng, as_schedule
from ..schedules import linear_decay
from ..validate import check_array, check_bool, check_int, check_positive, check_real
from .schedule_refinement_sgd import _steps, sgd, tabulated

__all__ = ["last_iterate_bound", "bound_at_best_scale", "optimal_schedule", "weights_to_steps",
           "refinement_bound", "refine", "smooth_grad_norms", "two_stage"]


def _tails(v):
    """Suffix sums ``out[k] = v[k] + ... + v[T-1]``."""
    return np.cumsum(v[::-1])[::-1]


def _squared_norms(grad_norms, n, name="grad_norms"):
    """``G_t^2`` as an array of length ``n`` (a number means the same norm at every step)."""
    if np.ndim(grad_norms) == 0:
        return np.full(n, check_positive(grad_norms, name) ** 2)
    g = check_array(grad_norms, name, shape=(n,))
    if np.any(g <= 0):
        raise ValueError(f"{name} must be > 0 (the bounds and the refinement divide by them)")
    return g ** 2


def _average_term(eta, g2, D):
    r"""``(D^2 + V_0) / (2 S_0)`` (the average-iterate bound) and its gradient in ``eta``."""
    S0, V0 = eta.sum(), np.sum(g2 * eta ** 2)
    return (D ** 2 + V0) / (2 * S0), g2 * eta / S0 - (D ** 2 + V0) / (2 * S0 ** 2)


def _chaining_term(eta, g2):
    r"""``sum_k eta_k V_k / (2 S_k S_{k+1})`` (the price of the last iterate) and its gradient."""
    S, V = _tails(eta), _tails(g2 * eta ** 2)
    if S[-1] <= 0:
        raise ValueError("lr: the bound is undefined when the last step is 0 (it "
                         "divides by the sum of the steps after step k); evaluate it "
                         "on 1 - t/T, t = 0..T-1, rather than on 1 - t/(T-1)")
    ratio = eta[:-1] / (S[:-1] * S[1:])
    c = ratio * V[:-1]
    # prefix(a)[j]: the sum of a_k over k <= min(j, T-2)
    prefix = lambda a: np.concatenate([np.cumsum(a), [a.sum()]])
    grad = (np.concatenate([V[:-1] / (S[:-1] * S[1:]), [0.0]])
            + 2 * g2 * eta * prefix(ratio)
            - prefix(c / S[:-1])
            - np.concatenate([[0.0], np.cumsum(c / S[1:])]))
    return 0.5 * c.sum(), 0.5 * grad


def _bound(eta, g2, D):
    (c, gc), (a, ga) = _chaining_term(eta, g2), _average_term(eta, g2, D)  # the chaining term checks the last step
    return a + c, ga + gc


def last_iterate_bound(lr, grad_norms=1.0, D: float = 1.0, *, gradient: bool = False):
    r"""The paper's last-iterate bound :math:`B(\eta)` of a schedule (see the module docstring), or its gradient.

    ``lr`` holds the steps :math:`\eta_0, \dots, \eta_{T-1}` (``T >= 2``, last step ``> 0``); ``grad_norms`` a
    number or the :math:`G_t`; ``D`` the initial distance.  With ``gradient``, :math:`\partial B/\partial\eta_j`
    instead (prefix sums).  Cost :math:`O(T)`.

    >>> round(last_iterate_bound(np.full(4, 0.5)), 4)
    0.9583
    """
    eta = _steps(lr)
    out = _bound(eta, _squared_norms(grad_norms, eta.size), check_real(D, "D", low=0.0))
    return out[1] if check_bool(gradient, "gradient") else float(out[0])


def bound_at_best_scale(lr, grad_norms=1.0, D: float = 1.0):
    r"""``(value, scale)``: the bound of ``scale * lr`` at its best scale, :math:`\min_c B(c\eta)`.

    :math:`B(c\eta) = D^2/(2cS_0) + cK` with :math:`K = B(\eta) - D^2/(2S_0)`, so :math:`c^\star = D/\sqrt{2S_0K}`
    and :math:`\min_c B(c\eta) = D\sqrt{2K/S_0}`: schedules compare by shape, each at its own best scale.

    >>> value, scale = bound_at_best_scale(np.ones(100))
    >>> round(value, 4)
    0.2485
    """
    eta = _steps(lr)
    g2, D = _squared_norms(grad_norms, eta.size), check_positive(D, "D")
    K = _chaining_term(eta, g2)[0] + _average_term(eta, g2, 0.0)[0]
    return float(D * np.sqrt(2 * K / eta.sum())), float(D / np.sqrt(2 * eta.sum() * K))


class _Stop(Exception):
    """Raised in scipy's callback when the caller's callback asks to stop."""


def optimal_schedule(grad_norms, *, n_steps=None, D: float = 1.0, x0=None, max_iter: int = 20000,
                     rng=None, callback=None) -> Result:
    r"""Minimize :math:`B(\eta)` over schedules :math:`\eta \ge 10^{-8}` with L-BFGS-B and the exact gradient.

    Parameters
    ----------
    grad_norms : float or array_like
        The :math:`G_t`; a number needs the horizon ``n_steps``.  ``D``: the initial distance.
    x0 : array_like or None
        The starting schedule: by default :math:`D/\sqrt T` at every step (as in the official code), or the random
        positive start :math:`(D/\sqrt T)e^{z_t/2}`, :math:`z_t \sim N(0, 1)`, when ``rng`` is given.
    max_iter, callback
        L-BFGS-B iterations; ``callback(record)`` after each of them (True stops).

    Returns
    -------
    Result
        ``x`` the schedule (at its optimal scale), ``f`` its bound; history ``t`` (L-BFGS-B iteration), ``f``;
        ``n_evals["bound"]`` counts evaluations of the bound with its gradient.

    Notes
    -----
    One bound and gradient evaluation costs :math:`O(T)`.  For constant :math:`G_t` the minimizer is close to
    linear decay, not equal to it (correlation 0.997 at ``T = 50``, above 0.999 from ``T = 100``).

    >>> round(optimal_schedule(1.0, n_steps=100).f, 4)
    0.2001
    """
    if np.ndim(grad_norms) == 0:
        T = check_int(n_steps, "n_steps", low=2) if check_positive(grad_norms, "grad_norms") else 0
    elif n_steps is not None:
        raise ValueError("n_steps: give it only with a number grad_norms (an array sets the horizon)")
    else:
        T = check_array(grad_norms, "grad_norms", ndim=1, min_size=2).size
    g2, D = _squared_norms(grad_norms, T), check_positive(D, "D")
    max_iter, rng = check_int(max_iter, "max_iter", low=1), None if rng is None else as_rng(rng)
    if x0 is not None:
        start = np.maximum(check_array(x0, "x0", shape=(T,)), 1e-8)
    else:
        start = np.full(T, D / np.sqrt(T)) * (1.0 if rng is None else np.exp(0.5 * rng.standard_normal(T)))
    tr = Trace("optimal_schedule", {"n_steps": T, "D": D, "max_iter": max_iter}, callback)
    bound = tr.counted("bound", lambda eta: _bound(eta, g2, D))
    best = {"x": start}

    def record(eta):
        best["x"] = np.array(eta)
        if tr.log(len(tr.history), f=_bound(best["x"], g2, D)[0]):
            raise _Stop

    try:
        record(start)
        out = minimize(bound, start, jac=True, method="L-BFGS-B", bounds=[(1e-8, None)] * T, callback=record,
                       options={"maxiter": max_iter, "maxfun": 10 * max_iter, "ftol": 1e-15, "gtol": 1e-12,
                                "maxcor": 20})
        x, done, message = out.x, bool(out.success), str(out.message)
    except _Stop:
        x, done, message = best["x"], False, "stopped by callback"
    return tr.result(x, _bound(x, g2, D)[0], n_iters=len(tr.history) - 1, converged=done, message=message)


def _weights(weights):
    w = check_array(weights, "weights", ndim=1, min_size=2)
    if np.any(w <= 0):
        raise ValueError("weights must be > 0")
    return w


def _tail_products(w):
    """``w_t * (w_{t+1} + ... + w_{T-1})``: the steps of the weights up to the factor ``1 / W_0``."""
    return w * np.append(_tails(w)[1:], 0.0)


def weights_to_steps(weights) -> np.ndarray:
    r"""The SGD steps :math:`\eta_t = w_t W_{t+1}/W_0` of weights :math:`w_t > 0` (the last step is 0).

    >>> weights_to_steps(np.ones(4)).tolist()
    [0.75, 0.5, 0.25, 0.0]
    """
    w = _weights(weights)
    return _tail_products(w) / w.sum()


def refinement_bound(weights, grad_norms=1.0, D: float = 1.0) -> float:
    r"""The bound :math:`D\sqrt{\sum_t w_t^2G_t^2}/\sum_t w_t` of SGD with the steps of ``weights`` at the best
    :math:`\gamma = D/\sqrt{\sum_t w_t^2 G_t^2}`; minimal, :math:`D/\sqrt{\sum_t G_t^{-2}}`, at :math:`w_t = G_t^{-2}`.

    >>> refinement_bound(np.ones(100))  # linear decay: D G / sqrt(T)
    0.1
    """
    w, D = _weights(weights), check_positive(D, "D")
    return float(D * np.sqrt(np.sum(w ** 2 * _squared_norms(grad_norms, w.size))) / w.sum())


def refine(grad_norms) -> np.ndarray:
    r"""The refined schedule :math:`\eta_t \propto G_t^{-2}\sum_{p>t}G_p^{-2}`, peak 1, last step exactly 0.

    Large early norms give a warm-up; the tail sum anneals it to 0 at the end.

    >>> refine(np.ones(5)).tolist()  # constant norms: 1 - t/(T-1)
    [1.0, 0.75, 0.5, 0.25, 0.0]
    """
    g = check_array(grad_norms, "grad_norms", ndim=1, min_size=2)
    steps = _tail_products(_squared_norms(g, g.size) ** -1.0)
    return steps / steps.max()


def smooth_grad_norms(grad_norms, tau: float = 0.1) -> np.ndarray:
    r"""A median filter of odd width :math:`2\lfloor\tau T/2\rfloor + 1` with reflect padding at the end.

    The recipe of the official code's README: pad the end by twice the width (so the last steps see a
    reflection of the run, not its edge), filter, drop the padding.

    >>> smooth_grad_norms([1.0, 9.0, 1.0, 1.0, 2.0], tau=0.6).tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    g = check_array(grad_norms, "grad_norms", ndim=1)
    width = 2 * int(check_real(tau, "tau", low=0.0, high=1.0) * g.size // 2) + 1
    padded = np.pad(g, (0, 2 * width), mode="reflect")
    return median_filter(padded, size=width, mode="nearest")[:g.size]


def two_stage(stoch_grad, x0, *, lr: float, n_iters: int, f=None, first_lr=None,
              tau: float = 0.1, n_log: int = 30, rng=None, callback=None) -> Result:
    r"""The paper's two-stage recipe: run SGD, record and smooth its gradient norms, refine them, rerun.

    The first run measures how large the gradients are at each stage of training; the refined schedule takes
    small steps where they were large (a warm-up) and anneals to zero at the end (:func:`refine`).

    Parameters
    ----------
    stoch_grad, x0, f, n_log, rng, callback
        As in :func:`~optlab.foundations.schedule_refinement_sgd.sgd`; both runs start from ``x0``, one generator
        drives both, ``callback`` is given to the second run.
    lr : float
        The peak step of the refined schedule, ``> 0``.
    n_iters : int
        The horizon ``T`` of each run, ``>= 2``.
    first_lr : float, schedule or None
        The first run's steps (default: linear decay from ``lr`` to 0).
    tau : float
        The median filter's width as a fraction of ``T`` (0.1 as in the official code; 0: no filter).

    Returns
    -------
    Result
        The second run (history as in ``sgd``, ``n_evals`` counting both runs), with extras ``schedule`` (the
        refined steps: peak ``lr``, last step 0), ``smoothed`` (the filtered norms; replicas are averaged first),
        ``grad_norms`` (of the second run) and ``first`` (the first run's Result).

    Notes
    -----
    :math:`\hat G = \mathrm{median}_\tau(G)`, :math:`w_t = \hat G_t^{-2}`, :math:`\eta_t = \mathrm{lr}\;w_t W_{t+1}
    / \max_s w_s W_{s+1}`.  Cost: ``2 T`` oracle calls and :math:`O(\tau T^2)` for the filter.  Guarantee (convex
    :math:`f`, steps fixed in advance): bound (3) of the chapter with the second run's :math:`G_t`; it is minimal
    when these equal the smoothed norms of the first run, which is the recipe's bet, not a theorem.  The
    paper refines one run's norms; averaging replicas is ours.

    >>> res = two_stage(lambda X, rng: X, np.full(2, 4.0), lr=0.5, n_iters=50, rng=0)
    >>> float(res.schedule[-1]), bool(res.schedule.argmax() > 0), res.n_evals
    (0.0, True, {'stoch_grad': 100})
    """
    lr, n_iters = check_positive(lr, "lr"), check_int(n_iters, "n_iters", low=2)
    tau = check_real(tau, "tau", low=0.0, high=1.0)
    first_lr = (linear_decay(lr, n_iters) if first_lr is None
                else as_schedule(first_lr, "first_lr"))
    rng = as_rng(rng)
    first = sgd(stoch_grad, x0, lr=first_lr, n_iters=n_iters, f=f, n_log=n_log, rng=rng)
    if first.n_iters < n_iters:
        raise ValueError(f"first_lr: the first run stopped early ({first.message}); "
                         "lower the step")
    smoothed = smooth_grad_norms(np.atleast_2d(first.grad_norms).mean(axis=0), tau)
    schedule = lr * refine(smoothed)
    res = sgd(stoch_grad, x0, lr=tabulated(schedule), n_iters=n_iters, f=f, n_log=n_log,
              rng=rng, callback=callback)
    res.method = "two_stage"
    res.params = {**res.params, "lr": lr, "tau": tau, "first_lr": first_lr}
    res.n_evals = {k: res.n_evals.get(k, 0) + first.n_evals.get(k, 0)
                   for k in set(res.n_evals) | set(first.n_evals)}
    res.extras.update(schedule=schedule, smoothed=smoothed, first=first)
    return res
