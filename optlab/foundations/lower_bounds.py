r"""Watching first-order methods on the zero-chain: the driver behind the chapter's lower bounds.

:func:`discovery` runs a first-order method on a hard instance of
:mod:`optlab.foundations.zero_chain` and records, query by query, how many chain coordinates
the oracle has revealed; :func:`chain_methods` sets the chapter's methods (gradient descent,
heavy ball, Nesterov, Adam with the step of :func:`adam_lr`) for an instance; :func:`chain_sgd`
runs SGD on replicas of the stochastic chain until each one has uncovered it. The hard
instances themselves (the chain, its scaled and rotated versions, the stochastic chain) are in
:mod:`optlab.foundations.zero_chain`.

References
----------
C. Zhang and T. Li, Quantum lower bounds for finding stationary points of nonconvex
functions, ICML 2023, arXiv:2212.03906 (``zhang2023quantum``); the chain is from Y. Carmon,
J. C. Duchi, O. Hinder and A. Sidford, Math. Program. 184, 2020, arXiv:1710.11606
(``carmon2020lower``), its stochastic version from Y. Arjevani et al., Math. Program. 199,
2023, arXiv:1912.02365 (``arjevani2023lower``).

Book: chapters/foundations/lower_bounds.ipynb
"""
from __future__ import annotations

import numpy as np

from ..baselines import adam, gradient_descent, heavy_ball, nesterov
from ..core import Problem, Trace, as_rng, check_oracle
from ..validate import check_array, check_callable, check_int, check_positive, check_real
from .zero_chain import _instance, _progress, _to_chain

__all__ = ["adam_lr", "chain_methods", "discovery", "chain_sgd"]


def adam_lr(problem: Problem, rate=0.1) -> float:
    r"""Adam's step for a hard instance: ``rate`` chain units, :math:`\eta = \mathrm{rate}\cdot\lambda`.

    Adam moves each coordinate by about :math:`\eta` per step whatever the gradient's scale, so
    its step is in units of :math:`x`: the chain's coordinates are :math:`x/\lambda`. ``problem``
    is made by :func:`~optlab.foundations.zero_chain.hard_instance`.

    >>> from optlab.foundations.zero_chain import hard_instance
    >>> round(adam_lr(hard_instance(0.1)), 4)                 # 0.1 lambda, lambda = 2 eps
    0.02
    """
    return check_positive(rate, "rate") * _instance(problem).info["lam"]


def chain_methods(problem: Problem) -> dict:
    r"""The chapter's methods, set for ``problem``: ``{name: run(grad, x0, n_iters)}``.

    Gradient descent and Nesterov with :math:`\eta = 1/L`, heavy ball with :math:`1/L` and
    :math:`\beta = 0.9`, Adam with :func:`adam_lr` (defaults, not tuned; see the chapter).
    """
    lr, a = 1.0 / _instance(problem).L, adam_lr(problem)

    def run(method, **hyper):
        return lambda grad, x0, n_iters: method(None, grad, x0, n_iters=n_iters,
                                                **hyper)

    return {"gd": run(gradient_descent, lr=lr),
            "heavy ball": run(heavy_ball, lr=lr, beta=0.9),
            "nesterov": run(nesterov, lr=lr),
            "adam": run(adam, lr=a)}


class _Stop(Exception):
    """Raised inside the recording oracle to end the method's run."""


def discovery(method, problem: Problem, *, eps, max_queries: int, tol=0.0, x0=None,
              rng=None, callback=None):
    r"""Run ``method`` on a hard instance and record what each gradient query reveals.

    The driver hands the method a recording gradient oracle. After query :math:`k` it logs the
    progress of the queried point and the number of chain coordinates revealed so far,
    :math:`\mathrm{known}_k = \max_{s \le k} \mathrm{prog}(\nabla \bar f_T(z_s))`, and it ends the run
    at the first query with :math:`\|\nabla f\| \le \epsilon` or after ``max_queries``.

    Parameters
    ----------
    method : callable
        ``method(grad, x0, n_iters)``, e.g. a value of :func:`chain_methods`.
    problem : Problem
        Made by :func:`~optlab.foundations.zero_chain.hard_instance`.
    eps : float
        The target gradient norm, ``> 0``.
    max_queries : int
        The query budget, ``>= 1``.
    tol : float
        Entries of :math:`|z|` and of the chain gradient at most ``tol`` count as zero (0 for
        the plain chain; a small number such as ``1e-9`` absorbs rounding under a rotation).
    x0 : array_like or None
        The start (default ``problem.x0 = 0``; not modified).
    rng : None, int or Generator
        Checked for the common signature; the runs are deterministic.
    callback : callable or None
        ``callback(record) -> bool`` after each query; True stops the run.

    Returns
    -------
    Result
        ``x``: the last point queried; ``f`` there. History, one row per query ``t = 1, 2, ...``:
        ``n_evals``, ``reached`` (progress of the query point), ``known``, ``grad_norm``.
        Extras: ``queries_to_eps`` (the first query with :math:`\|\nabla f\| \le \epsilon`, or
        None), ``max_new`` (the largest increase of ``known`` in one query), ``T``.

    Notes
    -----
    A method is zero-respecting if each query lies in the span of the coordinates revealed so
    far. From 0, the zero-chain property then gives :math:`\mathrm{known}_k \le
    \mathrm{known}_{k-1} + 1`, and the large-gradient property :math:`\|\nabla f\| > 2\epsilon`
    until :math:`(U^\top x)_T \ne 0`, hence ``queries_to_eps >= T + 1`` (Carmon et al.; the paper
    extends this sequential structure to quantum queries). Logging costs one projection
    :math:`U^\top x` per query and no oracle call.

    Examples
    --------
    >>> from optlab.foundations.zero_chain import hard_instance
    >>> p = hard_instance(0.2)
    >>> res = discovery(chain_methods(p)["gd"], p, eps=0.2, max_queries=5000)
    >>> res.T, res.max_new, res.queries_to_eps >= res.T + 1
    (12, 1, True)
    """
    check_callable(method, "method", signature="(grad, x0, n_iters) -> Result")
    _instance(problem)
    eps, tol = check_positive(eps, "eps"), check_real(tol, "tol", low=0.0)
    max_queries = check_int(max_queries, "max_queries", low=1)
    x0 = problem.x0 if x0 is None else check_array(x0, "x0", shape=problem.x0.shape)
    as_rng(rng)
    params = {"eps": eps, "max_queries": max_queries, "tol": tol}
    tr = Trace("discovery", params, callback)
    state = {"known": 0, "max_new": 0, "hit": None, "x": x0.copy()}

    def grad(x):                              # the recording oracle the method queries
        g = check_oracle(problem.grad, "grad", x)
        tr.count("grad")
        k = tr.total_evals
        known = max(state["known"], _progress(_to_chain(problem.info, g, True), tol))
        state["max_new"] = max(state["max_new"], known - state["known"])
        state["known"], state["x"] = known, np.array(x, dtype=float)
        gnorm = float(np.linalg.norm(g))
        reached = _progress(_to_chain(problem.info, x, False), tol)
        stop = tr.log(k, reached=reached, known=known, grad_norm=gnorm)
        if gnorm <= eps:
            state["hit"] = k
            tr.message = f"gradient norm {gnorm:.3g} <= eps={eps:g} at query {k}"
        if stop or gnorm <= eps or k >= max_queries:
            raise _Stop
        return g

    try:
        method(grad, x0.copy(), max_queries)
    except _Stop:
        pass
    x = state["x"]
    return tr.result(x, problem.f(x), n_iters=tr.total_evals,
                     converged=state["hit"] is not None, queries_to_eps=state["hit"],
                     max_new=state["max_new"], T=problem.info["T"])


