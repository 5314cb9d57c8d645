r"""Few-shot meta-learning as hierarchical Bayes: a Normal-Inverse-Wishart prior learned by SGD (NIW-Meta).

Each task (episode) :math:`i` has its own weights :math:`\theta_i \sim N(\mu, \Sigma)` of a model
linear in fixed features, :math:`y = \phi(x)^\top\theta_i + \varepsilon`, :math:`\varepsilon\sim N(0, s^2)`;
the global :math:`(\mu, \Sigma)` has the variational posterior :math:`q = NIW(m_0, l_0, \Lambda, \nu)`.
Under :math:`q` the prior of :math:`\theta_i` acts through :math:`E[\Sigma^{-1}] = P = \nu\Lambda^{-1}`,
so the local posterior is one closed-form update (:func:`local_posterior`, the *one-time episodic
update*), and the ELBO's gradient in the NIW parameters needs no differentiation through it
(:func:`elbo_and_grad`: the envelope theorem).  :func:`niw_meta` runs Adam on the ELBO over freshly
sampled episodes; :func:`em_prior` is batch EM on stored tasks (the oracle check, and the isotropic
ablations); :func:`evaluate` adapts to test tasks and scores error and interval coverage.  The data
and the MAML baseline are in :mod:`optlab.bilevel.sineline`.

In the part's vocabulary: the upper variable is the NIW parameters, the lower problem the per-task
adaptation :math:`q_i^* = \arg\max_{q_i}\mathrm{ELBO}_i`, and the upper objective is the same ELBO
(a min-min problem), so the implicit hypergradient's correction term vanishes.

References
----------
M. Kim and T. Hospedales, A hierarchical Bayesian model for deep few-shot meta learning,
arXiv:2306.09702 (``kim2023hierarchical``).

Book: chapters/bilevel/meta_learning.ipynb
"""
from __future__ import annotations

import numpy as np
from scipy.special import multigammaln, polygamma

from ..baselines import adam_step
from ..core import Trace, as_rng, as_schedule, step_at
from ..validate import (
    check_array,
    check_callable,
    check_choice,
    check_int,
    check_positive,
    check_real,
)

__all__ = ["local_posterior", "predict", "evaluate", "init_niw", "pack", "unpack", "niw_kl", "expected_cov",
           "second_moment", "elbo_and_grad", "niw_meta", "em_prior"]


def _local(Phi, y, mean, cov, s2):
    """Local posteriors in k x k form: m, B = Phi cov, W = K^-1 B, log|V_i|, tr(Phi V Phi')."""
    B = Phi @ cov                                           # (n, k, D)
    G = B @ np.swapaxes(Phi, 1, 2)                          # Phi cov Phi', (n, k, k)
    Ki = np.linalg.inv(G + s2 * np.eye(Phi.shape[1]))       # K_i^{-1}
    W = Ki @ B
    m = mean + np.einsum("nkd,nk->nd", W, y - Phi @ mean)
    # determinant lemma: log|V_i| = log|cov| + log|K_i^{-1}| + k log s^2
    logdet = (np.linalg.slogdet(cov)[1] + np.linalg.slogdet(Ki)[1]
              + Phi.shape[1] * np.log(s2))
    tr_fvf = np.trace(G, axis1=1, axis2=2) - np.sum((G @ Ki) * G, axis=(1, 2))
    return m, B, W, logdet, tr_fvf


def local_posterior(Phi, y, mean, cov, noise: float):
    r"""The one-time episodic update: :math:`V_i = (A_i + P)^{-1}`, :math:`m_i = V_i(b_i + P m_0)`.

    :math:`A_i = \Phi_i^\top\Phi_i/s^2`, :math:`b_i = \Phi_i^\top y_i/s^2` (exact for the linear model) and the
    prior precision :math:`P` = ``inv(cov)``.  Computed in the equivalent k x k form (Woodbury):
    :math:`K_i = s^2 I + \Phi_i C\Phi_i^\top`, :math:`m_i = m_0 + C\Phi_i^\top K_i^{-1}(y_i - \Phi_i m_0)`,
    :math:`V_i = C - C\Phi_i^\top K_i^{-1}\Phi_i C` with C = ``cov``: no D x D inverse.
    Vectorized over tasks: ``Phi`` (n, k, D), ``y`` (n, k), ``mean`` (D,), ``cov`` (D, D).
    Returns ``(m, V)`` of shapes (n, D) and (n, D, D).

    >>> m, V = local_posterior(np.ones((1, 1, 1)), np.array([[2.0]]), np.zeros(1), np.eye(1), 1.0)
    >>> float(m[0, 0]), float(V[0, 0, 0])
    (1.0, 0.5)
    """
    Phi, y = check_array(Phi, "Phi", ndim=3), check_array(y, "y", ndim=2)
    if y.shape != Phi.shape[:2]:
        raise ValueError(f"y must have shape {Phi.shape[:2]} (tasks, points), got {y.shape}")
    D = Phi.shape[2]
    mean, cov = check_array(mean, "mean", shape=(D,)), check_array(cov, "cov", shape=(D, D))
    m, B, W, _, _ = _local(Phi, y, mean, cov, check_positive(noise, "noise") ** 2)
    V = cov - np.swapaxes(B, 1, 2) @ W
    return m, 0.5 * (V + np.swapaxes(V, 1, 2))


