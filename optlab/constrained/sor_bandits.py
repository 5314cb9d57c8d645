r"""Learning the SOR relaxation parameter across a sequence of linear systems, from iteration counts.

Successive over-relaxation solves :math:`A x = b` with the splitting
:math:`M_\omega = D/\omega + L`; its iteration count depends strongly on
:math:`\omega`.  Given instances :math:`A_t = A + c_t I` one after another, a bandit
picks :math:`\omega_t` from a grid, sees only the number of iterations, and
competes with the best fixed :math:`\omega` in hindsight (:func:`tsallis_inf`,
optionally one learner per context bin) or, given the context :math:`c_t`, with the
instance-optimal :math:`\omega_t^\star` (:func:`cheb_cb`).  The costs come from a
batched SOR (:func:`sor_iterations`) or from Young's spectral radius
(:func:`young_iterations`), which the chapter validates against real runs.

References
----------
M. Khodak, E. Chow, M.-F. Balcan and A. Talwalkar, ICLR 2024, arXiv:2310.02246
(``khodak2024learning``); see :func:`tsallis_inf`.

Book: chapters/constrained/sor_bandits.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Trace, as_rng
from ..validate import check_array, check_callable, check_choice, check_finite_output, check_int, check_real

__all__ = ["laplacian_2d", "sor_iterations", "jacobi_radius", "sor_radius", "omega_star",
           "young_iterations", "draw_shifts", "cost_table", "tsallis_probabilities", "exp3_probabilities",
           "tsallis_inf", "chebyshev_features", "cheb_cb", "draw_rhs"]

OFFSETS = {"high": (0.5, 1.5), "low": (2.0, 6.0)}  # c = -0.15 + 0.6 Beta(a, b), the paper's two settings


def laplacian_2d(m: int = 10) -> np.ndarray:
    r"""The 5-point Laplacian on an ``m`` x ``m`` interior grid (diagonal 4), dense, natural ordering.

    >>> laplacian_2d(2).tolist()[0]
    [4.0, -1.0, -1.0, 0.0]
    """
    m = check_int(m, "m", low=1)
    T = 2 * np.eye(m) - np.eye(m, k=1) - np.eye(m, k=-1)
    return np.kron(np.eye(m), T) + np.kron(T, np.eye(m)) + 0.0  # + 0.0: no negative zeros


def sor_iterations(A, b, omega, *, shift=0.0, tol: float = 1e-8,
                   max_iters: int = 10_000):
    r"""Batched SOR on :math:`(A + cI)x = b` from :math:`x_0 = 0`: iterations to relative residual < ``tol``.

    ``b`` is ``(B, n)`` (or ``(n,)``), ``omega`` and ``shift`` broadcast to ``(B,)``: one
    system and one relaxation per row, all swept at once.  Each sweep is the forward
    substitution :math:`x_i \leftarrow (1-\omega)x_i + \omega(b_i - \sum_{j\ne i} a_{ij}x_j)/(a_{ii}+c)`
    over the rows, vectorized over the batch; only the nonzeros of ``A`` are used.
    Rows that converged are frozen.  Returns ``(iterations (B,) int, x (B, n))``;
    a row that never converges gets ``max_iters``.

    >>> k, x = sor_iterations(laplacian_2d(3), np.ones(9), [1.0, 1.17])
    >>> k.tolist(), bool(np.allclose(x @ laplacian_2d(3), 1.0))
    ([28, 14], True)
    """
    A = check_array(A, "A", ndim=2)
    n = A.shape[0]
    if A.shape != (n, n) or np.any(np.diag(A) <= 0):
        raise ValueError("A must be a square matrix with a positive diagonal, "
                         f"got shape {A.shape}")
    b = np.atleast_2d(check_array(b, "b", ndim=(1, 2)))
    if b.shape[1] != n:
        raise ValueError(f"b must have {n} columns (one per unknown), got {b.shape}")
    omega, shift = _relaxation(omega), check_array(shift, "shift", ndim=(0, 1))
    if omega.ndim > 1:
        raise ValueError(f"omega must be a number or a 1-D array, got {omega.shape}")
    try:
        size = np.broadcast_shapes((len(b),), omega.shape, shift.shape)
    except ValueError:
        raise ValueError(f"b (rows), omega and shift must broadcast, got {len(b)}, "
                         f"{omega.shape}, {shift.shape}") from None
    b, omega, shift = (np.broadcast_to(v, size + v.shape[1:]).copy()
                       for v in (b, omega, shift))
    tol = check_real(tol, "tol", low=0.0, low_open=True)
    max_iters = check_int(max_iters, "max_iters", low=1)
    off = A - np.diag(np.diag(A))
    cols = [np.flatnonzero(row) for row in off]
    diag = np.diag(A)[None, :] + shift[:, None]
    if np.any(diag <= 0):
        raise ValueError("shift must keep the diagonal of A + shift I positive")
    x, iters, idx = np.zeros_like(b), np.full(len(b), max_iters), np.arange(len(b))
    X, rhs, w, d, c = np.zeros((n, len(b))), b.T.copy(), omega, diag.T.copy(), shift
    vals, norm0 = [off[i, cols[i]] for i in range(n)], np.linalg.norm(b, axis=1)
    for k in range(1, max_iters + 1):
        for i in range(n):              # the sweep: rows j < i hold their new values
            X[i] += w * ((rhs[i] - vals[i] @ X[cols[i]]) / d[i] - X[i])
        done = np.linalg.norm(rhs - A @ X - c * X, axis=0) < tol * norm0[idx]
        if done.any():                       # freeze the converged systems
            x[idx[done]], iters[idx[done]] = X[:, done].T, k
            keep = ~done
            X, rhs, d = X[:, keep], rhs[:, keep], d[:, keep]
            w, c, idx = w[keep], c[keep], idx[keep]
            if idx.size == 0:
                break
    x[idx] = X.T
    return iters, x


def jacobi_radius(shift, m: int = 10):
    r""":math:`\beta(c) = \rho(I - D^{-1}(A + cI)) = 4\cos(\pi/(m+1))/(4 + c)` for :func:`laplacian_2d`.

    >>> round(float(jacobi_radius(0.0, m=10)), 4)
    0.9595
    """
    shift = check_array(shift, "shift")
    if np.any(shift <= -4):
        raise ValueError("shift must be > -4 (a positive diagonal 4 + c)")
    return 4 * np.cos(np.pi / (check_int(m, "m", low=1) + 1)) / (4 + shift)


def _relaxation(omega, name="omega"):
    omega = check_array(omega, name)
    if np.any((omega <= 0) | (omega >= 2)):
        raise ValueError(f"{name} must lie in (0, 2), got values in [{omega.min():g}, {omega.max():g}]")
    return omega


def _beta(beta):
    beta = check_array(beta, "beta")
    if np.any((beta < 0) | (beta >= 1)):
        raise ValueError("beta, the Jacobi spectral radius, must lie in [0, 1)")
    return beta


def _interval(context_range):
    if not (isinstance(context_range, (tuple, list)) and len(context_range) == 2):
        raise TypeError(f"context_range must be a pair (a, b), got {context_range!r}")
    lo, hi = (check_real(v, "context_range") for v in context_range)
    if not lo < hi:
        raise ValueError(f"context_range must be an interval (a, b) with a < b, got {context_range}")
    return lo, hi


def sor_radius(omega, beta):
    r"""Young's spectral radius of the SOR iteration matrix (consistently ordered A, Jacobi radius ``beta``).

    :math:`\rho = 1 - \omega + \omega^2\beta^2/2 + \omega\beta\sqrt{1 - \omega + \omega^2\beta^2/4}`
    for :math:`\omega \le \omega^\star(\beta)`, and :math:`\omega - 1` beyond.

    >>> round(float(sor_radius(1.0, 0.5)), 4)   # Gauss-Seidel: beta^2
    0.25
    """
    omega, beta = _relaxation(omega), _beta(beta)
    disc = np.maximum(1 - omega + omega**2 * beta**2 / 4, 0.0)
    below = 1 - omega + omega**2 * beta**2 / 2 + omega * beta * np.sqrt(disc)
    return np.where(omega <= omega_star(beta), below, omega - 1)


def omega_star(beta):
    r"""The asymptotically optimal relaxation :math:`\omega^\star = 1 + (\beta/(1+\sqrt{1-\beta^2}))^2`."""
    beta = _beta(beta)
    return 1 + (beta / (1 + np.sqrt(1 - beta**2))) ** 2


def young_iterations(omega, beta, *, tol: float = 1e-8, max_iters: int = 10_000):
    r"""Predicted SOR iterations :math:`\lceil \log(\mathrm{tol}) / \log\rho(\omega, \beta)\rceil`, capped.

    >>> young_iterations([1.0, 1.5], 0.9).tolist()
    [88, 27]
    """
    tol, max_iters = check_real(tol, "tol", low=0.0, low_open=True), check_int(max_iters, "max_iters", low=1)
    rho = sor_radius(omega, beta)
    with np.errstate(divide="ignore"):
        k = np.ceil(np.log(tol) / np.log(np.clip(rho, 1e-300, 1 - 1e-16)))
    return np.clip(k, 1, max_iters).astype(int)


def draw_shifts(n_rounds: int, *, variance: str = "high", n_replicas: int = 1, rng=None) -> np.ndarray:
    r"""The paper's diagonal offsets :math:`c_t = -0.15 + 0.6\,\mathrm{Beta}(a, b)`, shape ``(R, T)``.

    ``variance="high"``: Beta(0.5, 1.5); ``"low"``: Beta(2, 6).
    """
    a, b = OFFSETS[check_choice(variance, "variance", OFFSETS)]
    shape = (check_int(n_replicas, "n_replicas", low=1), check_int(n_rounds, "n_rounds", low=1))
    return -0.15 + 0.6 * as_rng(rng).beta(a, b, size=shape)


def cost_table(shifts, arms, *, m: int = 10, tol: float = 1e-8) -> np.ndarray:
    r"""Young's iteration counts for every instance and arm: ``(R, T, K)`` from shifts ``(R, T)``."""
    shifts = check_array(shifts, "shifts", ndim=2)
    arms = _relaxation(check_array(arms, "arms", ndim=1), "arms")
    return young_iterations(arms[None, None, :], jacobi_radius(shifts, m)[..., None], tol=tol).astype(float)


