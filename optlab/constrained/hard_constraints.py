r"""A neural PDE surrogate with a hard-constraint layer, and its mixture of experts (PI-HC-MoE).

A basis network :math:`b_\theta(t, x) \in \mathbb R^N` spans the solution, :math:`u = B_\theta w`.
The *hard-constraint layer* chooses the coefficients by a Levenberg-Marquardt solve of the
discretized PDE residual on collocation points, :math:`w^\star(\theta) = \arg\min_w
\tfrac12\|F(w, \theta)\|^2`, and differentiates through the solve by the implicit function
theorem.  The *mixture of experts* splits the domain into :math:`K` subdomains of x and solves
one small problem per subdomain, all batched.  A soft-constraint baseline trains the same
network with an output layer on the residual penalty.  numpy float64 with hand-written
gradients (checked against finite differences in the tests).

References
----------
N. Chalapathi, Y. Du and A. S. Krishnapriyan, ICLR 2024, arXiv:2402.13412 (``chalapathi2024scaling``).

Book: chapters/constrained/hard_constraints.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..baselines import adam_state, adam_step
from ..core import Trace, as_rng
from ..validate import check_array, check_choice, check_int, check_positive, check_real

# the validated API; basis, lm_solve, optimality_hessian and expert_masks are the layer's building blocks
__all__ = ["PDEProblem", "fisher_kpp_problem", "init_basis", "hard_loss_and_grad", "soft_loss_and_grad",
           "gradient_check", "train", "relative_l2"]

EPS = 1e-3  # regularization rows eps * w in F (the paper: 1e-4)


@dataclass
class PDEProblem:
    r"""A discretized PDE as rows :math:`F_i(u) = (A u)_i + \gamma_i \rho u_{c_i}^2 - s_i` on a space-time grid.

    PDE rows have :math:`\gamma_i = \Delta t` (they are multiplied by the time step); data
    rows (initial and boundary values) are linear, :math:`\gamma_i = 0`.  ``colloc`` lists the
    rows the hard constraint imposes (sampled PDE rows and every data row); the training loss
    uses all rows."""

    t: np.ndarray        # (M,) time of each grid point
    x: np.ndarray        # (M,) space coordinate of each grid point
    A: np.ndarray        # (n_rows, M) linear part
    center: np.ndarray   # (n_rows,) grid index of each row's centre
    gamma: np.ndarray    # (n_rows,) 1 for PDE rows, 0 for data rows
    s: np.ndarray        # (n_rows,) right-hand side
    rho: float
    colloc: np.ndarray   # (m,) rows of the hard constraint
    u_ref: np.ndarray    # (M,) the exact discrete solution

    def rows(self, U, idx=slice(None)):
        """Rows ``idx`` of F at the columns of ``U`` (M, K): (n, K)."""
        c = self.center[idx]
        return self.A[idx] @ U + (self.gamma[idx] * self.rho)[:, None] * U[c] ** 2 - self.s[idx, None]


def fisher_kpp_problem(n_x: int = 33, n_t: int = 16, nu: float = 0.01, rho: float = 5.0, t_end: float = 0.5,
                       n_colloc: int = 160, rng=0) -> PDEProblem:
    r"""Fisher-KPP :math:`u_t = \nu u_{xx} + \rho u(1-u)` on :math:`(0, t_{end}) \times (0, 1)`.

    Backward Euler in time, central differences in space, :math:`u = 0` at x = 0, 1 and
    :math:`u(0, x) = 0.9\exp(-((x - 0.35)/0.1)^2)`; PDE rows are multiplied by the time step.
    ``u_ref`` solves the discrete equations (Newton per time step); ``n_colloc`` PDE rows drawn
    by ``rng`` carry the hard constraint, with all initial and boundary rows.
    """
    n_x, n_t = check_int(n_x, "n_x", low=4), check_int(n_t, "n_t", low=1)
    nu, rho, t_end = check_positive(nu, "nu"), check_real(rho, "rho", low=0.0), check_positive(t_end, "t_end")
    n_pde = n_t * (n_x - 2)
    n_colloc = check_int(n_colloc, "n_colloc", low=1)
    if n_colloc > n_pde:
        raise ValueError(f"n_colloc must be at most n_t * (n_x - 2) = {n_pde}, got {n_colloc}")
    xs, dt = np.linspace(0.0, 1.0, n_x), t_end / n_t
    h, M = xs[1] - xs[0], (n_t + 1) * n_x
    idx = np.arange(M).reshape(n_t + 1, n_x)
    T, X = np.meshgrid(np.arange(n_t + 1) * dt, xs, indexing="ij")
    u0 = 0.9 * np.exp(-((xs - 0.35) / 0.1) ** 2)
    u0[[0, -1]] = 0.0
    # PDE rows (times dt): u_n - u_{n-1} - dt nu D2 u_n - dt rho u_n + dt rho u_n^2 = 0
    n_i, i_i = np.meshgrid(np.arange(1, n_t + 1), np.arange(1, n_x - 1), indexing="ij")
    cen = idx[n_i, i_i].ravel()
    A = np.zeros((n_pde, M))
    r = np.arange(n_pde)
    k = dt * nu / h ** 2
    A[r, cen] = 1 + 2 * k - dt * rho
    A[r, idx[n_i - 1, i_i].ravel()] = -1.0
    A[r, cen - 1] = A[r, cen + 1] = -k
    data = np.r_[idx[0], idx[1:, 0], idx[1:, -1]]                    # initial, then boundary values
    A = np.vstack([A, np.eye(M)[data]])
    center = np.r_[cen, data]
    gamma = np.r_[np.full(n_pde, dt), np.zeros(len(data))]
    s = np.r_[np.zeros(n_pde), u0, np.zeros(2 * n_t)]
    U = np.tile(u0, (n_t + 1, 1))
    D = (np.eye(n_x - 2) * (1 + 2 * k - dt * rho) - k * (np.eye(n_x - 2, k=1) + np.eye(n_x - 2, k=-1)))
    for n in range(1, n_t + 1):                                         # Newton per time step
        v = U[n - 1, 1:-1].copy()
        for _ in range(30):
            F = D @ v + dt * rho * v ** 2 - U[n - 1, 1:-1]
            v -= np.linalg.solve(D + np.diag(2 * dt * rho * v), F)
        U[n, 1:-1], U[n, [0, -1]] = v, 0.0
    pde = np.sort(as_rng(rng).choice(n_pde, n_colloc, replace=False))
    return PDEProblem(T.ravel(), X.ravel(), A, center, gamma, s, rho, np.r_[pde, np.arange(n_pde, len(s))],
                      U.ravel())


def _check_params(theta, name: str, rows: int):
    theta = check_array(theta, name, ndim=2)
    if theta.shape[0] != rows:
        raise ValueError(f"{name} must have shape ({rows}, N), got {theta.shape}")
    return theta


def _check_problem(p) -> PDEProblem:
    if not isinstance(p, PDEProblem):
        raise TypeError(f"p must be a PDEProblem (e.g. from fisher_kpp_problem), got {type(p).__name__}")
    return p


def basis(theta, p: PDEProblem):
    r"""The basis network :math:`B_{ij} = \sin(a_j x_i + \alpha_j t_i + c_j)`, ``theta = (a, alpha, c)``: (3, N)."""
    return np.sin(np.outer(p.x, theta[0]) + np.outer(p.t, theta[1]) + theta[2])


def basis_vjp(theta, p: PDEProblem, gB):
    """Gradient with respect to ``theta`` of ``<gB, basis(theta, p)>``."""
    d = np.cos(np.outer(p.x, theta[0]) + np.outer(p.t, theta[1]) + theta[2]) * gB
    return np.stack([p.x @ d, p.t @ d, d.sum(axis=0)])


def init_basis(n_basis: int = 16, rng=None):
    r"""Initial ``theta``: space frequencies near :math:`\pi j`, time frequencies N(0, 1), phases uniform."""
    n_basis, rng = check_int(n_basis, "n_basis", low=1), as_rng(rng)
    j = np.arange(1, n_basis + 1)
    return np.stack([np.pi * j * (1 + 0.1 * rng.standard_normal(n_basis)), rng.standard_normal(n_basis),
                     rng.uniform(-np.pi, np.pi, n_basis)])


def expert_masks(p: PDEProblem, n_experts: int):
    """Subdomains: ``K`` equal intervals of x; ``owner`` (M,) of grid points, ``masks`` (K, m) of constraint rows."""
    owner = np.minimum((p.x * n_experts).astype(int), n_experts - 1)
    return owner, (owner[p.center[p.colloc]][None] == np.arange(n_experts)[:, None]).astype(float)


def _jac(p: PDEProblem, AB, B, U, masks):
    """Per-expert Jacobian of the constraint rows in w: (K, m, N)."""
    c = p.center[p.colloc]
    dpsi = 2 * p.rho * p.gamma[p.colloc][None] * U[c].T                 # (K, m)
    return masks[:, :, None] * (AB[None] + dpsi[:, :, None] * B[c][None])


def _exact_hessian(J, B, P, U, p: PDEProblem):
    r"""Exact Jacobian of the optimality condition :math:`J^\top F = 0`: :math:`J^\top J + \sum_i F_i \nabla^2 F_i`.

    (plus :math:`\epsilon^2 I` from the rows :math:`\epsilon w`); ``J`` (K, m, N), ``P`` (K, m)."""
    c = p.center[p.colloc]
    curv = 2 * p.rho * p.gamma[p.colloc][None] * P       # F_i * d2 F_i / du_c^2
    Jt, Bc = J.transpose(0, 2, 1), B[c]
    return Jt @ J + (Bc.T[None] * curv[:, None, :]) @ Bc + EPS ** 2 * np.eye(B.shape[1])


def optimality_hessian(J, B, P, U, p: PDEProblem):
    r"""The matrix of the backward solve: the exact :func:`_exact_hessian`, undamped."""
    return _exact_hessian(J, B, P, U, p)


def lm_solve(B, p: PDEProblem, masks, W0, n_iters: int = 30, lam: float = 1e-3):
    r"""Levenberg-Marquardt on :math:`\tfrac12\|F_k(w)\|^2 + \tfrac12\epsilon^2\|w\|^2` for every expert at once.

    Step :math:`\delta = -(H + \lambda I)^{-1} \nabla`, with :math:`H` the exact Hessian, accepted
    if the cost drops, or stays within rounding while the gradient shrinks (then
    :math:`\lambda \leftarrow \lambda/3`), else :math:`\lambda \leftarrow 2\lambda`, per expert.
    ``W0`` (N, K); returns ``W`` (N, K) and the gradient norm per expert."""
    W, N, C = W0.copy(), B.shape[1], p.colloc
    AB, lams = p.A[C] @ B, np.full(masks.shape[0], lam)
    c, gr, sC = p.center[C], (p.gamma[C] * p.rho)[:, None], p.s[C, None]

    def state(W):
        U = B @ W
        P = masks * (AB @ W + gr * U[c] ** 2 - sC).T    # (K, m) rows of F
        J = _jac(p, AB, B, U, masks)
        g = (J.transpose(0, 2, 1) @ P[:, :, None])[:, :, 0] + EPS ** 2 * W.T
        return 0.5 * (P ** 2).sum(1) + 0.5 * EPS ** 2 * (W ** 2).sum(0), P, J, g, U

    f, P, J, g, U = state(W)
    for _ in range(n_iters):
        H = _exact_hessian(J, B, P, U, p) + lams[:, None, None] * np.eye(N)
        W_new = W - np.linalg.solve(H, g[:, :, None])[:, :, 0].T
        f_new, P_new, J_new, g_new, U_new = state(W_new)
        # accept a decrease, or (at the rounding floor of the cost) a smaller gradient
        smaller = np.linalg.norm(g_new, axis=1) < np.linalg.norm(g, axis=1)
        ok = (f_new < f) | ((f_new <= f * (1 + 1e-14)) & smaller)
        W[:, ok], U[:, ok] = W_new[:, ok], U_new[:, ok]
        f[ok], P[ok], J[ok], g[ok] = f_new[ok], P_new[ok], J_new[ok], g_new[ok]
        lams = np.where(ok, lams / 3, lams * 2)
    return W, np.linalg.norm(g, axis=1)


def _loss(p: PDEProblem, u):
    """Training loss: the mean square of all rows of F (PDE, initial, boundary); and its u-gradient."""
    R = p.rows(u[:, None])[:, 0]
    gR = 2 * R / len(R)
    gu = p.A.T @ gR
    np.add.at(gu, p.center, 2 * p.rho * p.gamma * u[p.center] * gR)
    return float(np.mean(R ** 2)), gu


def hard_loss_and_grad(theta, p: PDEProblem, n_experts: int = 1, W0=None,
                       lm_iters: int = 30):
    r"""Loss of :math:`u = \sum_k 1_{\Omega_k} B_\theta w_k^\star(\theta)` and its exact gradient in ``theta``.

    Returns ``(loss, grad, W, u)``; the gradient goes through the LM solve by the implicit
    function theorem: one independent (batched) backward solve per expert."""
    theta, p = _check_params(theta, "theta", 3), _check_problem(p)
    n_experts = check_int(n_experts, "n_experts", low=1)
    lm_iters = check_int(lm_iters, "lm_iters", low=1)
    B = basis(theta, p)
    owner, masks = expert_masks(p, n_experts)
    ind = (owner[:, None] == np.arange(n_experts)).astype(float)   # (M, K) indicators
    W0 = np.zeros((B.shape[1], n_experts)) if W0 is None else W0
    W, _ = lm_solve(B, p, masks, W0, lm_iters)
    U = B @ W
    u = (U * ind).sum(1)
    loss, gu = _loss(p, u)
    gU = gu[:, None] * ind
    gB, gW = gU @ W.T, B.T @ gU                                    # direct terms
    C, c = p.colloc, p.center[p.colloc]
    P = masks * p.rows(U, C).T
    J = _jac(p, p.A[C] @ B, B, U, masks)
    H = optimality_hessian(J, B, P, U, p)
    A = np.linalg.solve(H, gW.T[:, :, None])[:, :, 0]             # H_k a_k = dL/dw_k
    V = B @ A.T                                                    # (M, K)
    q = np.einsum("kin,kn->ki", J, A)                              # J_k a_k
    dpsi = 2 * p.rho * p.gamma[C][:, None] * U[c]                  # (m, K)

    def jt(Y):                                         # J_u^T Y per expert: (M, K)
        Z = p.A[C].T @ Y.T
        np.add.at(Z, c, dpsi * Y.T)
        return Z
    g_u = jt(masks * q)
    np.add.at(g_u, c, 2 * p.rho * p.gamma[C][:, None] * V[c] * P.T)
    gB -= g_u @ W.T + jt(P) @ A                        # minus d_B (a^T J^T F)
    return loss, basis_vjp(theta, p, gB), W, u


def soft_loss_and_grad(params, p: PDEProblem):
    r"""Soft constraint: :math:`u = B_\theta v` with a trained output layer; ``params`` (4, N) = (theta, v)."""
    params, p = _check_params(params, "params", 4), _check_problem(p)
    B = basis(params[:3], p)
    u = B @ params[3]
    loss, gu = _loss(p, u)
    return loss, np.vstack([basis_vjp(params[:3], p, np.outer(gu, params[3])), B.T @ gu]), u


def gradient_check(theta, p: PDEProblem, n_experts: int = 1, *, step: float = 3e-4, lm_iters: int = 40,
                   rng=0) -> float:
    r"""Implicit gradient against central finite differences (Richardson, error :math:`O(h^4)`).

    Along the gradient and along one random unit direction :math:`d`, compares
    :math:`g^\top d` with the fourth-order central difference of the loss (each evaluation a
    cold LM solve); returns the largest :math:`|{\rm fd} - g^\top d| / \|g\|`."""
    theta, p = _check_params(theta, "theta", 3), _check_problem(p)
    n_experts = check_int(n_experts, "n_experts", low=1)
    step, lm_iters = check_positive(step, "step"), check_int(lm_iters, "lm_iters", low=1)
    g = hard_loss_and_grad(theta, p, n_experts, lm_iters=lm_iters)[1]
    d = as_rng(rng).standard_normal(theta.shape)
    worst, g_norm = 0.0, np.linalg.norm(g)
    for v in ([g / g_norm] if g_norm > 0 else []) + [d / np.linalg.norm(d)]:
        f = [hard_loss_and_grad(theta + k * step * v, p, n_experts, lm_iters=lm_iters)[0] for k in (-2, -1, 1, 2)]
        fd = (8 * (f[2] - f[1]) - (f[3] - f[0])) / (12 * step)
        worst = max(worst, abs(fd - np.sum(g * v)) / max(g_norm, 1e-300))
    return float(worst)


def relative_l2(u, u_ref) -> float:
    r""":math:`\|u - u_{ref}\|_2 / \|u_{ref}\|_2` on the grid."""
    u, u_ref = check_array(u, "u", ndim=1, finite=False), check_array(u_ref, "u_ref", ndim=1)
    if u.shape != u_ref.shape or not np.any(u_ref):
        raise ValueError(f"u and u_ref must have the same shape and u_ref be nonzero, got {u.shape}, {u_ref.shape}")
    return float(np.linalg.norm(u - u_ref) / np.linalg.norm(u_ref))


def train(p: PDEProblem, x0, *, kind: str = "hard", n_experts: int = 1, lr: float = 1e-2, n_iters: int = 300,
          lm_iters: int = 5, n_log: int = 20, rng=None, callback=None):
    r"""Train the basis network with Adam under a hard, mixture-of-experts or soft constraint.

    Parameters
    ----------
    p : PDEProblem
        The discretized PDE (from :func:`fisher_kpp_problem`).
    x0 : array_like, shape (3, N)
        Initial basis parameters ``(a, alpha, c)`` (e.g. :func:`init_basis`) (not modified).
    kind : {"hard", "soft"}
        ``"hard"``: coefficients from the LM layer (``n_experts`` > 1 gives the MoE);
        ``"soft"``: an output layer ``v`` (drawn from ``rng``, N(0, 1/N)) trained on the same loss.
    n_experts : int
        Number K of equal subdomains of (0, 1) (hard only).
    lr : float
        Adam step size.
    n_iters : int
        Adam steps.
    lm_iters : int
        LM iterations per forward solve, warm-started from the previous step's coefficients.
    n_log : int
        Log every ``n_iters // n_log`` steps.
    rng : None, int or Generator
        Draws the soft model's output layer (the hard models are deterministic).
    callback : callable or None
        ``callback(record) -> bool`` at each logged step; True stops the run.

    Returns
    -------
    Result
        ``x``: the trained parameters ((3, N) hard, (4, N) soft); ``f``: the final loss.
        Extras: ``u`` (the solution on the grid), ``rel_l2``, ``W`` (coefficients (N, K), hard).
        History columns: ``t``, ``n_evals``, ``f`` (loss), ``rel_l2``.

    Notes
    -----
    Forward: :math:`w_k^\star = \arg\min_w \|F_k(w)\|^2` per subdomain :math:`\Omega_k`, with
    :math:`F_k = [\,r(B w)_i,\ i \in C \cap \Omega_k;\ \text{boundary rows};\ \epsilon w\,]`.
    Backward: with :math:`G = J^\top F` and :math:`H = J^\top J + \sum_i F_i \nabla^2 F_i`
    (undamped), solve :math:`H a = \nabla_w L` and take :math:`\nabla_\theta L = \partial_\theta L -
    \partial_\theta (a^\top G)`.  Cost per step: O(K (m N^2 + N^3)) for the solves, O(M N) for the
    network.  No convergence guarantee for the training; the IFT gradient is exact when the
    LM solve has converged to a nondegenerate minimizer.  Differences from the paper: a one-layer
    tanh basis instead of an FNO, a steady 1-D problem, a fixed grid and collocation set.

    References
    ----------
    N. Chalapathi, Y. Du and A. S. Krishnapriyan, Scaling physics-informed hard constraints with
    mixture-of-experts, ICLR 2024, arXiv:2402.13412 (``chalapathi2024scaling``).

    Book: chapters/constrained/hard_constraints.ipynb

    Examples
    --------
    >>> p = fisher_kpp_problem(n_x=9, n_t=4, n_colloc=10)
    >>> res = train(p, init_basis(6, rng=0), n_iters=5)
    >>> res.n_iters, res.rel_l2 < 1.0
    (5, True)
    """
    theta, p = _check_params(x0, "x0", 3), _check_problem(p)
    kind = check_choice(kind, "kind", ("hard", "soft"))
    n_experts, n_iters = check_int(n_experts, "n_experts", low=1), check_int(n_iters, "n_iters", low=1)
    lm_iters, n_log = check_int(lm_iters, "lm_iters", low=1), check_int(n_log, "n_log", low=1)
    lr, rng = check_positive(lr, "lr"), as_rng(rng)
    if kind == "soft" and n_experts != 1:
        raise ValueError("n_experts must be 1 for kind='soft' (the experts belong to the hard layer)")
    N = theta.shape[1]
    name = "soft" if kind == "soft" else ("hard" if n_experts == 1 else f"moe{n_experts}")
    trace = Trace(f"pinn_{name}", {"kind": kind, "n_experts": n_experts, "lr": lr, "lm_iters": lm_iters,
                                   "n_basis": N}, callback)
    x = theta.copy() if kind == "hard" else np.vstack([theta, rng.normal(0, 1 / np.sqrt(N), N)])
    state, W, every, n_done = adam_state(x), None, max(1, n_iters // n_log), 0
    for t in range(n_iters):
        if kind == "hard":
            loss, g, W, u = hard_loss_and_grad(x, p, n_experts, W, lm_iters)
            trace.count("lm_iter", lm_iters)
        else:
            loss, g, u = soft_loss_and_grad(x, p)
        trace.count("loss_grad")
        if t % every == 0 and trace.log(t, f=loss, rel_l2=relative_l2(u, p.u_ref)):
            break
        x, state = adam_step(x, g, state, lr=lr, beta1=0.9, beta2=0.999, eps=1e-8)
        n_done = t + 1
        if trace.diverged(x, n_done):
            break
    if trace.message is None and not trace.stopped_by_callback:
        if kind == "hard":
            loss, _, W, u = hard_loss_and_grad(x, p, n_experts, W, lm_iters)
        else:
            loss, _, u = soft_loss_and_grad(x, p)
        trace.log(n_done, f=loss, rel_l2=relative_l2(u, p.u_ref))
    else:
        loss, u = float("nan"), np.full(len(p.x), np.nan)
    return trace.result(x, loss, n_iters=n_done, u=u, rel_l2=relative_l2(u, p.u_ref), W=W)
