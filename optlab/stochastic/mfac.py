r"""M-FAC over a sliding window: inverse-Fisher products in O(dm + m^2) and preconditioned SGD.

The damped empirical Fisher of the last :math:`m` gradients :math:`g_1, \dots, g_m \in \mathbb R^d`,
:math:`F = \lambda I + \frac1m \sum_i g_i g_i^\top`, is inverted through the static
Sherman-Morrison chain of :func:`optlab.stochastic.obs.static_inverse`, rewritten so that it needs
only the window :math:`G` (rows :math:`g_i`), its Gram matrix :math:`K = GG^\top` and coefficients
:math:`B` with :math:`v_i = \sum_k B_{ik} g_k`: replacing the oldest gradient costs
:math:`O(dm + m^3)` (:func:`window_replace`), a product :math:`O(dm + m^2)` (:func:`window_ihvp`).
:func:`mfac` is SGD preconditioned by the window; its one pure step :func:`mfac_step` also drives
a ``torch.optim.Optimizer`` (:func:`torch_optimizer`).  :func:`ihvp_times` times the dense solve
against both M-FAC algorithms.

References
----------
E. Frantar, E. Kurtic and D. Alistarh, M-FAC: efficient matrix-free approximations of
second-order information, NeurIPS 2021, arXiv:2107.03356 (``frantar2021mfac``).

Book: chapters/stochastic/mfac.ipynb
"""
from __future__ import annotations

import functools
import time

import numpy as np

from ..core import Trace, array_namespace, as_array, as_rng, as_schedule, check_oracle, step_at
from ..validate import check_callable, check_int, check_positive, check_probability, check_real, describe
from . import obs as _obs

__all__ = ["mfac_state", "window_replace", "window_ihvp", "mfac_step", "mfac", "torch_optimizer",
           "TIMED", "ihvp_times"]

_KEYS = {"G", "K", "B", "denom", "last", "u"}


def _copy(a):
    """A copy of a numpy array or a torch tensor."""
    return a.clone() if hasattr(a, "clone") else a.copy()


def _check_window(state, v, name):
    """``state`` is a window of :func:`mfac_state` and ``v`` a flat array or tensor of its dimension."""
    if not isinstance(state, dict) or not _KEYS <= set(state):
        raise TypeError(f"state must be a window made by mfac_state, got {describe(state)}")
    d = state["G"].shape[1]
    if not hasattr(v, "shape") or tuple(v.shape) != (d,):
        shape = f" of shape {tuple(v.shape)}" if hasattr(v, "shape") else ""
        raise ValueError(f"{name} must be a flat array or tensor of {d} entries (the window's), "
                         f"got {describe(v)}{shape}")


# --------------------------------------------------------------------------- the dynamic algorithm

def _coefficients(K, damp, B, denom, start):
    r"""Rows ``start, ..., m-1`` of :math:`B` and :math:`\rho` from the Gram matrix :math:`K` (pure).

    :math:`v_i = \sum_k B_{ik} g_k` makes :math:`v_j^\top g_i = (BK)_{ji}`, so the static recursion
    runs on :math:`m`-vectors: :math:`B_i = \lambda^{-1}e_i - \sum_{j<i} ((BK)_{ji}/\rho_j)\,B_j` and
    :math:`\rho_i = m + (BK)_{ii}`.  Rows below ``start`` depend only on the gradients before
    ``start``: they are kept.  :math:`O(m^3)`; numpy arrays or torch tensors.
    """
    m = K.shape[0]
    B, denom, BK = _copy(B), _copy(denom), _copy(K) * 0
    BK[:start] = B[:start] @ K
    for i in range(start, m):
        b = -(BK[:i, i] / denom[:i]) @ B[:i]     # B[:i] vanishes in columns >= i
        b[i] = 1.0 / damp
        B[i], BK[i] = b, b @ K
        denom[i] = m + BK[i, i]
    return B, denom


def mfac_state(x, *, n_grads: int, damp: float) -> dict:
    r"""The window before the first step: :math:`m` zero gradients, so :math:`F = \lambda I`.

    A dict of arrays like ``x`` (numpy or torch): ``G`` (:math:`m \times d`), ``K``, ``B``,
    ``denom`` (:math:`\rho`), ``last`` (the ring-buffer index of the oldest gradient) and ``u``
    (the momentum of :func:`mfac_step`).
    """
    if not hasattr(x, "shape") or len(x.shape) != 1:
        raise ValueError(f"x must be a flat numpy array or torch tensor, got {describe(x)}")
    m, lam = check_int(n_grads, "n_grads", low=1), check_positive(damp, "damp")
    xp, d, dt = array_namespace(x), x.shape[0], x.dtype
    return {"G": xp.zeros((m, d), dtype=dt), "K": xp.zeros((m, m), dtype=dt),
            "B": xp.eye(m, dtype=dt) / lam, "denom": xp.full((m,), float(m), dtype=dt),
            "last": 0, "u": xp.zeros((d,), dtype=dt)}


