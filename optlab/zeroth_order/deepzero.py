r"""DeepZero: training a network from loss values alone, with coordinate-wise finite differences.

A zeroth-order (ZO) trainer sees the minibatch loss :math:`\ell(\theta)` only through its values.
DeepZero's ingredients, for the ReLU MLP of :mod:`optlab.zeroth_order.deepzero_mlp`:

* the **coordinate-wise gradient estimate** (CGE, :func:`cge`) instead of the randomized one
  (RGE, :func:`optlab.zeroth_order.estimators.gaussian_smoothing`);
* **sparse CGE**: a ZO GraSP score sets a sparsity ratio per layer (:func:`zo_grasp_ratios`);
  random masks at these ratios, re-drawn every few steps, choose the coordinates CGE perturbs
  (:func:`sparse_coords`); the weights stay dense;
* **feature reuse** and **forward parallelization**: one perturbed weight moves one unit of one
  layer, so :func:`cge` reuses the unperturbed pass and runs all perturbed passes of a layer as
  one tensor operation; :func:`cge_flops` and :func:`rge_flops` count forward FLOPs.

:func:`zo_sgd` trains with any of them (or with backpropagation, for reference).

References
----------
A. Chen, Y. Zhang, J. Jia, J. Diffenderfer, J. Liu, K. Parasyris, Y. Zhang, Z. Zhang, B. Kailkhura
and S. Liu, DeepZero: scaling up zeroth-order optimization for deep model training, ICLR 2024,
arXiv:2310.02025 (``chen2024deepzero``); see :func:`zo_sgd`.

Book: chapters/zeroth_order/deepzero.ipynb
"""
from __future__ import annotations

import numpy as np
import torch

from ..baselines import heavy_ball_state, heavy_ball_step
from ..core import Trace, as_rng, as_schedule, step_at
from ..validate import check_array, check_bool, check_choice, check_int, check_positive, check_probability, check_real
from . import deepzero_mlp as mlp
from .estimators import gaussian_smoothing

__all__ = ["cge", "zo_grasp_ratios", "ratios_from_scores", "sparse_coords", "zo_sgd"]


def _activation_change(z, dz):
    r"""How a ReLU unit's output moves when its input moves by ``dz``: relu(z + dz) - relu(z)."""
    return torch.relu(z + dz) - torch.relu(z)


