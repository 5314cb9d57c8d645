r"""Adaptive batch sizes for AdaGrad and AdaGrad-Norm: the norm test and its coordinate-wise variant.

:func:`adadagrad` runs AdaGrad-Norm (one scalar step size) or coordinate-wise AdaGrad on a finite sum
:math:`F(x) = \frac1n\sum_i f_i(x)`, from per-sample gradients.  After each step the batch size may grow:
the *norm test* asks that the batch gradient be accurate relative to its own size,
:math:`\mathbb E\|g_B - \nabla F\|^2 \le \eta^2\|\nabla F\|^2`, and the coordinate-wise test asks the same
of every coordinate.  The test's pieces (:func:`batch_variance`, :func:`estimated_error`, :func:`next_batch_size`)
and the two updates (:func:`adagrad_norm_step`, :func:`adagrad_step`, shared with the torch optimizers of
:func:`torch_optimizer`) are module-level functions.  The chapter's test problems on scikit-learn's
digits (softmax regression and a small network, with their per-sample gradients) are in
:mod:`optlab.stochastic.adadagrad_problems`.

References
----------
T. T.-K. Lau, H. Liu and M. Kolar, AdAdaGrad: adaptive batch size schemes for adaptive gradient methods,
arXiv:2402.11215 (``lau2024adadagrad``); see :func:`adadagrad`.

Book: chapters/stochastic/adadagrad.ipynb
"""
from __future__ import annotations

import math

import numpy as np

from ..core import Trace, array_namespace, as_rng, check_oracle
from ..validate import check_array, check_callable, check_choice, check_int, check_positive

__all__ = ["adadagrad", "batch_variance", "estimated_error", "next_batch_size", "adagrad_norm_step",
           "adagrad_norm_state", "adagrad_step", "adagrad_state", "torch_optimizer"]


# --------------------------------------------------------------------------- the batch-size tests

def batch_variance(G):
    r"""The estimated variance of the batch mean, per coordinate: :math:`\hat\sigma_j^2 / b`.

    ``G`` holds one per-sample gradient per row, shape ``(b, d)`` with ``b >= 2`` (numpy or torch);
    :math:`\hat\sigma_j^2 = \frac{1}{b-1}\sum_i (G_{ij} - \bar g_j)^2` is the unbiased sample variance,
    computed from the rows minus the first one, so that a constant column gives exactly 0.

    >>> batch_variance(np.array([[0.0, 0.1], [2.0, 0.1], [1.0, 0.1]])).tolist()
    [0.3333333333333333, 0.0]
    """
    b, D = G.shape[0], G - G[:1]
    return ((D - D.mean(axis=0)) ** 2).sum(axis=0) / (b - 1) / b


def estimated_error(G, test: str = "norm") -> float:
    r"""The estimated relative error of the batch gradient :math:`\bar g`, which the test compares with :math:`\eta^2`.

    ``"norm"``: :math:`r = \sum_j V_j / \|\bar g\|^2`; ``"coordinate"``: :math:`r = \max_j V_j / \bar g_j^2`,
    with :math:`V =` :func:`batch_variance`. A coordinate with zero variance imposes nothing (the constant
    pixels of digits give 0/0, read as 0); a zero mean with a positive variance gives ``inf``.

    >>> G = np.array([[1.0, 0.0, 3.0], [3.0, 0.0, 1.0]])
    >>> estimated_error(G, "norm"), estimated_error(G, "coordinate")
    (0.25, 0.25)
    """
    check_choice(test, "test", ["norm", "coordinate"])
    if getattr(G, "ndim", 0) != 2 or G.shape[0] < 2:
        raise ValueError("G must be a (b, d) array of per-sample gradients with "
                         f"b >= 2, got shape {np.shape(G)}")
    xp = array_namespace(G)
    g, V = G.mean(axis=0), batch_variance(G)
    if test == "norm":
        num, den = float(V.sum()), float((g * g).sum())
        return 0.0 if num == 0 else (num / den if den > 0 else math.inf)
    pos, g2 = V > 0, g * g
    if bool((pos & (g2 == 0)).any()):
        return math.inf
    return float(xp.where(pos, V / xp.where(pos, g2, 1.0), 0.0).max())


