r"""Lion and Lion-K: sign (or K-gradient) momentum with decoupled weight decay, a constrained optimizer in disguise.

:func:`lion_k` runs the update with K = ``"l1"`` (sign: Lion), ``"l2"`` (normalized momentum) or
``"quadratic"`` (plain momentum); its one pure step :func:`lion_k_step` also drives a
``torch.optim.Optimizer`` (:func:`torch_optimizer`).  Also here: :math:`K^*` (:func:`conjugate`), the
objective Lion-K minimizes (:func:`objective`) and the Lyapunov function (:func:`lyapunov`).  The
chapter's test problem and its box- and ball-constrained optima are in
:mod:`optlab.stochastic.lion_problems`.

References
----------
L. Chen, B. Liu, K. Liang and Q. Liu, Lion secretly solves constrained optimization:
as Lyapunov predicts, ICLR 2024, arXiv:2310.05898 (``chen2024lion``); see :func:`lion_k`.

Book: chapters/stochastic/lion.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Trace, array_namespace, as_array, as_rng, as_schedule, check_oracle, step_at
from ..validate import (
    check_array,
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_positive,
    check_probability,
    check_real,
)

__all__ = ["KAPPAS", "direction", "conjugate", "objective", "lyapunov", "lion_k_state", "lion_k_step", "lion_k",
           "torch_optimizer"]

#: The convex functions K: their gradient is the update direction, their conjugate the constraint.
KAPPAS = ("l1", "l2", "quadratic")
_TOL = 1e-9  # how far (relative) outside the unit ball the indicator K* still counts a point as inside


def _sign_direction(c):
    r""":math:`\nabla\|c\|_1 = \mathrm{sign}(c)` (0 where :math:`c_i = 0`), numpy or torch."""
    return array_namespace(c).sign(c)


def _l2_direction(c):
    r""":math:`\nabla\|c\|_2 = c/\|c\|_2` over the whole array (0 at 0), numpy or torch."""
    norm = ((c * c).sum()) ** 0.5
    return c / (norm + (norm == 0))


def direction(c, kappa: str):
    r"""The update direction :math:`\nabla K(c)` for ``kappa`` in :data:`KAPPAS` (numpy or torch).

    >>> direction(np.array([3.0, -4.0]), "l1").tolist(), direction(np.array([3.0, -4.0]), "l2").tolist()
    ([1.0, -1.0], [0.6, -0.8])
    """
    if kappa == "l1":
        return _sign_direction(c)
    if kappa == "l2":
        return _l2_direction(c)
    if kappa == "quadratic":  # K = |c|^2 / 2
        return c
    choices = ", ".join(map(repr, KAPPAS))
    raise ValueError(f"kappa must be one of {choices}, got {kappa!r}")


def _dual_norm(x, kappa: str):
    r"""The norm that K's conjugate bounds (row-wise): :math:`\|x\|_\infty` for ``"l1"``, else :math:`\|x\|_2`."""
    x = np.asarray(x, dtype=float)
    return np.max(np.abs(x), axis=-1) if kappa == "l1" else np.linalg.norm(x, axis=-1)


def _value(v):
    return float(v) if np.ndim(v) == 0 else v


def _betas(beta1, beta2):
    return check_probability(beta1, "beta1", open_right=True), check_probability(beta2, "beta2", open_right=True)


def conjugate(y, kappa: str):
    r""":math:`K^*(y)`: 0 or inf (the unit :math:`\ell_\infty` or :math:`\ell_2` ball), or :math:`\|y\|^2/2`.

    Row-wise: a ``(d,)`` point gives a float, ``(R, d)`` points give ``(R,)`` values.  The
    indicator accepts points up to a relative ``1e-9`` outside the ball (rounding at the boundary).

    >>> conjugate([0.5, -1.0], "l1"), conjugate([0.6, 0.8], "l2"), conjugate([2.0, 0.0], "l1")
    (0.0, 0.0, inf)
    >>> conjugate([[2.0], [1.0]], "quadratic").tolist()
    [2.0, 0.5]
    """
    y = check_array(y, "y", ndim=(1, 2), finite=False)
    if check_choice(kappa, "kappa", KAPPAS) == "quadratic":
        return _value(0.5 * np.sum(y ** 2, axis=-1))
    return _value(np.where(_dual_norm(y, kappa) <= 1.0 + _TOL, 0.0, np.inf))


