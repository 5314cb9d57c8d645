r"""DIFF2 and DP-GD: differentially private distributed gradient methods, as plain client and server functions.

``P`` workers (clients) each hold ``m`` samples; the objective is the mean loss
:math:`f(x) = \frac1P\sum_p \frac1m\sum_i \ell(x; z_{p,i})`.  Both methods release, in every round,
a noisy mean of clipped per-sample vectors from every worker (the Gaussian mechanism):

* **DP-GD** releases clipped gradients, :math:`v_r = \frac1P\sum_p\big[\frac1m\sum_i
  \mathrm{clip}_{C}(\nabla\ell(x_{r-1}; z_{p,i})) + \xi_{p,r}\big]`, then :math:`x_r = x_{r-1} - \eta v_r`;
* **DIFF2** (Murata and Suzuki, 2023) releases clipped gradients only in *restart* rounds (every
  ``T`` rounds) and otherwise clipped gradient *differences* with the radius
  :math:`C_{2,r} = C_2\|x_{r-1} - x_{r-2}\|`, accumulated into the estimator
  :math:`v_r = v_{r-1} + \frac1P\sum_p\big[\frac1m\sum_i \mathrm{clip}_{C_{2,r}}(\nabla\ell(x_{r-1}; z_{p,i})
  - \nabla\ell(x_{r-2}; z_{p,i})) + \xi_{p,r}\big]`.

Noise :math:`\xi_{p,r} \sim N(0, s_r^2 I)` with :math:`s_r = \sigma_r \cdot 2C_r/m`: the **noise
multiplier** :math:`\sigma_r` times the *replace-one* sensitivity :math:`2C_r/m` of a mean of ``m``
vectors clipped at :math:`C_r` (two data sets are neighbours when one sample of one worker is
replaced).  Each release is then :math:`1/(2\sigma_r^2)`-zCDP, whatever :math:`C_r`; a sample lives on
one worker, so a round costs :math:`1/(2\sigma_r^2)` and rounds add up (:mod:`optlab.privacy`).

The client update and the server aggregation are plain functions with the contract of
:mod:`optlab.federated.core` (run by :func:`~optlab.federated.core.run_rounds` or, unchanged, by
:func:`~optlab.federated.flower.run_flower`): a client sees only the broadcast view ``x``, ``x_prev``
and ``restart`` and seeds its noise by ``(seed, round, client)``.

References
----------
T. Murata and T. Suzuki, DIFF2: Differential private optimization via gradient differences for
nonconvex distributed learning, ICML 2023, arXiv:2302.03884 (``murata2023diff2``).

Book: chapters/federated/diff2.ipynb
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from .. import privacy
from ..validate import check_array, check_callable, check_int, check_positive, check_real
from . import core

__all__ = ["clip", "diff_radius", "privatize", "accumulate", "dp_gd_client", "diff2_client",
           "dp_aggregate", "noise_multipliers", "rdp_curve", "spent_rho", "dp_gd", "diff2",
           "logistic_data", "logistic_sample_grads", "logistic_loss", "logistic_grad"]


# --- the mechanism -------------------------------------------------------------------------------

def clip(g, radius):
    r"""Each row (last axis) of ``g`` scaled to norm at most ``radius`` (an array broadcast over rows)."""
    norms = np.linalg.norm(g, axis=-1, keepdims=True)
    r = np.asarray(radius, dtype=float)[..., None]
    return g * np.minimum(1.0, r / np.maximum(norms, 1e-300))


def diff_radius(clip2, x, x_prev):
    r"""DIFF2's clipping radius of a difference round, :math:`C_{2,r} = C_2\|x_{r-1} - x_{r-2}\|` per client."""
    return clip2 * np.linalg.norm(x - x_prev, axis=-1)


