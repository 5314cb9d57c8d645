r"""The static M-FAC inverse Fisher and one-shot pruning with the Optimal Brain Surgeon.

The damped empirical Fisher of :math:`m` gradients, :math:`F = \lambda I + \frac1m \sum_i g_i g_i^\top`,
is a rank-:math:`m` correction of :math:`\lambda I`: :func:`static_inverse` chains :math:`m`
Sherman-Morrison steps (:math:`O(dm^2)` once), after which :math:`F^{-1}x` costs :math:`O(dm)`
and one entry of :math:`F^{-1}` :math:`O(m)` (:class:`StaticInverse`); :func:`dense_ihvp` is the
:math:`O(d^3)` reference.  Removing weight :math:`q` from a model whose loss is locally
:math:`\frac12\delta w^\top F\,\delta w` costs at least :math:`\mathcal S_q = w_q^2/(2[F^{-1}]_{qq})`,
reached by the update :math:`\delta w = -(w_q/[F^{-1}]_{qq})F^{-1}e_q` (OBS): with the static
inverse, the diagonal and one product serve all the weights removed at once.  :func:`obs_prune`
repeats this in prune-and-recompute steps, :func:`magnitude_prune` is the baseline and
:func:`digits_mlp` the chapter's network.  Shared with the pruning chapters; numpy only.

References
----------
E. Frantar, E. Kurtic and D. Alistarh, M-FAC: efficient matrix-free approximations of
second-order information, NeurIPS 2021, arXiv:2107.03356 (``frantar2021mfac``);
B. Hassibi and D. G. Stork, Second order derivatives for network pruning: Optimal Brain Surgeon,
NeurIPS 1992 (``hassibi1992obs``).

Book: chapters/stochastic/mfac.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import Problem, Trace, as_array, as_rng
from ..validate import check_array, check_callable, check_choice, check_int, check_positive, check_probability

__all__ = ["StaticInverse", "static_inverse", "dense_ihvp", "magnitude_prune", "density_schedule", "obs_step",
           "obs_prune", "digits_mlp"]


@dataclass(frozen=True)
class StaticInverse:
    r"""The static M-FAC inverse: :math:`F^{-1} = \lambda^{-1} I - \sum_j v_j v_j^\top / \rho_j`.

    ``V`` holds the :math:`v_j` as rows, ``denom`` the :math:`\rho_j`, ``damp`` is :math:`\lambda`.
    """

    V: np.ndarray
    denom: np.ndarray
    damp: float

    @property
    def dim(self) -> int:
        return int(self.V.shape[1])

    def ihvp(self, x):
        r""":math:`F^{-1}x` in :math:`O(dm)`; ``x`` of shape ``(d,)`` or ``(n, d)`` (row-wise)."""
        x = check_array(x, "x", ndim=(1, 2))
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have {self.dim} entries (per row), got shape {x.shape}")
        return x / self.damp - ((x @ self.V.T) / self.denom) @ self.V

    def diag(self) -> np.ndarray:
        r"""The diagonal of :math:`F^{-1}`: :math:`\lambda^{-1} - \sum_j v_{jk}^2/\rho_j`, :math:`O(dm)`."""
        return 1.0 / self.damp - (1.0 / self.denom) @ (self.V * self.V)

    def entry(self, k: int, j: int) -> float:
        r"""One entry :math:`[F^{-1}]_{kj} = \lambda^{-1}[k = j] - \sum_i v_{ik} v_{ij}/\rho_i`, :math:`O(m)`."""
        k = check_int(k, "k", low=0, high=self.dim - 1)
        j = check_int(j, "j", low=0, high=self.dim - 1)
        return float((k == j) / self.damp - np.sum(self.V[:, k] * self.V[:, j] / self.denom))


def static_inverse(grads, damp: float, *, block: int = 32) -> StaticInverse:
    r"""Precompute the static M-FAC inverse of :math:`F = \lambda I + \frac1m G^\top G` (:math:`O(dm^2)`).

    Parameters
    ----------
    grads : array_like, shape (m, d)
        The gradients :math:`g_1, \dots, g_m` as rows.
    damp : float > 0
        The damping :math:`\lambda`.
    block : int >= 1
        Gradients handled per block: the same recursion, with the corrections from earlier
        blocks as one matrix product (faster; the result is the same up to rounding).

    Returns
    -------
    StaticInverse
        With :meth:`~StaticInverse.ihvp`, :meth:`~StaticInverse.diag` and :meth:`~StaticInverse.entry`.

    Notes
    -----
    :math:`F_0 = \lambda I`, :math:`F_i = F_{i-1} + g_i g_i^\top/m` and Sherman-Morrison give
    :math:`F_i^{-1} = F_{i-1}^{-1} - v_i v_i^\top/\rho_i` with :math:`v_i = F_{i-1}^{-1} g_i`,
    :math:`\rho_i = m + g_i^\top v_i`; unrolling :math:`F_{i-1}^{-1}` gives the recursion
    :math:`v_i = \lambda^{-1} g_i - \sum_{j<i} (v_j^\top g_i/\rho_j)\, v_j`, which is the loop.
    Step :math:`i` costs :math:`O(di)`, the whole loop :math:`O(dm^2)`; storage :math:`O(dm)`.

    Book: chapters/stochastic/mfac.ipynb

    Examples
    --------
    >>> G = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    >>> inv = static_inverse(G, damp=0.5)
    >>> F = 0.5 * np.eye(3) + G.T @ G / 2
    >>> bool(np.allclose(inv.ihvp(np.ones(3)), np.linalg.solve(F, np.ones(3))))
    True
    """
    G = np.ascontiguousarray(check_array(grads, "grads", ndim=2))  # rows contiguous
    lam, block = check_positive(damp, "damp"), check_int(block, "block", low=1)
    m = G.shape[0]
    V, denom = np.empty_like(G), np.empty(m)
    for s in range(0, m, block):
        e = min(s + block, m)            # rows s..e-1: first the terms j < s at once
        V[s:e] = G[s:e] / lam - ((G[s:e] @ V[:s].T) / denom[:s]) @ V[:s]
        for i in range(s, e):            # then the terms s <= j < i, one by one
            V[i] -= ((V[s:i] @ G[i]) / denom[s:i]) @ V[s:i]
            denom[i] = m + G[i] @ V[i]
    return StaticInverse(V, denom, lam)


def dense_ihvp(grads, x, damp: float) -> np.ndarray:
    r"""The reference: form :math:`F = \lambda I + G^\top G/m` (:math:`O(d^2 m)`) and solve (:math:`O(d^3)`)."""
    G = check_array(grads, "grads", ndim=2)
    x = check_array(x, "x", shape=(G.shape[1],))
    F = G.T @ G / G.shape[0]
    F[np.diag_indices_from(F)] += check_positive(damp, "damp")
    return np.linalg.solve(F, x)


# --------------------------------------------------------------------------- pruning

def _mask(mask, d, name):
    """A boolean mask of shape ``(d,)`` (a copy); None means all True."""
    if mask is None:
        return np.ones(d, dtype=bool)
    p = np.asarray(mask)
    if p.dtype != bool or p.shape != (d,):
        raise ValueError(f"{name} must be a boolean mask of shape ({d},), got {p.dtype} of shape {p.shape}")
    return p.copy()


def magnitude_prune(w, sparsity: float, prunable=None) -> np.ndarray:
    r"""Global magnitude pruning: zero the ``round(sparsity * n)`` smallest :math:`|w_q|` among the prunable ``n``.

    Ties are broken by position (a stable sort), as ``torch.nn.utils.prune.global_unstructured``
    with ``L1Unstructured`` does on these inputs.

    >>> magnitude_prune([0.3, -2.0, 0.1, 1.0], 0.5).tolist()
    [0.0, -2.0, 0.0, 1.0]
    """
    w = as_array(w, "w")
    s, keep = check_probability(sparsity, "sparsity"), _mask(prunable, w.size, "prunable")
    idx = np.flatnonzero(keep)
    drop = idx[np.argsort(np.abs(w[idx]), kind="stable")[:int(round(s * idx.size))]]
    w[drop] = 0.0
    return w


def density_schedule(sparsity: float, n_steps: int) -> np.ndarray:
    r"""The target sparsities of ``n_steps`` steps, density shrinking by a constant factor: :math:`1 - (1-s)^{j/n}`.

    >>> np.round(density_schedule(0.75, 2), 3).tolist()
    [0.5, 0.75]
    """
    s, n = check_probability(sparsity, "sparsity"), check_int(n_steps, "n_steps", low=1)
    return 1.0 - (1.0 - s) ** (np.arange(1, n + 1) / n)


def obs_step(w, grads, mask, n_drop: int, *, damp: float, fisher: str = "mfac"):
    r"""Remove ``n_drop`` of the weights where ``mask`` is True by OBS and update the others; returns ``(w, mask)``.

    The curvature is the damped empirical Fisher of the rows of ``grads`` on the coordinates where
    ``mask`` is True, inverted by static M-FAC (``fisher="mfac"``) or replaced by its diagonal
    (``"diagonal"``: the update then only zeroes the removed weights, as in Optimal Brain Damage).
    The removed weights are those of least saliency :math:`w_q^2/(2[F^{-1}]_{qq})`; the others
    move by :math:`-F^{-1}c` with :math:`c_q = w_q/[F^{-1}]_{qq}` on the removed ones.
    """
    w, G = as_array(w, "w"), check_array(grads, "grads", ndim=2)
    if G.shape[1] != w.size:
        raise ValueError(f"grads must have one column per weight ({w.size}), "
                         f"got shape {G.shape}")
    keep = _mask(mask, w.size, "mask")
    n_drop = check_int(n_drop, "n_drop", low=0, high=int(keep.sum()))
    lam = check_positive(damp, "damp")
    fisher = check_choice(fisher, "fisher", ("mfac", "diagonal"))
    idx = np.flatnonzero(keep)
    wa, Ga = w[idx], G[:, idx]
    inv = static_inverse(Ga, lam) if fisher == "mfac" else None
    diag = inv.diag() if inv else 1.0 / (lam + np.mean(Ga * Ga, axis=0))
    drop = np.argsort(wa ** 2 / (2 * diag), kind="stable")[:n_drop]
    c = np.zeros_like(wa)
    c[drop] = wa[drop] / diag[drop]
    wa = wa - (inv.ihvp(c) if inv else diag * c)   # single-weight updates, summed
    wa[drop] = 0.0
    w[idx], keep[idx[drop]] = wa, False
    return w, keep


def obs_prune(grads, w0, *, sparsity: float, damp: float, n_steps: int = 10, fisher: str = "mfac",
              prunable=None, f=None, rng=None, callback=None):
    r"""One-shot OBS pruning in ``n_steps`` prune-and-recompute steps, without retraining.

    Parameters
    ----------
    grads : callable
        ``grads(w, rng) -> (m, d)``: per-example (or per-minibatch) loss gradients at ``w``,
        recomputed at every step; their empirical Fisher is the curvature model.
    w0 : array_like, shape (d,)
        The trained weights (not modified).
    sparsity : float in [0, 1]
        The final share of zeros among the prunable weights.
    damp : float > 0
        The damping :math:`\lambda` of the Fisher.
    n_steps : int >= 1
        Steps of :func:`density_schedule`; 1 is a single pass.
    fisher : {"mfac", "diagonal"}
        The inverse: full static M-FAC, or the diagonal of the Fisher alone.
    prunable : boolean array of shape (d,) or None
        The weights that may be removed (e.g. no biases); None: all.
    f : callable or None
        ``f(w) -> float`` logged after each step (an accuracy, a loss).
    rng, callback
        Passed to ``grads``; ``callback(record) -> bool`` stops on True.

    Returns
    -------
    Result
        ``x``: the pruned weights; extras: ``mask`` (True where a weight survives).  History:
        ``t``, ``n_evals``, ``sparsity`` and ``f`` with ``f``.

    Notes
    -----
    Step :math:`j` reaches sparsity :math:`1 - (1-s)^{j/n}` by removing the weights of least
    :math:`\mathcal S_q = w_q^2/(2[F^{-1}]_{qq})` and adding :math:`-F^{-1}c` with
    :math:`c_q = w_q/[F^{-1}]_{qq}` on the removed ones: the sum of their single-weight OBS
    updates, exact for one weight, an approximation for many (the official code does the same).
    Cost per step: one batch of gradients, :math:`O(dm^2)` for the inverse, :math:`O(dm)` for the rest.

    References
    ----------
    Frantar, Kurtic and Alistarh 2021 (``frantar2021mfac``); Hassibi and Stork 1992 (``hassibi1992obs``).

    Book: chapters/stochastic/mfac.ipynb

    Examples
    --------
    >>> G = np.random.default_rng(0).standard_normal((8, 6))
    >>> res = obs_prune(lambda w, rng: G, np.arange(1.0, 7.0), sparsity=0.5, damp=0.1, n_steps=3)
    >>> int(np.sum(res.x == 0)), res.history["sparsity"].round(2).tolist()
    (3, [0.0, 0.17, 0.33, 0.5])
    """
    w = as_array(w0, "w0")
    check_callable(grads, "grads", signature="(w, rng) -> (m, d) array")
    check_callable(f, "f", optional=True, signature="w -> float")
    targets, lam = density_schedule(sparsity, n_steps), check_positive(damp, "damp")
    fisher, prunable = check_choice(fisher, "fisher", ("mfac", "diagonal")), _mask(prunable, w.size, "prunable")
    gen, n_prunable, keep = as_rng(rng), int(prunable.sum()), prunable.copy()  # keep: prunable, not yet removed
    trace = Trace("obs_prune", {"sparsity": sparsity, "damp": lam, "n_steps": n_steps, "fisher": fisher}, callback)

    def record(t):
        row = {"sparsity": 1.0 - keep.sum() / max(n_prunable, 1)}
        if f is not None:
            row["f"] = float(f(w))
        return trace.log(t, **row)

    n_done = 0
    stopped = record(0)
    for t in range(0 if stopped else n_steps):
        n_drop = int(round(targets[t] * n_prunable)) - (n_prunable - int(keep.sum()))
        G = check_array(grads(w, gen), "grads(w, rng)", ndim=2)
        trace.count("grads", G.shape[0])
        w, keep = obs_step(w, G, keep, max(n_drop, 0), damp=lam, fisher=fisher)
        n_done = t + 1
        if record(n_done):
            break
    return trace.result(w, None if f is None else float(f(w)), n_iters=n_done, mask=keep | ~prunable)


# --------------------------------------------------------------------------- the chapter's network

def digits_mlp(hidden: int = 64, n_train: int = 1200, batch_size: int = 32, rng=0) -> Problem:
    r"""A one-hidden-layer tanh MLP on scikit-learn's 8x8 digits: the softmax cross-entropy as a Problem.

    Parameters :math:`\theta = (W_1, b_1, W_2, b_2)` flattened, :math:`W_1` of shape ``(64, hidden)``;
    pixels scaled to [0, 1]; a random split of ``n_train`` training and ``1797 - n_train`` test
    images and the start :math:`W \sim N(0, 1/\text{fan-in})`, :math:`b = 0`, both drawn from ``rng``.
    ``f``, ``grad``: the mean training loss and its gradient; ``stoch_grad(theta, rng)``: a
    minibatch of ``batch_size``.  ``info``: ``per_example_grads(theta, idx) -> (len(idx), d)``
    (closed form), ``accuracy(theta, split="test")``, ``prunable`` (True on the weights of
    :math:`W_1, W_2`, False on the biases), the data and the layout.
    """
    from sklearn.datasets import load_digits

    h, n, bs = check_int(hidden, "hidden", low=1), check_int(n_train, "n_train", low=1, high=1796), \
        check_int(batch_size, "batch_size", low=1)
    gen = as_rng(rng)
    X, y = load_digits(return_X_y=True)
    perm = gen.permutation(len(y))
    Xtr, ytr, Xte, yte = X[perm[:n]] / 16.0, y[perm[:n]], X[perm[n:]] / 16.0, y[perm[n:]]
    sizes = [64 * h, h, 10 * h, 10]
    cut = np.cumsum(sizes)[:-1]

    def unpack(theta):
        W1, b1, W2, b2 = np.split(np.asarray(theta, dtype=float), cut)
        return W1.reshape(64, h), b1, W2.reshape(h, 10), b2

    def forward(theta, Xb):
        W1, b1, W2, b2 = unpack(theta)
        H = np.tanh(Xb @ W1 + b1)
        Z = H @ W2 + b2
        P = np.exp(Z - Z.max(axis=1, keepdims=True))
        return H, P / P.sum(axis=1, keepdims=True)

    def deltas(theta, Xb, yb):
        H, P = forward(theta, Xb)
        D2 = P.copy()
        D2[np.arange(len(yb)), yb] -= 1.0           # d loss / d logits, per example
        D1 = (D2 @ unpack(theta)[2].T) * (1.0 - H * H)
        return H, D1, D2

    def loss(theta, Xb=Xtr, yb=ytr):
        P = forward(theta, Xb)[1]
        return float(-np.mean(np.log(P[np.arange(len(yb)), yb] + 1e-300)))

    def batch_grad(theta, Xb, yb):
        H, D1, D2 = deltas(theta, Xb, yb)
        parts = [Xb.T @ D1, D1.sum(axis=0), H.T @ D2, D2.sum(axis=0)]
        return np.concatenate([q.ravel() for q in parts]) / len(yb)

    def per_example_grads(theta, idx):
        Xb, yb = Xtr[idx], ytr[idx]
        H, D1, D2 = deltas(theta, Xb, yb)
        k = len(yb)
        return np.hstack([(Xb[:, :, None] * D1[:, None, :]).reshape(k, -1), D1,
                          (H[:, :, None] * D2[:, None, :]).reshape(k, -1), D2])

    def accuracy(theta, split: str = "test"):
        Xb, yb = {"test": (Xte, yte), "train": (Xtr, ytr)}[check_choice(split, "split", ("test", "train"))]
        return float(np.mean(forward(theta, Xb)[1].argmax(axis=1) == yb))

    def stoch_grad(theta, rng):
        idx = as_rng(rng).choice(n, size=min(bs, n), replace=False)
        return batch_grad(theta, Xtr[idx], ytr[idx])

    x0 = np.concatenate([gen.standard_normal(64 * h) / 8.0, np.zeros(h),
                         gen.standard_normal(10 * h) / np.sqrt(h), np.zeros(10)])
    prunable = np.concatenate([np.ones(64 * h, bool), np.zeros(h, bool), np.ones(10 * h, bool), np.zeros(10, bool)])
    info = {"per_example_grads": per_example_grads, "accuracy": accuracy, "prunable": prunable,
            "X_train": Xtr, "y_train": ytr, "X_test": Xte, "y_test": yte, "sizes": sizes}
    return Problem(f"digits_mlp(64-{h}-10)", f=loss, grad=lambda th: batch_grad(th, Xtr, ytr), x0=x0,
                   stoch_grad=stoch_grad, info=info)