def cost_scale(total, seen):
    r"""The running-mean normalization :math:`s = \bar\ell - 1` of the costs (1 before any cost is seen)."""
    return np.where(seen > 0, np.maximum(total / np.maximum(seen, 1) - 1, 1e-12), 1.0)


def loss_estimate(loss, prob):
    r"""The importance-weighted estimate :math:`(\ell - 1)/p` added to the chosen arm's cumulative loss."""
    return (loss - 1) / prob


def _check_weights(scaled, eta, n_steps):
    scaled = check_array(scaled, "scaled", ndim=2)
    eta = check_array(eta, "eta", shape=(len(scaled),))
    if np.any(eta <= 0):
        raise ValueError("eta must be positive")
    return scaled, eta, check_int(n_steps, "n_steps", low=0)


def _newton_start(scaled, eta):
    """A start right of the root: there the largest probability is 1, so the sum is >= 1."""
    return scaled.min(axis=-1) - 2 / eta


def tsallis_probabilities(scaled, eta, n_steps: int = 20):
    r"""Tsallis-INF's distribution :math:`p_a = 4/(\eta(\hat L_a - x))^2`, with x by Newton so that sum p = 1.

    ``scaled`` is ``(R, K)`` (the scaled cumulative loss estimates), ``eta`` ``(R,)``;
    at most ``n_steps`` Newton steps, fewer once every sum is within 1e-12 of 1.
    """
    return _tsallis(*_check_weights(scaled, eta, n_steps))


