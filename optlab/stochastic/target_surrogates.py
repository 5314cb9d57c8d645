r"""Target-based surrogates: majorization-minimization in the space of the model's outputs.

The loss :math:`L(\theta) = \ell(X\theta)` of a linear model depends on the parameters only through
the *targets* :math:`z = X\theta` (here the logits).  One expensive gradient :math:`\nabla\ell(z_t)` in
target space builds a quadratic surrogate that upper-bounds the loss; many cheap parameter updates
(products with :math:`X` and :math:`X^\top`) then minimize it.  :func:`target_mm` is the full-batch
majorization-minimization method, :func:`sso` its stochastic version on minibatches and
:func:`sso_torch_optimizer` its torch adapter.  The chapter's test problem and the check of the
majorization are in :mod:`optlab.stochastic.target_surrogates_problems`.

References
----------
J. W. Lavington, S. Vaswani, R. Babanezhad, M. Schmidt and N. Le Roux, Target-based surrogates for
stochastic optimization, ICML 2023, arXiv:2302.02607 (``lavington2023target``).

Book: chapters/stochastic/target_surrogates.ipynb
"""
from __future__ import annotations

import numpy as np

from ..core import Result, Trace, as_array, as_rng, as_schedule, check_oracle, step_at
from ..validate import check_array, check_callable, check_choice, check_int, check_positive

__all__ = ["target_mm", "sso", "sso_torch_optimizer", "surrogate", "surrogate_target_grad", "majorizing_eta",
           "prox_weight", "cg_minimize", "gd_minimize"]


def majorizing_eta(beta: float) -> float:
    r"""The largest target step for which the surrogate majorizes, :math:`\eta = 1/\beta` (``beta``: the
    per-example loss's curvature bound in its target, 1/4 for the logistic loss).

    >>> majorizing_eta(0.25)
    4.0
    """
    return 1.0 / check_positive(beta, "beta")


def prox_weight(eta: float, batch_size: int) -> float:
    r"""The weight :math:`1/(\eta b)` of :math:`\tfrac12\lVert X\theta - z_t\rVert^2` for a mean loss over b examples.

    >>> prox_weight(4.0, 10)
    0.025
    """
    b = check_int(batch_size, "batch_size", low=1)
    return 1.0 / (check_positive(eta, "eta") * b)


def surrogate(theta, X, z_t, g_t, loss_t: float, eta: float):
    r"""The surrogate :math:`\ell(z_t) + \langle g_t, X\theta - z_t\rangle + \lVert X\theta - z_t\rVert^2/(2\eta b)`.

    ``theta`` is one point ``(d,)`` or a batch ``(P, d)``; ``g_t`` is the gradient of the mean
    loss over the ``b = len(z_t)`` rows of ``X`` at ``z_t``.

    >>> X = np.eye(2); float(surrogate(np.ones(2), X, np.zeros(2), np.ones(2), 0.0, 4.0))
    2.125
    """
    r = check_array(theta, "theta", ndim=(1, 2)) @ X.T - z_t
    return loss_t + r @ g_t + 0.5 * prox_weight(eta, len(z_t)) * np.sum(r * r, axis=-1)


def cg_minimize(X, z_t, g_t, eta: float, theta, n_steps: int):
    r"""``n_steps`` conjugate-gradient steps on the quadratic surrogate from ``theta``: (new point, products used).

    Hessian :math:`wX^\top X`, :math:`w = 1/(\eta b)`; at :math:`\theta_t` the residual is :math:`-\nabla L(\theta_t)`.
    """
    w, n_steps = prox_weight(eta, len(z_t)), check_int(n_steps, "n_steps", low=0)
    r = X.T @ (w * (z_t - X @ theta) - g_t)     # minus the surrogate's gradient
    p, rr, products = r.copy(), float(r @ r), 2
    for _ in range(n_steps):
        if rr <= 1e-30:
            break
        Xp = X @ p
        a = rr / (w * float(Xp @ Xp))          # exact minimization along p
        theta, r = theta + a * p, r - a * w * (X.T @ Xp)
        rr_new = float(r @ r)
        p, rr, products = r + (rr_new / rr) * p, rr_new, products + 2
    return theta, products


def surrogate_target_grad(z, z_t, g_t, w):
    r"""The surrogate's gradient in the targets, :math:`g_t + w(z - z_t)`: the one step of both inner loops.

    Pulled back through the model's Jacobian it is the surrogate's parameter gradient: :math:`X^\top(\cdot)` in
    :func:`gd_minimize`, autograd's backward in :func:`sso_torch_optimizer`.  numpy arrays or torch tensors.
    """
    return g_t + w * (z - z_t)