def window_replace(state, g, damp):
    r"""Replace the oldest gradient of the window by ``g`` (pure): :math:`O(dm + m^3)`.

    Row ``last`` of :math:`G` becomes ``g``, row and column ``last`` of :math:`K = GG^\top` become
    :math:`Gg` (:math:`O(dm)`), and the coefficient rows from ``last`` on are recomputed from
    :math:`K` (:math:`O(m^3)`); ``last`` moves on by one, cyclically.
    """
    _check_window(state, g, "g")
    lam = check_positive(damp, "damp")
    G, K, r = _copy(state["G"]), _copy(state["K"]), state["last"]
    G[r] = g
    row = G @ g                                  # the new row and column of K = G G^T
    K[r, :], K[:, r] = row, row
    B, denom = _coefficients(K, lam, state["B"], state["denom"], r)
    m = K.shape[0]
    return {**state, "G": G, "K": K, "B": B, "denom": denom, "last": (r + 1) % m}


def window_ihvp(state, x, damp):
    r"""The product :math:`F^{-1}x = \lambda^{-1}x - G^\top B^\top \mathrm{diag}(\rho)^{-1} B\,Gx`, O(dm + m^2).

    ``x``: a flat array or tensor of the window's dimension; pure.
    """
    _check_window(state, x, "x")
    lam = check_positive(damp, "damp")
    p = state["B"] @ (state["G"] @ x)            # p_j = v_j^T x
    c = (p / state["denom"]) @ state["B"]        # coefficients on the raw gradients
    return x / lam - c @ state["G"]


def mfac_step(x, g, state, *, lr, damp, momentum=0.0, weight_decay=0.0):
    r"""One M-FAC step (pure; numpy arrays or torch tensors, ``x`` flat).

    .. math::
        \tilde g_t = g_t + \omega x_t, \quad \text{window} \leftarrow \tilde g_t, \quad
        u_t = \beta u_{t-1} + (1-\beta) F_t^{-1}\tilde g_t, \quad x_{t+1} = x_t - \eta_t u_t,

    with :math:`F_t` the damped Fisher of the window that already holds :math:`\tilde g_t`.
    """
    _check_window(state, x, "x")
    lr = check_real(lr, "lr", low=0.0)
    beta = check_probability(momentum, "momentum", open_right=True)
    g = g + check_real(weight_decay, "weight_decay", low=0.0) * x
    state = window_replace(state, g, damp)
    u = beta * state["u"] + (1 - beta) * window_ihvp(state, g, damp)
    return x - lr * u, {**state, "u": u}


# --------------------------------------------------------------------------- the optimizer

def _hyper(lr, n_grads, damp, momentum, weight_decay) -> dict:
    """The optimizer's hyperparameters, validated (``lr``: a number or a schedule)."""
    if not callable(lr):
        check_real(lr, "lr", low=0.0)
    return {"n_grads": check_int(n_grads, "n_grads", low=1), "damp": check_positive(damp, "damp"),
            "momentum": check_probability(momentum, "momentum", open_right=True),
            "weight_decay": check_real(weight_decay, "weight_decay", low=0.0)}