def _tsallis(scaled, eta, n_steps):
    x = _newton_start(scaled, eta)
    p = 4 / (eta[:, None] * (scaled - x[:, None])) ** 2
    for _ in range(n_steps):
        total = p.sum(axis=1)
        if np.all(np.abs(total - 1) < 1e-12):
            break
        x = x - (total - 1) / (eta * (p**1.5).sum(axis=1))
        p = 4 / (eta[:, None] * (scaled - x[:, None])) ** 2
    return p / p.sum(axis=1, keepdims=True)


def exp3_probabilities(scaled, eta, n_steps: int = 0):
    r"""Exp3's exponential weights :math:`p_a \propto \exp(-\eta \hat L_a)` (the baseline)."""
    return _exp3(*_check_weights(scaled, eta, n_steps))


def _exp3(scaled, eta, n_steps):
    z = -eta[:, None] * (scaled - scaled.min(axis=1, keepdims=True))
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


LEARNERS = {"tsallis": (_tsallis, lambda t, K: 2 / np.sqrt(t)),
            "exp3": (_exp3, lambda t, K: np.sqrt(np.log(K) / (K * t)))}


def tsallis_inf(cost, arms, *, n_iters: int, n_replicas: int = 1, bins=None,
                learner: str = "tsallis", newton_steps: int = 20, rng=None,
                callback=None):
    r"""Tsallis-INF over a grid of relaxations, with bandit feedback (iteration counts), on R replicas.

    Each round the learner draws an arm from its distribution, pays the cost of that
    arm only, and adds the importance-weighted estimate to that arm's cumulative loss.
    With ``bins`` (a context bin per replica and round) each bin runs its own learner
    (Tsallis-INF-CB, the paper's binned contextual baseline).

    Parameters
    ----------
    cost : callable
        ``cost(t, arm) -> (R,)``: the iterations of instance ``t`` of each replica with
        arm indices ``arm`` (an int array ``(R,)``), e.g. a lookup in :func:`cost_table`.
    arms : array_like, shape (K,)
        The grid of relaxations (the paper: ``linspace(1, 1.95, 20)``).
    n_iters : int
        Number of rounds T (instances).
    n_replicas : int
        Independent learners run at once (R).
    bins : array_like of int, shape (R, T), or None
        Context bins for the binned variant.
    learner : {"tsallis", "exp3"}
        Tsallis-INF (:math:`\eta_t = 2/\sqrt t`) or Exp3 (:math:`\eta_t = \sqrt{\log K/(Kt)}`), the baseline.
    newton_steps : int
        Newton steps of the normalization.
    rng : None, int or Generator
        The randomness of the draws.
    callback : callable or None
        ``callback(record) -> bool`` after each round; True stops.

    Returns
    -------
    Result
        ``x``: the final distribution over arms ``(R, K)`` (of the last bin seen, with
        ``bins``); ``f``: the mean total cost over replicas.  Extras: ``choices`` (arm
        index per replica and round, ``(R, T)``), ``costs`` (``(R, T)``), ``omega`` (the
        chosen relaxations).  History: one row per round, ``t``, ``n_evals``, ``cost``
        (mean over replicas), ``p_max`` (mean largest probability).

    Notes
    -----
    With :math:`s_t` the running mean of the observed costs minus 1 and
    :math:`\eta_t = 2/\sqrt t`: :math:`p_{t,a} = 4/(\eta_t(\hat L_a/s_t - x_t))^2` with
    :math:`x_t` such that :math:`\sum_a p_{t,a} = 1`; draw :math:`a_t \sim p_t`, pay
    :math:`\ell_t`, update :math:`\hat L_{a_t} \mathrel{+}= (\ell_t - 1)/p_{t,a_t}`.
    Cost per round: O(K) per Newton step and replica, plus one SOR solve.  Newton starts
    at :math:`\min_a \hat L_a/s_t - 2/\eta_t`, where the sum is at least 1, so it descends
    monotonically to the root; the reference code starts at :math:`x = -1`, which can
    overshoot past the pole.  The probabilities are renormalized after Newton.
    Guarantee (the paper): with costs bounded via its surrogate of the SOR count, the
    regret against the best fixed arm of the grid is :math:`O(\sqrt{KT})` up to the
    normalization; the grid's discretization adds a term that vanishes as K grows.

    References
    ----------
    M. Khodak, E. Chow, M.-F. Balcan and A. Talwalkar, Learning to relax: setting solver
    parameters across a sequence of linear system instances, ICLR 2024, arXiv:2310.02246
    (``khodak2024learning``).  J. Zimmert and Y. Seldin, Tsallis-INF, JMLR 22, 2021
    (``zimmert2021tsallis``).

    Book: chapters/constrained/sor_bandits.ipynb

    Examples
    --------
    >>> table = np.tile([[30.0, 10.0, 20.0]], (200, 1))
    >>> res = tsallis_inf(lambda t, a: table[t, a], [1.0, 1.5, 1.9], n_iters=200, rng=0)
    >>> int(np.argmax(res.x[0])), bool(res.f < 20 * 200)
    (1, True)
    """
    check_callable(cost, "cost", signature="(t, arm) -> (R,) costs")
    arms = _relaxation(check_array(arms, "arms", ndim=1), "arms")
    K, T = len(arms), check_int(n_iters, "n_iters", low=1)
    R, rng = check_int(n_replicas, "n_replicas", low=1), as_rng(rng)
    probabilities, eta_of = LEARNERS[check_choice(learner, "learner", LEARNERS)]
    newton_steps = check_int(newton_steps, "newton_steps", low=0)
    if bins is None:
        bins = np.zeros((R, T), dtype=int)
    bins = check_array(bins, "bins", shape=(R, T)).astype(int)
    if np.any(bins < 0):
        raise ValueError("bins must be non-negative integers")
    B, r = int(bins.max()) + 1, np.arange(R)
    L, seen, total = np.zeros((R, B, K)), np.zeros((R, B)), np.zeros((R, B))
    choices, costs = np.zeros((R, T), dtype=int), np.zeros((R, T))
    params = {"K": K, "n_iters": T, "n_replicas": R, "n_bins": B,
              "newton_steps": newton_steps}
    trace = Trace(f"tsallis_inf ({learner})", params, callback)
    for t in range(T):
        b = bins[:, t]
        scale = cost_scale(total[r, b], seen[r, b])
        eta = eta_of(seen[r, b] + 1, K)
        p = probabilities(L[r, b] / scale[:, None], eta, newton_steps)
        if trace.diverged(p, t):
            break
        a = np.minimum((p.cumsum(axis=1) < rng.random(R)[:, None]).sum(axis=1), K - 1)
        loss = check_finite_output(cost(t, a), "cost", (R,))
        trace.count("cost", R)
        L[r, b, a] += loss_estimate(loss, p[r, a])
        seen[r, b] += 1
        total[r, b] += loss
        choices[:, t], costs[:, t] = a, loss
        if trace.log(t + 1, cost=loss.mean(), p_max=p.max(axis=1).mean()):
            break
    return _finish(trace, p, arms, choices, costs)