def predict(Phi, m, V, noise: float):
    r"""Predictive mean :math:`\phi^\top m_i` and variance :math:`\phi^\top V_i\phi + s^2`, per task and point."""
    Phi = check_array(Phi, "Phi", ndim=3)
    var = np.sum((Phi @ V) * Phi, axis=2) + check_positive(noise, "noise") ** 2
    return np.einsum("nkd,nd->nk", Phi, m), var


def evaluate(mean, cov, Phi_s, y_s, Phi_q, y_q, *, noise: float, level: float = 0.95) -> dict:
    r"""Adapt to each test task's support set with prior :math:`N(\mathrm{mean}, \mathrm{cov})`, score its query set.

    Returns ``mse`` (squared error of the predictive mean on the noisy query targets), ``coverage``
    (share of query targets inside the central ``level`` predictive interval) and ``nll`` (Gaussian
    negative log predictive density), each averaged over tasks and points.
    """
    from scipy.stats import norm

    level = check_real(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
    m, V = local_posterior(Phi_s, y_s, mean, cov, noise)
    mu, var = predict(Phi_q, m, V, noise)
    z = np.abs(check_array(y_q, "y_q", shape=mu.shape) - mu) / np.sqrt(var)
    return {"mse": float(np.mean((y_q - mu) ** 2)), "coverage": float(np.mean(z <= norm.ppf(0.5 + level / 2))),
            "nll": float(np.mean(0.5 * np.log(2 * np.pi * var) + 0.5 * z**2))}


# ------------------------------------------------------------------ the NIW variational posterior

def init_niw(D: int, var: float = 1.0) -> dict:
    r"""A start for :func:`niw_meta`: :math:`NIW(0, 1, (D+2)\,v I, D+2)`, so that :math:`\Lambda/\nu \approx v I`."""
    D, var = check_int(D, "D", low=1), check_positive(var, "var")
    return {"m0": np.zeros(D), "l0": 1.0, "Lam": (D + 2) * var * np.eye(D), "nu": D + 2.0}


def pack(L: dict) -> np.ndarray:
    r"""NIW parameters ``{m0, l0, Lam, nu}`` to the unconstrained vector :math:`[m_0, \log l_0,
    \log(\nu - D + 1), \mathrm{tril}(C)]` with :math:`\Lambda/\nu = CC^\top`, C's diagonal in logs.

    C is the Cholesky factor of the prior covariance :math:`\Lambda/\nu` that the local update uses, so
    that a growing :math:`\nu` does not force C to move."""
    D = len(L["m0"])
    C = np.linalg.cholesky(L["Lam"] / L["nu"])
    C[np.diag_indices(D)] = np.log(np.diag(C))
    return np.concatenate([L["m0"], [np.log(L["l0"]), np.log(L["nu"] - D + 1)], C[np.tril_indices(D)]])


def unpack(theta, D: int) -> dict:
    """The inverse of :func:`pack`; also returns the Cholesky factor ``C``."""
    C = np.zeros((D, D))
    C[np.tril_indices(D)] = theta[D + 2:]
    C[np.diag_indices(D)] = np.exp(np.diag(C))
    nu = D - 1 + np.exp(theta[D + 1])
    return {"m0": theta[:D], "l0": np.exp(theta[D]), "nu": nu, "Lam": nu * C @ C.T, "C": C}


def _psi_D(nu, D, k=0):
    """sum_j polygamma(k, (nu + 1 - j) / 2), j = 1..D (the multivariate digamma for k = 0)."""
    return np.sum(polygamma(k, (nu + 1 - np.arange(1, D + 1)) / 2))


def niw_kl(L: dict, L0: dict):
    r""":math:`KL(NIW(m_0, l_0, \Lambda, \nu) \,\|\, NIW(m_0', l_0', \Lambda', \nu'))` and its gradient.

    Returns ``(kl, grads)``, ``grads`` the partial derivatives in ``m0, l0, Lam, nu`` (for Lam the
    symmetric matrix gradient).
    """
    D, m0, l0, Lam, nu = len(L["m0"]), L["m0"], L["l0"], L["Lam"], L["nu"]
    d, Li = m0 - L0["m0"], np.linalg.inv(Lam)
    q = d @ Li @ d
    kl = (0.5 * (D * L0["l0"] / l0 - D + D * np.log(l0 / L0["l0"]) + L0["l0"] * nu * q)
          + 0.5 * (nu - L0["nu"]) * _psi_D(nu, D) - 0.5 * nu * D + 0.5 * nu * np.trace(L0["Lam"] @ Li)
          + 0.5 * L0["nu"] * (np.linalg.slogdet(Lam)[1] - np.linalg.slogdet(L0["Lam"])[1])
          + multigammaln(L0["nu"] / 2, D) - multigammaln(nu / 2, D))
    Lid = Li @ d
    grads = {"m0": L0["l0"] * nu * Lid, "l0": 0.5 * D * (1 / l0 - L0["l0"] / l0**2),
             "Lam": 0.5 * (L0["nu"] * Li - L0["l0"] * nu * np.outer(Lid, Lid) - nu * Li @ L0["Lam"] @ Li),
             "nu": (0.5 * L0["l0"] * q + 0.25 * (nu - L0["nu"]) * _psi_D(nu, D, 1) - 0.5 * D
                    + 0.5 * np.trace(L0["Lam"] @ Li))}
    return float(kl), grads


def expected_cov(L: dict) -> np.ndarray:
    r"""The prior covariance of the local update, :math:`E_q[\Sigma^{-1}]^{-1} = \Lambda/\nu`."""
    return L["Lam"] / L["nu"]


def second_moment(dm, V_sum):
    r""":math:`\bar S = \frac1n\sum_i [(m_i - m_0)(m_i - m_0)^\top + V_i]` from ``dm`` (n, D) and :math:`\sum_i V_i`."""
    return (dm.T @ dm + V_sum) / len(dm)


def elbo_and_grad(theta, Phi, y, *, noise: float, prior: dict, kl_weight: float):
    r"""The mean per-episode ELBO at the optimal local posteriors, minus ``kl_weight`` KL, and its gradient.

    The local posteriors maximize the ELBO in :math:`q_i`, so the gradient in the NIW parameters is
    the partial one at fixed :math:`(m_i, V_i)` (envelope theorem); it depends on the episodes only
    through :math:`\bar S` (:func:`second_moment`) and :math:`\bar m`.  ``theta`` is in the coordinates
    of :func:`pack`, and so is the gradient.  Returns ``(elbo, grad, m)``.
    """
    D, s2, n, k = Phi.shape[2], noise**2, Phi.shape[0], Phi.shape[1]
    L = unpack(theta, D)
    m0, l0, nu, Lam, C = L["m0"], L["l0"], L["nu"], L["Lam"], L["C"]
    Li = np.linalg.inv(Lam)
    P = nu * Li                                           # E[Sigma^{-1}] under q
    # the one-time episodic update, all episodes at once
    m, B, W, logdet_V, tr_fvf = _local(Phi, y, m0, expected_cov(L), s2)
    V_sum = n * expected_cov(L) - B.reshape(-1, D).T @ W.reshape(-1, D)
    S = second_moment(m - m0, V_sum)
    # E_q log p(D_i | theta), entropy of q_i, E_q log N(theta | mu, Sigma)
    r = y - np.einsum("nkd,nd->nk", Phi, m)
    ell = -0.5 * k * np.log(2 * np.pi * s2) - (np.sum(r**2, 1) + tr_fvf) / (2 * s2)
    ent = 0.5 * logdet_V + 0.5 * D * (1 + np.log(2 * np.pi))
    e_logdet = _psi_D(nu, D) + D * np.log(2) - np.linalg.slogdet(Lam)[1]
    prior_term = -0.5 * D * np.log(2 * np.pi) + 0.5 * e_logdet \
        - 0.5 * (np.sum(P * S) + D / l0)
    kl, gk = niw_kl(L, prior)
    elbo = np.mean(ell + ent) + prior_term - kl_weight * kl
    # partial derivatives at fixed q_i (envelope theorem)
    g_m0 = P @ (m - m0).mean(0) - kl_weight * gk["m0"]
    g_l0 = D / (2 * l0**2) - kl_weight * gk["l0"]
    g_Lam = 0.5 * (nu * Li @ S @ Li - Li) - kl_weight * gk["Lam"]
    g_nu = 0.25 * _psi_D(nu, D, 1) - 0.5 * np.trace(Li @ S) - kl_weight * gk["nu"]
    # chain rule to the coordinates of pack: log l0, log(nu - D + 1), C (Lam = nu C C')
    g_nu = g_nu + np.sum(g_Lam * (C @ C.T))
    g_C = np.tril(2 * nu * g_Lam @ C)
    g_C[np.diag_indices(D)] *= np.diag(C)
    grad = np.concatenate([g_m0, [g_l0 * l0, g_nu * (nu - D + 1)],
                           g_C[np.tril_indices(D)]])
    return float(elbo), grad, m


def niw_meta(sample_episodes, x0: dict, *, lr, n_iters: int, noise: float,
             kl_weight: float = 1e-4, prior=None, rng=None, callback=None):
    r"""NIW-Meta: Adam ascent on the episodic ELBO in the NIW parameters, one fresh batch of episodes per step.

    Parameters
    ----------
    sample_episodes : callable
        ``sample_episodes(rng) -> (Phi, y)``, a batch of episodes: features (n, k, D), targets (n, k).
    x0 : dict
        Initial NIW parameters ``{"m0": (D,), "l0": float, "Lam": (D, D) SPD, "nu": float > D - 1}``
        (:func:`init_niw`).
    lr : float or callable
        Adam step (number or schedule).
    n_iters : int
        Steps (batches of episodes).
    noise : float
        Observation noise sd :math:`s` (known).
    kl_weight : float
        Weight of :math:`KL(q \| p)` per episode: 1 / (number of episodes) in the ELBO over all episodes.
    prior : dict or None
        The NIW hyperprior :math:`p` (default :math:`NIW(0, 1, I, D + 2)`).
    rng, callback
        Randomness for the episodes; ``callback(record) -> bool`` stops the run when True.

    Returns
    -------
    Result
        ``x``: the NIW parameters (dict ``m0, l0, Lam, nu``); ``f``: minus the last batch's ELBO.
        Extras ``mean`` (:math:`m_0`) and ``cov`` (:math:`\Lambda/\nu = E[\Sigma^{-1}]^{-1}`), the prior that
        the local update uses.  History columns ``f`` (minus the ELBO per episode), ``nu``.
        ``n_evals["episodes"]`` counts the episodes drawn.

    Notes
    -----
    Step t: draw episodes, :math:`V_i = (A_i + \nu\Lambda^{-1})^{-1}`,
    :math:`m_i = V_i(b_i + \nu\Lambda^{-1} m_0)`, then an Adam step along the ELBO's gradient in
    :math:`(m_0, \log l_0, \log(\nu - D + 1), C)`.  Cost per step: :math:`O(n(k^3 + k D^2) + D^3)`
    for n episodes of k points (the local update in its k x k form).  No guarantee beyond that of
    Adam on a smooth nonconcave objective.  Differences from the paper: the paper's deep version
    replaces :math:`A_i, b_i` by a diagonal quadratic approximation around a few inner SGD steps; here
    the model is linear in fixed features, so the local posterior is exact and the noise sd is known.

    References
    ----------
    M. Kim and T. Hospedales, arXiv:2306.09702 (``kim2023hierarchical``).

    Book: chapters/bilevel/meta_learning.ipynb

    Examples
    --------
    >>> from optlab.bilevel.sineline import RandomFeatures, sineline_tasks
    >>> feats = RandomFeatures.make(10, rng=0)
    >>> def episodes(g):
    ...     t = sineline_tasks(16, 10, rng=g)
    ...     return feats(t["x"]), t["y"]
    >>> res = niw_meta(episodes, init_niw(11), lr=0.05, n_iters=50, noise=0.3, rng=0)
    >>> bool(res.history["f"][-1] < res.history["f"][0]), res.n_evals["episodes"]
    (True, 800)
    """
    check_callable(sample_episodes, "sample_episodes", signature="rng -> (Phi, y)")
    if not isinstance(x0, dict) or set(x0) != {"m0", "l0", "Lam", "nu"}:
        raise TypeError("x0 must be a dict with keys m0, l0, Lam, nu")
    D = len(check_array(x0["m0"], "x0['m0']", ndim=1))
    Lam0 = check_array(x0["Lam"], "x0['Lam']", shape=(D, D))
    if not np.allclose(Lam0, Lam0.T) or np.linalg.eigvalsh(Lam0).min() <= 0:
        raise ValueError("x0['Lam'] must be symmetric positive definite")
    check_positive(x0["l0"], "x0['l0']")
    check_real(x0["nu"], "x0['nu']", low=D - 1.0, low_open=True)
    schedule, n_iters = as_schedule(lr), check_int(n_iters, "n_iters", low=1)
    noise = check_positive(noise, "noise")
    kl_weight = check_real(kl_weight, "kl_weight", low=0.0)
    prior = init_niw(D) | {"Lam": np.eye(D)} if prior is None else prior
    gen = as_rng(rng)
    trace = Trace("niw_meta", {"lr": schedule, "n_iters": n_iters, "noise": noise,
                               "kl_weight": kl_weight}, callback)
    theta = pack({k: np.array(v, dtype=float) for k, v in x0.items()})
    state = {"m": np.zeros_like(theta), "v": np.zeros_like(theta), "k": 0}
    for t in range(n_iters):
        Phi, y = sample_episodes(gen)
        trace.count("episodes", len(y))
        elbo, g, _ = elbo_and_grad(theta, Phi, y, noise=noise, prior=prior,
                                   kl_weight=kl_weight)
        theta, state = adam_step(theta, -g, state, lr=step_at(schedule, t),
                                 beta1=0.9, beta2=0.999, eps=1e-8)     # ascent
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            L = unpack(theta, D)
            blocks = {"theta": theta, "Lam": L["Lam"], "l0": np.log(L["l0"]),
                      "nu": np.log(L["nu"] - D + 1)}
        if trace.diverged(blocks, t + 1):
            break
        if trace.log(t, f=-elbo, nu=L["nu"]):
            break
    L = unpack(theta, D)
    x = {k: L[k] for k in ("m0", "l0", "Lam", "nu")}
    f = -elbo if trace.message is None else None
    return trace.result(x, f, n_iters=t + 1, mean=L["m0"], cov=expected_cov(L))


def em_prior(Phi, y, *, noise: float, structure: str = "full", learn_mean: bool = True, n_iters: int = 50):
    r"""Batch EM for the Gaussian prior :math:`N(\mu, \Sigma)` of the task weights, on stored tasks.

    E-step: the local posteriors; M-step: :math:`\mu = \bar m` (or 0 if not ``learn_mean``),
    :math:`\Sigma = \bar S` (``"full"``) or :math:`\mathrm{tr}(\bar S)/D\cdot I` (``"isotropic"``).
    EM climbs the marginal likelihood of the stored tasks (type-II maximum likelihood).
    Returns ``(mean, cov)`` for :func:`local_posterior`.

    >>> from optlab.bilevel.sineline import RandomFeatures, sineline_tasks
    >>> feats, t = RandomFeatures.make(5, rng=0), sineline_tasks(50, 10, rng=1)
    >>> mean, cov = em_prior(feats(t["x"]), t["y"], noise=0.3, structure="isotropic", n_iters=5)
    >>> cov.shape, bool(np.allclose(cov, cov[0, 0] * np.eye(6)))
    ((6, 6), True)
    """
    Phi, y = check_array(Phi, "Phi", ndim=3), check_array(y, "y", ndim=2)
    if y.shape != Phi.shape[:2]:
        raise ValueError(f"y must have shape {Phi.shape[:2]} (tasks, points), got {y.shape}")
    check_choice(structure, "structure", ("full", "isotropic"))
    n_iters, D, noise = check_int(n_iters, "n_iters", low=1), Phi.shape[-1], check_positive(noise, "noise")
    mean, cov = np.zeros(D), np.eye(D)
    for _ in range(n_iters):
        m, B, W, _, _ = _local(Phi, y, mean, cov, noise**2)                 # E-step
        mean = m.mean(0) if learn_mean else np.zeros(D)
        cov = cov + ((m - mean).T @ (m - mean) - B.reshape(-1, D).T @ W.reshape(-1, D)) / len(m)
        cov = 0.5 * (cov + cov.T)
        cov = cov if structure == "full" else np.eye(D) * np.trace(cov) / D
    return mean, cov
