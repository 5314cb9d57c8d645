r"""LV-HBA: a single-loop, Hessian-free method for bilevel problems with coupled lower-level constraints.

The lower level is constrained by :math:`h(x, y) \le 0`, constraints that may involve both variables.
The *proximal Lagrangian value function* :math:`v_\gamma(x, y, z)` (:func:`prox_lagrangian_value`) is
smooth, and :math:`g - v_\gamma \le 0`, :math:`h \le 0` is an equivalent single-level constraint.
:func:`lv_hba` penalizes the first and projects onto the second, with one descent-ascent step on the
inner saddle point per iteration; :func:`toy_problem` is the coupled-constraint toy of the paper's code
and :func:`box_regression_problem` a hyperparameter problem whose constraints couple the levels.

References
----------
W. Yao, C. Yu, S. Zeng and J. Zhang, ICLR 2024, arXiv:2401.16164 (``yao2024constrained``).

Book: chapters/bilevel/lv_hba.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..core import Trace, as_rng, geometric_steps
from ..validate import check_array, check_int, check_positive
from .core import BilevelProblem, lower_solve

__all__ = ["ConstrainedBilevelProblem", "prox_lagrangian_value", "inner_step", "outer_directions",
           "penalty_weight", "lv_hba", "toy_problem", "box_regression_problem"]


@dataclass
class ConstrainedBilevelProblem(BilevelProblem):
    r"""A :class:`~optlab.bilevel.core.BilevelProblem` with lower-level constraints :math:`h(x, y) \le 0`.

    ``h(x, y)`` returns the ``m`` constraint values (shape ``(..., m)``); ``jvp_hx(x, y, lam)`` and
    ``jvp_hy(x, y, lam)`` are :math:`\sum_i \lambda_i \nabla_x h_i` and :math:`\sum_i \lambda_i \nabla_y h_i`;
    ``project_xy(x, y)`` projects onto :math:`C = \{(x, y) : h(x, y) \le 0\}`; ``L_hy`` bounds
    :math:`\|\nabla_y h\|^2` (the inner step sizes read it); ``x_star``, ``y_star_point`` and ``lam_star``
    are a known solution.  All oracles act row-wise on batches.
    """

    h: Optional[Callable] = None
    jvp_hx: Optional[Callable] = None
    jvp_hy: Optional[Callable] = None
    project_xy: Optional[Callable] = None
    n_constraints: int = 1
    L_hy: float = 1.0
    x_star: Optional[np.ndarray] = None
    y_star_point: Optional[np.ndarray] = None
    lam_star: Optional[np.ndarray] = None


def _per_row(value, name, x):
    v = check_array(value, name, ndim=(0, 1))
    if v.ndim == 1 and (x.ndim != 2 or len(v) != len(x)):
        raise ValueError(f"{name} must be a number or one per row of x0, got shape {v.shape}")
    return v[:, None] if v.ndim == 1 else v


def _lam_best(p, x, theta, z, gamma2, r):  # the max over lambda in [0, r] in closed form
    return np.clip(z + gamma2 * p.h(x, theta), 0.0, r)


def prox_lagrangian_value(p: ConstrainedBilevelProblem, x, y, z, *, gamma1, gamma2,
                          r=1e3, tol=1e-10):
    r"""The proximal Lagrangian value function :math:`v_\gamma(x, y, z)` and its saddle point.

    The max over :math:`\lambda \in [0, r]` has the closed form :math:`\lambda^*(\theta) =
    \mathrm{clip}(z + \gamma_2 h(x, \theta), 0, r)`; the remaining smooth, strongly convex problem in
    :math:`\theta` is solved to ``||grad|| <= tol`` with :func:`~optlab.bilevel.core.lower_solve`.
    Row-wise on batches.  Returns ``{"value", "theta", "lam"}``.

    >>> p = toy_problem(n=3)
    >>> out = prox_lagrangian_value(p, p.x_star, p.y_star_point, p.lam_star, gamma1=10.0, gamma2=10.0)
    >>> abs(float(p.g(p.x_star, p.y_star_point) - out["value"])) < 1e-9  # no gap at the solution
    True
    """
    x, y, z = (check_array(v, k, ndim=(1, 2)) for v, k in ((x, "x"), (y, "y"), (z, "z")))
    g1, g2 = check_positive(gamma1, "gamma1"), check_positive(gamma2, "gamma2")
    r, tol = check_positive(r, "r"), check_positive(tol, "tol")

    def grad(theta):
        lam = _lam_best(p, x, theta, z, g2, r)
        return p.grad_gy(x, theta) + p.jvp_hy(x, theta, lam) + (theta - y) / g1

    theta, _ = lower_solve(grad, y, lr=1.0 / (p.L_gy + 1.0 / g1 + g2 * p.L_hy), tol=tol)
    lam = _lam_best(p, x, theta, z, g2, r)
    value = (p.g(x, theta) + np.sum(lam * p.h(x, theta), axis=-1)
             + np.sum((theta - y) ** 2, axis=-1) / (2 * g1)
             - np.sum((lam - z) ** 2, axis=-1) / (2 * g2))
    return {"value": value, "theta": theta, "lam": lam}


def inner_step(p, x, y, z, theta, lam, *, eta, gamma1, gamma2, r):
    r"""One gradient descent-ascent step on the proximal Lagrangian, from :math:`(\theta, \lambda)`."""
    d_theta = p.grad_gy(x, theta) + p.jvp_hy(x, theta, lam) + (theta - y) / gamma1
    d_lam = p.h(x, theta) - (lam - z) / gamma2
    return theta - eta * d_theta, np.clip(lam + eta * d_lam, 0.0, r)


def penalty_weight(c_lower, power, k):
    r"""The penalty :math:`c_k = \underline{c}(k+1)^p` (row-wise when ``c_lower`` or ``power`` are arrays)."""
    return c_lower * (k + 1.0) ** power


def outer_directions(p, x, y, z, theta, lam, c, *, gamma1, gamma2):
    r"""The gradients of :math:`F/c + g - v_\gamma` in :math:`x`, :math:`y` and :math:`z` at the inner iterate."""
    d_x = (p.grad_Fx(x, y) / c + p.grad_gx(x, y) - p.grad_gx(x, theta)
           - p.jvp_hx(x, theta, lam))
    d_y = p.grad_Fy(x, y) / c + p.grad_gy(x, y) - (y - theta) / gamma1
    d_z = -(lam - z) / gamma2
    return d_x, d_y, d_z


def lv_hba(p: ConstrainedBilevelProblem, x0, y0, *, alpha, beta, eta, gamma1=10.0,
           gamma2=10.0, c_lower=1.0, power=0.3, r=1e3, z0=None, lam0=None,
           n_iters=1000, n_log=50, keep_x=False, rng=None, callback=None):
    r"""LV-HBA: single-loop, Hessian-free descent on the proximal-Lagrangian value-function penalty.

    Intuition: the bilevel constraint "y solves the lower level" becomes the smooth inequality
    :math:`g(x, y) - v_\gamma(x, y, z) \le 0`.  Each step tracks the saddle point of :math:`v_\gamma`
    with one descent-ascent step and moves :math:`(x, y, z)` along the penalized gradient, weighting
    the upper objective by :math:`1/c_k` with :math:`c_k` slowly growing.

    Parameters
    ----------
    p : ConstrainedBilevelProblem
    x0, y0 : array_like, shape (dx,), (dy,) or replicas (R, dx), (R, dy)
        Start (projected onto :math:`C`; not modified).
    alpha, beta, eta : float
        Steps of :math:`(x, y)`, of :math:`z` and of the inner :math:`(\theta, \lambda)`.
    gamma1, gamma2, r : float
        Proximal parameters of :math:`v_\gamma`; box :math:`[0, r]` of :math:`\lambda` and :math:`z`.
    c_lower, power : float or array of shape (R,)
        Penalty schedule :math:`c_k = \underline{c}(k+1)^p`, ``power`` in [0, 1/2); one value per
        replica runs several schedules in one vectorized loop.
    z0, lam0 : array_like or None
        Starts of :math:`z` and :math:`\lambda` (default: ones).  :math:`\theta` starts at ``y0``.
    n_iters, n_log, keep_x : int, int, bool
        Steps; about how many (geometrically spaced) steps to log; store ``x`` in each logged row.
    rng, callback
        ``rng`` is accepted for the common signature (deterministic method); ``callback(record)``
        returning True stops the run.

    Returns
    -------
    Result
        ``x`` (shaped like ``x0``); ``f`` = :math:`F(x, y)` (per replica).  Extras: ``y``, ``z``,
        ``theta``, ``lam``.  History columns ``f`` (mean over replicas), ``x_err`` (largest
        :math:`\|x - x^*\|/\|x^*\|` over replicas, NaN without ``p.x_star``), ``violation``
        (largest :math:`h`), ``c``.  ``n_evals`` counts ``grad_Fx``, ``grad_Fy``, ``grad_gx`` (2 per
        step), ``grad_gy`` (2), ``h`` and ``jvp_h`` (2): no second derivatives.

    Notes
    -----
    Step k, with :math:`\Pi` the projections:

    .. math::
        \theta^{k+1} &= \theta^k - \eta[\nabla_y g(x^k, \theta^k) + \nabla_y h(x^k, \theta^k)^\top\lambda^k
                        + (\theta^k - y^k)/\gamma_1] \\
        \lambda^{k+1} &= \Pi_{[0, r]}(\lambda^k + \eta[h(x^k, \theta^k) - (\lambda^k - z^k)/\gamma_2]) \\
        d_x &= \nabla_x F/c_k + \nabla_x g(x^k, y^k) - \nabla_x g(x^k, \theta^{k+1})
               - \nabla_x h(x^k, \theta^{k+1})^\top\lambda^{k+1} \\
        d_y &= \nabla_y F/c_k + \nabla_y g(x^k, y^k) - (y^k - \theta^{k+1})/\gamma_1 \\
        (x^{k+1}, y^{k+1}) &= \Pi_C((x^k, y^k) - \alpha(d_x, d_y)), \quad
        z^{k+1} = \Pi_{[0, r]}(z^k + \beta(\lambda^{k+1} - z^k)/\gamma_2).

    Cost per step: a constant number of first-order calls.  The paper's guarantee (from its
    abstract): non-asymptotic convergence to stationary points of the single-level reformulation
    without strong convexity of the lower level, for :math:`c_k = \underline{c}(k+1)^p`,
    :math:`p \in (0, 1/2)`, and small enough steps; the exact rate and its constants were not
    verified here.  Differences: :math:`\theta` is unconstrained (the lower feasible set
    :math:`Y` is the whole space, constraints enter through :math:`h` only); logs are geometric.

    References
    ----------
    W. Yao, C. Yu, S. Zeng and J. Zhang, Constrained bi-level optimization: proximal Lagrangian value
    function approach and Hessian-free algorithm, ICLR 2024, arXiv:2401.16164 (``yao2024constrained``).
    Code: github.com/SUSTech-Optimization/LV-HBA.

    Book: chapters/bilevel/lv_hba.ipynb

    Examples
    --------
    >>> p = toy_problem(n=3)
    >>> res = lv_hba(p, np.zeros(3), np.zeros(6), alpha=0.008, beta=0.02, eta=0.01, n_iters=3000)
    >>> round(float(res.history["x_err"][-1]), 3) < 0.1, res.n_evals["grad_gy"]
    (True, 6000)
    """
    x, y = check_array(x0, "x0", ndim=(1, 2)), check_array(y0, "y0", ndim=(1, 2))
    if x.shape[:-1] != y.shape[:-1]:
        raise ValueError(f"x0 and y0 must have the same rows, got {x.shape}, {y.shape}")
    alpha, beta = check_positive(alpha, "alpha"), check_positive(beta, "beta")
    eta = check_positive(eta, "eta")
    gamma1, gamma2 = check_positive(gamma1, "gamma1"), check_positive(gamma2, "gamma2")
    r = check_positive(r, "r")
    c_lower, power = _per_row(c_lower, "c_lower", x), _per_row(power, "power", x)
    if np.any(c_lower <= 0) or np.any(power < 0) or np.any(power >= 0.5):
        raise ValueError("c_lower must be > 0, power in [0, 0.5): one or one per row")
    n_iters = check_int(n_iters, "n_iters", low=1)
    n_log = check_int(n_log, "n_log", low=2)
    as_rng(rng)
    shape_m = x.shape[:-1] + (p.n_constraints,)
    z = np.ones(shape_m) if z0 is None else check_array(z0, "z0", shape=shape_m)
    lam = np.ones(shape_m) if lam0 is None else check_array(lam0, "lam0", shape=shape_m)
    x, y = p.project_xy(x, y)
    theta = y.copy()
    params = {"alpha": alpha, "beta": beta, "eta": eta, "gamma1": gamma1,
              "gamma2": gamma2, "c_lower": c_lower, "power": power, "r": r,
              "n_iters": n_iters}
    trace = Trace("lv_hba", params, callback, keep_x=keep_x)
    log_at = geometric_steps(n_iters, n_log)

    def log(t, c):  # logging evaluations are not counted
        err = np.nan if p.x_star is None else float(np.max(
            np.linalg.norm(x - p.x_star, axis=-1) / np.linalg.norm(p.x_star)))
        return trace.log(t, x, f=float(np.mean(p.F(x, y))), x_err=err,
                         violation=float(np.max(p.h(x, y))), c=c)

    stop, t = log(0, np.max(c_lower)), 0
    for t in range(0 if stop else n_iters):
        c = penalty_weight(c_lower, power, t)
        theta, lam = inner_step(p, x, y, z, theta, lam, eta=eta, gamma1=gamma1,
                                gamma2=gamma2, r=r)
        d_x, d_y, d_z = outer_directions(p, x, y, z, theta, lam, c, gamma1=gamma1,
                                         gamma2=gamma2)
        x, y = p.project_xy(x - alpha * d_x, y - alpha * d_y)
        z = np.clip(z - beta * d_z, 0.0, r)
        for oracle, k in (("grad_Fx", 1), ("grad_Fy", 1), ("grad_gx", 2),
                          ("grad_gy", 2), ("h", 1), ("jvp_h", 2)):
            trace.count(oracle, k)
        if trace.diverged(x, t + 1) or trace.diverged(y, t + 1):
            break
        if t + 1 in log_at and log(t + 1, float(np.max(c))):
            break
    done = int(trace.history["t"][-1])
    f = p.F(x, y) if trace.message is None else None
    return trace.result(x, f, n_iters=done, y=y, z=z, theta=theta, lam=lam)


# --------------------------------------------------------------------------- problems

def toy_problem(n: int = 10) -> ConstrainedBilevelProblem:
    r"""The coupled-constraint toy of the paper's code, with the constraint written as :math:`h \le 0`.

    :math:`x \in \mathbb R^n`, :math:`y = (y_1, y_2) \in \mathbb R^{2n}`,
    :math:`F = \tfrac12\|x - y_2\|^2 + \tfrac12\|y_1 - \mathbf 1\|^2`,
    :math:`g = \tfrac12\|y_1\|^2 - x^\top y_1 + \mathbf 1^\top y_2`, and the single coupled constraint
    :math:`h(x, y) = -(\mathbf 1^\top x + \mathbf 1^\top y) \le 0` (multiplier :math:`+1`; the official code
    writes :math:`\mathbf 1^\top x + \mathbf 1^\top y` as an equality with multiplier :math:`-1`).  The lower
    level has a whole hyperplane of solutions in :math:`y_2`; the bilevel solution is
    :math:`x^* = -0.3\cdot\mathbf 1`, :math:`y_1^* = 0.7\cdot\mathbf 1`, :math:`y_2^* = -0.4\cdot\mathbf 1`,
    :math:`\lambda^* = 1`.
    """
    n = check_int(n, "n", low=1)

    def split(y):
        return y[..., :n], y[..., n:]

    def F(x, y):
        y1, y2 = split(y)
        return 0.5 * np.sum((x - y2) ** 2, axis=-1) + 0.5 * np.sum((y1 - 1) ** 2, axis=-1)

    def g(x, y):
        y1, y2 = split(y)
        return 0.5 * np.sum(y1**2, axis=-1) - np.sum(x * y1, axis=-1) + np.sum(y2, axis=-1)

    def grad_Fy(x, y):
        y1, y2 = split(y)
        return np.concatenate([y1 - 1, y2 - x], axis=-1)

    def grad_gy(x, y):
        y1, y2 = split(y)
        return np.concatenate([y1 - x, np.ones_like(y2)], axis=-1)

    def project_xy(x, y):  # onto the half-space 1'x + 1'y >= 0
        s = np.sum(x, axis=-1, keepdims=True) + np.sum(y, axis=-1, keepdims=True)
        shift = np.maximum(0.0, -s) / (3 * n)
        return x + shift, y + shift

    return ConstrainedBilevelProblem(
        f"coupled_constraint_toy(n={n})", F=F, g=g, grad_Fx=lambda x, y: x - split(y)[1], grad_Fy=grad_Fy,
        grad_gx=lambda x, y: -split(y)[0], grad_gy=grad_gy, x0=np.zeros(n), y0=np.zeros(2 * n),
        L_Fy=1.0, L_gy=1.0,
        h=lambda x, y: -(np.sum(x, axis=-1, keepdims=True) + np.sum(y, axis=-1, keepdims=True)),
        jvp_hx=lambda x, y, lam: -lam * np.ones_like(x), jvp_hy=lambda x, y, lam: -lam * np.ones_like(y),
        project_xy=project_xy, n_constraints=1, L_hy=2.0 * n, x_star=np.full(n, -0.3),
        y_star_point=np.concatenate([np.full(n, 0.7), np.full(n, -0.4)]), lam_star=np.ones(1),
        info={"n": n})



def box_regression_problem(n_train: int = 40, *, rng=0) -> ConstrainedBilevelProblem:
    r"""Per-feature box radii of least squares tuned on validation data (scikit-learn's diabetes data).

    Lower level: :math:`\min_y \frac1{2n}\|Ay - b\|^2` s.t. :math:`-x \le y \le x` (Ivanov-style
    regularization: the hyperparameters ``x`` are the radii, so the constraints
    :math:`h(x, y) = (y - x, -y - x) \le 0` couple both variables); upper level: the validation loss
    :math:`\frac1{2m}\|A_v y - b_v\|^2` on the other samples.  ``project_xy`` is the exact Euclidean
    projection onto :math:`C = \{|y_j| \le x_j\}`, coordinate by coordinate onto a planar cone.
    ``psi(x)`` is the hyper-objective with the lower level solved by ``scipy.optimize.lsq_linear``.
    """
    from scipy.optimize import lsq_linear
    from sklearn.datasets import load_diabetes

    X, t = load_diabetes(return_X_y=True)
    n_train = check_int(n_train, "n_train", low=12, high=len(X) - 20)
    perm = as_rng(rng).permutation(len(X))
    X, t = X[perm], t[perm]
    X, t = (X - X[:n_train].mean(0)) / X[:n_train].std(0), (t - t[:n_train].mean()) / t[:n_train].std()
    A, b, Av, bv = X[:n_train], t[:n_train], X[n_train:], t[n_train:]
    n, m, d = len(A), len(Av), X.shape[1]

    def project_xy(x, y):  # onto the cone |y| <= x, one (x_j, y_j) plane at a time
        a, s = 0.5 * (x + np.abs(y)), np.sign(y)
        inside, polar = np.abs(y) <= x, x <= -np.abs(y)
        xp = np.where(inside, x, np.where(polar, 0.0, a))
        return xp, np.where(inside, y, np.where(polar, 0.0, s * a))

    def psi(x):
        x = np.maximum(check_array(x, "x", shape=(d,)), 0.0)
        return float(F(x, lsq_linear(A / np.sqrt(n), b / np.sqrt(n), bounds=(-x, x + 1e-300)).x))

    F = lambda x, y: 0.5 * np.sum((y @ Av.T - bv) ** 2, axis=-1) / m  # noqa: E731
    return ConstrainedBilevelProblem(
        f"box_regression_diabetes(n_train={n_train})", F=F,
        g=lambda x, y: 0.5 * np.sum((y @ A.T - b) ** 2, axis=-1) / n,
        grad_Fx=lambda x, y: np.zeros(np.shape(x)), grad_Fy=lambda x, y: (y @ Av.T - bv) @ Av / m,
        grad_gx=lambda x, y: np.zeros(np.shape(x)), grad_gy=lambda x, y: (y @ A.T - b) @ A / n,
        x0=np.ones(d), y0=np.zeros(d), L_Fy=float(np.linalg.eigvalsh(Av.T @ Av / m).max()),
        L_gy=float(np.linalg.eigvalsh(A.T @ A / n).max()),
        h=lambda x, y: np.concatenate([y - x, -y - x], axis=-1),
        jvp_hx=lambda x, y, lam: -(lam[..., :d] + lam[..., d:]),
        jvp_hy=lambda x, y, lam: lam[..., :d] - lam[..., d:], project_xy=project_xy, n_constraints=2 * d,
        L_hy=2.0, info={"A": A, "b": b, "A_val": Av, "b_val": bv, "psi": psi})
