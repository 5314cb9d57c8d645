r"""Federated zeroth-order optimization: FedZO and FZooS (trajectory-informed surrogate gradients).

``N`` clients minimize :math:`F = \sum_i w_i f_i` but client ``i`` can only *query* :math:`f_i`.
FedZO (:func:`fedzo`) takes local Adam steps on random-direction forward differences; FZooS
(:func:`fzoos`) on trajectory-informed random-feature surrogate gradients with an adaptive correction
towards a shared global surrogate.  Both run in one round loop, :func:`federated_zo`; client updates
are plain functions, vectorized over clients, seeded by ``client_rng(seed, round, client)``.

References
----------
Y. Shu, X. Lin, Z. Dai and B. K. H. Low, Federated zeroth-order optimization using trajectory-informed
surrogate gradients, ICLR 2024, arXiv 2308.04077 (``shu2024federated``); FedZO: W. Fang et al.,
arXiv 2201.09531 (``fang2022communication``); random features: A. Rahimi and B. Recht, NeurIPS 2007.

Book: chapters/federated/fzoos.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Trace
from ..validate import check_array, check_bool, check_callable, check_int, check_real
from .core import Ledger, as_seed, client_rng, weighted_mean
from .objectives import Clients, quadratic_clients  # noqa: F401 (the doctests' problem)

__all__ = ["rff_features", "rff_map", "rff_grad", "fit_surrogate", "rgf", "rgf_cosines", "cosine", "fzoos_client",
           "fedzo_client", "server_step", "federated_zo", "fzoos", "fedzo"]


# --------------------------------------------------------------------------- gradient estimates

def rff_features(seed: int, n_features: int, dim: int, lengthscale: float):
    r"""Shared random Fourier features of the RBF kernel: ``W ~ N(0, I / l^2)`` (rows), ``b ~ U(0, 2 pi)``.

    :math:`\phi(x) = \sqrt{2/M}\cos(Wx + b)` has :math:`\phi(x)^\top\phi(x') \approx e^{-|x - x'|^2 / (2 l^2)}`.
    Every client draws the same ``(W, b)`` from ``seed``.
    """
    gen = np.random.default_rng(np.random.SeedSequence([as_seed(seed)], spawn_key=(2,)))
    M, d = check_int(n_features, "n_features", low=1), check_int(dim, "dim", low=1)
    return gen.standard_normal((M, d)) / check_real(lengthscale, "lengthscale", low=0.0, low_open=True), \
        gen.uniform(0.0, 2 * np.pi, M)


def rff_map(X, features):
    r"""The features :math:`\phi(x) = \sqrt{2/M}\cos(Wx + b)` of points ``X (..., d)``: ``(..., M)``."""
    W, b = features
    return np.sqrt(2.0 / len(b)) * np.cos(X @ W.T + b)


def rff_grad(nu, X, features):
    r"""The surrogate gradient :math:`-\sqrt{2/M}\,W^\top(\sin(Wx + b)\odot\nu)` at ``X (k, m, d)``, ``nu (k, M)``."""
    W, b = features
    return -np.sqrt(2.0 / len(b)) * (np.sin(X @ W.T + b) * nu[:, None]) @ W


def fit_surrogate(hist, x, *, n_near=150, ridge=1e-6):
    r"""RFF ridge regression on the ``n_near`` stored queries nearest ``x``, per client: weights ``nu (k, M)``.

    ``hist`` holds the queries ``X (k, H, d)``, values ``y (k, H)`` and features ``Phi (k, H, M)``.
    Values are centred and divided by their range; the weights are scaled back, so :func:`rff_grad`
    gives the surrogate gradient in the units of ``f``.  Dual solve:
    :math:`\nu = \Phi^\top(\Phi\Phi^\top + \lambda I)^{-1}\tilde y`.
    """
    dist = np.sum((hist["X"] - x[:, None]) ** 2, -1)
    near = np.argsort(dist, axis=1, kind="stable")[:, :n_near]   # the nearest queries
    Phi = np.take_along_axis(hist["Phi"], near[..., None], 1)
    y = np.take_along_axis(hist["y"], near, 1)
    scale = np.maximum(np.ptp(y, axis=1, keepdims=True), 1e-12)
    K = Phi @ Phi.transpose(0, 2, 1) + ridge * np.eye(Phi.shape[1])
    alpha = np.linalg.solve(K, ((y - y.mean(1, keepdims=True)) / scale)[..., None])
    return scale * (Phi.transpose(0, 2, 1) @ alpha)[..., 0]


def rgf(f, data, X, U, mu):
    r"""FedZO's forward differences along orthonormal ``U (k, m, q, d)``.

    :math:`\hat g = \frac dq\sum_j \frac{f(x + \mu u_j) - f(x)}{\mu}u_j`.  Returns the estimates
    ``(k, m, d)`` and the queries spent, ``k m (q + 1)``.
    """
    k, m, q, d = U.shape
    f0 = f(data, X)
    f1 = f(data, (X[:, :, None] + mu * U).reshape(k, m * q, d)).reshape(k, m, q)
    g = d / q * np.einsum("kmq,kmqd->kmd", (f1 - f0[..., None]) / mu, U)
    return g, k * m * (q + 1)


def _directions(gen, shape, q):
    Q, R = np.linalg.qr(gen.standard_normal(shape + (q,)))
    return np.swapaxes(Q * np.sign(np.diagonal(R, axis1=-2, axis2=-1))[..., None, :], -1, -2)


def cosine(a, b):
    """Cosine similarity along the last axis."""
    return np.sum(a * b, -1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-300)


def _adam(x, g, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
    return x - lr * (m / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + eps), m, v


# --------------------------------------------------------------------------- clients and the round loop

def fzoos_client(view, data, hist, ids, rnd, seed, *, f, lr, local_steps,
                 n_explore, radius, features, n_near, ridge, correction=True):
    r"""FZooS's client update (all clients ``ids`` at once): corrected surrogate steps, then its weights.

    Returns ``(messages, hist, n_queries, info)``: messages ``{"x": (k, d), "nu": (k, M)}``, the
    grown query histories, the queries made, and the local iterates, directions and surrogate
    gradients (diagnostics, not sent).
    """
    k, d = len(ids), view["x"].size
    shape = (local_steps, n_explore, d)
    box = np.stack([client_rng(seed, rnd, i).uniform(-radius, radius, shape)
                    for i in ids])                        # client i's own randomness
    x = np.tile(view["x"], (k, 1))                        # every client starts at x_r
    nu_global = np.tile(view["nu"], (k, 1))
    m = v = np.zeros_like(x)                              # Adam restarts every round
    info = {"x": [], "dir": [], "surr": []}
    for t in range(local_steps):
        nu = fit_surrogate(hist, x, n_near=n_near, ridge=ridge)
        g_loc = rff_grad(nu, x[:, None], features)[:, 0]           # grad f_i-hat(x)
        g_glob = rff_grad(nu_global, x[:, None], features)[:, 0]   # grad F-hat(x)
        gamma = 1.0 / (t + 1) if correction else 0.0
        g = g_loc + gamma * (g_glob - g_loc)
        for key, val in zip(info, (x, g, g_loc)):
            info[key].append(val)
        x, m, v = _adam(x, g, m, v, t, lr)
        # query the new iterate and n_explore points in a box around it
        Q = x[:, None] + np.concatenate([np.zeros((k, 1, d)), box[:, t]], 1)
        new = {"X": Q, "y": f(data, Q), "Phi": rff_map(Q, features)}
        hist = {key: np.concatenate([hist[key], new[key]], 1) for key in hist}
    nu = fit_surrogate(hist, x, n_near=n_near, ridge=ridge)
    info = {key: np.stack(val, 1) for key, val in info.items()}
    return {"x": x, "nu": nu}, hist, k * local_steps * (1 + n_explore), info


def fedzo_client(view, data, hist, ids, rnd, seed, *, f, lr, local_steps, n_dirs, mu):
    """FedZO's client update: ``local_steps`` Adam steps on :func:`rgf` estimates (``n_dirs + 1`` queries each)."""
    k, d = len(ids), view["x"].size
    U = np.stack([_directions(client_rng(seed, rnd, i), (local_steps, d), n_dirs)
                  for i in ids])
    x, info = np.tile(view["x"], (k, 1)), {"x": [], "dir": []}
    m = v = np.zeros_like(x)
    for t in range(local_steps):
        g = rgf(f, data, x[:, None], U[:, t][:, None], mu)[0][:, 0]
        info["x"].append(x), info["dir"].append(g)
        x, m, v = _adam(x, g, m, v, t, lr)
    info = {key: np.stack(val, 1) for key, val in info.items()}
    return {"x": x}, hist, k * local_steps * (n_dirs + 1), {**info, "surr": info["dir"]}


