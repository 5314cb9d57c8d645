r"""Convex training of two-layer ReLU networks over sampled activation patterns.

A two-layer ReLU network :math:`f(X) = \sum_j (X u_j)_+ \alpha_j` trained with weight decay
is, over the activation patterns :math:`D_i = \mathrm{diag}(1[X h_i \ge 0])` of the data, a convex
group-lasso program with cone constraints (Pilanci and Ergen).  Here: the patterns (sampled, or
enumerated exactly for 2-D data with a bias), the program and its cvxpy reference
(:func:`solve_cvxpy`, also the l-infinity robust hinge-loss version), ADMM with residual
balancing (:func:`admm`), the unconstrained sampled convex program (:func:`scp`), the recovery
of the network (:func:`recover_network`), a PGD attack and SGD on the nonconvex network.
Arrays: ``X`` is ``(n, d)`` (last column 1 for a bias), ``S`` the ``(n, P)`` 0/1 patterns,
``V, W`` the ``(P, d)`` blocks :math:`v_i, w_i`, stacked as ``u`` of shape ``(2, P, d)``.

References
----------
Y. Bai, T. Gautam and S. Sojoudi, arXiv:2201.01965 (``bai2022efficient``); see :func:`admm`.

Book: chapters/networks/convex_relu.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Trace, as_rng
from ..validate import check_array, check_choice, check_int, check_positive, check_real

__all__ = ["teacher_data", "moons_data", "sample_patterns", "enumerate_patterns", "predict", "cone", "cone_t",
           "objective", "violation", "solve_cvxpy", "cone_margin", "rescale_duals", "admm", "scp",
           "recover_network", "network_predict",
           "network_objective", "loss_gap_bound", "pgd_attack", "sgd_network", "group_shrink"]


def _data(X, y=None, S=None):
    X = check_array(X, "X", ndim=2)
    out = [X]
    if y is not None:
        out.append(check_array(y, "y", shape=(len(X),)))
    if S is not None:
        S = check_array(S, "S", ndim=2)
        if len(S) != len(X) or not np.all((S == 0) | (S == 1)):
            raise ValueError(f"S must be a 0/1 array of shape ({len(X)}, P), got shape {S.shape}")
        out.append(S)
    return out


def teacher_data(n: int, d: int, rng=None):
    r"""Regression data: Gaussian features and a bias column, a 5-neuron ReLU teacher, noise 0.1, unit-std y."""
    rng = as_rng(rng)
    X = np.c_[rng.standard_normal((check_int(n, "n", low=2), check_int(d, "d", low=2) - 1)), np.ones(n)]
    y = np.maximum(X @ rng.standard_normal((5, d)).T, 0.0) @ rng.standard_normal(5)
    y = y + 0.1 * rng.standard_normal(n)
    return X, y / np.std(y)


def moons_data(n_train: int, n_test: int, *, noise: float, rng: int = 0):
    r"""scikit-learn's two moons with a bias column and labels +-1: ``X_train, y_train, X_test, y_test``."""
    from sklearn.datasets import make_moons

    n_train, n_test = check_int(n_train, "n_train", low=2), check_int(n_test, "n_test", low=1)
    Xr, yr = make_moons(n_train + n_test, noise=check_real(noise, "noise", low=0.0),
                        random_state=check_int(rng, "rng", low=0))
    X, y = np.c_[Xr, np.ones(len(Xr))], 2.0 * yr - 1.0
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def sample_patterns(X, n_samples: int, rng=None) -> np.ndarray:
    r"""The distinct nonzero patterns :math:`1[X h \ge 0]` of ``n_samples`` Gaussian ``h``: ``(n, P)``."""
    (X,) = _data(X)
    H = as_rng(rng).standard_normal((X.shape[1], check_int(n_samples, "n_samples", low=1)))
    S = np.unique((X @ H >= 0).T, axis=0).T.astype(float)
    return S[:, S.any(axis=0)]