def cge(theta, X, y, sizes, *, mu: float, coords=None):
    r"""Forward-difference CGE of the minibatch loss, with feature reuse: ``(g, queries)``.

    :math:`\hat g_k = (\ell(\theta + \mu e_k) - \ell(\theta))/\mu` for ``k`` in ``coords``
    (default: all), 0 elsewhere, ``|coords| + 1`` queries: the numbers of
    ``estimators.coordinate(loss_oracle(X, y, sizes), theta, mu=mu, coords=coords, central=False)``,
    from one cached pass.  Perturbing :math:`W_m[i, j]` (or :math:`b_m[i]`) adds
    :math:`\mu a_m[:, j]` (or :math:`\mu`) to unit ``i`` of :math:`z_{m+1}`: only that unit's
    activation is recomputed, it enters the next layer as a rank-one change, and the layers
    above run on all perturbed coordinates of the layer at once (one tensor operation).

    >>> from optlab.zeroth_order.deepzero_mlp import init_params
    >>> g, n = cge(init_params((4, 3, 2), rng=0), np.eye(4), [0, 1, 0, 1], (4, 3, 2), mu=1e-6)
    >>> g.shape, n
    ((23,), 24)
    """
    Xt, yt = mlp.check_data(X, y, sizes)
    sizes, mu, d = mlp.check_sizes(sizes), check_positive(mu, "mu"), mlp.n_params(sizes)
    theta = check_array(theta, "theta", shape=(d,))
    S, g = mlp.check_coords(coords, d), np.zeros(d)
    Theta = torch.from_numpy(theta)[None]
    layers = [(W[0], b[0]) for W, b in mlp._unflatten(Theta, sizes)]
    with torch.no_grad():
        acts, zs = [Xt], []             # the unperturbed pass: a_0 = X, z_1, a_1, ...
        for W, b in layers:
            zs.append(acts[-1] @ W.T + b)
            acts.append(torch.relu(zs[-1]))
        base = mlp.cross_entropy(zs[-1], yt)
        for m, (start, n_out, n_in) in enumerate(mlp.layout(sizes)):
            k = S[(S >= start) & (S < start + n_out * n_in + n_out)] - start
            if k.size == 0:
                continue
            is_w = k < n_out * n_in     # a weight W_m[unit, col], or the bias b_m[unit]
            unit = torch.from_numpy(np.where(is_w, k // n_in, k - n_out * n_in))
            v = acts[m][:, torch.from_numpy(k % n_in)].T
            dz = mu * torch.where(torch.from_numpy(is_w)[:, None], v, 1.0)  # (K, B)
            if m == len(layers) - 1:    # an output unit moves
                z = zs[m][None].repeat(len(k), 1, 1)
                z[torch.arange(len(k)), :, unit] += dz
            else:                       # a hidden unit moves: rank-one into layer m + 1
                da = _activation_change(zs[m][:, unit].T, dz)
                w_next = layers[m + 1][0][:, unit].T[:, None, :]
                z = torch.addcmul(zs[m + 1][None], da[:, :, None], w_next)
                for W, b in layers[m + 2:]:
                    z = torch.relu(z) @ W.T + b
            g[start + k] = ((mlp.cross_entropy(z, yt) - base) / mu).numpy()
    return g, int(S.size) + 1


def ratios_from_scores(score, sizes, sparsity: float) -> np.ndarray:
    r"""Prune the ``sparsity`` share of all weights (biases excluded) with the smallest ``score``,
    globally; return the share pruned in each layer.

    >>> ratios_from_scores(np.arange(23.0), (4, 3, 2), 0.5)
    array([0.75, 0.  ])
    """
    sizes, sparsity = mlp.check_sizes(sizes), check_probability(sparsity, "sparsity")
    score = check_array(score, "score", shape=(mlp.n_params(sizes),))
    weights = [np.arange(s, s + o * i) for s, o, i in mlp.layout(sizes)]
    all_w = np.concatenate(weights)
    pruned = np.zeros(score.size, dtype=bool)
    n_pruned = int(round(sparsity * all_w.size))
    pruned[all_w[np.argsort(score[all_w], kind="stable")[:n_pruned]]] = True
    return np.array([pruned[w].mean() for w in weights])


def zo_grasp_ratios(X, y, theta, sizes, *, sparsity: float, mu: float = 5e-3, n_dirs: int = 192,
                    common_directions: bool = True, rng=None):
    r"""Layer-wise sparsity ratios from a zeroth-order GraSP score: ``(ratios, queries)``.

    Two RGEs, :math:`\hat g = \hat\nabla\ell(\theta)` and
    :math:`\hat g' = \hat\nabla\ell(\theta + \mu\hat g)`, estimate the Hessian-gradient product
    :math:`\widehat{Hg} = (\hat g' - \hat g)/\mu`; a weight's score is
    :math:`|\theta \odot \widehat{Hg}|` (:func:`ratios_from_scores` prunes the smallest).  With
    ``common_directions`` both RGEs share their directions (the official code draws new ones).
    ``2 (n_dirs + 1)`` queries.
    """
    theta = check_array(theta, "theta", shape=(mlp.n_params(sizes),))
    mu, q = check_positive(mu, "mu"), check_int(n_dirs, "n_dirs", low=1)
    check_probability(sparsity, "sparsity")
    common_directions = check_bool(common_directions, "common_directions")
    f, seeds = mlp.loss_oracle(X, y, sizes), as_rng(rng).integers(2**63 - 1, size=2)
    seed0, seed1 = int(seeds[0]), int(seeds[0 if common_directions else 1])
    g0, n0 = gaussian_smoothing(f, theta, mu=mu, n_dirs=q, rng=seed0)
    g1, n1 = gaussian_smoothing(f, theta + mu * g0, mu=mu, n_dirs=q, rng=seed1)
    hg = (g1 - g0) / mu             # the Hessian-gradient product, from values only
    return ratios_from_scores(np.abs(theta * hg), sizes, sparsity), n0 + n1


def sparse_coords(sizes, ratios, rng=None) -> np.ndarray:
    r"""The coordinates sparse CGE perturbs: in layer ``m``, a random share ``1 - ratios[m]`` of the
    weights (``round(ratios[m] n)`` of them masked), and every bias.

    >>> sparse_coords((4, 3, 2), [1.0, 0.0], rng=0).tolist()
    [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]
    """
    sizes, gen = mlp.check_sizes(sizes), as_rng(rng)
    ratios = check_array(ratios, "ratios", shape=(len(sizes) - 1,))
    if np.any((ratios < 0) | (ratios > 1)):
        raise ValueError(f"ratios must be shares in [0, 1], got {ratios.tolist()}")
    keep = []
    for (start, n_out, n_in), r in zip(mlp.layout(sizes), ratios):
        n_w = n_out * n_in
        kept_w = gen.choice(n_w, n_w - int(round(r * n_w)), replace=False)
        keep += [start + np.sort(kept_w), np.arange(start + n_w, start + n_w + n_out)]
    return np.concatenate(keep)


_ESTIMATORS = ("cge", "rge", "backprop")


def zo_sgd(X, y, x0, *, sizes, lr, n_iters: int, estimator: str = "cge",
           mu: float = 5e-3, n_dirs=None, batch_size: int = 128, sparsity: float = 0.0,
           mask_every: int = 50, grasp_dirs: int = 192, beta: float = 0.0,
           X_test=None, y_test=None, log_every: int = 10, rng=None, callback=None):
    r"""Train the MLP by SGD on zeroth-order estimates of the minibatch gradient (DeepZero).

    Each step draws a minibatch, estimates :math:`\nabla\ell_t(\theta_t)` from loss values only (CGE
    with feature reuse, sparse CGE or RGE) and takes a heavy-ball step; ``estimator="backprop"``
    runs the same loop with the exact gradient, the first-order reference.

    Parameters
    ----------
    X, y : array_like
        Training inputs ``(n, sizes[0])`` and labels in ``[0, sizes[-1])``.
    x0 : array_like, shape (d,)
        Initial parameters (:func:`~optlab.zeroth_order.deepzero_mlp.init_params`; not modified).
    sizes : sequence of int
        Layer widths, inputs first, classes last.
    lr : float or callable
        Step size :math:`\eta_t` or a schedule ``t -> float``.
    n_iters : int
        Number of steps.
    estimator : {"cge", "rge", "backprop"}
        The gradient estimate.
    mu : float
        Finite-difference step :math:`\mu` (the paper's code: 5e-3, in float32).
    n_dirs : int or None
        RGE's number of directions :math:`q` (required for ``"rge"``).
    batch_size : int
        Minibatch size :math:`B`.
    sparsity : float in [0, 1)
        With ``"cge"``, sparse CGE: at ``x0``, :func:`zo_grasp_ratios` (``grasp_dirs`` directions, on the
        first minibatch, queries counted) sets the layer-wise ratios; :func:`sparse_coords` draws
        masks at these ratios every ``mask_every`` steps.
    beta : float in [0, 1)
        Heavy-ball momentum (0: plain SGD; the paper's code uses 0.9).
    X_test, y_test : array_like or None
        Held-out data whose accuracy is logged (not counted as queries).
    log_every : int
        Log every this many steps (and the first and the last step).
    rng : None, int or numpy.random.Generator
        Seeds two streams: the minibatches (the same for every estimator) and the estimator's.
    callback : callable or None
        ``callback(record) -> bool`` at each logged step; True stops the run.

    Returns
    -------
    Result
        ``x``: the parameters; ``f``: the training loss at ``x``; ``n_evals``: ``{"f": queries}`` or
        ``{"grad": steps}``.  Extras: ``flops`` (forward FLOPs of all estimates, :func:`cge_flops` with
        unit reuse or :func:`rge_flops`, times :math:`B`), ``ratios`` (sparse CGE, else None),
        ``test_acc``.  History: ``t``, ``n_evals``, ``flops``, ``loss`` (training loss), ``test_acc``.

    Notes
    -----
    :math:`\theta_{t+1} = \theta_t + v_{t+1}`, :math:`v_{t+1} = \beta v_t - \eta_t \hat g_t`
    (:func:`optlab.baselines.heavy_ball_step`; its torch adapter is
    ``optlab.baselines.torch_optimizer("heavy_ball", ...)``), with CGE
    :math:`\hat g_t = \sum_{k \in S} \frac{\ell_t(\theta_t + \mu e_k) - \ell_t(\theta_t)}{\mu} e_k`
    (:math:`|S| + 1` queries; :math:`S` all coordinates or the unmasked ones) or RGE
    :math:`\hat g_t = \frac1q\sum_{i=1}^q \frac{\ell_t(\theta_t + \mu u_i) - \ell_t(\theta_t)}{\mu} u_i`,
    :math:`u_i \sim N(0, I_d)` (:math:`q + 1` queries).  For an :math:`L`-smooth loss CGE errs by at
    most :math:`L\mu\sqrt{|S|}/2`; RGE is unbiased for the Gaussian smoothing of :math:`\ell_t`, with
    variance about :math:`(d + 1)\|\nabla\ell_t\|^2/q`.  Unlike the paper's code: RGE's directions are
    :math:`N(0, I)` with the :math:`1/q` average (the code normalizes each tensor's direction), ZO-GraSP
    shares its directions, no warm-up or cosine schedule unless ``lr`` is one.

    Book: chapters/zeroth_order/deepzero.ipynb

    Examples
    --------
    >>> from optlab.zeroth_order.deepzero_mlp import init_params
    >>> X, y = np.eye(4).repeat(4, axis=0), np.repeat([0, 1, 1, 0], 4)  # a learnable XOR-like map
    >>> res = zo_sgd(X, y, init_params((4, 3, 2), rng=0), sizes=(4, 3, 2), lr=0.5, n_iters=20,
    ...              batch_size=8, rng=0)
    >>> res.n_evals, bool(res.f < 0.5 * res.history["loss"][0])
    ({'f': 480}, True)
    """
    sizes = mlp.check_sizes(sizes)
    X, y = (v.numpy() for v in mlp.check_data(X, y, sizes))
    theta = check_array(x0, "x0", shape=(mlp.n_params(sizes),))
    schedule, n_iters = as_schedule(lr), check_int(n_iters, "n_iters", low=1)
    estimator = check_choice(estimator, "estimator", _ESTIMATORS)
    mu = check_positive(mu, "mu")
    beta = check_probability(beta, "beta", open_right=True)
    B = check_int(batch_size, "batch_size", low=1, high=len(X))
    sparsity = check_real(sparsity, "sparsity", low=0.0, high=1.0, high_open=True)
    mask_every = check_int(mask_every, "mask_every", low=1)
    log_every = check_int(log_every, "log_every", low=1)
    if estimator == "rge" and n_dirs is None:
        raise ValueError("estimator 'rge' needs n_dirs, the number of directions q "
                         "(an int >= 1)")
    q = None if n_dirs is None else check_int(n_dirs, "n_dirs", low=1)
    grasp_dirs = check_int(grasp_dirs, "grasp_dirs", low=1)
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test go together: give both or neither")
    if X_test is not None:
        mlp.check_data(X_test, y_test, sizes, name="X_test")
    data_rng, est_rng = (np.random.default_rng(int(s))   # minibatches; the estimator
                         for s in as_rng(rng).integers(2**63 - 1, size=2))
    tr = Trace("zo_sgd", {"sizes": sizes, "lr": lr, "estimator": estimator, "mu": mu,
                          "n_dirs": q, "batch_size": B, "sparsity": sparsity,
                          "mask_every": mask_every, "beta": beta}, callback)
    state, flops, coords, ratios, done = heavy_ball_state(theta), 0, None, None, 0

    def log(t):
        row = {"flops": flops, "loss": mlp.batch_loss(theta[None], X, y, sizes)[0]}
        if X_test is not None:
            row["test_acc"] = mlp.accuracy(theta, X_test, y_test, sizes)
        return tr.log(t, **row)

    stop = log(0)
    for t in range(0 if stop else n_iters):
        batch = data_rng.choice(len(X), B, replace=False)
        Xb, yb = X[batch], y[batch]
        if estimator == "cge" and sparsity > 0 and t % mask_every == 0:
            if ratios is None:  # ZO-GraSP once, at x0: it sets the layer-wise ratios
                ratios, n_q = zo_grasp_ratios(Xb, yb, theta, sizes, sparsity=sparsity,
                                              mu=mu, n_dirs=grasp_dirs, rng=est_rng)
                tr.count("f", n_q)
                flops += 2 * mlp.rge_flops(sizes, grasp_dirs) * B
            coords = sparse_coords(sizes, ratios, est_rng)
        if estimator == "cge":
            g, n_q = cge(theta, Xb, yb, sizes, mu=mu, coords=coords)
            flops += mlp.cge_flops(sizes, coords) * B
        elif estimator == "rge":
            f_t = mlp.loss_oracle(Xb, yb, sizes)
            g, n_q = gaussian_smoothing(f_t, theta, mu=mu, n_dirs=q, rng=est_rng)
            flops += mlp.rge_flops(sizes, q) * B
        else:
            g, n_q = mlp.backprop_grad(theta, Xb, yb, sizes), 0
            tr.count("grad")
        if n_q:
            tr.count("f", n_q)
        eta = step_at(schedule, t)
        theta, state = heavy_ball_step(theta, g, state, lr=eta, beta=beta)
        done = t + 1
        if tr.diverged(theta, done):
            break
        if (done % log_every == 0 or done == n_iters) and log(done):
            break
    finite = X_test is not None and np.all(np.isfinite(theta))
    acc = mlp.accuracy(theta, X_test, y_test, sizes) if finite else None
    loss = float(mlp.batch_loss(theta[None], X, y, sizes)[0])
    return tr.result(theta, loss, n_iters=done, flops=flops, ratios=ratios,
                     test_acc=acc)
