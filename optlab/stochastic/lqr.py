r"""The test problem of the policy-gradient chapter: an exact LQR with a Gaussian policy, its estimators, schedules.

:class:`LQR` is a discounted linear-quadratic regulator under the Gaussian linear policy
:math:`u = K s + \sigma\varepsilon`; its expected cost :math:`C(\theta) = -J(\theta)` and gradient are exact in
closed form (forward covariance and backward value recursions), so optimality gaps carry no Monte-Carlo error.
Trajectories are sampled for a batch of replicas at once, and the one-trajectory estimators of the gradient
(:func:`gradient_estimate`, REINFORCE or GPOMDP with a baseline) and of Hessian-vector products
(:func:`hessian_vector_estimate`) act on all time steps at once.  :func:`lqr_problem` wraps it all as an
:class:`~optlab.core.Problem` with the minimizer of the exact cost.  :class:`power` and :class:`momentum` are the
step and momentum schedules of the chapter.  The methods are in :mod:`optlab.stochastic.policy_gradient`.

References
----------
I. Fatkhullin, A. Barakat, A. Kireeva and N. He, ICML 2023, arXiv:2302.01734 (``fatkhullin2023stochastic``);
M. Fazel, R. Ge, S. Kakade and M. Mesbahi, ICML 2018, arXiv:1801.05039 (``fazel2018global``), the LQR's
landscape; R. J. Williams, 1992 (``williams1992simple``) and J. Baxter and P. L. Bartlett, 2001
(``baxter2001infinite``), the gradient estimators; Z. Shen et al., ICML 2019 (``shen2019hessian``), the Hessian
estimate.

Book: chapters/stochastic/policy_gradient.ipynb

Examples
--------
>>> p = lqr_problem()
>>> p.dim, round(p.gap(p.x0), 4), power(0.3, 1, 2)(0), momentum(2, 1)(3)
(2, 2.0027, 0.15, 0.5)
>>> gradient_estimate(p.info["env"], np.zeros((5, 2)), rng=0).shape
(5, 2)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import Problem, as_rng
from ..validate import check_array, check_choice, check_int, check_real

__all__ = ["LQR", "lqr_problem", "gradient_estimate", "hessian_vector_estimate", "power", "momentum"]
BASELINES = ("value", "mean", "none")


@dataclass(frozen=True)
class power:
    """The schedule ``c / (t + t0) ** p`` (``t = 0, 1, ...``), e.g. the steps :math:`\\eta_t \\propto 1/t`."""

    c: float
    p: float
    t0: float = 1.0

    def __post_init__(self):
        check_real(self.c, "c", low=0.0, low_open=True), check_real(self.p, "p", low=0.0)
        check_real(self.t0, "t0", low=0.0, low_open=True)

    def __call__(self, t: int) -> float:
        return float(self.c / (check_int(t, "t", low=0) + self.t0) ** self.p)


@dataclass(frozen=True)
class momentum(power):
    """The momentum ``1 - min(1, c / (t + t0) ** p)``: the new gradient's weight :math:`1 - \\beta_t` is ``O(t^-p)``."""

    def __call__(self, t: int) -> float:
        return 1.0 - min(1.0, super().__call__(t))