def enumerate_patterns(X) -> np.ndarray:
    r"""All nonzero patterns of ``X`` with 3 columns (2-D points and a bias), exactly.

    Every region of the central arrangement :math:`\{h: x_k^\top h = 0\}` in :math:`\mathbb R^3`
    has an edge on a line :math:`x_i^\top h = x_j^\top h = 0`; on both rays of each such line the
    signs of the other points are fixed and those of :math:`x_i, x_j` free (data in general position).
    """
    (X,) = _data(X)
    if X.shape[1] != 3:
        raise ValueError(f"X must have 3 columns (2-D points, bias), got {X.shape[1]}")
    i, j = np.triu_indices(len(X), 1)
    H = np.cross(X[i], X[j])                     # (pairs, 3), one per line
    H = np.concatenate([H, -H])
    i, j = np.tile(i, 2), np.tile(j, 2)
    base = X @ H.T >= 0                          # (n, 2 pairs)
    pats = []
    for si in (0, 1):
        for sj in (0, 1):
            B = base.copy()
            B[i, np.arange(len(i))], B[j, np.arange(len(j))] = si, sj
            pats.append(B)
    S = np.unique(np.concatenate(pats, axis=1).T, axis=0).T.astype(float)
    return S[:, S.any(axis=0)]


# --------------------------------------------------------------------------- the convex program

def predict(u, X, S):
    r"""The convex model's prediction :math:`F u = \sum_i D_i X (v_i - w_i)`."""
    return np.sum(S * (X @ (u[0] - u[1]).T), axis=1)


def cone(u, X, S):
    r"""The cone operator :math:`G u = ((2D_i - I) X v_i, (2D_i - I) X w_i)_i`, shape ``(2, n, P)``."""
    return (2 * S - 1) * (X @ u.transpose(0, 2, 1))


def cone_t(z, X, S):
    r"""The adjoint :math:`G^\top z`, shape ``(2, P, d)``."""
    return ((2 * S - 1) * z).transpose(0, 2, 1) @ X


def objective(u, X, y, S, beta: float) -> float:
    r"""The convex objective :math:`\frac12\|Fu - y\|^2 + \beta\sum_i(\|v_i\|_2 + \|w_i\|_2)`."""
    r = predict(u, X, S) - y
    return float(0.5 * r @ r + beta * np.linalg.norm(u, axis=2).sum())


def violation(u, X, S) -> float:
    r"""The largest cone-constraint violation :math:`\max(0, -\min G u)`."""
    return float(max(0.0, -cone(u, X, S).min()))


def solve_cvxpy(X, y, S, *, beta: float, loss: str = "squared", eps: float = 0.0):
    r"""The convex program solved by cvxpy (Clarabel): the reference for :func:`admm`.

    ``loss="squared"``: :math:`\frac12\|Fu - y\|^2`; ``loss="hinge"`` (labels :math:`\pm1`):
    :math:`\sum_k \max(0, 1 - y_k (Fu)_k + \epsilon\|a_k\|_1)` with :math:`a_k = \sum_i D_{ik}(v_i - w_i)`
    without its bias entry, and the robust cones :math:`(2D_{ik}-1)x_k^\top v_i \ge \epsilon\|v_i\|_1`
    (the worst case of an l-infinity perturbation of radius ``eps`` of the non-bias features;
    ``eps = 0`` is standard training).  Returns ``u`` (2, P, d) and the optimal value ``f``.
    """
    import cvxpy as cp

    X, y, S = _data(X, y, S)
    beta, eps = check_positive(beta, "beta"), check_real(eps, "eps", low=0.0)
    check_choice(loss, "loss", ("squared", "hinge"))
    (n, d), P = X.shape, S.shape[1]
    V, W = cp.Variable((P, d)), cp.Variable((P, d))
    pred = cp.sum(cp.multiply(S, X @ (V - W).T), axis=1)
    reg = beta * (cp.sum(cp.norm(V, 2, axis=1)) + cp.sum(cp.norm(W, 2, axis=1)))
    cons = [cp.multiply(2 * S - 1, X @ Z.T) >= cone_margin(Z, eps, n) for Z in (V, W)]
    if loss == "squared":
        fit = 0.5 * cp.sum_squares(pred - y)
    else:
        attack = cp.norm((S @ (V - W))[:, :-1], 1, axis=1)
        fit = cp.sum(cp.pos(1 - cp.multiply(y, pred) + eps * attack))
    prob = cp.Problem(cp.Minimize(fit + reg), cons)
    prob.solve(solver=cp.CLARABEL)
    return {"u": np.stack([V.value, W.value]), "f": float(prob.value), "status": prob.status}


