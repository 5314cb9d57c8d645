r"""NIW-Meta with a learned feature map: a tiny MLP whose last, linear layer carries the NIW prior.

The network version of :mod:`optlab.bilevel.meta_learning`.  The model of episode :math:`i` is
:math:`y = \phi_w(x)^\top\theta_i + \varepsilon` with :math:`\phi_w` a small tanh MLP (plus a bias
feature) shared by all episodes and :math:`\theta_i` the episode's last-layer weights under the
global Normal-Inverse-Wishart variable.  Given :math:`w`, the model is linear in :math:`\theta_i`, so
the one-time local posterior stays exact and closed form; :func:`niw_meta_network` learns the NIW
parameters and :math:`w` jointly by Adam on the episodic ELBO over fresh episodes.  Both gradients are
partial derivatives at the fixed local posteriors (the envelope theorem): no graph is kept through the
local update.  :func:`maml_network` is the MAML baseline on the same network (all weights adapted
by :func:`maml_adapt`, second-order meta-gradient through the unrolled inner loop).  This module
imports torch; ``import optlab`` does not import it.

References
----------
M. Kim and T. Hospedales, A hierarchical Bayesian model for deep few-shot meta learning,
arXiv:2306.09702 (``kim2023hierarchical``).

Book: chapters/bilevel/meta_learning.ipynb
"""
from __future__ import annotations

import numpy as np
import torch

from ..baselines import adam_step, torch_optimizer
from ..core import Trace, as_rng, as_schedule, step_at
from ..validate import check_array, check_callable, check_int, check_positive, check_real
from . import meta_learning as ml
from .sineline import RandomFeatures

__all__ = ["init_mlp", "mlp_features", "torch_random_features", "numpy_features", "expected_loglik",
           "niw_meta_network", "maml_adapt", "maml_network", "maml_predict"]


def init_mlp(widths=(32, 32), *, scale: float = 5.0, head: bool = False, rng=0) -> list:
    r"""Weights of a tanh MLP :math:`\mathbb R \to \mathbb R^{h}` (float64 leaf tensors, ``requires_grad``).

    Glorot-normal weights; the first layer's are divided by ``scale``, the half-width of the input
    range, so that the first tanh layer is not saturated on :math:`[-5, 5]`.  Returns
    ``[W1, b1, W2, b2, ...]`` with ``W`` of shape (fan_in, fan_out); with ``head`` a last linear
    layer to one output (zero weights) is appended, the network that :func:`maml_network` adapts.

    >>> [tuple(p.shape) for p in init_mlp((4, 3))]
    [(1, 4), (4,), (4, 3), (3,)]
    """
    widths = tuple(check_int(h, "widths", low=1) for h in widths)
    if not widths:
        raise ValueError("widths must list at least one hidden layer width")
    scale, gen = check_positive(scale, "scale"), as_rng(rng)
    params, fan_in = [], 1
    for j, h in enumerate(widths):
        W = gen.standard_normal((fan_in, h)) * np.sqrt(2.0 / (fan_in + h)) / (scale if j == 0 else 1.0)
        b = 0.1 * gen.standard_normal(h) if j == 0 else np.zeros(h)
        params += [torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)]
        fan_in = h
    if head:
        params += [torch.zeros(fan_in, 1, dtype=torch.float64, requires_grad=True),
                   torch.zeros(1, dtype=torch.float64, requires_grad=True)]
    return params


def mlp_features(x, params):
    r""":math:`\phi_w(x) = [\tanh(\cdots\tanh(x W_1 + b_1)\cdots W_L + b_L),\ 1]`: the MLP's last hidden
    layer plus a bias feature, on a tensor of scalar inputs (a last axis is added)."""
    h = x[..., None]
    for W, b in zip(params[::2], params[1::2]):
        h = torch.tanh(h @ W + b)
    return torch.cat([h, torch.ones_like(h[..., :1])], dim=-1)


def torch_random_features(rff: RandomFeatures):
    r"""The fixed random Fourier features of :class:`~optlab.bilevel.sineline.RandomFeatures` as a torch
    feature map ``(x, params) -> Phi`` that ignores ``params`` (the frozen, linear-in-features case)."""
    omega, phase = torch.as_tensor(rff.omega), torch.as_tensor(rff.phase)

    def features(x, params):
        rf = np.sqrt(2.0 / len(omega)) * torch.cos(x[..., None] * omega + phase)
        return torch.cat([rf, torch.ones_like(x[..., None])], dim=-1)

    return features