def chain_sgd(stoch_grad, x0, *, lr, n_iters: int, target: int, rng=None,
              callback=None):
    r"""SGD :math:`x_k = x_{k-1} - \eta\, g(x_{k-1}, \xi_k)` on replicas, until each reaches progress ``target``.

    Parameters
    ----------
    stoch_grad : callable
        ``stoch_grad(x, rng)``, row-wise (e.g. of
        :func:`~optlab.foundations.zero_chain.stochastic_chain`).
    x0 : array_like, shape (R, T)
        One row per replica (not modified).
    lr : float
        The step, ``> 0`` (``1/ELL1`` in chain units, ``ELL1`` of
        :mod:`~optlab.foundations.zero_chain`).
    n_iters : int
        The query budget per replica.
    target : int
        The progress to reach (``T``: the whole chain uncovered).
    rng : None, int or Generator
        The source of the Bernoulli draws.
    callback : callable or None
        ``callback(record) -> bool`` after each query; True stops the run.

    Returns
    -------
    Result
        ``x``: the replicas. History per query: ``t``, ``n_evals`` (queries per replica),
        ``progress`` (mean over replicas), ``done`` (share that reached ``target``). Extras:
        ``queries_to_target`` (per replica, the first :math:`k` with
        :math:`\mathrm{prog}(x_k) \ge` ``target``; ``-1`` if not reached).

    Notes
    -----
    One stochastic gradient per replica and query, :math:`O(RT)` work. On the stochastic
    chain every link must wait for a draw :math:`\xi = 1`, so any
    zero-respecting method needs :math:`T/q` queries in expectation to uncover the chain
    (Arjevani et al.); SGD with :math:`\eta = 1/\ell_1` and :math:`q \lesssim 0.02` attains it
    (its kick :math:`\eta\,|\partial_j \bar f_T|/q` opens the next gate at once).

    Examples
    --------
    >>> from optlab.foundations.zero_chain import ELL1, stochastic_chain
    >>> p = stochastic_chain(5, 0.5)
    >>> res = chain_sgd(p.stoch_grad, np.zeros((3, 5)), lr=1 / ELL1, n_iters=5000, target=5,
    ...                 rng=0)
    >>> res.converged, bool(res.queries_to_target.min() >= 5)
    (True, True)
    """
    check_callable(stoch_grad, "stoch_grad", signature="(x, rng) -> array")
    x = check_array(x0, "x0", ndim=2)
    lr, n_iters = check_positive(lr, "lr"), check_int(n_iters, "n_iters", low=1)
    target, rng = check_int(target, "target", low=1, high=x.shape[1]), as_rng(rng)
    tr = Trace("chain sgd", {"lr": lr, "n_iters": n_iters, "target": target}, callback)
    hit = np.full(len(x), -1)
    for t in range(n_iters):
        g = check_oracle(stoch_grad, "stoch_grad", x, rng)       # one query per replica
        tr.count("stoch_grad")
        x = x - lr * g
        if tr.diverged(x, t + 1):
            break
        prog = _progress(x, 0.0)
        hit[(prog >= target) & (hit < 0)] = t + 1
        if tr.log(t + 1, progress=np.mean(prog), done=np.mean(hit > 0)):
            break
        if np.all(hit > 0):
            tr.message = f"every replica reached progress {target} by query {t + 1}"
            break
    return tr.result(x, np.nan, n_iters=tr.total_evals, converged=bool(np.all(hit > 0)),
                     queries_to_target=hit)