def privatize(g, radius, sigma, ids, rnd, seed):
    r"""The released mean of clipped rows: :math:`\frac1m\sum_i \mathrm{clip}_C(g_i) + N(0, (2\sigma C/m)^2 I)`.

    ``g`` is ``(k, m, d)`` (k clients, m samples each), ``radius`` ``(k,)``; client ``ids[j]``
    draws its noise from ``client_rng(seed, rnd, ids[j])``.  Returns the ``(k, d)`` releases.
    """
    k, m, d = g.shape
    norms = np.maximum(np.sqrt(np.einsum("kmd,kmd->km", g, g)), 1e-300)
    scale = np.minimum(1.0, radius[:, None] / norms)          # clip factors (k, m)
    clipped_mean = np.matmul(scale[:, None, :], g)[:, 0] / m  # mean of clip_C(g_i)
    rngs = [core.client_rng(seed, rnd, int(i)) for i in ids]  # (seed, round, client)
    noise = np.stack([r.standard_normal(d) for r in rngs])
    return clipped_mean + (2.0 * sigma * radius / m)[:, None] * noise


def accumulate(v, message, restart):
    r"""DIFF2's estimator: :math:`v_r = \bar d_r` after a restart, else :math:`v_r = v_{r-1} + \bar d_r`."""
    return message if restart else v + message


# --- the plain client and server functions ---------------------------------------------------------

def dp_gd_client(view, data, ids, rnd, seed, *, sample_grads, clip_radius, sigma):
    """DP-GD's client: the noisy mean of its clipped per-sample gradients at the broadcast ``x``."""
    x = np.broadcast_to(view["x"], (len(ids), view["x"].size))
    g = sample_grads(x, data)                                           # (k, m, d)
    radius = np.full(len(ids), float(clip_radius))
    return {"d": privatize(g, radius, sigma, ids, rnd, seed)}, {"grad": g.shape[0] * g.shape[1]}


def diff2_client(view, data, ids, rnd, seed, *, sample_grads, clip1, clip2, sigma1,
                 sigma2):
    """DIFF2's client: clipped gradients in a restart round, clipped differences otherwise."""
    k = len(ids)
    x = np.broadcast_to(view["x"], (k, view["x"].size))            # x_{r-1}
    g = sample_grads(x, data)                                      # (k, m, d)
    if view["restart"][0] > 0:
        msg = privatize(g, np.full(k, float(clip1)), sigma1, ids, rnd, seed)
        return {"d": msg}, {"grad": g.shape[0] * g.shape[1]}
    x_prev = np.broadcast_to(view["x_prev"], x.shape)              # x_{r-2}
    radius = diff_radius(clip2, x, x_prev)                  # C_2 ||x_{r-1} - x_{r-2}||
    msg = privatize(g - sample_grads(x_prev, data), radius, sigma2, ids, rnd, seed)
    return {"d": msg}, {"grad": 2 * g.shape[0] * g.shape[1]}


def dp_aggregate(state, messages, weights, rnd, *, lr, restart_every):
    r"""The server: :math:`v_r` from the mean release, :math:`x_r = x_{r-1} - \eta v_r`, next restart flag.

    ``restart_every=1`` is DP-GD (every release is a gradient).
    """
    restart = bool(state["restart"][0] > 0)
    v = accumulate(state["v"], core.weighted_mean(messages["d"], weights), restart)
    nxt = np.array([float((rnd + 1) % restart_every == 0)])   # next round restarts?
    return {"x": state["x"] - lr * v, "x_prev": state["x"], "v": v, "restart": nxt}, {}


def client_view(state):
    """What the server broadcasts: both previous iterates and the restart flag (clients keep nothing)."""
    return {"x": state["x"], "x_prev": state["x_prev"], "restart": state["restart"]}


# --- privacy accounting ------------------------------------------------------------------------------

