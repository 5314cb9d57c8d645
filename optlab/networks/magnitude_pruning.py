r"""Global magnitude pruning, the uniform baseline, the minimum threshold and masked fine-tuning.

A network's prunable weights form layers :math:`W_1, \dots, W_L` with :math:`N_l` entries,
:math:`N = \sum_l N_l`.  At target sparsity :math:`s` **global magnitude pruning** (Global MP)
removes the :math:`\mathrm{round}(sN)` weights of least :math:`|w|` over all layers at once
(the count ``torch.nn.utils.prune.global_unstructured`` removes); the per-layer sparsities
:math:`s_l` emerge.  **Uniform** pruning removes :math:`\mathrm{round}(sN_l)` in each layer.
The **minimum threshold** (MT) keeps at least :math:`m` weights in every layer: layers with
:math:`N_l \le m` stay dense, layers that Global MP leaves below :math:`m` keep exactly
:math:`m`, and the others share the rest of the budget in proportion to what Global MP kept
(repeated until no layer is below :math:`m`).  :func:`masked_sgd` fine-tunes on the surviving
weights, :func:`gradual_prune` alternates pruning steps and fine-tuning, :func:`flops_sparsity`
counts multiply-adds, and :func:`digits_relu_mlp` is the chapter's network.

The one-shot ranking is the one of :func:`optlab.stochastic.obs.magnitude_prune` (stable sort
by :math:`|w|`, ties by position), which the M-FAC chapter uses; here it acts per layer or
over the pooled layers and returns masks.

References
----------
M. Gupta, E. Camci, V. R. Keneta, A. Vaidyanathan, R. Kanodia, C.-S. Foo, W. Min and L. Jie,
Is complexity required for neural network pruning? A case study on global magnitude pruning,
arXiv:2209.14624 (``gupta2022globalmp``).

Book: chapters/networks/magnitude_pruning.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Problem, Trace, as_array, as_rng, as_schedule, check_oracle, step_at
from ..stochastic.obs import density_schedule
from ..validate import check_callable, check_choice, check_int, check_probability, check_real

__all__ = ["drop_smallest", "keep_counts", "minimum_threshold", "prune_mask", "masked_sgd",
           "gradual_prune", "prune_and_finetune", "flops_sparsity", "digits_relu_mlp"]

RULES = ("global", "uniform", "global_mt")


def drop_smallest(scores, n_drop: int) -> np.ndarray:
    """A mask that is False on the ``n_drop`` smallest ``scores`` (stable: ties by position)."""
    keep = np.ones(scores.size, dtype=bool)
    keep[np.argsort(scores, kind="stable")[:n_drop]] = False
    return keep


def _layers(w, layers, name="w"):
    w = as_array(w, name)
    if not isinstance(layers, (list, tuple)) or not layers or \
            not all(isinstance(s, slice) and 0 <= s.start < s.stop <= w.size for s in layers):
        raise ValueError(f"layers must be a non-empty list of slices inside {name} (size {w.size}), got {layers!r}")
    return w, list(layers)


def minimum_threshold(sizes, counts, min_keep: int) -> np.ndarray:
    r"""Per-layer keep counts with at least ``min_keep`` per layer and the same total as ``counts``.

    Layers with :math:`N_l \le m` keep all :math:`N_l`; a layer below :math:`m` is raised to
    :math:`m`; the free layers share the remaining budget in proportion to ``counts`` (largest
    remainders, capped at :math:`N_l`); repeated until no free layer is below :math:`m`.

    >>> minimum_threshold([100, 1000, 50], [60, 30, 10], 20).tolist()
    [53, 27, 20]
    """
    N = np.array([check_int(n, "sizes", low=1) for n in sizes])
    k = np.array([check_int(c, "counts", low=0) for c in counts])
    if k.shape != N.shape or np.any(k > N):
        raise ValueError("counts must have one entry per layer, each at most its size; "
                         f"got {k} for sizes {N}")
    m, total = check_int(min_keep, "min_keep", low=0), int(k.sum())
    fixed = np.where(N <= m, N, -1)                        # -1: free layer
    if np.minimum(N, m).sum() > total:
        raise ValueError(f"min_keep={m} per layer needs {np.minimum(N, m).sum()} "
                         f"weights, more than the {total} kept at this sparsity")
    while True:
        free = fixed < 0
        budget, share = total - fixed[~free].sum(), np.where(free, k, 0).astype(float)
        if share.sum() > 0:
            share = share / share.sum() * budget
        else:
            share = free * budget / free.sum()
        new = np.minimum(np.floor(share), N).astype(int)
        rest = budget - new[free].sum()             # largest remainders fill the budget
        for i in np.argsort(-(share - np.floor(share)), kind="stable")[:rest]:
            new[i] += 1
        low = free & (new < m)
        if not low.any():
            return np.where(free, new, fixed)
        fixed[low] = m


def keep_counts(w, layers, sparsity: float, rule: str = "global",
                min_keep: int = 0) -> np.ndarray:
    r"""How many weights each layer keeps under ``rule`` at ``sparsity`` (see :func:`prune_mask`)."""
    w, layers = _layers(w, layers)
    s, rule = check_probability(sparsity, "sparsity"), check_choice(rule, "rule", RULES)
    min_keep = check_int(min_keep, "min_keep", low=0)
    N = np.array([sl.stop - sl.start for sl in layers])
    if rule == "uniform":
        return N - np.round(s * N).astype(int)
    pooled = np.concatenate([np.abs(w[sl]) for sl in layers])
    keep = drop_smallest(pooled, int(round(s * pooled.size)))
    counts = np.array([part.sum() for part in np.split(keep, np.cumsum(N)[:-1])])
    return counts if rule == "global" else minimum_threshold(N, counts, min_keep)


def prune_mask(w, layers, sparsity: float, rule: str = "global",
               min_keep: int = 0) -> np.ndarray:
    r"""The mask (True: kept) of magnitude pruning at ``sparsity`` over the weights in ``layers``.

    ``rule="global"``: drop the ``round(sparsity * N)`` smallest :math:`|w|` over all layers;
    ``"uniform"``: ``round(sparsity * N_l)`` in each layer; ``"global_mt"``: the per-layer counts
    of Global MP refined by :func:`minimum_threshold` with ``min_keep``, then magnitude pruning in
    each layer.  Entries outside ``layers`` (biases) stay True.

    >>> prune_mask([0.3, -2.0, 0.1, 1.0, 5.0], [slice(0, 2), slice(2, 4)], 0.5).tolist()
    [False, True, False, True, True]
    """
    w, layers = _layers(w, layers)
    counts = keep_counts(w, layers, sparsity, rule, min_keep)
    mask = np.ones(w.size, dtype=bool)
    for sl, k in zip(layers, counts):
        mask[sl] = drop_smallest(np.abs(w[sl]), (sl.stop - sl.start) - int(k))
    return mask


def masked_sgd(stoch_grad, x0, *, mask, lr, momentum: float = 0.9, n_iters: int = 200,
               f=None, n_log: int = 10, rng=None, callback=None):
    r"""Fine-tune the surviving weights: heavy-ball SGD on :math:`x \odot M`, pruned weights held at zero.

    Parameters
    ----------
    stoch_grad : callable
        ``stoch_grad(x, rng) -> (d,)``, a minibatch gradient.
    x0 : array_like, shape (d,)
        The weights before fine-tuning (not modified); pruned entries are zeroed first.
    mask : boolean array, shape (d,)
        True where a weight survives (biases: True).
    lr : float or callable
        The step :math:`\eta` (or a schedule ``t -> float``).
    momentum : float in [0, 1)
        :math:`\beta`.
    n_iters, n_log : int
        Steps, and how many evenly spaced rows the history keeps (plus the first).
    f : callable or None
        ``f(x) -> float`` logged (a loss or an accuracy); not counted.
    rng, callback
        Minibatch randomness; ``callback(record) -> bool`` stops on True.

    Returns
    -------
    Result
        ``x``: the fine-tuned weights (zero where ``mask`` is False); extras: ``mask``.
        History: ``t``, ``n_evals``, ``density`` (share of nonzero entries), ``f`` with ``f``.

    Notes
    -----
    :math:`v_{t+1} = \beta v_t + M \odot g_t`, :math:`x_{t+1} = M \odot (x_t - \eta v_{t+1})`:
    projected heavy ball on the subspace :math:`\{x : x_q = 0 \text{ where } M_q = 0\}`, so the
    sparsity pattern is kept.  One minibatch gradient per step.  The paper fine-tunes with SGD
    and Nesterov momentum over many epochs; we use a few hundred heavy-ball steps.

    Book: chapters/networks/magnitude_pruning.ipynb

    Examples
    --------
    >>> res = masked_sgd(lambda x, rng: x - 1.0, [3.0, 3.0], mask=np.array([True, False]), lr=0.5,
    ...                  momentum=0.0, n_iters=30)
    >>> res.x.round(6).tolist(), res.n_evals
    ([1.0, 0.0], {'stoch_grad': 30})
    """
    check_callable(stoch_grad, "stoch_grad", signature="(x, rng) -> (d,) array")
    check_callable(f, "f", optional=True, signature="x -> float")
    x = as_array(x0, "x0")
    M = np.asarray(mask)
    if M.dtype != bool or M.shape != x.shape:
        raise ValueError(f"mask must be a boolean array of shape {x.shape}, "
                         f"got {M.dtype} of shape {M.shape}")
    beta = check_real(momentum, "momentum", low=0.0, high=1.0, high_open=True)
    n_iters = check_int(n_iters, "n_iters", low=1)
    n_log = check_int(n_log, "n_log", low=1)
    lr = as_schedule(lr)
    step_at(lr, 0)
    gen, x, v = as_rng(rng), x * M, np.zeros_like(x)
    params = {"lr": lr, "momentum": beta, "n_iters": n_iters}
    trace = Trace("masked_sgd", params, callback)
    logged = set(np.linspace(0, n_iters, n_log + 1).round().astype(int).tolist())

    def record(t):
        row = {"density": float(np.mean(x != 0))}
        if f is not None:
            row["f"] = float(f(x))
        return trace.log(t, **row)

    n_done, stopped = 0, record(0)
    for t in range(0 if stopped else n_iters):
        g = check_oracle(stoch_grad, "stoch_grad", x, gen)
        trace.count("stoch_grad")
        v = beta * v + M * g
        x = M * (x - step_at(lr, t) * v)
        n_done = t + 1
        if trace.diverged(x, n_done) or (n_done in logged and record(n_done)):
            break
    f_end = None if f is None else float(f(x))
    return trace.result(x, f_end, n_iters=n_done, mask=M.copy())


def gradual_prune(stoch_grad, x0, *, layers, sparsity: float, n_steps: int, lr, rule: str = "global",
                  min_keep: int = 0, momentum: float = 0.9, iters_per_step: int = 50, f=None,
                  rng=None, callback=None):
    r"""Gradual pruning: ``n_steps`` rounds of prune-to-:math:`s_j` then :func:`masked_sgd`.

    The targets :math:`s_j = 1 - (1-s)^{j/n}` shrink the density by a constant factor
    (:func:`optlab.stochastic.obs.density_schedule`); each round prunes the current weights with
    :func:`prune_mask` (pruned weights are zero, hence ranked first and stay pruned) and
    fine-tunes ``iters_per_step`` steps.  ``n_steps=1`` is one-shot pruning with fine-tuning.

    Returns
    -------
    Result
        ``x``, extras ``mask`` and ``counts`` (kept weights per layer); history per round:
        ``t``, ``n_evals``, ``sparsity`` (over ``layers``) and ``f`` with ``f``.

    Examples
    --------
    >>> res = gradual_prune(lambda x, rng: x - 2.0, [1.0, 4.0, 2.0, 3.0], layers=[slice(0, 4)],
    ...                     sparsity=0.5, n_steps=2, lr=0.5, momentum=0.0, iters_per_step=20)
    >>> res.x.round(3).tolist(), res.history["sparsity"].round(2).tolist()
    ([0.0, 2.0, 0.0, 2.0], [0.0, 0.25, 0.5])
    """
    check_callable(stoch_grad, "stoch_grad", signature="(x, rng) -> (d,) array")
    x, layers = _layers(x0, layers, "x0")
    targets = density_schedule(sparsity, n_steps)
    rule, gen = check_choice(rule, "rule", RULES), as_rng(rng)
    iters_per_step = check_int(iters_per_step, "iters_per_step", low=1)
    check_callable(f, "f", optional=True, signature="x -> float")
    trace = Trace("gradual_prune", {"sparsity": sparsity, "n_steps": n_steps, "rule": rule,
                                    "iters_per_step": iters_per_step}, callback)
    inside = np.zeros(x.size, dtype=bool)
    for sl in layers:
        inside[sl] = True
    mask, counts = np.ones(x.size, dtype=bool), keep_counts(x, layers, 0.0)

    def record(t):
        row = {"sparsity": 1.0 - float(np.mean(mask[inside]))}
        if f is not None:
            row["f"] = float(f(x))
        return trace.log(t, **row)

    n_done, stopped = 0, record(0)
    for t in range(0 if stopped else len(targets)):
        counts = keep_counts(x, layers, targets[t], rule, min_keep)
        mask = prune_mask(x, layers, targets[t], rule, min_keep)
        res = masked_sgd(stoch_grad, x, mask=mask, lr=lr, momentum=momentum, n_iters=iters_per_step,
                         n_log=1, rng=gen)
        trace.count("stoch_grad", res.n_evals["stoch_grad"])
        x, n_done = res.x, t + 1
        if trace.diverged(x, n_done) or record(n_done):
            break
    return trace.result(x, None if f is None else float(f(x)), n_iters=n_done, mask=mask, counts=counts)


def prune_and_finetune(problem, w, sparsity: float, rule: str = "global", *, min_keep: int = 0,
                       lr=0.05, n_iters: int = 300, rng=None):
    r"""One-shot pruning of ``w`` then :func:`masked_sgd` on ``problem.stoch_grad``: the chapter's protocol.

    Returns ``(accuracy, kept)``: ``problem.info["accuracy"]`` of the fine-tuned weights and the
    nonzero weights left in each layer of ``problem.info["layers"]``.
    """
    layers = problem.info["layers"]
    mask = prune_mask(w, layers, sparsity, rule, min_keep)
    x = masked_sgd(problem.stoch_grad, w, mask=mask, lr=lr, n_iters=n_iters, n_log=1, rng=rng).x
    return problem.info["accuracy"](x), np.array([np.count_nonzero(x[sl]) for sl in layers])


def flops_sparsity(counts, sizes, positions) -> float:
    r"""The share of multiply-adds removed: :math:`1 - \sum_l k_l P_l / \sum_l N_l P_l`.

    A weight of layer :math:`l` is used at :math:`P_l` output positions (1 for a dense layer,
    :math:`H_{out} W_{out}` for a convolution), so FLOPs sparsity equals weight sparsity only
    when all :math:`P_l` are equal (an MLP).

    >>> round(flops_sparsity([10, 50], [100, 100], [16, 1]), 4)
    0.8765
    """
    k, N, P = (np.asarray(a, dtype=float) for a in (counts, sizes, positions))
    if not (k.shape == N.shape == P.shape and k.ndim == 1) or np.any(k < 0) or np.any(k > N) or np.any(P <= 0):
        raise ValueError("counts, sizes and positions must be 1-d of one length with 0 <= counts <= sizes, "
                         f"positions > 0; got {k}, {N}, {P}")
    return float(1.0 - (k @ P) / (N @ P))


def digits_relu_mlp(widths=(64, 128, 128, 10), n_train: int = 1200, batch_size: int = 64, rng=0) -> Problem:
    r"""A ReLU MLP on scikit-learn's 8x8 digits, He-initialized: the softmax cross-entropy as a Problem.

    ``widths`` starts at 64 (pixels in [0, 1]) and ends at 10; :math:`W_l \sim N(0, 2/\text{fan-in})`,
    :math:`b_l = 0`; a random train/test split of ``n_train`` / ``1797 - n_train`` images, both
    drawn from ``rng``.  ``f``, ``grad``: mean training loss and gradient; ``stoch_grad(x, rng)``:
    a minibatch of ``batch_size``.  ``info``: ``layers`` (the slices of the weight matrices, the
    prunable part), ``fan_out`` (output units per layer), ``accuracy(x, split="test")``.
    """
    from sklearn.datasets import load_digits

    widths = tuple(check_int(n, "widths", low=1) for n in widths)
    if len(widths) < 2 or widths[0] != 64 or widths[-1] != 10:
        raise ValueError(f"widths must start at 64 and end at 10, got {widths}")
    n, bs, gen = check_int(n_train, "n_train", low=1, high=1796), check_int(batch_size, "batch_size", low=1), \
        as_rng(rng)
    X, y = load_digits(return_X_y=True)
    perm = gen.permutation(len(y))
    Xtr, ytr, Xte, yte = X[perm[:n]] / 16.0, y[perm[:n]], X[perm[n:]] / 16.0, y[perm[n:]]
    shapes, layers, start = list(zip(widths[:-1], widths[1:])), [], 0
    for a, b in shapes:
        layers.append(slice(start, start + a * b))
        start += a * b + b                                  # weights, then biases

    def unpack(x):
        return [(x[sl].reshape(a, b), x[sl.stop:sl.stop + b]) for sl, (a, b) in zip(layers, shapes)]

    def forward(x, Xb):
        acts = [Xb]
        for i, (W, b) in enumerate(unpack(x)):
            Z = acts[-1] @ W + b
            acts.append(np.maximum(Z, 0.0) if i < len(shapes) - 1 else Z)
        Z = acts[-1]
        P = np.exp(Z - Z.max(axis=1, keepdims=True))
        return acts, P / P.sum(axis=1, keepdims=True)

    def loss(x, Xb=Xtr, yb=ytr):
        P = forward(x, Xb)[1]
        return float(-np.mean(np.log(P[np.arange(len(yb)), yb] + 1e-300)))

    def batch_grad(x, Xb, yb):
        acts, P = forward(x, Xb)
        D = P.copy()
        D[np.arange(len(yb)), yb] -= 1.0
        D /= len(yb)
        g, params = np.empty_like(x), unpack(x)
        for i in range(len(shapes) - 1, -1, -1):
            sl = layers[i]
            g[sl], g[sl.stop:sl.stop + shapes[i][1]] = (acts[i].T @ D).ravel(), D.sum(axis=0)
            if i:
                D = (D @ params[i][0].T) * (acts[i] > 0)
        return g

    def accuracy(x, split: str = "test"):
        Xb, yb = {"test": (Xte, yte), "train": (Xtr, ytr)}[check_choice(split, "split", ("test", "train"))]
        return float(np.mean(forward(x, Xb)[1].argmax(axis=1) == yb))

    def stoch_grad(x, rng):
        idx = as_rng(rng).choice(n, size=min(bs, n), replace=False)
        return batch_grad(x, Xtr[idx], ytr[idx])

    x0 = np.zeros(start)
    for sl, (a, b) in zip(layers, shapes):
        x0[sl] = gen.standard_normal(a * b) * np.sqrt(2.0 / a)
    info = {"layers": layers, "fan_out": [b for _, b in shapes], "accuracy": accuracy, "widths": widths}
    return Problem(f"digits_relu_mlp({'-'.join(map(str, widths))})", f=loss,
                   grad=lambda x: batch_grad(x, Xtr, ytr), x0=x0, stoch_grad=stoch_grad, info=info)
