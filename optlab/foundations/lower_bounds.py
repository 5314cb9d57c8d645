r"""The zero-chain: the hard function behind the lower bounds for finding stationary points.

:func:`chain_f` and :func:`chain_grad` are the chain :math:`\bar f_T` of Carmon et al.;
:func:`hard_instance` scales it into an :math:`L`-smooth function with gap at most :math:`\Delta`
whose gradient stays above :math:`2\epsilon` until all :math:`T(\epsilon)` links are uncovered;
:func:`discovery` runs a first-order method on it and records, query by query, how many chain
coordinates the oracle has revealed. :func:`stochastic_chain` and :func:`chain_sgd` are the
stochastic version, where a query reveals the next link only with probability :math:`q`.

References
----------
C. Zhang and T. Li, Quantum lower bounds for finding stationary points of nonconvex functions,
ICML 2023, arXiv:2212.03906 (``zhang2023quantum``); the chain is from Y. Carmon, J. C. Duchi,
O. Hinder and A. Sidford, Math. Program. 184, 2020, arXiv:1710.11606 (``carmon2020lower``), its
stochastic version from Y. Arjevani et al., Math. Program. 199, 2023, arXiv:1912.02365
(``arjevani2023lower``).

Book: chapters/foundations/lower_bounds.ipynb
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from ..baselines import adam, gradient_descent, heavy_ball, nesterov
from ..core import Problem, Trace, as_rng, check_oracle
from ..validate import (
    check_array,
    check_bool,
    check_callable,
    check_int,
    check_positive,
    check_probability,
    check_real,
    describe,
)

__all__ = ["ELL1", "ANCHOR", "psi", "dpsi", "phi", "dphi", "chain_f", "chain_grad", "chain_length",
           "hard_instance", "chain_coordinates", "progress", "adam_lr", "chain_methods", "discovery",
           "stochastic_chain", "chain_sgd"]

ELL1 = 152.0                  # Lipschitz constant of the chain's gradient (Carmon et al.)
ANCHOR = 1.0                  # x_0: the fixed coordinate that starts the chain
SQRT_E, SQRT_2PIE = math.sqrt(math.e), math.sqrt(2 * math.pi * math.e)


def _floats(t, name="t"):
    """``t`` as a float array (no copy, no finiteness check: these are elementwise maps)."""
    try:
        return np.asarray(t, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers, got {describe(t)}") from None


def psi(t):
    r"""The gate :math:`\Psi(t) = \exp(1 - 1/(2t-1)^2)` for :math:`t > 1/2`, exactly 0 otherwise."""
    t = _floats(t)
    on = t > 0.5
    z = np.where(on, 2 * t - 1, 1.0)           # a safe denominator where the gate is closed
    return np.where(on, np.exp(1 - 1 / z ** 2), 0.0)


def dpsi(t):
    r""":math:`\Psi'(t) = \Psi(t)\, 4/(2t-1)^3` for :math:`t > 1/2`, 0 otherwise."""
    t = _floats(t)
    on = t > 0.5
    z = np.where(on, 2 * t - 1, 1.0)
    return np.where(on, np.exp(1 - 1 / z ** 2) * 4 / z ** 3, 0.0)


def phi(t):
    r""":math:`\Phi(t) = \sqrt e \int_{-\infty}^t e^{-s^2/2}\,ds = \sqrt{2\pi e}\,N(t)`, N the normal cdf."""
    return SQRT_2PIE * ndtr(_floats(t))


def dphi(t):
    r""":math:`\Phi'(t) = \sqrt e\, e^{-t^2/2}`."""
    return SQRT_E * np.exp(-0.5 * _floats(t) ** 2)


def _shift(x, fill):
    """``(fill, x_1, ..., x_{T-1})`` along the last axis."""
    return np.concatenate([np.full(x.shape[:-1] + (1,), fill), x[..., :-1]], axis=-1)


def chain_f(x):
    r"""The chain :math:`\bar f_T(x) = \sum_{i=1}^T \Psi(-x_{i-1})\Phi(-x_i) - \Psi(x_{i-1})\Phi(x_i)`.

    With ``ANCHOR = 1`` in place of :math:`x_0`, the first term is :math:`-\Psi(1)\Phi(x_1)`.

    Row-wise: ``x`` of shape ``(T,)`` gives a float, ``(R, T)`` gives ``(R,)``.

    >>> round(float(chain_f(np.zeros(3))), 4)   # -Psi(1) Phi(0) = -sqrt(2 pi e)/2
    -2.0664
    """
    x = check_array(x, "x", ndim=(1, 2))
    prev = _shift(x, ANCHOR)
    return np.sum(psi(-prev) * phi(-x) - psi(prev) * phi(x), axis=-1)


def chain_grad(x):
    r"""The gradient of :func:`chain_f`, row-wise.

    :math:`\partial_j \bar f_T = -\Psi(|x_{j-1}|)\Phi'(x_j) - \Psi'(|x_j|)\Phi(\mathrm{sgn}(x_j) x_{j+1})`
    (the second term absent for :math:`j = T`): of :math:`\Psi(t)` and :math:`\Psi(-t)` at most one
    is nonzero, and :math:`\Phi'` is even. So :math:`\partial_j` vanishes unless
    :math:`|x_{j-1}| > 1/2` or :math:`|x_j| > 1/2`: the zero-chain property.

    >>> g = chain_grad(np.zeros(3))              # only the first link is visible from 0
    >>> round(float(g[0]), 4), (g != 0).tolist()
    (-1.6487, [True, False, False])
    """
    x = check_array(x, "x", ndim=(1, 2))
    a = np.abs(x)
    g = -psi(_shift(a, abs(ANCHOR))) * dphi(x)
    g[..., :-1] -= dpsi(a[..., :-1]) * phi(np.sign(x[..., :-1]) * x[..., 1:])
    return g


def chain_length(eps, *, L=ELL1, delta=24.0) -> int:
    r"""The number of links of the hard instance, :math:`T(\epsilon) = \lfloor \Delta L/(48\ell_1\epsilon^2) \rfloor`.

    >>> chain_length(0.1), chain_length(0.05)     # 1/(2 eps^2) with the defaults
    (50, 200)
    """
    eps, L, delta = check_positive(eps, "eps"), check_positive(L, "L"), check_positive(delta, "delta")
    return int(math.floor(delta * L / (48 * ELL1 * eps ** 2) + 1e-9))


def hard_instance(eps, *, L=ELL1, delta=24.0, dim=None, rng=None) -> Problem:
    r"""The hard instance :math:`f(x) = \frac{L\lambda^2}{\ell_1} \bar f_T(U^\top x/\lambda)`.

    With :math:`\lambda = 2\epsilon\ell_1/L`, :math:`f` is :math:`L`-smooth, :math:`f(0) - \inf f \le \Delta`, and
    :math:`\|\nabla f(x)\| > 2\epsilon` unless :math:`|(U^\top x)_T| \ge \lambda`; ``T`` is
    :func:`chain_length`. ``dim=None`` means :math:`U = I` (``dim = T``); an int ``dim >= T``
    draws :math:`U` with ``T`` orthonormal columns from ``rng`` (a random rotation). ``x0 = 0``;
    ``info`` holds ``T``, ``lam``, ``scale`` (:math:`L\lambda^2/\ell_1`), ``U``, ``eps``, ``delta``.
    """
    T, L = chain_length(eps, L=L, delta=delta), check_positive(L, "L")
    if T < 1:
        raise ValueError(f"eps must be small enough for a chain of at least one link, "
                         f"got eps={eps:g} (T = 0)")
    lam = 2 * eps * ELL1 / L
    scale = L * lam ** 2 / ELL1
    U = None
    if dim is not None:
        dim = check_int(dim, "dim", low=T)
        U = np.linalg.qr(as_rng(rng).standard_normal((dim, T)))[0]
    to_chain = (lambda x: x / lam) if U is None else (lambda x: (x @ U) / lam)
    from_chain = (lambda g: g) if U is None else (lambda g: g @ U.T)

    def f(x):
        return scale * chain_f(to_chain(np.asarray(x, dtype=float)))

    def grad(x):
        z = to_chain(np.asarray(x, dtype=float))
        return (scale / lam) * from_chain(chain_grad(z))

    x0 = np.zeros(T if U is None else dim)
    info = {"T": T, "lam": lam, "scale": scale, "U": U, "eps": eps, "delta": delta}
    return Problem(f"zero-chain(T={T}, eps={eps:g})", f=f, grad=grad, x0=x0, L=L, info=info)


def _instance(problem) -> Problem:
    if not isinstance(problem, Problem) or "lam" not in problem.info or "U" not in problem.info:
        raise TypeError(f"problem must be a Problem made by hard_instance, got {describe(problem)}")
    return problem


def chain_coordinates(problem: Problem, x, *, gradient=False):
    r"""A point (or a gradient, ``gradient=True``) of a :func:`hard_instance` in chain units.

    :math:`z = U^\top x / \lambda`, and for a gradient :math:`U^\top g\,\lambda/\mathrm{scale}`
    (which is :math:`\nabla \bar f_T(z)`).
    """
    info = _instance(problem).info
    x = check_array(x, "x", ndim=(1, 2), finite=False)
    if x.shape[-1] != problem.dim:
        raise ValueError(f"x must have {problem.dim} entries in its last axis, got shape {x.shape}")
    return _to_chain(info, x, check_bool(gradient, "gradient"))


def _to_chain(info, x, gradient):
    z = x if info["U"] is None else x @ info["U"]
    return z * info["lam"] / info["scale"] if gradient else z / info["lam"]


def progress(z, tol=0.0):
    r"""The progress :math:`\mathrm{prog}(z) = \max\{i : |z_i| > \mathrm{tol}\}` (0 if none), row-wise.

    >>> progress([0.3, -2.0, 0.0, 0.0]), progress([[0.3, 0.0], [0.0, 0.0]]).tolist()
    (2, [1, 0])
    """
    return _progress(check_array(z, "z", ndim=(1, 2)), check_real(tol, "tol", low=0.0))


def _progress(z, tol):
    big = np.abs(z) > tol
    out = np.where(big.any(axis=-1), big.shape[-1] - np.argmax(big[..., ::-1], axis=-1), 0)
    return int(out) if out.ndim == 0 else out


def adam_lr(problem: Problem, rate=0.1) -> float:
    r"""Adam's step for a :func:`hard_instance`: ``rate`` chain units, :math:`\eta = \mathrm{rate}\cdot\lambda`.

    Adam moves each coordinate by about :math:`\eta` per step whatever the gradient's scale, so
    its step is in units of :math:`x`: the chain's coordinates are :math:`x/\lambda`.
    """
    return check_positive(rate, "rate") * _instance(problem).info["lam"]


def chain_methods(problem: Problem) -> dict:
    r"""The chapter's methods, set for ``problem``: ``{name: run(grad, x0, n_iters)}``.

    Gradient descent and Nesterov with :math:`\eta = 1/L`, heavy ball with :math:`1/L` and
    :math:`\beta = 0.9`, Adam with :func:`adam_lr` (defaults, not tuned; see the chapter).
    """
    lr, a = 1.0 / _instance(problem).L, adam_lr(problem)
    return {"gd": lambda grad, x0, n_iters: gradient_descent(None, grad, x0, lr=lr, n_iters=n_iters),
            "heavy ball": lambda grad, x0, n_iters: heavy_ball(None, grad, x0, lr=lr, beta=0.9, n_iters=n_iters),
            "nesterov": lambda grad, x0, n_iters: nesterov(None, grad, x0, lr=lr, n_iters=n_iters),
            "adam": lambda grad, x0, n_iters: adam(None, grad, x0, lr=a, n_iters=n_iters)}


class _Stop(Exception):
    """Raised inside the recording oracle to end the method's run."""