def objective(fx, x, *, weight_decay: float, alpha: float = 1.0, kappa: str = "l1"):
    r"""What Lion-K minimizes, :math:`F(x) = \alpha f(x) + K^*(\lambda x)/\lambda`, from ``fx`` = f(x) (row-wise)."""
    x, lam = check_array(x, "x", ndim=(1, 2)), check_positive(weight_decay, "weight_decay")
    fx = check_array(fx, "fx", shape=x.shape[:-1], min_size=0)
    return _value(check_positive(alpha, "alpha") * fx + conjugate(lam * x, kappa) / lam)


def lyapunov(fx, x, m, *, lr: float, beta1: float, beta2: float, weight_decay: float, alpha: float = 1.0,
             kappa: str = "l1"):
    r"""The Lyapunov function of the chapter, in the units of the discrete update (row-wise).

    .. math::
        H(x, m) = \alpha f(x) + \frac{K^*(\lambda x)}{\lambda}
        + \frac{c\,\eta}{1-\beta_2}\big(K^*(\lambda x) + K(m) + \lambda\langle m, x\rangle\big),
        \qquad c = \frac{1 - \varepsilon\gamma}{1 + \varepsilon\lambda} = \frac{\beta_1}{1 + \varepsilon\lambda},
        \quad \varepsilon = \frac{(1-\beta_1)\eta}{1-\beta_2},

    with :math:`\gamma = (1-\beta_2)/\eta`, ``m`` the momentum (an average of :math:`\alpha\nabla f`) and K
    even.  The bracket is a Fenchel-Young gap, :math:`\ge 0`; ``inf`` outside the constraint set.
    ``fx``, ``x``, ``m``: one point (a float, ``(d,)``, ``(d,)``) or rows (``(R,)``, ``(R, d)``, ``(R, d)``).

    >>> lyapunov(0.5, [0.2, -1.0], [0.0, 0.0], lr=0.01, beta1=0.9, beta2=0.99, weight_decay=1.0)
    0.5
    """
    lam, x = check_positive(weight_decay, "weight_decay"), check_array(x, "x", ndim=(1, 2))
    m, kappa = check_array(m, "m", shape=x.shape), check_choice(kappa, "kappa", KAPPAS)
    lr, (beta1, beta2) = check_positive(lr, "lr"), _betas(beta1, beta2)
    eps = (1 - beta1) * lr / (1 - beta2)
    k_of_m = {"l1": np.sum(np.abs(m), axis=-1), "l2": np.linalg.norm(m, axis=-1),
              "quadratic": 0.5 * np.sum(m * m, axis=-1)}[kappa]
    gap = conjugate(lam * x, kappa) + k_of_m + lam * np.sum(m * x, axis=-1)
    F = objective(fx, x, weight_decay=lam, alpha=alpha, kappa=kappa)
    return _value(F + beta1 / (1 + eps * lam) * lr / (1 - beta2) * gap)


def lion_k_state(x) -> dict:
    """The Lion-K state before the first step: zero momentum."""
    return {"m": x * 0}