def next_batch_size(ratio: float, b: int, eta: float, max_batch: int) -> int:
    r"""The smallest batch whose predicted relative error is :math:`\eta^2`, never below ``b``, at most ``max_batch``.

    The error of a mean of :math:`b` samples scales like :math:`1/b`, so the batch that brings the
    estimated error :math:`r` of the current batch down to :math:`\eta^2` has :math:`b r / \eta^2` samples:
    :math:`b_{t+1} = \min\{b_{\max}, \max\{b_t, \lceil b_t r_t / \eta^2\rceil\}\}`.

    >>> next_batch_size(1.0, 4, 0.5, 100), next_batch_size(0.1, 4, 0.5, 100), next_batch_size(9.0, 4, 0.5, 100)
    (16, 4, 100)
    """
    number = isinstance(ratio, (int, float, np.floating))
    number = number and not isinstance(ratio, (bool, np.bool_))
    if not number or not ratio >= 0:
        raise ValueError(f"ratio must be a number >= 0 (inf allowed), got {ratio!r}")
    b, eta = check_int(b, "b", low=1), check_positive(eta, "eta")
    max_batch = check_int(max_batch, "max_batch", low=b)
    want = b * ratio / eta ** 2
    if not math.isfinite(want):
        return int(max_batch)
    return int(min(max_batch, max(b, math.ceil(want))))


# --------------------------------------------------------------------------- the two updates

def adagrad_norm_state(x) -> dict:
    """AdaGrad-Norm before the first step: the sum of squared gradient norms is 0 (a scalar)."""
    return {"s": array_namespace(x).zeros((), dtype=x.dtype)}


def adagrad_norm_step(x, g, state, *, lr, v0):
    r"""One AdaGrad-Norm step: :math:`v_t = v_0 + \sum_{i \le t}\|g_i\|^2`, then
    :math:`x \leftarrow x - \alpha g/\sqrt{v_t}`.

    Pure (inputs unchanged); numpy arrays or torch tensors. The state keeps :math:`s = v_t - v_0`.
    """
    xp = array_namespace(x)
    s = state["s"] + (g * g).sum()
    return x - lr * g / xp.sqrt(v0 + s), {"s": s}


def adagrad_state(x) -> dict:
    """AdaGrad before the first step: zero sums of squared gradients, per coordinate."""
    return {"s": x * 0}


def adagrad_step(x, g, state, *, lr, v0):
    r"""One AdaGrad step, per coordinate: :math:`v_{t,j} = v_0 + \sum_{i\le t} g_{i,j}^2`, then
    :math:`x_j \leftarrow x_j - \alpha g_j/\sqrt{v_{t,j}}`.

    Pure; numpy arrays or torch tensors (``torch.optim.Adagrad`` with ``initial_accumulator_value=v0, eps=0``).
    """
    xp = array_namespace(x)
    s = state["s"] + g * g
    return x - lr * g / xp.sqrt(v0 + s), {"s": s}


_UPDATES = {"norm": (adagrad_norm_step, adagrad_norm_state), "coordinate": (adagrad_step, adagrad_state)}


# --------------------------------------------------------------------------- the method