def gd_minimize(X, z_t, g_t, eta: float, theta, n_steps: int, lr: float):
    r"""``n_steps`` gradient steps of size ``lr`` on the surrogate from ``theta``: (new point, products used).

    The gradient :math:`X^\top(g_t + w(X\theta - z_t))` is :math:`\nabla L(\theta_t)` at :math:`\theta_t`.
    """
    w, lr = prox_weight(eta, len(z_t)), check_positive(lr, "lr")
    n_steps = check_int(n_steps, "n_steps", low=0)
    for _ in range(n_steps):
        theta = theta - lr * (X.T @ surrogate_target_grad(X @ theta, z_t, g_t, w))
    return theta, 2 * n_steps


def _inner(solver, X, z, g, eta, theta, n_inner, inner_lr):
    if solver == "cg":
        return cg_minimize(X, z, g, eta, theta, n_inner)
    lr = inner_lr if inner_lr is not None else 1.0 / (prox_weight(eta, len(z)) * np.linalg.norm(X, 2) ** 2)
    return gd_minimize(X, z, g, eta, theta, n_inner, lr)


def _logged_loss(loss, z):
    """``loss(z)`` as a float, logged but not counted; NaN without ``loss``."""
    return np.nan if loss is None else float(check_oracle(loss, "loss", z, shape=()))


def _check(X, x0, n_inner, solver, inner_lr, n_iters):
    X = check_array(X, "X", ndim=2)
    theta = as_array(x0)
    if theta.shape != (X.shape[1],):
        raise ValueError(f"x0 must have shape ({X.shape[1]},) to match X, got {theta.shape}")
    n_inner, n_iters = check_int(n_inner, "n_inner", low=1), check_int(n_iters, "n_iters", low=1)
    solver = check_choice(solver, "solver", ("cg", "gd"))
    inner_lr = None if inner_lr is None else check_positive(inner_lr, "inner_lr")
    return X, theta, n_inner, solver, inner_lr, n_iters


def target_mm(target_grad, X, x0, *, eta: float, n_inner: int = 10, solver: str = "cg",
              inner_lr=None, n_iters: int = 20, loss=None, keep_x: bool = False,
              rng=None, callback=None) -> Result:
    r"""Full-batch target-space majorization-minimization: one expensive gradient, ``n_inner`` cheap steps.

    At :math:`z_t = X\theta_t` one call of ``target_grad`` gives :math:`g_t = \nabla\ell(z_t)`; the
    surrogate :math:`\ell(z_t) + \langle g_t, X\theta - z_t\rangle + \lVert X\theta - z_t\rVert^2/(2\eta n)`
    upper-bounds :math:`L(\theta) = \ell(X\theta)` when :math:`\eta \le 1/\beta`, touches it at
    :math:`\theta_t`, and is minimized approximately by ``n_inner`` steps of conjugate gradient
    (``solver="cg"``) or gradient descent (``"gd"``), which need only products with X and X^T.

    Parameters
    ----------
    target_grad : callable
        ``target_grad(z) -> (n,)``: the gradient of the mean loss :math:`\ell` at the targets (expensive).
    X, x0 : array_like, shapes (n, d) and (d,)
        The linear model :math:`z = X\theta` and the starting parameters (not modified).
    eta : float
        Target step per example, > 0 (:func:`majorizing_eta`).
    n_inner, solver : int, {"cg", "gd"}
        Inner steps per outer step (m) and the inner solver.
    inner_lr : float or None
        Step of the ``"gd"`` solver; default :math:`1/\lambda_{\max}(X^\top X/(\eta n))`.
    n_iters : int
        Outer steps T (expensive calls).
    loss : callable or None
        ``loss(z)``, the mean loss in target space, to log (not counted).
    keep_x : bool
        Record every :math:`\theta_t` in history column ``x``.
    rng, callback
        ``rng`` is ignored (deterministic method); ``callback(record) -> bool`` stops the run when True.

    Returns
    -------
    Result
        ``x`` = :math:`\theta_T`, ``f`` = :math:`\ell(X\theta_T)` (NaN without ``loss``); ``n_evals``:
        ``target_grad`` (expensive) and ``model`` (products with X or X^T).  History columns ``t``,
        ``n_evals``, ``f`` and ``surrogate`` (with ``loss``: :math:`g_{t-1}(\theta_t)`, NaN on row 0), ``x``.

    Notes
    -----
    With exact inner minimization the update is the least-squares projection of the target-space
    gradient step, :math:`X\theta_{t+1} = \Pi_{\mathrm{range}X}(z_t - \eta n \nabla\ell(z_t))`, i.e. projected
    gradient descent in target space.  Cost per outer step: one ``target_grad``, 3 + 2m products.
    Since CG's iterates decrease the quadratic surrogate at least as much as one gradient step of size
    :math:`1/\lambda_{\max}(X^\top X/(\eta n))`, the loss decreases monotonically and
    :math:`\min_{t<T}\lVert\nabla L(\theta_t)\rVert^2 \le 2\lambda_{\max}(X^\top X)(L(\theta_0) - L^\star)/(\eta n T)`:
    gradient descent's guarantee (derived in the chapter).  The paper allows any model :math:`f(\theta)`
    and inner optimizer (its code: Armijo line search); here the model is linear, the surrogate quadratic.

    References
    ----------
    Lavington et al., ICML 2023, arXiv:2302.02607 (``lavington2023target``).

    Book: chapters/stochastic/target_surrogates.ipynb

    Examples
    --------
    On a square, invertible model, exact inner minimization takes the full target step at once:

    >>> X = np.array([[2.0, 0.0], [0.0, 1.0]])
    >>> res = target_mm(lambda z: z - 1.0, X, np.zeros(2), eta=0.5, n_inner=2, n_iters=1)
    >>> np.round(X @ res.x, 6).tolist(), res.n_evals
    ([1.0, 1.0], {'target_grad': 1, 'model': 7})
    """
    X, theta, n_inner, solver, inner_lr, n_iters = _check(
        X, x0, n_inner, solver, inner_lr, n_iters)
    check_callable(target_grad, "target_grad", signature="z -> array")
    check_callable(loss, "loss", optional=True, signature="z -> float")
    eta, _ = check_positive(eta, "eta"), as_rng(rng)
    params = {"eta": eta, "n_inner": n_inner, "solver": solver, "inner_lr": inner_lr,
              "n_iters": n_iters}
    trace = Trace("target_mm", params, callback, keep_x)
    z = X @ theta
    f_z = _logged_loss(loss, z)
    stopped, n_done = trace.log(0, x=theta, f=f_z, surrogate=np.nan), 0
    for t in range(0 if stopped else n_iters):
        g = check_oracle(target_grad, "target_grad", z)   # the one expensive call
        trace.count("target_grad")
        theta, products = _inner(solver, X, z, g, eta, theta, n_inner, inner_lr)
        trace.count("model", products + 1)
        n_done = t + 1
        if trace.diverged(theta, n_done):
            break
        sur = float(surrogate(theta, X, z, g, f_z, eta))   # NaN without loss
        z = X @ theta
        f_z = _logged_loss(loss, z)
        if trace.log(n_done, x=theta, f=f_z, surrogate=sur):
            break
    return trace.result(theta, f_z if trace.message is None else np.nan, n_iters=n_done)


