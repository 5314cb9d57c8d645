r"""SGD that records every gradient norm, and the tabulated schedules it runs: the runs of the two-stage recipe.

The refinement of :mod:`optlab.foundations.schedule_refinement` needs the gradient norms :math:`G_t` of a first
run, and produces a schedule given by its values.  This module holds both ends: :func:`sgd`, plain SGD
:math:`x_{t+1} = x_t - \eta_t g_t` on one point or on replicas that records :math:`\lVert g_t\rVert` at every
step; :func:`tabulated`, a schedule ``t -> values[t]``; and :func:`schedule_values`, the values of any schedule
over a horizon (to evaluate the bound of a schedule of :mod:`optlab.schedules`).

References
----------
A. Defazio, A. Cutkosky, H. Mehta and K. Mishchenko, When, why and how much? Adaptive learning rate scheduling
by refinement, arXiv:2310.07831, 2023 (``defazio2023when``); official code: facebookresearch/adaptive_scheduling.

Book: chapters/foundations/schedule_refinement.ipynb
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import Result, Trace, as_batch, as_rng, as_schedule, check_oracle, check_rowwise, geometric_steps, step_at
from ..validate import check_array, check_callable, check_int

__all__ = ["schedule_values", "tabulated", "sgd"]


def _steps(lr, name="lr", min_size=2):
    """A schedule's values as an array of steps ``>= 0`` (at least ``min_size`` of them)."""
    eta = check_array(lr, name, ndim=1, min_size=min_size)
    if np.any(eta < 0):
        raise ValueError(f"{name} must hold steps >= 0")
    return eta


def schedule_values(schedule, n_steps: int) -> np.ndarray:
    """The steps ``schedule(0), ..., schedule(n_steps - 1)`` of a schedule ``t -> float``, as an array.

    >>> from optlab.schedules import linear_decay
    >>> schedule_values(linear_decay(1.0, 4), 4).tolist()
    [1.0, 0.75, 0.5, 0.25]
    """
    check_callable(schedule, "schedule", signature="t -> float")
    return np.array([step_at(schedule, t, "schedule") for t in range(check_int(n_steps, "n_steps", low=1))])


@dataclass(frozen=True)
class tabulated:
    """A schedule given by its values (a refined schedule): ``values[t]``, then the last value.

    >>> s = tabulated([0.5, 0.25, 0.0])
    >>> [s(t) for t in (0, 1, 2, 5)]
    [0.5, 0.25, 0.0, 0.0]
    """

    values: tuple

    def __post_init__(self):
        object.__setattr__(self, "values", tuple(_steps(self.values, "values", min_size=1).tolist()))

    def __call__(self, t: int) -> float:
        return self.values[min(check_int(t, "t", low=0), len(self.values) - 1)]


def sgd(stoch_grad, x0, *, lr, n_iters: int, f=None, n_log: int = 30, rng=None, callback=None) -> Result:
    r"""SGD :math:`x_{t+1} = x_t - \eta_t g_t` that records every gradient norm (replicas: ``x0`` of shape ``(R, d)``).

    ``stoch_grad(X, rng)`` acts row-wise on the ``(R, d)`` batch; ``f`` (row-wise) only logs.  Returns a
    ``Result`` with extras ``grad_norms`` (shape ``(T,)``, or ``(R, T)`` for replicas); history ``t``, ``lr``,
    ``f`` (mean over replicas) and ``grad_norm`` (mean norm of the last gradient) at geometric steps.
    One oracle call per step.

    >>> res = sgd(lambda X, rng: 2 * X, np.ones(2), lr=0.25, n_iters=3)
    >>> res.x.tolist(), np.round(res.grad_norms, 3).tolist()
    ([0.125, 0.125], [2.828, 1.414, 0.707])
    """
    X, single = as_batch(x0)
    schedule, n_iters = as_schedule(lr), check_int(n_iters, "n_iters", low=1)
    check_callable(f, "f", optional=True, signature="X -> (R,)")
    rng, log_at = as_rng(rng), geometric_steps(n_iters, check_int(n_log, "n_log", low=2))
    tr = Trace("sgd", {"lr": lr, "n_iters": n_iters, "n_replicas": len(X)}, callback)
    oracle = tr.counted("stoch_grad", check_callable(stoch_grad, "stoch_grad", signature="(X, rng) -> X"))
    norms = np.zeros((len(X), n_iters))

    def log(t, eta):
        values = {} if f is None else {"f": float(np.mean(check_rowwise(f, X)))}
        return tr.log(t, lr=eta, grad_norm=float(norms[:, t - 1].mean()) if t else np.nan, **values)

    stop, done = log(0, np.nan), 0
    for t in range(n_iters):
        if stop:
            break
        g = check_oracle(oracle, "stoch_grad", X, rng)
        norms[:, t] = np.linalg.norm(g, axis=1)
        eta = step_at(schedule, t)
        X, done = X - eta * g, t + 1
        if tr.diverged(X, done):
            break
        if done in log_at:
            stop = log(done, eta)
    value = np.nan if f is None else float(np.mean(check_rowwise(f, X)))
    norms = norms[:, :done]
    return tr.result(X[0] if single else X, value, n_iters=done, grad_norms=norms[0] if single else norms)
