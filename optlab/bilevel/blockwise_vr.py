r"""Blockwise variance reduction for multi-block bilevel optimization (BSVRB, the Hessian-tracking version).

A multi-block bilevel problem has one upper variable :math:`x` and :math:`m` lower-level problems,

.. math:: \min_x \psi(x) = \frac1m\sum_{i=1}^m F_i(x, y_i^*(x)), \qquad
          y_i^*(x) = \arg\min_y g_i(x, y),

each :math:`g_i(x, \cdot)` strongly convex.  One iteration samples :math:`I` blocks and :math:`B`
data per sampled block, updates variance-reduced (MSVR) estimates of the sampled blocks' lower
gradients :math:`s_i` and lower Hessians :math:`H_i` (eigenvalues floored at :math:`\mu`), moves
the sampled :math:`y_i` along their estimates and :math:`x` along a STORM estimate of the hypergradient.

:class:`MultiBlockProblem` holds the blocks (its oracles act on a set of blocks at once, so nothing
loops over blocks); :func:`block_problem` gives one block as the core's
:class:`~optlab.bilevel.core.BilevelProblem`; :func:`multitask_ridge` is the chapter's problem
(heterogeneous regression tasks pulled towards a shared centre :math:`x`); :func:`msvr_update`,
:func:`floor_eigenvalues` and :func:`block_hypergrad` are the pieces of :func:`bsvrb`.

References
----------
Q. Hu, Z.-H. Qiu, Z. Guo, L. Zhang and T. Yang, ICML 2023, arXiv:2305.18730 (``hu2023blockwise``).

Book: chapters/bilevel/blockwise_vr.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..core import Trace, as_rng, as_schedule, step_at
from ..validate import check_array, check_choice, check_int, check_positive, check_probability, check_real
from .core import BilevelProblem

__all__ = ["MultiBlockProblem", "block_problem", "multitask_ridge", "msvr_update", "floor_eigenvalues",
           "block_hypergrad", "bsvrb"]


@dataclass
class MultiBlockProblem:
    r"""``m`` lower-level blocks sharing one upper variable; oracles act on a set of blocks at once.

    Every oracle takes ``(x, Y, blocks, idx)``: ``x`` (dx,), ``Y`` (k, dy) the lower variables of the
    ``blocks`` (k,), ``idx`` (k, B) the sampled data of each block (``None``: all of it).  They return
    ``grad_gy`` and ``grad_Fy`` (k, dy), ``grad_Fx`` (k, dx), ``hess_yy`` (k, dy, dy) and ``jac_xy``
    :math:`\nabla^2_{xy} g_i` (k, dx, dy).  ``sample(rng, blocks, B)`` draws ``(idx_lower, idx_upper)``.
    ``mu`` is the strong-convexity constant of every :math:`g_i`; ``hyper``, ``hypergrad`` and
    ``y_star`` (m, dy) are closed forms.
    """

    name: str
    m: int
    grad_gy: Callable
    hess_yy: Callable
    jac_xy: Callable
    grad_Fx: Callable
    grad_Fy: Callable
    sample: Callable
    x0: np.ndarray
    y0: np.ndarray
    mu: float
    L_gy: float
    hyper: Optional[Callable] = None
    hypergrad: Optional[Callable] = None
    y_star: Optional[Callable] = None
    info: dict = field(default_factory=dict)


def block_problem(problem: MultiBlockProblem, i: int) -> BilevelProblem:
    r"""Block ``i`` on all its data, as the core's :class:`~optlab.bilevel.core.BilevelProblem` (1-D x, y)."""
    i = check_int(i, "i", low=0, high=problem.m - 1)
    b = np.array([i])

    def one(fn):
        return lambda x, y, *v: fn(x, np.atleast_2d(y), b, None, *v)[0]

    return BilevelProblem(
        f"{problem.name}[{i}]", F=lambda x, y: problem.info["F"](x, np.atleast_2d(y), b)[0],
        g=lambda x, y: problem.info["g"](x, np.atleast_2d(y), b)[0],
        grad_Fx=one(problem.grad_Fx), grad_Fy=one(problem.grad_Fy),
        grad_gx=lambda x, y: problem.info["grad_gx"](x, np.atleast_2d(y), b)[0], grad_gy=one(problem.grad_gy),
        hvp_yy=lambda x, y, v: problem.hess_yy(x, np.atleast_2d(y), b, None)[0] @ v,
        jvp_xy=lambda x, y, v: problem.jac_xy(x, np.atleast_2d(y), b, None)[0] @ v,
        x0=problem.x0, y0=problem.y0[i], L_Fy=problem.info["L_Fy"], L_gy=problem.L_gy,
        y_star=lambda x: problem.y_star(x)[i])