def server_step(clients: Clients, x, f_x: float, x_local):
    """The official code's server: average the local iterates; keep the average only if ``F`` decreases.

    Testing costs one query per client (counted here, left out by the official code).  Returns
    ``(x, F(x), accepted, n_queries)``.
    """
    w, n = clients.weights, len(clients.weights)
    candidate = weighted_mean(x_local, w)
    values = clients.f(clients.data, np.broadcast_to(candidate, (n, 1, x.size)))[:, 0]
    f_cand = float(weighted_mean(values, w))      # each client queries f_i once
    if f_cand < f_x:
        return candidate, f_cand, True, n
    return x, f_x, False, n


def rgf_cosines(clients: Clients, X, *, n_dirs: int, mu: float = 0.01, rng=None):
    """Cosines of :func:`rgf` estimates with the true local gradients at the points ``X (N, ..., d)`` (diagnostics)."""
    X = np.asarray(X)
    N, d = len(X), X.shape[-1]
    Xf = X.reshape(N, -1, d)
    U = _directions(np.random.default_rng(as_seed(rng)), Xf.shape, check_int(n_dirs, "n_dirs", low=1, high=d - 1))
    return cosine(rgf(clients.f, clients.data, Xf, U, mu)[0], clients.grad(clients.data, Xf)).reshape(X.shape[:-1])


