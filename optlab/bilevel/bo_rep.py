r"""BO-REP: bilevel optimization when the upper level has unbounded smoothness.

The upper objective :math:`F(x, y)` may be :math:`(L_0, L_1)`-smooth (the local Lipschitz
constant of its gradient grows with the gradient), the lower objective :math:`g(x, y)` is
strongly convex in :math:`y`.  BO-REP moves the upper variable by *normalized momentum* on a
stochastic hypergradient estimate
:math:`\hat\nabla\psi = \nabla_x F(x, y) - \nabla^2_{xy} g(x, y)\, z`, where :math:`z` tracks
:math:`[\nabla^2_{yy} g]^{-1}\nabla_y F` by one SGD step per iteration (Hessian-vector
products only), and the lower variable by *initialization refinement* (many SGD steps on
:math:`g(x_0, \cdot)` before the loop) and *periodic updates* (``n_inner`` SGD steps every
``period`` iterations, frozen in between).  :func:`hypergrad_sgd` is the plain stochastic
hypergradient descent baseline with the same estimate.  :func:`quartic_problem` is the toy
whose hyper-objective is not globally smooth; :func:`hyper_cleaning_problem` is data
hyper-cleaning with logistic regression on scikit-learn's breast-cancer data.

References
----------
J. Hao, X. Gong and M. Liu, ICLR 2024, arXiv:2401.09587 (``hao2024bilevel``).

Book: chapters/bilevel/bo_rep.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Trace, as_rng, as_schedule, check_oracle, step_at
from ..validate import check_array, check_int, check_positive, check_probability, check_real
from .core import BilevelProblem

__all__ = ["lower_sgd", "hypergrad_estimate", "normalized_step", "bo_rep", "hypergrad_sgd",
           "quartic_problem", "hyper_cleaning_problem"]


def _noisy(v, noise, gen):
    """An oracle output plus Gaussian noise of standard deviation ``noise`` (none if 0)."""
    return v if noise == 0 else v + noise * gen.standard_normal(np.shape(v))


def lower_sgd(problem, x, y, *, lr, n_steps, noise=0.0, gen=None):
    r"""``n_steps`` of (stochastic) gradient descent on :math:`g(x, \cdot)` from ``y``."""
    x, y = check_array(x, "x", ndim=1), check_array(y, "y", ndim=1)
    lr, n_steps = check_positive(lr, "lr"), check_int(n_steps, "n_steps", low=0)
    noise, gen = check_real(noise, "noise", low=0.0), as_rng(gen)
    for _ in range(n_steps):
        g = check_oracle(problem.grad_gy, "grad_gy", x, y, shape=y.shape)
        y = y - lr * _noisy(g, noise, gen)
    return y


def hypergrad_estimate(problem, x, y, z, *, nu, noise=0.0, gen=None):
    r"""One SGD step on :math:`z` for :math:`\nabla^2_{yy} g\, z = \nabla_y F`, then the estimate.

    Returns ``(d, z_new)`` with :math:`z_{new} = z - \nu(\nabla^2_{yy} g\, z - \nabla_y F)` and
    :math:`d = \nabla_x F - \nabla^2_{xy} g\, z_{new}`, every oracle output with its own noise.
    """
    x, y, z = (check_array(v, n, ndim=1) for v, n in ((x, "x"), (y, "y"), (z, "z")))
    nu, noise = check_positive(nu, "nu"), check_real(noise, "noise", low=0.0)
    gen = as_rng(gen)

    def oracle(name, *args, shape):                  # an oracle call plus its noise
        out = check_oracle(getattr(problem, name), name, x, y, *args, shape=shape)
        return _noisy(out, noise, gen)

    Hz, Fy = oracle("hvp_yy", z, shape=y.shape), oracle("grad_Fy", shape=y.shape)
    z = z - nu * (Hz - Fy)                           # one SGD step on the linear system
    Fx, Jz = oracle("grad_Fx", shape=x.shape), oracle("jvp_xy", z, shape=x.shape)
    return Fx - Jz, z


def normalized_step(x, m, lr):
    r"""The normalized step :math:`x - \eta\, m / \|m\|` (no step when :math:`m = 0`)."""
    lr = check_real(lr, "lr", low=0.0)
    norm = np.linalg.norm(m)
    return x - lr * m / norm if norm > 0 else x


def _log_values(problem, x, y, d):
    """Logged (not counted): the hyper-objective, its gradient norm, the lower-level error."""
    out = {"f": problem.hyper(x) if problem.hyper is not None else problem.F(x, y),
           "estimate_norm": np.linalg.norm(d)}
    if problem.hypergrad is not None:
        out["hypergrad_norm"] = np.linalg.norm(problem.hypergrad(x))
    if problem.y_star is not None:
        out["y_error"] = np.linalg.norm(y - problem.y_star(x))
    return out


def bo_rep(problem: BilevelProblem, x0, *, lr, n_iters: int, inner_lr: float,
           beta: float = 0.9, nu: float = 0.3, period: int = 2, n_inner: int = 10,
           n_refine: int = 200, noise: float = 0.0, max_norm: float = 1e8, rng=None,
           callback=None):
    r"""BO-REP: normalized momentum on x, refined and periodically updated y, SGD-tracked z.

    Parameters
    ----------
    problem : BilevelProblem
        Needs ``grad_Fx``, ``grad_Fy``, ``grad_gy``, ``hvp_yy``, ``jvp_xy``; its ``y0`` starts y.
    x0 : array_like, shape (dx,)
        Start (not modified).
    lr : float or callable
        Upper step :math:`\eta` (number or schedule): the length of every upper step.
    n_iters : int
        Upper iterations T.
    inner_lr : float
        Lower SGD step :math:`\gamma`.
    beta : float in [0, 1)
        Momentum :math:`\beta`.
    nu : float
        Step :math:`\nu` of the SGD update of :math:`z`.
    period, n_inner : int
        Periodic updates: ``n_inner`` (N) lower SGD steps every ``period`` (I) iterations.
    n_refine : int
        Initialization refinement: lower SGD steps on :math:`g(x_0, \cdot)` before the loop.
    noise : float
        Standard deviation of the Gaussian noise added to every oracle output (0: exact).
    max_norm : float
        A run whose iterate norm exceeds this is stopped as diverged.
    rng : None, int or Generator
        Source of the oracle noise.
    callback : callable or None
        ``callback(record) -> bool``; True stops.

    Returns
    -------
    Result
        ``x``; ``f`` = :math:`\psi(x)` where ``problem.hyper`` is known, else :math:`F(x, y)`.
        Extras ``y``, ``z``, ``m``.  History columns ``f``, ``estimate_norm``
        (:math:`\|\hat\nabla\psi\|`), and where the closed forms exist ``hypergrad_norm``
        (:math:`\|\nabla\psi(x_t)\|`) and ``y_error`` (:math:`\|y_t - y^*(x_t)\|`, the lower
        iterate that step t+1 starts with).  ``n_evals`` counts ``grad_gy``, ``hvp_yy``,
        ``grad_Fy``, ``grad_Fx``, ``jvp_xy``.

    Notes
    -----
    Before the loop :math:`y_0` = ``n_refine`` SGD steps on :math:`g(x_0, \cdot)`; step t:

    .. math:: y_t = \mathrm{SGD}^N(g(x_t, \cdot); y_{t-1}) \text{ if } t \bmod I = 0
              \text{ else } y_{t-1},\quad
              z_{t+1} = z_t - \nu(\nabla^2_{yy} G\, z_t - \nabla_y F),

    .. math:: m_{t+1} = \beta m_t + (1-\beta)(\nabla_x F - \nabla^2_{xy} G\, z_{t+1}),\quad
              x_{t+1} = x_t - \eta\, m_{t+1}/\|m_{t+1}\|.

    Cost per step: N/I lower gradients on average, 2 Hessian-vector products, 2 upper
    gradients.  Guarantee (paper, main theorem): upper level nonconvex and
    :math:`(L_0, L_1)`-smooth, lower level strongly convex, unbiased oracles of bounded
    variance: :math:`\tilde O(\epsilon^{-4})` oracle calls to an :math:`\epsilon`-stationary
    point, with its choices of :math:`\beta, \eta, \nu, \gamma, I, N` (not reproduced here).
    Differences: the paper's refinement is a multi-epoch SGD subroutine and :math:`z` is
    projected onto a ball; here refinement is plain SGD and :math:`z` is not projected.

    References
    ----------
    J. Hao, X. Gong and M. Liu, Bilevel optimization under unbounded smoothness: a new
    algorithm and convergence analysis, ICLR 2024, arXiv:2401.09587 (``hao2024bilevel``);
    official code github.com/MingruiLiu-ML-Lab/Bilevel-Optimization-under-Unbounded-Smoothness.

    Book: chapters/bilevel/bo_rep.ipynb

    Examples
    --------
    Each upper step has length exactly ``lr``:

    >>> p = quartic_problem(rng=0)
    >>> res = bo_rep(p, p.x0, lr=0.1, n_iters=3, inner_lr=0.5, rng=0)
    >>> d = np.linalg.norm(np.diff(np.vstack([p.x0, res.x]), axis=0))
    >>> res.n_evals["hvp_yy"], res.n_evals["grad_gy"], bool(d <= 0.3 + 1e-12)
    (3, 220, True)
    """
    x = check_array(x0, "x0", ndim=1)
    n_iters = check_int(n_iters, "n_iters", low=1)
    schedule, inner_lr = as_schedule(lr), check_positive(inner_lr, "inner_lr")
    beta = check_probability(beta, "beta", open_right=True)
    nu, period = check_positive(nu, "nu"), check_int(period, "period", low=1)
    n_inner = check_int(n_inner, "n_inner", low=0)
    n_refine = check_int(n_refine, "n_refine", low=0)
    noise = check_real(noise, "noise", low=0.0)
    max_norm, gen = check_positive(max_norm, "max_norm"), as_rng(rng)
    params = {"lr": schedule, "beta": beta, "nu": nu, "inner_lr": inner_lr,
              "period": period, "n_inner": n_inner, "n_refine": n_refine,
              "noise": noise, "n_iters": n_iters}
    trace = Trace("bo_rep", params, callback)
    sgd = dict(lr=inner_lr, noise=noise, gen=gen)
    y = lower_sgd(problem, x, problem.y0, n_steps=n_refine, **sgd)  # refinement
    trace.count("grad_gy", n_refine)
    z, m, t = np.zeros_like(y), np.zeros_like(x), 0
    stop = trace.log(0, **_log_values(problem, x, y, m))
    for t in range(0 if stop else n_iters):
        if t % period == 0:                                          # periodic update
            y = lower_sgd(problem, x, y, n_steps=n_inner, **sgd)
            trace.count("grad_gy", n_inner)
        d, z = hypergrad_estimate(problem, x, y, z, nu=nu, noise=noise, gen=gen)
        for name in ("hvp_yy", "grad_Fy", "grad_Fx", "jvp_xy"):
            trace.count(name)
        m = beta * m + (1 - beta) * d                                # momentum
        x = normalized_step(x, m, step_at(schedule, t))              # normalized step
        if problem.project is not None:
            x = check_oracle(problem.project, "project", x)
        if trace.diverged(x, t + 1) or trace.diverged({"y": y, "z": z}, t + 1):
            break
        if np.linalg.norm(x) > max_norm:
            trace.message = f"iterate norm above max_norm={max_norm:g} by step {t + 1}"
            break
        if trace.log(t + 1, **_log_values(problem, x, y, d)):
            break
    done = len(trace.history["t"]) - 1
    f = _log_values(problem, x, y, m)["f"] if trace.message is None else None
    return trace.result(x, f, n_iters=done, y=y, z=z, m=m)


def hypergrad_sgd(problem: BilevelProblem, x0, *, lr, n_iters: int, inner_lr: float,
                  nu: float = 0.1, n_inner: int = 1, noise: float = 0.0,
                  max_norm: float = 1e8, rng=None, callback=None):
    r"""Plain stochastic hypergradient descent: :math:`x_{t+1} = x_t - \eta\,\hat\nabla\psi_t`.

    The baseline of the chapter: the estimate of :func:`hypergrad_estimate`, ``n_inner`` lower
    SGD steps every iteration from ``problem.y0`` (no refinement), no momentum, no
    normalization.  Parameters, history columns, extras (``y``, ``z``) and counts as in
    :func:`bo_rep`; a run stops when the iterates become non-finite or exceed ``max_norm``.
    """
    x = check_array(x0, "x0", ndim=1)
    n_iters = check_int(n_iters, "n_iters", low=1)
    schedule, inner_lr = as_schedule(lr), check_positive(inner_lr, "inner_lr")
    nu, n_inner = check_positive(nu, "nu"), check_int(n_inner, "n_inner", low=0)
    noise, max_norm = check_real(noise, "noise", low=0.0), check_positive(max_norm, "max_norm")
    gen = as_rng(rng)
    trace = Trace("hypergrad_sgd", {"lr": schedule, "nu": nu, "inner_lr": inner_lr,
                                    "n_inner": n_inner, "noise": noise, "n_iters": n_iters}, callback)
    y = np.array(problem.y0, dtype=float)
    z, t = np.zeros_like(y), 0
    stop = trace.log(0, **_log_values(problem, x, y, np.zeros_like(x)))
    for t in range(0 if stop else n_iters):
        y = lower_sgd(problem, x, y, lr=inner_lr, n_steps=n_inner, noise=noise, gen=gen)
        trace.count("grad_gy", n_inner)
        d, z = hypergrad_estimate(problem, x, y, z, nu=nu, noise=noise, gen=gen)
        for name in ("hvp_yy", "grad_Fy", "grad_Fx", "jvp_xy"):
            trace.count(name)
        with np.errstate(over="ignore", invalid="ignore"):
            x = x - step_at(schedule, t) * d
        if problem.project is not None:
            x = check_oracle(problem.project, "project", x)
        if trace.diverged(x, t + 1):
            break
        if np.linalg.norm(x) > max_norm:
            trace.message = f"iterate norm above max_norm={max_norm:g} by step {t + 1}"
            break
        if trace.log(t + 1, **_log_values(problem, x, y, d)):
            break
    done = len(trace.history["t"]) - 1
    f = _log_values(problem, x, y, z[:0])["f"] if trace.message is None else None
    return trace.result(x, f, n_iters=done, y=y, z=z)


# --------------------------------------------------------------------------- problems

def quartic_problem(dim_x: int = 5, dim_y: int = 10, *, cond: float = 1.0, start: float = 5.0,
                    c_scale: float = 0.25, rng=0) -> BilevelProblem:
    r"""A bilevel toy whose upper level is :math:`(L_0, L_1)`-smooth but not smooth.

    :math:`g = \tfrac12 y^\top A y - y^\top B x` (A SPD, eigenvalues log-spaced in [1, ``cond``];
    the identity for ``cond`` = 1) and :math:`F = \tfrac14\|y - c\|^4`, with :math:`B = UV^\top`
    from the thin SVD of a standard normal matrix (a random matrix with every singular value 1) and c
    standard normal times ``c_scale``.  Then
    :math:`y^*(x) = A^{-1}Bx` and, with :math:`r = y^*(x) - c`,
    :math:`\nabla\psi(x) = \|r\|^2 B^\top A^{-1} r`.  The Hessian of F, of norm
    :math:`3\|y - c\|^2`, is at most :math:`3 + 3\|\nabla_y F\|`: F is
    :math:`(L_0, L_1)`-smooth with no global Lipschitz gradient.  As in data hyper-cleaning,
    :math:`\nabla_x F = 0`: the whole hypergradient is the implicit term.  The start is
    :math:`x_0 = \text{start} \cdot \mathbf 1`, :math:`y_0 = 0`.

    Why B's singular values are all 1: with A = I a gradient step maps :math:`r = Bx - c` to
    :math:`r - \eta\|r\|^2 BB^\top r`, which multiplies every component of r in the range of B by
    :math:`1 - \eta\|r\|^2`; once :math:`\eta\|r\|^2 > 2`, :math:`\|r\|` grows at every step, so from the
    default start with step 0.1 gradient descent diverges on every draw.  (With Gaussian entries the
    smallest singular value varies with the draw, and on 6 of 200 seeds it converged from that start.)
    """
    dim_x, dim_y = check_int(dim_x, "dim_x", low=1), check_int(dim_y, "dim_y", low=1)
    cond, start = check_real(cond, "cond", low=1.0), check_real(start, "start")
    c_scale, gen = check_real(c_scale, "c_scale", low=0.0), as_rng(rng)
    Q = np.linalg.qr(gen.standard_normal((dim_y, dim_y)))[0]
    A = (Q * np.geomspace(1.0, cond, dim_y)) @ Q.T
    U, _, Vt = np.linalg.svd(gen.standard_normal((dim_y, dim_x)), full_matrices=False)
    B = U @ Vt                                          # singular values all 1
    c = c_scale * gen.standard_normal(dim_y)

    def y_star(x):
        return np.linalg.solve(A, B @ x)

    def grad_Fy(x, y):
        return np.sum((y - c) ** 2, axis=-1, keepdims=True) * (y - c)

    def hypergrad(x):
        return B.T @ np.linalg.solve(A, grad_Fy(x, y_star(x)))

    return BilevelProblem(
        f"quartic_bilevel(dx={dim_x}, dy={dim_y}, cond={cond:g})",
        F=lambda x, y: 0.25 * np.sum((y - c) ** 2, axis=-1) ** 2,
        g=lambda x, y: 0.5 * np.sum((y @ A) * y, axis=-1) - np.sum(y * (x @ B.T), axis=-1),
        grad_Fx=lambda x, y: np.zeros(np.shape(x)), grad_Fy=grad_Fy,
        grad_gx=lambda x, y: -(y @ B), grad_gy=lambda x, y: y @ A - x @ B.T,
        hvp_yy=lambda x, y, v: v @ A, jvp_xy=lambda x, y, v: -(v @ B),
        x0=np.full(dim_x, start), y0=np.zeros(dim_y), L_Fy=np.inf, L_gy=float(cond),
        y_star=y_star, hyper=lambda x: float(0.25 * np.sum((y_star(x) - c) ** 2) ** 2),
        hypergrad=hypergrad, info={"A": A, "B": B, "c": c})


def hyper_cleaning_problem(n_train: int = 200, n_val: int = 100, *, flip: float = 0.3,
                           reg: float = 1e-2, rng=0) -> BilevelProblem:
    r"""Data hyper-cleaning: learn one weight per (noisy) training sample on clean validation data.

    scikit-learn's breast-cancer data, standardized; a fraction ``flip`` of the ``n_train``
    training labels flipped.  Lower: :math:`g(x, y) = \frac1n\sum_i \sigma(x_i)\ell_i(y) +
    \frac{reg}2\|y\|^2` (weighted logistic regression, :math:`\sigma` the sigmoid); upper:
    :math:`F(x, y) = \frac1m\sum_j \ell^{val}_j(y)`.  ``info`` holds the data, the test split
    (the remaining samples) and the mask ``corrupted``.  Oracles take 1-D ``x`` and ``y``.
    """
    from sklearn.datasets import load_breast_cancer

    X, t = load_breast_cancer(return_X_y=True)
    n_train = check_int(n_train, "n_train", low=10, high=len(X) - 60)
    n_val = check_int(n_val, "n_val", low=10, high=len(X) - n_train - 50)
    flip, reg = check_probability(flip, "flip"), check_positive(reg, "reg")
    gen = as_rng(rng)
    perm = gen.permutation(len(X))
    X, t = X[perm], t[perm].astype(float)
    X = (X - X[:n_train].mean(0)) / X[:n_train].std(0)
    X = np.hstack([X, np.ones((len(X), 1))])                 # intercept
    corrupted = np.zeros(n_train, dtype=bool)
    corrupted[gen.choice(n_train, int(round(flip * n_train)), replace=False)] = True
    A, b = X[:n_train], np.where(corrupted, 1 - t[:n_train], t[:n_train])
    Av, bv = X[n_train:n_train + n_val], t[n_train:n_train + n_val]
    sig = lambda u: 0.5 * (1 + np.tanh(0.5 * u))               # noqa: E731, overflow-free sigmoid
    loss = lambda M, v, y: np.logaddexp(0, M @ y) - v * (M @ y)  # noqa: E731

    def grad_gy(x, y):
        return A.T @ (sig(x) * (sig(A @ y) - b)) / n_train + reg * y

    def hvp_yy(x, y, v):
        s = sig(A @ y)
        return A.T @ (sig(x) * s * (1 - s) * (A @ v)) / n_train + reg * v

    def jvp_xy(x, y, v):
        return sig(x) * (1 - sig(x)) * (sig(A @ y) - b) * (A @ v) / n_train

    return BilevelProblem(
        f"hyper_cleaning(n_train={n_train}, flip={flip:g})",
        F=lambda x, y: float(np.mean(loss(Av, bv, y))),
        g=lambda x, y: float(np.mean(sig(x) * loss(A, b, y)) + 0.5 * reg * y @ y),
        grad_Fx=lambda x, y: np.zeros(np.shape(x)),
        grad_Fy=lambda x, y: Av.T @ (sig(Av @ y) - bv) / n_val,
        grad_gx=lambda x, y: sig(x) * (1 - sig(x)) * loss(A, b, y) / n_train,
        grad_gy=grad_gy, hvp_yy=hvp_yy, jvp_xy=jvp_xy,
        x0=np.zeros(n_train), y0=np.zeros(X.shape[1]), L_Fy=float(np.linalg.norm(Av, 2) ** 2 / (4 * n_val)),
        L_gy=float(np.linalg.norm(A, 2) ** 2 / (4 * n_train) + reg),
        info={"A": A, "b": b, "A_val": Av, "b_val": bv, "A_test": X[n_train + n_val:],
              "b_test": t[n_train + n_val:], "corrupted": corrupted, "reg": reg})