def msvr_update(est, new, old, alpha, gamma):
    r"""The MSVR step :math:`(1-\alpha)\,\mathrm{est} + (\alpha+\gamma)\,\mathrm{new} - \gamma\,\mathrm{old}`.

    ``new`` and ``old`` are the same samples' estimates at the current and the previous iterate;
    :math:`\gamma = 0` is a moving average, :math:`\alpha = 1, \gamma = 0` the plain mini-batch.
    """
    return (1 - alpha) * est + (alpha + gamma) * new - gamma * old


def floor_eigenvalues(H, mu):
    r"""Symmetrize each matrix of ``H`` (..., d, d) and raise its eigenvalues to at least ``mu``."""
    lam, Q = np.linalg.eigh(0.5 * (H + np.swapaxes(H, -1, -2)))
    return (Q * np.maximum(lam, mu)[..., None, :]) @ np.swapaxes(Q, -1, -2)


def block_hypergrad(gx, J, H, gy):
    r"""The blocks' hypergradient estimates :math:`\nabla_x F_i - \nabla^2_{xy} g_i\, H_i^{-1}\nabla_y F_i`.

    ``gx`` (k, dx), ``J`` (k, dx, dy), ``H`` (k, dy, dy), ``gy`` (k, dy); one batched solve.
    """
    return gx - (J @ np.linalg.solve(H, gy[..., None]))[..., 0]


