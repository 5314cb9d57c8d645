r"""Adaptive sketched Newton on the exact augmented Lagrangian (equality constraints).

:func:`sketched_newton` solves :math:`\min f(x)` s.t. :math:`c(x) = 0`: each step
solves the Newton (KKT) system of the Lagrangian inexactly with a randomized block
Kaczmarz solver (:func:`block_kaczmarz`), raises the penalties of the exact augmented
Lagrangian merit (:func:`merit`) until the inexact direction descends on it, and
backtracks on the merit.  Also here: the chapter's problems, an equality-constrained
logistic regression on scikit-learn's breast-cancer data (:func:`logistic_problem`) and
three Hock-Schittkowski problems (:func:`hs_problem`).

References
----------
I. Hong, S. Na, M. W. Mahoney and M. Kolar, ICML 2023, arXiv:2305.18379
(``hong2023constrained``); see :func:`sketched_newton`.

Book: chapters/constrained/augmented_lagrangian.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Problem, Trace, as_rng, check_oracle
from ..validate import check_array, check_bool, check_callable, check_choice, check_int, check_positive, check_real

__all__ = ["sketched_newton", "block_kaczmarz", "logistic_problem", "hs_problem"]


def merit(f, c, g_L, lam, eta1, eta2):
    r"""The exact augmented Lagrangian :math:`L + \frac{\eta_1}{2}\|c\|^2 + \frac{\eta_2}{2}\|\nabla_x L\|^2`.

    ``f``, ``c``, ``g_L``: the objective, constraints and :math:`\nabla_x L` at a point.

    >>> float(merit(1.0, np.array([2.0]), np.array([1.0, 0.0]), np.array([0.5]), 1.0, 0.1))
    4.05
    """
    return f + lam @ c + 0.5 * eta1 * (c @ c) + 0.5 * eta2 * (g_L @ g_L)


def merit_grad(c, G, H, g_L, eta1, eta2):
    r"""Gradient of :func:`merit` in :math:`(x, \lambda)`, with the Lagrangian's Hessian ``H``.

    :math:`\nabla_x = \nabla_x L + \eta_1 G^\top c + \eta_2 H \nabla_x L`,
    :math:`\nabla_\lambda = c + \eta_2 G \nabla_x L`.
    """
    return np.concatenate([g_L + eta1 * G.T @ c + eta2 * H @ g_L, c + eta2 * G @ g_L])


def forcing(kkt, sharpen):
    r"""The factor :math:`\theta_k` of the sketch's accuracy test: :math:`\min(1, \|\nabla\mathcal L_k\|)` or 1."""
    return min(1.0, kkt) if sharpen else 1.0


def descends(slope, kkt, eta2):
    r"""The paper's descent test :math:`\nabla\mathcal L_\eta^\top z \le -\frac{\eta_2}{2}\|\nabla\mathcal L\|^2`."""
    return slope <= -0.5 * eta2 * kkt**2


