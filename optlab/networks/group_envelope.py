r"""The weighted group sparse envelope (WGSEF), its proximal map, and proximal SGD on a small net.

The sparse envelope function :math:`s_k` is the convex envelope of
:math:`\tfrac12\|z\|^2 + \delta_{\|z\|_0\le k}`, the squared k-support norm over two.
Applied to the (weighted) norms of user-defined groups of parameters (the incoming
weights of a neuron, a filter) it is the WGSEF.  :func:`wgsef_prox` computes its
proximal map exactly with one sort; :func:`prox_sgd` trains with it;
:func:`group_lasso_prox` is the baseline; :func:`digits_mlp` is the test network.

References
----------
Y. Refael, I. Arbel and W. Huleihel, arXiv:2212.12921 (``refael2022learning``).

Book: chapters/networks/group_envelope.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Trace, as_rng, as_schedule, check_oracle, step_at
from ..validate import check_array, check_callable, check_int, check_positive

__all__ = ["sef", "group_norms", "wgsef", "wgsef_prox", "group_lasso_prox", "prox_sgd",
           "cvxpy_wgsef_prox", "group_lasso_path", "at_count", "digits_mlp",
           "n_active"]


def _groups(groups, size):
    g = np.asarray(groups)
    if g.shape != (size,) or not np.issubdtype(g.dtype, np.integer) or g.min(initial=0) < -1:
        raise ValueError(f"groups must be an integer label per entry of x (shape ({size},)), "
                         "-1 for entries outside every group")
    return g, int(g.max(initial=-1)) + 1


def _weights(weights, n):
    if weights is None:
        return np.ones(n)
    w = check_array(weights, "weights", shape=(n,))
    if np.any(w <= 0):
        raise ValueError("weights must be > 0, one per group")
    return w


def group_norms(x, groups):
    r"""The Euclidean norm :math:`\|x_{G_i}\|` of every group (labels ``0..n-1``; -1: no group)."""
    x = check_array(x, "x", ndim=1)
    g, n = _groups(groups, x.size)
    inside = g >= 0
    return np.sqrt(np.bincount(g[inside], weights=x[inside] ** 2, minlength=n))


def sef(z, k: int) -> float:
    r"""The sparse envelope :math:`s_k(z) = \tfrac12\min_{\theta\in\Theta_k}\sum_i z_i^2/\theta_i`.

    :math:`\Theta_k = \{0\le\theta\le1, \sum_i\theta_i = k\}`.  In closed form, with
    :math:`|z|` sorted decreasingly and j the number of saturated entries
    (:math:`\theta_i = 1`), :math:`s_k = \tfrac12[\sum_{i<j} z_i^2 + (\sum_{i\ge j} z_i)^2/(k-j)]`.

    >>> sef([3.0, 1.0, 1.0], 1), sef([3.0, 1.0, 1.0], 3)
    (12.5, 5.5)
    """
    z = np.sort(np.abs(check_array(z, "z", ndim=1)))[::-1]
    k = check_int(k, "k", low=1)
    if np.count_nonzero(z) <= k:
        return 0.5 * float(z @ z)
    tail = np.cumsum(z[::-1])[::-1][:k]                 # tail[j] = sum_{i >= j} z_i
    j = np.arange(k)
    mu = tail / (k - j)                                 # the level of the unsaturated entries
    above = np.concatenate(([np.inf], z[:k - 1]))       # z_{j-1}, with z_{-1} = +inf
    ok = (above > mu) & (mu >= z[:k])
    j = int(np.argmax(ok))
    return 0.5 * float(z[:j] @ z[:j] + tail[j] ** 2 / (k - j))


def wgsef(x, groups, k: int, weights=None) -> float:
    r"""WGSEF :math:`s_k(\rho)` with :math:`\rho_i = \sqrt{d_i}\,\|x_{G_i}\|`."""
    a = group_norms(x, groups)
    return sef(np.sqrt(_weights(weights, a.size)) * a, k)


def _theta(a, w, lam, k):
    """Optimal theta of the prox: theta_i = clip(tau w_i a_i - lam w_i^2, 0, 1), sum = k."""
    on = a > 0
    if np.count_nonzero(on) <= k:
        return on.astype(float)
    s = w * a                                            # slope of theta_i in tau
    knots = np.concatenate([lam * w[on] / a[on], (1 + lam * w[on] ** 2) / s[on]])
    dslope = np.concatenate([s[on], -s[on]])
    order = np.argsort(knots, kind="stable")
    knots, slope = knots[order], np.cumsum(dslope[order])
    total = np.concatenate(([0.0], np.cumsum(slope[:-1] * np.diff(knots))))
    j = int(np.searchsorted(total, k, side="right")) - 1  # total crosses k after knot j
    tau = knots[j] + (k - total[j]) / slope[j]
    return np.clip(tau * s - lam * w ** 2, 0.0, 1.0)


def wgsef_prox(v, lam, *, groups, k: int, weights=None):
    r"""The proximal map of :math:`\lambda\,\mathrm{WGSEF}_k`, exact, in O(n log n) for n groups.

    Parameters
    ----------
    v : array_like, shape (p,)
        The point.
    lam : float
        :math:`\lambda > 0` (in proximal SGD, step size times regularization weight).
    groups : array_like of int, shape (p,)
        Group label of each entry, ``0..n-1``; ``-1`` for entries left unregularized.
    k : int
        Sparsity level, ``1 <= k``.
    weights : array_like, shape (n,), or None
        Group weights :math:`d_i > 0` (default 1).

    Returns
    -------
    numpy.ndarray
        :math:`x_{G_i} = \theta_i v_{G_i}/(\theta_i + \lambda d_i)`, with
        :math:`\theta = \arg\min_{\theta\in\Theta_k}\sum_i \lambda d_i\|v_{G_i}\|^2/(\theta_i + \lambda d_i)`.

    Notes
    -----
    From :math:`s_k(\rho) = \tfrac12\min_\theta \sum_i \rho_i^2/\theta_i`, minimizing over x
    first gives the rescaling above; the KKT conditions in :math:`\theta` give
    :math:`\theta_i = \mathrm{clip}(\tau\sqrt{d_i}a_i - \lambda d_i, 0, 1)` with one scalar
    :math:`\tau` fixed by :math:`\sum_i\theta_i = k` (a piecewise-linear equation solved
    exactly after sorting its 2n knots).  Groups with :math:`\theta_i = 1` are shrunk by
    :math:`1/(1+\lambda d_i)`, the others by a common offset, those with
    :math:`\tau\sqrt{d_i}a_i \le \lambda d_i` are zeroed.  Since :math:`\sum\theta = k` and
    :math:`\theta\le1`, at least k groups survive (when at least k are non-zero).
    This is the algorithm of Argyriou et al. (2012) for the k-support norm; the paper
    reports a worst-case linear-time variant (not verified here).

    Examples
    --------
    >>> wgsef_prox(np.array([3.0, 1.0, 0.5]), 1.0, groups=[0, 1, 2], k=1).round(3).tolist()
    [1.5, 0.0, 0.0]
    """
    v = check_array(v, "v", ndim=1)
    lam, k = check_positive(lam, "lam"), check_int(k, "k", low=1)
    g, n = _groups(groups, v.size)
    a = group_norms(v, g)
    w2 = _weights(weights, n)
    theta = _theta(a, np.sqrt(w2), lam, k)
    scale = np.append(theta / (theta + lam * w2), 1.0)   # label -1: kept as is
    return v * scale[g]


def group_lasso_prox(v, lam, *, groups, weights=None):
    r"""Block soft-thresholding, the prox of :math:`\lambda\sum_i\sqrt{d_i}\|x_{G_i}\|`.

    >>> group_lasso_prox(np.array([3.0, 4.0, 0.5]), 1.0, groups=[0, 0, 1]).round(3).tolist()
    [2.4, 3.2, 0.0]
    """
    v = check_array(v, "v", ndim=1)
    lam = check_positive(lam, "lam")
    g, n = _groups(groups, v.size)
    a = group_norms(v, g)
    t = lam * np.sqrt(_weights(weights, n))
    scale = np.append(np.maximum(1.0 - t / np.maximum(a, 1e-300), 0.0), 1.0)
    return v * scale[g]


def n_active(x, groups) -> int:
    """Number of groups with a non-zero entry."""
    return int(np.count_nonzero(group_norms(x, groups)))


def cvxpy_wgsef_prox(v, lam, *, groups, k, weights=None, joint=False, polish=True, eps=1e-12):
    r"""Reference prox by cvxpy (Clarabel, tolerances ``eps``) from the primal form of s_k.

    With ``joint=True`` it solves :math:`\min_{x,\theta}\tfrac12\|x-v\|^2 +
    \tfrac\lambda2\sum_i d_i\,\mathrm{quad\_over\_lin}(x_{G_i}, \theta_i)` over
    :math:`\Theta_k`; by default x is first minimized out by hand (x_G = theta v_G /
    (theta + lam d)), leaving :math:`\min_\theta \tfrac12\sum_i
    \mathrm{quad\_over\_lin}(\sqrt{\lambda d_i}a_i, \theta_i + \lambda d_i)`, which the
    solver resolves about ten times more accurately (the joint form is degenerate
    at zeroed groups, where x and theta vanish together).  Interior-point noise still
    leaves errors up to about 2e-6; ``polish=True`` (reduced form only) then does a
    crossover, as LP solvers do after the barrier method: it keeps the solver's
    classification of each theta_i (0, 1 or in between, at 1e-6) and solves the KKT
    equations of that active set exactly (theta_i = tau sqrt(d_i) a_i - lam d_i on the
    free groups, sum theta = k).
    """
    import warnings

    import cvxpy as cp

    v = check_array(v, "v", ndim=1)
    lam, k = check_positive(lam, "lam"), check_int(k, "k", low=1)
    g, n = _groups(groups, v.size)
    if k > n:
        raise ValueError(f"k must be at most the number of groups {n}, got {k}")
    d, a = _weights(weights, n), group_norms(v, g)
    theta = cp.Variable(n)
    cons = [cp.sum(theta) == k, theta >= 0, theta <= 1]
    if joint:
        x = cp.Variable(v.size)
        pen = sum(d[i] * cp.quad_over_lin(x[np.flatnonzero(g == i)], theta[i]) for i in range(n))
        obj = 0.5 * cp.sum_squares(x - v) + 0.5 * lam * pen
    else:
        obj = 0.5 * sum(cp.quad_over_lin(np.sqrt(lam * d[i]) * a[i], theta[i] + lam * d[i])
                        for i in range(n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                  # "solution may be inaccurate" at 1e-12
        cp.Problem(cp.Minimize(obj), cons).solve(
            solver=cp.CLARABEL, tol_gap_abs=eps, tol_gap_rel=eps, tol_feas=eps,
            tol_ktratio=eps, max_iter=500)
    if joint:
        return np.asarray(x.value)
    th = np.clip(theta.value, 0.0, 1.0)
    free = (th > 1e-6) & (th < 1 - 1e-6)
    if polish and free.any():
        s = np.sqrt(d) * a
        tau = (k - np.sum(th >= 1 - 1e-6) + np.sum(lam * d[free])) / np.sum(s[free])
        th = np.where(free, tau * s - lam * d, np.round(th))
    return v * np.append(th / (th + lam * d), 1.0)[g]


def group_lasso_path(net, lams, *, lr, n_iters, rng=None):
    r"""Group lasso along one continuation path: ``n_iters`` prox-SGD steps per
    :math:`\lambda` in ``lams`` (increasing), warm-started.  Returns a list of
    ``(n_active, test accuracy, x)``, one per :math:`\lambda`."""
    lams = check_array(lams, "lams", ndim=1)
    if np.any(lams <= 0) or np.any(np.diff(lams) < 0):
        raise ValueError("lams must be positive and increasing (a continuation path)")
    x, rng, path = net["x0"], as_rng(rng), []
    for lam in lams:
        def prox(v, eta, lam=lam):
            return group_lasso_prox(v, eta * lam, groups=net["groups"])
        x = prox_sgd(net["stoch_grad"], x, prox=prox, lr=lr, n_iters=n_iters,
                     groups=net["groups"], n_log=1, rng=rng).x
        path.append((n_active(x, net["groups"]), net["accuracy"](x), x))
    return path


def at_count(path, m):
    """The group-lasso path point with the fewest groups that still has at least m."""
    m = check_int(m, "m", low=0)
    if not any(p[0] >= m for p in path):
        raise ValueError(f"m={m}: no point of the path has at least m groups")
    return min((p for p in path if p[0] >= m), key=lambda p: p[0])


def prox_sgd(stoch_grad, x0, *, prox, lr, n_iters: int, groups, f=None, n_log: int = 10,
             rng=None, callback=None):
    r"""Proximal SGD :math:`x_{t+1} = \mathrm{prox}_{\eta_t h}(x_t - \eta_t\hat g_t)`.

    Parameters
    ----------
    stoch_grad : callable
        ``stoch_grad(x, rng) -> array`` shaped like x (a minibatch gradient of the loss).
    x0 : array_like, shape (p,)
        Start (not modified).
    prox : callable
        ``prox(v, lr)``, the prox of ``lr * h`` (e.g. :func:`wgsef_prox` with
        ``lam = lr * reg``).
    lr : float or callable
        Step size or schedule ``t -> float``.
    n_iters : int
        Number of steps.
    groups : array_like of int
        Group labels, to log the number of active groups.
    f : callable or None
        Loss to log, ``f(x) -> float``.
    n_log : int
        Number of logged rows after step 0 (evenly spaced).
    rng, callback
        The one random source; ``callback(record) -> bool`` stops the run.

    Returns
    -------
    Result
        ``x``, ``f``; history columns ``t``, ``n_evals``, ``lr``, ``n_active`` (groups
        with a non-zero entry) and ``f`` if given.

    Notes
    -----
    Cost per step: one minibatch gradient and one prox (O(p + n log n)).  The paper
    trains with this step (and with HSPG); for a convex h and a smooth loss its
    fixed points are the stationary points of loss + h.

    Examples
    --------
    >>> res = prox_sgd(lambda x, r: x - 2.0, np.zeros(2), n_iters=50, lr=0.5,
    ...                prox=lambda v, lr: v, groups=[0, 1])
    >>> res.x.round(3).tolist(), int(res.history["n_active"][-1])
    ([2.0, 2.0], 2)
    """
    x = check_array(x0, "x0", ndim=1)
    n_iters = check_int(n_iters, "n_iters", low=1)
    n_log = check_int(n_log, "n_log", low=1)
    check_callable(stoch_grad, "stoch_grad", signature="(x, rng) -> array")
    check_callable(prox, "prox", signature="(v, lr) -> array")
    check_callable(f, "f", optional=True)
    g, _ = _groups(groups, x.size)
    schedule, rng = as_schedule(lr), as_rng(rng)
    trace = Trace("prox_sgd", {"lr": schedule, "n_iters": n_iters}, callback)
    steps = set(np.linspace(0, n_iters, n_log + 1).astype(int).tolist())

    def record(t, eta):
        row = {"lr": eta, "n_active": n_active(x, g)}
        if f is not None:
            row["f"] = float(check_oracle(f, "f", x, shape=()))
        return trace.log(t, **row)

    stopped, n_done = record(0, np.nan), 0
    for t in range(0 if stopped else n_iters):
        eta = step_at(schedule, t)
        grad = check_oracle(stoch_grad, "stoch_grad", x, rng)
        trace.count("stoch_grad")
        x = check_oracle(prox, "prox", x - eta * grad, eta)
        trace.count("prox")
        n_done = t + 1
        if n_done in steps and (trace.diverged(x, n_done) or record(n_done, eta)):
            break
    f_end = float(f(x)) if f is not None and trace.message is None else None
    return trace.result(x, f_end, n_iters=n_done)


def digits_mlp(hidden: int = 32, *, batch: int = 64, rng=0):
    r"""A one-hidden-layer ReLU net on scikit-learn's digits; groups = hidden neurons.

    Returns a dict with ``x0`` (flat parameters), ``groups`` (neuron i owns row i of
    :math:`W_1` and its bias; the output layer is label -1), ``loss(x)`` (training
    cross-entropy), ``grad(x)``, ``stoch_grad(x, rng)`` (minibatch of ``batch``),
    ``accuracy(x)`` (test accuracy) and ``unpack(x)``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    h, batch, rng = check_int(hidden, "hidden", low=1), check_int(batch, "batch", low=1), as_rng(rng)
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.3, random_state=0, stratify=y)
    d, c = X.shape[1], 10
    shapes = [(h, d + 1), (c, h + 1)]                    # [W1 | b1], [W2 | b2]
    sizes = [a * b for a, b in shapes]

    def unpack(x):
        return x[:sizes[0]].reshape(shapes[0]), x[sizes[0]:].reshape(shapes[1])

    def forward(x, A):
        W1, W2 = unpack(x)
        z = A @ W1[:, :-1].T + W1[:, -1]
        hid = np.maximum(z, 0.0)
        return z, hid, hid @ W2[:, :-1].T + W2[:, -1]

    def loss_grad(x, A, lab):
        W1, W2 = unpack(x)
        z, hid, out = forward(x, A)
        p = np.exp(out - out.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        m = len(lab)
        loss = -np.mean(np.log(p[np.arange(m), lab]))
        p[np.arange(m), lab] -= 1.0
        p /= m
        gW2 = np.hstack([p.T @ hid, p.sum(axis=0)[:, None]])
        dz = (p @ W2[:, :-1]) * (z > 0)
        gW1 = np.hstack([dz.T @ A, dz.sum(axis=0)[:, None]])
        return loss, np.concatenate([gW1.ravel(), gW2.ravel()])

    W1 = rng.standard_normal(shapes[0]) * np.sqrt(2.0 / d)
    W2 = rng.standard_normal(shapes[1]) * np.sqrt(1.0 / h)
    W1[:, -1], W2[:, -1] = 0.0, 0.0
    groups = np.concatenate([np.repeat(np.arange(h), d + 1), np.full(sizes[1], -1)])
    return {"x0": np.concatenate([W1.ravel(), W2.ravel()]), "groups": groups,
            "loss": lambda x: loss_grad(x, Xtr, ytr)[0],
            "grad": lambda x: loss_grad(x, Xtr, ytr)[1],
            "stoch_grad": lambda x, r: loss_grad(x, *_batch(Xtr, ytr, batch, r))[1],
            "accuracy": lambda x: float(np.mean(forward(x, Xte)[2].argmax(axis=1) == yte)),
            "unpack": unpack}


def _batch(X, y, m, rng):
    idx = rng.integers(len(y), size=m)
    return X[idx], y[idx]
