r"""Stochastic policy gradient for Fisher-non-degenerate policies: N-PG-IGT and (N)-HARPG on an exact LQR.

The policy :math:`u = K s + \sigma\varepsilon` acts on a discounted linear-quadratic regulator (:class:`LQR`)
whose expected cost :math:`C(\theta) = -J(\theta)` is exact in closed form, so optimality gaps carry no
Monte-Carlo error.  Trajectories are sampled for a batch of replicas at once and the estimators
(:func:`gradient_estimate`, :func:`hessian_vector_estimate`) act on all time steps at once.  The methods
minimize the cost: vanilla policy gradient, normalized momentum, and normalized momentum with implicit gradient
transport (all :func:`n_pg_igt`), and the Hessian-aided recursive estimator (:func:`n_harpg`).  ``x0``
is one parameter vector ``(d,)`` or ``R`` replicas ``(R, d)``; ``n_evals`` counts oracle calls, each one
sampled trajectory per replica.

References
----------
I. Fatkhullin, A. Barakat, A. Kireeva and N. He, ICML 2023, arXiv:2302.01734 (``fatkhullin2023stochastic``).

Book: chapters/stochastic/policy_gradient.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import (
    Problem,
    Trace,
    as_batch,
    as_rng,
    as_schedule,
    check_oracle,
    check_rowwise,
    geometric_steps,
    quantile_names,
    replica_stats,
    step_at,
)
from ..validate import check_array, check_bool, check_callable, check_choice, check_int, check_real

__all__ = ["LQR", "lqr_problem", "gradient_estimate", "hessian_vector_estimate", "harpg_correction",
           "extrapolate", "normalized_step", "power", "momentum", "n_pg_igt", "n_harpg"]
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
        raise ValueError(f"v must have shape ({env.d},) or {X.shape} like x, got {V.shape}")
    V, form = np.broadcast_to(V, X.shape), check_choice(form, "form", ("per_step", "trajectory"))
    S, score, A = _trajectory(env, X, rng, baseline)
    hess_log = -(np.einsum("rij,rtj->rti", V.reshape(-1, env.m, env.n), S)[..., :, None]
                 * S[..., None, :]).reshape(score.shape) / env.sigma ** 2          # (grad^2 log pi_j) v
    if form == "trajectory":
        g = np.einsum("rt,rtd->rd", A, score)
        return g * np.einsum("rd,rd->r", score.sum(axis=1), V)[:, None] + np.einsum("rt,rtd->rd", A, hess_log)
    Psi = np.cumsum(score, axis=1)
    prev = Psi - score
    outer = Psi * np.einsum("rtd,rd->rt", Psi, V)[..., None] - prev * np.einsum("rtd,rd->rt", prev, V)[..., None]
    return np.einsum("rt,rtd->rd", A, outer + hess_log)


def _pair(x, y, names):  # non-finite entries pass: the methods end a diverged run with a message
    x, y = check_array(x, names[0], ndim=2, finite=False), check_array(y, names[1], ndim=2, finite=False)
    if x.shape != y.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape (R, d), got {x.shape} and {y.shape}")
    return x, y


def harpg_correction(stoch_hvp, x, x_prev, rng):
    r"""The correction :math:`v = B(\hat\tau, \hat\theta)(\theta - \theta_{\mathrm{prev}})` at the random interpolate
    :math:`\hat\theta = q\theta + (1 - q)\theta_{\mathrm{prev}}`, :math:`q \sim U[0, 1]`, one per row of ``(R, d)``.

    Its mean is exactly :math:`\nabla C(\theta) - \nabla C(\theta_{\mathrm{prev}})`: the Hessian averaged along
    the segment, applied to the segment.
    """
    check_callable(stoch_hvp, "stoch_hvp", signature="(x, v, rng) -> array")
    x, x_prev = _pair(x, x_prev, ("x", "x_prev"))
    q = as_rng(rng).uniform(size=(len(x), 1))
    return check_oracle(stoch_hvp, "stoch_hvp", q * x + (1 - q) * x_prev, x - x_prev, rng)


def extrapolate(x, x_prev, beta):
    r"""The IGT point :math:`\tilde\theta = \theta + \frac{\beta}{1-\beta}(\theta - \theta_{\mathrm{prev}})`."""
    x, x_prev = _pair(x, x_prev, ("x", "x_prev"))
    beta = check_real(beta, "beta", low=0.0, high=1.0, high_open=True)
    return x + beta / (1.0 - beta) * (x - x_prev)


def normalized_step(x, d, lr):
    r""":math:`\theta - \eta\, d/\lVert d\rVert`, row-wise on ``(R, d)`` (no move where :math:`d = 0`)."""
    x, d = _pair(x, d, ("x", "d"))
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    return x - check_real(lr, "lr", low=0.0) * d / np.where(norm > 0, norm, 1.0)


def _start(name, params, x0, n_iters, n_log, f, grad, quantiles, callback, oracles):
    """The checks and the bookkeeping that the two methods share."""
    X, single = as_batch(x0)
    for key, fn in oracles.items():
        check_callable(fn, key, signature="(x, rng) -> array" if key == "stoch_grad" else "(x, v, rng) -> array")
    check_callable(f, "f", optional=True, signature="x -> (R,) values")
    check_callable(grad, "grad", optional=True, signature="x -> (R, d) gradients")
    n_iters = check_int(n_iters, "n_iters", low=1)
    steps, names = geometric_steps(n_iters, n_log), quantile_names(quantiles)
    trace = Trace(name, {**params, "n_iters": n_iters, "n_replicas": len(X)}, callback)

    def record(t, x, lr=np.nan, err=None):
        row = {"lr": lr} if err is None else {"lr": lr, "grad_err": err}
        if f is not None:
            row.update(replica_stats(check_rowwise(f, x), names, "f"))
        return trace.log(t, **row)

    def error(t, x, d):  # the mean squared error of the direction d at x, on logged steps only
        if grad is not None and t + 1 in steps:
            return float(np.mean(np.sum((d - check_oracle(grad, "grad", x)) ** 2, axis=1)))

    def finish(x, n_done, d):
        fx = float(np.mean(check_rowwise(f, x))) if f is not None and trace.message is None else None
        return trace.result(x[0] if single else x, fx, n_iters=n_done, d=d)

    return X, steps, trace, record, error, finish


def _beta_at(schedule, t):
    beta = step_at(schedule, t, "beta")
    if not beta < 1:
        raise ValueError(f"beta schedule must return momentum coefficients in [0, 1), got {beta:g} at step t={t}")
    return beta


def n_pg_igt(stoch_grad, x0, *, lr, beta, n_iters: int, transport: bool = True, normalize: bool = True, f=None,
             grad=None, n_log: int = 30, quantiles=(0.1, 0.5, 0.9), rng=None, callback=None):
    r"""N-PG-IGT, normalized policy gradient with implicit gradient transport, and the methods it improves on.

    Momentum averages gradients taken at old parameters, and lags behind them.  Implicit gradient transport
    samples each new gradient at an extrapolated point, so that the average is, up to second order, the gradient
    at the current parameters; the normalized step has length :math:`\eta_t` whatever the scale of the estimate.
    ``transport=False`` gives normalized momentum policy gradient; ``beta=0, transport=False, normalize=False``
    vanilla policy gradient (REINFORCE/GPOMDP with SGD).

    Parameters
    ----------
    stoch_grad : callable
        ``stoch_grad(x, rng)``: an unbiased estimate of the gradient of the cost, one trajectory per row.
    x0 : array_like, shape (d,) or (R, d)
        The policy parameters, one row per replica (not modified).
    lr : float or callable
        The step :math:`\eta_t` or a schedule ``t -> float``, e.g. :class:`power`.
    beta : float or callable
        The momentum :math:`\beta_t \in [0, 1)` or a schedule (e.g. :class:`momentum`), used from ``t = 1``:
        :math:`d_0 = g_0`.
    n_iters : int
        Iterations, one trajectory each.
    transport, normalize : bool
        Sample at the IGT point :math:`\tilde\theta_t` (else at :math:`\theta_t`); normalize the step.
    f, grad : callable or None
        The exact cost and its gradient, row-wise, only to log (not counted).
    n_log : int
        About this many logged steps, geometrically spaced in ``[1, n_iters]``.
    quantiles : sequence of float
        Quantiles of ``f`` over the replicas to log.
    rng : None, int or numpy.random.Generator
        The one source of randomness, passed to the oracles.
    callback : callable or None
        ``callback(record) -> bool`` at each logged step; True stops the run.

    Returns
    -------
    Result
        ``x``: the last parameters, shaped like ``x0``; ``f``: the mean cost there; extras: ``d``, the last
        direction.  History: ``t``, ``n_evals`` (trajectories per replica), ``lr`` (the step that reached the
        row); with ``f``: ``f`` (mean over replicas), ``f_q10``, ``f_q50``, ``f_q90``; with ``grad``:
        ``grad_err``, the mean of :math:`\lVert d_t - \nabla C(\theta_t)\rVert^2` for the :math:`d_t` of the step.

    Notes
    -----
    :math:`\tilde\theta_t = \theta_t + \frac{\beta_t}{1-\beta_t}(\theta_t - \theta_{t-1})`,
    :math:`d_t = \beta_t d_{t-1} + (1-\beta_t) g(\tau_t, \tilde\theta_t)` with :math:`\tau_t \sim
    \pi_{\tilde\theta_t}`, :math:`\theta_{t+1} = \theta_t - \eta_t d_t/\lVert d_t\rVert`: one trajectory and
    :math:`O(H(n^2 + d))` work per replica and iteration, no importance sampling.  For Fisher-non-degenerate
    policies the paper proves a sample complexity :math:`\tilde O(\varepsilon^{-2.5})` for a global
    :math:`\varepsilon`-optimal policy (for the return :math:`J = -C`, up to the term
    :math:`O(\sqrt{\varepsilon_{\mathrm{bias}}}/(1-\gamma))` of the policy class), against
    :math:`\tilde O(\varepsilon^{-3})` before; :math:`\eta_t \propto 1/t` and :math:`1 - \beta_t \propto t^{-4/5}`
    are the schedules the chapter's error recursion asks for this rate (not checked against the paper's theorems,
    whose constants are not used here).

    References
    ----------
    I. Fatkhullin, A. Barakat, A. Kireeva and N. He, Stochastic policy gradient methods: improved sample complexity
    for Fisher-non-degenerate policies, ICML 2023, arXiv:2302.01734 (``fatkhullin2023stochastic``); S. Arnold et
    al., NeurIPS 2019 (``arnold2019reducing``); A. Cutkosky and H. Mehta, ICML 2020 (``cutkosky2020momentum``);
    R. J. Williams, 1992 (``williams1992simple``); J. Baxter and P. L. Bartlett, 2001 (``baxter2001infinite``).

    Book: chapters/stochastic/policy_gradient.ipynb

    Examples
    --------
    >>> p = lqr_problem()
    >>> res = n_pg_igt(p.stoch_grad, p.x0, lr=power(0.3, 1, 2), beta=momentum(1, 0.8), n_iters=200, f=p.f, rng=0)
    >>> res.n_evals, bool(p.gap(res.x) < 0.25 * p.gap(p.x0))
    ({'stoch_grad': 200}, True)
    """
    schedule, betas, rng = as_schedule(lr), as_schedule(beta, "beta"), as_rng(rng)
    name = ("n_pg_igt" if transport else "normalized_momentum") if normalize else ("pg_igt" if transport else "pg")
    params = {"lr": schedule, "beta": betas, "transport": check_bool(transport, "transport"),
              "normalize": check_bool(normalize, "normalize")}
    x, steps, trace, record, error, finish = _start(name, params, x0, n_iters, n_log, f, grad, quantiles, callback,
                                                    {"stoch_grad": stoch_grad})
    d, x_prev, n_done = None, x, 0
    stopped = record(0, x)
    for t in range(0 if stopped else n_iters):
        eta = step_at(schedule, t)
        beta_t = 0.0 if t == 0 else _beta_at(betas, t)
        point = extrapolate(x, x_prev, beta_t) if transport else x
        g = check_oracle(stoch_grad, "stoch_grad", point, rng)
        trace.count("stoch_grad")
        d = g if d is None else beta_t * d + (1 - beta_t) * g
        err = error(t, x, d)
        x_prev, x = x, (normalized_step(x, d, eta) if normalize else x - eta * d)
        n_done = t + 1
        if trace.diverged(x, n_done) or (n_done in steps and record(n_done, x, eta, err)):
            break
    return finish(x, n_done, d)


def n_harpg(stoch_grad, stoch_hvp, x0, *, lr, beta, n_iters: int, normalize: bool = True, f=None, grad=None,
            n_log: int = 30, quantiles=(0.1, 0.5, 0.9), rng=None, callback=None):
    r"""(N)-HARPG, the Hessian-aided recursive policy gradient, normalized (N-HARPG) or not (HARPG).

    The momentum estimate is carried to the new parameters by a sampled Hessian-vector product along the last
    step, so it tracks the current gradient without the lag of plain momentum.

    Parameters
    ----------
    stoch_grad, x0, lr, beta, n_iters, normalize, f, grad, n_log, quantiles, rng, callback
        As in :func:`n_pg_igt`.
    stoch_hvp : callable
        ``stoch_hvp(x, v, rng)``: an unbiased estimate of :math:`\nabla^2 C(x) v`, one trajectory per row.

    Returns
    -------
    Result
        As in :func:`n_pg_igt`; ``n_evals`` counts both oracles.

    Notes
    -----
    With :math:`\hat\theta_t = q_t\theta_t + (1-q_t)\theta_{t-1}`, :math:`q_t \sim U[0, 1]`:
    :math:`v_t = B(\hat\tau_t, \hat\theta_t)(\theta_t - \theta_{t-1})` (:func:`harpg_correction`),
    :math:`d_t = \beta_t(d_{t-1} + v_t) + (1-\beta_t) g(\tau_t, \theta_t)`,
    :math:`\theta_{t+1} = \theta_t - \eta_t d_t/\lVert d_t\rVert`: two trajectories per iteration after the first,
    memory linear in d.  The paper proves the sample complexity :math:`\tilde O(\varepsilon^{-2})` (up to the bias
    term), with :math:`\eta_t, 1 - \beta_t \propto 1/t` in the chapter's derivation.  :func:`lqr_problem` supplies
    :math:`B` in the per-time-step form with a value baseline (the paper states the trajectory form; both are
    unbiased).

    References
    ----------
    I. Fatkhullin, A. Barakat, A. Kireeva and N. He, ICML 2023, arXiv:2302.01734 (``fatkhullin2023stochastic``);
    Z. Shen et al., Hessian aided policy gradient, ICML 2019 (``shen2019hessian``).

    Book: chapters/stochastic/policy_gradient.ipynb

    Examples
    --------
    >>> p = lqr_problem()
    >>> res = n_harpg(p.stoch_grad, p.info["stoch_hvp"], p.x0, lr=power(0.3, 1, 2), beta=momentum(2, 1),
    ...               n_iters=100, f=p.f, rng=0)
    >>> res.n_evals, bool(p.gap(res.x) < 0.25 * p.gap(p.x0))
    ({'stoch_grad': 100, 'stoch_hvp': 99}, True)
    """
    schedule, betas, rng = as_schedule(lr), as_schedule(beta, "beta"), as_rng(rng)
    params = {"lr": schedule, "beta": betas, "normalize": check_bool(normalize, "normalize")}
    x, steps, trace, record, error, finish = _start("n_harpg" if normalize else "harpg", params, x0, n_iters, n_log,
                                                    f, grad, quantiles, callback,
                                                    {"stoch_grad": stoch_grad, "stoch_hvp": stoch_hvp})
    d, x_prev, n_done = None, x, 0
    stopped = record(0, x)
    for t in range(0 if stopped else n_iters):
        eta = step_at(schedule, t)
        g = check_oracle(stoch_grad, "stoch_grad", x, rng)
        trace.count("stoch_grad")
        if d is None:
            d = g
        else:
            beta_t = _beta_at(betas, t)
            v = harpg_correction(stoch_hvp, x, x_prev, rng)
            trace.count("stoch_hvp")
            d = beta_t * (d + v) + (1 - beta_t) * g
        err = error(t, x, d)
        x_prev, x = x, (normalized_step(x, d, eta) if normalize else x - eta * d)
        n_done = t + 1
        if trace.diverged(x, n_done) or (n_done in steps and record(n_done, x, eta, err)):
            break
    return finish(x, n_done, d)


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