def _finish(trace, x, arms, choices, costs):
    n = len(trace.history)
    return trace.result(x, float(costs[:, :n].sum(axis=1).mean()), n_iters=n, choices=choices[:, :n],
                        costs=costs[:, :n], omega=arms[choices[:, :n]])


def chebyshev_features(context, degree: int = 6, context_range=(-0.15, 0.65)) -> np.ndarray:
    r""":math:`(T_0(u), \dots, T_{m-1}(u))` with :math:`u = 2(c - a)/(b - a) - 1` clipped to [-1, 1].

    >>> chebyshev_features([-0.15, 0.65], degree=3).tolist()
    [[1.0, -1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    a, b = _interval(context_range)
    u = np.clip(2 * (check_array(context, "context") - a) / (b - a) - 1, -1.0, 1.0)
    return np.cos(np.arange(check_int(degree, "degree", low=1)) * np.arccos(u)[..., None])


def cheb_cb(cost, contexts, arms, *, n_iters: int, degree: int = 6,
            context_range=(-0.15, 0.65), gamma: float = 1.0, ridge: float = 1e-3,
            rng=None, callback=None):
    r"""ChebCB: per-arm Chebyshev regression of the cost on the context, with inverse-gap-weighted draws.

    Knowing the offset :math:`c_t` of instance t, the learner predicts each arm's
    normalized cost from a polynomial in :math:`c_t`, mostly plays the predicted best
    arm, and explores an arm with probability inversely proportional to its predicted gap.

    Parameters
    ----------
    cost : callable
        ``cost(t, arm) -> (R,)``, as in :func:`tsallis_inf`.
    contexts : array_like, shape (R, T)
        The context (diagonal offset) of each instance, one row per replica.
    arms : array_like, shape (K,)
        The grid of relaxations.
    n_iters : int
        Rounds T (at most the number of columns of ``contexts``).
    degree : int
        Number m of Chebyshev polynomials :math:`T_0, \dots, T_{m-1}` (the paper: 6).
    context_range : (float, float)
        The interval [a, b] mapped to [-1, 1] (the paper: [-0.15, 0.65]).
    gamma : float
        Exploration: :math:`\eta_t = \gamma t`.
    ridge : float
        Ridge penalty of the per-arm least squares.
    rng, callback
        As in :func:`tsallis_inf`.

    Returns
    -------
    Result
        ``x``: the coefficients ``(R, K, m)`` of the fitted normalized costs; ``f``: mean
        total cost.  Extras ``choices``, ``costs``, ``omega`` as in :func:`tsallis_inf`.
        History: ``t``, ``n_evals``, ``cost``, ``p_max``.

    Notes
    -----
    With :math:`\phi_t` the features of :math:`c_t`, :math:`s_t` the running mean cost
    minus 1 and :math:`\hat y_{t,a} = \theta_a^\top\phi_t / s_t` (ridge least squares of
    :math:`\ell - 1` on :math:`\phi` over the rounds where a was played): the greedy arm
    :math:`a^\star = \arg\min_a \hat y_{t,a}`; every other arm has probability
    :math:`1/(K + \eta_t(\hat y_{t,a} - \hat y_{t,a^\star}))` and :math:`a^\star` the rest.
    Cost per round: K solves of size m per replica.  Differences from the reference
    code: ridge least squares instead of box-constrained ``lsqlin`` with Lipschitz
    bounds, the running-mean normalization, and :math:`\eta_t = \gamma t` instead of its
    data-dependent :math:`\eta_t \propto t\sqrt{Kt/\hat R_t}`.  The paper proves that ChebCB's
    regret against the instance-optimal policy (the best grid arm for each context)
    grows sublinearly in T.
    """
    check_callable(cost, "cost", signature="(t, arm) -> (R,) costs")
    arms = _relaxation(check_array(arms, "arms", ndim=1), "arms")
    contexts = check_array(contexts, "contexts", ndim=2)
    (R, n_ctx), K = contexts.shape, len(arms)
    T = check_int(n_iters, "n_iters", low=1, high=n_ctx)
    m, rng = check_int(degree, "degree", low=1), as_rng(rng)
    gamma = check_real(gamma, "gamma", low=0.0)
    ridge = check_real(ridge, "ridge", low=0.0, low_open=True)
    lo, hi = _interval(context_range)
    phi_all, r = chebyshev_features(contexts, m, (lo, hi)), np.arange(R)
    G = np.tile(ridge * np.eye(m), (R, K, 1, 1))
    h, theta = np.zeros((R, K, m)), np.zeros((R, K, m))
    total, choices, costs = np.zeros(R), np.zeros((R, T), dtype=int), np.zeros((R, T))
    params = {"K": K, "n_iters": T, "degree": m, "gamma": gamma, "ridge": ridge,
              "n_replicas": R}
    trace = Trace("cheb_cb", params, callback)
    for t in range(T):
        phi = phi_all[:, t]
        scale = cost_scale(total, np.full(R, t))
        y_hat = np.einsum("rkm,rm->rk", theta, phi) / scale[:, None]
        best = y_hat.argmin(axis=1)
        p = 1 / (K + gamma * (t + 1) * (y_hat - y_hat[r, best][:, None]))
        p[r, best] = 0.0
        p[r, best] = 1 - p.sum(axis=1)                   # inverse gap weighting
        if trace.diverged(p, t):
            break
        a = np.minimum((p.cumsum(axis=1) < rng.random(R)[:, None]).sum(axis=1), K - 1)
        loss = check_finite_output(cost(t, a), "cost", (R,))
        trace.count("cost", R)
        G[r, a] += phi[:, :, None] * phi[:, None, :]
        h[r, a] += (loss - 1)[:, None] * phi
        theta[r, a] = np.linalg.solve(G[r, a], h[r, a][..., None])[..., 0]
        total += loss
        choices[:, t], costs[:, t] = a, loss
        if trace.log(t + 1, cost=loss.mean(), p_max=p.max(axis=1).mean()):
            break
    return _finish(trace, theta, arms, choices, costs)


def draw_rhs(n: int, size: int = 1, rng=None) -> np.ndarray:
    r"""Right-hand sides: standard Gaussians in :math:`\mathbb R^n` kept when :math:`\|b\| \le \sqrt n`."""
    n, size, rng = check_int(n, "n", low=1), check_int(size, "size", low=1), as_rng(rng)
    out = np.zeros((0, n))
    while len(out) < size:
        z = rng.standard_normal((2 * size + 8, n))
        out = np.vstack([out, z[np.linalg.norm(z, axis=1) <= np.sqrt(n)]])
    return out[:size]