def discovery(method, problem: Problem, *, eps, max_queries: int, tol=0.0, x0=None,
              rng=None, callback=None):
    r"""Run ``method`` on a :func:`hard_instance` and record what each gradient query reveals.

    The driver hands the method a recording gradient oracle. After query :math:`k` it logs the
    progress of the queried point and the number of chain coordinates revealed so far,
    :math:`\mathrm{known}_k = \max_{s \le k} \mathrm{prog}(\nabla \bar f_T(z_s))`, and it ends the run
    at the first query with :math:`\|\nabla f\| \le \epsilon` or after ``max_queries``.

    Parameters
    ----------
    method : callable
        ``method(grad, x0, n_iters)``, e.g. a value of :func:`chain_methods`.
    problem : Problem
        Made by :func:`hard_instance`.
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

    def grad(x):
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


def stochastic_chain(T: int, q) -> Problem:
    r"""The chain with a stochastic gradient that reveals the next link only with probability ``q``.

    :math:`g(x, \xi) = \nabla \bar f_T(x)` except on the coordinates beyond
    :math:`\mathrm{prog}_{1/4}(x)`, which are multiplied by :math:`\xi/q`,
    :math:`\xi \sim \mathrm{Bernoulli}(q)` (one draw per query and replica): unbiased, with
    variance :math:`\frac{1-q}{q}(\partial_{j}\bar f_T)^2`, :math:`j = \mathrm{prog}_{1/4}(x) + 1`.
    Row-wise ``stoch_grad(x, rng)``; in chain units, ``L = ELL1``.
    """
    T, q = check_int(T, "T", low=1), check_probability(q, "q")
    if q == 0:
        raise ValueError("q must be in (0, 1], got 0")

    def stoch_grad(x, rng):
        x = np.asarray(x, dtype=float)
        g = chain_grad(x)
        beyond = np.arange(T) >= np.asarray(_progress(x, 0.25))[..., None]
        xi = rng.random(x.shape[:-1] + (1,)) < q
        return np.where(beyond, g * xi / q, g)

    return Problem(f"stochastic zero-chain(T={T}, q={q:g})", f=chain_f, grad=chain_grad, x0=np.zeros(T),
                   stoch_grad=stoch_grad, L=ELL1, info={"T": T, "q": q})


def chain_sgd(stoch_grad, x0, *, lr, n_iters: int, target: int, rng=None, callback=None):
    r"""SGD :math:`x_k = x_{k-1} - \eta\, g(x_{k-1}, \xi_k)` on replicas, until each one's progress reaches ``target``.

    Parameters
    ----------
    stoch_grad : callable
        ``stoch_grad(x, rng)``, row-wise (e.g. :func:`stochastic_chain`).
    x0 : array_like, shape (R, T)
        One row per replica (not modified).
    lr : float
        The step, ``> 0`` (``1/ELL1`` in chain units).
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
    One stochastic gradient per replica and query, :math:`O(RT)` work. On
    :func:`stochastic_chain` every link must wait for a draw :math:`\xi = 1`, so any
    zero-respecting method needs :math:`T/q` queries in expectation to uncover the chain
    (Arjevani et al.); SGD with :math:`\eta = 1/\ell_1` and :math:`q \lesssim 0.02` attains it
    (its kick :math:`\eta\,|\partial_j \bar f_T|/q` opens the next gate at once).

    Examples
    --------
    >>> p = stochastic_chain(5, 0.5)
    >>> res = chain_sgd(p.stoch_grad, np.zeros((3, 5)), lr=1 / ELL1, n_iters=5000, target=5, rng=0)
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
        g = check_oracle(stoch_grad, "stoch_grad", x, rng)
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
    return tr.result(x, np.nan, n_iters=tr.total_evals, converged=bool(np.all(hit > 0)), queries_to_target=hit)