class LQR:
    r"""The LQR :math:`s_{t+1} = A s_t + B u_t + w_t`, cost :math:`c_t = s_t^\top Q s_t + u_t^\top R u_t`, over
    ``horizon`` steps with discount ``gamma``, under the Gaussian policy :math:`u_t = K s_t + \sigma\varepsilon_t`.

    :math:`s_0 \sim N(0, S_0)`, :math:`w_t \sim N(0, W)`, :math:`\varepsilon_t \sim N(0, I)`; the parameter is
    :math:`\theta = \mathrm{vec}(K)`, row-major, ``d = m n``.  Every method takes ``(d,)`` or ``(R, d)``.
    """

    def __init__(self, A, B, Q, R, W, S0, *, sigma: float, gamma: float, horizon: int):
        self.B = check_array(B, "B", ndim=2)
        n, m = self.n, self.m = self.B.shape
        for name, M, size, definite in (("A", A, n, None), ("Q", Q, n, False), ("R", R, m, True),
                                        ("W", W, n, False), ("S0", S0, n, False)):
            M = check_array(M, name, shape=(size, size))
            if definite is not None and (not np.allclose(M, M.T) or np.linalg.eigvalsh(M).min() < -1e-12
                                         or (definite and np.linalg.eigvalsh(M).min() <= 0)):
                raise ValueError(f"{name} must be symmetric positive {'definite' if definite else 'semidefinite'}")
            setattr(self, name, M)
        self.sigma = check_real(sigma, "sigma", low=0.0, low_open=True)
        self.gamma = check_real(gamma, "gamma", low=0.0, high=1.0, low_open=True)
        self.H, self.d = check_int(horizon, "horizon", low=1), n * m
        self.discount = self.gamma ** np.arange(self.H)
        self.W_eff = self.sigma ** 2 * self.B @ self.B.T + self.W      # exploration noise acts like process noise
        self._roots = [V * np.sqrt(np.clip(lam, 0, None)) for lam, V in map(np.linalg.eigh, (self.W, self.S0))]
        self._exploration = self.sigma ** 2 * np.trace(self.R) * np.cumsum(self.discount[::-1])[::-1]

    def gains(self, x):
        """``K`` ``(R, m, n)``, the closed loop ``A + B K`` and ``M = Q + K' R K`` of a batch, and whether x was 1-D."""
        X = check_array(x, "x", ndim=(1, 2))
        if X.shape[-1] != self.d:
            raise ValueError(f"x must have {self.d} entries per row (the {self.m}x{self.n} gain K, row-major)")
        K = X.reshape(-1, self.m, self.n)
        return K, self.A + self.B @ K, self.Q + K.transpose(0, 2, 1) @ self.R @ K, X.ndim == 1

    def covariances(self, x):
        r"""The state covariances :math:`\Sigma_t = E[s_t s_t^\top]`, ``(R, H, n, n)``, forward in time."""
        AK = self.gains(x)[1]
        S = np.empty((len(AK), self.H, self.n, self.n))
        S[:, 0] = self.S0
        for t in range(self.H - 1):
            S[:, t + 1] = AK @ S[:, t] @ AK.transpose(0, 2, 1) + self.W_eff
        return S

    def value(self, x):
        r"""``P (R, H, n, n), kappa (R, H)``: the value :math:`E[G_j \mid s_j = s] = s^\top P_j s + \kappa_j`."""
        _, AK, M, _ = self.gains(x)
        P = np.empty((len(M), self.H, self.n, self.n))
        P[:, -1] = self.discount[-1] * M
        for j in range(self.H - 2, -1, -1):              # P_j = gamma^j M + A_K' P_{j+1} A_K
            P[:, j] = self.discount[j] * M + AK.transpose(0, 2, 1) @ P[:, j + 1] @ AK
        noise = np.einsum("rtij,ji->rt", P, self.W_eff)[:, :0:-1]
        tail = np.concatenate([np.cumsum(noise, axis=1)[:, ::-1], np.zeros((len(M), 1))], axis=1)
        return P, tail + self._exploration

    def cost(self, x):
        r"""The exact expected discounted cost :math:`C(\theta) = \sum_{t<H}\gamma^t E[c_t] = E[V_0(s_0)]`."""
        P, kappa = self.value(x)
        c = np.einsum("rij,ji->r", P[:, 0], self.S0) + kappa[:, 0]
        return float(c[0]) if np.ndim(x) == 1 else c

    def grad(self, x):
        r"""The exact :math:`\nabla C = 2\sum_t (\gamma^t R K + B^\top P_{t+1} A_K)\Sigma_t` (row-major, like ``x``)."""
        K, AK, _, single = self.gains(x)
        P = np.concatenate([self.value(x)[0][:, 1:], np.zeros((len(K), 1, self.n, self.n))], axis=1)
        inner = self.discount[:, None, None] * (self.R @ K)[:, None] + self.B.T @ P @ AK[:, None]
        G = 2 * np.einsum("rtij,rtjk->rik", inner, self.covariances(x)).reshape(len(K), self.d)
        return G[0] if single else G

    def sample(self, x, rng):
        """One trajectory per row of ``x``: states ``(R, H, n)``, costs ``(R, H)``, scores ``(R, H, d)``."""
        K, AK, _, _ = self.gains(x)
        rng, R, H = as_rng(rng), len(K), self.H
        eps = rng.standard_normal((R, H, self.m))
        xi = self.sigma * eps @ self.B.T + rng.standard_normal((R, H, self.n)) @ self._roots[0].T
        S = np.empty((R, H, self.n))
        S[:, 0] = rng.standard_normal((R, self.n)) @ self._roots[1].T
        for t in range(H - 1):                           # the Markov chain is the one loop over time
            S[:, t + 1] = np.einsum("rij,rj->ri", AK, S[:, t]) + xi[:, t]
        U = np.einsum("rij,rtj->rti", K, S) + self.sigma * eps
        cost = np.einsum("rti,ij,rtj->rt", S, self.Q, S) + np.einsum("rti,ij,rtj->rt", U, self.R, U)
        return S, cost, (eps[..., :, None] * S[..., None, :]).reshape(R, H, self.d) / self.sigma