def block_kaczmarz(K, b, z, *, tol, block=8, max_rows=10**6, rng=None):
    r"""Randomized block Kaczmarz for :math:`Kz = b` from ``z`` until :math:`\|Kz - b\| \le` ``tol``.

    The rows are split at random into blocks of ``block`` rows; a step picks block
    :math:`S` with probability proportional to :math:`\|K_S\|_F^2` and projects ``z`` onto
    :math:`\{K_S z = b_S\}`.  Returns ``(z, residual, rows)``: ``rows`` counts the row
    updates, each O(n) flops (plus O(n^2) per step to keep the residual).

    >>> z, r, rows = block_kaczmarz(np.eye(2), np.ones(2), np.zeros(2), tol=1e-12, block=2)
    >>> z.tolist(), rows
    ([1.0, 1.0], 2)
    """
    K = check_array(K, "K", ndim=2)
    n = check_int(K.shape[0], "K rows", low=1)
    if K.shape != (n, n):
        raise ValueError(f"K must be a square matrix, got shape {K.shape}")
    b, z = check_array(b, "b", shape=(n,)), check_array(z, "z", shape=(n,))
    tol, rng = check_real(tol, "tol", low=0.0), as_rng(rng)
    block = check_int(block, "block", low=1)
    max_rows = check_int(max_rows, "max_rows", low=1)
    blocks = np.array_split(rng.permutation(n), max(1, n // block))
    pinvs = [np.linalg.pinv(K[S]) for S in blocks]          # K_S^+ (n x |S|)
    weight = np.array([np.sum(K[S] ** 2) for S in blocks])
    r, rows = b - K @ z, 0
    while np.linalg.norm(r) > tol and rows < max_rows:
        for j in rng.choice(len(blocks), size=64, p=weight / weight.sum()):
            w = pinvs[j] @ r[blocks[j]]                      # project onto K_S z = b_S
            z, r, rows = z + w, r - K @ w, rows + len(blocks[j])
            if np.linalg.norm(r) <= tol or rows >= max_rows:
                break
    return z, r, rows


def sketched_newton(f, grad, c, jac, hess_lag, x0, *, lam0=None, eta1=1.0, eta2=0.1,
                    delta=0.1, xi_B=0.1, beta=0.1, nu=1.5, solver="sketch", block=8,
                    sharpen=True, tol=1e-10, eta1_max=1e8, max_rows=10**6, n_iters=100,
                    rng=None, callback=None):
    r"""Adaptive inexact Newton with a sketched KKT solve and the exact augmented Lagrangian.

    Newton's method on the KKT conditions converges fast near a solution but needs a
    linear solve per step and a merit function to globalize it.  Here the solve is a
    cheap randomized iteration stopped at an adaptive accuracy, and the merit is the
    *exact* augmented Lagrangian, whose penalties are raised until the inexact
    direction is a descent direction.

    Parameters
    ----------
    f, grad : callable
        ``f(x) -> float`` and ``grad(x) -> (n,)``.
    c, jac : callable
        ``c(x) -> (m,)`` the equality constraints, ``jac(x) -> (m, n)`` their Jacobian G.
    hess_lag : callable
        ``hess_lag(x, lam) -> (n, n)``, the Hessian of :math:`L = f + \lambda^\top c` in x.
    x0 : array_like, shape (n,)
        Start (not modified).
    lam0 : array_like, shape (m,) or None
        Start of the multipliers (default 0).
    eta1, eta2 : float
        Initial penalties of the merit (> 0); raised/lowered by ``nu**2`` and ``nu``.
    delta : float
        Initial accuracy of the inner solver, in (0, 1); divided by ``nu**4`` at each
        penalty change.
    xi_B : float
        Shift added to ``||H||`` when the reduced Hessian is not positive definite.
    beta : float
        Armijo constant, in (0, 1/2).
    nu : float
        Penalty update factor, > 1.
    solver : {"sketch", "exact"}
        Randomized block Kaczmarz (:func:`block_kaczmarz`) or a dense solve.
    block : int
        Rows per Kaczmarz block.
    sharpen : bool
        Sharpen the accuracy test with :math:`\theta_k = \min(1, \|\nabla\mathcal L_k\|)`
        (:func:`forcing`), which gives superlinear convergence; False keeps
        :math:`\theta_k = 1` (linear).
    tol : float
        Stop when the KKT residual :math:`\|(\nabla_x L, c)\|` is at most ``tol``.
    eta1_max : float
        Safeguard: the penalties stop adapting once ``eta1`` exceeds it.
    max_rows : int
        Cap on the row updates of one inner solve.
    n_iters : int
        Maximum outer iterations.
    rng : None, int or Generator
        Randomness of the sketches.
    callback : callable or None
        ``callback(record) -> bool`` after each step; True stops the run.

    Returns
    -------
    Result
        ``x``: ``{"x": x, "lam": lambda}``; ``f``: the objective.  Extras: ``kkt``, the
        final KKT residual; ``eta1``, ``eta2``, the final penalties.  History columns
        (row t: the state at iterate t and the step taken from it): ``kkt``, ``f``,
        ``merit`` (at the penalties of that step), ``merit_new`` (after the step),
        ``slope`` (the merit's directional derivative), ``alpha``, ``armijo`` (1 if the
        accepted step satisfies the Armijo test), ``changed`` (1 if the penalties moved),
        ``eta1``, ``eta2``, ``delta``, ``rows`` (row updates of the inner solve),
        ``shift`` (Hessian modification).

    Notes
    -----
    With :math:`\nabla\mathcal L_k = (\nabla_x L_k, c_k)` and
    :math:`K_k = [[B_k, G_k^\top], [G_k, 0]]`, :math:`B_k = H_k + t_k I`, the inner solver
    runs on :math:`K_k z = -\nabla\mathcal L_k` until
    :math:`\|r\| \le \theta_k \delta_k \|\nabla\mathcal L_k\|`; while
    :math:`\nabla\mathcal L_{\eta}^\top z > -\frac{\eta_2}{2}\|\nabla\mathcal L_k\|^2` it sets
    :math:`\eta_1 \leftarrow \nu^2\eta_1`, :math:`\eta_2 \leftarrow \eta_2/\nu`,
    :math:`\delta \leftarrow \delta/\nu^4` and continues the solve (warm start).  Then
    :math:`\alpha_k` halves from 1 until
    :math:`\mathcal L_\eta(w + \alpha z) \le \mathcal L_\eta(w) + \alpha\beta\nabla\mathcal L_\eta^\top z`.
    Cost per step: one f, gradient, c, Jacobian and Hessian, an O(n^3) eigen-check of
    the reduced Hessian, and the inner solve's row updates (O(n) flops each).
    Guarantee (paper): global almost-sure convergence to a KKT point; local linear
    convergence with unit steps; superlinear if :math:`\theta_k \to 0`.  Differences:
    the paper's test carries a factor :math:`\|K\|\psi_k` (huge here) and a floor on
    :math:`\delta`; the official code uses Gaussian or single-row sketches and the
    Hessian of f (not of L) in :func:`merit_grad`.

    References
    ----------
    I. Hong, S. Na, M. W. Mahoney and M. Kolar, Constrained optimization via exact
    augmented Lagrangian and randomized iterative sketching, ICML 2023,
    arXiv:2305.18379 (``hong2023constrained``).  D. Needell and J. A. Tropp, block
    Kaczmarz, arXiv:1208.3805 (``needell2014paved``).

    Book: chapters/constrained/augmented_lagrangian.ipynb

    Examples
    --------
    >>> p = hs_problem("hs28")
    >>> res = sketched_newton(p.f, p.grad, p.info["c"], p.info["jac"], p.info["hess_lag"],
    ...                       p.x0, rng=0)
    >>> res.converged, round(res.f, 8), res.kkt < 1e-10
    (True, 0.0, True)
    """
    x, lam, params = _check_args(f, grad, c, jac, hess_lag, x0, lam0, dict(
        eta1=eta1, eta2=eta2, delta=delta, xi_B=xi_B, beta=beta, nu=nu, solver=solver,
        block=block, sharpen=sharpen, tol=tol, eta1_max=eta1_max, max_rows=max_rows))
    n, m, rng = len(x), len(lam), as_rng(rng)
    n_iters, delta = check_int(n_iters, "n_iters", low=1), params["delta"]
    trace = Trace("sketched_newton", params, callback)

    def oracles(x, lam):
        trace.count("f"), trace.count("grad"), trace.count("c"), trace.count("jac")
        fx, cx = float(f(x)), check_oracle(c, "c", x, shape=(m,))
        G = check_oracle(jac, "jac", x, shape=(m, n))
        return fx, cx, G, check_oracle(grad, "grad", x) + G.T @ lam

    fx, cx, G, g_L = oracles(x, lam)
    t, kkt = 0, np.linalg.norm(np.concatenate([g_L, cx]))
    for t in range(n_iters):
        if kkt <= tol:
            break
        H = check_oracle(hess_lag, "hess_lag", x, lam, shape=(n, n))
        trace.count("hess_lag")
        Z = np.linalg.qr(G.T, mode="complete")[0][:, m:]       # null space of G
        reduced = np.linalg.eigvalsh(Z.T @ H @ Z).min() if m < n else 1.0
        shift = xi_B + np.linalg.norm(H) if reduced < 1e-6 else 0.0
        K = np.block([[H + shift * np.eye(n), G.T], [G, np.zeros((m, m))]])
        b = -np.concatenate([g_L, cx])
        z, rows, changed = np.zeros(n + m), 0, False
        while True:                                 # solve, test descent, adapt
            if solver == "exact":
                z = np.linalg.solve(K, b)
            else:
                tol_in = forcing(kkt, sharpen) * delta * kkt
                z, _, used = block_kaczmarz(K, b, z, tol=tol_in, block=block,
                                            max_rows=max_rows, rng=rng)
                rows += used
            slope = merit_grad(cx, G, H, g_L, eta1, eta2) @ z
            if descends(slope, kkt, eta2) or eta1 > eta1_max:
                break
            eta1, eta2, delta, changed = eta1 * nu**2, eta2 / nu, delta / nu**4, True
        m_old, alpha = merit(fx, cx, g_L, lam, eta1, eta2), 1.0
        while True:                                 # Armijo backtracking
            x_new, lam_new = x + alpha * z[:n], lam + alpha * z[n:]
            f_new, c_new, G_new, g_new = oracles(x_new, lam_new)
            m_new = merit(f_new, c_new, g_new, lam_new, eta1, eta2)
            armijo = m_new <= m_old + alpha * beta * slope
            if armijo or alpha < 1e-10:
                break
            alpha /= 2
        stop = trace.log(t, kkt=kkt, f=fx, merit=m_old, merit_new=m_new, slope=slope,
                         alpha=alpha, armijo=float(armijo), changed=float(changed),
                         eta1=eta1, eta2=eta2, delta=delta, rows=rows, shift=shift)
        x, lam, fx, cx, G, g_L = x_new, lam_new, f_new, c_new, G_new, g_new
        kkt = np.linalg.norm(np.concatenate([g_L, cx]))
        if trace.diverged(x, t + 1) or stop:
            t += 1
            break
    else:
        t = n_iters
    converged = bool(kkt <= tol)
    msg = f"KKT residual {kkt:.1e} <= tol" if converged else None
    return trace.result({"x": x, "lam": lam}, fx, n_iters=t, converged=converged,
                        message=msg, kkt=float(kkt), eta1=eta1, eta2=eta2)


def _check_args(f, grad, c, jac, hess_lag, x0, lam0, p):
    """Validate the arguments of :func:`sketched_newton`: ``(x, lam, params)``."""
    for name, fn in (("f", f), ("grad", grad), ("c", c), ("jac", jac), ("hess_lag", hess_lag)):
        check_callable(fn, name)
    x = check_array(x0, "x0", ndim=1)
    m = check_array(c(x), "c(x0)", ndim=1, finite=False).size
    lam = np.zeros(m) if lam0 is None else check_array(lam0, "lam0", shape=(m,))
    for key in ("eta1", "eta2", "xi_B", "tol", "eta1_max"):
        p[key] = check_positive(p[key], key)
    p["delta"] = check_real(p["delta"], "delta", low=0.0, high=1.0, low_open=True, high_open=True)
    p["beta"] = check_real(p["beta"], "beta", low=0.0, high=0.5, low_open=True, high_open=True)
    p["nu"] = check_real(p["nu"], "nu", low=1.0, low_open=True)
    p["solver"] = check_choice(p["solver"], "solver", ("sketch", "exact"))
    p["sharpen"] = check_bool(p["sharpen"], "sharpen")
    for key in ("block", "max_rows"):
        p[key] = check_int(p[key], key, low=1)
    return x, lam, p


# --------------------------------------------------------------------------- the chapter's problems

def logistic_problem(seed=0, n_eq=10, rhs="feasible"):
    r"""Equality-constrained logistic regression on scikit-learn's breast-cancer data.

    :math:`f(x) = \frac1N\sum_i \log(1 + e^{-y_i a_i^\top x})` (569 standardized samples,
    30 features, :math:`y_i = \pm1`) subject to ``n_eq`` random Gaussian equalities
    :math:`Ax = b` (drawn with ``seed``) and the sphere :math:`\|x\|^2 = 1`, as in the
    paper's LIBSVM experiment.  ``rhs="gaussian"`` draws :math:`b \sim N(0, I)` as the
    paper does (the feasible set may then be tiny or empty: it is empty when
    :math:`\|A^+ b\| > 1`); ``rhs="feasible"`` sets :math:`b = Au` for :math:`u` uniform on
    the unit sphere, so :math:`u` is feasible.  Start ``x0 = 1``, ``info["lam0"] = 1``;
    ``info["offset"]`` is :math:`\|A^+ b\|`.
    """
    from scipy.special import expit
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    n_eq = check_int(n_eq, "n_eq", low=0, high=28)
    rng = as_rng(check_int(seed, "seed", low=0))
    X, y = load_breast_cancer(return_X_y=True)
    X, y = StandardScaler().fit_transform(X), 2.0 * y - 1.0
    N, d = X.shape
    A, b = rng.standard_normal((n_eq, d)), rng.standard_normal(n_eq)
    if check_choice(rhs, "rhs", ("feasible", "gaussian")) == "feasible":
        u = rng.standard_normal(d)
        b = A @ (u / np.linalg.norm(u))

    def f(x):
        return float(np.mean(np.logaddexp(0.0, -y * (X @ x))))

    def grad(x):
        return X.T @ (-y * expit(-y * (X @ x))) / N

    def c(x):
        return np.concatenate([A @ x - b, [x @ x - 1.0]])

    def jac(x):
        return np.vstack([A, 2.0 * x])

    def hess_lag(x, lam):
        p = expit(X @ x)
        return (X.T * (p * (1 - p))) @ X / N + 2.0 * lam[-1] * np.eye(d)

    return Problem(f"logistic(breast_cancer, n_eq={n_eq}, seed={seed}, rhs={rhs})", f=f, grad=grad,
                   x0=np.ones(d), info=dict(c=c, jac=jac, hess_lag=hess_lag,
                                            lam0=np.ones(n_eq + 1), A=A, b=b,
                                            offset=float(np.linalg.norm(np.linalg.pinv(A) @ b))))


_HS = {  # Hock and Schittkowski (1981): f, grad, c, jac, Hessian of L, x0, f*
    "hs6": (lambda x: (1 - x[0]) ** 2, lambda x: np.array([-2 * (1 - x[0]), 0.0]),
            lambda x: np.array([10 * (x[1] - x[0] ** 2)]),
            lambda x: np.array([[-20 * x[0], 10.0]]),
            lambda x, lam: np.diag([2.0 - 20 * lam[0], 0.0]), [-1.2, 1.0], 0.0),
    "hs7": (lambda x: np.log(1 + x[0] ** 2) - x[1],
            lambda x: np.array([2 * x[0] / (1 + x[0] ** 2), -1.0]),
            lambda x: np.array([(1 + x[0] ** 2) ** 2 + x[1] ** 2 - 4]),
            lambda x: np.array([[4 * x[0] * (1 + x[0] ** 2), 2 * x[1]]]),
            lambda x, lam: np.diag([2 * (1 - x[0] ** 2) / (1 + x[0] ** 2) ** 2
                                  + lam[0] * (4 + 12 * x[0] ** 2), 2 * lam[0]]),
            [2.0, 2.0], -np.sqrt(3.0)),
    "hs28": (lambda x: (x[0] + x[1]) ** 2 + (x[1] + x[2]) ** 2,
             lambda x: 2 * np.array([x[0] + x[1], x[0] + 2 * x[1] + x[2], x[1] + x[2]]),
             lambda x: np.array([x[0] + 2 * x[1] + 3 * x[2] - 1]),
             lambda x: np.array([[1.0, 2.0, 3.0]]),
             lambda x, lam: np.array([[2.0, 2, 0], [2, 4, 2], [0, 2, 2]]), [-4.0, 1, 1], 0.0),
}


def hs_problem(name):
    r"""A Hock-Schittkowski equality-constrained test problem (also in CUTEst): ``"hs6"``, ``"hs7"``, ``"hs28"``.

    Source: W. Hock and K. Schittkowski, Test examples for nonlinear programming codes
    (Springer, 1981), problems 6, 7 and 28, with their standard starts and optimal
    values ``f_star`` (0, :math:`-\sqrt 3`, 0).  ``info`` holds ``c``, ``jac``,
    ``hess_lag`` and ``lam0 = 0``.
    """
    check_choice(name, "name", _HS)
    f, grad, c, jac, hess_lag, x0, f_star = _HS[name]
    return Problem(name, f=f, grad=grad, x0=np.array(x0), f_star=float(f_star),
                   info=dict(c=c, jac=jac, hess_lag=hess_lag, lam0=np.zeros(1)))
