r"""Multiobjective optimal control of a non-smooth elliptic PDE: Pareto criticality and fronts.

:func:`control_problem` discretizes :math:`-y'' + \kappa \max(0, y) = Bu` on (0, 1) with finite
differences and returns the two objectives (tracking and an l1 control cost) with their
adjoint (sub)gradients, counting state and adjoint solves.  :func:`min_norm_element` is the
small QP of multiobjective descent; :func:`descent` is Gebken and Peitz's descent method for
locally Lipschitz objectives, which enriches a set of subgradients until it certifies
(approximate) Pareto criticality or finds a common descent direction.  :func:`trace_front`
traces the front by Pascoletti-Serafini or weighted-sum scalarization with continuation
(warm starts) and certifies every point with :func:`descent`; :func:`hypervolume` and
:func:`dominated` compare fronts; :func:`nsga2_front` runs pymoo's NSGA-II on the same model.

References
----------
M. Bernreuther et al., arXiv:2308.01113 (``bernreuther2023multiobjective``); B. Gebken and
S. Peitz, JOTA 2021 (``gebken2021efficient``).

Book: chapters/constrained/multiobjective_pde.ipynb
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from scipy.linalg import solve_banded
from scipy.optimize import minimize, nnls

from ..core import Trace, as_rng, check_oracle
from ..validate import check_array, check_callable, check_choice, check_int, check_positive, check_real

__all__ = ["control_problem", "generalized_derivative", "min_norm_element", "descent", "trace_front", "hypervolume",
           "dominated", "nsga2_front"]


def generalized_derivative(y, kappa):
    r"""A generalized (Newton) derivative of :math:`y \mapsto \kappa\max(0, y)`: :math:`\kappa 1[y > 0]`."""
    return kappa * (y > 0)


def control_problem(n_nodes: int = 63, n_controls: int = 8, kappa: float = 50.0, sigma: float = 0.02,
                    rng=None):
    r"""The bicriterial control problem, discretized with ``n_nodes`` interior nodes.

    State :math:`A y + \kappa \max(0, y) = B u` (A the FD Laplacian, B maps ``n_controls``
    piecewise-constant controls to the nodes); objectives
    :math:`J_1 = \tfrac h2 \|y - y_d\|^2` with :math:`y_d = \sin(2\pi x)` (plus, with a seed
    ``rng``, a random combination :math:`\sum_{j=2}^4 a_j \sin(j\pi x)/j`, :math:`a_j\sim N(0, 0.3^2)`) and
    :math:`J_2 = \tfrac{\sigma}{m}\|u\|_1`.  Returns a namespace with ``f(u) -> (2,)``,
    ``subgrad(u) -> (2, m)`` (the adjoint gradient of J_1, ``sigma/m sign(u)`` for J_2),
    ``state(u)`` and ``solves`` (counts of ``"state"`` and ``"adjoint"`` solves).
    """
    n, m = check_int(n_nodes, "n_nodes", low=3), check_int(n_controls, "n_controls", low=1)
    kappa, sigma = check_real(kappa, "kappa", low=0.0), check_positive(sigma, "sigma")
    h = 1.0 / (n + 1)
    xs = h * np.arange(1, n + 1)
    B = 100.0 * (np.minimum((xs * m).astype(int), m - 1)[:, None] == np.arange(m))
    y_d = np.sin(2 * np.pi * xs)
    if rng is not None:
        a = as_rng(rng).normal(0.0, 0.3, 3)
        y_d = y_d + np.sin(np.pi * np.outer(xs, [2, 3, 4])) @ (a / [2, 3, 4])
    solves = {"state": 0, "adjoint": 0}

    def banded(diag):                        # A + diag(diag) in banded storage
        ab = np.zeros((3, n))
        ab[0, 1:] = ab[2, :-1] = -1.0 / h**2
        ab[1] = 2.0 / h**2 + diag
        return ab

    def state(u):
        """Semismooth Newton on the piecewise-linear state equation (exact in finitely many steps)."""
        solves["state"] += 1
        rhs, active = B @ u, np.zeros(n, bool)
        for _ in range(50):                  # Newton: (A + kappa D(y)) y_new = B u, D = diag(1[y > 0])
            y = solve_banded((1, 1), banded(kappa * active), rhs)
            if np.array_equal(y > 0, active):
                return y
            active = y > 0
        return y

    def f(u):
        u = np.asarray(u, dtype=float)
        y = state(u)
        return np.array([0.5 * h * np.sum((y - y_d) ** 2), sigma / m * np.abs(u).sum()])

    def subgrad(u):
        u = np.asarray(u, dtype=float)
        y = state(u)
        solves["adjoint"] += 1               # (A + kappa D)^T p = h (y - y_d), D = diag(1[y > 0])
        p = solve_banded((1, 1), banded(generalized_derivative(y, kappa)), h * (y - y_d))
        return np.stack([B.T @ p, sigma / m * np.sign(u)])

    return SimpleNamespace(f=f, subgrad=subgrad, state=state, solves=solves, B=B, y_d=y_d, x=xs,
                           n_controls=m, sigma=sigma, kappa=kappa)


def min_norm_element(W):
    r"""The element of smallest norm in the convex hull of the rows of ``W``, and its weights.

    Solves :math:`\min_{\alpha\in\Delta}\|W^\top\alpha\|` exactly as the non-negative least
    squares problem :math:`\min_{\beta\ge0}\|W^\top\beta\|^2 + (\mathbf 1^\top\beta - 1)^2`:
    its KKT conditions give :math:`\langle w_i, \xi\rangle \ge \|\xi\|^2` for
    :math:`\xi = W^\top\beta/\mathbf 1^\top\beta`, the optimality of the min-norm point.

    >>> xi, a = min_norm_element([[1.0, 0.0], [0.0, 1.0]])
    >>> np.round(xi, 12).tolist(), np.round(a, 12).tolist()
    ([0.5, 0.5], [0.5, 0.5])
    """
    W = check_array(W, "W", ndim=2)
    beta, _ = nnls(np.vstack([W.T, np.ones(len(W))]), np.r_[np.zeros(W.shape[1]), 1.0])
    alpha = beta / beta.sum()
    return alpha @ W, alpha


def descent(f, subgrad, x0, *, eps: float = 1e-4, delta: float = 1e-4, c: float = 0.5,
            max_enrich: int = 40, n_iters: int = 200, rng=None, callback=None):
    r"""Gebken and Peitz's descent method for locally Lipschitz multiobjective problems.

    Parameters
    ----------
    f : callable
        ``f(x) -> (k,)``, the objective values.
    subgrad : callable
        ``subgrad(x) -> (k, d)``, one (Clarke) subgradient per objective.
    x0 : array_like, shape (d,)
        The start (not modified).
    eps : float
        Radius of the Goldstein epsilon-ball.
    delta : float
        Criticality tolerance, relative: stop when :math:`\|v\| \le \delta \max_{\xi\in W}\|\xi\|`.
    c : float in (0, 1)
        Armijo constant of the descent test.
    max_enrich : int
        Most subgradients added to W per step.
    n_iters : int
        Most descent steps.
    rng : ignored
        The method is deterministic (accepted for the common signature).
    callback : callable or None
        ``callback(record) -> bool`` after each step; True stops.

    Returns
    -------
    Result
        ``x``, ``f`` (the vector of objectives).  Extras: ``v_norm`` (the last min-norm element's
        norm), ``rel_criticality`` (it over the largest norm in W), ``W`` (the final subgradients),
        ``alpha`` (their weights).  History: ``t``, ``n_evals``, ``f1``, ``f2``..., ``v_norm``,
        ``n_W`` (size of W), ``step``.

    Notes
    -----
    At x: :math:`W = \{\xi_1,\dots,\xi_k\}`, :math:`v = -\arg\min_{\xi\in\mathrm{conv}W}\|\xi\|`.
    If :math:`\|v\|` is small, x is (eps, delta)-critical.  If
    :math:`J_i(x + \varepsilon v/\|v\|) \le J_i(x) - c\varepsilon\|v\|` for all i, v is a common
    descent direction: step :math:`t = 2^j\varepsilon` for the largest j keeping the test.
    Otherwise a new subgradient of a violating :math:`J_i` at :math:`x + s v/\|v\|`,
    :math:`s = \varepsilon 2^{-j}`, with :math:`\langle\xi, v\rangle > -c\|v\|^2`, is added to W;
    W approximates the Goldstein eps-subdifferential.  Differences from the paper: the point on
    the segment is found by halving, not bisection on the difference quotient, and delta is
    relative.  Cost per step: one QP (an NNLS with :math:`|W|` columns), :math:`k + |W|` function and
    subgradient evaluations.

    References
    ----------
    B. Gebken and S. Peitz, JOTA 188, 2021 (``gebken2021efficient``); M. Bernreuther et al.,
    arXiv:2308.01113 (``bernreuther2023multiobjective``).

    Book: chapters/constrained/multiobjective_pde.ipynb

    Examples
    --------
    >>> f = lambda x: np.array([abs(x[0]) + x[1] ** 2, (x[0] - 1) ** 2 + abs(x[1])])
    >>> g = lambda x: np.array([[np.sign(x[0]), 2 * x[1]], [2 * (x[0] - 1), np.sign(x[1])]])
    >>> res = descent(f, g, [2.0, 2.0], eps=1e-3)
    >>> res.converged, bool(res.rel_criticality <= 1e-4)
    (True, True)
    """
    x = check_array(x0, "x0", ndim=1).copy()
    check_callable(f, "f", signature="x -> (k,)")
    check_callable(subgrad, "subgrad", signature="x -> (k, d)")
    eps, delta = check_positive(eps, "eps"), check_positive(delta, "delta")
    c = check_real(c, "c", low=0.0, high=1.0, low_open=True, high_open=True)
    max_enrich = check_int(max_enrich, "max_enrich", low=0)
    n_iters = check_int(n_iters, "n_iters", low=1)
    as_rng(rng)                          # validated only: the method is deterministic
    params = {"eps": eps, "delta": delta, "c": c, "max_enrich": max_enrich,
              "n_iters": n_iters}
    trace = Trace("descent", params, callback)
    fx = np.asarray(f(x), dtype=float)
    k = check_array(fx, "f(x0)", ndim=1).size
    trace.count("f")
    converged, n_done = False, 0
    for t in range(n_iters):
        W = check_oracle(subgrad, "subgrad", x, shape=(k, x.size))
        trace.count("subgrad")
        for _ in range(max_enrich + 1):
            xi, alpha = min_norm_element(W)
            v, nv = -xi, float(np.linalg.norm(xi))
            scale = float(np.linalg.norm(W, axis=1).max())
            if nv <= delta * scale:
                converged = True
                break
            d = v / nv
            trial = f(x + eps * d)
            trace.count("f")
            bad = np.flatnonzero(trial > fx - c * eps * nv)
            if bad.size == 0:
                break
            W = np.vstack([W, enrich(f, subgrad, x, d, v, bad[0], eps, c, trace)])
        step = 0.0
        if not converged and bad.size == 0:
            step, fx = eps, trial        # double the step while the Armijo test holds
            for _ in range(40):
                f2 = f(x + 2 * step * d)
                trace.count("f")
                if np.any(f2 > fx - c * step * nv):
                    break
                step, fx = 2 * step, f2
            x = x + step * d
        n_done = t + 1
        values = {f"f{i + 1}": fx[i] for i in range(k)}
        stop = trace.log(n_done, **values, v_norm=nv, n_W=len(W), step=step)
        if converged or step == 0.0 or stop or trace.diverged(x, n_done):
            break
    msg = "eps-delta critical" if converged else (
        "no descent direction found" if step == 0.0 else None)
    if trace.stopped_by_callback:
        msg = None
    return trace.result(x, fx, n_iters=n_done, converged=converged, message=msg,
                        v_norm=nv, rel_criticality=nv / scale, W=W, alpha=alpha)


def enrich(f, subgrad, x, d, v, i, eps, c, trace, n_halvings: int = 12):
    r"""A new subgradient of :math:`J_i` on the segment :math:`[x, x + \varepsilon d]`.

    Tries :math:`s = \varepsilon, \varepsilon/2, \dots` and returns the first subgradient with
    :math:`\langle\xi, v\rangle > -c\|v\|^2` (one the current W did not contain); else the last.
    """
    s = eps
    for _ in range(n_halvings):
        xi = subgrad(x + s * d)[i]
        trace.count("subgrad")
        if xi @ v > -c * (v @ v):
            return xi
        s /= 2
    return xi


def _scalarized(prob, z, r, w0, scal):
    """One Pascoletti-Serafini or weighted-sum solve in split variables u = p - q (p, q >= 0)."""
    m = prob.n_controls
    a = prob.sigma / m
    if scal == "ps":                       # min t  s.t.  J_i(u) - z_i <= t r_i
        def jac_cons(w):
            g1 = prob.subgrad(w[:m] - w[m:2 * m])[0]
            return np.array([np.r_[-g1, g1, r[0]], np.r_[-a * np.ones(2 * m), r[1]]])

        def cons(w):
            J1 = prob.f(w[:m] - w[m:2 * m])[0]
            return np.array([w[-1] * r[0] + z[0] - J1, w[-1] * r[1] + z[1] - a * w[:2 * m].sum()])

        out = minimize(lambda w: w[-1], w0, jac=lambda w: np.r_[np.zeros(2 * m), 1.0], method="SLSQP",
                       bounds=[(0, None)] * (2 * m) + [(None, None)], options={"maxiter": 300, "ftol": 1e-12},
                       constraints=[{"type": "ineq", "fun": cons, "jac": jac_cons}])
    else:                                  # min z_1 J_1 + z_2 J_2 (z are the weights)
        def fun(w):
            u = w[:m] - w[m:2 * m]
            return z[0] * prob.f(u)[0] + z[1] * a * w[:2 * m].sum(), np.r_[
                z[0] * prob.subgrad(u)[0], -z[0] * prob.subgrad(u)[0], 0.0] + np.r_[z[1] * a * np.ones(2 * m), 0]

        out = minimize(fun, w0, jac=True, method="L-BFGS-B", bounds=[(0, None)] * (2 * m) + [(0, 0)],
                       options={"maxiter": 500, "ftol": 1e-14, "gtol": 1e-10})
    return out.x


def trace_front(prob, n_points: int, *, scalarization: str = "ps", eps: float = 1e-4, delta: float = 1e-4):
    r"""A front of ``n_points`` by scalarization with continuation, each point certified by :func:`descent`.

    ``"ps"``: Pascoletti-Serafini, reference points evenly spaced on the segment between the
    two anchor images, direction r normal to it once each objective is scaled by its range
    (:math:`r \propto (|\Delta J_1|, |\Delta J_2|)`); ``"ws"``: weighted sums with evenly spaced
    weights.  Each solve is warm-started from the previous one (continuation), then
    :func:`descent` polishes it and certifies (eps, delta)-criticality.  Returns a namespace:
    ``U (n, m)``, ``F (n, 2)``, ``rel_criticality (n,)``, ``solves`` (state/adjoint counts).
    """
    n_points = check_int(n_points, "n_points", low=2)
    scal = check_choice(scalarization, "scalarization", ("ps", "ws"))
    m, start = prob.n_controls, dict(prob.solves)
    w1 = _scalarized(prob, (1.0, 1e-6), None, np.r_[np.ones(2 * m), 0.0], "ws")
    F1, F2 = prob.f(w1[:m] - w1[m:2 * m]), prob.f(np.zeros(m))
    dF = F2 - F1
    r = np.array([dF[0], -dF[1]]) / np.linalg.norm(dF)   # the normal (1, 1) after scaling by the ranges
    U, F, crit, w = [], [], [], np.r_[w1[:2 * m], 0.0]
    for s in np.linspace(0.0, 1.0, n_points):
        z = F1 + s * dF if scal == "ps" else (1.0 - s, s)
        w = _scalarized(prob, z, r, w, scal)
        res = descent(prob.f, prob.subgrad, w[:m] - w[m:2 * m], eps=eps, delta=delta)
        U.append(res.x), F.append(res.f), crit.append(res.rel_criticality)
    solves = {k: prob.solves[k] - start[k] for k in start}
    return SimpleNamespace(U=np.array(U), F=np.array(F), rel_criticality=np.array(crit), solves=solves)


def dominated(F, G=None, tol: float = 1e-9):
    r"""Which rows of ``F`` are dominated by a row of ``G`` (default ``F`` itself), with tolerance.

    g dominates f when :math:`g \le f + tol` in every component and :math:`g < f - tol` in
    at least one (so near-ties do not count as domination).

    >>> dominated([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]).tolist()
    [False, False, True]
    """
    F = check_array(F, "F", ndim=2)
    G = F if G is None else check_array(G, "G", ndim=2)
    le = np.all(G[None, :, :] <= F[:, None, :] + tol, axis=2)
    lt = np.any(G[None, :, :] < F[:, None, :] - tol, axis=2)
    return np.any(le & lt, axis=1)


def hypervolume(F, ref):
    r"""The area dominated by the 2-D points ``F`` and bounded by the reference point ``ref``.

    >>> hypervolume([[0.0, 1.0], [1.0, 0.0]], [2.0, 2.0])
    3.0
    """
    F, ref = check_array(F, "F", ndim=2), check_array(ref, "ref", ndim=1, shape=(2,))
    F = F[np.all(F < ref, axis=1)]
    F = F[np.argsort(F[:, 0])]
    best = np.minimum.accumulate(F[:, 1]) if len(F) else F[:, 1]
    keep = np.r_[True, best[1:] < best[:-1]] if len(F) else np.zeros(0, bool)
    P = F[keep]
    widths = np.diff(np.r_[P[:, 0], ref[0]])
    return float(np.sum(widths * (ref[1] - np.minimum.accumulate(P[:, 1]))))


def nsga2_front(prob, *, pop_size: int = 40, n_gen: int = 100, bound: float = 2.0, rng=0):
    r"""pymoo's NSGA-II on the same model: the first non-dominated front, its controls and solve counts."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem as PymooProblem
    from pymoo.optimize import minimize as pymoo_minimize

    pop_size, n_gen = check_int(pop_size, "pop_size", low=4), check_int(n_gen, "n_gen", low=1)
    m, start = prob.n_controls, dict(prob.solves)

    class Control(PymooProblem):
        def __init__(self):
            super().__init__(n_var=m, n_obj=2, xl=-bound, xu=bound)

        def _evaluate(self, X, out, *args, **kwargs):
            out["F"] = np.array([prob.f(u) for u in X])

    res = pymoo_minimize(Control(), NSGA2(pop_size=pop_size), ("n_gen", n_gen), seed=int(rng), verbose=False)
    solves = {k: prob.solves[k] - start[k] for k in start}
    return SimpleNamespace(U=res.X, F=res.F, solves=solves)