def numpy_features(features, params):
    r"""A numpy feature map ``x -> Phi`` (float64 array) from a torch one and its weights, for
    :func:`~optlab.bilevel.meta_learning.evaluate` and the other numpy functions."""
    check_callable(features, "features", signature="(x, params) -> Phi")
    kept = [p.detach().clone() for p in params]

    def phi(x):
        with torch.no_grad():
            return features(torch.as_tensor(np.asarray(x, dtype=float)), kept).numpy()

    return phi


def expected_loglik(Phi, y, m, V, noise: float):
    r""":math:`E_{q_i}\log p(y_i \mid \theta) = -\frac k2\log(2\pi s^2)
    - \frac{\|y_i - \Phi_i m_i\|^2 + \mathrm{tr}(\Phi_i V_i\Phi_i^\top)}{2s^2}` per episode, in torch.

    The only term of the ELBO that depends on the features at fixed local posteriors ``(m, V)``
    (arrays (n, D) and (n, D, D), constants); ``Phi`` (n, k, D) and ``y`` (n, k) tensors or arrays."""
    s2 = check_positive(noise, "noise") ** 2
    y, m, V = (torch.as_tensor(a, dtype=Phi.dtype) for a in (y, m, V))
    r = y - torch.einsum("nkd,nd->nk", Phi, m)
    tr = torch.einsum("nkd,nde,nke->n", Phi, V, Phi)
    const = -0.5 * Phi.shape[1] * np.log(2 * np.pi * s2)
    return const - (torch.sum(r**2, 1) + tr) / (2 * s2)