def noise_multipliers(epsilon, delta, n_rounds, restart_every, restart_share=0.5):
    r"""The noise multiplier :math:`\sigma_r` of every round for a total :math:`(\varepsilon, \delta)`.

    The zCDP budget :math:`\rho = \rho(\varepsilon, \delta)` (tight conversion,
    :func:`optlab.privacy.zcdp_rho`) is split: ``restart_share`` of it over the restart rounds
    (round 0 and every ``restart_every``-th), the rest over the difference rounds, equally within
    each kind: :math:`\sigma = \sqrt{n_\text{kind}/(2\rho_\text{kind})}`.  ``restart_every=1``
    (only restarts) is DP-GD: :math:`\sigma = \sqrt{R/(2\rho)}`.
    """
    R = check_int(n_rounds, "n_rounds", low=1)
    T = check_int(restart_every, "restart_every", low=1)
    share = check_real(restart_share, "restart_share", low=0.0, high=1.0, low_open=True)
    rho = privacy.zcdp_rho(epsilon, delta)
    restart = np.arange(R) % T == 0
    n1, n2 = int(restart.sum()), int((~restart).sum())
    share = 1.0 if n2 == 0 else share
    if share == 1.0 and n2 > 0:
        raise ValueError("restart_share must be < 1 when there are difference rounds")
    s1 = math.sqrt(n1 / (2.0 * share * rho))
    s2 = math.sqrt(n2 / (2.0 * (1.0 - share) * rho)) if n2 else np.inf
    return np.where(restart, s1, s2)


def rdp_curve(orders, sigmas):
    r"""The Rényi-DP curve :math:`\varepsilon(\alpha) = \sum_r \alpha/(2\sigma_r^2)` of the releases."""
    return np.asarray(orders, dtype=float) * spent_rho(sigmas)


def spent_rho(sigmas):
    r"""The zCDP :math:`\rho = \sum_r 1/(2\sigma_r^2)` of releases with noise multipliers ``sigmas``."""
    s = check_array(sigmas, "sigmas", ndim=1, finite=False)
    if np.any(~(s > 0)):
        raise ValueError("sigmas must be > 0 (inf: a round without release)")
    return privacy.compose([privacy.gaussian_zcdp(1.0, float(v)) if np.isfinite(v) else 0.0 for v in s])


# --- the methods -------------------------------------------------------------------------------------------

def _run(client, sample_grads, data, x0, f, grad, lr, restart_every, n_rounds, sigmas, rng, callback, name):
    check_callable(sample_grads, "sample_grads", signature="(x (k, d), data) -> (k, m, d)")
    check_callable(f, "f", optional=True, signature="x (d,) -> float")
    check_callable(grad, "grad", optional=True, signature="x (d,) -> (d,)")
    x0 = check_array(x0, "x0", ndim=1)
    path = []

    def log(state):  # logging only (not counted): keep the iterates and estimators
        path.append(state)
        return np.nan if f is None else f(state["x"])

    state0 = {"x": x0, "x_prev": x0, "v": np.zeros_like(x0), "restart": np.array([1.0])}
    agg = partial(dp_aggregate, lr=check_positive(lr, "lr"), restart_every=restart_every)
    res = core.run_rounds(client, agg, state0, data, n_rounds=n_rounds, client_view=client_view, f=log,
                          rng=rng, callback=callback, method=name)
    res.extras["sigmas"], res.extras["rho"] = sigmas, spent_rho(sigmas)
    if grad is not None:  # diagnostics: ||grad f(x_r)||^2 (r = 0..R) and ||v_r - grad f(x_{r-1})||
        gx = np.array([grad(s["x"]) for s in path])
        res.extras["grad_norm2"] = np.sum(gx ** 2, axis=1)
        v = np.array([s["v"] for s in path[1:]]).reshape(len(path) - 1, gx.shape[1])  # none if stopped at round 0
        res.extras["estimator_error"] = np.linalg.norm(v - gx[:-1], axis=1)
    return res