def federated_zo(client_update, clients: Clients, state0: dict, hist0, *, n_rounds: int,
                 seed: int, max_queries=None, spent=(0, 0), method="federated_zo",
                 params=None, callback=None):
    r"""The round loop of both methods: local updates, server average with accept/reject, counts, diagnostics.

    ``spent = (queries, numbers uploaded)`` of an initialization.  Returns a ``Result``: ``x`` the
    global iterate; history ``t`` (round), ``f`` (:math:`F(x)`), ``n_evals``, ``bytes_up``,
    ``bytes_down``, ``accepted`` and, when ``clients.grad`` exists, ``cos_global`` (median cosine of
    the local directions with :math:`\nabla F` at the local iterates) and ``cos_local`` (of the local
    estimates with :math:`\nabla f_i`); extras ``ledger``, ``nu``, and ``cos_global``, ``cos_local``
    ``(rounds, N, K)`` and the local iterates ``x_local`` ``(rounds, N, K, d)``.
    """
    check_callable(client_update, "client_update")
    T = check_int(n_rounds, "n_rounds", low=1)
    budget = np.inf if max_queries is None else check_int(max_queries, "max_queries",
                                                          low=1)
    data, w, d = clients.data, clients.weights, state0["x"].size
    n = len(w)
    tr, ledger = Trace(method, params or {}, callback), Ledger()
    state, hist = dict(state0), hist0
    tr.count("f", spent[0] + n)  # the initialization and F(x_0): one query per client
    f_x = clients.F(state["x"])
    ledger.numbers_up = spent[1] + n
    cos = {"cos_global": [], "cos_local": [], "x_local": []}
    stop = tr.log(0, f=f_x, bytes_up=ledger.bytes_up, bytes_down=0, accepted=np.nan)
    for rnd in range(1, 0 if stop else T + 1):
        ids = np.arange(n)  # full participation, in increasing client id
        msgs, hist, n_queries, info = client_update(state, data, hist, ids, rnd, seed)
        # up: messages and one value per client; down: the state, then the candidate
        ledger.record(up=sum(v.size for v in msgs.values()) + n,
                      down=n * (sum(v.size for v in state.values()) + d))
        state["x"], f_x, accepted, n_server = server_step(clients, state["x"], f_x,
                                                          msgs["x"])
        tr.count("f", n_queries + n_server)
        if "nu" in msgs:
            state["nu"] = weighted_mean(msgs["nu"], w)    # the global surrogate
        row = {}
        if clients.grad is not None:  # diagnostics with the true gradients, not counted
            cos["x_local"].append(info["x"])
            cos["cos_global"].append(cosine(info["dir"], clients.gradF(info["x"])))
            cos["cos_local"].append(cosine(info["surr"], clients.grad(data, info["x"])))
            row = {key: float(np.median(cos[key][-1]))
                   for key in ("cos_global", "cos_local")}
        if tr.diverged(state["x"], rnd) or tr.log(
                rnd, f=f_x, bytes_up=ledger.bytes_up, bytes_down=ledger.bytes_down,
                accepted=float(accepted), **row):
            break
        if tr.total_evals >= budget:
            tr.message = f"reached max_queries={budget}"
            break
    extras = {key: np.array(val) for key, val in cos.items() if val}
    return tr.result(state["x"], f_x, n_iters=ledger.rounds, ledger=ledger,
                     nu=state.get("nu"), **extras)