def cone_margin(Z, eps: float, n: int):
    r"""The robust cones' right-hand side :math:`\epsilon\|z_i\|_1` (bias excluded), an ``(n, P)`` cvxpy expression."""
    import cvxpy as cp

    return eps * (np.ones((n, 1)) @ cp.reshape(cp.norm(Z[:, :-1], 1, axis=1), (1, Z.shape[0]), order="C"))


def rescale_duals(lam, nu, factor: float):
    r"""The scaled duals after :math:`\rho \to c\rho` (``c = factor``): :math:`\lambda/c` and :math:`\nu/c`."""
    return lam / factor, nu / factor


def group_shrink(z, tau: float):
    r"""Blockwise soft-thresholding :math:`\max(0, 1 - \tau/\|z_j\|) z_j` over the last axis."""
    norm = np.linalg.norm(z, axis=-1, keepdims=True)
    return np.maximum(0.0, 1.0 - tau / np.maximum(norm, 1e-300)) * z


def _factor(X, S, rho):
    """B^{-1} and the Cholesky factor of C = I + (2/rho) K o (S S^T), K = X B^{-1} X^T."""
    Binv = np.linalg.inv(np.eye(X.shape[1]) + X.T @ X)
    C = np.eye(len(X)) + (2.0 / rho) * (X @ Binv @ X.T) * (S @ S.T)
    return Binv, np.linalg.cholesky(C)


