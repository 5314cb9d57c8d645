r"""The shared vocabulary of bilevel optimization: problems, lower-level solves, hypergradients.

A bilevel problem couples an upper objective :math:`F(x, y)` and a lower objective
:math:`g(x, y)`:

.. math:: \min_x \psi(x) = F(x, y^*(x)), \qquad y^*(x) \in \arg\min_y g(x, y),

where :math:`\psi` is the *hyper-objective*.  When :math:`g(x, \cdot)` is strongly convex,
the implicit function theorem gives the hypergradient

.. math:: \nabla\psi(x) = \nabla_x F - \nabla^2_{xy} g\, v, \qquad \nabla^2_{yy} g\, v = \nabla_y F,

evaluated at :math:`(x, y^*(x))`.  :func:`implicit_hypergrad` solves the linear system with
conjugate gradient, a truncated Neumann series or (for the chapter on many lower-level
solutions) a dense pseudo-inverse; :func:`unrolled_hypergrad` differentiates through
``n_steps`` of gradient descent on the lower level instead.  :func:`lower_solve` is the one
first-order inner solver (accelerated gradient with restarts, to a gradient tolerance);
:func:`implicit_gd` is the implicit-gradient (AID) baseline of the part.

Oracles of a :class:`BilevelProblem` take ``(x, y)`` and act row-wise on batches
``(n, dx), (n, dy)``; ``hvp_yy(x, y, v)`` is :math:`\nabla^2_{yy} g\, v` (shape of ``y``) and
``jvp_xy(x, y, v)`` is :math:`\nabla^2_{xy} g\, v` (shape of ``x``).

References
----------
Implicit differentiation and conjugate gradient: F. Pedregosa, ICML 2016, arXiv:1602.02355
(``pedregosa2016hyperparameter``); Neumann series and unrolling: J. Lorraine, P. Vicol and
D. Duvenaud, AISTATS 2020, arXiv:1911.02590 (``lorraine2020optimizing``).

Book: chapters/bilevel/penalty.ipynb (and every chapter of the part)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..core import Trace, as_rng, as_schedule, check_oracle, step_at
from ..validate import check_array, check_callable, check_choice, check_int, check_positive, check_real

__all__ = ["BilevelProblem", "lower_solve", "conjugate_gradient", "neumann_series", "implicit_hypergrad",
           "unrolled_hypergrad", "implicit_gd", "quadratic_problem", "ridge_problem"]


@dataclass
class BilevelProblem:
    r"""Upper objective ``F(x, y)``, lower objective ``g(x, y)``, their derivatives and constants.

    ``L_Fy`` and ``L_gy`` bound the smoothness of ``F`` and ``g`` in ``y`` (inner step sizes
    read them); ``project`` is the projection onto the feasible set of ``x``; ``hyper``,
    ``hypergrad`` and ``y_star`` are closed forms of :math:`\psi`, :math:`\nabla\psi` and a
    lower-level solution, where known.
    """

    name: str
    F: Callable
    g: Callable
    grad_Fx: Callable
    grad_Fy: Callable
    grad_gx: Callable
    grad_gy: Callable
    x0: np.ndarray
    y0: np.ndarray
    L_Fy: float
    L_gy: float
    hvp_yy: Optional[Callable] = None
    jvp_xy: Optional[Callable] = None
    project: Optional[Callable] = None
    hyper: Optional[Callable] = None
    hypergrad: Optional[Callable] = None
    y_star: Optional[Callable] = None
    info: dict = field(default_factory=dict)


def lower_solve(grad, y0, *, lr, tol: float = 1e-10, max_iters: int = 100_000):
    r"""Minimize a smooth convex function of ``y`` to ``||grad|| <= tol``: accelerated gradient with restarts.

    Nesterov's method with step ``lr`` (a number or one per row of ``y0``); the momentum restarts
    whenever the step goes uphill (O'Donoghue and Candes, 2015, ``odonoghue2015adaptive``), which recovers the
    :math:`\sqrt\kappa` rate without knowing the strong-convexity constant.  Rows of a batch are
    independent problems; the loop stops when every row meets the tolerance.

    Returns ``(y, n_steps)``: the solution (shaped like ``y0``) and the gradient calls made.

    >>> y, n = lower_solve(lambda y: np.array([1.0, 100.0]) * (y - 1), np.zeros(2), lr=0.01, tol=1e-9)
    >>> np.round(y, 6).tolist(), n < 1000
    ([1.0, 1.0], True)
    """
    check_callable(grad, "grad", signature="y -> array")
    y = check_array(y0, "y0", ndim=(1, 2))
    lr = check_array(lr, "lr", ndim=(0, 1), finite=False)
    if (lr.ndim == 1 and (y.ndim != 2 or len(lr) != len(y))) or not np.all(np.isfinite(lr)) or np.any(lr <= 0):
        raise ValueError("lr must be a finite number > 0, or one per row of y0")
    tol, max_iters = check_positive(tol, "tol"), check_int(max_iters, "max_iters", low=1)
    step = lr[:, None] if lr.ndim == 1 else lr
    w, k = y.copy(), np.zeros(y.shape[:-1] + (1,))
    for n in range(1, max_iters + 1):
        gw = check_oracle(grad, "grad", w)
        if not np.all(np.isfinite(gw)):
            return w, n             # non-finite: the caller's divergence check ends the run
        y_new = w - step * gw
        uphill = np.sum(gw * (y_new - y), axis=-1, keepdims=True) > 0
        k = np.where(uphill, 0.0, k + 1)
        w = y_new + (k / (k + 3)) * (y_new - y)
        y = y_new
        if np.max(np.linalg.norm(gw, axis=-1)) <= tol:
            return y, n
    return y, max_iters


def conjugate_gradient(matvec, b, *, n_steps: int = 100, tol: float = 1e-12):
    r"""Solve :math:`Hv = b` for symmetric positive definite ``H`` given by ``matvec``: ``n_steps`` of CG.

    Stops early when the residual is below ``tol * ||b||``.  Returns ``(v, n_matvecs)``.

    >>> H = np.array([[4.0, 1.0], [1.0, 3.0]])
    >>> v, n = conjugate_gradient(lambda v: H @ v, np.array([1.0, 2.0]))
    >>> np.allclose(H @ v, [1.0, 2.0]), n
    (True, 2)
    """
    check_callable(matvec, "matvec", signature="v -> H v")
    b = check_array(b, "b", ndim=1)
    n_steps, tol = check_int(n_steps, "n_steps", low=1), check_real(tol, "tol", low=0.0)
    v, r = np.zeros_like(b), b.copy()
    p, rr, n = r.copy(), r @ r, 0
    for n in range(1, n_steps + 1):
        if np.sqrt(rr) <= tol * np.linalg.norm(b) or rr == 0:
            return v, n - 1
        Hp = check_oracle(matvec, "matvec", p)
        alpha = rr / (p @ Hp)
        v, r = v + alpha * p, r - alpha * Hp
        rr, rr_old = r @ r, rr
        p = r + (rr / rr_old) * p
    return v, n


def neumann_series(matvec, b, *, n_steps: int, lr: float):
    r"""Approximate :math:`H^{-1} b` by :math:`\eta\sum_{k=0}^{K} (I - \eta H)^k b`, K = ``n_steps``.

    Converges when :math:`0 < \eta < 2/\lambda_{\max}(H)`, geometrically with ratio
    :math:`\max|1 - \eta\lambda|`.  Returns ``(v, n_matvecs)``.

    >>> v, n = neumann_series(lambda v: 2.0 * v, np.ones(2), n_steps=30, lr=0.4)
    >>> np.round(v, 6).tolist(), n
    ([0.5, 0.5], 30)
    """
    check_callable(matvec, "matvec", signature="v -> H v")
    b = check_array(b, "b", ndim=1)
    n_steps, lr = check_int(n_steps, "n_steps", low=0), check_positive(lr, "lr")
    term, v = b.copy(), b.copy()
    for _ in range(n_steps):
        term = term - lr * check_oracle(matvec, "matvec", term)
        v = v + term
    return lr * v, n_steps


def implicit_hypergrad(problem: BilevelProblem, x, y, *, solver: str = "cg", n_steps: int = 100,
                       lr: Optional[float] = None):
    r"""The implicit hypergradient :math:`\nabla_x F - \nabla^2_{xy} g\,[\nabla^2_{yy} g]^{-1}\nabla_y F` at ``(x, y)``.

    ``solver``: ``"cg"`` (``n_steps`` of conjugate gradient), ``"neumann"`` (``n_steps`` terms of
    the Neumann series with step ``lr``, default ``1/L_gy``) or ``"pinv"`` (the Moore-Penrose
    pseudo-inverse of the dense lower Hessian, built from ``dy`` Hessian-vector products: the
    formula people apply when the lower level has many solutions).  ``x`` and ``y`` are 1-D.

    Returns ``(grad, n_hvp)``: the hypergradient and the Hessian-vector products used (one
    cross-derivative product ``jvp_xy`` more).

    >>> p = quadratic_problem(dim_x=2, dim_y=3, rng=0)
    >>> x = np.array([0.3, -0.2])
    >>> g, n = implicit_hypergrad(p, x, p.y_star(x))
    >>> bool(np.allclose(g, p.hypergrad(x)))
    True
    """
    check_choice(solver, "solver", ("cg", "neumann", "pinv"))
    x, y = check_array(x, "x", ndim=1), check_array(y, "y", ndim=1)
    if problem.hvp_yy is None or problem.jvp_xy is None:
        raise ValueError("problem needs hvp_yy and jvp_xy for the implicit hypergradient")
    b = check_oracle(problem.grad_Fy, "grad_Fy", x, y, shape=y.shape)

    def H(v):
        return check_oracle(problem.hvp_yy, "hvp_yy", x, y, v, shape=y.shape)

    if solver == "cg":
        v, n = conjugate_gradient(H, b, n_steps=n_steps)
    elif solver == "neumann":
        v, n = neumann_series(H, b, n_steps=n_steps, lr=1.0 / problem.L_gy if lr is None else lr)
    else:
        Hd = np.column_stack([H(e) for e in np.eye(len(y))])
        v, n = np.linalg.pinv(Hd, hermitian=True) @ b, len(y)
    grad_x = check_oracle(problem.grad_Fx, "grad_Fx", x, y, shape=x.shape)
    return grad_x - check_oracle(problem.jvp_xy, "jvp_xy", x, y, v, shape=x.shape), n


def unrolled_hypergrad(problem: BilevelProblem, x, y0, *, lr: float, n_steps: int):
    r"""The exact gradient in ``x`` of :math:`F(x, y_T)` where :math:`y_{t+1} = y_t - \eta\nabla_y g(x, y_t)`.

    Reverse mode through the ``n_steps`` = T steps: with :math:`p_T = \nabla_y F(x, y_T)`,
    :math:`d \mathrel{+}= -\eta\nabla^2_{xy} g(x, y_t) p_{t+1}` and
    :math:`p_t = p_{t+1} - \eta\nabla^2_{yy} g(x, y_t) p_{t+1}` for t = T-1, ..., 0, starting from
    :math:`d = \nabla_x F(x, y_T)`.  Memory O(T dy) for the stored iterates.

    Returns ``(grad, y_T)``.

    >>> p = quadratic_problem(dim_x=2, dim_y=3, rng=0)
    >>> g, yT = unrolled_hypergrad(p, np.array([0.3, -0.2]), np.zeros(3), lr=0.1, n_steps=500)
    >>> bool(np.allclose(g, p.hypergrad(np.array([0.3, -0.2]))))
    True
    """
    x, y = check_array(x, "x", ndim=1), check_array(y0, "y0", ndim=1)
    lr, n_steps = check_positive(lr, "lr"), check_int(n_steps, "n_steps", low=0)
    if problem.hvp_yy is None or problem.jvp_xy is None:
        raise ValueError("problem needs hvp_yy and jvp_xy for the unrolled hypergradient")
    ys = [y]
    for _ in range(n_steps):
        ys.append(ys[-1] - lr * check_oracle(problem.grad_gy, "grad_gy", x, ys[-1], shape=y.shape))
    p = check_oracle(problem.grad_Fy, "grad_Fy", x, ys[-1], shape=y.shape)
    d = check_oracle(problem.grad_Fx, "grad_Fx", x, ys[-1], shape=x.shape)
    for t in range(n_steps - 1, -1, -1):
        d = d - lr * check_oracle(problem.jvp_xy, "jvp_xy", x, ys[t], p, shape=x.shape)
        p = p - lr * check_oracle(problem.hvp_yy, "hvp_yy", x, ys[t], p, shape=y.shape)
    return d, ys[-1]


def implicit_gd(problem: BilevelProblem, x0, *, lr, n_iters: int, inner_tol: float = 1e-10,
                max_inner: int = 100_000, solver: str = "cg", n_solver_steps: int = 100, rng=None,
                callback=None):
    r"""Projected gradient descent on the hyper-objective with implicit hypergradients (AID).

    Each step solves the lower level to ``||grad_y g|| <= inner_tol`` (:func:`lower_solve`,
    warm-started), then steps along :func:`implicit_hypergrad`.  ``rng`` is accepted for the
    common signature (the method is deterministic).

    Returns a ``Result``: ``x``; ``f`` = :math:`F(x, y)` at the final lower solution ``y`` (extra);
    history columns ``f``, ``hypergrad_norm``, ``inner_steps``; ``n_evals`` counts ``grad_gy``
    (inner), ``hvp_yy``, ``jvp_xy``, ``grad_Fx`` and ``grad_Fy``.
    """
    x = check_array(x0, "x0", ndim=1)
    n_iters = check_int(n_iters, "n_iters", low=1)
    schedule, inner_tol = as_schedule(lr), check_positive(inner_tol, "inner_tol")
    max_inner = check_int(max_inner, "max_inner", low=1)
    check_choice(solver, "solver", ("cg", "neumann", "pinv"))
    n_solver_steps = check_int(n_solver_steps, "n_solver_steps", low=1)
    as_rng(rng)
    trace = Trace("implicit_gd", {"lr": schedule, "n_iters": n_iters, "inner_tol": inner_tol, "solver": solver,
                                  "n_solver_steps": n_solver_steps}, callback)
    y = np.array(problem.y0, dtype=float)

    def solve(x, y):
        y, n = lower_solve(lambda z: problem.grad_gy(x, z), y, lr=1.0 / problem.L_gy, tol=inner_tol,
                           max_iters=max_inner)
        trace.count("grad_gy", n)
        return y, n

    y, n_inner = solve(x, y)
    stop, t = trace.log(0, f=problem.F(x, y), hypergrad_norm=np.nan, inner_steps=n_inner), 0
    for t in range(0 if stop else n_iters):
        d, n_hvp = implicit_hypergrad(problem, x, y, solver=solver, n_steps=n_solver_steps)
        trace.count("hvp_yy", n_hvp), trace.count("jvp_xy"), trace.count("grad_Fx"), trace.count("grad_Fy")
        x = x - step_at(schedule, t) * d
        if problem.project is not None:
            x = check_oracle(problem.project, "project", x)
        if trace.diverged(x, t + 1):
            break
        y, n_inner = solve(x, y)
        if trace.log(t + 1, f=problem.F(x, y), hypergrad_norm=np.linalg.norm(d), inner_steps=n_inner):
            break
    done = len(trace.history["t"]) - 1
    return trace.result(x, problem.F(x, y) if trace.message is None else None, n_iters=done, y=y)


# --------------------------------------------------------------------------- problems with closed forms

def quadratic_problem(dim_x: int = 3, dim_y: int = 5, *, cond: float = 10.0, lam: float = 0.1,
                      rng=0) -> BilevelProblem:
    r"""A quadratic bilevel problem with every quantity in closed form.

    :math:`g = \tfrac12 y^\top A y - y^\top B x` (A SPD with condition number ``cond``, eigenvalues
    in [1, cond]), :math:`F = \tfrac12\|y - c\|^2 + \tfrac\lambda2\|x\|^2`.  Then
    :math:`y^*(x) = A^{-1}Bx` and :math:`\nabla\psi(x) = B^\top A^{-1}(y^*(x) - c) + \lambda x`.
    """
    dim_x, dim_y = check_int(dim_x, "dim_x", low=1), check_int(dim_y, "dim_y", low=1)
    cond, lam = check_real(cond, "cond", low=1.0), check_real(lam, "lam", low=0.0)
    gen = as_rng(rng)
    Q = np.linalg.qr(gen.standard_normal((dim_y, dim_y)))[0]
    A = (Q * np.geomspace(1.0, cond, dim_y)) @ Q.T
    B, c = gen.standard_normal((dim_y, dim_x)), gen.standard_normal(dim_y)

    def y_star(x):
        return np.linalg.solve(A, B @ x)

    return BilevelProblem(
        f"quadratic_bilevel(dx={dim_x}, dy={dim_y})",
        F=lambda x, y: 0.5 * np.sum((y - c) ** 2, axis=-1) + 0.5 * lam * np.sum(x**2, axis=-1),
        g=lambda x, y: 0.5 * np.sum((y @ A) * y, axis=-1) - np.sum(y * (x @ B.T), axis=-1),
        grad_Fx=lambda x, y: lam * np.asarray(x, dtype=float), grad_Fy=lambda x, y: y - c,
        grad_gx=lambda x, y: -(y @ B), grad_gy=lambda x, y: y @ A - x @ B.T,
        hvp_yy=lambda x, y, v: v @ A, jvp_xy=lambda x, y, v: -(v @ B),
        x0=np.zeros(dim_x), y0=np.zeros(dim_y), L_Fy=1.0, L_gy=float(cond), y_star=y_star,
        hyper=lambda x: 0.5 * np.sum((y_star(x) - c) ** 2) + 0.5 * lam * x @ x,
        hypergrad=lambda x: B.T @ np.linalg.solve(A, y_star(x) - c) + lam * x,
        info={"A": A, "B": B, "c": c, "lam": lam})


def ridge_problem(n_train: int = 300, *, box=(-4.0, 2.0), rng=0) -> BilevelProblem:
    r"""Per-feature ridge penalties tuned on validation data (scikit-learn's diabetes data).

    Lower: :math:`g(x, y) = \frac1{2n}\|A y - b\|^2 + \frac12\sum_j e^{x_j} y_j^2` on ``n_train``
    shuffled, standardized samples; upper: :math:`F(x, y) = \frac1{2m}\|A_v y - b_v\|^2` on the
    others; ``x`` (log-penalties) lives in the box ``box`` (``project`` clips to it).  The lower
    level is strongly convex, so :math:`\psi` and :math:`\nabla\psi` have closed forms.
    """
    from sklearn.datasets import load_diabetes

    lo, hi = (check_real(v, "box") for v in box)
    if not lo < hi:
        raise ValueError(f"box must be (low, high) with low < high, got {box}")
    X, t = load_diabetes(return_X_y=True)
    n_train = check_int(n_train, "n_train", low=20, high=len(X) - 20)
    perm = as_rng(rng).permutation(len(X))
    X, t = X[perm], t[perm]
    mean, std = X[:n_train].mean(0), X[:n_train].std(0)
    X, t = (X - mean) / std, (t - t[:n_train].mean()) / t[:n_train].std()
    A, b, Av, bv = X[:n_train], t[:n_train], X[n_train:], t[n_train:]
    n, m, d = len(A), len(Av), X.shape[1]
    AtA, Atb = A.T @ A / n, A.T @ b / n

    def y_star(x):
        return np.linalg.solve(AtA + np.diag(np.exp(x)), Atb)

    def grad_Fy(x, y):
        return (y @ Av.T - bv) @ Av / m

    def hypergrad(x):
        y = y_star(x)
        return -np.exp(x) * y * np.linalg.solve(AtA + np.diag(np.exp(x)), grad_Fy(x, y))

    F = lambda x, y: 0.5 * np.sum((y @ Av.T - bv) ** 2, axis=-1) / m  # noqa: E731
    return BilevelProblem(
        f"ridge_diabetes(n_train={n_train})", F=F,
        g=lambda x, y: 0.5 * np.sum((y @ A.T - b) ** 2, axis=-1) / n + 0.5 * np.sum(np.exp(x) * y**2, axis=-1),
        grad_Fx=lambda x, y: np.zeros(np.shape(x)), grad_Fy=grad_Fy,
        grad_gx=lambda x, y: 0.5 * np.exp(x) * y**2, grad_gy=lambda x, y: y @ AtA - Atb + np.exp(x) * y,
        hvp_yy=lambda x, y, v: v @ AtA + np.exp(x) * v, jvp_xy=lambda x, y, v: np.exp(x) * y * v,
        x0=np.zeros(d), y0=np.zeros(d), L_Fy=float(np.linalg.eigvalsh(Av.T @ Av / m).max()),
        L_gy=float(np.linalg.eigvalsh(AtA).max() + np.exp(hi)), project=lambda x: np.clip(x, lo, hi),
        y_star=y_star, hyper=lambda x: float(F(x, y_star(x))), hypergrad=hypergrad,
        info={"A": A, "b": b, "A_val": Av, "b_val": bv, "box": (lo, hi)})
