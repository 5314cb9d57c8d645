r"""GGEUR: global class shapes, aggregated from client statistics, guide local augmentation.

Each client sends, per class it holds, its count, mean and biased covariance
(:func:`client_statistics`); the server pools them exactly by the law of total covariance
(:func:`aggregate_covariance`), no raw data needed; the eigen-decomposition of a class's
global covariance is its *geometric shape* (:func:`geometric_shape`).  Each client then fills
the classes it holds up to a target count with samples drawn along that shape around its own
points (:func:`augment`, built on :func:`generate`) and trains with FedAvg (:func:`fedavg`).
The ablations run the same code with another shape: isotropic of equal trace
(:func:`isotropic_shape`) or zero (duplicates).  The multi-domain variant draws around
foreign class prototypes (:func:`prototype_samples`).  The statistics round and FedAvg both
go through :func:`optlab.federated.core.run_rounds`.

Examples
--------
>>> X, y, _ = synthetic_embeddings(60, dim=3, n_classes=2, rng=0)
>>> owner = np.arange(60) % 4                                  # 4 clients
>>> res = share_shapes(X, y, owner, n_clients=4, n_classes=2)
>>> pooled = np.cov(X[y == 1].T, bias=True)
>>> bool(np.allclose(res.x["cov"][1], pooled, rtol=0, atol=1e-12)), res.ledger.bytes_up
(True, 832)

References
----------
Y. Ma, W. Dai, W. Huang and J. Chen, "Geometric knowledge-guided localized global
distribution alignment for federated learning", CVPR 2025, arXiv:2503.06457
(``ma2025geometric``); official code: github.com/WeiDai-David/2025CVPR_GGEUR.

Book: chapters/federated/ggeur.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import as_rng
from ..validate import check_array, check_int, check_real
from .core import mean_aggregate, run_rounds, stack_clients

__all__ = ["client_statistics", "aggregate_covariance", "share_shapes", "geometric_shape",
           "isotropic_shape", "generate", "prototype_samples", "augment",
           "softmax_client_update", "fedavg", "compare_arms", "accuracy", "synthetic_embeddings"]


def _labels(y, n, high, name="y"):
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or \
            (n and (y.min() < 0 or y.max() >= high)):
        raise ValueError(f"{name} must be {n} integers in [0, {high}), got shape {y.shape}")
    return y


def client_statistics(view, data, ids, rnd, seed):
    r"""Client side: per class, the count, the mean and the biased covariance.

    ``data`` = stacked clients ``{"X": (k, m, d), "y": (k, m), "mask": (k, m),
    "n_classes": (k,)}``; ``view`` is ignored.  Zero for a class a client does not hold.
    """
    X, m = data["X"], data["mask"]
    C = int(data["n_classes"][0])
    Y = (data["y"][..., None] == np.arange(C)) & m[..., None]  # (k, m, C)
    n = Y.sum(axis=1)                                            # (k, C)  n_kc
    mu = np.einsum("kmc,kmd->kcd", Y, X) / np.maximum(n, 1)[..., None]
    Z = (X[:, :, None, :] - mu[:, None]) * Y[..., None]          # x_i - mu_kc
    cov = np.einsum("kmcd,kmce->kcde", Z, Z) / np.maximum(n, 1)[..., None, None]
    return {"n": n.astype(float), "mu": mu, "cov": cov}, {"stats": len(ids)}


def aggregate_covariance(state, messages, weights, rnd, min_count=1):
    r"""Server side: each class's pooled mean and covariance over its guide clients.

    Guide clients of class c hold at least ``min_count`` of its samples (law of total
    covariance, exact): ``Sigma_c = sum_k n_kc (Sigma_kc + dev dev^T) / N_c``.
    """
    n = messages["n"] * (messages["n"] >= min_count)  # guide set
    w = n / np.maximum(n.sum(axis=0), 1)              # n_kc / N_c
    mu = np.einsum("kc,kcd->cd", w, messages["mu"])
    dev = messages["mu"] - mu                         # mu_kc - mu_c
    cov = np.einsum("kc,kcde->cde", w, messages["cov"]) \
        + np.einsum("kc,kcd,kce->cde", w, dev, dev)
    return {"n": n.sum(axis=0), "mu": mu, "cov": cov}, {}


def share_shapes(X, y, owner, n_clients, n_classes, *, min_count=1, rng=0):
    r"""One round of :func:`run_rounds`: clients upload statistics, the server pools them.

    Parameters
    ----------
    X : array (n, d)
    y, owner : int arrays (n,)
        Labels in ``[0, n_classes)`` and the client that holds each sample.
    n_clients, n_classes : int
    min_count : int
        A client joins class c's guide set if it holds at least this many samples of c.
    rng : int, Generator or None

    Returns
    -------
    Result
        ``x`` = ``{"n": (C,), "mu": (C, d), "cov": (C, d, d)}``; ``ledger`` counts the
        dense upload, ``k C (1 + d + d^2)`` numbers (the chapter counts what a client
        must really send).
    """
    X = check_array(X, "X", ndim=2)
    N = check_int(n_clients, "n_clients", low=1)
    C = check_int(n_classes, "n_classes", low=1)
    y, owner = _labels(y, len(X), C), _labels(owner, len(X), N, "owner")
    mc = check_int(min_count, "min_count", low=1)
    Xs, ys, mask = stack_clients([np.flatnonzero(owner == i) for i in range(N)], X, y)
    data = {"X": Xs, "y": ys, "mask": mask, "n_classes": np.full(N, C)}
    d = X.shape[1]
    state0 = {"n": np.zeros(C), "mu": np.zeros((C, d)), "cov": np.zeros((C, d, d))}
    agg = lambda s, msg, w, r: aggregate_covariance(s, msg, w, r, min_count=mc)  # noqa: E731
    return run_rounds(client_statistics, agg, state0, data, n_rounds=1, rng=rng,
                      client_view=lambda s: np.zeros(0), method="ggeur-statistics")


def geometric_shape(cov):
    r"""Eigenvalues (clipped at 0, descending) and eigenvectors (columns) per class."""
    lam, xi = np.linalg.eigh(check_array(cov, "cov", ndim=3))
    return np.maximum(lam[:, ::-1], 0.0), xi[:, :, ::-1]


def isotropic_shape(eigvals):
    r"""The ablation: :math:`\sigma_c^2 I`, :math:`\sigma_c^2 = \operatorname{tr}\Sigma_c/d`."""
    lam = check_array(eigvals, "eigvals", ndim=2)
    C, d = lam.shape
    return np.repeat(lam.mean(axis=1, keepdims=True), d, axis=1), np.tile(np.eye(d), (C, 1, 1))


def generate(anchors, labels, eigvals, eigvecs, rng=None):
    r"""One new sample per anchor: ``x' = x + sum_j eps_j sqrt(lambda_j) xi_j``.

    With ``eps ~ N(0, I)`` this is ``x' ~ N(x, Sigma_c)`` for the anchor's class c,
    the official code's form (the paper writes ``lambda_j`` for ``sqrt(lambda_j)``).
    """
    eps = as_rng(rng).standard_normal(np.shape(anchors))
    scale = eps * np.sqrt(eigvals[labels])                    # eps_j sqrt(lambda_j)
    return anchors + np.einsum("mj,mej->me", scale, eigvecs[labels])


def prototype_samples(prototypes, labels, eigvals, eigvecs, *, n_per, rng=None):
    r"""Multi-domain variant: ``n_per`` draws of ``N(p, Sigma_c)`` per class prototype p.

    Returns the samples ``(P n_per, d)`` and their labels.
    """
    P = check_array(prototypes, "prototypes", ndim=2)
    lab = _labels(labels, len(P), len(eigvals), "labels")
    k = check_int(n_per, "n_per", low=1)
    return generate(np.repeat(P, k, axis=0), np.repeat(lab, k), eigvals, eigvecs, rng), \
        np.repeat(lab, k)


def augment(X, y, owner, eigvals, eigvecs, *, target, rng=None):
    r"""Fill each class a client holds up to ``target`` samples, drawn around its own.

    A group (client, class) with n samples needs r = target - n new ones; its samples,
    in a random order, anchor ceil(r / n) draws each, the last ones dropped to make r
    (for r <= n: r distinct anchors), as in the official code.  Returns ``(X, y, owner)``
    with the new samples appended.
    """
    X = check_array(X, "X", ndim=2)
    C, T = len(eigvals), check_int(target, "target", low=1)
    y, owner = _labels(y, len(X), C), _labels(owner, len(X), len(X) + 1, "owner")
    gen = as_rng(rng)
    _, g, n = np.unique(owner * C + y, return_inverse=True, return_counts=True)
    r = np.maximum(T - n, 0)                         # new samples per group
    k = -(-r // n)                                   # draws per sample: ceil(r / n)
    order = np.lexsort((gen.random(len(X)), g))      # random order within each group
    rank = np.empty(len(X), dtype=int)
    rank[order] = np.arange(len(X)) - np.r_[0, np.cumsum(n)][g[order]]
    copy = np.repeat(np.arange(len(X)), k[g])        # sample i repeated k_g times
    j = np.arange(len(copy)) - np.repeat(np.cumsum(k[g]) - k[g], k[g])  # copy number
    anchors = copy[j * n[g[copy]] + rank[copy] < r[g[copy]]]
    new = generate(X[anchors], y[anchors], eigvals, eigvecs, gen)
    return np.vstack([X, new]), np.r_[y, y[anchors]], np.r_[owner, owner[anchors]]


def softmax_client_update(view, data, ids, rnd, seed, lr=1.0, local_steps=10):
    r"""Client side of FedAvg: ``local_steps`` full-batch gradient steps on softmax loss.

    ``view`` = the global weights ``W`` ``(d + 1, C)`` (last row: bias); all clients at once.
    """
    m = data["mask"][..., None]
    Xb = np.concatenate([data["X"], np.ones(m.shape)], axis=2)  # bias feature
    Y, XbT = (data["y"][..., None] == np.arange(view.shape[1])) * m, np.swapaxes(Xb * m, 1, 2)
    n = m.sum(axis=1)[:, None]
    W = np.broadcast_to(view, (len(ids),) + view.shape).copy()
    for _ in range(local_steps):
        logits = Xb @ W                                          # (k, m, C)
        P = np.exp(logits - logits.max(axis=2, keepdims=True))
        P /= P.sum(axis=2, keepdims=True)
        W -= lr * (XbT @ (P - Y)) / n                            # mean gradient
    return {"x": W}, {"grad": local_steps * len(ids)}


def fedavg(X, y, owner, W0, *, lr=1.0, local_steps=10, n_rounds=10, n_sampled=None, f=None,
           rng=None, callback=None):
    r"""FedAvg on softmax regression; clients as in ``owner``, weights = their sample counts.

    Parameters
    ----------
    X : array (n, d)
    y, owner : int arrays (n,)
    W0 : array (d + 1, C)
        The initial weights (last row: bias); not mutated.
    lr, local_steps, n_rounds, n_sampled : step size, local steps, rounds, clients per round
    f : callable or None
        ``W -> float`` logged each round (e.g. test accuracy), not counted.
    rng, callback : as in :func:`optlab.federated.core.run_rounds`

    Returns
    -------
    Result
        From :func:`run_rounds`: ``x`` = the weights, history ``f``, ``bytes_up``, ...
    """
    X, W0 = check_array(X, "X", ndim=2), check_array(W0, "W0", ndim=2)
    if W0.shape[0] != X.shape[1] + 1:
        raise ValueError(f"W0 must have shape (d + 1, C) = ({X.shape[1] + 1}, C), got {W0.shape}")
    y, owner = _labels(y, len(X), W0.shape[1]), _labels(owner, len(X), len(X) + 1, "owner")
    lr = check_real(lr, "lr", low=0.0, low_open=True)
    steps = check_int(local_steps, "local_steps", low=1)
    Xs, ys, mask = stack_clients([np.flatnonzero(owner == i) for i in np.unique(owner)], X, y)
    update = lambda v, d, i, r, s: softmax_client_update(  # noqa: E731
        v, d, i, r, s, lr=lr, local_steps=steps)
    return run_rounds(update, mean_aggregate, W0, {"X": Xs, "y": ys, "mask": mask},
                      n_rounds=n_rounds, weights=mask.sum(axis=1).astype(float),
                      n_sampled=n_sampled, f=f, rng=rng, callback=callback, method="fedavg")


def compare_arms(X, y, owner, X_test, y_test, *, n_clients, n_classes, target, lr=1.0,
                 local_steps=10, n_rounds=10, rng=0):
    r"""Test accuracy of the chapter's five arms, each trained from ``W = 0``.

    ``"centralized"`` (gradient descent on the pooled data, ``local_steps * n_rounds``
    steps), ``"FedAvg"``, and FedAvg after :func:`augment` with the global shape
    (``"FedAvg + GGEUR"``), an isotropic one of equal trace (``"FedAvg + isotropic"``)
    and a zero one (``"FedAvg + duplicates"``).  Returns ``(accuracies, histories)``:
    dicts by arm of floats and of per-round test accuracies.
    """
    shape = geometric_shape(share_shapes(X, y, owner, n_clients, n_classes).x["cov"])
    lam, xi = shape
    shapes = {"FedAvg + GGEUR": shape, "FedAvg + isotropic": isotropic_shape(lam),
              "FedAvg + duplicates": (np.zeros_like(lam), xi)}
    W0, gen = np.zeros((np.shape(X)[1] + 1, n_classes)), as_rng(rng)
    test = lambda W: accuracy(W, X_test, y_test)  # noqa: E731
    runs = {"centralized": fedavg(X, y, np.zeros(len(X), dtype=int), W0, lr=lr, local_steps=1,
                                  n_rounds=local_steps * n_rounds, rng=0),
            "FedAvg": fedavg(X, y, owner, W0, lr=lr, local_steps=local_steps,
                             n_rounds=n_rounds, f=test, rng=0)}
    for arm, (L, V) in shapes.items():
        Xa, ya, oa = augment(X, y, owner, L, V, target=target, rng=gen)
        runs[arm] = fedavg(Xa, ya, oa, W0, lr=lr, local_steps=local_steps, n_rounds=n_rounds,
                           f=test, rng=0)
    acc = {arm: test(res.x) for arm, res in runs.items()}
    return acc, {arm: res.history["f"] for arm, res in runs.items() if arm != "centralized"}


def accuracy(W, X, y) -> float:
    """The share of the rows of ``X`` that the softmax model ``W`` labels as ``y``."""
    return float(np.mean(np.argmax(X @ W[:-1] + W[-1], axis=1) == y))


def synthetic_embeddings(n, *, dim=16, n_classes=10, radius=3.0, decay=1.5, rng=None):
    r"""Gaussian classes: one spectrum ``lambda_j ~ j^(-decay)`` (trace ``dim``), rotated.

    Each class has its own random orientation ``R_c`` and a mean uniform on the sphere of
    ``radius``.  Returns ``X (n, dim)``, ``y (n,)`` and the true covariances ``(C, d, d)``.
    """
    n, d = check_int(n, "n", low=1), check_int(dim, "dim", low=1)
    C = check_int(n_classes, "n_classes", low=2)
    gen = as_rng(rng)
    lam = np.arange(1, d + 1) ** -check_real(decay, "decay", low=0.0)
    lam *= d / lam.sum()
    R = np.linalg.qr(gen.standard_normal((C, d, d)))[0]          # random rotations
    cov = np.einsum("cij,j,ckj->cik", R, lam, R)
    mu = gen.standard_normal((C, d))
    mu *= check_real(radius, "radius", low=0.0) / np.linalg.norm(mu, axis=1, keepdims=True)
    y = gen.integers(C, size=n)
    X = mu[y] + np.einsum("nij,nj->ni", R[y], gen.standard_normal((n, d)) * np.sqrt(lam))
    return X, y, cov