def admm(X, y, S, x0=None, *, beta: float, rho: float = 1.0, n_iters: int = 1000,
         adapt: bool = True, mu: float = 2.0, tau: float = 2.0, adapt_every: int = 10,
         n_log: int = 50, rng=None, callback=None):
    r"""ADMM on the convex program (squared loss) with residual balancing of the penalty.

    Splits the group norm and the cones off the least-squares fit: a linear solve in ``u``
    (block diagonal plus the rank-n :math:`F^\top F`, factored once per penalty by Woodbury),
    a group soft-threshold and a projection onto the nonnegative orthant, then dual ascent.

    Parameters
    ----------
    X, y, S : array_like
        Data ``(n, d)``, targets ``(n,)``, 0/1 patterns ``(n, P)``.
    x0 : array_like or None
        Start ``u`` of shape ``(2, P, d)`` (default zeros; not modified).
    beta : float
        Weight decay :math:`\beta > 0`.
    rho : float
        Initial penalty :math:`\rho > 0`.
    n_iters : int
        Iterations.
    adapt : bool
        Residual balancing: every ``adapt_every`` steps multiply (divide) :math:`\rho` by ``tau``
        when the primal residual exceeds ``mu`` times the dual one (or the converse).
    mu, tau : float
        Residual-balancing ratio (> 1) and factor (> 1).
    adapt_every, n_log : int
        Adaptation period; about ``n_log`` logged steps, evenly spaced.
    rng : None, int or Generator
        Unused (ADMM is deterministic); validated for the common API.
    callback : callable or None
        ``callback(record) -> bool`` at each logged step; True stops.

    Returns
    -------
    Result
        ``x``: the primal iterate ``u`` (2, P, d); ``f``: the convex objective at ``u``.  Extras:
        ``z`` (the group-lasso copy), ``s`` (the cone slack), ``rho`` (final penalty), ``violation``.
        History columns: ``f``, ``violation``, ``r_primal``, ``r_dual``, ``rho``.

    Notes
    -----
    Scaled ADMM on :math:`\min \frac12\|Fu - y\|^2 + \beta\sum_j\|z_j\| + 1[s \ge 0]` subject to
    :math:`u = z`, :math:`Gu = s`:

    .. math::
        u^+ = (F^\top F + \rho I + \rho G^\top G)^{-1}(F^\top y + \rho(z - \lambda) + \rho G^\top(s - \nu)),\\
        z^+ = \mathrm{shrink}(u^+ + \lambda, \beta/\rho),\quad s^+ = (G u^+ + \nu)_+,\quad
        \lambda \mathrel{+}= u^+ - z^+,\quad \nu \mathrel{+}= G u^+ - s^+.

    As :math:`(2D_i - I)^2 = I`, :math:`G^\top G` is block diagonal with blocks :math:`X^\top X`, and
    Woodbury reduces the solve to an n-by-n factor computed once per :math:`\rho`: each step costs
    :math:`O(nPd + n^2)`, quadratic, against the cubic cost of an interior-point step.  ADMM converges
    for any fixed :math:`\rho` (convex problem); the paper proves linear convergence.  Residual balancing
    (Boyd et al. 2011, section 3.4.1) is our addition: the paper tunes a fixed :math:`\rho`.

    References
    ----------
    Y. Bai, T. Gautam and S. Sojoudi, Efficient global optimization of two-layer ReLU networks:
    quadratic-time algorithms and adversarial training, SIMODS, arXiv:2201.01965 (``bai2022efficient``).
    M. Pilanci and T. Ergen, ICML 2020 (``pilanci2020neural``); S. Boyd et al., 2011 (``boyd2011distributed``).

    Book: chapters/networks/convex_relu.ipynb

    Examples
    --------
    >>> X = np.c_[np.linspace(-1, 1, 6), np.ones(6)]
    >>> y, S = np.abs(X[:, 0]), sample_patterns(X, 20, rng=0)
    >>> res = admm(X, y, S, beta=1e-3, n_iters=2000)
    >>> round(res.f, 3), res.violation < 1e-3
    (0.002, True)
    """
    X, y, S = _data(X, y, S)
    P, d = S.shape[1], X.shape[1]
    u = np.zeros((2, P, d)) if x0 is None else check_array(x0, "x0", shape=(2, P, d))
    beta, rho = check_positive(beta, "beta"), check_positive(rho, "rho")
    n_iters = check_int(n_iters, "n_iters", low=1)
    adapt_every = check_int(adapt_every, "adapt_every", low=1)
    mu, tau = check_real(mu, "mu", low=1.0), check_real(tau, "tau", low=1.0)
    n_log = check_int(n_log, "n_log", low=2)
    steps = set(np.unique(np.linspace(0, n_iters, n_log).astype(int)))
    as_rng(rng)
    params = {"beta": beta, "rho0": rho, "adapt": bool(adapt), "P": P}
    trace = Trace("admm", params, callback)

    def record(t, **extra):
        return trace.log(t, f=objective(u, X, y, S, beta), violation=violation(u, X, S),
                         rho=rho, **extra)

    z, s = u.copy(), np.maximum(cone(u, X, S), 0.0)
    lam, nu = np.zeros_like(u), np.zeros_like(s)
    Fty = np.stack([1.0, -1.0])[:, None, None] * (X.T @ (S * y[:, None])).T
    Binv, L = _factor(X, S, rho)
    r_p = r_d = np.nan
    stopped = record(0)
    for t in range(0 if stopped else n_iters):
        rhs = Fty + rho * (z - lam) + rho * cone_t(s - nu, X, S)
        a = rhs @ Binv / rho                     # A^{-1} rhs, A = rho I (x) B
        q = np.linalg.solve(L.T, np.linalg.solve(L, predict(a, X, S)))
        Ftq = np.stack([1.0, -1.0])[:, None, None] * (X.T @ (S * q[:, None])).T
        u = a - Ftq @ Binv / rho                 # Woodbury
        trace.count("solve")
        Gu, z_old, s_old = cone(u, X, S), z, s
        z = group_shrink(u + lam, beta / rho)
        s = np.maximum(Gu + nu, 0.0)
        lam, nu = lam + u - z, nu + Gu - s
        r_p = np.sqrt(np.sum((u - z) ** 2) + np.sum((Gu - s) ** 2))
        r_d = rho * np.linalg.norm(z - z_old + cone_t(s - s_old, X, S))
        if trace.diverged(u, t + 1):
            break
        if adapt and (t + 1) % adapt_every == 0 and (r_p > mu * r_d or r_d > mu * r_p):
            factor = tau if r_p > mu * r_d else 1.0 / tau
            rho, (lam, nu) = rho * factor, rescale_duals(lam, nu, factor)
            Binv, L = _factor(X, S, rho)
            trace.count("factor")
        if t + 1 in steps and record(t + 1, r_primal=r_p, r_dual=r_d):
            break
    n_done = int(trace.history["t"][-1]) if trace.message is None else t + 1
    return trace.result(u, objective(u, X, y, S, beta), n_iters=n_done, z=z, s=s,
                        rho=rho, violation=violation(u, X, S))