def adadagrad(per_sample_grad, x0, *, n_samples: int, lr: float, batch_size: int,
              max_samples: int, eta=0.5, test="norm", update: str = "norm",
              v0: float = 1e-2, max_batch=None, n_iters=None, f=None, grad=None,
              n_log: int = 40, rng=None, callback=None):
    r"""AdaGrad-Norm or AdaGrad whose batch grows when the sampled gradient variance is large (AdAdaGrad).

    A small batch is cheap but noisy; the test watches the per-sample gradients of each batch and
    raises the batch size as soon as their variance is large compared with the batch gradient, so
    the run takes few, accurate steps late in training and many cheap ones early.

    Parameters
    ----------
    per_sample_grad : callable
        ``per_sample_grad(x, idx) -> (len(idx), d)``: the gradients :math:`\nabla f_i(x)`, one row per index.
    x0 : array_like, shape (d,)
        The start (not modified).
    n_samples : int
        n, the number of terms of the finite sum; batches are drawn from ``range(n)``.
    lr : float
        The base step :math:`\alpha > 0`.
    batch_size : int
        The first batch size :math:`b_0` (``>= 2`` when a test is on: it estimates a variance).
    max_samples : int
        The budget of per-sample gradients; the run stops before a batch would exceed it.
    eta : float
        The test's tolerance :math:`\eta > 0` on the relative error.
    test : {"norm", "coordinate"} or None
        The batch-size test (:func:`estimated_error`); None keeps the batch constant.
    update : {"norm", "coordinate"}
        AdaGrad-Norm (:func:`adagrad_norm_step`) or coordinate-wise AdaGrad (:func:`adagrad_step`).
    v0 : float
        The initial accumulator :math:`v_0 > 0`.
    max_batch : int or None
        The cap :math:`b_{\max}` (default and at most n); at the cap the test is switched off.
    n_iters : int or None
        At most this many steps (default: the budget divided by :math:`b_0`).
    f, grad : callable or None
        The objective F and its full gradient, only for logging (not counted); with ``grad`` the
        realized relative error of every batch gradient is recorded.
    n_log : int
        About this many history rows, geometrically spaced in samples processed.
    rng : None, int or numpy.random.Generator
        Draws the batches (b distinct indices, uniformly, afresh at every step).
    callback : callable or None
        ``callback(record) -> bool`` at each logged row; True stops the run.

    Returns
    -------
    Result
        ``x`` the last iterate, ``f`` its objective (NaN without ``f``); ``n_evals["per_sample_grad"]``
        counts per-sample gradients. Extras, one entry per step: ``batch_sizes``, ``samples`` (processed
        after the step), ``est_error`` (the estimated relative error :math:`r_t`; NaN when no test ran) and,
        with ``grad``, ``rel_error`` :math:`\|g_t - \nabla F(x_t)\|^2/\|\nabla F(x_t)\|^2`.
        History columns: ``t``, ``n_evals``, ``samples``, ``batch_size`` and, with ``f``/``grad``, ``f``, ``grad_norm``.

    Notes
    -----
    Step t draws :math:`B_t` (:math:`b_t` distinct indices), forms :math:`g_t = \frac{1}{b_t}\sum_{i\in B_t}
    \nabla f_i(x_t)`, updates :math:`v_t = v_{t-1} + \|g_t\|^2` and :math:`x_{t+1} = x_t - \alpha g_t/\sqrt{v_t}`
    (per coordinate for AdaGrad), then sets :math:`b_{t+1} =` :func:`next_batch_size` of :math:`r_t =`
    :func:`estimated_error`; for the norm test this is :math:`\lceil \|\hat\sigma^2\|_1/(\eta^2\|g_t\|^2)\rceil`,
    the official code's rule. Cost per step: :math:`b_t` per-sample gradients and O(b_t d) for the test.
    Guarantee (the paper's abstract): for smooth nonconvex F, AdaGrad-Norm with the norm test finds a
    first-order stationary point at the rate O(1/T) with high probability; AdaGrad with the coordinate-wise
    test has similar guarantees. The exact assumptions were not verified for this book. Differences: the
    coordinate-wise test is not in the official code (its formula here is our reading of the paper); the
    official AdaGrad-Norm keeps one accumulator per weight row, ours one scalar (the abstract's form).

    References
    ----------
    Lau, Liu and Kolar, arXiv:2402.11215 (``lau2024adadagrad``); the norm test of R. H. Byrd, G. M. Chin,
    J. Nocedal and Y. Wu, Math. Program. 134, 2012 (``byrd2012sample``); AdaGrad-Norm of R. Ward, X. Wu and
    L. Bottou, JMLR 21, 2020 (``ward2020adagrad``).

    Book: chapters/stochastic/adadagrad.ipynb

    Examples
    --------
    Softmax regression on digits (:func:`optlab.stochastic.adadagrad_problems.digits_softmax`), from a
    batch of 4 with the norm test: the batch grows, never shrinks, and the budget of 5000 per-sample
    gradients is respected.

    >>> from optlab.stochastic.adadagrad_problems import digits_softmax
    >>> p = digits_softmax()
    >>> res = adadagrad(p.info["per_sample_grad"], p.x0, n_samples=p.info["n"], lr=0.5, batch_size=4,
    ...                 max_samples=5000, f=p.f, rng=0)
    >>> res.batch_sizes[:4].tolist(), int(res.samples[-1]), round(res.f, 3)
    ([4, 9, 16, 33], 4839, 1.775)
    """
    x = check_array(x0, "x0", ndim=1)
    n = check_int(n_samples, "n_samples", low=2)
    lr, v0 = check_positive(lr, "lr"), check_positive(v0, "v0")
    eta = check_positive(eta, "eta")
    if test is not None:
        check_choice(test, "test", ["norm", "coordinate"])
    step_fn, init_state = _UPDATES[check_choice(update, "update", list(_UPDATES))]
    cap = n if max_batch is None else check_int(max_batch, "max_batch", low=1, high=n)
    b = check_int(batch_size, "batch_size", low=1 if test is None else 2, high=cap)
    budget = check_int(max_samples, "max_samples", low=b)
    n_iters = budget // b if n_iters is None else check_int(n_iters, "n_iters", low=1)
    check_callable(per_sample_grad, "per_sample_grad",
                   signature="(x, idx) -> (len(idx), d)")
    check_callable(f, "f", optional=True)
    check_callable(grad, "grad", optional=True)
    n_log, rng = check_int(n_log, "n_log", low=2), as_rng(rng)
    settings = {"lr": lr, "batch_size": b, "eta": eta, "test": test, "update": update,
                "v0": v0, "max_batch": cap, "max_samples": budget}
    trace = Trace("adadagrad", settings, callback)
    marks = np.unique(np.geomspace(1, budget, n_log).astype(int)).tolist()
    marks = iter(marks + [math.inf])
    mark, used, state = next(marks), 0, init_state(x)
    sizes, seen, ratios, errors = [], [], [], []

    def record(t):
        row = {"samples": used, "batch_size": b}
        if f is not None:
            row["f"] = float(check_oracle(f, "f", x, shape=()))
        if grad is not None:
            row["grad_norm"] = float(np.linalg.norm(check_oracle(grad, "grad", x)))
        return trace.log(t, **row)

    stopped = record(0)
    for t in range(0 if stopped else n_iters):
        if used + b > budget:
            break
        idx = rng.choice(n, size=b, replace=False)
        G = check_oracle(per_sample_grad, "per_sample_grad", x, idx, shape=(b, x.size))
        trace.count("per_sample_grad", b)
        g = G.mean(axis=0)
        if grad is not None:
            full = check_oracle(grad, "grad", x)
            den = max(np.sum(full ** 2), np.finfo(float).tiny)
            errors.append(float(np.sum((g - full) ** 2) / den))
        ratio = estimated_error(G, test) if test is not None and b < cap else math.nan
        x, state = step_fn(x, g, state, lr=lr, v0=v0)
        used += b
        sizes.append(b), seen.append(used), ratios.append(ratio)
        if not math.isnan(ratio):
            b = next_batch_size(ratio, b, eta, cap)
        if trace.diverged(x, t + 1):
            break
        if used >= mark or used + b > budget:
            while mark <= used:
                mark = next(marks)
            if record(t + 1):
                break
    n_done = len(sizes)
    ended = trace.message is None and not trace.stopped_by_callback
    if ended and trace.history["t"][-1] < n_done:
        record(n_done)  # the last step, when n_iters (not the budget) ended the run
    finite = trace.message is None and f is not None
    extras = {"batch_sizes": np.array(sizes, dtype=int),
              "samples": np.array(seen, dtype=int),
              "est_error": np.array(ratios, dtype=float)}
    if grad is not None:
        extras["rel_error"] = np.array(errors)
    return trace.result(x, float(f(x)) if finite else None, n_iters=n_done, **extras)