def dp_gd(sample_grads, data, x0, *, lr, clip_radius, epsilon, delta, n_rounds, f=None, grad=None,
          rng=None, callback=None):
    r"""DP-GD on ``P`` workers: clipped per-sample gradients, Gaussian noise, one release per round.

    Parameters
    ----------
    sample_grads : callable
        ``sample_grads(x, data) -> (k, m, d)``: per-sample gradients of ``k`` clients at their rows of ``x``.
    data : dict of ndarray
        The clients' samples, leading axis ``P`` (equal ``m`` per client).
    x0 : ndarray of shape (d,)
    lr, clip_radius : float
        Step :math:`\eta` and clipping radius :math:`C`.
    epsilon, delta : float
        The total privacy guarantee :math:`(\varepsilon, \delta)`, replace-one adjacency.
    n_rounds : int
    f, grad : callable or None
        The objective :math:`f` (logged as the history's ``f``) and its full gradient (for the
        diagnostics), both for evaluation only: not private, not counted.
    rng, callback
        As in :func:`optlab.federated.core.run_rounds`.

    Returns
    -------
    Result
        ``x`` the final server state (``x``, ``x_prev``, ``v``, ``restart``); history of
        :func:`~optlab.federated.core.run_rounds`; extras ``sigmas`` (noise multiplier per round),
        ``rho``, ``ledger``, ``seed`` and, with ``grad``, ``grad_norm2`` (rounds 0..R) and
        ``estimator_error`` :math:`\|v_r - \nabla f(x_{r-1})\|` (rounds 1..R).

    Notes
    -----
    :math:`x_r = x_{r-1} - \eta\,\frac1P\sum_p[\frac1m\sum_i\mathrm{clip}_C(\nabla\ell(x_{r-1};z_{p,i}))
    + N(0, (2\sigma C/m)^2 I)]` with :math:`\sigma = \sqrt{R/(2\rho)}`.  Cost: ``m`` per-sample
    gradients per worker and round; ``d`` numbers up and down.  Utility
    :math:`\tilde O(\sqrt d/(n\varepsilon))` for :math:`\|\nabla f\|^2` (smooth nonconvex ``f``).

    Examples
    --------
    >>> data, oracles = logistic_data(n_clients=2, n_per_client=100, dim=3, rng=0)
    >>> res = dp_gd(oracles["sample_grads"], data, np.zeros(3), lr=1.0, clip_radius=1.0, epsilon=1.0,
    ...             delta=1e-5, n_rounds=5, rng=0)
    >>> round(privacy.zcdp_epsilon(res.rho, 1e-5), 6), res.ledger.rounds
    (1.0, 5)
    """
    sigmas = noise_multipliers(epsilon, delta, n_rounds, 1)
    client = partial(dp_gd_client, sample_grads=sample_grads, clip_radius=check_positive(clip_radius, "clip_radius"),
                     sigma=float(sigmas[0]))
    return _run(client, sample_grads, data, x0, f, grad, lr, 1, n_rounds, sigmas, rng, callback, "dp_gd")


def diff2(sample_grads, data, x0, *, lr, clip1, clip2, epsilon, delta, n_rounds, restart_every,
          restart_share=0.5, f=None, grad=None, rng=None, callback=None):
    r"""DIFF2 with the gradient-descent subroutine: private gradient differences, periodic restarts.

    Parameters
    ----------
    sample_grads, data, x0, lr, epsilon, delta, n_rounds, f, grad, rng, callback
        As in :func:`dp_gd`.
    clip1 : float
        Clipping radius :math:`C_1` of the restart rounds (gradients).
    clip2 : float
        :math:`C_2`: the difference rounds clip at :math:`C_2\|x_{r-1} - x_{r-2}\|`; with
        :math:`C_2 \ge` the per-sample smoothness nothing is clipped.
    restart_every : int
        :math:`T`: rounds ``0, T, 2T, ...`` release gradients.
    restart_share : float in (0, 1)
        The share of the zCDP budget spent on the restarts (:func:`noise_multipliers`).

    Returns
    -------
    Result
        As in :func:`dp_gd`.

    Notes
    -----
    Restart: :math:`v_r = \frac1P\sum_p[\frac1m\sum_i\mathrm{clip}_{C_1}(\nabla\ell(x_{r-1}))
    + N(0, (2\sigma_1C_1/m)^2I)]`; otherwise :math:`v_r = v_{r-1} + \frac1P\sum_p[\frac1m\sum_i
    \mathrm{clip}_{C_{2,r}}(\nabla\ell(x_{r-1}) - \nabla\ell(x_{r-2})) + N(0, (2\sigma_2C_{2,r}/m)^2I)]`;
    :math:`x_r = x_{r-1} - \eta v_r`.  The radius depends on released quantities only (post-processing).
    Cost: ``2m`` per-sample gradients per worker in a difference round, ``d`` numbers up,
    ``2d + 1`` down.  Utility :math:`\tilde O(d^{2/3}/(n\varepsilon)^{4/3})` (the paper, with
    :math:`T` chosen as there).  Differences from the paper: the noise multipliers are stated
    against the replace-one sensitivity :math:`2C/m` and the budget is split by ``restart_share``.

    Examples
    --------
    >>> data, oracles = logistic_data(n_clients=2, n_per_client=100, dim=3, rng=0)
    >>> res = diff2(oracles["sample_grads"], data, np.zeros(3), lr=1.0, clip1=1.0, clip2=0.45, epsilon=1.0,
    ...             delta=1e-5, n_rounds=6, restart_every=3, rng=0)
    >>> round(privacy.zcdp_epsilon(res.rho, 1e-5), 6), res.n_evals, res.sigmas.round(2).tolist()
    (1.0, {'grad': 2000}, [8.09, 11.44, 11.44, 8.09, 11.44, 11.44])
    """
    sigmas = noise_multipliers(epsilon, delta, n_rounds, restart_every, restart_share)
    T = int(restart_every)
    client = partial(diff2_client, sample_grads=sample_grads, clip1=check_positive(clip1, "clip1"),
                     clip2=check_positive(clip2, "clip2"), sigma1=float(sigmas[0]),
                     sigma2=float(sigmas[1]) if n_rounds > 1 and T > 1 else np.inf)
    return _run(client, sample_grads, data, x0, f, grad, lr, T, n_rounds, sigmas, rng, callback, "diff2")


