r"""The test problem of the target-surrogates chapter and the check of the surrogate's majorization.

:func:`ill_conditioned_logistic` builds unregularized logistic regression whose loss depends on
the parameters only through the targets :math:`z = X\theta` (the logits), with a design of
prescribed condition number and noisy, non-separable labels, and returns the target-space loss
and gradients the methods need; :func:`majorization_gap` measures surrogate minus loss at given
points.  The methods are in :mod:`optlab.stochastic.target_surrogates`.

References
----------
J. W. Lavington, S. Vaswani, R. Babanezhad, M. Schmidt and N. Le Roux, Target-based surrogates for
stochastic optimization, ICML 2023, arXiv:2302.02607 (``lavington2023target``).

Book: chapters/stochastic/target_surrogates.ipynb
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from ..core import Problem, as_rng
from ..validate import check_array, check_callable, check_int, check_positive, check_real
from .target_surrogates import surrogate

__all__ = ["LOGISTIC_BETA", "ill_conditioned_logistic", "majorization_gap"]

LOGISTIC_BETA = 0.25  # the logistic loss log(1 + exp(-y z)) has second derivative at most 1/4 in z


def ill_conditioned_logistic(n: int = 1000, dim: int = 50, cond: float = 1e3, scale: float = 1.0,
                             rng=0) -> Problem:
    r"""Unregularized logistic regression with an ill-conditioned design and noisy, non-separable labels.

    :math:`X = \sqrt n\, U\,\mathrm{diag}(s)\,V^\top` with orthonormal U ``(n, d)``, V ``(d, d)`` and
    singular values of :math:`X/\sqrt n` spaced geometrically from 1 to :math:`\mathrm{cond}^{-1/2}`
    (so :math:`\kappa(X^\top X)` = ``cond``); labels :math:`y_i = \pm1` with
    :math:`P(y_i = 1) = \sigma(x_i^\top\theta_\sharp)`, the planted logits scaled to standard deviation ``scale``.

    Returns a Problem with ``f`` (row-wise), ``grad``, ``hvp``, ``x0 = 0``, ``x_star`` and ``f_star`` (scipy's
    trust-region Newton-CG) and ``L`` = :math:`\lambda_{\max}(X^\top X)/(4n)`; ``info`` holds ``X``, ``y``,
    ``beta`` (1/4), ``target_loss(z)``, ``target_grad(z)``, ``batch_target_grad(z_B, idx)``, ``z_star``,
    ``max_abs_z_star``.

    >>> p = ill_conditioned_logistic(n=200, dim=5, rng=0)
    >>> p.dim, round(p.f(p.x0), 4), bool(np.linalg.norm(p.grad(p.x_star)) < 1e-8)
    (5, 0.6931, True)
    """
    n, dim = check_int(n, "n", low=2), check_int(dim, "dim", low=1)
    if dim > n:
        raise ValueError(f"dim must be <= n, got dim={dim} > n={n}")
    cond, scale = check_real(cond, "cond", low=1.0), check_positive(scale, "scale")
    rng = as_rng(rng)
    U = np.linalg.qr(rng.standard_normal((n, dim)))[0]
    V = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    s = cond ** (-0.5 * np.linspace(0.0, 1.0, dim))
    X = np.sqrt(n) * (U * s) @ V.T
    planted = rng.standard_normal(dim)
    planted *= scale / np.std(X @ planted)
    y = np.where(rng.random(n) < expit(X @ planted), 1.0, -1.0)

    def target_loss(z):                            # mean logistic loss, row-wise on a batch (P, n)
        return np.mean(np.logaddexp(0.0, -y * z), axis=-1)

    def target_grad(z, idx=slice(None)):           # its gradient in the targets (rows idx): -y sigma(-y z) / b
        return -y[idx] * expit(-y[idx] * z) / len(z)

    def f(theta):
        out = target_loss(np.asarray(theta, dtype=float) @ X.T)
        return float(out) if np.ndim(out) == 0 else out

    def grad(theta):
        return X.T @ target_grad(X @ theta)

    def hvp(theta, v):
        p = expit(X @ theta)
        return X.T @ (p * (1.0 - p) * (X @ v)) / n

    x_star = minimize(f, np.zeros(dim), jac=grad, hessp=hvp, method="trust-ncg",
                      options={"gtol": 1e-12, "maxiter": 1000}).x
    return Problem(f"ill_conditioned_logistic(n={n}, d={dim}, cond={cond:g}, scale={scale:g})", f=f, grad=grad,
                   hvp=hvp, x0=np.zeros(dim), x_star=x_star, f_star=f(x_star),
                   L=float(LOGISTIC_BETA * np.linalg.norm(X, 2) ** 2 / n),
                   info={"X": X, "y": y, "beta": LOGISTIC_BETA, "target_loss": target_loss, "target_grad": target_grad,
                         "batch_target_grad": target_grad, "z_star": X @ x_star,
                         "max_abs_z_star": float(np.max(np.abs(X @ x_star))), "planted": planted})


def majorization_gap(loss, target_grad, X, theta_t, points, eta: float):
    r"""Surrogate minus loss, :math:`g_t(\theta) - L(\theta)`, at the rows of ``points``: >= 0 where it majorizes.

    ``loss(z)`` is the mean loss in target space (row-wise on a batch ``(P, n)`` of targets) and
    ``target_grad(z)`` its gradient; the surrogate is built at :math:`\theta_t`.

    >>> X = np.eye(2); loss = lambda z: 0.5 * np.mean(z ** 2, axis=-1); grad = lambda z: z / 2
    >>> np.round(majorization_gap(loss, grad, X, np.zeros(2), [[1.0, 1.0], [2.0, 0.0]], 1.0), 6).tolist()
    [0.0, 0.0]
    """
    check_callable(loss, "loss", signature="z -> float")
    check_callable(target_grad, "target_grad", signature="z -> array")
    z_t = X @ check_array(theta_t, "theta_t", shape=(X.shape[1],))
    points = check_array(points, "points", ndim=(1, 2))
    return surrogate(points, X, z_t, target_grad(z_t), float(loss(z_t)), eta) - loss(points @ X.T)