def scp(X, y, S, x0=None, *, beta: float, n_iters: int = 500, rng=None, callback=None):
    r"""The sampled convex program without cone constraints, by accelerated proximal gradient.

    Minimizes :math:`\frac12\|\sum_i D_i X u_i - y\|^2 + \beta\sum_i\|u_i\|_2` over ``u`` (P, d): fixed
    gates, one block per pattern, no constraint (the gates need not match the sign of :math:`X u_i`).
    FISTA with step :math:`1/L`, :math:`L = \|F\|_2^2`; each step costs :math:`O(nPd)`.  Its optimum is a
    lower bound on the constrained program's.  Returns ``x`` = ``u`` (P, d); history column ``f``.
    """
    X, y, S = _data(X, y, S)
    P, d = S.shape[1], X.shape[1]
    u = np.zeros((P, d)) if x0 is None else check_array(x0, "x0", shape=(P, d))
    beta, n_iters = check_positive(beta, "beta"), check_int(n_iters, "n_iters", low=1)
    as_rng(rng)
    F = (S[:, :, None] * X[:, None, :]).reshape(len(X), -1)     # the n x Pd gated design
    step = 1.0 / np.linalg.norm(F, 2) ** 2
    trace = Trace("scp", {"beta": beta, "P": P}, callback)

    def f(v):
        r = F @ v.ravel() - y
        return float(0.5 * r @ r + beta * np.linalg.norm(v, axis=1).sum())

    stopped, w, theta = trace.log(0, f=f(u)), u.copy(), 1.0
    for t in range(0 if stopped else n_iters):
        g = (F.T @ (F @ w.ravel() - y)).reshape(P, d)
        trace.count("grad")
        u_new = group_shrink(w - step * g, step * beta)
        theta_new = (1 + np.sqrt(1 + 4 * theta ** 2)) / 2
        w, u, theta = u_new + (theta - 1) / theta_new * (u_new - u), u_new, theta_new
        if trace.log(t + 1, f=f(u)):
            break
    return trace.result(u, f(u), n_iters=len(trace.history) - 1)


# --------------------------------------------------------------------------- the network