def lion_k_step(x, g, state, *, lr, beta1, beta2, weight_decay, alpha=1.0, kappa="l1"):
    r"""One Lion-K step (pure; numpy arrays or torch tensors alike).

    .. math::
        c_t = \beta_1 m_t + (1-\beta_1)\,\alpha g_t, \qquad
        x_{t+1} = x_t - \eta_t\big(\nabla K(c_t) + \lambda x_t\big), \qquad
        m_{t+1} = \beta_2 m_t + (1-\beta_2)\,\alpha g_t .

    The weight decay :math:`\lambda x_t` is *decoupled*: added after :math:`\nabla K`, not inside it.
    """
    c = beta1 * state["m"] + (1 - beta1) * alpha * g
    x_new = x - lr * (direction(c, kappa) + weight_decay * x)
    return x_new, {"m": beta2 * state["m"] + (1 - beta2) * alpha * g}


def lion_k(grad, x0, *, lr, beta1: float = 0.9, beta2: float = 0.99,
           weight_decay: float, alpha: float = 1.0, kappa: str = "l1",
           n_iters: int = 1000, f=None, log_every: int = 1, keep_x: bool = False,
           rng=None, callback=None):
    r"""Lion-K with decoupled weight decay; ``kappa="l1"`` is Lion.

    Each step moves every coordinate by at most :math:`\eta` (the sign part) and shrinks it by
    :math:`\eta\lambda|x_i|` (the decay): outside the box :math:`\|x\|_\infty \le 1/\lambda` the
    shrinkage wins, so the iterates enter it geometrically and then minimize f inside it.

    Parameters
    ----------
    grad : callable
        ``grad(x) -> array`` shaped like ``x`` (it may be stochastic).
    x0 : array_like, shape (d,)
        The start (not modified).
    lr : float or callable
        The step :math:`\eta_t` or a schedule ``t -> float``; the entry bound needs :math:`\eta_t\lambda \le 1`.
    beta1, beta2 : float in [0, 1)
        Interpolation weight of the direction and decay rate of the momentum (Lion: 0.9, 0.99).
    weight_decay : float >= 0
        :math:`\lambda`; the constraint radius is :math:`1/\lambda`.
    alpha : float > 0
        The weight of f (the paper's :math:`\alpha/\gamma`): it matters only for ``"quadratic"``.
    kappa : {"l1", "l2", "quadratic"}
        The convex function K (:data:`KAPPAS`).
    n_iters, f, log_every, keep_x : int, callable or None, int, bool
        Steps; an objective ``f(x) -> float`` to log; log every this many steps (and the last);
        also store ``x`` and ``m`` in each logged row.
    rng, callback
        The common arguments (the method is deterministic); ``callback(record) -> bool`` stops on True.

    Returns
    -------
    Result
        ``x``: the last iterate; ``f``: ``f(x)`` (NaN without ``f``); extras: ``m``, the final momentum.
        History: ``t``, ``n_evals``, ``lr`` (the step that reached the row), ``norm``
        (:math:`\|x\|_\infty` for ``"l1"``, else :math:`\|x\|_2`), ``excess``
        (:math:`\max(\text{norm} - 1/\lambda, 0)`), ``f`` with ``f``, ``x`` and ``m`` with ``keep_x``.

    Notes
    -----
    The update is :func:`lion_k_step`; cost per step: one gradient and O(d) work.  If the direction
    is bounded (``"l1"``: each coordinate by 1, ``"l2"``: the norm by 1) and :math:`\eta_t\lambda\le 1`,
    then :math:`e_{t+1} \le (1-\eta_t\lambda)\,e_t` at every step whatever the gradients: the ball of
    radius :math:`1/\lambda` is entered geometrically and never left.  Fixed points satisfy
    :math:`0 \in \alpha\nabla f(x) + \partial K^*(\lambda x)`, stationarity of :func:`objective`.  The
    paper proves that the continuous-time limit decreases a Lyapunov function (:func:`lyapunov`) and
    converges to such points (K differentiable), with a discrete-time analogue.  Our ``m`` averages
    :math:`+\alpha\nabla f` (the Lion code's sign); the paper's momentum is its negative.

    References
    ----------
    Chen, Liu, Liang and Liu, ICLR 2024, arXiv:2310.05898 (``chen2024lion``); Lion: X. Chen et al.,
    Symbolic discovery of optimization algorithms, NeurIPS 2023, arXiv:2302.06675 (``chen2023symbolic``).

    Book: chapters/stochastic/lion.ipynb

    Examples
    --------
    Lion on :math:`f(x) = \frac12\|x - 3\|^2` with :math:`\lambda = 1` stops at the box edge 1,
    approached from outside with the excess shrinking by exactly :math:`1 - \eta\lambda` per step:

    >>> res = lion_k(lambda x: x - 3.0, [0.0, 5.0], lr=0.05, weight_decay=1.0, n_iters=400)
    >>> e = res.history["excess"]
    >>> np.round(res.x, 6).tolist(), round(float(e[-1] / e[-2]), 6)
    ([1.0, 1.0], 0.95)
    """
    x = as_array(x0)
    check_callable(grad, "grad", signature="x -> array")
    check_callable(f, "f", optional=True, signature="x -> float")
    b1, b2 = _betas(beta1, beta2)
    hp = {"beta1": b1, "beta2": b2,
          "weight_decay": check_real(weight_decay, "weight_decay", low=0.0),
          "alpha": check_positive(alpha, "alpha"),
          "kappa": check_choice(kappa, "kappa", KAPPAS)}
    n_iters = check_int(n_iters, "n_iters", low=1)
    log_every = check_int(log_every, "log_every", low=1)
    schedule, keep_x, _ = as_schedule(lr), check_bool(keep_x, "keep_x"), as_rng(rng)
    radius = 1.0 / hp["weight_decay"] if hp["weight_decay"] > 0 else np.inf
    trace = Trace("lion_k", {"lr": lr, **hp, "n_iters": n_iters}, callback, keep_x)

    def record(t, eta):
        norm = float(_dual_norm(x, hp["kappa"]))
        row = {"lr": eta, "norm": norm, "excess": max(norm - radius, 0.0)}
        if f is not None:
            row["f"] = float(check_oracle(f, "f", x, shape=()))
        if keep_x:
            row["m"] = state["m"].copy()
        return trace.log(t, x=x, **row)

    state, n_done = lion_k_state(x), 0
    stopped = record(0, np.nan)
    for t in range(0 if stopped else n_iters):
        eta = step_at(schedule, t)
        g = check_oracle(grad, "grad", x)
        trace.count("grad")
        x, state = lion_k_step(x, g, state, lr=eta, **hp)
        n_done = t + 1
        if trace.diverged(x, n_done):
            break
        if (n_done % log_every == 0 or n_done == n_iters) and record(n_done, eta):
            break
    fx = float(f(x)) if f is not None and trace.message is None else None
    return trace.result(x, fx, n_iters=n_done, m=state["m"])


def torch_optimizer(params, **hyperparameters):
    r"""Lion-K as a ``torch.optim.Optimizer`` running :func:`lion_k_step` on each parameter tensor.

    Defaults: ``lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.0, alpha=1.0, kappa="l1"``; for
    ``"l2"`` each parameter tensor is normalized as a whole.

    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([0.5, -2.0]))
    >>> opt = torch_optimizer([w], lr=0.1, weight_decay=1.0)
    >>> (w ** 2).sum().backward(); _ = opt.step()
    >>> [round(v, 4) for v in w.detach().tolist()]
    [0.35, -1.7]
    """
    from ..torch_interop import make_optimizer

    defaults = {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0, "alpha": 1.0, "kappa": "l1"}
    hp = {**defaults, **hyperparameters}
    check_real(hp["lr"], "lr", low=0.0), check_real(hp["weight_decay"], "weight_decay", low=0.0)
    _betas(hp["beta1"], hp["beta2"]), check_positive(hp["alpha"], "alpha"), check_choice(hp["kappa"], "kappa", KAPPAS)
    return make_optimizer(lion_k_step, lion_k_state, defaults, "LionK")(params, **hyperparameters)