def _common(clients, lr, local_steps, n_rounds, rng):
    if not isinstance(clients, Clients):
        raise TypeError(f"clients must be a Clients object (e.g. quadratic_clients()), got {type(clients).__name__}")
    return (check_real(lr, "lr", low=0.0, low_open=True), check_int(local_steps, "local_steps", low=1),
            check_int(n_rounds, "n_rounds", low=1), as_seed(rng))


def fzoos(clients: Clients, x0=None, *, n_rounds=20, local_steps=10, lr=0.01, n_explore=5, radius=0.01,
          n_init=10, n_features=300, lengthscale=0.3, n_near=150, ridge=1e-6, correction=True,
          max_queries=None, rng=None, callback=None):
    r"""FZooS: local Adam steps on corrected trajectory-informed RFF surrogate gradients.

    Each client keeps all its queries, fits a random-feature surrogate to the ones nearest its
    iterate and follows its gradient, corrected towards the global surrogate whose weights the
    server averages; the surrogate makes few queries per step as good as many.

    Parameters
    ----------
    clients : Clients
        The client objectives (:mod:`optlab.federated.objectives`).
    x0 : array of shape (d,) or None
        The start (default ``clients.x0``); not mutated.
    n_rounds, local_steps : int
        Rounds ``R`` and local Adam steps ``K`` per round (Adam restarts every round).
    lr : float
        Adam's step.
    n_explore, radius : int, float
        Per local step a client queries its new iterate and ``n_explore`` points uniform in a box
        of half-width ``radius`` around it.
    n_init : int
        Initial queries per client, uniform in a box of half-width ``10 radius`` around ``x0``.
    n_features, lengthscale, n_near, ridge
        The surrogate: ``M`` shared random Fourier features of lengthscale ``l``, ridge regression
        on the ``n_near`` stored queries nearest the iterate with ridge ``lambda``.
    correction : bool
        Use the adaptive correction (``False``: ``gamma_t = 0``).
    max_queries : int or None
        Stop after the round in which the counted queries reach this budget.
    rng, callback
        Seed (int, Generator or None) and ``callback(record) -> bool``.

    Returns
    -------
    Result
        See :func:`federated_zo` (history ``t``, ``f``, ``n_evals``, ``bytes_up``, ``bytes_down``,
        ``accepted``, ``cos_global``, ``cos_local``); extras ``ledger``, ``nu`` (the global
        surrogate's weights), ``cos_global``, ``cos_local``, ``x_local``.

    Notes
    -----
    Local direction :math:`g_{i,t} = \nabla\hat f_i + \gamma_t(\nabla\hat F - \nabla\hat f_i)`,
    :math:`\gamma_t = 1/(t+1)`, :math:`\hat f_i = \phi^\top\nu_i`, :math:`\hat F = \phi^\top\sum_i w_i\nu_i`.
    Cost per local step and client: ``1 + n_explore`` queries, one ``n_near``-square solve and
    :math:`O(n_{near}^2 M)` flops; per round ``N`` more queries for the server's accept/reject test
    and ``d + M`` numbers each way per client.  No guarantee is checked here (the paper's theorems
    could not be verified).  Differences from the paper's code: RFF regression instead of a Matern
    GP for the local surrogate, uniform instead of variance-based exploration, no server-side
    exploration, the current local surrogate in the correction, analytic surrogate gradients.

    References
    ----------
    Shu, Lin, Dai and Low (2024), arXiv 2308.04077, ``shu2024federated``.

    Book: chapters/federated/fzoos.ipynb

    Examples
    --------
    >>> res = fzoos(quadratic_clients(3, 4, rng=0), n_rounds=3, local_steps=3, n_features=50, rng=0)
    >>> res.n_evals["f"], bool(res.f < res.history["f"][0])
    (204, True)
    """
    lr, K, T, seed = _common(clients, lr, local_steps, n_rounds, rng)
    x0 = check_array(clients.x0 if x0 is None else x0, "x0", shape=(clients.x0.size,))
    d, n = x0.size, len(clients.weights)
    E, r = check_int(n_explore, "n_explore", low=0), check_real(radius, "radius", low=0.0, low_open=True)
    n0, correction = check_int(n_init, "n_init", low=1), check_bool(correction, "correction")
    features = rff_features(seed, n_features, d, lengthscale)
    near, ridge = check_int(n_near, "n_near", low=1), check_real(ridge, "ridge", low=0.0, low_open=True)
    X0 = x0 + np.stack([client_rng(seed, 0, i).uniform(-10 * r, 10 * r, (n0, d)) for i in range(n)])
    hist = {"X": X0, "y": clients.f(clients.data, X0), "Phi": rff_map(X0, features)}
    nu = fit_surrogate(hist, np.tile(x0, (n, 1)), n_near=near, ridge=ridge)

    def update(view, data, hist, ids, rnd, seed):
        return fzoos_client(view, data, hist, ids, rnd, seed, f=clients.f, lr=lr, local_steps=K, n_explore=E,
                            radius=r, features=features, n_near=near, ridge=ridge, correction=correction)

    params = dict(lr=lr, local_steps=K, n_explore=E, radius=r, n_init=n0, n_features=len(nu[0]), correction=correction)
    return federated_zo(update, clients, {"x": x0, "nu": weighted_mean(nu, clients.weights)}, hist, n_rounds=T,
                        seed=seed, max_queries=max_queries, spent=(n * n0, nu.size), method="fzoos",
                        params=params, callback=callback)