def bsvrb(problem: MultiBlockProblem, x0, *, lr, tau, n_blocks: int, batch_size: int,
          alpha: float = 0.1, gamma: Optional[float] = 1.0, beta: float = 0.5,
          hessian: str = "track", n_iters: int = 1000, rng=None, callback=None):
    r"""BSVRB (v1): blockwise MSVR tracking of lower gradients and Hessians, STORM on the upper level.

    Parameters
    ----------
    problem : MultiBlockProblem
    x0 : array_like, shape (dx,)
        Upper start (not modified); the lower variables start at ``problem.y0``.
    lr : float or callable
        Upper step :math:`\eta` (number or schedule).
    tau : float
        Lower step :math:`\tau`, applied to the sampled blocks.
    n_blocks, batch_size : int
        :math:`I` blocks sampled per iteration (without replacement) and :math:`B` data per block.
    alpha : float in (0, 1]
        MSVR averaging weight.
    gamma : float >= 0 or None
        MSVR correction weight (default 1, as in the official code); ``None`` takes the MSVR
        formula :math:`(m-I)/(I(1-\alpha)) + (1-\alpha)` (see Notes).
    beta : float in (0, 1]
        STORM weight (1: plain mini-batch hypergradient).
    hessian : {"track", "batch"}
        ``"track"``: MSVR estimates :math:`H_i`; ``"batch"``: the baseline that does not track the
        Hessians and inverts each iteration's mini-batch Hessian.  Both floor eigenvalues at ``mu``.
    n_iters : int
    rng : None, int or Generator
    callback : callable or None
        ``callback(record) -> bool``; True stops.

    Returns
    -------
    Result
        ``x``; ``f`` = :math:`\psi(x)` (closed form, when ``problem.hyper`` is given, else NaN).
        Extras: ``y`` (m, dy), ``H`` (m, dy, dy), ``s`` (m, dy), ``gamma`` (the value used).  History
        columns: ``f`` (:math:`\psi(x_t)`), ``samples`` (data drawn so far: :math:`IB` per iteration
        and both lower and upper), ``lower_err`` (mean :math:`\|y_i - y_i^*(x)\|`, with ``y_star``).
        ``n_evals`` counts per-sample oracle calls (two points per sample).

    Notes
    -----
    Iteration t, with :math:`\mathcal I_t` the sampled blocks and :math:`\xi` their data:

    * :math:`s_i \leftarrow (1-\alpha)s_i + (\alpha+\gamma)\nabla_y g_i(x_t, y_{i,t};\xi)
      - \gamma\nabla_y g_i(x_{t-1}, y_{i,t-1};\xi)` and the same MSVR step for :math:`H_i` on
      :math:`\nabla^2_{yy} g_i`, followed by :math:`H_i \leftarrow` its eigenvalues floored at :math:`\mu`;
      unsampled blocks keep their estimates;
    * :math:`G(x_t) = \frac1I\sum_{i\in\mathcal I_t}[\nabla_x F_i - \nabla^2_{xy} g_i H_i^{-1}\nabla_y F_i]`
      (and :math:`G(x_{t-1})` with the same samples and the previous :math:`H_i`),
      :math:`z_t = (1-\beta)(z_{t-1} - G(x_{t-1})) + G(x_t)`;
    * :math:`y_{i,t+1} = y_{i,t} - \tau s_i` for :math:`i \in \mathcal I_t`, :math:`x_{t+1} = x_t - \eta z_t`.

    Cost per iteration: :math:`4IB` sample gradients and Hessians (two points, lower and upper data)
    and :math:`I` dense :math:`d_y \times d_y` eigendecompositions and solves.  The paper's guarantee
    (strongly convex smooth lower levels, smooth upper levels, Lipschitz stochastic oracles):
    :math:`O(m\epsilon^{-3}\mathbb 1(I<m)/(I\sqrt I) + m\epsilon^{-3}/(I\sqrt B))` iterations to an
    :math:`\epsilon`-stationary point.  Differences: the official code rescales :math:`H_i` to a
    Frobenius norm of at least 10 (which shrinks :math:`H_i^{-1}`); here the eigenvalues are floored
    at :math:`\mu`.  The paper's v1 moves every :math:`y_i` each iteration with its (stale) estimate;
    at step sizes fixed across I that diverged for I < m here (the effective step is
    :math:`\tau m/I`), so only sampled blocks move (as in v2, without its delay scaling).  The MSVR
    formula for :math:`\gamma` (from Jiang et al., 2022, not verified in this paper) diverged at our
    step sizes; the default is the official code's 1.  The estimators start from one mini-batch of
    every block (counted).

    References
    ----------
    Q. Hu, Z.-H. Qiu, Z. Guo, L. Zhang and T. Yang, Blockwise stochastic variance-reduced methods
    with parallel speedup for multi-block bilevel optimization, ICML 2023, arXiv:2305.18730
    (``hu2023blockwise``); MSVR: W. Jiang et al., NeurIPS 2022, arXiv:2207.08540 (``jiang2022multiblock``).

    Book: chapters/bilevel/blockwise_vr.ipynb

    Examples
    --------
    >>> p = multitask_ridge(m=6, dim=3, rng=0)
    >>> res = bsvrb(p, p.x0, lr=0.05, tau=1 / p.L_gy, n_blocks=3, batch_size=4, n_iters=300, rng=0)
    >>> bool(res.f < p.hyper(p.x0)), int(res.history["samples"][-1]) == 6 * 4 + 300 * 3 * 4
    (True, True)
    """
    x = check_array(x0, "x0", ndim=1)
    m = problem.m
    k = check_int(n_blocks, "n_blocks", low=1, high=m)
    B = check_int(batch_size, "batch_size", low=1)
    schedule, tau = as_schedule(lr), check_positive(tau, "tau")
    alpha = check_real(alpha, "alpha", low=0.0, high=1.0, low_open=True)
    if gamma is None:
        gamma = (m - k) / (k * (1 - alpha)) + (1 - alpha) if alpha < 1 else 0.0
    gamma = check_real(gamma, "gamma", low=0.0)
    beta = check_probability(beta, "beta")
    if beta == 0:
        raise ValueError("beta must be a finite number in (0, 1], got 0")
    check_choice(hessian, "hessian", ("track", "batch"))
    n_iters, gen = check_int(n_iters, "n_iters", low=1), as_rng(rng)
    params = {"lr": schedule, "tau": tau, "n_blocks": k, "batch_size": B,
              "alpha": alpha, "gamma": gamma, "beta": beta, "hessian": hessian,
              "n_iters": n_iters}
    trace = Trace("bsvrb", params, callback)
    mu, every = problem.mu, np.arange(m)
    Y = np.array(problem.y0, dtype=float)

    def count(n):
        for name in ("grad_gy", "hess_yy", "jac_xy", "grad_Fx", "grad_Fy"):
            trace.count(name, n)

    def G(x, Y, H, b, iu):          # the blocks' hypergradient estimates, averaged
        J = problem.jac_xy(x, Y, b, iu[0])
        gx, gy = problem.grad_Fx(x, Y, b, iu[1]), problem.grad_Fy(x, Y, b, iu[1])
        return block_hypergrad(gx, J, H, gy).mean(axis=0)

    def log(t, samples):
        f = problem.hyper(x) if problem.hyper is not None else np.nan
        err = np.nan
        if problem.y_star is not None:
            err = np.linalg.norm(Y - problem.y_star(x), axis=1).mean()
        return trace.log(t, f=f, samples=samples, lower_err=err)

    # start: one mini-batch of every block for s and H, of k blocks for z
    il = problem.sample(gen, every, B)
    s = problem.grad_gy(x, Y, every, il[0])
    H = floor_eigenvalues(problem.hess_yy(x, Y, every, il[0]), mu)
    b = gen.choice(m, k, replace=False)
    z, samples = G(x, Y[b], H[b], b, problem.sample(gen, b, B)), m * B
    count(m * B)
    x_prev, Y_prev, t = x, Y, 0
    stop = log(0, samples)
    for t in range(0 if stop else n_iters):
        b = gen.choice(m, k, replace=False)               # I blocks
        iu = problem.sample(gen, b, B)                    # B lower, B upper data each
        new, old = (x, Y[b]), (x_prev, Y_prev[b])
        g_new, g_old = problem.grad_gy(*new, b, iu[0]), problem.grad_gy(*old, b, iu[0])
        s[b] = msvr_update(s[b], g_new, g_old, alpha, gamma)
        Hb = problem.hess_yy(*new, b, iu[0])
        if hessian == "track":
            Hb = msvr_update(H[b], Hb, problem.hess_yy(*old, b, iu[0]), alpha, gamma)
        H_old_b, H[b] = H[b], floor_eigenvalues(Hb, mu)
        z = (1 - beta) * (z - G(*old, H_old_b, b, iu)) + G(*new, H[b], b, iu)  # STORM
        count(2 * k * B)
        samples += k * B
        x_prev, Y_prev = x, Y.copy()
        Y[b] = Y[b] - tau * s[b]                          # the sampled blocks only
        x = x - step_at(schedule, t) * z
        if trace.diverged({"x": x, "y": Y}, t + 1) or log(t + 1, samples):
            break
    done = len(trace.history["t"]) - 1
    ok = problem.hyper is not None and trace.message is None
    f = problem.hyper(x) if ok else np.nan
    return trace.result(x, f, n_iters=done, y=Y, H=H, s=s, gamma=gamma)