def recover_network(u, tol: float = 1e-10):
    r"""Neurons :math:`u_j = v_i/\sqrt{\|v_i\|}`, :math:`\alpha_j = \sqrt{\|v_i\|}` (and :math:`-\sqrt{\|w_i\|}`)."""
    blocks = np.concatenate([u[0], u[1]])
    sign = np.r_[np.ones(len(u[0])), -np.ones(len(u[1]))]
    norm = np.linalg.norm(blocks, axis=1)
    keep = norm > tol
    return blocks[keep] / np.sqrt(norm[keep])[:, None], sign[keep] * np.sqrt(norm[keep])


def network_predict(U, alpha, X):
    r"""The network :math:`f(X) = \sum_j (X u_j)_+ \alpha_j`."""
    return np.maximum(X @ U.T, 0.0) @ alpha


def loss_gap_bound(u, X, y, S) -> float:
    r"""A bound on :math:`|\text{network loss} - \text{convex objective}|` at an infeasible ``u``.

    Each block changes the prediction of sample k by at most its cone violation there, so the
    predictions differ by :math:`\delta` with :math:`|\delta_k| \le \sum (-Gu)_{+}` over the blocks of
    row k, and the losses by at most :math:`\|\delta\|\|Fu - y\| + \frac12\|\delta\|^2` (0 when feasible).
    """
    delta = np.linalg.norm(np.maximum(-cone(u, X, S), 0.0).sum(axis=(0, 2)))
    return float(delta * np.linalg.norm(predict(u, X, S) - y) + 0.5 * delta ** 2)


def network_objective(U, alpha, X, y, beta: float) -> float:
    r"""Its training loss :math:`\frac12\|f(X) - y\|^2 + \frac\beta2\sum_j(\|u_j\|^2 + \alpha_j^2)`."""
    r = network_predict(U, alpha, X) - y
    return float(0.5 * r @ r + 0.5 * beta * (np.sum(U ** 2) + np.sum(alpha ** 2)))


def pgd_attack(U, alpha, X, y, *, eps: float, n_steps: int = 20, step=None):
    r"""l-infinity PGD on the margin :math:`y f(x)` (bias column fixed): the perturbed inputs."""
    eps, n_steps = check_positive(eps, "eps"), check_int(n_steps, "n_steps", low=1)
    step = eps / 4 if step is None else step
    X0, Xa = np.asarray(X, dtype=float), np.array(X, dtype=float)
    for _ in range(n_steps):
        grad = ((Xa @ U.T > 0) * alpha) @ U * y[:, None]      # d(y f)/dx
        grad[:, -1] = 0.0
        Xa = np.clip(Xa - step * np.sign(grad), X0 - eps, X0 + eps)
        Xa[:, -1] = X0[:, -1]
    return Xa


def sgd_network(X, y, width: int, *, beta: float, lr: float, n_iters: int, batch: int = 16, rng=None):
    r"""Minibatch SGD on the nonconvex network's training loss (the back-propagation baseline).

    Gradient of :math:`\frac{n}{2b}\|f(X_B) - y_B\|^2 + \frac\beta2(\|U\|^2 + \|\alpha\|^2)` on a
    batch B of size b (unbiased for the full loss); He-scaled Gaussian start.  Returns ``(U, alpha)``.
    """
    rng = as_rng(rng)
    n, d = np.shape(X)
    U = rng.standard_normal((check_int(width, "width", low=1), d)) * np.sqrt(2.0 / d)
    alpha = rng.standard_normal(width) / np.sqrt(width)
    for _ in range(check_int(n_iters, "n_iters", low=1)):
        idx = rng.choice(n, size=batch, replace=False)
        H = X[idx] @ U.T
        r = (n / batch) * (np.maximum(H, 0.0) @ alpha - y[idx])
        g_alpha = np.maximum(H, 0.0).T @ r + beta * alpha
        g_U = ((H > 0) * r[:, None] * alpha).T @ X[idx] + beta * U
        U, alpha = U - lr * g_U, alpha - lr * g_alpha
    return U, alpha
