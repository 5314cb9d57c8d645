r"""SineLine few-shot regression and the MAML baseline on a model linear in random features.

:func:`sineline_tasks` draws tasks (half sinusoids, half lines) and :class:`RandomFeatures` is the fixed
feature map :math:`\phi`; :func:`maml_meta_grad` is MAML's unrolled hypergradient vectorized over tasks,
:func:`maml` the meta-training loop, and :func:`maml_bilevel_problem` writes one task's MAML as a
:class:`~optlab.bilevel.core.BilevelProblem`, so that ``core.unrolled_hypergrad`` checks it.

References
----------
SineLine: M. Kim and T. Hospedales, arXiv:2306.09702 (``kim2023hierarchical``); MAML: C. Finn,
P. Abbeel and S. Levine, ICML 2017, arXiv:1703.03400 (``finn2017model``).

Book: chapters/bilevel/meta_learning.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..baselines import adam_step
from ..core import Trace, as_rng, as_schedule, step_at
from ..validate import check_array, check_callable, check_int, check_positive, check_real
from .core import BilevelProblem

__all__ = ["RandomFeatures", "sineline_tasks", "maml_meta_grad", "maml", "maml_bilevel_problem"]


@dataclass(frozen=True)
class RandomFeatures:
    r"""Random Fourier features of a scalar input plus a bias, :math:`\phi(x) \in \mathbb R^{M+1}`.

    :math:`\phi_j(x) = \sqrt{2/M}\cos(\omega_j x + b_j)`, :math:`\omega_j \sim N(0, 1/\ell^2)`,
    :math:`b_j \sim U[0, 2\pi]`, and a last feature 1.  Calling it on an array of inputs adds a last axis.

    >>> RandomFeatures.make(3, rng=0)(np.zeros((2, 5))).shape
    (2, 5, 4)
    """

    omega: np.ndarray
    phase: np.ndarray

    @classmethod
    def make(cls, n_features: int = 40, lengthscale: float = 1.5, rng=0) -> RandomFeatures:
        n, gen = check_int(n_features, "n_features", low=1), as_rng(rng)
        ls = check_positive(lengthscale, "lengthscale")
        return cls(gen.standard_normal(n) / ls, gen.uniform(0.0, 2 * np.pi, n))

    def __call__(self, x):
        x = np.asarray(x, dtype=float)[..., None]
        rff = np.sqrt(2.0 / len(self.omega)) * np.cos(x * self.omega + self.phase)
        return np.concatenate([rff, np.ones_like(x)], axis=-1)


def sineline_tasks(n_tasks: int, n_points: int, *, rng=None, noise: float = 0.3, x_range=(-5.0, 5.0)) -> dict:
    r"""SineLine regression tasks: half sinusoids :math:`A\sin(x+\varphi)`, half lines :math:`ax + c`.

    :math:`A \sim U[0.1, 5]`, :math:`\varphi \sim U[0, \pi]`, :math:`a, c \sim U[-3, 3]`, inputs uniform on
    ``x_range``, Gaussian noise of sd ``noise``.  Returns ``x``, ``y``, ``f`` (noise-free) of shape
    ``(n_tasks, n_points)`` and ``is_line`` (n_tasks,).

    >>> t = sineline_tasks(4, 3, rng=0)
    >>> t["x"].shape, bool(np.all(np.abs(t["x"]) <= 5))
    ((4, 3), True)
    """
    n, k = check_int(n_tasks, "n_tasks", low=1), check_int(n_points, "n_points", low=1)
    noise, gen = check_real(noise, "noise", low=0.0), as_rng(rng)
    lo, hi = (check_real(v, "x_range") for v in x_range)
    if not lo < hi:
        raise ValueError(f"x_range must be (low, high) with low < high, got {x_range}")
    is_line = gen.random(n) < 0.5
    amp, phi = gen.uniform(0.1, 5.0, n), gen.uniform(0.0, np.pi, n)
    a, c = gen.uniform(-3.0, 3.0, n), gen.uniform(-3.0, 3.0, n)
    x = gen.uniform(lo, hi, (n, k))
    f = np.where(is_line[:, None], a[:, None] * x + c[:, None], amp[:, None] * np.sin(x + phi[:, None]))
    return {"x": x, "y": f + noise * gen.standard_normal((n, k)), "f": f, "is_line": is_line}


def maml_meta_grad(theta0, Phi_s, y_s, Phi_q, y_q, *, inner_lr: float, n_steps: int):
    r"""MAML's unrolled hypergradient for a linear model, vectorized over tasks.

    Inner loop from :math:`\theta_0`: :math:`\theta_{t+1} = \theta_t - \alpha(H\theta_t - c)`,
    :math:`H = \Phi_s^\top\Phi_s/k`, :math:`c = \Phi_s^\top y_s/k`; outer loss
    :math:`\|\Phi_q\theta_T - y_q\|^2/(2k_q)`, whose gradient in :math:`\theta_0` is
    :math:`(I - \alpha H)^T\nabla\ell_q(\theta_T)` (reverse mode, T products with H per task).
    Returns ``(mean query loss, mean gradient, theta_T)``.
    """
    theta0 = check_array(theta0, "theta0", ndim=1)
    Phi_s = check_array(Phi_s, "Phi_s", ndim=3)
    Phi_q = check_array(Phi_q, "Phi_q", ndim=3)
    y_s = check_array(y_s, "y_s", shape=Phi_s.shape[:2])
    y_q = check_array(y_q, "y_q", shape=Phi_q.shape[:2])
    alpha = check_positive(inner_lr, "inner_lr")
    T = check_int(n_steps, "n_steps", low=0)
    H = np.swapaxes(Phi_s, 1, 2) @ Phi_s / Phi_s.shape[1]       # (n, D, D)
    c = np.einsum("nkd,nk->nd", Phi_s, y_s) / Phi_s.shape[1]
    th = np.broadcast_to(theta0, c.shape)
    for _ in range(T):
        th = th - alpha * (np.einsum("nde,ne->nd", H, th) - c)
    r = np.einsum("nkd,nd->nk", Phi_q, th) - y_q
    p = np.einsum("nkd,nk->nd", Phi_q, r) / Phi_q.shape[1]
    for _ in range(T):
        p = p - alpha * np.einsum("nde,ne->nd", H, p)
    return float(np.mean(np.sum(r**2, 1)) / (2 * Phi_q.shape[1])), p.mean(0), th


def maml(sample_episodes, x0, *, lr, n_iters: int, inner_lr: float, n_steps: int, rng=None, callback=None):
    r"""MAML on a linear-in-features model: Adam on the query loss after ``n_steps`` inner GD steps.

    Parameters
    ----------
    sample_episodes : callable
        ``sample_episodes(rng) -> (Phi_s, y_s, Phi_q, y_q)``: a batch of support and query sets.
    x0 : array_like, shape (D,)
        Initial meta-parameters (the shared initialization).
    lr, n_iters : float or callable, int
        Adam step and number of meta-steps.
    inner_lr, n_steps : float, int
        The inner loop's step :math:`\alpha` and length T.
    rng, callback
        Randomness for the episodes; ``callback(record) -> bool``.

    Returns
    -------
    Result
        ``x`` the learned initialization; history column ``f`` (mean query loss of the batch);
        ``n_evals["episodes"]``.

    Examples
    --------
    >>> feats = RandomFeatures.make(5, rng=0)
    >>> def episodes(g):
    ...     t = sineline_tasks(8, 10, rng=g)
    ...     P = feats(t["x"])
    ...     return P[:, :5], t["y"][:, :5], P[:, 5:], t["y"][:, 5:]
    >>> res = maml(episodes, np.zeros(6), lr=0.05, n_iters=20, inner_lr=0.5, n_steps=3, rng=0)
    >>> res.x.shape, res.n_evals["episodes"]
    ((6,), 160)
    """
    check_callable(sample_episodes, "sample_episodes", signature="rng -> (Phi_s, y_s, Phi_q, y_q)")
    theta = check_array(x0, "x0", ndim=1)
    schedule, n_iters = as_schedule(lr), check_int(n_iters, "n_iters", low=1)
    inner_lr, n_steps = check_positive(inner_lr, "inner_lr"), check_int(n_steps, "n_steps", low=0)
    gen = as_rng(rng)
    trace = Trace("maml", {"lr": schedule, "n_iters": n_iters, "inner_lr": inner_lr, "n_steps": n_steps},
                  callback)
    state = {"m": np.zeros_like(theta), "v": np.zeros_like(theta), "k": 0}
    for t in range(n_iters):
        batch = sample_episodes(gen)
        trace.count("episodes", len(batch[1]))
        loss, g, _ = maml_meta_grad(theta, *batch, inner_lr=inner_lr, n_steps=n_steps)
        theta, state = adam_step(theta, g, state, lr=step_at(schedule, t), beta1=0.9, beta2=0.999, eps=1e-8)
        if trace.diverged(theta, t + 1) or trace.log(t, f=loss):
            break
    return trace.result(theta, loss if trace.message is None else None, n_iters=t + 1)


def maml_bilevel_problem(Phi_s, y_s, Phi_q, y_q) -> BilevelProblem:
    r"""One task's MAML as a :class:`~optlab.bilevel.core.BilevelProblem` (x the initialization, y the step).

    With :math:`\theta = x + y`: :math:`g(x, y) = \|\Phi_s\theta - y_s\|^2/(2k)` (support loss) and
    :math:`F(x, y) = \|\Phi_q\theta - y_q\|^2/(2k_q)` (query loss).  Gradient descent on ``y`` from 0
    is MAML's inner loop from :math:`\theta_0 = x`, so ``core.unrolled_hypergrad`` is its meta-gradient.
    """
    Phi_s, Phi_q = check_array(Phi_s, "Phi_s", ndim=2), check_array(Phi_q, "Phi_q", ndim=2)
    y_s, y_q = check_array(y_s, "y_s", shape=Phi_s.shape[:1]), check_array(y_q, "y_q", shape=Phi_q.shape[:1])
    Hs, cs = Phi_s.T @ Phi_s / len(y_s), Phi_s.T @ y_s / len(y_s)
    Hq, cq = Phi_q.T @ Phi_q / len(y_q), Phi_q.T @ y_q / len(y_q)
    D = Phi_s.shape[1]

    def loss(H, c, yy):
        return lambda x, y: 0.5 * np.sum(((x + y) @ H) * (x + y), -1) - (x + y) @ c + 0.5 * yy @ yy / len(yy)

    def gs(x, y):
        return (x + y) @ Hs - cs

    def gq(x, y):
        return (x + y) @ Hq - cq

    return BilevelProblem("maml_task", F=loss(Hq, cq, y_q), g=loss(Hs, cs, y_s), grad_Fx=gq, grad_Fy=gq,
                          grad_gx=gs, grad_gy=gs, x0=np.zeros(D), y0=np.zeros(D),
                          L_Fy=float(np.linalg.eigvalsh(Hq).max()), L_gy=float(np.linalg.eigvalsh(Hs).max()),
                          hvp_yy=lambda x, y, v: v @ Hs, jvp_xy=lambda x, y, v: v @ Hs)