def mfac(stoch_grad, x0, *, lr, n_grads: int = 32, damp: float = 1e-3, momentum: float = 0.0,
         weight_decay: float = 0.0, n_iters: int = 100, f=None, log_every: int = 1, rng=None, callback=None):
    r"""M-FAC preconditioned SGD: step along :math:`F^{-1}g` for the Fisher of the last ``n_grads`` gradients.

    The empirical Fisher of recent gradients is a cheap curvature model; its damped inverse
    shortens the steps along directions where the gradients have been large and keeps the
    step :math:`\eta/\lambda` of SGD elsewhere, at a cost linear in :math:`d`.

    Parameters
    ----------
    stoch_grad : callable
        ``stoch_grad(x, rng) -> array`` shaped like ``x``, e.g. a minibatch gradient.
    x0 : array_like, shape (d,)
        The start (not modified).
    lr : float or callable
        The step :math:`\eta_t` or a schedule ``t -> float``.
    n_grads : int >= 1
        The window size :math:`m` (1024 in the paper's experiments).
    damp : float > 0
        The damping :math:`\lambda` (the official code's default: 1e-5).
    momentum : float in [0, 1)
        :math:`\beta`, an exponential average of the preconditioned directions (0: none).
    weight_decay : float >= 0
        :math:`\omega`, added to the gradient before it enters the window.
    n_iters, f, log_every : int, callable or None, int
        Steps; an objective ``f(x) -> float`` to log; log every this many steps (and the last).
    rng, callback
        Seed or generator passed to ``stoch_grad``; ``callback(record) -> bool`` stops on True.

    Returns
    -------
    Result
        ``x``: the last iterate; ``f``: ``f(x)`` (NaN without ``f``); extras: ``window`` (the
        :math:`m \times d` gradients at the end, a ring buffer) and ``direction`` (the last
        :math:`u_t`).  History: ``t``, ``n_evals``, ``lr``, ``grad_norm`` (:math:`\|g_t\|`),
        ``step_norm`` (:math:`\eta_t\|u_t\|`), both NaN on row 0, and ``f`` with ``f``.

    Notes
    -----
    The update is :func:`mfac_step`: the new gradient replaces the oldest one first, then
    :math:`u_t` is computed with the window that holds it, as in the official code.  The window
    starts with :math:`m` zero gradients.  Cost per step: one stochastic gradient,
    :math:`O(dm + m^3)` work and :math:`O(dm)` memory.  The paper proves the costs, not a
    convergence rate for this optimizer; it reports experiments.

    References
    ----------
    Frantar, Kurtic and Alistarh, NeurIPS 2021, arXiv:2107.03356 (``frantar2021mfac``).

    Book: chapters/stochastic/mfac.ipynb

    Examples
    --------
    One step on :math:`f(x) = \frac12\|x\|^2` from :math:`x_0 = (1, -2)`: the window holds
    :math:`g = x_0` and zeros, so :math:`F^{-1}g = g/(\lambda + \|g\|^2/m) = g/2.25`:

    >>> res = mfac(lambda x, rng: x, [1.0, -2.0], lr=0.1, n_grads=4, damp=1.0, n_iters=1)
    >>> res.x.round(4).tolist(), res.n_evals
    ([0.9556, -1.9111], {'stoch_grad': 1})
    """
    x = as_array(x0)
    check_callable(stoch_grad, "stoch_grad", signature="(x, rng) -> array")
    check_callable(f, "f", optional=True, signature="x -> float")
    hp = _hyper(lr, n_grads, damp, momentum, weight_decay)
    n_iters, log_every = check_int(n_iters, "n_iters", low=1), check_int(log_every, "log_every", low=1)
    schedule, gen = as_schedule(lr), as_rng(rng)
    trace = Trace("mfac", {"lr": lr, **hp, "n_iters": n_iters}, callback)
    step_hp = {k: hp[k] for k in ("damp", "momentum", "weight_decay")}

    def record(t, **row):
        if f is not None:
            row["f"] = float(check_oracle(f, "f", x, shape=()))
        return trace.log(t, x=x, **row)

    state, n_done = mfac_state(x, n_grads=hp["n_grads"], damp=hp["damp"]), 0
    stopped = record(0, lr=np.nan, grad_norm=np.nan, step_norm=np.nan)
    for t in range(0 if stopped else n_iters):
        eta = step_at(schedule, t)
        g = check_oracle(stoch_grad, "stoch_grad", x, gen)
        trace.count("stoch_grad")
        x, state = mfac_step(x, g, state, lr=eta, **step_hp)
        n_done = t + 1
        if trace.diverged(x, n_done):
            break
        if (n_done % log_every == 0 or n_done == n_iters) and record(
                n_done, lr=eta, grad_norm=float(np.linalg.norm(g)), step_norm=eta * float(np.linalg.norm(state["u"]))):
            break
    fx = float(f(x)) if f is not None and trace.message is None else None
    return trace.result(x, fx, n_iters=n_done, window=state["G"], direction=state["u"])