def _trajectory(env, x, rng, baseline):
    """Sample; return the states, the scores and the advantages :math:`A_j = G_j - b_j` (cost to go - baseline)."""
    check_choice(baseline, "baseline", BASELINES)
    S, cost, score = env.sample(x, rng)
    A = np.cumsum((env.discount * cost)[:, ::-1], axis=1)[:, ::-1]
    if baseline != "none":                               # both keep the estimates unbiased
        P, kappa = env.value(x)
        quad = np.einsum("rti,rtij,rtj->rt", S, P, S) if baseline == "value" else \
            np.einsum("rtij,rtji->rt", P, env.covariances(x))
        A = A - quad - kappa                             # "value": V_j(s_j), a perfect critic; "mean": E V_j
    return S, score, A


def gradient_estimate(env, x, rng, *, baseline="value", estimator="gpomdp"):
    r"""An unbiased estimate of :math:`\nabla C(\theta)` from one trajectory per row of ``x``, ``(R, d)``.

    ``"gpomdp"``: :math:`\sum_j (G_j - b_j)\psi_j` with the scores :math:`\psi_j = \nabla\log\pi(u_j|s_j)` and the
    discounted cost to go :math:`G_j = \sum_{k\ge j}\gamma^k c_k`; ``"reinforce"``: :math:`G_0\sum_j\psi_j`.
    """
    X = np.atleast_2d(check_array(x, "x", ndim=(1, 2)))
    if check_choice(estimator, "estimator", ("gpomdp", "reinforce")) == "reinforce":
        S, score, A = _trajectory(env, X, rng, "none")
        return A[:, :1] * score.sum(axis=1)
    S, score, A = _trajectory(env, X, rng, baseline)
    return np.einsum("rt,rtd->rd", A, score)