def sso(target_grad, X, x0, *, eta, batch_size: int, n_inner: int = 10,
        solver: str = "cg", inner_lr=None, n_iters: int = 100, loss=None,
        n_log: int = 20, rng=None, callback=None) -> Result:
    r"""Stochastic surrogate optimization (the paper's SSO): a minibatch's surrogate, minimized on that minibatch.

    Each outer step draws b rows :math:`B` without replacement, makes one expensive call
    :math:`g_t = \nabla\ell_B(z_B)` (the batch's mean loss) at :math:`z_B = X_B\theta_t` and runs ``n_inner``
    inner steps on :math:`\langle g_t, X_B\theta\rangle + \lVert X_B\theta - z_B\rVert^2/(2\eta_t b)`.

    Parameters
    ----------
    target_grad : callable
        ``target_grad(z_B, idx) -> (b,)``: the gradient of the mean loss over the rows ``idx`` at their targets.
    X, x0, n_inner, solver, loss, callback
        As in :func:`target_mm` (``loss(z)`` on all n targets, for logging only).
    eta : float or callable
        Target step :math:`\eta_t`, a number or a schedule ``t -> float``.
    batch_size : int
        Rows per batch, ``1 <= b <= n``.
    inner_lr : float or None
        Step of the ``"gd"`` solver; default :math:`1/\lambda_{\max}(X_B^\top X_B/(\eta_t b))` per batch.
    n_iters, n_log : int
        Outer steps (expensive calls); about ``n_log`` of them are logged, evenly spaced (plus step 0).
    rng : None, int or numpy.random.Generator
        Draws the batches.

    Returns
    -------
    Result
        ``x`` = :math:`\theta_T`; ``f`` and history column ``f``: the full loss (with ``loss``); history
        ``t``, ``n_evals``, ``lr`` (:math:`\eta_t`); ``n_evals``: ``target_grad`` (batches) and ``model``.

    Notes
    -----
    With ``solver="gd"`` and ``n_inner=1`` the step is exactly minibatch SGD with step ``inner_lr``.  With
    exact inner minimization, :math:`X_B\theta_{t+1}` is the least-squares fit of the target step
    :math:`z_B - \eta_t b g_t` with the smallest parameter change: when :math:`b < d` the batch is fitted
    exactly (the chapter's pitfall).  The paper analyses SSO as projected SGD in target space for convex
    losses (rates not verified here).  Cost per step: one batch gradient, 3 + 2m products with ``X_B``.

    Examples
    --------
    >>> X = np.eye(4); grad = lambda zb, idx: (zb - 1.0) / len(idx)
    >>> res = sso(grad, X, np.zeros(4), eta=1.0, batch_size=2, n_inner=5, n_iters=2, rng=0)
    >>> np.round(res.x, 6).tolist(), res.n_evals["target_grad"]
    ([1.0, 1.0, 1.0, 1.0], 2)
    """
    X, theta, n_inner, solver, inner_lr, n_iters = _check(
        X, x0, n_inner, solver, inner_lr, n_iters)
    check_callable(target_grad, "target_grad", signature="(z_B, idx) -> array")
    check_callable(loss, "loss", optional=True, signature="z -> float")
    b = check_int(batch_size, "batch_size", low=1, high=len(X))
    if not callable(eta):
        eta = check_positive(eta, "eta")
    n_log, schedule = check_int(n_log, "n_log", low=1), as_schedule(eta, "eta")
    rng = as_rng(rng)
    logged = set(np.linspace(1, n_iters, min(n_log, n_iters)).round().astype(int))
    params = {"eta": schedule, "batch_size": b, "n_inner": n_inner, "solver": solver,
              "inner_lr": inner_lr, "n_iters": n_iters}
    trace = Trace("sso", params, callback)
    stopped, n_done = trace.log(0, f=_logged_loss(loss, X @ theta), lr=np.nan), 0
    for t in range(0 if stopped else n_iters):
        eta_t = step_at(schedule, t, "eta")            # checked > 0 by prox_weight
        idx = rng.choice(len(X), size=b, replace=False)
        X_B = X[idx]
        z_B = X_B @ theta
        g = check_oracle(target_grad, "target_grad", z_B, idx)  # the one expensive call
        trace.count("target_grad")
        theta, products = _inner(solver, X_B, z_B, g, eta_t, theta, n_inner, inner_lr)
        trace.count("model", products + 1)
        n_done = t + 1
        if trace.diverged(theta, n_done):
            break
        if n_done in logged and trace.log(n_done, f=_logged_loss(loss, X @ theta),
                                          lr=eta_t):
            break
    f_final = _logged_loss(loss, X @ theta) if trace.message is None else np.nan
    return trace.result(theta, f_final, n_iters=n_done)