# --------------------------------------------------------------------------- torch

def torch_optimizer(name: str, params, **hyperparameters):
    r"""A ``torch.optim.Optimizer`` running :func:`adagrad_step` or :func:`adagrad_norm_step`.

    ``"adagrad"`` applies the step to every parameter (``optlab.torch_interop.make_optimizer``).
    ``"adagrad_norm"`` has ONE accumulator for all parameters, as in the paper: it concatenates the
    parameters and their gradients and applies the pure step to the whole vector. Hyperparameters:
    ``lr`` (default 0.1) and ``v0`` (default 1e-2), one value for all parameters.

    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    >>> opt = torch_optimizer("adagrad_norm", [w], lr=1.0, v0=1.0)
    >>> (w ** 2).sum().backward(); _ = opt.step()
    >>> [round(v, 4) for v in w.detach().tolist()]
    [0.3333, 0.3333]
    """
    import torch

    from ..torch_interop import make_optimizer

    check_choice(name, "name", ["adagrad", "adagrad_norm"])
    defaults = {"lr": 0.1, "v0": 1e-2}
    for key in set(hyperparameters) & set(defaults):
        check_positive(hyperparameters[key], key)
    if name == "adagrad":
        return make_optimizer(adagrad_step, adagrad_state, defaults, "AdaGrad")(params, **hyperparameters)

    class AdaGradNorm(torch.optim.Optimizer):
        """torch adapter of :func:`adagrad_norm_step`: one accumulator over all parameters."""

        def __init__(self, params, **hp):
            unknown = set(hp) - set(defaults)
            if unknown:
                raise TypeError(f"AdaGradNorm got unknown hyperparameters {sorted(unknown)}; "
                                f"accepted: {sorted(defaults)}")
            super().__init__(params, {**defaults, **hp})

        @torch.no_grad()
        def step(self, closure=None):
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            ps = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
            if not ps:
                return loss
            hp = {(grp["lr"], grp["v0"]) for grp in self.param_groups}
            if len(hp) != 1:
                raise ValueError("AdaGradNorm has one accumulator: all parameter groups need the same lr and v0")
            (lr, v0), = hp
            x = torch.cat([p.reshape(-1) for p in ps])
            state = self.state["global"] or adagrad_norm_state(x)
            x, self.state["global"] = adagrad_norm_step(x, torch.cat([p.grad.reshape(-1) for p in ps]), state,
                                                        lr=lr, v0=v0)
            for p, chunk in zip(ps, torch.split(x, [p.numel() for p in ps])):
                p.copy_(chunk.view_as(p))
            return loss

    return AdaGradNorm(params, **hyperparameters)