# --------------------------------------------------------------------------- the chapter's problem

def multitask_ridge(m: int = 20, dim: int = 5, *, n_train: int = 20, n_val: int = 20, rho: float = 1.0,
                    noise: float = 0.5, rng=0) -> MultiBlockProblem:
    r"""Heterogeneous regression tasks pulled towards a shared centre ``x`` (biased ridge), m blocks.

    Task i has its own feature scales (log-normal), true weights (a common vector plus a task
    deviation) and noise level; lower
    :math:`g_i(x, y) = \frac1{2n}\|A_i y - b_i\|^2 + \frac\rho2\|y - x\|^2` on ``n_train`` data,
    upper :math:`F_i(x, y) = \frac1{2n_v}\|A^v_i y - b^v_i\|^2` on ``n_val`` data.  Then
    :math:`\nabla^2_{xy} g_i = -\rho I` and the block hypergradient is
    :math:`\rho\,[\nabla^2_{yy} g_i]^{-1}\nabla_y F_i`.  The tasks want different centres, so the
    blocks' hypergradients disagree even at the optimum: sampling blocks adds variance.
    """
    m, dim = check_int(m, "m", low=1), check_int(dim, "dim", low=1)
    n_train, n_val = check_int(n_train, "n_train", low=1), check_int(n_val, "n_val", low=1)
    rho, noise, gen = check_positive(rho, "rho"), check_real(noise, "noise", low=0.0), as_rng(rng)
    scale = np.exp(0.3 * gen.standard_normal((m, 1, dim)))
    w = gen.standard_normal(dim) + 1.5 * gen.standard_normal((m, dim))
    sd = noise * np.exp(0.5 * gen.standard_normal((m, 1)))

    def data(n):
        A = gen.standard_normal((m, n, dim)) * scale
        return A, np.einsum("mnd,md->mn", A, w) + sd * gen.standard_normal((m, n))

    A, b = data(n_train)
    Av, bv = data(n_val)
    rows, eye = np.arange(m), np.eye(dim)

    def pick(A, b, blocks, idx):
        if idx is None:
            return A[blocks], b[blocks]
        return A[blocks[:, None], idx], b[blocks[:, None], idx]

    def lsq_grad(a, t, Y):
        return np.einsum("knd,kn->kd", a, np.einsum("knd,kd->kn", a, Y) - t) / a.shape[1]

    def grad_gy(x, Y, blocks, idx):
        return lsq_grad(*pick(A, b, blocks, idx), Y) + rho * (Y - x)

    def hess_yy(x, Y, blocks, idx):
        a = pick(A, b, blocks, idx)[0]
        return np.einsum("knd,kne->kde", a, a) / a.shape[1] + rho * eye

    def grad_Fy(x, Y, blocks, idx):
        return lsq_grad(*pick(Av, bv, blocks, idx), Y)

    def F(x, Y, blocks):
        return 0.5 * np.mean((np.einsum("knd,kd->kn", Av[blocks], Y) - bv[blocks]) ** 2, axis=1)

    def g(x, Y, blocks):
        r = np.einsum("knd,kd->kn", A[blocks], Y) - b[blocks]
        return 0.5 * np.mean(r**2, axis=1) + 0.5 * rho * np.sum((Y - x) ** 2, axis=1)

    H_all = hess_yy(None, None, rows, None)
    Atb = np.einsum("mnd,mn->md", A, b) / n_train

    def y_star(x):
        return np.linalg.solve(H_all, (Atb + rho * x)[..., None])[..., 0]

    def hypergrad(x):
        Ys = y_star(x)
        J = np.broadcast_to(-rho * eye, (m, dim, dim))
        return block_hypergrad(np.zeros((m, dim)), J, H_all, grad_Fy(x, Ys, rows, None)).mean(axis=0)

    def sample(gen, blocks, B):
        k = len(blocks)
        return gen.integers(n_train, size=(k, B)), gen.integers(n_val, size=(k, B))

    lam = np.linalg.eigvalsh(H_all)
    Ginv = np.linalg.inv(H_all)                        # psi is quadratic: y* = H^-1 (A^T b / n + rho x)
    M = (Av @ Ginv * rho).reshape(-1, dim) / np.sqrt(n_val)
    r = (bv - np.einsum("mnd,md->mn", Av, np.einsum("mde,me->md", Ginv, Atb))).reshape(-1) / np.sqrt(n_val)
    x_star = np.linalg.lstsq(M, r, rcond=None)[0]
    return MultiBlockProblem(
        f"multitask_ridge(m={m}, dim={dim})", m=m, grad_gy=grad_gy, hess_yy=hess_yy,
        jac_xy=lambda x, Y, blocks, idx: np.broadcast_to(-rho * eye, (len(blocks), dim, dim)),
        grad_Fx=lambda x, Y, blocks, idx: np.zeros((len(blocks), dim)), grad_Fy=grad_Fy, sample=sample,
        x0=np.zeros(dim), y0=np.zeros((m, dim)), mu=rho, L_gy=float(lam.max()),
        hyper=lambda x: float(F(x, y_star(x), rows).mean()), hypergrad=hypergrad, y_star=y_star,
        info={"F": F, "g": g, "grad_gx": lambda x, Y, blocks: rho * (x - Y),
              "L_Fy": float(np.linalg.eigvalsh(np.einsum("mnd,mne->mde", Av, Av) / n_val).max()),
              "A": A, "b": b, "A_val": Av, "b_val": bv, "w": w, "rho": rho, "x_star": x_star})