# --- the chapter's problem: logistic regression with a nonconvex penalty ----------------------------------

def logistic_sample_grads(x, data, lam=0.1):
    r"""Per-sample gradients of :math:`\ell(x; a, y) = \log(1 + e^{-y a^\top x}) + \lambda\sum_j x_j^2/(1 + x_j^2)`."""
    A, y = data["A"], data["y"]                                          # (k, m, d), (k, m)
    s = -y / (1.0 + np.exp(y * np.matmul(A, x[:, :, None])[..., 0]))
    g = s[..., None] * A
    g += (2.0 * lam * x / (1.0 + x ** 2) ** 2)[:, None, :]                    # the penalty, same for all samples
    return g


def logistic_loss(x, data, lam=0.1):
    """The global objective f(x): the mean loss over all samples of all clients."""
    z = data["y"] * (data["A"] @ x)
    return float(np.mean(np.logaddexp(0.0, -z)) + lam * np.sum(x ** 2 / (1.0 + x ** 2)))


def logistic_grad(x, data, lam=0.1):
    """The full gradient of :func:`logistic_loss`."""
    A, y = data["A"].reshape(-1, x.size), data["y"].ravel()
    s = -y / (1.0 + np.exp(y * (A @ x)))
    return A.T @ s / len(y) + 2.0 * lam * x / (1.0 + x ** 2) ** 2


def logistic_data(n_clients=4, n_per_client=5000, dim=20, lam=0.1, rng=None):
    r"""Synthetic data: rows :math:`a` uniform on the unit sphere, labels from a logistic model.

    Returns ``(data, oracles)``: ``data = {"A": (P, m, d), "y": (P, m)}``; ``oracles`` has
    ``sample_grads``, ``f``, ``grad`` and ``L`` (per-sample smoothness bound :math:`1/4 + 2\lambda`).
    """
    P, m = check_int(n_clients, "n_clients", low=1), check_int(n_per_client, "n_per_client", low=1)
    d, lam = check_int(dim, "dim", low=1), check_real(lam, "lam", low=0.0)
    gen = np.random.default_rng(np.random.SeedSequence(core.as_seed(rng)))
    A = gen.standard_normal((P, m, d))
    A /= np.linalg.norm(A, axis=-1, keepdims=True)
    w = 3.0 * gen.standard_normal(d) / math.sqrt(d)
    y = np.where(gen.random((P, m)) < 1.0 / (1.0 + np.exp(-A @ w)), 1.0, -1.0)
    data = {"A": A, "y": y}
    return data, {"sample_grads": partial(logistic_sample_grads, lam=lam), "f": partial(logistic_loss, data=data,
                  lam=lam), "grad": partial(logistic_grad, data=data, lam=lam), "L": 0.25 + 2.0 * lam}