def sso_torch_optimizer(params, *, eta: float, n_inner: int = 10, inner_lr: float):
    r"""SSO for torch models: a ``torch.optim.Optimizer`` whose ``step(targets, target_grad)`` is one outer step.

    ``targets()`` evaluates the model on the current minibatch (cheap, differentiable); ``target_grad(z)``
    is the expensive gradient of the minibatch's mean loss at the detached targets, called once per step.
    The ``n_inner`` inner steps are gradient steps of size ``inner_lr`` on the minibatch surrogate, each the
    backward pass of :func:`surrogate_target_grad` through the model: the ``"gd"`` solver of :func:`sso`,
    step for step on a linear model (tested).  torch is imported here only.

    >>> import torch
    >>> w = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)); X = torch.eye(2, dtype=torch.float64)
    >>> opt = sso_torch_optimizer([w], eta=1.0, n_inner=3, inner_lr=2.0)
    >>> _ = opt.step(lambda: X @ w, lambda z: (z - 1.0) / 2); [round(v, 6) for v in w.tolist()]
    [1.0, 1.0]
    """
    import torch

    eta, n_inner = check_positive(eta, "eta"), check_int(n_inner, "n_inner", low=1)
    inner_lr = check_positive(inner_lr, "inner_lr")

    class SSO(torch.optim.Optimizer):
        def step(self, targets, target_grad):
            with torch.no_grad():
                z_t = targets()
                g_t = target_grad(z_t)          # the one expensive call of the step
            w = prox_weight(eta, z_t.shape[0])
            params = [p for group in self.param_groups for p in group["params"]]
            for _ in range(n_inner):
                self.zero_grad()
                z = targets()
                z.backward(surrogate_target_grad(z.detach(), z_t, g_t, w))
                with torch.no_grad():
                    for p in params:
                        p.sub_(inner_lr * p.grad)
            return z_t

    return SSO(params, {})