def niw_meta_network(sample_tasks, x0: dict, *, features, params, lr, feature_lr,
                     n_iters: int, noise: float, kl_weight: float = 1e-4, prior=None,
                     rng=None, callback=None):
    r"""NIW-Meta with a learned feature map: Adam on the episodic ELBO in the NIW parameters and in w.

    Parameters
    ----------
    sample_tasks : callable
        ``sample_tasks(rng) -> (x, y)``: a batch of fresh episodes, inputs and targets (n, k).
    x0 : dict
        Initial NIW parameters ``{m0, l0, Lam, nu}`` (:func:`~optlab.bilevel.meta_learning.init_niw`) of
        dimension D, the number of features.
    features : callable
        ``features(x, params) -> Phi``, torch, (n, k) inputs to (n, k, D) features
        (:func:`mlp_features`, or :func:`torch_random_features` for a frozen map).
    params : list of torch.Tensor
        The feature map's initial weights (:func:`init_mlp`); copied, never modified.  An empty list
        freezes the features: the run is then :func:`~optlab.bilevel.meta_learning.niw_meta`.
    lr, feature_lr : float or callable
        Adam steps of the NIW parameters and of the feature weights.
    n_iters, noise, kl_weight, prior, rng, callback
        As in :func:`~optlab.bilevel.meta_learning.niw_meta`.

    Returns
    -------
    Result
        ``x``: the NIW parameters; ``f``: minus the last batch's ELBO.  Extras ``mean``, ``cov`` (the
        prior of the local update, as in ``niw_meta``) and ``params`` (the trained weights, detached).
        History columns ``f`` (minus the ELBO per episode), ``nu``; ``n_evals["episodes"]``.

    Notes
    -----
    Step t: features :math:`\Phi_i = \phi_w(x_i)`; the one-time update
    :math:`V_i = (\Phi_i^\top\Phi_i/s^2 + \nu\Lambda^{-1})^{-1}`, :math:`m_i = V_i(\Phi_i^\top y_i/s^2 +
    \nu\Lambda^{-1}m_0)`; the envelope gradient in the NIW parameters
    (:func:`~optlab.bilevel.meta_learning.elbo_and_grad`); the gradient in w of
    :func:`expected_loglik` at fixed :math:`(m_i, V_i)` by autograd, which equals the total derivative
    through the closed form because :math:`q_i` maximizes the ELBO for every w; one Adam step on each.
    Cost per step: a forward and backward pass of the network on the batch plus
    :math:`O(n(k^3 + kD^2) + nD^3)`.  No convergence guarantee (a nonconvex objective in w).  Differences
    from the paper: the paper puts the NIW prior on all the network's weights and approximates the local
    posterior by a diagonal quadratic expansion around a few inner SGD steps; here only the last layer
    is Bayesian, so the local posterior is exact, and the body is a point estimate.

    References
    ----------
    M. Kim and T. Hospedales, arXiv:2306.09702 (``kim2023hierarchical``).

    Book: chapters/bilevel/meta_learning.ipynb

    Examples
    --------
    >>> from optlab.bilevel.sineline import sineline_tasks
    >>> def tasks(g):
    ...     t = sineline_tasks(8, 10, rng=g)
    ...     return t["x"], t["y"]
    >>> res = niw_meta_network(tasks, ml.init_niw(5), features=mlp_features, params=init_mlp((4,)),
    ...                        lr=0.05, feature_lr=0.01, n_iters=30, noise=0.3, rng=0)
    >>> bool(res.history["f"][-5:].mean() < res.history["f"][:5].mean()), len(res.extras["params"])
    (True, 2)
    """
    check_callable(sample_tasks, "sample_tasks", signature="rng -> (x, y)")
    check_callable(features, "features", signature="(x, params) -> Phi")
    if not isinstance(params, (list, tuple)) or not all(
            isinstance(p, torch.Tensor) for p in params):
        raise TypeError("params must be a list of torch tensors (possibly empty)")
    if not isinstance(x0, dict) or set(x0) != {"m0", "l0", "Lam", "nu"}:
        raise TypeError("x0 must be a dict with keys m0, l0, Lam, nu")
    D = len(check_array(x0["m0"], "x0['m0']", ndim=1))
    schedule = as_schedule(lr)
    f_schedule = as_schedule(feature_lr, "feature_lr")
    n_iters = check_int(n_iters, "n_iters", low=1)
    noise = check_positive(noise, "noise")
    kl_weight = check_real(kl_weight, "kl_weight", low=0.0)
    prior = ml.init_niw(D) | {"Lam": np.eye(D)} if prior is None else prior
    # validates x0: a zero step on an empty episode
    ml.niw_meta(lambda g: (np.zeros((1, 1, D)), np.zeros((1, 1))), x0, lr=0.0,
                n_iters=1, noise=noise)
    gen = as_rng(rng)
    w = [p.detach().clone().requires_grad_(True) for p in params]
    opt = torch_optimizer("adam", w, lr=step_at(f_schedule, 0)) if w else None
    trace = Trace("niw_meta_network", {"lr": schedule, "feature_lr": f_schedule,
                                       "n_iters": n_iters, "noise": noise,
                                       "kl_weight": kl_weight}, callback)
    theta = ml.pack({k: np.array(v, dtype=float) for k, v in x0.items()})
    state = {"m": np.zeros_like(theta), "v": np.zeros_like(theta), "k": 0}
    for t in range(n_iters):
        x, y = sample_tasks(gen)
        trace.count("episodes", len(y))
        Phi_t = features(torch.as_tensor(np.asarray(x, dtype=float)), w)
        Phi = Phi_t.detach().numpy()
        # NIW parameters: the envelope gradient (no graph through the local update)
        elbo, g, m = ml.elbo_and_grad(theta, Phi, y, noise=noise, prior=prior,
                                      kl_weight=kl_weight)
        if opt is not None:
            # features: autograd of E_q log p(y | theta) at fixed q_i = N(m_i, V_i)
            L = ml.unpack(theta, D)
            _, V = ml.local_posterior(Phi, y, L["m0"], ml.expected_cov(L), noise)
            opt.zero_grad()
            (-expected_loglik(Phi_t, y, m, V, noise).mean()).backward()
            for group in opt.param_groups:
                group["lr"] = step_at(f_schedule, t)
            opt.step()
        theta, state = adam_step(theta, -g, state, lr=step_at(schedule, t),
                                 beta1=0.9, beta2=0.999, eps=1e-8)     # ascent
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            L = ml.unpack(theta, D)
            w_flat = [p.detach().numpy().ravel() for p in w]
            blocks = {"theta": theta, "Lam": L["Lam"], "l0": np.log(L["l0"]),
                      "nu": np.log(L["nu"] - D + 1),
                      "w": np.concatenate(w_flat + [np.zeros(0)])}
        if trace.diverged(blocks, t + 1) or trace.log(t, f=-elbo, nu=L["nu"]):
            break
    x = {k: L[k] for k in ("m0", "l0", "Lam", "nu")}
    f = -elbo if trace.message is None else None
    return trace.result(x, f, n_iters=t + 1, mean=L["m0"], cov=ml.expected_cov(L),
                        params=[p.detach().clone() for p in w])


# ------------------------------------------------------------------ MAML on the same network