@functools.lru_cache(maxsize=1)
def _torch_class():
    import torch

    class MFAC(torch.optim.Optimizer):
        """torch adapter of :func:`optlab.stochastic.mfac.mfac_step`: one window for all parameters."""

        def __init__(self, params, **hp):
            super().__init__(params, hp)
            if len(self.param_groups) != 1:
                raise ValueError("MFAC keeps one window for all parameters: give one parameter group")

        @torch.no_grad()
        def step(self, closure=None):
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            group = self.param_groups[0]
            ps = group["params"]
            x = torch.cat([p.detach().reshape(-1) for p in ps])
            g = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in ps])
            store = self.state[ps[0]]
            if "window" not in store:
                store["window"] = mfac_state(x, n_grads=group["n_grads"], damp=group["damp"])
            x, store["window"] = mfac_step(x, g, store["window"], lr=group["lr"], damp=group["damp"],
                                           momentum=group["momentum"], weight_decay=group["weight_decay"])
            offset = 0
            for p in ps:
                p.copy_(x[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
            return loss

    return MFAC


def torch_optimizer(params, **hyperparameters):
    r"""M-FAC as a ``torch.optim.Optimizer``: :func:`mfac_step` on all parameters flattened into one vector.

    Defaults: ``lr=1e-3, n_grads=32, damp=1e-3, momentum=0.0, weight_decay=0.0``.  One window
    serves every parameter (one parameter group), as in the official optimizer; a parameter
    without a gradient counts as a zero gradient; the window has the parameters' dtype.

    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    >>> opt = torch_optimizer([w], lr=0.1, damp=1.0)
    >>> (0.5 * (w ** 2).sum()).backward(); _ = opt.step()
    >>> [round(v, 4) for v in w.detach().tolist()]
    [0.9135, -1.827]
    """
    defaults = {"lr": 1e-3, "n_grads": 32, "damp": 1e-3, "momentum": 0.0, "weight_decay": 0.0}
    unknown = set(hyperparameters) - set(defaults)
    if unknown:
        raise TypeError(f"MFAC got unknown hyperparameters {sorted(unknown)}; accepted: {sorted(defaults)}")
    hp = {**defaults, **hyperparameters}
    if callable(hp["lr"]):
        raise TypeError("lr must be a number for the torch optimizer (use a torch scheduler for schedules)")
    _hyper(hp["lr"], hp["n_grads"], hp["damp"], hp["momentum"], hp["weight_decay"])
    return _torch_class()(params, **hp)


# --------------------------------------------------------------------------- timing

#: What :func:`ihvp_times` times: the dense solve; a static precompute plus one product; one window
#: replacement plus one product.
TIMED = ("dense", "static", "dynamic")


def ihvp_times(dims, *, n_grads: int = 32, damp: float = 1e-3, repeats: int = 3, inner: int = 10,
               budget: float = 0.25, dense_max: int = 4000, rng=0) -> dict:
    r"""Best wall-clock seconds of one inverse-Fisher product for each dimension, by each method of :data:`TIMED`.

    Every repeat times all dimensions in one series (``for repeat: for d: for method``), so that a
    burst of load on the machine hits all sizes alike; within a repeat each method is called up to
    ``inner`` times, until ``budget`` seconds are spent (the dense solve at large ``d`` once, the
    sub-millisecond M-FAC products ``inner`` times).  The result is the best of at least ``repeats``
    calls.  Dimensions above ``dense_max`` skip the dense solve (NaN).  Returns
    ``{method: array of seconds}``; the gradients are standard normal, drawn from ``rng``.
    """
    dims = [check_int(d, "dims", low=1) for d in np.atleast_1d(dims)]
    m, lam = check_int(n_grads, "n_grads", low=1), check_positive(damp, "damp")
    repeats, inner = check_int(repeats, "repeats", low=1), check_int(inner, "inner", low=1)
    budget, dense_max = check_real(budget, "budget", low=0.0), check_int(dense_max, "dense_max", low=0)
    gen = as_rng(rng)
    data = {d: (gen.standard_normal((m + 1, d)), gen.standard_normal(d)) for d in dims}
    windows = {}
    for d, (G, _) in data.items():
        windows[d] = mfac_state(G[0], n_grads=m, damp=lam)
        for g in G[:m]:
            windows[d] = window_replace(windows[d], g, lam)
    runs = {"dense": lambda d: _obs.dense_ihvp(data[d][0][:m], data[d][1], lam),
            "static": lambda d: _obs.static_inverse(data[d][0][:m], lam).ihvp(data[d][1]),
            "dynamic": lambda d: window_ihvp(window_replace(windows[d], data[d][0][m], lam), data[d][1], lam)}
    best = {k: np.full(len(dims), np.inf) for k in TIMED}
    for _ in range(repeats):
        for j, d in enumerate(dims):
            for k in TIMED:
                if k == "dense" and d > dense_max:
                    best[k][j] = np.nan
                    continue
                spent, calls = 0.0, 0
                while calls < inner and (calls == 0 or spent < budget):
                    start = time.perf_counter()
                    runs[k](d)
                    elapsed = time.perf_counter() - start
                    best[k][j], spent, calls = min(best[k][j], elapsed), spent + elapsed, calls + 1
    return best