def hessian_vector_estimate(env, x, v, rng, *, baseline="value", form="per_step"):
    r"""An unbiased estimate of :math:`\nabla^2 C(\theta) v` from one trajectory per row of ``x``, ``(R, d)``.

    With :math:`\Psi_j = \sum_{h\le j}\psi_h`: ``"per_step"`` is :math:`\sum_j A_j[\Psi_j\Psi_j^\top -
    \Psi_{j-1}\Psi_{j-1}^\top + \nabla^2\log\pi_j]v`; ``"trajectory"`` is the paper's :math:`B = g\,\nabla\log
    p(\tau)^\top + \nabla g`, i.e. :math:`g\,\Psi_{H-1}^\top v + \sum_j A_j\nabla^2\log\pi_j v`.
    """
    X = np.atleast_2d(env.gains(x)[0].reshape(-1, env.d))
    V = check_array(v, "v", ndim=(1, 2))
    if V.shape not in ((env.d,), X.shape):
        raise ValueError(f"v must have shape ({env.d},) or {X.shape} like x, "
                         f"got {V.shape}")
    V = np.broadcast_to(V, X.shape)
    form = check_choice(form, "form", ("per_step", "trajectory"))
    S, score, A = _trajectory(env, X, rng, baseline)
    VS = np.einsum("rij,rtj->rti", V.reshape(-1, env.m, env.n), S)
    hess_log = -(VS[..., :, None] * S[..., None, :]) / env.sigma ** 2
    hess_log = hess_log.reshape(score.shape)          # (grad^2 log pi_j) v, (R, H, d)
    if form == "trajectory":           # g Psi_{H-1}'v + sum_j A_j (grad^2 log pi_j) v
        g = np.einsum("rt,rtd->rd", A, score)
        Psi_v = np.einsum("rd,rd->r", score.sum(axis=1), V)
        return g * Psi_v[:, None] + np.einsum("rt,rtd->rd", A, hess_log)
    Psi = np.cumsum(score, axis=1)
    prev = Psi - score
    outer = (Psi * np.einsum("rtd,rd->rt", Psi, V)[..., None]
             - prev * np.einsum("rtd,rd->rt", prev, V)[..., None])
    return np.einsum("rt,rtd->rd", A, outer + hess_log)


def lqr_problem(*, A=((0.5, 0.5), (0.0, 0.5)), B=((0.0,), (1.0,)), Q=None, R=None, W=None, S0=None,
                sigma: float = 1.0, gamma: float = 0.8, horizon: int = 10, baseline: str = "value") -> Problem:
    r"""The chapter's LQR as a :class:`~optlab.core.Problem`: exact cost and gradient, sampled oracles, optimum.

    Defaults: two states, one input, ``Q = I``, ``R = 0.1 I``, ``W = 0.1 I``, ``S0 = I``, ``sigma = 1``,
    ``gamma = 0.8``, ``horizon = 10``, ``x0 = 0`` (no feedback).  ``f``/``grad`` are the exact cost and gradient,
    ``stoch_grad(x, rng)`` is GPOMDP with ``baseline``, ``info["stoch_hvp"](x, v, rng)`` the per-time-step
    Hessian-vector estimate, ``info["env"]`` the :class:`LQR`.  ``x_star`` minimizes the exact cost (scipy's BFGS
    from ``info["K_inf"]``, the infinite-horizon discounted Riccati gain).

    >>> p = lqr_problem()
    >>> p.dim, round(p.gap(p.x0), 4), bool(np.linalg.norm(p.grad(p.x_star)) < 1e-8)
    (2, 2.0027, True)
    """
    from scipy.linalg import solve_discrete_are
    from scipy.optimize import minimize

    baseline = check_choice(baseline, "baseline", BASELINES)
    Bm = check_array(B, "B", ndim=2)
    n, m = Bm.shape
    env = LQR(A, Bm, np.eye(n) if Q is None else Q, 0.1 * np.eye(m) if R is None else R,
              0.1 * np.eye(n) if W is None else W, np.eye(n) if S0 is None else S0, sigma=sigma, gamma=gamma,
              horizon=horizon)
    root = np.sqrt(env.gamma)                           # discounting = scaling A and B by sqrt(gamma)
    P = solve_discrete_are(root * env.A, root * env.B, env.Q, env.R)
    K_inf = -env.gamma * np.linalg.solve(env.R + env.gamma * env.B.T @ P @ env.B, env.B.T @ P @ env.A)
    opt = minimize(env.cost, K_inf.ravel(), jac=env.grad, method="BFGS", options={"gtol": 1e-11})
    return Problem(f"lqr(n={n}, m={m}, H={env.H})", f=env.cost, grad=env.grad, x0=np.zeros(env.d),
                   stoch_grad=lambda x, rng: gradient_estimate(env, x, rng, baseline=baseline),
                   x_star=opt.x, f_star=float(opt.fun),
                   info={"env": env, "K_inf": K_inf.ravel(), "baseline": baseline,
                         "stoch_hvp": lambda x, v, rng: hessian_vector_estimate(env, x, v, rng, baseline=baseline)})