def _net_out(x, ws):
    """The MLP with a linear head, one weight set per task (leading axis n): (n, k) -> (n, k)."""
    h = x[..., None]
    for W, b in zip(ws[:-2:2], ws[1:-2:2]):
        h = torch.tanh(h @ W + b[:, None, :])
    return (h @ ws[-2] + ws[-1][:, None, :])[..., 0]


def maml_adapt(params, x_s, y_s, *, inner_lr: float, n_steps: int, create_graph: bool = False):
    r"""MAML's inner loop on every task at once: ``n_steps`` gradient steps of size ``inner_lr`` on
    the support loss :math:`\frac1k\|f_w(x_s) - y_s\|^2` from the shared weights ``params``
    (:func:`init_mlp` with ``head=True``).  Returns the per-task weights (leading axis n);
    ``create_graph`` keeps the graph for the meta-gradient."""
    x_s, y_s = torch.as_tensor(x_s, dtype=torch.float64), torch.as_tensor(y_s, dtype=torch.float64)
    alpha, T = check_positive(inner_lr, "inner_lr"), check_int(n_steps, "n_steps", low=0)
    ws = [p.expand(len(x_s), *p.shape) for p in params]
    with torch.enable_grad():
        for _ in range(T):
            if not create_graph:                          # first order: fresh leaves
                ws = [w.detach().requires_grad_(True) for w in ws]
            loss = torch.sum(torch.mean((_net_out(x_s, ws) - y_s) ** 2, 1))   # sum over tasks
            grads = torch.autograd.grad(loss, ws, create_graph=create_graph)
            ws = [w - alpha * g for w, g in zip(ws, grads)]
    return ws if create_graph else [w.detach() for w in ws]


def maml_network(sample_episodes, params, *, lr, n_iters: int, inner_lr: float, n_steps: int,
                 rng=None, callback=None):
    r"""MAML on the MLP with a linear head: Adam on the query loss after ``n_steps`` inner steps.

    ``sample_episodes(rng) -> (x_s, y_s, x_q, y_q)``; ``params`` from :func:`init_mlp` with
    ``head=True`` (copied).  The meta-gradient backpropagates through the unrolled inner loop
    (second order).  Returns a Result with ``x`` the learned weights flattened, extra ``params``
    (the same as a list of tensors), history column ``f`` (the batch's mean query MSE) and ``n_evals["episodes"]``.

    References: C. Finn, P. Abbeel and S. Levine, arXiv:1703.03400 (``finn2017model``).
    """
    check_callable(sample_episodes, "sample_episodes", signature="rng -> (x_s, y_s, x_q, y_q)")
    if not isinstance(params, (list, tuple)) or len(params) < 4 or not all(
            isinstance(p, torch.Tensor) for p in params):
        raise TypeError("params must be a list of torch tensors with a head (init_mlp(head=True))")
    schedule, n_iters = as_schedule(lr), check_int(n_iters, "n_iters", low=1)
    check_positive(inner_lr, "inner_lr"), check_int(n_steps, "n_steps", low=0)
    gen = as_rng(rng)
    w = [p.detach().clone().requires_grad_(True) for p in params]
    opt = torch_optimizer("adam", w, lr=step_at(schedule, 0))
    trace = Trace("maml_network", {"lr": schedule, "n_iters": n_iters, "inner_lr": inner_lr,
                                   "n_steps": n_steps}, callback)
    for t in range(n_iters):
        x_s, y_s, x_q, y_q = sample_episodes(gen)
        trace.count("episodes", len(y_s))
        ws = maml_adapt(w, x_s, y_s, inner_lr=inner_lr, n_steps=n_steps, create_graph=True)
        loss = torch.mean((_net_out(torch.as_tensor(x_q, dtype=torch.float64), ws)
                           - torch.as_tensor(y_q, dtype=torch.float64)) ** 2)
        opt.zero_grad()
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = step_at(schedule, t)
        opt.step()
        flat = np.concatenate([p.detach().numpy().ravel() for p in w])
        if trace.diverged(flat, t + 1) or trace.log(t, f=float(loss.detach())):
            break
    f = float(loss.detach()) if trace.message is None else None
    return trace.result(flat, f, n_iters=t + 1, params=[p.detach().clone() for p in w])


def maml_predict(params, x_s, y_s, x_q, *, inner_lr: float, n_steps: int):
    """Adapt to each support set (:func:`maml_adapt`) and predict at the query inputs (numpy)."""
    ws = maml_adapt(params, x_s, y_s, inner_lr=inner_lr, n_steps=n_steps)
    with torch.no_grad():
        return _net_out(torch.as_tensor(x_q, dtype=torch.float64), ws).numpy()