def fedzo(clients: Clients, x0=None, *, n_rounds=20, local_steps=10, lr=0.01, n_dirs=5, mu=0.01,
          max_queries=None, rng=None, callback=None):
    r"""FedZO: local Adam steps on forward differences along ``n_dirs < d`` orthonormal directions.

    Parameters as in :func:`fzoos`; ``n_dirs`` directions (``n_dirs + 1`` queries per local step)
    and the difference step ``mu``.  Returns the :func:`federated_zo` result.  Notes: the estimate
    :math:`\frac dq U^\top U\nabla f_i + O(\mu)` has :math:`E\cos^2 = q/d` with the gradient.
    Fang et al. (2022), arXiv 2201.09531, ``fang2022communication``.

    Book: chapters/federated/fzoos.ipynb

    >>> res = fedzo(quadratic_clients(3, 4, rng=0), n_rounds=3, local_steps=3, n_dirs=2, rng=0)
    >>> res.n_evals["f"], res.ledger.rounds
    (93, 3)
    """
    lr, K, T, seed = _common(clients, lr, local_steps, n_rounds, rng)
    x0 = check_array(clients.x0 if x0 is None else x0, "x0", shape=(clients.x0.size,))
    q = check_int(n_dirs, "n_dirs", low=1, high=x0.size - 1)
    mu = check_real(mu, "mu", low=0.0, low_open=True)

    def update(view, data, hist, ids, rnd, seed):
        return fedzo_client(view, data, hist, ids, rnd, seed, f=clients.f, lr=lr, local_steps=K, n_dirs=q, mu=mu)

    return federated_zo(update, clients, {"x": x0}, None, n_rounds=T, seed=seed, max_queries=max_queries,
                        method="fedzo", params=dict(lr=lr, local_steps=K, n_dirs=q, mu=mu), callback=callback)
